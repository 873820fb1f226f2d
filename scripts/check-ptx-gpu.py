#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Runs programs as PTX kernels on an NVIDIA GPU and compares every thread
with the interpreter: its r0 (or trap) and its slice of memory afterwards.

    scripts/check-ptx-gpu.py [OPTIONS] [PROGRAM ...]          # both steps here
    scripts/check-ptx-gpu.py prepare BUNDLE [OPTIONS] [PROGRAM ...]
    scripts/check-ptx-gpu.py run BUNDLE                       # on the GPU machine

`prepare` needs target/release/bpfvm (`cargo build --release --bins`) and no
GPU: it writes each case's PTX (`bpfvm emit ptx`), its input memory and the
interpreter's result and memory for every thread into BUNDLE. `run` needs
only python3, a C compiler and an NVIDIA driver (libcuda.so.1): it builds
backends/llvm/gpu/run_ptx.c, runs every kernel in one CUDA context and
compares. So a GPU machine without LLVM or Rust can do the second step.

The cases:
  * PROGRAM files, or by default the benchmark programs that call no
    helpers, over THREADS threads with pseudo-random memory of LEN bytes
    each, compiled checked and unchecked;
  * with --conformance DIR (repeatable), every .data test there that compiles to PTX (no
    helper calls), 32 threads on copies of its memory, checked;
  * with --generated N, N programs of `bpfvm gen --no-helpers` (those the
    fuzzer makes: boundary-value ALU, memory in and out of bounds, atomics,
    loops, local calls) checked, and N in-bounds ones unchecked,
    32 threads each.

Exit status 0 when every thread of every case agrees, 1 otherwise, 2 when
the GPU cannot be used.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BPFVM = os.path.join(ROOT, "target", "release", "bpfvm")
RUNNER_SRC = os.path.join(ROOT, "backends", "llvm", "gpu", "run_ptx.c")
# alu_mix is left out: its fixed loop takes a minute per input in the
# interpreter (and would hold a GPU thread about as long).
DEFAULT_PROGRAMS = [
    "bitops", "branchy", "calls", "crc32", "divmod", "fnv1a",
    "memcmp", "memcpy", "search", "sort", "straight_line", "switch",
]
TRAP = "trap"
U64_MAX = 2**64 - 1
SAME_INPUT_THREADS = 32


def detect_sm():
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
        capture_output=True, text=True, check=True).stdout.split()[0]
    major, minor = out.split(".")
    # LLVM 19 knows architectures up to sm_90.
    return "sm_%d%d" % (min(int(major), 9), int(minor) if int(major) <= 9 else 0)


def interp(program, mem=None):
    """The interpreter's (result or TRAP, memory after) on `mem`, or on the
    program's own memory (a .data file's) when `mem` is None."""
    cmd = [BPFVM, "run", program, "--tier", "interp", "--dump-mem", "--json"]
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        if mem is not None:
            f.write(mem)
            f.flush()
            cmd += ["--mem", f.name]
        r = subprocess.run(cmd, capture_output=True, text=True)
    try:
        v = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise NotRunnable((r.stderr.strip().splitlines() or ["no output"])[-1])
    out_mem = bytes.fromhex(v["mem"]) if "mem" in v else (mem or b"")
    return (TRAP if "trap" in v else v["result"]), out_mem


class NotRunnable(Exception):
    """The interpreter did not run the program (the verifier rejected it)."""


def data_mem(path):
    """The `-- mem` sections of a .data file, as bytes, read by the rules
    of conformance/src/data.rs: a line containing `--` starts a section
    (the first of asm, result, mem, raw, ... that it names), `#` starts a
    comment, bytes are hex tokens of one or two digits with an optional
    0x."""
    order = ["asm", "result", "mem", "raw", "no register offset", " c", "error", "options"]
    section, out = None, bytearray()
    for line in open(path).read().splitlines():
        if "--" in line:
            section = next((k for k in order if k in line), None)
            continue
        if section != "mem":
            continue
        for token in line.split("#")[0].split():
            digits = token[2:] if token[:2] in ("0x", "0X") else token
            if not 1 <= len(digits) <= 2:
                raise NotRunnable(f"bad memory byte {token!r}")
            out.append(int(digits, 16))
    return bytes(out)


