/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The few definitions bpfvm's benchmark programs need. Each program is
 * `uint64_t bpf_main(void *mem, uint64_t len)` and is compiled twice:
 *
 *   - to eBPF:  clang-19 -O2 -g -target bpf -mcpu=v3 -ffreestanding -c
 *               (bench/build-programs.sh; the objects are committed), where
 *               the entry lands in section "bench";
 *   - natively: clang-19 -O3 -ffreestanding -Dbpf_main=native_<name>
 *               (bench/build.rs), the baseline the harness links in.
 *
 * Natively, map helpers are plain C over static arrays (an out-of-line
 * function per call, as a helper call is in the VM).
 */
#ifndef BPF_BENCH_H
#define BPF_BENCH_H

#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define NOINLINE __attribute__((noinline))

#ifdef __bpf__
#define SEC(name) __attribute__((section(name), used))
#define ENTRY SEC("bench") uint64_t bpf_main(void *mem, uint64_t len)

#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define BPF_MAP_TYPE_ARRAY 2

/* An array map of `n` u64 values with u32 keys (BTF-defined). */
#define ARRAY_MAP(name, n)                                                     \
    struct {                                                                   \
        __uint(type, BPF_MAP_TYPE_ARRAY);                                      \
        __uint(max_entries, n);                                                \
        __type(key, u32);                                                      \
        __type(value, u64);                                                    \
    } name SEC(".maps")

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
#else
#define ENTRY uint64_t bpf_main(void *mem, uint64_t len)

struct native_array_map {
    u32 max_entries;
    u64 *values;
};

#define ARRAY_MAP(name, n)                                                     \
    static u64 name##_values[n];                                               \
    static struct native_array_map name = {n, name##_values}

static NOINLINE void *bpf_map_lookup_elem(void *map, const void *key) {
    struct native_array_map *m = map;
    u32 k = *(const u32 *)key;
    return k < m->max_entries ? &m->values[k] : 0;
}
#endif

static inline u64 rotl64(u64 x, unsigned r) { return (x << r) | (x >> (64 - r)); }

#endif
