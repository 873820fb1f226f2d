//! A small, bounds-checked loader for x86-64 ELF relocatable objects: the
//! objects this crate makes (JIT code and AOT objects alike).
//!
//! It maps the allocated sections into one anonymous `mmap` (text, then
//! read-only data, then writable data, each page-aligned so that each can
//! get its own protection), adds a stub per undefined symbol (an absolute
//! jump, so that host functions anywhere in the address space are
//! reachable from `call rel32`) and a GOT slot per symbol referenced
//! through the GOT, applies the relocations (`R_X86_64_64`, `PC32`,
//! `PLT32`, `PC64`, `32`, `32S`, `GOTPCREL`, `GOTPCRELX`, `REX_GOTPCRELX`)
//! and makes text read+execute, read-only data read-only. Every offset and
//! size taken from the file is checked before use. Dropping the [`Image`]
//! unmaps it.

use std::collections::HashMap;

use object::elf;
use object::read::{
    Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex, SymbolIndex, SymbolSection,
};
use object::{Architecture, ObjectKind, RelocationFlags, SectionFlags, SectionKind};

/// Why an object cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("not a readable object file: {0}")]
    Parse(String),
    #[error("unsupported object: {0}")]
    Unsupported(String),
    #[error("undefined symbol `{0}`")]
    Undefined(String),
    #[error("bad relocation in section {section} at offset {offset:#x}: {why}")]
    Relocation {
        section: String,
        offset: u64,
        why: String,
    },
    #[error("the object does not define `{0}`")]
    MissingEntry(String),
    #[error("mapping memory failed: {0}")]
    Map(String),
}

/// What an undefined symbol resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A plain address (0 for an absent weak symbol).
    Addr(u64),
    /// A stub that loads `arg` into the sixth integer argument register
    /// (r9) and jumps to `target`: how one host function serves many
    /// helper symbols.
    WithSixthArg { target: u64, arg: u32 },
}

/// Loaded code and data. Immutable after loading.
pub struct Image {
    base: *mut u8,
    len: usize,
    symbols: HashMap<String, u64>,
}

// SAFETY: the mapping is private to this value, written only during
// `load` and read-only (or executable) afterwards; the raw pointer is only
// used to unmap it in `drop`.
unsafe impl Send for Image {}
// SAFETY: as above; shared access never writes.
unsafe impl Sync for Image {}

impl Image {
    /// Address of a defined global symbol.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// Size of the mapping in bytes.
    pub fn mapped_len(&self) -> usize {
        self.len
    }

    /// `n` little-endian u64s at `addr`, if they lie inside the mapping.
    pub fn read_u64s(&self, addr: u64, n: usize) -> Option<Vec<u64>> {
        let start = usize::try_from(addr.checked_sub(self.base as u64)?).ok()?;
        let end = start.checked_add(n.checked_mul(8)?)?;
        if end > self.len {
            return None;
        }
        // SAFETY: [start, end) lies inside the mapping, which is readable.
        let bytes = unsafe { std::slice::from_raw_parts(self.base.add(start), end - start) };
        Some(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        )
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping made in `load`, and
        // no code in it can be running (`&mut self`).
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}

const PAGE: usize = 4096;
const STUB_SIZE: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Region {
    Text,
    ReadOnly,
    Writable,
}

struct Placed<'data> {
    index: SectionIndex,
    name: String,
    region: Region,
    /// Offset inside its region, then (after layout) inside the mapping.
    offset: usize,
    size: usize,
    data: Option<&'data [u8]>,
}

fn align_up(v: usize, a: usize) -> Option<usize> {
    v.checked_add(a - 1).map(|x| x & !(a - 1))
}

fn parse_err(e: object::Error) -> LoadError {
    LoadError::Parse(e.to_string())
}

