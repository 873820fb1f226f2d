//! The ELF container, read with the `object` crate: section headers, their
//! names and bytes, the symbol table and `SHT_REL` entries, each checked
//! against the file before use.

use object::elf::{FileHeader64, SHF_EXECINSTR, SHT_NOBITS, SHT_REL, SHT_RELA, SHT_SYMTAB};
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::LittleEndian as LE;

use super::{ElfError, Reason};

/// Size of one `Elf64_Rel` entry.
const REL_SIZE: usize = 16;
/// Symbol section indices from here on are reserved (`SHN_LORESERVE`).
const SHN_LORESERVE: u16 = 0xff00;

/// One section: its header fields and, unless it is `SHT_NOBITS`, its bytes.
#[derive(Debug)]
pub(crate) struct Section<'a> {
    pub index: usize,
    pub name: String,
    pub kind: u32,
    pub flags: u64,
    /// `sh_size` (for `SHT_NOBITS` the size of the zero-filled area).
    pub size: u64,
    /// The bytes in the file (empty for `SHT_NOBITS`).
    pub data: &'a [u8],
    pub info: u32,
    pub link: u32,
}

impl Section<'_> {
    pub fn is_exec(&self) -> bool {
        self.flags & SHF_EXECINSTR as u64 != 0 && self.kind != SHT_NOBITS
    }
}

/// One symbol of `.symtab`.
#[derive(Clone, Debug)]
pub(crate) struct Symbol {
    pub name: String,
    pub value: u64,
    pub size: u64,
    /// The section it is defined in, `None` when undefined, absolute or common.
    pub section: Option<usize>,
    /// `STT_*`.
    pub kind: u8,
    /// `STB_*`.
    pub bind: u8,
}

/// One `Elf64_Rel` entry, with the byte offset of the entry in its section.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rel {
    /// Where the entry itself is (for error messages).
    pub entry_offset: u64,
    /// `r_offset`: the byte offset in the target section.
    pub offset: u64,
    pub symbol: u32,
    pub kind: u32,
}

/// A parsed ELF object.
pub(crate) struct Elf<'a> {
    pub sections: Vec<Section<'a>>,
    pub symbols: Vec<Symbol>,
    /// `(REL section index, target section index, entries)` for every REL section.
    pub rels: Vec<(usize, usize, Vec<Rel>)>,
}

fn container(e: object::Error) -> ElfError {
    ElfError::Container(e.to_string())
}

impl<'a> Elf<'a> {
    /// Reads the header, section table, symbols and relocations. `data`
    /// must be 8-byte aligned (the caller copies it into such a buffer).
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        if data.len() < 4 || &data[..4] != b"\x7fELF" {
            return Err(ElfError::Container("no ELF magic".into()));
        }
        if data.len() < 64 {
            return Err(ElfError::Container(format!(
                "{} bytes is shorter than an ELF64 header",
                data.len()
            )));
        }
        if data.get(4) != Some(&2) {
            return Err(ElfError::NotBpf("not a 64-bit ELF file".into()));
        }
        if data.get(5) != Some(&1) {
            return Err(ElfError::NotBpf(
                "big-endian BPF objects are not supported".into(),
            ));
        }
        let header = FileHeader64::<LE>::parse(data).map_err(container)?;
        let e = LE;
        if header.e_machine(e) != object::elf::EM_BPF {
            return Err(ElfError::NotBpf(format!(
                "machine is {}, not BPF (247)",
                header.e_machine(e)
            )));
        }
        let table = header.sections(e, data).map_err(container)?;
        let mut sections = Vec::with_capacity(table.len());
        for (index, sh) in table.enumerate() {
            let index = index.0;
            let name = match table.section_name(e, sh) {
                Ok(n) => String::from_utf8_lossy(n).into_owned(),
                Err(_) => format!("#{index}"),
            };
            let kind = sh.sh_type(e);
            let size = sh.sh_size(e);
            let bytes = if kind == SHT_NOBITS || index == 0 {
                &[][..]
            } else {
                sh.data(e, data).map_err(|_| ElfError::At {
                    section: name.clone(),
                    offset: 0,
                    reason: Reason::SectionOutOfFile {
                        file_offset: sh.sh_offset(e),
                        size,
                        file_size: data.len() as u64,
                    },
                })?
            };
            sections.push(Section {
                index,
                name,
                kind,
                flags: sh.sh_flags(e),
                size,
                data: bytes,
                info: sh.sh_info(e),
                link: sh.sh_link(e),
            });
        }

