/* bpf-to-bpf calls: two calls per input word, one of which calls a third
 * function (three non-inlined functions in all). */
#include "bpf_bench.h"

static NOINLINE u64 mix(u64 a, u64 b) {
    return rotl64(a ^ b, 17) * 0x9e3779b97f4a7c15ULL;
}

static NOINLINE u64 step(u64 h, u64 w) {
    if (w & 1)
        return mix(h, w);
    return mix(w, h) + 1;
}

static NOINLINE u64 fold(u64 h, u64 k) {
    return h ^ (h >> 31) ^ k;
}

ENTRY {
    const u64 *w = mem;
    u64 n = len / 8;
    u64 h = 0x12345;
    for (u64 i = 0; i < n; i++) {
        h = step(h, w[i]);
        h = fold(h, i);
    }
    return h;
}