/// Loads `bytes`, resolving undefined symbols with `resolve`.
pub fn load(bytes: &[u8], resolve: &dyn Fn(&str) -> Option<Resolved>) -> Result<Image, LoadError> {
    let file = object::File::parse(bytes).map_err(parse_err)?;
    if file.architecture() != Architecture::X86_64 {
        return Err(LoadError::Unsupported(format!(
            "architecture {:?} (only x86-64 objects load in process)",
            file.architecture()
        )));
    }
    if file.kind() != ObjectKind::Relocatable {
        return Err(LoadError::Unsupported(format!(
            "{:?} file (a relocatable object is expected)",
            file.kind()
        )));
    }

    // Sections to map.
    let mut placed: Vec<Placed> = Vec::new();
    for s in file.sections() {
        let SectionFlags::Elf { sh_flags } = s.flags() else {
            return Err(LoadError::Unsupported("not an ELF object".into()));
        };
        let sh_flags = sh_flags as u32;
        if sh_flags & elf::SHF_ALLOC == 0 || s.size() == 0 {
            continue;
        }
        let name = s.name().unwrap_or("?").to_string();
        if sh_flags & elf::SHF_TLS != 0 {
            return Err(LoadError::Unsupported(format!(
                "thread-local section {name}"
            )));
        }
        let region = if sh_flags & elf::SHF_EXECINSTR != 0 {
            Region::Text
        } else if sh_flags & elf::SHF_WRITE != 0 {
            Region::Writable
        } else {
            Region::ReadOnly
        };
        let size = usize::try_from(s.size())
            .ok()
            .filter(|&n| n < 1 << 30)
            .ok_or_else(|| LoadError::Unsupported(format!("section {name} is too large")))?;
        let data = if s.kind() == SectionKind::UninitializedData {
            None
        } else {
            let d = s.data().map_err(parse_err)?;
            if d.len() != size {
                return Err(LoadError::Parse(format!(
                    "section {name}: {} bytes of data for size {size}",
                    d.len()
                )));
            }
            Some(d)
        };
        placed.push(Placed {
            index: s.index(),
            name,
            region,
            offset: s.align().max(1) as usize, // alignment, until layout
            size,
            data,
        });
    }

    // Undefined symbols get a stub; GOT-relative references a slot.
    let mut stubs: Vec<SymbolIndex> = Vec::new();
    let mut got: Vec<SymbolIndex> = Vec::new();
    for p in &placed {
        let s = file.section_by_index(p.index).map_err(parse_err)?;
        for (_, r) in s.relocations() {
            let RelocationTarget::Symbol(si) = r.target() else {
                continue;
            };
            let sym = file.symbol_by_index(si).map_err(parse_err)?;
            if sym.section() == SymbolSection::Undefined && !stubs.contains(&si) {
                stubs.push(si);
            }
            if let RelocationFlags::Elf { r_type } = r.flags() {
                if matches!(
                    r_type,
                    elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX
                ) && !got.contains(&si)
                {
                    got.push(si);
                }
            }
        }
    }

    // Layout: [text | stubs] [rodata | got] [data | bss], page-aligned regions.
    let mut cursor = 0usize;
    let mut region_start = [0usize; 3];
    let mut region_end = [0usize; 3];
    let mut stub_base = 0;
    let mut got_base = 0;
    let too_big = || LoadError::Unsupported("the object is too large".into());
    for (k, region) in [Region::Text, Region::ReadOnly, Region::Writable]
        .into_iter()
        .enumerate()
    {
        cursor = align_up(cursor, PAGE).ok_or_else(too_big)?;
        region_start[k] = cursor;
        for p in placed.iter_mut().filter(|p| p.region == region) {
            let a = p.offset;
            if !a.is_power_of_two() || a > PAGE {
                return Err(LoadError::Unsupported(format!(
                    "section {} has alignment {a}",
                    p.name
                )));
            }
            cursor = align_up(cursor, a).ok_or_else(too_big)?;
            p.offset = cursor;
            cursor = cursor.checked_add(p.size).ok_or_else(too_big)?;
        }
        match region {
            Region::Text => {
                cursor = align_up(cursor, 16).ok_or_else(too_big)?;
                stub_base = cursor;
                cursor += stubs.len() * STUB_SIZE;
            }
            Region::ReadOnly => {
                cursor = align_up(cursor, 8).ok_or_else(too_big)?;
                got_base = cursor;
                cursor += got.len() * 8;
            }
            Region::Writable => {}
        }
        region_end[k] = cursor;
    }
    let len = align_up(cursor.max(1), PAGE).ok_or_else(too_big)?;
    if len > 1 << 31 {
        return Err(too_big());
    }

    // SAFETY: an anonymous private mapping with no address hint; the result
    // is checked against MAP_FAILED.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(LoadError::Map(std::io::Error::last_os_error().to_string()));
    }
    let mut image = Image {
        base: base as *mut u8,
        len,
        symbols: HashMap::new(),
    };
    // SAFETY: the mapping is `len` bytes, readable and writable, and owned
    // by `image` alone until it is returned.
    let mem: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(image.base, len) };
    let addr0 = image.base as u64;

    for p in &placed {
        if let Some(d) = p.data {
            mem[p.offset..p.offset + p.size].copy_from_slice(d);
        }
    }
    let section_addr: HashMap<SectionIndex, u64> = placed
        .iter()
        .map(|p| (p.index, addr0 + p.offset as u64))
        .collect();

    // Resolve undefined symbols and write their stubs.
    let mut undefined: HashMap<SymbolIndex, (u64, u64)> = HashMap::new(); // (value, call target)
    for (k, &si) in stubs.iter().enumerate() {
        let sym = file.symbol_by_index(si).map_err(parse_err)?;
        let name = sym.name().map_err(parse_err)?;
        let resolved = match resolve(name) {
            Some(r) => r,
            None if sym.is_weak() => Resolved::Addr(0),
            None => return Err(LoadError::Undefined(name.to_string())),
        };
        let at = stub_base + k * STUB_SIZE;
        let stub = &mut mem[at..at + STUB_SIZE];
        stub.fill(0xcc); // int3
        let mut n = 0;
        let target = match resolved {
            Resolved::Addr(a) => a,
            Resolved::WithSixthArg { target, arg } => {
                // mov r9, imm32 (sign-extended; ids are small)
                stub[..3].copy_from_slice(&[0x49, 0xc7, 0xc1]);
                stub[3..7].copy_from_slice(&arg.to_le_bytes());
                n = 7;
                target
            }
        };
        // movabs rax, target; jmp rax
        stub[n..n + 2].copy_from_slice(&[0x48, 0xb8]);
        stub[n + 2..n + 10].copy_from_slice(&target.to_le_bytes());
        stub[n + 10..n + 12].copy_from_slice(&[0xff, 0xe0]);
        let stub_addr = addr0 + at as u64;
        let value = match resolved {
            Resolved::Addr(a) => a,
            Resolved::WithSixthArg { .. } => stub_addr,
        };
        undefined.insert(si, (value, stub_addr));
    }

    // Symbol values: (address as data, address as call target).
    let symbol_value = |si: SymbolIndex| -> Result<(u64, u64), LoadError> {
        if let Some(&v) = undefined.get(&si) {
            return Ok(v);
        }
        let sym = file.symbol_by_index(si).map_err(parse_err)?;
        let v = match sym.section() {
            SymbolSection::Section(idx) => {
                let base = section_addr.get(&idx).ok_or_else(|| {
                    LoadError::Unsupported(format!(
                        "symbol `{}` is in a section that is not loaded",
                        sym.name().unwrap_or("?")
                    ))
                })?;
                base.wrapping_add(sym.address())
            }
            SymbolSection::Absolute => sym.address(),
            other => {
                return Err(LoadError::Unsupported(format!(
                    "symbol `{}` in {other:?}",
                    sym.name().unwrap_or("?")
                )))
            }
        };
        Ok((v, v))
    };

    for (k, &si) in got.iter().enumerate() {
        let (value, _) = symbol_value(si)?;
        let at = got_base + k * 8;
        mem[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    // Relocations.
    for p in &placed {
        let s = file.section_by_index(p.index).map_err(parse_err)?;
        for (offset, r) in s.relocations() {
            let bad = |why: String| LoadError::Relocation {
                section: p.name.clone(),
                offset,
                why,
            };
            let RelocationFlags::Elf { r_type } = r.flags() else {
                return Err(bad("not an ELF relocation".into()));
            };
            if r_type == elf::R_X86_64_NONE {
                continue;
            }
            let (s_data, s_call, got_slot) = match r.target() {
                RelocationTarget::Symbol(si) => {
                    let (d, c) = symbol_value(si)?;
                    let slot = got
                        .iter()
                        .position(|&g| g == si)
                        .map(|k| addr0 + (got_base + k * 8) as u64);
                    (d, c, slot)
                }
                RelocationTarget::Section(idx) => {
                    let a = *section_addr
                        .get(&idx)
                        .ok_or_else(|| bad("relocation against an unloaded section".into()))?;
                    (a, a, None)
                }
                RelocationTarget::Absolute => (0, 0, None),
                _ => return Err(bad("unknown relocation target".into())),
            };
            let a = r.addend();
            let place = addr0 + p.offset as u64 + offset;
            let width = match r_type {
                elf::R_X86_64_64 | elf::R_X86_64_PC64 => 8,
                _ => 4,
            };
            let off = usize::try_from(offset)
                .ok()
                .filter(|&o| o.checked_add(width).is_some_and(|e| e <= p.size))
                .ok_or_else(|| bad(format!("{width}-byte field outside the section")))?;
            let at = p.offset + off;
            let rel32 = |v: i64| -> Result<[u8; 4], LoadError> {
                i32::try_from(v)
                    .map(|x| x.to_le_bytes())
                    .map_err(|_| bad(format!("value {v:#x} does not fit 32 bits")))
            };
            let bytes: Vec<u8> = match r_type {
                elf::R_X86_64_64 => s_data.wrapping_add(a as u64).to_le_bytes().to_vec(),
                elf::R_X86_64_PC64 => s_data
                    .wrapping_add(a as u64)
                    .wrapping_sub(place)
                    .to_le_bytes()
                    .to_vec(),
                elf::R_X86_64_PC32 | elf::R_X86_64_PLT32 => {
                    let v = s_call.wrapping_add(a as u64).wrapping_sub(place) as i64;
                    rel32(v)?.to_vec()
                }
                elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX => {
                    let g = got_slot.ok_or_else(|| bad("GOT slot missing".into()))?;
                    rel32(g.wrapping_add(a as u64).wrapping_sub(place) as i64)?.to_vec()
                }
                elf::R_X86_64_32 => {
                    let v = s_data.wrapping_add(a as u64);
                    u32::try_from(v)
                        .map_err(|_| bad(format!("address {v:#x} does not fit 32 bits")))?
                        .to_le_bytes()
                        .to_vec()
                }
                elf::R_X86_64_32S => rel32(s_data.wrapping_add(a as u64) as i64)?.to_vec(),
                t => return Err(bad(format!("relocation type {t} is not supported"))),
            };
            mem[at..at + width].copy_from_slice(&bytes);
        }
    }

    // Exported symbols.
    for sym in file.symbols() {
        if !sym.is_global() {
            continue;
        }
        if let SymbolSection::Section(idx) = sym.section() {
            if let (Some(p), Ok(name)) = (placed.iter().find(|p| p.index == idx), sym.name()) {
                if sym.address() < p.size as u64 {
                    image
                        .symbols
                        .insert(name.to_string(), addr0 + p.offset as u64 + sym.address());
                }
            }
        }
    }

    // Protections.
    let protect = |start: usize, end: usize, prot: libc::c_int| -> Result<(), LoadError> {
        let end = align_up(end, PAGE).ok_or_else(too_big)?;
        if end <= start {
            return Ok(());
        }
        // SAFETY: [start, end) lies inside the mapping (both page-aligned,
        // end <= len).
        let rc = unsafe {
            libc::mprotect(
                image.base.add(start) as *mut libc::c_void,
                end - start,
                prot,
            )
        };
        if rc != 0 {
            return Err(LoadError::Map(std::io::Error::last_os_error().to_string()));
        }
        Ok(())
    };
    protect(
        region_start[0],
        region_end[0],
        libc::PROT_READ | libc::PROT_EXEC,
    )?;
    protect(region_start[1], region_end[1], libc::PROT_READ)?;
    Ok(image)
}
