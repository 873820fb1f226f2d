/* Map helper calls in a loop: fills a 64-entry array map through
 * bpf_map_lookup_elem, then sums the values that the input bytes name
 * (one lookup per byte). The result does not depend on earlier runs. */
#include "bpf_bench.h"

ARRAY_MAP(table, 64);

ENTRY {
    const u8 *p = mem;
    for (u32 k = 0; k < 64; k++) {
        u64 *v = bpf_map_lookup_elem(&table, &k);
        if (!v)
            return 0;
        *v = (u64)k * k + 1;
    }
    u64 sum = 0;
    for (u64 i = 0; i < len; i++) {
        u32 k = p[i] & 63;
        u64 *v = bpf_map_lookup_elem(&table, &k);
        if (v)
            sum += *v;
    }
    return sum;
}
