//! Program input: detects the format of a file and turns it into
//! instruction slots (plus input memory and options for `.data` files).
//!
//! Formats, in the order they are recognised:
//!
//! 1. ELF (starts with `\x7fELF`): a program of a `clang -target bpf`
//!    object, chosen by function or section name, linked with the `.text`
//!    functions it calls and relocated (see `bpfvm::engine::elf`). Its map
//!    and global-data `lddw`s only resolve through `bpfvm::object`, which
//!    `bpfvm run` and `bpfvm verify` use for objects.
//! 2. UTF-8 text without NUL bytes:
//!    * a conformance `.data` file (it has a `-- asm` or `-- raw` header):
//!      its program, memory and `-- options`;
//!    * hex bytes (`b7 00 00 00 ...`, optionally `0x`-prefixed per byte);
//!    * otherwise assembler text in the conformance syntax.
//! 3. Anything else: raw bytecode, 8 bytes per instruction slot.

use std::fmt;

use bpfvm::engine::asm::{self, AsmError};
use bpfvm::engine::elf::{self, ElfError};
use bpfvm::engine::isa::{decode_program, Insn, TruncatedBytecode, INSN_SIZE};
use bpfvm_conformance::data::{self, CaseOptions, ParseError};

use crate::hex::{self, HexError};

/// An input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A BPF ELF object.
    Elf,
    /// A conformance `.data` file.
    Data,
    /// Hex bytes.
    Hex,
    /// Assembler text.
    Asm,
    /// Raw bytecode.
    Raw,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Elf => "elf",
            Format::Data => "data",
            Format::Hex => "hex",
            Format::Asm => "asm",
            Format::Raw => "raw",
        })
    }
}

/// A loaded program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub format: Format,
    pub insns: Vec<Insn>,
    /// Input memory that came with the program (a `.data` file's `-- mem`).
    pub mem: Option<Vec<u8>>,
    /// Options that came with the program (a `.data` file's `-- options`).
    pub options: CaseOptions,
    /// The ELF section the program came from.
    pub section: Option<String>,
}

