//! Malformed objects give typed errors naming the section and the offset,
//! never a panic: truncated files, sections and symbols past the end,
//! relocations out of range or of unknown types, BTF with loops or bad ids.

use bpfvm_engine::elf::btf::{Btf, TypeKind};
use bpfvm_engine::elf::{self, BtfError, ElfError, Reason};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../conformance/fixtures/{name}.o",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn put_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// A section header's position and fields, read by hand.
struct Shdr {
    /// File offset of the header itself.
    at: usize,
    name: String,
    kind: u32,
    offset: usize,
    size: usize,
}

fn sections(b: &[u8]) -> Vec<Shdr> {
    let shoff = u64_at(b, 0x28) as usize;
    let n = u16_at(b, 0x3c) as usize;
    let strndx = u16_at(b, 0x3e) as usize;
    let hdr = |i: usize| shoff + i * 64;
    let str_off = u64_at(b, hdr(strndx) + 24) as usize;
    (0..n)
        .map(|i| {
            let at = hdr(i);
            let name_off = str_off + u32_at(b, at) as usize;
            let end = b[name_off..].iter().position(|&c| c == 0).unwrap();
            Shdr {
                at,
                name: String::from_utf8_lossy(&b[name_off..name_off + end]).into_owned(),
                kind: u32_at(b, at + 4),
                offset: u64_at(b, at + 24) as usize,
                size: u64_at(b, at + 32) as usize,
            }
        })
        .collect()
}

fn section<'a>(s: &'a [Shdr], name: &str) -> &'a Shdr {
    s.iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

/// File offset of symbol `name`'s `Elf64_Sym`.
fn symbol(b: &[u8], name: &str) -> usize {
    let s = sections(b);
    let symtab = s.iter().find(|h| h.kind == 2).unwrap();
    let strtab = section(&s, ".strtab");
    (0..symtab.size / 24)
        .map(|i| symtab.offset + i * 24)
        .find(|&at| {
            let o = strtab.offset + u32_at(b, at) as usize;
            b[o..].starts_with(name.as_bytes()) && b[o + name.len()] == 0
        })
        .unwrap_or_else(|| panic!("no symbol {name}"))
}

fn reason(e: ElfError) -> (String, u64, Reason) {
    match e {
        ElfError::At {
            section,
            offset,
            reason,
        } => (section, offset, reason),
        e => panic!("expected a section error, got {e:?}"),
    }
}

