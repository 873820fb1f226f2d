#!/usr/bin/env python3
"""Wall time per compile of two builds of the `compile_work` example,
alternated, at levels 0 and 1: the median of ROUNDS rounds per program and
level, their ratio (B/A) and the ranges.

    scripts/compile-ab.py ROUNDS BIN_A BIN_B PROGRAM...

BIN_A and BIN_B are builds of bench/examples/compile_work.rs (copy
target/release/examples/compile_work after each build); PROGRAM is what
compile_work takes (a benchmark program's name, gen:SLOTS or asm:FILE).
Each measurement is the mean of 60 compiles (20 for gen:1000, branchy and
straight_line, which take milliseconds). Wall time includes the helper
threads' share of a compile, unlike scripts/compile-work.sh, which counts
every thread's instructions.
"""
import re
import statistics
import subprocess
import sys

LONG = ("gen:1000", "branchy", "straight_line")


def per_compile_us(binary, program, level):
    count = "20" if program.startswith(LONG) else "60"
    out = subprocess.run(
        [binary, program, "--opt", str(level), "--count", count],
        capture_output=True, text=True, check=True,
    ).stderr
    m = re.search(r"O\d: ([\d.]+)(µs|ms|ns|s) per compile", out)
    if not m:
        sys.exit(f"compile-ab: no timing in {out!r}")
    scale = {"ns": 1e-3, "µs": 1.0, "ms": 1e3, "s": 1e6}[m.group(2)]
    return float(m.group(1)) * scale


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    rounds, a, b, programs = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    for program in programs:
        for level in (0, 1):
            ra, rb = [], []
            for _ in range(rounds):
                ra.append(per_compile_us(a, program, level))
                rb.append(per_compile_us(b, program, level))
            ma, mb = statistics.median(ra), statistics.median(rb)
            print(
                f"{program:14} O{level}  A {ma:9.1f} µs  B {mb:9.1f} µs  B/A {mb / ma:5.2f}"
                f"  (A {min(ra):.0f}-{max(ra):.0f}, B {min(rb):.0f}-{max(rb):.0f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
