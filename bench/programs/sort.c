/* A sort: copies the first half of the input (u32 values) to the second
 * half and insertion-sorts the copy in place, so that every run sorts the
 * same data. Returns a position-weighted checksum of the sorted values. */
#include "bpf_bench.h"

ENTRY {
    u32 *a = mem;
    u64 n = len / 8;
    u32 *s = a + n;
    for (u64 i = 0; i < n; i++)
        s[i] = a[i];
    for (u64 i = 1; i < n; i++) {
        u32 v = s[i];
        u64 j = i;
        while (j > 0 && s[j - 1] > v) {
            s[j] = s[j - 1];
            j--;
        }
        s[j] = v;
    }
    u64 sum = 0;
    for (u64 i = 0; i < n; i++)
        sum += (u64)s[i] * (i + 1);
    return sum;
}
