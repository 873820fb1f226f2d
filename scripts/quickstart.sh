#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Quick start: install what is missing, build bpfvm in release mode, run the
# example program.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
. scripts/env.sh

cargo build --release --bins
echo
echo "$ target/release/bpfvm run examples/hello.asm --mem examples/hello.mem --dump-mem"
target/release/bpfvm run examples/hello.asm --mem examples/hello.mem --dump-mem
echo "$ target/release/bpfvm run examples/factorial.asm"
target/release/bpfvm run examples/factorial.asm
