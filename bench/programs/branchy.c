/* A large branchy program: 256 rounds, each with two data-dependent
 * branches (512 conditional branches, no loops), for compile-time
 * scaling. Input: at least 256 bytes. */
#include "bpf_bench.h"

#define B(i)                                                                   \
    if ((w[(i) % 32] >> ((i) % 59)) & 1)                                       \
        h = h * 31 + (i);                                                      \
    else                                                                       \
        h = (h ^ (h >> 7)) + (i) * 3;                                          \
    if ((h >> ((i) % 61)) & 1)                                                 \
        c += (i) ^ (h & 0xff);
#define B4(i) B(i) B((i) + 1) B((i) + 2) B((i) + 3)
#define B16(i) B4(i) B4((i) + 4) B4((i) + 8) B4((i) + 12)
#define B64(i) B16(i) B16((i) + 16) B16((i) + 32) B16((i) + 48)

ENTRY {
    const u64 *w = mem;
    if (len < 32 * 8)
        return 0;
    u64 h = w[0] ^ len, c = 0;
    B64(0) B64(64) B64(128) B64(192)
    return h ^ (c << 32);
}
