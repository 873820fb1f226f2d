# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Environment for building bpfvm, sourced by the other scripts (not a
# permanent change: it affects only the shell that sources it).

# inkwell's llvm-sys finds LLVM 19 here.
export LLVM_SYS_191_PREFIX="${LLVM_SYS_191_PREFIX:-/usr/lib/llvm-19}"
# rustup's cargo, when the shell's PATH does not have it yet.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
