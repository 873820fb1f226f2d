//! The ELF loader: turns a `clang -target bpf` object into an [`Object`]:
//! its programs, linked with the `.text` sub-programs they call and
//! relocated like libbpf does, and the definitions of its maps (BTF-defined
//! `.maps`, the legacy `maps` section, and one single-entry array per
//! global-data section).
//!
//! Relocated `lddw` instructions follow libbpf's conventions, with map
//! indices in place of file descriptors:
//!
//! | reference | `src` | `imm` | `next_imm` |
//! |---|---|---|---|
//! | a map | 1 (`BPF_PSEUDO_MAP_FD`) | map index | 0 |
//! | global data | 2 (`BPF_PSEUDO_MAP_VALUE`) | map index | byte offset in the value |
//! | a function's address | 4 (`BPF_PSEUDO_FUNC`) | relative insn offset | 0 |
//!
//! and bpf-to-bpf calls get `imm` = target - pc - 1 in the linked program.
//!
//! The engine does not implement maps: a host (the runtime) builds them from
//! the [`MapDef`]s and resolves the pseudo `lddw`s through a
//! [`crate::verifier::LddwResolver`].
//!
//! Every size, offset and index read from the file is checked before use:
//! a malformed object gives an [`ElfError`] naming the section and the
//! offset, never a panic.

pub mod btf;
mod maps;
mod raw;
mod reloc;

use crate::isa::Insn;

pub use btf::BtfError;

/// Name of the section that holds sub-programs.
pub const TEXT_SECTION: &str = ".text";

// Relocation types of the BPF ELF ABI.
/// `R_BPF_64_64`: a `lddw` of a map, global data or a function's address.
pub const R_BPF_64_64: u32 = 1;
/// `R_BPF_64_ABS64`: an absolute 64-bit address in data (program arrays' initialisers).
pub const R_BPF_64_ABS64: u32 = 2;
/// `R_BPF_64_ABS32`: an absolute 32-bit address in data (debug info).
pub const R_BPF_64_ABS32: u32 = 3;
/// `R_BPF_64_NODYLD32`: 32-bit data relocations in `.BTF.ext` and debug info.
pub const R_BPF_64_NODYLD32: u32 = 4;
/// `R_BPF_64_32`: a bpf-to-bpf call (type 10 since clang 17 and before).
pub const R_BPF_64_32: u32 = 10;

// Map flags set on global-data maps, as libbpf does.
/// `BPF_F_RDONLY_PROG`: programs may only read the map.
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `BPF_F_MMAPABLE`.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// A loaded object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Object {
    /// Entry programs: every function of every executable section other
    /// than `.text`, in section order.
    pub programs: Vec<ProgramSection>,
    /// Map definitions; a map's index here is what relocated `lddw`s name.
    pub maps: Vec<MapDef>,
    /// Every function of every executable section (including `.text`).
    pub functions: Vec<FunctionInfo>,
    /// Every relocation applied to code, for inspection.
    pub relocations: Vec<RelocationInfo>,
    /// The `license` section, if any.
    pub license: Option<String>,
    /// Linker state kept to link `.text` functions as entry points on demand.
    linker: reloc::Linker,
}

/// A function of an executable section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    pub name: String,
    pub section: String,
    /// Byte offset in its section.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Whether the symbol is global.
    pub global: bool,
}

/// A program: an entry function linked with the sub-programs it calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSection {
    /// The entry function's name.
    pub name: String,
    /// The ELF section it comes from (`xdp`, `socket/filter`, ...).
    pub section: String,
    /// Byte offset of the entry function in its section.
    pub offset: u64,
    /// Size of the entry function in bytes.
    pub size: u64,
    /// The linked, relocated instructions: the entry function first, then
    /// each sub-program it reaches, depth first in instruction order (the
    /// layout libbpf and aya produce).
    pub insns: Vec<Insn>,
    /// The sub-programs appended after the entry function, with their
    /// first slot in `insns`.
    pub subprograms: Vec<(String, usize)>,
}

/// A map's type (`BPF_MAP_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    Hash,
    Array,
    ProgArray,
    PerfEventArray,
    PercpuHash,
    PercpuArray,
    LruHash,
    LruPercpuHash,
    RingBuf,
    /// Any other type, by number.
    Other(u32),
}

impl MapKind {
    pub fn from_u32(t: u32) -> MapKind {
        match t {
            1 => MapKind::Hash,
            2 => MapKind::Array,
            3 => MapKind::ProgArray,
            4 => MapKind::PerfEventArray,
            5 => MapKind::PercpuHash,
            6 => MapKind::PercpuArray,
            9 => MapKind::LruHash,
            10 => MapKind::LruPercpuHash,
            27 => MapKind::RingBuf,
            t => MapKind::Other(t),
        }
    }