/// Why an input could not be turned into a program.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Object(#[from] ElfError),
    #[error("the ELF object has no programs")]
    NoPrograms,
    #[error("the ELF object has several programs, choose one with --prog: {0}")]
    AmbiguousProgram(String),
    #[error("--prog selects a program in an ELF object, but the input is {0}")]
    ProgNeedsElf(Format),
    #[error("pc {pc}: {0}", pc = .0.offset / INSN_SIZE)]
    Truncated(#[from] TruncatedBytecode),
    #[error(transparent)]
    Hex(#[from] HexError),
    #[error("assembler: {0}")]
    Asm(#[from] AsmError),
    #[error(".data file: {0}")]
    Data(#[from] ParseError),
    #[error(".data file has no `-- asm` or `-- raw` section")]
    DataWithoutProgram,
    #[error("input is not UTF-8 text, so it cannot be read as {0}")]
    NotText(Format),
}

impl InputError {
    /// Whether the error is the user's choice of options rather than the
    /// content of the input.
    pub fn is_usage(&self) -> bool {
        matches!(self, InputError::ProgNeedsElf(_) | InputError::NotText(_))
    }
}

/// Guesses the format of `bytes`.
pub fn detect(bytes: &[u8]) -> Format {
    if bytes.starts_with(b"\x7fELF") {
        return Format::Elf;
    }
    match text_of(bytes) {
        Some(text) if data::is_data_file(text) => Format::Data,
        Some(text) if hex::looks_like_hex(text) => Format::Hex,
        Some(_) => Format::Asm,
        None => Format::Raw,
    }
}

/// The input as text, when it is UTF-8 without NUL bytes.
fn text_of(bytes: &[u8]) -> Option<&str> {
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// Loads a program from `bytes`, in `format` or the detected one. `prog`
/// picks a program of an ELF object by section or function name.
pub fn load(
    bytes: &[u8],
    format: Option<Format>,
    prog: Option<&str>,
) -> Result<Loaded, InputError> {
    let format = format.unwrap_or_else(|| detect(bytes));
    if prog.is_some() && format != Format::Elf {
        return Err(InputError::ProgNeedsElf(format));
    }
    let loaded = |insns, mem, options, section| Loaded {
        format,
        insns,
        mem,
        options,
        section,
    };
    let text = || text_of(bytes).ok_or(InputError::NotText(format));
    match format {
        Format::Elf => {
            let (insns, section) = load_elf(bytes, prog)?;
            Ok(loaded(insns, None, CaseOptions::default(), Some(section)))
        }
        Format::Raw => Ok(loaded(
            decode_program(bytes)?,
            None,
            CaseOptions::default(),
            None,
        )),
        Format::Hex => {
            let bytes = hex::parse_hex(text()?)?;
            Ok(loaded(
                decode_program(&bytes)?,
                None,
                CaseOptions::default(),
                None,
            ))
        }
        Format::Asm => Ok(loaded(
            asm::assemble(text()?)?,
            None,
            CaseOptions::default(),
            None,
        )),
        Format::Data => {
            let file = data::parse_file(text()?)?;
            let insns = file.program.ok_or(InputError::DataWithoutProgram)??;
            Ok(loaded(insns, file.mem, file.options, None))
        }
    }
}

/// Picks a program of an ELF object (by `--prog`, or the only one) and
/// returns its linked, relocated slots and its section's name.
fn load_elf(bytes: &[u8], prog: Option<&str>) -> Result<(Vec<Insn>, String), InputError> {
    let object = elf::parse(bytes)?;
    let program = match prog {
        Some(name) => object.program(name)?,
        None => select_program(&object)?.clone(),
    };
    Ok((program.insns, program.section))
}

/// The object's only entry program (or its only `.text` function when it
/// has no other sections); an error naming the candidates otherwise.
pub fn select_program(object: &elf::Object) -> Result<&elf::ProgramSection, InputError> {
    match object.programs.as_slice() {
        [one] => Ok(one),
        [] => Err(InputError::NoPrograms),
        _ => Err(InputError::AmbiguousProgram(object.describe_programs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::elf_builder::{build, Sec};

    const EXIT: [u8; 8] = [0x95, 0, 0, 0, 0, 0, 0, 0];
    const MOV_R0_7: [u8; 8] = [0xb7, 0, 0, 0, 7, 0, 0, 0];

    fn prog(slots: &[[u8; 8]]) -> Vec<u8> {
        slots.concat()
    }

    #[test]
    fn detects_formats() {
        assert_eq!(detect(b"\x7fELF\x02"), Format::Elf);
        assert_eq!(detect(b"-- asm\nexit\n-- result\n0\n"), Format::Data);
        assert_eq!(
            detect(b"b7 00 00 00 07 00 00 00\n95 00 00 00 00 00 00 00"),
            Format::Hex
        );
        assert_eq!(detect(b"mov %r0, 7\nexit\n"), Format::Asm);
        assert_eq!(detect(&prog(&[MOV_R0_7, EXIT])), Format::Raw);
    }

    #[test]
    fn loads_text_forms() {
        let want = vec![Insn::from_bytes(MOV_R0_7), Insn::from_bytes(EXIT)];
        assert_eq!(load(b"mov %r0, 7\nexit", None, None).unwrap().insns, want);
        assert_eq!(
            load(
                b"b7 00 00 00 07 00 00 00 95 00 00 00 00 00 00 00",
                None,
                None
            )
            .unwrap()
            .insns,
            want
        );
        assert_eq!(
            load(&prog(&[MOV_R0_7, EXIT]), None, None).unwrap().insns,
            want
        );
        let d = load(
            b"-- asm\nmov %r0, 7\nexit\n-- mem\n01 02\n-- options\nbudget 9\n",
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            (d.insns, d.mem, d.options.budget),
            (want, Some(vec![1, 2]), Some(9))
        );
    }

    #[test]
    fn truncated_bytecode_names_the_pc() {
        let e = load(
            &[0x95, 0, 0, 0, 0, 0, 0, 0, 0xb7, 0, 0],
            Some(Format::Raw),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("pc 1: bytecode length 11"), "{e}");
    }

    #[test]
    fn prog_needs_elf() {
        assert!(load(b"exit", None, Some("xdp")).unwrap_err().is_usage());
    }

    #[test]
    fn elf_single_section_is_used() {
        let obj = build(
            &[Sec::code("xdp", &prog(&[MOV_R0_7, EXIT]))],
            &[("entry", 1, 0)],
        );
        let l = load(&obj, None, None).unwrap();
        assert_eq!(l.format, Format::Elf);
        assert_eq!(l.section.as_deref(), Some("xdp"));
        assert_eq!(l.insns.len(), 2);
    }

    #[test]
    fn elf_selection_by_section_and_function() {
        let obj = build(
            &[
                Sec::code("xdp", &prog(&[MOV_R0_7, EXIT])),
                Sec::code(".text", &prog(&[EXIT, MOV_R0_7, EXIT])),
            ],
            &[("entry", 1, 0), ("helper_fn", 2, 8)],
        );
        // `.text` holds sub-programs: the one entry program is the default.
        let l = load(&obj, None, None).unwrap();
        assert_eq!((l.insns.len(), l.section.as_deref()), (2, Some("xdp")));
        assert_eq!(load(&obj, None, Some("xdp")).unwrap().insns.len(), 2);
        let f = load(&obj, None, Some("helper_fn")).unwrap();
        assert_eq!((f.insns.len(), f.section.as_deref()), (2, Some(".text")));
        let e = load(&obj, None, Some("nope")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no program or function named `nope`; the object has: entry (xdp), helper_fn (.text)"
        );
        let two = build(
            &[
                Sec::code("xdp", &prog(&[MOV_R0_7, EXIT])),
                Sec::code("tc", &prog(&[MOV_R0_7, EXIT])),
            ],
            &[("a", 1, 0), ("b", 2, 0)],
        );
        let e = load(&two, None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the ELF object has several programs, choose one with --prog: a (xdp), b (tc)"
        );
    }

    #[test]
    fn elf_relocations_on_plain_instructions_are_refused() {
        let obj = build(
            &[
                Sec::code("xdp", &prog(&[MOV_R0_7, EXIT])),
                Sec::rel("xdp", 1),
            ],
            &[("entry", 1, 0)],
        );
        let e = load(&obj, None, None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("section `xdp` at offset 0x0: relocation type 1 on `r0 = 7`"),
            "{e}"
        );
    }

    #[test]
    fn malformed_elf_is_an_error_not_a_panic() {
        let good = build(
            &[Sec::code("xdp", &prog(&[MOV_R0_7, EXIT]))],
            &[("entry", 1, 0)],
        );
        // Every truncation and a sweep of single-byte corruptions.
        for len in 0..good.len() {
            let _ = load(&good[..len], Some(Format::Elf), None);
        }
        for i in 0..good.len() {
            for v in [0x00, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = load(&bad, None, None);
            }
        }
        let e = load(b"\x7fELFgarbage", None, None).unwrap_err();
        assert!(e.to_string().starts_with("not a valid ELF object: "), "{e}");
    }
}

/// A minimal ELF64 little-endian BPF relocatable writer for tests.
#[cfg(test)]
pub(crate) mod elf_builder {
    /// A section to emit.
    pub struct Sec {
        name: String,
        kind: Kind,
    }

    enum Kind {
        Code(Vec<u8>),
        /// A `.rel<target>` section with `count` entries.
        Rel {
            target: String,
            count: usize,
        },
    }

    impl Sec {
        pub fn code(name: &str, code: &[u8]) -> Sec {
            Sec {
                name: name.into(),
                kind: Kind::Code(code.to_vec()),
            }
        }
        pub fn rel(target: &str, count: usize) -> Sec {
            Sec {
                name: format!(".rel{target}"),
                kind: Kind::Rel {
                    target: target.into(),
                    count,
                },
            }
        }
    }

    fn push_shdr(out: &mut Vec<u8>, f: [u64; 10]) {
        // name, type (u32 each), flags, addr, offset, size, link, info (u32 each), align, entsize
        out.extend_from_slice(&(f[0] as u32).to_le_bytes());
        out.extend_from_slice(&(f[1] as u32).to_le_bytes());
        for v in &f[2..6] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(f[6] as u32).to_le_bytes());
        out.extend_from_slice(&(f[7] as u32).to_le_bytes());
        out.extend_from_slice(&f[8].to_le_bytes());
        out.extend_from_slice(&f[9].to_le_bytes());
    }

    /// Builds an object with `secs` (section indices start at 1), then
    /// `.symtab`, `.strtab`, `.shstrtab`. `funcs` are (name, section index,
    /// offset) function symbols.
    pub fn build(secs: &[Sec], funcs: &[(&str, u16, u64)]) -> Vec<u8> {
        let n = secs.len();
        let (symtab, strtab, shstrtab) = (n + 1, n + 2, n + 3);
        let mut shstr = vec![0u8];
        let name_off = |s: &str, tab: &mut Vec<u8>| {
            let o = tab.len() as u64;
            tab.extend_from_slice(s.as_bytes());
            tab.push(0);
            o
        };
        let mut body = Vec::new();
        let mut headers = vec![[0u64; 10]];
        let base = 64u64;
        for s in secs {
            let off = base + body.len() as u64;
            let nm = name_off(&s.name, &mut shstr);
            match &s.kind {
                Kind::Code(code) => {
                    body.extend_from_slice(code);
                    headers.push([nm, 1, 0x6, 0, off, code.len() as u64, 0, 0, 8, 0]);
                }
                Kind::Rel { target, count } => {
                    let info = secs
                        .iter()
                        .position(|x| &x.name == target)
                        .map_or(0, |p| p + 1);
                    for k in 0..*count {
                        body.extend_from_slice(&(k as u64 * 8).to_le_bytes());
                        body.extend_from_slice(&((1u64 << 32) | 1).to_le_bytes());
                    }
                    headers.push([
                        nm,
                        9,
                        0,
                        0,
                        off,
                        *count as u64 * 16,
                        symtab as u64,
                        info as u64,
                        8,
                        16,
                    ]);
                }
            }
        }
        // Symbols: null, then functions.
        let mut str_tab = vec![0u8];
        let mut syms = vec![0u8; 24];
        for (name, shndx, value) in funcs {
            let nm = name_off(name, &mut str_tab) as u32;
            syms.extend_from_slice(&nm.to_le_bytes());
            syms.push(0x12); // GLOBAL FUNC
            syms.push(0);
            syms.extend_from_slice(&shndx.to_le_bytes());
            syms.extend_from_slice(&value.to_le_bytes());
            syms.extend_from_slice(&16u64.to_le_bytes());
        }
        let off = base + body.len() as u64;
        let nm = name_off(".symtab", &mut shstr);
        body.extend_from_slice(&syms);
        headers.push([nm, 2, 0, 0, off, syms.len() as u64, strtab as u64, 1, 8, 24]);
        let off = base + body.len() as u64;
        let nm = name_off(".strtab", &mut shstr);
        body.extend_from_slice(&str_tab);
        headers.push([nm, 3, 0, 0, off, str_tab.len() as u64, 0, 0, 1, 0]);
        let nm = name_off(".shstrtab", &mut shstr);
        let off = base + body.len() as u64;
        body.extend_from_slice(&shstr);
        headers.push([nm, 3, 0, 0, off, shstr.len() as u64, 0, 0, 1, 0]);
        while body.len() % 8 != 0 {
            body.push(0);
        }
        let shoff = base + body.len() as u64;

        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
        out.extend_from_slice(&247u16.to_le_bytes()); // EM_BPF
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // entry
        out.extend_from_slice(&0u64.to_le_bytes()); // phoff
        out.extend_from_slice(&shoff.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // flags
        out.extend_from_slice(&64u16.to_le_bytes()); // ehsize
        out.extend_from_slice(&0u16.to_le_bytes()); // phentsize
        out.extend_from_slice(&0u16.to_le_bytes()); // phnum
        out.extend_from_slice(&64u16.to_le_bytes()); // shentsize
        out.extend_from_slice(&(headers.len() as u16).to_le_bytes());
        out.extend_from_slice(&(shstrtab as u16).to_le_bytes());
        out.extend_from_slice(&body);
        for h in headers {
            push_shdr(&mut out, h);
        }
        out
    }
}
