/* ALU-heavy loop: add, xor, shifts, rotates and multiplies on three 64-bit
 * values, with no memory traffic. Input: u32 iteration count, then a u64
 * seed at offset 8. */
#include "bpf_bench.h"

ENTRY {
    if (len < 16)
        return 0;
    u64 n = *(const u32 *)mem;
    u64 a = *(const u64 *)((const u8 *)mem + 8);
    u64 b = 0x9e3779b97f4a7c15ULL, c = 0;
    for (u64 i = 0; i < n; i++) {
        a += b;
        b ^= a >> 7;
        b = rotl64(b, 13);
        c += a * 0x2545f4914f6cdd1dULL;
        a ^= c >> 29;
        c -= b;
    }
    return a ^ b ^ c;
}
