#!/usr/bin/env python3
"""A/B of two (or more) bpfvm builds on the benchmark programs.

    scripts/bench-ab.py [--rounds N] [--tier T] [--unchecked] BIN_A BIN_B ...

Runs `BIN bench bench/programs/*.bpf.o --tiers T --time 0.3 --json` for each
binary in turn, N rounds (default 5), so that changes in the machine's load
spread over all of them. Prints, per program, the median over the rounds of
the ratio to native, then each round's geometric mean and the geometric
mean of the medians (the trivial `nop` left out, as `bpfvm bench` does).
Then the tier's own median run time per program and, per binary, the
geometric mean of its times over the first binary's: across builds,
compare these. Each build links the native baseline at other addresses,
and its speed moves with that (native memcmp took 2.8 us in one build and
5.8 us in another, in one run), so ratios to native compare binaries
only as well as their native code happens to be placed.

Tier 0's times also move with the address layout of each process: bitops
took 3.8-7.0 us over eight processes, and 3.75-3.90 us under `setarch -R`.
`--no-aslr` runs every binary that way: less spread between rounds, but
one layout per binary, which may favour one of them.
"""
import argparse
import glob
import json
import math
import os
import statistics
import subprocess

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--tier", default="cranelift")
ap.add_argument("--unchecked", action="store_true")
ap.add_argument("--no-aslr", action="store_true",
                help="run each binary under `setarch -R`: one fixed address layout")
ap.add_argument("bins", nargs="+")
args = ap.parse_args()

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
progs = sorted(glob.glob(os.path.join(root, "bench/programs/*.bpf.o")))
extra = ["--unchecked"] if args.unchecked else []
prefix = ["setarch", "-R"] if args.no_aslr else []
res = {b: {} for b in args.bins}
times = {b: {} for b in args.bins}
for _ in range(args.rounds):
    for b in args.bins:
        out = subprocess.run(
            [*prefix, b, "bench", *progs, "--tiers", args.tier, "--time", "0.3", "--json", *extra],
            capture_output=True, text=True, check=True,
        ).stdout
        for line in out.splitlines():
            d = json.loads(line)
            if d["program"] == "nop":
                continue
            t = d["tiers"][args.tier]
            res[b].setdefault(d["program"], []).append(t["ratio_native"])
            times[b].setdefault(d["program"], []).append(t["run_ns_median"])


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


names = sorted(res[args.bins[0]])
print("%-16s" % "program" + "".join("%14s" % f"bin {i}" for i in range(len(args.bins))))
for n in names:
    print("%-16s" % n + "".join("%14.2f" % statistics.median(res[b][n]) for b in args.bins))
for r in range(args.rounds):
    print("%-16s" % f"geomean round {r}"
          + "".join("%14.3f" % geomean([res[b][n][r] for n in names]) for b in args.bins))
print("%-16s" % "geomean(median)"
      + "".join("%14.3f" % geomean([statistics.median(res[b][n]) for n in names]) for b in args.bins))
print()
print("%-16s" % f"{args.tier} ns" + "".join("%14s" % f"bin {i}" for i in range(len(args.bins))))
for n in names:
    print("%-16s" % n + "".join("%14.0f" % statistics.median(times[b][n]) for b in args.bins))
base = args.bins[0]
print("%-16s" % "time / bin 0"
      + "".join("%14.3f" % geomean([statistics.median(times[b][n]) / statistics.median(times[base][n])
                                    for n in names]) for b in args.bins))
for i, b in enumerate(args.bins):
    print(f"bin {i}: {b}")
