#!/usr/bin/env bash
# Instructions executed per compile, counted by valgrind (cachegrind):
# unlike a timer, the same on a loaded machine and in every address layout,
# so that two builds' compile work can be compared in one number each.
#
#   scripts/compile-work.sh BIN PROGRAM [compile_work options]
#
# BIN is a build of bench/examples/compile_work.rs
# (`cargo build --release -p bpfvm-bench --example compile_work`, then
# target/release/examples/compile_work; copy it to compare two commits).
# The count is (11 compiles − 1 compile) ÷ 10, which leaves out the
# process's start and the first compile's one-time costs (the host ISA,
# the check trampoline).
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
command -v valgrind >/dev/null || { echo "compile-work.sh: needs valgrind" >&2; exit 1; }
bin=$1
shift
# Natively first: a bad program or option shows its own error.
"$bin" "$@" --count 1 2>/dev/null || { "$bin" "$@" --count 1; exit 1; }
count() {
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        "$bin" "$@" 2>&1 | awk '/I *refs/ { gsub(",", "", $NF); print $NF }'
}
one=$(count "$@" --count 1)
eleven=$(count "$@" --count 11)
if [ -z "$one" ] || [ -z "$eleven" ]; then
    echo "compile-work.sh: $bin $* did not run" >&2
    exit 1
fi
echo $(( (eleven - one) / 10 ))
