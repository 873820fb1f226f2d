/* Hash over a buffer: 64-bit FNV-1a, byte by byte. */
#include "bpf_bench.h"

ENTRY {
    const u8 *p = mem;
    u64 h = 0xcbf29ce484222325ULL;
    for (u64 i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
