/* Division and modulo in a loop, 64- and 32-bit, divisors from the data.
 * Input: u32 words. */
#include "bpf_bench.h"

ENTRY {
    const u32 *w = mem;
    u64 n = len / 4;
    u64 acc = 0;
    u32 acc32 = 1;
    for (u64 i = 0; i + 1 < n; i++) {
        u32 x = w[i];
        u32 y = w[i + 1];
        u32 d = (y & 0xffff) | 1;
        acc += (u64)x / d + (u64)x % d;
        acc32 = acc32 * 31 + x % ((d & 0xff) | 1);
        u64 big = ((u64)x << 32) | y;
        acc ^= big / ((u64)d * 7 + 3);
    }
    return acc + acc32;
}
