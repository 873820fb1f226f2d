/* A large straight-line program (no branches but the length check):
 * 256 rounds of a multiply-xorshift hash over the input's first 256 u64
 * words, each round with its own constants. About 2,800 instructions of
 * eBPF, for compile-time scaling. Input: at least 2 KiB. */
#include "bpf_bench.h"

#define R(i)                                                                   \
    h ^= w[(i)];                                                               \
    h *= 0x100000001b3ULL + 2 * (i);                                           \
    h ^= h >> (13 + (i) % 17);                                                 \
    h += (u64)(i) * 0x9e3779b9ULL;
#define R4(i) R(i) R((i) + 1) R((i) + 2) R((i) + 3)
#define R16(i) R4(i) R4((i) + 4) R4((i) + 8) R4((i) + 12)
#define R64(i) R16(i) R16((i) + 16) R16((i) + 32) R16((i) + 48)

ENTRY {
    const u64 *w = mem;
    if (len < 256 * 8)
        return 0;
    u64 h = len;
    R64(0) R64(64) R64(128) R64(192)
    return h;
}
