#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Runs the whole test suite: unit tests, the CLI and plugin tests, and the
# conformance suites (public + corpus) on every tier compiled in.
# Extra arguments go to `cargo test` (e.g. `-- corpus` to filter).
# The public suite is read from ../shared/bpf_conformance/tests or from
# $BPF_CONFORMANCE_TESTS.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
. scripts/env.sh

# --no-fail-fast: every failing test binary is reported, not just the first.
cargo test --workspace --no-fail-fast "$@"
./scripts/check-no-llvm.sh
