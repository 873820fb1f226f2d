//! Code relocations and linking: reads the functions of every executable
//! section, resolves each code relocation (calls, function addresses, maps,
//! global data), and links an entry function with the sub-programs it
//! reaches into one program, as libbpf does.

use object::elf::{STB_GLOBAL, STT_FUNC};

use super::maps::{is_data_section, Maps};
use super::raw::{Elf, Section};
use super::{
    ElfError, FunctionInfo, ProgramSection, Reason, RelocTarget, RelocationInfo, R_BPF_64_32,
    R_BPF_64_64, R_BPF_64_ABS32, R_BPF_64_ABS64, R_BPF_64_NODYLD32,
};
use crate::disasm::format_instr;
use crate::isa::{
    Insn, CALL_LOCAL, INSN_SIZE, OP_CALL, OP_LDDW, PSEUDO_FUNC, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE,
};

/// What the linker does to one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fix {
    /// A local call to function k.
    Call(usize),
    /// A `lddw` of the address of function k.
    FuncAddr(usize),
    /// A `lddw` of map m.
    Map(usize),
    /// A `lddw` of global data: map m, offset.
    Data(usize, u32),
}

/// A function, its instructions and what to fix in them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Func {
    pub name: String,
    pub section_name: String,
    section: usize,
    /// Byte offset in the section.
    offset: u64,
    global: bool,
    insns: Vec<Insn>,
    /// (slot in the function, fix), sorted by slot.
    fixes: Vec<(usize, Fix)>,
}

/// The functions of an object, ready to link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Linker {
    funcs: Vec<Func>,
}

fn at(section: &str, offset: u64, reason: Reason) -> ElfError {
    ElfError::At {
        section: section.into(),
        offset,
        reason,
    }
}

impl Linker {
    /// Reads every executable section's functions and relocations.
    pub fn new(
        elf: &Elf,
        maps: &Maps,
    ) -> Result<(Linker, Vec<FunctionInfo>, Vec<RelocationInfo>), ElfError> {
        let mut funcs = Vec::new();
        for s in elf.sections.iter().filter(|s| s.is_exec()) {
            functions_of(elf, s, &mut funcs)?;
        }
        let infos = funcs
            .iter()
            .map(|f| FunctionInfo {
                name: f.name.clone(),
                section: f.section_name.clone(),
                offset: f.offset,
                size: (f.insns.len() * INSN_SIZE) as u64,
                global: f.global,
            })
            .collect();
        let mut linker = Linker { funcs };
        let mut relocs = Vec::new();
        for s in elf.sections.iter().filter(|s| s.is_exec()) {
            linker.relocate_section(elf, maps, s, &mut relocs)?;
        }
        linker.local_calls()?;
        for f in &mut linker.funcs {
            f.fixes.sort_by_key(|(k, _)| *k);
        }
        Ok((linker, infos, relocs))
    }

    pub fn functions(&self) -> &[Func] {
        &self.funcs
    }

    pub fn function_index(&self, name: &str) -> Option<usize> {
        self.funcs.iter().position(|f| f.name == name)
    }

    /// The function that starts at byte `offset` of section `section`.
    fn start_at(&self, section: usize, offset: i64) -> Option<usize> {
        self.funcs
            .iter()
            .position(|f| f.section == section && f.offset as i64 == offset)
    }

    /// The function of `section` that contains byte `offset`, and the slot.
    fn containing(&self, section: usize, offset: u64) -> Option<(usize, usize)> {
        self.funcs.iter().enumerate().find_map(|(k, f)| {
            let len = (f.insns.len() * INSN_SIZE) as u64;
            (f.section == section && offset >= f.offset && offset - f.offset < len)
                .then(|| (k, ((offset - f.offset) / INSN_SIZE as u64) as usize))
        })
    }

