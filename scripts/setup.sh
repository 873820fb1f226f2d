#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Installs what bpfvm needs to build and test on Debian 12, if it is missing:
# LLVM 19 (for the llvm tier), clang 19 (for eBPF C fixtures), a C toolchain.
# Idempotent: packages that dpkg reports as installed are skipped, and
# nothing is installed when nothing is missing. Checks that cargo exists.
# Exports nothing permanent; source it or not, as you like.
set -euo pipefail

PACKAGES=(llvm-19-dev libpolly-19-dev libzstd-dev clang-19 build-essential pkg-config)

log() { printf 'setup: %s\n' "$*" >&2; }

missing=()
if command -v dpkg >/dev/null 2>&1; then
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
            missing+=("$pkg")
        fi
    done
else
    log "dpkg not found: not a Debian system; install these yourself: ${PACKAGES[*]}"
fi

if ((${#missing[@]} > 0)); then
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            log "need root (or sudo) to install: ${missing[*]}"
            exit 1
        fi
    fi
    log "installing: ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "system packages present"
fi

# Rust: the toolchain is expected to be installed with rustup.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found. Install Rust 1.95 or newer with rustup:"
    log "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
    log "then open a new shell (or run: . \"\$HOME/.cargo/env\") and run this script again."
    exit 1
fi
log "$(cargo --version)"
