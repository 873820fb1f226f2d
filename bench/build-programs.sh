#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Rebuilds the eBPF objects of the benchmark programs (bench/programs/*.c ->
# bench/programs/*.bpf.o) with clang-19. The objects are committed so that
# builds and tests need no eBPF compiler; run this after changing a
# program or bpf_bench.h and commit the result. (The native baseline is
# built by bench/build.rs with the C compiler the build finds.)
set -euo pipefail
cd "$(dirname "$0")/programs"

CLANG=${CLANG:-clang-19}
if ! command -v "$CLANG" >/dev/null; then
    echo "error: $CLANG not found (install clang-19, or set CLANG)" >&2
    exit 1
fi

for src in *.c; do
    obj=${src%.c}.bpf.o
    # -g emits BTF, which the BTF-defined map of map_lookup.c needs;
    # -mcpu=v3 gives 32-bit jumps and ALU (rbpf runs v3, not v4).
    "$CLANG" -O2 -g -target bpf -mcpu=v3 -ffreestanding -c "$src" -o "$obj"
    echo "built bench/programs/$obj"
done
