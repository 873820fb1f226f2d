#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Rebuilds the eBPF C fixtures in conformance/fixtures/ with clang-19.
# The .o files are committed so that the tests run without clang; run this
# after changing a fixture's C source (or bpf_defs.h) and commit the result.
# Then refresh the fuzz seeds: fuzz/corpus/elf_loader/ holds a copy of each
# object (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/../conformance/fixtures"

CLANG=${CLANG:-clang-19}
if ! command -v "$CLANG" >/dev/null; then
    echo "error: $CLANG not found (install clang-19, or set CLANG)" >&2
    exit 1
fi

for src in *.c; do
    obj=${src%.c}.o
    # -g emits BTF (.BTF), which BTF-defined maps need.
    "$CLANG" -O2 -g -target bpf -ffreestanding -c "$src" -o "$obj"
    echo "built conformance/fixtures/$obj"
done

corpus=../../fuzz/corpus/elf_loader
if [ -d "$corpus" ]; then
    for obj in *.o; do
        cp "$obj" "$corpus/fixture-$obj"
    done
    echo "refreshed the fuzz seeds in fuzz/corpus/elf_loader/"
fi