    fn relocate_section(
        &mut self,
        elf: &Elf,
        maps: &Maps,
        s: &Section,
        out: &mut Vec<RelocationInfo>,
    ) -> Result<(), ElfError> {
        let mut last = None;
        for (rel_sec, rel) in elf.rels_for(s.index) {
            let rel_name = elf.section_name(rel_sec);
            if !rel.offset.is_multiple_of(INSN_SIZE as u64) {
                return Err(at(
                    rel_name,
                    rel.entry_offset,
                    Reason::Misaligned {
                        what: format!("relocation offset {:#x}", rel.offset),
                    },
                ));
            }
            let Some((k, slot)) = self.containing(s.index, rel.offset) else {
                return Err(at(
                    rel_name,
                    rel.entry_offset,
                    Reason::RelocOutOfRange {
                        offset: rel.offset,
                        size: s.size,
                    },
                ));
            };
            if last == Some(rel.offset) {
                return Err(at(&s.name, rel.offset, Reason::DuplicateReloc));
            }
            last = Some(rel.offset);
            let (fix, target) =
                self.classify(elf, maps, s, k, slot, rel.offset, rel.kind, rel.symbol)?;
            self.funcs[k].fixes.push((slot, fix));
            out.push(RelocationInfo {
                section: s.name.clone(),
                offset: rel.offset,
                r_type: rel.kind,
                symbol: elf.symbols[rel.symbol as usize].name.clone(),
                target,
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn classify(
        &self,
        elf: &Elf,
        maps: &Maps,
        s: &Section,
        k: usize,
        slot: usize,
        offset: u64,
        r_type: u32,
        symbol: u32,
    ) -> Result<(Fix, RelocTarget), ElfError> {
        let f = &self.funcs[k];
        let insn = f.insns[slot];
        let bad = |why: String| {
            at(
                &s.name,
                offset,
                Reason::BadReloc {
                    r_type,
                    insn: format_instr(&f.insns, slot),
                    why,
                },
            )
        };
        if !matches!(
            r_type,
            R_BPF_64_64 | R_BPF_64_ABS64 | R_BPF_64_ABS32 | R_BPF_64_NODYLD32 | R_BPF_64_32
        ) {
            return Err(at(&s.name, offset, Reason::UnknownRelocType(r_type)));
        }
        let sym = &elf.symbols[symbol as usize];
        let Some(sym_sec) = sym.section.and_then(|i| elf.sections.get(i)) else {
            return Err(at(
                &s.name,
                offset,
                Reason::Unsupported(format!(
                    "relocation against the undefined or absolute symbol `{}` (externs, kfuncs, ksyms)",
                    sym.name
                )),
            ));
        };
        let function_at = |byte: Option<i64>| -> Result<usize, ElfError> {
            let target = byte.ok_or_else(|| bad("the target offset overflows".into()))?;
            self.start_at(sym_sec.index, target).ok_or_else(|| {
                at(
                    &s.name,
                    offset,
                    Reason::BadCallTarget {
                        section: sym_sec.name.clone(),
                        target,
                    },
                )
            })
        };
        if insn.code == OP_CALL && insn.src == CALL_LOCAL {
            if r_type != R_BPF_64_32 {
                return Err(bad(format!(
                    "a call needs type {R_BPF_64_32} (R_BPF_64_32)"
                )));
            }
            if !sym_sec.is_exec() {
                return Err(bad(format!(
                    "the call's symbol is in `{}`, not code",
                    sym_sec.name
                )));
            }
            let byte = (insn.imm as i64 + 1)
                .checked_mul(INSN_SIZE as i64)
                .and_then(|d| (sym.value as i64).checked_add(d));
            let t = function_at(byte)?;
            return Ok((
                Fix::Call(t),
                RelocTarget::Call {
                    function: self.funcs[t].name.clone(),
                },
            ));
        }
        if insn.code != OP_LDDW {
            return Err(bad("relocations apply to calls and lddw only".into()));
        }
        if r_type != R_BPF_64_64 {
            return Err(bad(format!(
                "a lddw needs type {R_BPF_64_64} (R_BPF_64_64)"
            )));
        }
        if slot + 1 >= f.insns.len() {
            return Err(bad("the lddw has no second slot".into()));
        }
        if sym_sec.is_exec() {
            let t = function_at((sym.value as i64).checked_add(insn.imm as i64))?;
            return Ok((
                Fix::FuncAddr(t),
                RelocTarget::FuncAddr {
                    function: self.funcs[t].name.clone(),
                },
            ));
        }
        if maps.is_map_section(elf, sym_sec.index) {
            let m = maps.at(sym_sec.index, sym.value).ok_or_else(|| {
                bad(format!(
                    "no map is defined at `{}` + {:#x}",
                    sym_sec.name, sym.value
                ))
            })?;
            return Ok((Fix::Map(m), RelocTarget::Map { map: m }));
        }
        if is_data_section(&sym_sec.name) {
            let m = maps
                .data_of(sym_sec.index)
                .ok_or_else(|| bad(format!("`{}` is empty", sym_sec.name)))?;
            let off = sym.value.checked_add(insn.imm as u32 as u64);
            let off = off
                .filter(|&o| o <= sym_sec.size)
                .and_then(|o| u32::try_from(o).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "offset {:#x} + {:#x} is outside `{}` ({} bytes)",
                        sym.value, insn.imm as u32, sym_sec.name, sym_sec.size
                    ))
                })?;
            return Ok((
                Fix::Data(m, off),
                RelocTarget::Data {
                    map: m,
                    offset: off,
                },
            ));
        }
        Err(bad(format!(
            "symbol `{}` is in `{}`, which is neither code, maps nor global data",
            sym.name, sym_sec.name
        )))
    }

    /// Local calls and function addresses without a relocation: the target
    /// is relative to the instruction in its own section.
    fn local_calls(&mut self) -> Result<(), ElfError> {
        for k in 0..self.funcs.len() {
            let f = &self.funcs[k];
            let mut extra = Vec::new();
            for (slot, insn) in f.insns.iter().enumerate() {
                let is_call = insn.code == OP_CALL && insn.src == CALL_LOCAL;
                let is_addr = insn.code == OP_LDDW && insn.src == PSEUDO_FUNC;
                if !(is_call || is_addr) || f.fixes.iter().any(|(s, _)| *s == slot) {
                    continue;
                }
                if is_addr && slot + 1 >= f.insns.len() {
                    // A truncated lddw: the verifier rejects it.
                    continue;
                }
                let here = f.offset as i64 + (slot * INSN_SIZE) as i64;
                let target = here + (insn.imm as i64 + 1) * INSN_SIZE as i64;
                let len = (f.insns.len() * INSN_SIZE) as i64;
                if target >= f.offset as i64 && target < f.offset as i64 + len {
                    // Inside the same function: the relative offset stays valid.
                    continue;
                }
                let Some(t) = self.start_at(f.section, target) else {
                    return Err(at(
                        &f.section_name,
                        here as u64,
                        Reason::BadCallTarget {
                            section: f.section_name.clone(),
                            target,
                        },
                    ));
                };
                extra.push((
                    slot,
                    if is_call {
                        Fix::Call(t)
                    } else {
                        Fix::FuncAddr(t)
                    },
                ));
            }
            self.funcs[k].fixes.extend(extra);
        }
        Ok(())
    }

    /// Links function `k` as an entry point.
    pub fn link(&self, k: usize) -> Result<ProgramSection, ElfError> {
        let entry = &self.funcs[k];
        let mut base: Vec<Option<usize>> = vec![None; self.funcs.len()];
        // Depth first, in instruction order, as libbpf (and aya) link: a
        // callee is appended when first seen and its own callees follow it.
        let mut order = vec![k];
        base[k] = Some(0);
        let mut total = entry.insns.len();
        let mut stack = vec![(k, 0usize)];
        while let Some((f, next)) = stack.last_mut() {
            let Some(&(_, fix)) = self.funcs[*f].fixes.get(*next) else {
                stack.pop();
                continue;
            };
            *next += 1;
            if let Fix::Call(t) | Fix::FuncAddr(t) = fix {
                if base[t].is_none() {
                    base[t] = Some(total);
                    total += self.funcs[t].insns.len();
                    order.push(t);
                    stack.push((t, 0));
                }
            }
        }
        let mut insns = Vec::with_capacity(total);
        let mut subprograms = Vec::new();
        for &f in &order {
            let func = &self.funcs[f];
            let start = insns.len();
            if f != k {
                subprograms.push((func.name.clone(), start));
            }
            insns.extend_from_slice(&func.insns);
            for &(slot, fix) in &func.fixes {
                let p = start + slot;
                let rel = |t: usize| -> Result<i32, ElfError> {
                    let target = base[t].unwrap_or(0) as i64;
                    i32::try_from(target - p as i64 - 1).map_err(|_| {
                        at(
                            &func.section_name,
                            func.offset + (slot * INSN_SIZE) as u64,
                            Reason::Unsupported(
                                "a program too large for 32-bit call offsets".into(),
                            ),
                        )
                    })
                };
                match fix {
                    Fix::Call(t) => insns[p].imm = rel(t)?,
                    Fix::FuncAddr(t) => {
                        let imm = rel(t)?;
                        set_lddw(&mut insns, p, PSEUDO_FUNC, imm, 0);
                    }
                    Fix::Map(m) => set_lddw(&mut insns, p, PSEUDO_MAP_FD, m as i32, 0),
                    Fix::Data(m, off) => {
                        set_lddw(&mut insns, p, PSEUDO_MAP_VALUE, m as i32, off as i32)
                    }
                }
            }
        }
        Ok(ProgramSection {
            name: entry.name.clone(),
            section: entry.section_name.clone(),
            offset: entry.offset,
            size: (entry.insns.len() * INSN_SIZE) as u64,
            insns,
            subprograms,
        })
    }
}

/// Sets the pseudo source and both immediates of the `lddw` at `p`.
fn set_lddw(insns: &mut [Insn], p: usize, src: u8, imm: i32, next_imm: i32) {
    if let [first, second, ..] = &mut insns[p..] {
        first.src = src;
        first.imm = imm;
        second.imm = next_imm;
    }
}

/// The functions of one executable section, from its `STT_FUNC` symbols
/// (the whole section is one function, named after it, when it has none).
fn functions_of(elf: &Elf, s: &Section, out: &mut Vec<Func>) -> Result<(), ElfError> {
    let size = s.data.len() as u64;
    if !size.is_multiple_of(INSN_SIZE as u64) {
        return Err(at(
            &s.name,
            size - size % INSN_SIZE as u64,
            Reason::Misaligned {
                what: format!("the section's size {size}"),
            },
        ));
    }
    let mut syms: Vec<_> = elf
        .symbols
        .iter()
        .filter(|y| y.section == Some(s.index) && y.kind == STT_FUNC)
        .collect();
    syms.sort_by_key(|y| y.value);
    syms.dedup_by_key(|y| y.value);
    if syms.is_empty() {
        if size > 0 {
            out.push(func(s, s.name.clone(), 0, size, true));
        }
        return Ok(());
    }
    for (i, y) in syms.iter().enumerate() {
        let next = syms.get(i + 1).map_or(size, |n| n.value);
        let len = if y.size == 0 {
            next.saturating_sub(y.value)
        } else {
            y.size
        };
        let end = y.value.checked_add(len);
        if end.is_none_or(|e| e > size) {
            return Err(at(
                &s.name,
                y.value,
                Reason::SymbolOutOfRange {
                    symbol: y.name.clone(),
                    value: y.value,
                    size: len,
                    section_size: size,
                },
            ));
        }
        if end.is_some_and(|e| e > next) {
            return Err(at(
                &s.name,
                y.value,
                Reason::SymbolOutOfRange {
                    symbol: y.name.clone(),
                    value: y.value,
                    size: len,
                    section_size: next,
                },
            ));
        }
        if !y.value.is_multiple_of(INSN_SIZE as u64) || !len.is_multiple_of(INSN_SIZE as u64) {
            return Err(at(
                &s.name,
                y.value,
                Reason::Misaligned {
                    what: format!("function `{}` ({len} bytes at {:#x})", y.name, y.value),
                },
            ));
        }
        out.push(func(s, y.name.clone(), y.value, len, y.bind == STB_GLOBAL));
    }
    Ok(())
}

fn func(s: &Section, name: String, offset: u64, len: u64, global: bool) -> Func {
    let start = offset as usize;
    let end = start + len as usize;
    let insns = s.data[start..end]
        .chunks_exact(INSN_SIZE)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            Insn::from_bytes(b)
        })
        .collect();
    Func {
        name,
        section_name: s.name.clone(),
        section: s.index,
        offset,
        global,
        insns,
        fixes: Vec::new(),
    }
}