def emit_ptx(program, sm, unchecked, out):
    cmd = [BPFVM, "emit", "ptx", program, "--sm", sm] + (["--unchecked"] if unchecked else [])
    with open(out, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE, text=True)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["failed"])[-1]


def prepare(bundle, args):
    os.makedirs(bundle, exist_ok=True)
    sm = args.sm or "sm_90"
    cases, skipped = [], []

    def add(name, program, unchecked, mem, per, n, want, group):
        i = len(cases)
        ptx = f"case{i}.ptx"
        why = emit_ptx(program, sm, unchecked, os.path.join(bundle, ptx))
        if why:
            os.remove(os.path.join(bundle, ptx))
            skipped.append({"name": name, "group": group, "why": why})
            return
        with open(os.path.join(bundle, f"case{i}.mem"), "wb") as f:
            f.write(mem)
        with open(os.path.join(bundle, f"case{i}.want"), "wb") as f:
            f.write(b"".join(m for _, m in want))
        cases.append({"name": name, "group": group, "ptx": ptx, "mem": f"case{i}.mem",
                      "want_mem": f"case{i}.want", "per": per, "threads": n,
                      "want": [r for r, _ in want], "unchecked": unchecked})

    programs = args.programs or [
        os.path.join(ROOT, "bench", "programs", p + ".bpf.o") for p in DEFAULT_PROGRAMS]
    for program in programs:
        name = os.path.basename(program)
        rng = random.Random(name)
        per, n = args.len, args.threads
        mem = bytes(rng.getrandbits(8) for _ in range(per * n))
        want = [interp(program, mem[i * per:(i + 1) * per]) for i in range(n)]
        for unchecked in (False, True):
            add(name, program, unchecked, mem, per, n, want, "programs")

    def same_input(path, group, unchecked):
        try:
            mem = data_mem(path)
            result, out = interp(path)
        except NotRunnable as e:
            skipped.append({"name": os.path.basename(path), "group": group, "why": str(e)})
            return
        n = SAME_INPUT_THREADS
        add(os.path.basename(path), path, unchecked, mem * n, len(mem), n,
            [(result, out)] * n, group)

    for d in args.conformance:
        for f in sorted(os.listdir(d)):
            if f.endswith(".data"):
                same_input(os.path.join(d, f), "conformance", False)
    if args.generated:
        for unchecked in (False, True):
            d = os.path.join(bundle, "gen-unchecked" if unchecked else "gen-checked")
            shutil.rmtree(d, ignore_errors=True)
            subprocess.run([BPFVM, "gen", "--seed", str(args.seed), "--count",
                            str(args.generated), "--no-helpers", "-o", d]
                           + (["--unchecked"] if unchecked else []),
                           check=True, capture_output=True)
            for k in range(args.generated):
                same_input(os.path.join(d, f"gen-seed-{args.seed + k}.data"),
                           "generated, unchecked" if unchecked else "generated, checked",
                           unchecked)
    with open(os.path.join(bundle, "manifest.json"), "w") as f:
        json.dump({"sm": sm, "cases": cases, "skipped": skipped}, f)
    groups = {}
    for c in cases:
        groups[c["group"]] = groups.get(c["group"], 0) + 1
    print(f"prepared {len(cases)} kernels for {sm} in {bundle}: "
          + ", ".join(f"{g} {k}" for g, k in groups.items())
          + f"; {len(skipped)} not compilable to PTX")
    for s in skipped:
        print(f"  skipped {s['group']} {s['name']}: {s['why']}")
    return 0


