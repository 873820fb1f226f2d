/* A switch over data: a tiny accumulator machine whose opcodes (16 of
 * them) and operands are the input's bytes, two per instruction. */
#include "bpf_bench.h"

ENTRY {
    const u8 *p = mem;
    u64 acc = 1, x = 7, y = 3;
    for (u64 i = 0; i + 1 < len; i += 2) {
        u64 v = p[i + 1];
        switch (p[i] & 15) {
        case 0: acc += v; break;
        case 1: acc -= v * 3; break;
        case 2: acc ^= v << 7; break;
        case 3: acc = acc * 31 + v; break;
        case 4: x += acc >> 3; break;
        case 5: x ^= v * 0x9e3779b97f4a7c15ULL; break;
        case 6: y = y * 5 + x; break;
        case 7: acc = rotl64(acc, (v & 31) | 1); break;
        case 8: y ^= acc; acc += 11; break;
        case 9: acc = (acc >> 1) | (v << 56); break;
        case 10: x -= y; break;
        case 11: if (acc & 1) acc += x; else acc -= y; break;
        case 12: y += v * v; break;
        case 13: acc = ~acc + v; break;
        case 14: x = x * 3 + acc; break;
        default: acc ^= x ^ y; break;
        }
    }
    return acc ^ x ^ y;
}