    pub fn to_u32(self) -> u32 {
        match self {
            MapKind::Hash => 1,
            MapKind::Array => 2,
            MapKind::ProgArray => 3,
            MapKind::PerfEventArray => 4,
            MapKind::PercpuHash => 5,
            MapKind::PercpuArray => 6,
            MapKind::LruHash => 9,
            MapKind::LruPercpuHash => 10,
            MapKind::RingBuf => 27,
            MapKind::Other(t) => t,
        }
    }

    /// The kernel's name without the `BPF_MAP_TYPE_` prefix, lower case.
    pub fn name(self) -> String {
        match self {
            MapKind::Hash => "hash".into(),
            MapKind::Array => "array".into(),
            MapKind::ProgArray => "prog_array".into(),
            MapKind::PerfEventArray => "perf_event_array".into(),
            MapKind::PercpuHash => "percpu_hash".into(),
            MapKind::PercpuArray => "percpu_array".into(),
            MapKind::LruHash => "lru_hash".into(),
            MapKind::LruPercpuHash => "lru_percpu_hash".into(),
            MapKind::RingBuf => "ringbuf".into(),
            MapKind::Other(t) => format!("type_{t}"),
        }
    }
}

/// Where a map definition comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapOrigin {
    /// A variable of the BTF-defined `.maps` section.
    Btf,
    /// A `struct bpf_map_def` in the legacy `maps` section.
    Legacy,
    /// A global-data section (`.data*`, `.rodata*`, `.bss*`): one entry,
    /// key size 4, the value is the section.
    GlobalData,
}

/// A map definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDef {
    /// The variable's name (for global data: the section's name).
    pub name: String,
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub origin: MapOrigin,
    /// The section and byte offset of the definition.
    pub section: String,
    pub offset: u64,
    /// Initial contents of a global-data map (`None`: all zero, as `.bss`).
    pub data: Option<Vec<u8>>,
    /// Static initialisation of a program array: (slot, program name).
    pub prog_slots: Vec<(u32, String)>,
}

impl MapDef {
    /// A map defined by the host rather than read from an object: a BTF-style
    /// definition with no flags, no initial data and no program slots.
    pub fn host(
        name: &str,
        kind: MapKind,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> MapDef {
        MapDef {
            name: name.into(),
            kind,
            key_size,
            value_size,
            max_entries,
            flags: 0,
            origin: MapOrigin::Btf,
            section: ".maps".into(),
            offset: 0,
            data: None,
            prog_slots: Vec::new(),
        }
    }
}

/// A relocation applied to code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelocationInfo {
    /// The section of the instruction.
    pub section: String,
    /// Byte offset of the instruction in its section.
    pub offset: u64,
    /// `R_BPF_*` type.
    pub r_type: u32,
    /// The symbol the relocation names.
    pub symbol: String,
    /// What it was resolved to.
    pub target: RelocTarget,
}

/// What a code relocation refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelocTarget {
    /// A call to the function `name`.
    Call { function: String },
    /// The address of the function `name` (a callback).
    FuncAddr { function: String },
    /// A map, by index.
    Map { map: usize },
    /// Global data: a map index and the offset in its value.
    Data { map: usize, offset: u32 },
}

impl std::fmt::Display for RelocTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelocTarget::Call { function } => write!(f, "call {function}"),
            RelocTarget::FuncAddr { function } => write!(f, "address of {function}"),
            RelocTarget::Map { map } => write!(f, "map #{map}"),
            RelocTarget::Data { map, offset } => write!(f, "map #{map} value + {offset}"),
        }
    }
}

/// Why an object cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not a valid ELF object: {0}")]
    Container(String),
    #[error("not a BPF object: {0}")]
    NotBpf(String),
    #[error("section `{section}` at offset {offset:#x}: {reason}")]
    At {
        section: String,
        /// Byte offset in the section.
        offset: u64,
        reason: Reason,
    },
    #[error("section `.BTF`: {0}")]
    Btf(#[from] BtfError),
    #[error("no program or function named `{name}`; the object has: {available}")]
    UnknownProgram { name: String, available: String },
}

impl ElfError {
    /// The section the error is about, if any.
    pub fn section(&self) -> Option<&str> {
        match self {
            ElfError::At { section, .. } => Some(section),
            ElfError::Btf(_) => Some(".BTF"),
            _ => None,
        }
    }
}

