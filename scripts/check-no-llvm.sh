#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The LLVM tier is a cargo feature: `cargo build --no-default-features`
# builds a Cranelift-only `bpfvm` without LLVM, which runs programs on the
# interpreter and Cranelift and answers `--tier llvm` with a clear error.
# Built in its own target directory so that it does not replace the
# default build's binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=target/no-llvm
env -u LLVM_SYS_191_PREFIX cargo build --no-default-features --target-dir "$dir" -p bpfvm-cli
bin="$dir/debug/bpfvm"
if ldd "$bin" | grep -qi llvm; then
    echo "check-no-llvm: $bin links LLVM" >&2
    exit 1
fi
for tier in interp cranelift; do
    out=$("$bin" run --tier "$tier" examples/factorial.asm)
    [[ "$out" == "r0 = 0x21c3677c82b40000 (2432902008176640000)" ]] || {
        echo "check-no-llvm: --tier $tier gave: $out" >&2
        exit 1
    }
done
for tier in llvm aot; do
    set +e
    err=$("$bin" run --tier "$tier" examples/factorial.asm 2>&1 >/dev/null)
    rc=$?
    set -e
    [[ $rc == 2 && "$err" == *"$tier support not compiled in"* ]] || {
        echo "check-no-llvm: --tier $tier exited $rc with: $err" >&2
        exit 1
    }
done
echo "check-no-llvm: a Cranelift-only bpfvm builds without LLVM and refuses --tier llvm/aot clearly"