def run(bundle):
    manifest = json.load(open(os.path.join(bundle, "manifest.json")))
    for f in os.listdir(bundle):
        if f.startswith("got"):
            os.remove(os.path.join(bundle, f))
    runner = os.path.join(bundle, "run_ptx")
    subprocess.run(["cc", "-O2", "-o", runner, RUNNER_SRC, "-ldl"], check=True)
    lines = []
    for i, c in enumerate(manifest["cases"]):
        lines.append(" ".join([os.path.join(bundle, c["ptx"]), os.path.join(bundle, c["mem"]),
                               str(c["per"]), str(c["threads"]),
                               os.path.join(bundle, f"got{i}.txt"),
                               os.path.join(bundle, f"got{i}.mem")]))
    with open(os.path.join(bundle, "batch.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run([runner, "--batch", os.path.join(bundle, "batch.txt")],
                       stderr=subprocess.PIPE, text=True)
    if r.stderr:
        print(r.stderr.strip(), file=sys.stderr)
    if r.returncode not in (0, 1):
        print(f"check-ptx-gpu: run_ptx stopped (status {r.returncode})", file=sys.stderr)
        return 2
    failures, threads, by_group = 0, 0, {}
    for i, c in enumerate(manifest["cases"]):
        label = f"{c['name']} ({'unchecked' if c['unchecked'] else 'checked'})"
        g = by_group.setdefault(c["group"], [0, 0])
        g[1] += 1
        try:
            got = open(os.path.join(bundle, f"got{i}.txt")).read().split()
            got_mem = open(os.path.join(bundle, f"got{i}.mem"), "rb").read()
        except OSError:
            print(f"{label}: did not run")
            failures += 1
            continue
        want_mem = open(os.path.join(bundle, c["want_mem"]), "rb").read()
        per, bad = c["per"], 0
        for t in range(c["threads"]):
            want = c["want"][t]
            g_r = got[t] if got[t] == TRAP else int(got[t])
            same = g_r == want or (g_r == TRAP and want == U64_MAX)
            if not same or got_mem[t * per:(t + 1) * per] != want_mem[t * per:(t + 1) * per]:
                bad += 1
                if bad <= 3:
                    what = "memory differs" if same else f"GPU {g_r}, interpreter {want}"
                    print(f"{label}: thread {t}: {what}")
        threads += c["threads"]
        if bad:
            failures += 1
        else:
            g[0] += 1
        if c["group"] == "programs":
            print(f"{label}: {c['threads'] - bad}/{c['threads']} threads agree")
    for group, (ok, total) in by_group.items():
        print(f"{group}: {ok}/{total} kernels agree on every thread")
    print(f"{len(manifest['cases'])} kernels, {threads} threads on {manifest['sm']}, "
          f"{failures} kernels differ; {len(manifest['skipped'])} cases not compilable to PTX")
    return 1 if failures else 0


def main():
    argv = sys.argv[1:]
    step = argv.pop(0) if argv and argv[0] in ("prepare", "run") else None
    ap = argparse.ArgumentParser()
    if step:
        ap.add_argument("bundle")
    ap.add_argument("--sm")
    ap.add_argument("--threads", type=int, default=256)
    ap.add_argument("--len", type=int, default=256)
    ap.add_argument("--conformance", metavar="DIR", action="append", default=[])
    ap.add_argument("--generated", type=int, default=0, metavar="N")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("programs", nargs="*")
    args = ap.parse_intermixed_args(argv)
    if step == "prepare":
        return prepare(args.bundle, args)
    if step == "run":
        return run(args.bundle)
    try:
        args.sm = args.sm or detect_sm()
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError) as e:
        print(f"check-ptx-gpu: no GPU found ({e})", file=sys.stderr)
        return 2
    bundle = tempfile.mkdtemp(prefix="bpfvm-ptx-")
    prepare(bundle, args)
    return run(bundle)


sys.exit(main())
