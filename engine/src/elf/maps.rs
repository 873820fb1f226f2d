//! Map definitions: the legacy `maps` section, BTF-defined `.maps` (with
//! statically initialised program arrays), and global-data sections.

use object::elf::{SHT_NOBITS, SHT_PROGBITS, STT_FUNC, STT_SECTION};

use super::btf::{Btf, TypeKind};
use super::raw::Elf;
use super::{
    ElfError, MapDef, MapKind, MapOrigin, Reason, BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, R_BPF_64_ABS64,
};

/// Name of the BTF-defined maps section.
pub(crate) const MAPS_SECTION: &str = ".maps";
/// Name of the legacy maps section.
pub(crate) const LEGACY_MAPS_SECTION: &str = "maps";
/// Size of a complete legacy `struct bpf_map_def`.
const LEGACY_DEF_SIZE: u64 = 20;
/// Smallest legacy definition accepted (type, key, value, max_entries).
const LEGACY_MIN_SIZE: u64 = 16;

/// The maps of an object and where each is defined.
pub(crate) struct Maps {
    pub defs: Vec<MapDef>,
    /// For each map: its section index, offset and size in that section.
    pub places: Vec<(usize, u64, u64)>,
}

impl Maps {
    /// The map defined at `offset` of section `section` (a `.maps` or
    /// legacy map), by index.
    pub fn at(&self, section: usize, offset: u64) -> Option<usize> {
        self.places.iter().enumerate().position(|(k, &(s, o, _))| {
            s == section && o == offset && self.defs[k].origin != MapOrigin::GlobalData
        })
    }

    /// The global-data map of `section`.
    pub fn data_of(&self, section: usize) -> Option<usize> {
        self.places.iter().enumerate().position(|(k, &(s, _, _))| {
            s == section && self.defs[k].origin == MapOrigin::GlobalData
        })
    }

    /// Whether `section` holds map definitions.
    pub fn is_map_section(&self, elf: &Elf, section: usize) -> bool {
        let name = elf.section_name(section);
        name == MAPS_SECTION || name == LEGACY_MAPS_SECTION
    }
}

