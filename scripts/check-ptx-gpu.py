#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Runs programs as PTX kernels on an NVIDIA GPU and compares every thread
with the interpreter: its r0 (or trap) and its slice of memory afterwards.

    scripts/check-ptx-gpu.py [--sm sm_90] [--threads 256] [--len 256] [PROGRAM ...]

Needs an NVIDIA driver (libcuda.so.1) and a C compiler; builds
backends/llvm/gpu/run_ptx.c and uses target/release/bpfvm (run
`cargo build --release --bins` first). Without PROGRAM arguments it runs
the benchmark programs that call no helpers. Each thread's memory is
deterministic pseudo-random bytes. Exit status 0 when every thread of every
program agrees, 1 otherwise, 2 when the GPU cannot be used.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BPFVM = os.path.join(ROOT, "target", "release", "bpfvm")
RUNNER_SRC = os.path.join(ROOT, "backends", "llvm", "gpu", "run_ptx.c")
DEFAULT_PROGRAMS = [
    "alu_mix", "bitops", "branchy", "calls", "crc32", "divmod", "fnv1a",
    "memcmp", "memcpy", "search", "sort", "straight_line", "switch",
]


def detect_sm():
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
        capture_output=True, text=True, check=True).stdout.split()[0]
    major, minor = out.split(".")
    # LLVM 19 knows architectures up to sm_90.
    return "sm_%d%d" % (min(int(major), 9), int(minor) if int(major) <= 9 else 0)


def interp(program, mem):
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(mem)
        f.flush()
        r = subprocess.run([BPFVM, "run", program, "--tier", "interp", "--mem", f.name,
                            "--dump-mem", "--json"], capture_output=True, text=True)
    v = json.loads(r.stdout)
    out_mem = bytes.fromhex(v.get("mem", "")) if "mem" in v else mem
    return ("trap" if "trap" in v else v["result"]), out_mem


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sm")
    ap.add_argument("--threads", type=int, default=256)
    ap.add_argument("--len", type=int, default=256)
    ap.add_argument("programs", nargs="*")
    args = ap.parse_args()
    programs = args.programs or [
        os.path.join(ROOT, "bench", "programs", p + ".bpf.o") for p in DEFAULT_PROGRAMS]
    try:
        sm = args.sm or detect_sm()
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError) as e:
        print(f"check-ptx-gpu: no GPU found ({e})", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="bpfvm-ptx-")
    runner = os.path.join(work, "run_ptx")
    subprocess.run(["cc", "-O2", "-o", runner, RUNNER_SRC, "-ldl"], check=True)
    failures = 0
    for program in programs:
        name = os.path.basename(program)
        rng = random.Random(name)
        per, n = args.len, args.threads
        mem = bytes(rng.getrandbits(8) for _ in range(per * n))
        ptx = os.path.join(work, "kernel.ptx")
        with open(ptx, "w") as f:
            subprocess.run([BPFVM, "emit", "ptx", program, "--sm", sm], stdout=f, check=True)
        mem_in, mem_out = os.path.join(work, "mem.bin"), os.path.join(work, "mem.out")
        with open(mem_in, "wb") as f:
            f.write(mem)
        r = subprocess.run([runner, ptx, mem_in, str(per), str(n), mem_out],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name}: {r.stderr.strip()}", file=sys.stderr)
            return 2
        gpu = r.stdout.split()
        gpu_mem = open(mem_out, "rb").read()
        bad = 0
        for i in range(n):
            want, want_mem = interp(program, mem[i * per:(i + 1) * per])
            got = gpu[i] if gpu[i] == "trap" else int(gpu[i])
            same = got == want or (got == "trap" and want == 2**64 - 1)
            if not same or gpu_mem[i * per:(i + 1) * per] != want_mem:
                bad += 1
                if bad <= 3:
                    what = "memory differs" if same else f"GPU {got}, interpreter {want}"
                    print(f"{name}: thread {i}: {what}")
        print(f"{name}: {n - bad}/{n} threads agree ({sm})")
        failures += bad > 0
    return 1 if failures else 0


sys.exit(main())
