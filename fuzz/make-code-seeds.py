#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Writes the seed corpora of the verifier, assembler and execution fuzz
targets from the project's own test vectors (conformance/corpus and
conformance/hostile; the public suite's vectors are not copied): the
`-- asm` text of each (assembler) and its bytecode, assembled by
`bpfvm asm` (verifier; the execution seeds are the vector's `-- mem`,
zero padded to 64 bytes, then the code). Deterministic; run from anywhere after
`cargo build --release --bins`, then commit fuzz/corpus/."""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
BPFVM = os.path.join(ROOT, "target", "release", "bpfvm")


def sections(text):
    out, name = {}, None
    for line in text.splitlines():
        m = re.match(r"^-- (\w+)", line)
        if m:
            name = m.group(1)
            out[name] = []
        elif name:
            out[name].append(line)
    return {k: "\n".join(v) + "\n" for k, v in out.items()}


def main():
    dirs = {t: os.path.join(HERE, "corpus", t) for t in ("verifier", "assembler", "execution")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    count = 0
    for sub in ("corpus", "hostile"):
        src = os.path.join(ROOT, "conformance", sub)
        for name in sorted(os.listdir(src)):
            if not name.endswith(".data"):
                continue
            s = sections(open(os.path.join(src, name)).read())
            if "asm" not in s:
                continue
            stem = f"{sub}-{name[:-5]}"
            with open(os.path.join(dirs["assembler"], stem + ".asm"), "w") as f:
                f.write(s["asm"])
            r = subprocess.run([BPFVM, "asm", "--format", "asm", "-", "-o", "/dev/stdout"],
                               input=s["asm"].encode(), capture_output=True)
            if r.returncode != 0:
                continue
            code = r.stdout
            with open(os.path.join(dirs["verifier"], stem + ".bin"), "wb") as f:
                f.write(code)
            mem = bytes.fromhex("".join(s.get("mem", "").split()))
            with open(os.path.join(dirs["execution"], stem + ".bin"), "wb") as f:
                f.write(mem[:64].ljust(64, b"\0") + code)
            count += 1
    print(f"{count} vectors written to {', '.join(sorted(dirs))}", file=sys.stderr)


main()
