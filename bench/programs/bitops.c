/* Bit manipulation over u64 words: SWAR population count, bit reversal,
 * leading zeros by binary search, parity, isolate/clear lowest set bit. */
#include "bpf_bench.h"

static inline u64 popcount(u64 x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    return (x * 0x0101010101010101ULL) >> 56;
}

static inline u64 reverse(u64 x) {
    x = ((x >> 1) & 0x5555555555555555ULL) | ((x & 0x5555555555555555ULL) << 1);
    x = ((x >> 2) & 0x3333333333333333ULL) | ((x & 0x3333333333333333ULL) << 2);
    x = ((x >> 4) & 0x0f0f0f0f0f0f0f0fULL) | ((x & 0x0f0f0f0f0f0f0f0fULL) << 4);
    x = ((x >> 8) & 0x00ff00ff00ff00ffULL) | ((x & 0x00ff00ff00ff00ffULL) << 8);
    x = ((x >> 16) & 0x0000ffff0000ffffULL) | ((x & 0x0000ffff0000ffffULL) << 16);
    return (x >> 32) | (x << 32);
}

static inline u64 clz(u64 x) {
    if (x == 0)
        return 64;
    u64 n = 0;
    if ((x >> 32) == 0) { n += 32; x <<= 32; }
    if ((x >> 48) == 0) { n += 16; x <<= 16; }
    if ((x >> 56) == 0) { n += 8; x <<= 8; }
    if ((x >> 60) == 0) { n += 4; x <<= 4; }
    if ((x >> 62) == 0) { n += 2; x <<= 2; }
    if ((x >> 63) == 0) { n += 1; }
    return n;
}

ENTRY {
    const u64 *w = mem;
    u64 n = len / 8;
    u64 acc = 0, pop = 0;
    for (u64 i = 0; i < n; i++) {
        u64 x = w[i];
        pop += popcount(x);
        acc ^= reverse(x) + clz(x & (x >> 3));
        acc += (x & -x) ^ (x & (x - 1));
        acc = rotl64(acc, popcount(x) & 63 | 1);
    }
    return acc ^ (pop << 48);
}