/// Whether a section name is global data (`.data`, `.rodata.str1.1`, ...).
pub(crate) fn is_data_section(name: &str) -> bool {
    [".data", ".rodata", ".bss"].iter().any(|p| {
        name == *p
            || name
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

pub(crate) fn collect(elf: &Elf) -> Result<Maps, ElfError> {
    let mut maps = Maps {
        defs: Vec::new(),
        places: Vec::new(),
    };
    legacy(elf, &mut maps)?;
    btf_maps(elf, &mut maps)?;
    global_data(elf, &mut maps)?;
    Ok(maps)
}

fn bad_map(section: &str, offset: u64, map: &str, why: impl Into<String>) -> ElfError {
    ElfError::At {
        section: section.into(),
        offset,
        reason: Reason::BadMap {
            map: map.into(),
            why: why.into(),
        },
    }
}

fn u32_at(b: &[u8], off: u64) -> u32 {
    let off = off as usize;
    match b.get(off..off.saturating_add(4)) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

fn legacy(elf: &Elf, maps: &mut Maps) -> Result<(), ElfError> {
    let Some(sec) = elf.sections.iter().find(|s| s.name == LEGACY_MAPS_SECTION) else {
        return Ok(());
    };
    let mut syms: Vec<_> = elf
        .symbols
        .iter()
        .filter(|s| s.section == Some(sec.index) && s.kind != STT_SECTION && !s.name.is_empty())
        .collect();
    if syms.is_empty() {
        return Ok(());
    }
    syms.sort_by_key(|s| s.value);
    let size = sec.data.len() as u64;
    let n = syms.len() as u64;
    if size == 0 || !size.is_multiple_of(n) || size / n < LEGACY_MIN_SIZE {
        return Err(ElfError::At {
            section: sec.name.clone(),
            offset: 0,
            reason: Reason::BadMap {
                map: syms[0].name.clone(),
                why: format!(
                    "{size} bytes do not divide into {n} map definitions of at least {LEGACY_MIN_SIZE} bytes"
                ),
            },
        });
    }
    let def_size = size / n;
    for s in syms {
        let end = s.value.checked_add(def_size);
        if end.is_none_or(|e| e > size) {
            return Err(ElfError::At {
                section: sec.name.clone(),
                offset: s.value,
                reason: Reason::SymbolOutOfRange {
                    symbol: s.name.clone(),
                    value: s.value,
                    size: def_size,
                    section_size: size,
                },
            });
        }
        let field = |k: u64| {
            if k * 4 + 4 <= def_size.min(LEGACY_DEF_SIZE) {
                u32_at(sec.data, s.value + k * 4)
            } else {
                0
            }
        };
        maps.defs.push(MapDef {
            name: s.name.clone(),
            kind: MapKind::from_u32(field(0)),
            key_size: field(1),
            value_size: field(2),
            max_entries: field(3),
            flags: field(4),
            origin: MapOrigin::Legacy,
            section: sec.name.clone(),
            offset: s.value,
            data: None,
            prog_slots: Vec::new(),
        });
        maps.places.push((sec.index, s.value, def_size));
    }
    Ok(())
}

/// A BTF map definition being read, with the offset of its `values`.
struct Partial {
    def: MapDef,
    values_offset: Option<u64>,
}

fn btf_maps(elf: &Elf, maps: &mut Maps) -> Result<(), ElfError> {
    let Some(sec) = elf.sections.iter().find(|s| s.name == MAPS_SECTION) else {
        return Ok(());
    };
    let Some(btf_sec) = elf.sections.iter().find(|s| s.name == ".BTF") else {
        return Err(ElfError::At {
            section: sec.name.clone(),
            offset: 0,
            reason: Reason::Unsupported("a `.maps` section without `.BTF`".into()),
        });
    };
    let btf = Btf::parse(btf_sec.data)?;
    let Some((_, datasec)) = btf.datasec(MAPS_SECTION) else {
        return Err(ElfError::At {
            section: sec.name.clone(),
            offset: 0,
            reason: Reason::Unsupported("`.BTF` has no DATASEC for `.maps`".into()),
        });
    };
    let TypeKind::Datasec { vars, .. } = &datasec.kind else {
        return Ok(());
    };
    let first = maps.defs.len();
    let mut partials = Vec::new();
    for v in vars {
        // clang leaves DATASEC offsets and sizes 0: like libbpf, take them
        // from the variable's ELF symbol.
        let name = btf.get(v.type_id).map(|t| t.name.as_str()).unwrap_or("");
        let (offset, size) = match elf
            .symbols
            .iter()
            .find(|y| y.section == Some(sec.index) && y.name == name && !name.is_empty())
        {
            Some(y) => (y.value, y.size),
            None => (v.offset as u64, v.size as u64),
        };
        let p = btf_map(sec, &btf, v.type_id, offset, size)?;
        maps.places.push((sec.index, offset, size));
        partials.push(p);
    }
    prog_array_init(elf, sec, &mut partials, &maps.places[first..])?;
    maps.defs.extend(partials.into_iter().map(|p| p.def));
    Ok(())
}

fn btf_map(
    sec: &super::raw::Section,
    btf: &Btf,
    var_id: u32,
    offset: u64,
    size: u64,
) -> Result<Partial, ElfError> {
    let section_size = sec.size;
    let (name, target) = match btf.get(var_id) {
        Some(t) => match t.kind {
            TypeKind::Var { target, .. } => (t.name.clone(), target),
            ref k => {
                return Err(bad_map(
                    &sec.name,
                    offset,
                    "?",
                    format!("DATASEC entry is a {}, not a variable", k.name()),
                ))
            }
        },
        None => return Err(bad_map(&sec.name, offset, "?", "DATASEC entry has no type")),
    };
    if offset.checked_add(size).is_none_or(|e| e > section_size) {
        return Err(ElfError::At {
            section: sec.name.clone(),
            offset,
            reason: Reason::SymbolOutOfRange {
                symbol: name,
                value: offset,
                size,
                section_size,
            },
        });
    }
    let sid = btf.skip_aliases(target)?;
    let members = match btf.get(sid).map(|t| &t.kind) {
        Some(TypeKind::Struct { members, .. }) => members.clone(),
        _ => {
            return Err(bad_map(
                &sec.name,
                offset,
                &name,
                "its type is not a struct",
            ))
        }
    };
    let uint = |tid: u32, field: &str| -> Result<u32, ElfError> {
        let bad = || {
            bad_map(
                &sec.name,
                offset,
                &name,
                format!("field `{field}` is not declared with __uint (a pointer to an array)"),
            )
        };
        let p = btf.skip_aliases(tid)?;
        let Some(TypeKind::Ptr { target }) = btf.get(p).map(|t| &t.kind) else {
            return Err(bad());
        };
        let a = btf.skip_aliases(*target)?;
        match btf.get(a).map(|t| &t.kind) {
            Some(TypeKind::Array { nelems, .. }) => Ok(*nelems),
            _ => Err(bad()),
        }
    };
    let sized = |tid: u32, field: &str| -> Result<u32, ElfError> {
        let p = btf.skip_aliases(tid)?;
        let Some(TypeKind::Ptr { target }) = btf.get(p).map(|t| &t.kind) else {
            return Err(bad_map(
                &sec.name,
                offset,
                &name,
                format!("field `{field}` is not declared with __type (a pointer)"),
            ));
        };
        let s = btf.size_of(*target)?;
        u32::try_from(s)
            .map_err(|_| bad_map(&sec.name, offset, &name, format!("`{field}` is {s} bytes")))
    };
    let mut kind = None;
    let (mut key_size, mut value_size, mut max_entries, mut flags) = (None, None, 0, 0);
    let mut values_offset = None;
    let set = |slot: &mut Option<u32>, v: u32, field: &str| -> Result<(), ElfError> {
        match *slot {
            Some(old) if old != v => Err(bad_map(
                &sec.name,
                offset,
                &name,
                format!("`{field}` is {v} but was {old}"),
            )),
            _ => {
                *slot = Some(v);
                Ok(())
            }
        }
    };
    for m in &members {
        match m.name.as_str() {
            "type" => kind = Some(MapKind::from_u32(uint(m.type_id, "type")?)),
            "max_entries" => max_entries = uint(m.type_id, "max_entries")?,
            "map_flags" => flags = uint(m.type_id, "map_flags")?,
            "key_size" => set(&mut key_size, uint(m.type_id, "key_size")?, "key_size")?,
            "value_size" => set(
                &mut value_size,
                uint(m.type_id, "value_size")?,
                "value_size",
            )?,
            "key" => set(&mut key_size, sized(m.type_id, "key")?, "key_size")?,
            "value" => set(&mut value_size, sized(m.type_id, "value")?, "value_size")?,
            "values" => {
                let a = btf.skip_aliases(m.type_id)?;
                if !matches!(btf.get(a).map(|t| &t.kind), Some(TypeKind::Array { .. })) {
                    return Err(bad_map(
                        &sec.name,
                        offset,
                        &name,
                        "field `values` is not an array",
                    ));
                }
                values_offset = Some(m.bit_offset as u64 / 8);
            }
            // numa_node, pinning, map_extra and unknown fields do not
            // change how bpfvm runs the map.
            _ => {}
        }
    }
    let Some(kind) = kind else {
        return Err(bad_map(&sec.name, offset, &name, "it has no `type`"));
    };
    let (dk, dv) = match kind {
        MapKind::ProgArray => (4, 4),
        _ => (0, 0),
    };
    Ok(Partial {
        def: MapDef {
            name,
            kind,
            key_size: key_size.unwrap_or(dk),
            value_size: value_size.unwrap_or(dv),
            max_entries,
            flags,
            origin: MapOrigin::Btf,
            section: sec.name.clone(),
            offset,
            data: None,
            prog_slots: Vec::new(),
        },
        values_offset,
    })
}

/// Reads `.rel.maps`: function pointers in the `values` of program arrays.
fn prog_array_init(
    elf: &Elf,
    sec: &super::raw::Section,
    partials: &mut [Partial],
    places: &[(usize, u64, u64)],
) -> Result<(), ElfError> {
    for (rel_sec, rel) in elf.rels_for(sec.index) {
        let at = |reason| ElfError::At {
            section: elf.section_name(rel_sec).to_string(),
            offset: rel.entry_offset,
            reason,
        };
        if rel.kind != R_BPF_64_ABS64 {
            return Err(at(Reason::Unsupported(format!(
                "relocation type {} in `.maps` (only program array initialisers, type {R_BPF_64_ABS64})",
                rel.kind
            ))));
        }
        let Some(k) = places
            .iter()
            .position(|&(_, o, s)| rel.offset >= o && rel.offset - o < s)
        else {
            return Err(at(Reason::RelocOutOfRange {
                offset: rel.offset,
                size: sec.size,
            }));
        };
        let p = &mut partials[k];
        let map = p.def.name.clone();
        let Some(values) = p.values_offset else {
            return Err(at(Reason::BadMap {
                map,
                why: "relocation outside a `values` initialiser".into(),
            }));
        };
        if p.def.kind != MapKind::ProgArray {
            return Err(at(Reason::Unsupported(format!(
                "map `{map}`: initialised `values` of a {} map (maps of maps)",
                p.def.kind.name()
            ))));
        }
        let rel_in_map = rel.offset - places[k].1;
        let slot = rel_in_map
            .checked_sub(values)
            .filter(|o| o % 8 == 0)
            .map(|o| o / 8)
            .filter(|&s| s < p.def.max_entries as u64);
        let Some(slot) = slot else {
            return Err(at(Reason::BadMap {
                map,
                why: format!(
                    "initialiser at offset {rel_in_map} is not a slot of `values` (max_entries {})",
                    p.def.max_entries
                ),
            }));
        };
        let sym = &elf.symbols[rel.symbol as usize];
        let is_prog = sym.kind == STT_FUNC
            && sym
                .section
                .and_then(|s| elf.sections.get(s))
                .is_some_and(|s| s.is_exec());
        if !is_prog {
            return Err(at(Reason::BadMap {
                map,
                why: format!("slot {slot} names `{}`, which is not a program", sym.name),
            }));
        }
        p.def.prog_slots.push((slot as u32, sym.name.clone()));
    }
    Ok(())
}

fn global_data(elf: &Elf, maps: &mut Maps) -> Result<(), ElfError> {
    for s in &elf.sections {
        if !is_data_section(&s.name) || s.size == 0 {
            continue;
        }
        if s.kind != SHT_PROGBITS && s.kind != SHT_NOBITS {
            continue;
        }
        let value_size = u32::try_from(s.size).map_err(|_| {
            bad_map(
                &s.name,
                0,
                &s.name,
                format!("{} bytes is too large", s.size),
            )
        })?;
        let readonly = s.name.starts_with(".rodata");
        maps.defs.push(MapDef {
            name: s.name.clone(),
            kind: MapKind::Array,
            key_size: 4,
            value_size,
            max_entries: 1,
            flags: BPF_F_MMAPABLE | if readonly { BPF_F_RDONLY_PROG } else { 0 },
            origin: MapOrigin::GlobalData,
            section: s.name.clone(),
            offset: 0,
            data: (s.kind == SHT_PROGBITS).then(|| s.data.to_vec()),
            prog_slots: Vec::new(),
        });
        maps.places.push((s.index, 0, s.size));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_section_names() {
        for n in [
            ".data",
            ".rodata",
            ".bss",
            ".data.foo",
            ".rodata.str1.1",
            ".bss.x",
        ] {
            assert!(is_data_section(n), "{n}");
        }
        for n in [".datax", ".text", "maps", ".rodatas", ".BTF"] {
            assert!(!is_data_section(n), "{n}");
        }
    }
}