/// What is wrong at a place in a section.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("the section's data ({size} bytes at file offset {file_offset:#x}) is outside the file of {file_size} bytes")]
    SectionOutOfFile {
        file_offset: u64,
        size: u64,
        file_size: u64,
    },
    #[error("{what} is truncated: needs {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: u64,
        have: u64,
    },
    #[error("symbol `{symbol}` ({size} bytes at {value:#x}) lies outside the section of {section_size} bytes")]
    SymbolOutOfRange {
        symbol: String,
        value: u64,
        size: u64,
        section_size: u64,
    },
    #[error("symbol {index} has a name outside the string table")]
    BadSymbolName { index: usize },
    #[error("symbol `{symbol}` names section {section}, which does not exist")]
    BadSymbolSection { symbol: String, section: u32 },
    #[error("relocation names symbol {0}, which does not exist")]
    BadSymbolIndex(u32),
    #[error("bad relocation section: {why}")]
    BadRelocSection { why: String },
    #[error("{what} is not a multiple of 8 bytes (an instruction)")]
    Misaligned { what: String },
    #[error("relocation offset {offset:#x} is outside the section of {size} bytes")]
    RelocOutOfRange { offset: u64, size: u64 },
    #[error("unknown relocation type {0} for code")]
    UnknownRelocType(u32),
    #[error("relocation type {r_type} on `{insn}`: {why}")]
    BadReloc {
        r_type: u32,
        insn: String,
        why: String,
    },
    #[error("two relocations for the same instruction")]
    DuplicateReloc,
    #[error("call to offset {target:#x} of section `{section}`, where no function starts")]
    BadCallTarget { section: String, target: i64 },
    #[error("map `{map}`: {why}")]
    BadMap { map: String, why: String },
    #[error("not supported: {0}")]
    Unsupported(String),
}

/// Parses and links a BPF ELF object.
pub fn parse(bytes: &[u8]) -> Result<Object, ElfError> {
    // `object` reads headers in place and needs them aligned: work on a
    // copy in an 8-byte aligned buffer.
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    let buf: &mut [u8] = {
        // SAFETY: a `[u64]` of `n` words is `8 * n` initialised bytes with
        // no padding; the byte view borrows `words` mutably and exclusively.
        let all = unsafe {
            std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 8)
        };
        &mut all[..bytes.len()]
    };
    buf.copy_from_slice(bytes);
    let elf = raw::Elf::parse(buf)?;
    let license = elf.sections.iter().find(|s| s.name == "license").map(|s| {
        let end = s.data.iter().position(|&b| b == 0).unwrap_or(s.data.len());
        String::from_utf8_lossy(&s.data[..end]).into_owned()
    });
    let maps = maps::collect(&elf)?;
    let (linker, functions, relocations) = reloc::Linker::new(&elf, &maps)?;
    let maps = maps.defs;
    let mut programs = Vec::new();
    for (k, f) in linker.functions().iter().enumerate() {
        if f.section_name == TEXT_SECTION {
            continue;
        }
        programs.push(linker.link(k)?);
    }
    Ok(Object {
        programs,
        maps,
        functions,
        relocations,
        license,
        linker,
    })
}

impl Object {
    /// The program named `name`: an entry program by function name, else
    /// by section name when one program comes from that section, else a
    /// function of `.text` linked as an entry point.
    pub fn program(&self, name: &str) -> Result<ProgramSection, ElfError> {
        if let Some(p) = self.programs.iter().find(|p| p.name == name) {
            return Ok(p.clone());
        }
        let in_section: Vec<_> = self.programs.iter().filter(|p| p.section == name).collect();
        if let [p] = in_section[..] {
            return Ok(p.clone());
        }
        if let Some(k) = self.linker.function_index(name) {
            return self.linker.link(k);
        }
        Err(ElfError::UnknownProgram {
            name: name.into(),
            available: self.describe_programs(),
        })
    }

    /// `name (section), ...` of the entry programs, then `.text` functions.
    pub fn describe_programs(&self) -> String {
        let mut v: Vec<String> = self
            .programs
            .iter()
            .map(|p| format!("{} ({})", p.name, p.section))
            .collect();
        for f in &self.functions {
            if f.section == TEXT_SECTION {
                v.push(format!("{} ({})", f.name, f.section));
            }
        }
        if v.is_empty() {
            "no programs".into()
        } else {
            v.join(", ")
        }
    }

    /// The index of the map named `name`.
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }

    /// The index of the entry program named `name` in [`Object::programs`].
    pub fn program_index(&self, name: &str) -> Option<usize> {
        self.programs.iter().position(|p| p.name == name)
    }
}