#[test]
fn fixtures_load() {
    for name in [
        "legacy_maps",
        "xdp_counter",
        "hash_count",
        "ringbuf",
        "calls",
        "tailcall",
        "printk",
        "loop",
    ] {
        elf::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_truncation_is_an_error() {
    let good = fixture("tailcall");
    for len in 0..good.len() {
        assert!(
            elf::parse(&good[..len]).is_err(),
            "truncated to {len} bytes"
        );
    }
    assert!(matches!(
        elf::parse(&good[..40]),
        Err(ElfError::Container(_))
    ));
}

#[test]
fn section_size_past_the_end() {
    let mut b = fixture("calls");
    let text = section(&sections(&b), "socket/squares").at;
    put_u64(&mut b, text + 32, 1 << 40);
    let (s, off, r) = reason(elf::parse(&b).unwrap_err());
    assert_eq!((s.as_str(), off), ("socket/squares", 0));
    assert!(
        matches!(r, Reason::SectionOutOfFile { size, .. } if size == 1 << 40),
        "{r}"
    );
}

#[test]
fn symbol_size_past_the_end() {
    let mut b = fixture("tailcall");
    let sym = symbol(&b, "stage1");
    put_u64(&mut b, sym + 16, 4096);
    let e = elf::parse(&b).unwrap_err();
    assert_eq!(
        e.to_string(),
        "section `socket/stage1` at offset 0x0: symbol `stage1` (4096 bytes at 0x0) lies outside the section of 88 bytes"
    );
    // A symbol value past the end too, and a misaligned one.
    let mut b = fixture("tailcall");
    put_u64(&mut b, sym + 8, u64::MAX - 4);
    assert!(matches!(
        reason(elf::parse(&b).unwrap_err()).2,
        Reason::SymbolOutOfRange { .. }
    ));
    let mut b = fixture("tailcall");
    put_u64(&mut b, sym + 16, 84);
    assert!(matches!(
        reason(elf::parse(&b).unwrap_err()).2,
        Reason::Misaligned { .. }
    ));
}

#[test]
fn map_symbol_past_the_end() {
    let mut b = fixture("tailcall");
    let sym = symbol(&b, "visits");
    put_u64(&mut b, sym + 8, 0x1000);
    let (s, off, r) = reason(elf::parse(&b).unwrap_err());
    assert_eq!((s.as_str(), off), (".maps", 0x1000));
    assert!(matches!(r, Reason::SymbolOutOfRange { .. }), "{r}");
}

#[test]
fn relocation_offset_out_of_range() {
    let mut b = fixture("tailcall");
    let rel = section(&sections(&b), ".relsocket/entry").offset;
    put_u64(&mut b, rel, 0x10_0000);
    let (s, off, r) = reason(elf::parse(&b).unwrap_err());
    assert_eq!((s.as_str(), off), (".relsocket/entry", 0));
    assert_eq!(
        r,
        Reason::RelocOutOfRange {
            offset: 0x10_0000,
            size: 128
        }
    );
    // Misaligned.
    let mut b = fixture("tailcall");
    put_u64(&mut b, rel + 16, 0x21);
    let (s, off, r) = reason(elf::parse(&b).unwrap_err());
    assert_eq!((s.as_str(), off), (".relsocket/entry", 16));
    assert!(matches!(r, Reason::Misaligned { .. }), "{r}");
}

#[test]
fn unknown_relocation_type() {
    let mut b = fixture("tailcall");
    let rel = section(&sections(&b), ".relsocket/entry").offset;
    let info = u64_at(&b, rel + 8);
    put_u64(&mut b, rel + 8, (info & !0xffff_ffff) | 77);
    let (s, off, r) = reason(elf::parse(&b).unwrap_err());
    assert_eq!((s.as_str(), off), ("socket/entry", 0x10));
    assert_eq!(r, Reason::UnknownRelocType(77));
}

#[test]
fn relocation_symbol_out_of_range() {
    let mut b = fixture("tailcall");
    let rel = section(&sections(&b), ".relsocket/entry").offset;
    put_u64(&mut b, rel + 8, (9999u64 << 32) | 10);
    let (s, _, r) = reason(elf::parse(&b).unwrap_err());
    assert_eq!(s, ".relsocket/entry");
    assert_eq!(r, Reason::BadSymbolIndex(9999));
}

#[test]
fn wrong_relocation_type_for_the_instruction() {
    // The call relocation retyped as R_BPF_64_64.
    let mut b = fixture("tailcall");
    let rel = section(&sections(&b), ".relsocket/entry").offset;
    let info = u64_at(&b, rel + 8);
    put_u64(&mut b, rel + 8, (info & !0xffff_ffff) | 1);
    let (_, off, r) = reason(elf::parse(&b).unwrap_err());
    assert_eq!(off, 0x10);
    assert!(matches!(r, Reason::BadReloc { r_type: 1, .. }), "{r}");
}

/// The `.BTF` section and a parsed copy.
fn btf_of(b: &[u8]) -> (usize, Btf) {
    let s = sections(b);
    let btf = section(&s, ".BTF");
    (
        btf.offset,
        Btf::parse(&b[btf.offset..btf.offset + btf.size]).unwrap(),
    )
}

#[test]
fn btf_loop() {
    let mut b = fixture("tailcall");
    let (base, btf) = btf_of(&b);
    let id = (1..=btf.len() as u32)
        .find(|&i| matches!(btf.get(i).unwrap().kind, TypeKind::Typedef { .. }))
        .unwrap();
    let at = base + btf.get(id).unwrap().offset as usize;
    put_u32(&mut b, at + 8, id);
    match elf::parse(&b).unwrap_err() {
        ElfError::Btf(BtfError::Loop { id: got, offset }) => {
            assert_eq!((got, offset), (id, btf.get(id).unwrap().offset));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn btf_bad_type_id() {
    let mut b = fixture("xdp_counter");
    let (base, btf) = btf_of(&b);
    let id = (1..=btf.len() as u32)
        .find(|&i| matches!(btf.get(i).unwrap().kind, TypeKind::Ptr { .. }))
        .unwrap();
    let at = base + btf.get(id).unwrap().offset as usize;
    put_u32(&mut b, at + 8, 100_000);
    let e = elf::parse(&b).unwrap_err();
    assert!(
        matches!(
            e,
            ElfError::Btf(BtfError::BadTypeId {
                target: 100_000,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with("section `.BTF`: offset 0x"),
        "{e}"
    );
}

#[test]
fn btf_header_past_the_end() {
    let mut b = fixture("xdp_counter");
    let (base, _) = btf_of(&b);
    put_u32(&mut b, base + 12, 0x7fff_0000); // type_len
    assert!(matches!(
        elf::parse(&b),
        Err(ElfError::Btf(BtfError::OutOfBounds {
            what: "type section",
            ..
        }))
    ));
}

#[test]
fn every_byte_flip_is_handled() {
    // A sweep of corruptions: each must be Ok or a typed error, never a panic.
    let good = fixture("loop");
    for i in (0..good.len()).step_by(3) {
        for v in [0x00u8, 0xff, 0x80] {
            let mut b = good.clone();
            b[i] ^= v | 1;
            let _ = elf::parse(&b);
        }
    }
}

#[test]
fn legacy_map_definitions_are_checked() {
    // A legacy map symbol placed past the end of `maps`.
    let mut b = fixture("legacy_maps");
    let sym = symbol(&b, "legacy_hash");
    put_u64(&mut b, sym + 8, 0x100);
    let (s, off, r) = reason(elf::parse(&b).unwrap_err());
    assert_eq!((s.as_str(), off), ("maps", 0x100));
    assert!(matches!(r, Reason::SymbolOutOfRange { .. }), "{r}");
}
