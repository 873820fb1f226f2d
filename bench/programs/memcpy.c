/* Byte loop: copies the first half of the input to the second half, one
 * byte at a time. Returns a few bytes of the copy and the length. */
#include "bpf_bench.h"

ENTRY {
    u8 *p = mem;
    u64 half = len / 2;
    for (u64 i = 0; i < half; i++)
        p[half + i] = p[i];
    if (half == 0)
        return 0;
    return ((u64)p[half] << 16 | (u64)p[half + half / 2] << 8 | p[2 * half - 1]) + (half << 24);
}
