#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Writes the seed corpus of the elf_loader fuzz target: each fixture of
conformance/fixtures/ and mutated copies (truncations, corrupted section
headers, symbols, relocations and BTF, random byte flips). Deterministic;
run from anywhere, then commit fuzz/corpus/elf_loader/."""

import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "conformance", "fixtures")
OUT = os.path.join(HERE, "corpus", "elf_loader")


def sections(b):
    shoff, = struct.unpack_from("<Q", b, 0x28)
    n, strndx = struct.unpack_from("<HH", b, 0x3C)
    str_off, = struct.unpack_from("<Q", b, shoff + strndx * 64 + 24)
    out = []
    for i in range(n):
        at = shoff + i * 64
        name_off, kind = struct.unpack_from("<II", b, at)
        off, size = struct.unpack_from("<QQ", b, at + 24)
        s = str_off + name_off
        name = b[s:b.index(b"\0", s)].decode()
        out.append(dict(at=at, name=name, kind=kind, offset=off, size=size))
    return out


def sec(b, name):
    return next(s for s in sections(b) if s["name"] == name)


def symbols(b):
    ss = sections(b)
    symtab = next(s for s in ss if s["kind"] == 2)
    strtab = next(s for s in ss if s["name"] == ".strtab")
    out = {}
    for i in range(symtab["size"] // 24):
        at = symtab["offset"] + i * 24
        o = strtab["offset"] + struct.unpack_from("<I", b, at)[0]
        out[b[o:b.index(b"\0", o)].decode()] = at
    return out


def put(b, fmt, at, v):
    b = bytearray(b)
    struct.pack_into(fmt, b, at, v)
    return bytes(b)


def btf_types(b):
    """(offset in file, kind, vlen) of each BTF type."""
    s = sec(b, ".BTF")
    base = s["offset"]
    hdr_len, type_off, type_len = struct.unpack_from("<III", b, base + 4)
    p = base + hdr_len + type_off
    end = p + type_len
    extra = {1: 4, 3: 12, 14: 4, 17: 4}
    per = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
    out = []
    while p < end:
        info, = struct.unpack_from("<I", b, p + 4)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        out.append((p, kind, vlen))
        p += 12 + extra.get(kind, 0) + per.get(kind, 0) * vlen
    return out


def mutations(name, b):
    yield "truncated-0", b""
    for n in (4, 63, 64, 200, len(b) // 2, len(b) - 1):
        yield f"truncated-{n}", b[:n]
    for s in sections(b)[1:]:
        if s["name"].startswith(".debug"):
            continue
        tag = s["name"].strip(".").replace("/", "_") or "null"
        yield f"shsize-huge-{tag}", put(b, "<Q", s["at"] + 32, 1 << 40)
        yield f"shoff-past-end-{tag}", put(b, "<Q", s["at"] + 24, len(b) + 8)
        if s["kind"] == 9:
            yield f"relinfo-bad-{tag}", put(b, "<I", s["at"] + 44, 999)
            yield f"rellink-bad-{tag}", put(b, "<I", s["at"] + 40, 1)
            if s["size"] >= 16:
                r = s["offset"]
                info, = struct.unpack_from("<Q", b, r + 8)
                yield f"reloff-huge-{tag}", put(b, "<Q", r, 1 << 20)
                yield f"reloff-misaligned-{tag}", put(b, "<Q", r, 3)
                yield f"reltype-unknown-{tag}", put(b, "<Q", r + 8, (info & ~0xFFFFFFFF) | 77)
                yield f"relsym-huge-{tag}", put(b, "<Q", r + 8, (9999 << 32) | (info & 0xFFFFFFFF))
    for sym, at in symbols(b).items():
        if not sym or sym.startswith(".") and sym != ".text":
            continue
        yield f"symsize-huge-{sym}", put(b, "<Q", at + 16, 1 << 32)
        yield f"symvalue-huge-{sym}", put(b, "<Q", at + 8, (1 << 64) - 8)
        yield f"symshndx-bad-{sym}", put(b, "<H", at + 6, 0xFEFF)
    types = btf_types(b)
    base = sec(b, ".BTF")["offset"]
    yield "btf-magic", put(b, "<H", base, 0x9FEB)
    yield "btf-typelen-huge", put(b, "<I", base + 12, 0x7FFFFFFF)
    yield "btf-strlen-huge", put(b, "<I", base + 20, 0x7FFFFFFF)
    for i, (at, kind, vlen) in enumerate(types):
        tid = i + 1
        if kind in (2, 8, 9, 10) and "loop" not in name:
            yield f"btf-loop-{tid}", put(b, "<I", at + 8, tid)
            yield f"btf-badid-{tid}", put(b, "<I", at + 8, 1 << 20)
        if kind in (4, 15):
            yield f"btf-vlen-huge-{tid}", put(b, "<I", at + 4, (kind << 24) | 0xFFFF)
        if kind == 3:
            yield f"btf-array-huge-{tid}", put(b, "<I", at + 20, 0xFFFFFFFF)
    rng = random.Random(name)
    for k in range(8):
        m = bytearray(b)
        for _ in range(rng.randint(1, 16)):
            m[rng.randrange(len(m))] = rng.randrange(256)
        yield f"flips-{k}", bytes(m)


def main():
    os.makedirs(OUT, exist_ok=True)
    count = 0
    for f in sorted(os.listdir(FIXTURES)):
        if not f.endswith(".o"):
            continue
        b = open(os.path.join(FIXTURES, f), "rb").read()
        stem = f[:-2]
        open(os.path.join(OUT, f"fixture-{f}"), "wb").write(b)
        count += 1
        # Full mutation sets for one fixture, flips and truncations for all.
        full = stem == "tailcall"
        for tag, data in mutations(stem, b):
            if not full and not tag.startswith(("flips", "truncated")):
                continue
            open(os.path.join(OUT, f"{stem}-{tag}"), "wb").write(data)
            count += 1
    print(f"wrote {count} files to {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
