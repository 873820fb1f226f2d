/* Byte loop: counts the occurrences of a 4-byte needle (the input's first
 * 4 bytes) in the rest of the input, naively. Returns count << 32 | the
 * offset of the last match. */
#include "bpf_bench.h"

ENTRY {
    const u8 *p = mem;
    if (len < 8)
        return 0;
    u8 n0 = p[0], n1 = p[1], n2 = p[2], n3 = p[3];
    u64 count = 0, last = 0;
    for (u64 i = 4; i + 4 <= len; i++) {
        if (p[i] == n0 && p[i + 1] == n1 && p[i + 2] == n2 && p[i + 3] == n3) {
            count++;
            last = i;
        }
    }
    return count << 32 | last;
}