        let symtab = table.symbols(e, data, SHT_SYMTAB).map_err(container)?;
        let symtab_index = symtab.section().0;
        let mut symbols = Vec::with_capacity(symtab.len());
        for (i, sym) in symtab.iter().enumerate() {
            let name = match symtab.symbol_name(e, sym) {
                Ok(n) => String::from_utf8_lossy(n).into_owned(),
                Err(_) => {
                    return Err(ElfError::At {
                        section: ".symtab".into(),
                        offset: (i * 24) as u64,
                        reason: Reason::BadSymbolName { index: i },
                    })
                }
            };
            let shndx = sym.st_shndx(e);
            let section = if shndx == 0 || shndx >= SHN_LORESERVE {
                None
            } else if (shndx as usize) < sections.len() {
                Some(shndx as usize)
            } else {
                return Err(ElfError::At {
                    section: ".symtab".into(),
                    offset: (i * 24) as u64,
                    reason: Reason::BadSymbolSection {
                        symbol: name,
                        section: shndx as u32,
                    },
                });
            };
            let name = match (name.is_empty(), section) {
                (true, Some(k)) if sym.st_type() == object::elf::STT_SECTION => {
                    sections[k].name.clone()
                }
                _ => name,
            };
            symbols.push(Symbol {
                name,
                value: sym.st_value(e),
                size: sym.st_size(e),
                section,
                kind: sym.st_type(),
                bind: sym.st_bind(),
            });
        }

        let mut rels = Vec::new();
        for s in &sections {
            if s.kind == SHT_RELA {
                return Err(ElfError::At {
                    section: s.name.clone(),
                    offset: 0,
                    reason: Reason::Unsupported("SHT_RELA relocation sections".into()),
                });
            }
            if s.kind != SHT_REL {
                continue;
            }
            let target = s.info as usize;
            if target == 0 || target >= sections.len() {
                return Err(ElfError::At {
                    section: s.name.clone(),
                    offset: 0,
                    reason: Reason::BadRelocSection {
                        why: format!("its target section index {} does not exist", s.info),
                    },
                });
            }
            if s.link as usize != symtab_index {
                return Err(ElfError::At {
                    section: s.name.clone(),
                    offset: 0,
                    reason: Reason::BadRelocSection {
                        why: format!("it links section {} instead of .symtab", s.link),
                    },
                });
            }
            if s.data.len() % REL_SIZE != 0 {
                return Err(ElfError::At {
                    section: s.name.clone(),
                    offset: (s.data.len() - s.data.len() % REL_SIZE) as u64,
                    reason: Reason::Truncated {
                        what: "relocation entry",
                        need: REL_SIZE as u64,
                        have: (s.data.len() % REL_SIZE) as u64,
                    },
                });
            }
            let mut entries = Vec::with_capacity(s.data.len() / REL_SIZE);
            for (k, chunk) in s.data.chunks_exact(REL_SIZE).enumerate() {
                let offset = u64_at(chunk, 0);
                let info = u64_at(chunk, 8);
                let rel = Rel {
                    entry_offset: (k * REL_SIZE) as u64,
                    offset,
                    symbol: (info >> 32) as u32,
                    kind: info as u32,
                };
                if rel.symbol as usize >= symbols.len() {
                    return Err(ElfError::At {
                        section: s.name.clone(),
                        offset: rel.entry_offset,
                        reason: Reason::BadSymbolIndex(rel.symbol),
                    });
                }
                entries.push(rel);
            }
            rels.push((s.index, target, entries));
        }
        Ok(Elf {
            sections,
            symbols,
            rels,
        })
    }

    /// The relocations that apply to section `target`, sorted by offset.
    pub fn rels_for(&self, target: usize) -> Vec<(usize, Rel)> {
        let mut v: Vec<(usize, Rel)> = self
            .rels
            .iter()
            .filter(|(_, t, _)| *t == target)
            .flat_map(|(rs, _, es)| es.iter().map(move |r| (*rs, *r)))
            .collect();
        v.sort_by_key(|(_, r)| r.offset);
        v
    }

    pub fn section_name(&self, index: usize) -> &str {
        self.sections
            .get(index)
            .map(|s| s.name.as_str())
            .unwrap_or("?")
    }
}

/// Little-endian u64 at `off` of a slice known to be long enough.
fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}
