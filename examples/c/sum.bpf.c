/*
 * The eBPF programs that embed.c and embed.cpp load from an ELF object by
 * name. Rebuild sum.bpf.o with:
 *
 *   clang-19 -O2 -target bpf -ffreestanding -c sum.bpf.c -o sum.bpf.o
 */
#include <stdint.h>

/* Helper 1 of the host: mixes two values (the examples register it). */
static uint64_t (*const host_mix)(uint64_t a, uint64_t b) = (void *)1;

/* The sum of the input bytes, mixed with their count by helper 1. */
__attribute__((section("socket"), used))
uint64_t sum_bytes(uint8_t *mem, uint64_t len)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < len; i++)
        sum += mem[i];
    return host_mix(sum, len);
}

/* A second program in the same section: picked by its name. */
__attribute__((section("socket"), used))
uint64_t answer(void)
{
    return 42;
}

/* A global variable: relocated as `lddw` src 2 (map value) of map 0 (the
 * object's .bss), which the host resolves with its lddw hooks. */
uint64_t counter;

/* Counts its calls in `counter`. */
__attribute__((section("socket"), used))
uint64_t bump(void)
{
    return ++counter;
}

char _license[] __attribute__((section("license"), used)) = "MIT";
