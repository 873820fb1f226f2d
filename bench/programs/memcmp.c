/* Byte loop: compares the two halves of the input byte by byte and
 * returns the first index where they differ (with the xor of the bytes),
 * or all ones. The input's halves differ only near the end. */
#include "bpf_bench.h"

ENTRY {
    const u8 *p = mem;
    u64 half = len / 2;
    for (u64 i = 0; i < half; i++) {
        if (p[i] != p[half + i])
            return (i << 8) | (u8)(p[i] ^ p[half + i]);
    }
    return ~0ULL;
}
