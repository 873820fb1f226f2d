//! What a JIT can know of register values while it translates a function
//! in pc order, so that it leaves out memory checks it can prove
//! redundant. Both JIT tiers use the same rules, so they check the same
//! accesses.
//!
//! Facts come from the instructions since the last point where control
//! flow merges: a block that only the previous one falls through to (no
//! branch leads there) continues what that one knew. Any other block
//! starts knowing r10, the offsets from r1, r2 and r10 that every path
//! to it brings (a data-flow pass over the function, `Blocks`), and
//! what the function's first block established of registers that nothing
//! after that block writes (the first block runs before every other one,
//! unless a jump leads back to it). What an access through a register
//! with a fact needs ([`RegisterFacts::target`]):
//!
//! - `r10 + k` ([`Known::Stack`]): nothing when the access is statically
//!   inside the current frame;
//! - a value of an array map, as an inlined lookup returned it
//!   ([`Known::MapValue`]): nothing when the access lies within one
//!   value's stride, once a `jeq r, 0` has ruled out the lookup's 0;
//!   before that, a test for 0 alone;
//! - a constant from `lddw` ([`Known::Const`], a global variable's
//!   address for one): nothing when the access lies in an array map's
//!   values;
//! - `input + k` ([`Known::Input`], r1 at the program's entry): nothing
//!   when the access lies within the length that the tests of r2 on every
//!   path to it have established (`if r2 < 16 goto out`, `if r2 s< 14
//!   goto out` and the like: `input_length_floors`).
//!
//! The map rules rest on what [`crate::backend::ArrayMapLayout`] promises:
//! the `max_entries * stride` bytes at `values` are a region of every run
//! (writable when the map is), so the interpreter allows such an access.
//! The input rule rests on what [`crate::backend::CompiledCode::call`]
//! promises of r1 and r2: the input's start and length, or r2 = 0 (then
//! no test of r2 establishes a length above 0, and no access is left
//! unchecked).

use crate::backend::ArrayMapLayout;
use crate::instr::{AluOp, Cond, Instr, MemSize, Operand, Width};
use crate::isa::FRAME_POINTER;
use crate::program::{statically_in_frame, Function, Program};

/// What is known of a register's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// `r10 + k` (a `mov` from r10, then `add`/`sub` of immediates).
    Stack(i64),
    /// `k` bytes into a value of array map `map`, as a lookup returned it
    /// (then `add`/`sub` of immediates). While `maybe_zero`, the lookup's
    /// "not found" (0, with `k` = 0) has not been ruled out.
    MapValue {
        map: ArrayMapLayout,
        k: i64,
        maybe_zero: bool,
    },
    /// A constant from `lddw`.
    Const(u64),
    /// `k` bytes into the input (r1 at the program's entry, then moves and
    /// `add`/`sub` of immediates).
    Input(i64),
    /// The input's length (r2 at the program's entry, and its copies).
    InputLength,
}

impl Known {
    /// What an inlined lookup in `map` returns: a value, or 0.
    pub fn lookup_result(map: ArrayMapLayout) -> Known {
        Known::MapValue {
            map,
            k: 0,
            maybe_zero: true,
        }
    }

    /// The fact after adding `d` to the register.
    fn offset_by(self, d: i64) -> Option<Known> {
        match self {
            Known::Stack(k) => Some(Known::Stack(k.wrapping_add(d))),
            Known::MapValue {
                map,
                k,
                maybe_zero: false,
            } => Some(Known::MapValue {
                map,
                k: k.checked_add(d)?,
                maybe_zero: false,
            }),
            // 0 + d is no value's address.
            Known::MapValue { .. } => None,
            Known::Const(c) => Some(Known::Const(c.wrapping_add(d as u64))),
            Known::Input(k) => Some(Known::Input(k.checked_add(d)?)),
            Known::InputLength => None,
        }
    }
}

/// What an access through a register with a known value needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownTarget {
    /// No check: every run allows it.
    Allowed,
    /// Into an array map's values unless the register is 0: a test for 0
    /// (and the full check, which refuses 0, when it is).
    AllowedUnlessZero,
}

/// The facts of r0 to r9 at the current pc of a translation in pc order.
#[derive(Clone, Debug)]
pub struct RegisterFacts {
    known: [Option<Known>; 10],
    /// Per pc of the function (relative): whether a jump leads there.
    jumped_to: Vec<bool>,
    start: usize,
    /// Per pc of the function (relative): the input length every path
    /// there has established ([`input_length_floors`]); empty when the
    /// input facts do not apply.
    input_floors: Vec<u64>,
    /// That length at the current pc.
    input_floor: u64,
    /// The function's blocks, for the facts at merge points.
    blocks: Blocks,
    /// Where the function's first block ends (absolute pc).
    entry_end: usize,
    /// Registers (bit r) that nothing from `entry_end` on writes (every
    /// call counts as writing r0 to r5).
    kept: u16,
    /// What the first block established of the `kept` registers: true in
    /// every later block (once the translation has passed `entry_end`).
    stable: [Option<Known>; 10],
}

impl RegisterFacts {
    /// For translating `func` of `program`: nothing known yet, but when
    /// `input_args` (the code is called as [`crate::backend::CompiledCode::call`]
    /// promises) and `func` is the program's entry, which no `call local`
    /// enters again, r1 is the input and r2 its length.
    pub fn new(program: &Program, func: Function, input_args: bool) -> RegisterFacts {
        let jumped_to = jump_targets(program, func);
        let entry_end = (func.start + 1..func.end)
            .find(|&pc| program.is_block_start(pc))
            .unwrap_or(func.end);
        let kept = !program.instrs()[entry_end..func.end]
            .iter()
            .fold(0u16, |w, i| w | writes(i));
        let mut known = [None; 10];
        // The entry function's r1 and r2 are the input's only when no
        // bpf-to-bpf call enters it again (with arguments of its own).
        let reentered = || {
            program
                .instrs()
                .iter()
                .any(|i| matches!(i, Instr::CallLocal { target } if *target == func.start as i64))
        };
        let input = input_args && func.start == 0 && !reentered();
        if input {
            known[1] = Some(Known::Input(0));
            known[2] = Some(Known::InputLength);
        }
        let blocks = Blocks::new(program, func, &known);
        let input_floors = if input {
            input_length_floors(program, func, &blocks)
        } else {
            Vec::new()
        };
        RegisterFacts {
            known,
            jumped_to,
            start: func.start,
            input_floors,
            input_floor: 0,
            blocks,
            entry_end,
            kept,
            stable: [None; 10],
        }
    }

    /// For translating the code of `func` from the block at `pc` on, when
    /// that code is compiled on its own and entered there from code
    /// compiled elsewhere (a later piece of a function cut in pieces):
    /// what every path to `pc` brings, and what the first block
    /// establishes of the registers nothing later writes (as
    /// [`RegisterFacts::enter_block`] has it once a translation from the
    /// start has passed that block; here found by following the first
    /// block's instructions as a translation does, except that a lookup
    /// it inlines makes nothing known of r0).
    pub fn for_code_from(
        program: &Program,
        func: Function,
        input_args: bool,
        pc: usize,
    ) -> RegisterFacts {
        let mut f = RegisterFacts::new(program, func, input_args);
        if !f.jumped_to[0] {
            for p in func.start..f.entry_end {
                match program.instrs()[p] {
                    Instr::Alu {
                        width,
                        op,
                        dst,
                        src,
                    } => {
                        let known = f.after_alu(width, op, dst, src);
                        f.set(dst, known);
                    }
                    Instr::Lddw { dst, value, .. } => f.set(dst, Some(Known::Const(value))),
                    i => {
                        let w = writes(&i);
                        for r in 0..10u8 {
                            if w >> r & 1 == 1 {
                                f.set(r, None);
                            }
                        }
                    }
                }
            }
            for (r, fact) in f.stable.iter_mut().enumerate() {
                *fact = f.known[r].filter(|_| f.kept >> r & 1 == 1);
            }
        }
        let k = pc - f.start;
        f.input_floor = f.input_floors.get(k).copied().unwrap_or(0);
        let merged = f.blocks.entry_at(k);
        for (r, fact) in f.known.iter_mut().enumerate() {
            *fact = merged[r].or(f.stable[r]);
        }
        f
    }

    /// At the start of the block at `pc`: the facts carry over when only
    /// the previous instruction's fall-through leads here, and after a
    /// 64-bit `jeq rX, 0` rX is not 0. Where paths merge, what
    /// `Blocks` found on all of them (offsets from the input, its
    /// length and r10), and what the first block established of
    /// registers nothing later writes. The function's first block keeps the
    /// facts it starts with unless a jump leads back to it.
    pub fn enter_block(&mut self, program: &Program, pc: usize) {
        let k = pc - self.start;
        self.input_floor = self.input_floors.get(k).copied().unwrap_or(0);
        if k == 0 && !self.jumped_to[0] {
            return;
        }
        if pc == self.entry_end && !self.jumped_to[0] {
            for (r, fact) in self.stable.iter_mut().enumerate() {
                *fact = self.known[r].filter(|_| self.kept >> r & 1 == 1);
            }
        }
        let before = (k > 0).then(|| program.instrs()[pc - 1]);
        let only_fall_through = only_fall_through(&self.jumped_to, k, before);
        if !only_fall_through {
            // What every path brings (the offsets of r1, r2 and r10), else
            // what the first block established.
            let merged = self.blocks.entry_at(k);
            for (r, fact) in self.known.iter_mut().enumerate() {
                *fact = merged[r].or(self.stable[r]);
            }
            return;
        }
        if let Some(Instr::Jcond {
            width: Width::W64,
            cond: Cond::Eq,
            dst,
            src: Operand::Imm(0),
            ..
        }) = before
        {
            if let Some(Some(Known::MapValue { maybe_zero, .. })) = self.known.get_mut(dst as usize)
            {
                *maybe_zero = false;
            }
        }
    }

    /// Forgets everything (code that no block starts).
    pub fn clear(&mut self) {
        self.known = [None; 10];
        self.input_floor = 0;
    }

    /// What is known of `r`; r10 is `r10 + 0`.
    pub fn of(&self, r: u8) -> Option<Known> {
        match r {
            FRAME_POINTER => Some(Known::Stack(0)),
            _ => self.known.get(r as usize).copied().flatten(),
        }
    }

    /// `r` was just set to a value of which `fact` is known.
    pub fn set(&mut self, r: u8, fact: Option<Known>) {
        if let Some(k) = self.known.get_mut(r as usize) {
            *k = fact;
        }
    }

    /// What is known of `dst` after the ALU instruction `op dst, src`
    /// (read before it runs).
    pub fn after_alu(&self, width: Width, op: AluOp, dst: u8, src: Operand) -> Option<Known> {
        match (width, op, src) {
            (Width::W64, AluOp::Mov, Operand::Reg(s)) => self.of(s),
            (Width::W64, AluOp::Add, Operand::Imm(i)) => self.of(dst)?.offset_by(i as i64),
            (Width::W64, AluOp::Sub, Operand::Imm(i)) => self.of(dst)?.offset_by(-(i as i64)),
            _ => None,
        }
    }

    /// `Some(k)` when `r` holds `r10 + k`.
    pub fn stack_offset(&self, r: u8) -> Option<i64> {
        match self.of(r)? {
            Known::Stack(k) => Some(k),
            _ => None,
        }
    }

    /// Whether `[r + off, r + off + size)` is statically in the current
    /// frame (`r` is r10 or holds `r10 + k`).
    pub fn in_frame(&self, r: u8, off: i16, size: MemSize) -> bool {
        self.stack_offset(r)
            .and_then(|k| i16::try_from(k.checked_add(off as i64)?).ok())
            .is_some_and(|o| statically_in_frame(FRAME_POINTER, o, size))
    }

    /// What an access of `size` at `r + off` (a store when `write`) needs
    /// when the facts put it in array-map values: within one value's
    /// stride through a lookup's result, or in `array_maps`' values at a
    /// constant address; writable maps only for a write.
    pub fn target(
        &self,
        r: u8,
        off: i16,
        size: MemSize,
        write: bool,
        array_maps: &[ArrayMapLayout],
    ) -> Option<KnownTarget> {
        let n = size.bytes() as i128;
        let fits = |m: &ArrayMapLayout, at: i128, lo: i128, len: i128| {
            (m.writable || !write) && at >= lo && at + n <= lo + len
        };
        match self.of(r)? {
            Known::Stack(_) => None,
            Known::MapValue { map, k, maybe_zero } => {
                let at = k as i128 + off as i128;
                fits(&map, at, 0, map.stride as i128).then_some(if maybe_zero {
                    KnownTarget::AllowedUnlessZero
                } else {
                    KnownTarget::Allowed
                })
            }
            Known::Const(c) => {
                let at = c.wrapping_add(off as i64 as u64) as i128;
                array_maps
                    .iter()
                    .any(|m| {
                        let len = m.max_entries as i128 * m.stride as i128;
                        fits(m, at, m.values as i128, len)
                    })
                    .then_some(KnownTarget::Allowed)
            }
            // The input is always writable.
            Known::Input(k) => {
                let at = k as i128 + off as i128;
                (at >= 0 && at + n <= self.input_floor as i128).then_some(KnownTarget::Allowed)
            }
            Known::InputLength => None,
        }
    }
}

/// An access of a group that one check covers
/// ([`RegisterFacts::access_group`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupedAccess {
    pub pc: usize,
    pub off: i16,
    pub size: MemSize,
    /// A store (only a group's last access may be one).
    pub write: bool,
}

impl RegisterFacts {
    /// The accesses that one check at the load at `pc` may cover with it:
    /// that load (which needs a full check: its base's value is not known
    /// to be in the frame, in map values or within the tested input), then
    /// each later load through the same base that needs a check, as far as
    /// the following instructions cannot trap and write no memory: ALU
    /// instructions, `lddw`, loads through r10 inside the frame and loads
    /// through the base; and a store through the base that needs a check
    /// may be the last. The group ends before anything else, after an
    /// instruction that writes the base (a load into it included), and at
    /// the end of the block. Empty when fewer than two accesses need a
    /// check.
    ///
    /// One check of all of them where the first one runs, trapping at the
    /// first refused one in program order, is what checking each one in
    /// turn does: the instructions before the last access change no memory
    /// and cannot trap, and a trap shows no register (the budget is charged
    /// per block, and the group is inside one). The base's facts, and so
    /// which of its accesses need a check, are the same all along.
    pub fn access_group(
        &self,
        program: &Program,
        pc: usize,
        array_maps: &[ArrayMapLayout],
    ) -> Vec<GroupedAccess> {
        let instrs = program.instrs();
        let Instr::Load {
            base,
            dst,
            off,
            size,
            ..
        } = instrs[pc]
        else {
            return Vec::new();
        };
        // A lookup's result needs a test for 0 first (and its loads are
        // mostly unchecked): not grouped.
        if dst == base || matches!(self.of(base), Some(Known::MapValue { .. })) {
            return Vec::new();
        }
        let needs_check = |off: i16, size: MemSize, write: bool| {
            !self.in_frame(base, off, size)
                && self.target(base, off, size, write, array_maps) != Some(KnownTarget::Allowed)
        };
        if !needs_check(off, size, false) {
            return Vec::new();
        }
        let mut group = vec![GroupedAccess {
            pc,
            off,
            size,
            write: false,
        }];
        let func_end = self.start + self.jumped_to.len();
        let mut k = pc + 1;
        while k < func_end && !program.is_block_start(k) {
            let i = instrs[k];
            match i {
                Instr::Load {
                    base: b, off, size, ..
                } => {
                    if b == base {
                        if needs_check(off, size, false) {
                            group.push(GroupedAccess {
                                pc: k,
                                off,
                                size,
                                write: false,
                            });
                        }
                    } else if !statically_in_frame(b, off, size) {
                        break;
                    }
                }
                // A store ends the group: as its last access when it is
                // through the base and needs a check.
                Instr::Store {
                    base: b, off, size, ..
                } => {
                    if b == base && needs_check(off, size, true) {
                        group.push(GroupedAccess {
                            pc: k,
                            off,
                            size,
                            write: true,
                        });
                    }
                    break;
                }
                Instr::Alu { .. }
                | Instr::Neg { .. }
                | Instr::MovSx { .. }
                | Instr::Endian { .. }
                | Instr::Lddw { .. } => {}
                _ => break,
            }
            if i.written_reg() == Some(base) {
                break;
            }
            k += i.slots();
        }
        if group.len() < 2 {
            group.clear();
        }
        group
    }
}

/// The registers (bit r) `i` writes, every call counting as writing r0 to
/// r5 (a JIT may keep r1 to r5 across a helper call; nothing here relies
/// on it).
fn writes(i: &Instr) -> u16 {
    match *i {
        Instr::CallHelper { .. } | Instr::CallLocal { .. } | Instr::CallReg { .. } => 0b11_1111,
        _ => i.written_reg().map_or(0, |r| 1 << r),
    }
}

/// Per pc of `func` (relative): whether a jump leads there.
fn jump_targets(program: &Program, func: Function) -> Vec<bool> {
    let mut jumped_to = vec![false; func.end - func.start];
    for pc in func.start..func.end {
        let target = program.instrs()[pc].branch_target();
        if let Some(k) = target.and_then(|t| usize::try_from(t).ok()?.checked_sub(func.start)) {
            if let Some(j) = jumped_to.get_mut(k) {
                *j = true;
            }
        }
    }
    jumped_to
}

/// Whether only the fall-through of `before` (the instruction before
/// relative pc `k`, if any) leads to `k`.
fn only_fall_through(jumped_to: &[bool], k: usize, before: Option<Instr>) -> bool {
    !jumped_to[k] && before.is_some_and(|i| i.falls_through())
}

/// A function's blocks, and the facts that hold at the start of each on
/// every path there: a forward data-flow problem over the registers'
/// offsets from the input (r1 at the program's entry), from r10, and
/// copies of the input's length (r2 at the entry), solved to its fixed
/// point. A value survives a merge when every incoming edge brings the
/// same one. Offsets follow 64-bit `mov` and `add`/`sub` of immediates,
/// as [`RegisterFacts::after_alu`] does; any other write forgets the
/// register, and every call r0 to r5. Other facts (map values, constants)
/// are not followed here.
///
/// The edges are each block's jump and fall-through (a `call local`
/// returns to the next pc). That every way into a function is modelled
/// rests on the verifier: a function is entered only at its start (by a
/// call, or as the program's entry; a `bpf_loop` callback through a
/// `call; exit` stub), never by a jump from another function.
#[derive(Clone, Debug)]
struct Blocks {
    /// Block starts (relative pcs, ascending): where the program starts a
    /// block ([`Program::is_block_start`]), so that a translator entering
    /// each of its blocks finds one here.
    starts: Vec<usize>,
    /// Per block: its successors (jump target, fall-through; `usize::MAX`
    /// for none).
    succ: Vec<[usize; 2]>,
    /// Per block: the facts at its start (`None`: no path reaches it).
    entry: Vec<Option<Facts>>,
    /// Per block: the facts at its end, before its branch (which writes
    /// nothing).
    exit: Vec<Option<Facts>>,
}

/// What [`Blocks`] follows of a register: a compact [`Known`] of the
/// kinds it follows, offsets limited to `i32` (a larger one is forgotten).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offset {
    Unknown,
    /// [`Known::Input`].
    Input(i32),
    /// [`Known::Stack`].
    Stack(i32),
    /// [`Known::InputLength`].
    Length,
}

impl Offset {
    fn of(fact: Option<Known>) -> Offset {
        let small = |k: i64| i32::try_from(k).ok();
        match fact {
            Some(Known::Input(k)) => small(k).map_or(Offset::Unknown, Offset::Input),
            Some(Known::Stack(k)) => small(k).map_or(Offset::Unknown, Offset::Stack),
            Some(Known::InputLength) => Offset::Length,
            _ => Offset::Unknown,
        }
    }

    fn known(self) -> Option<Known> {
        match self {
            Offset::Unknown => None,
            Offset::Input(k) => Some(Known::Input(k.into())),
            Offset::Stack(k) => Some(Known::Stack(k.into())),
            Offset::Length => Some(Known::InputLength),
        }
    }

    /// After adding `d`.
    fn plus(self, d: i64) -> Offset {
        let moved = |k: i32| i32::try_from(i64::from(k) + d).ok();
        match self {
            Offset::Input(k) => moved(k).map_or(Offset::Unknown, Offset::Input),
            Offset::Stack(k) => moved(k).map_or(Offset::Unknown, Offset::Stack),
            Offset::Unknown | Offset::Length => Offset::Unknown,
        }
    }
}

/// The followed facts of r0 to r9.
type Facts = [Offset; 10];

impl Blocks {
    /// The blocks of `func`, whose first pc starts with `initial`.
    fn new(program: &Program, func: Function, initial: &[Option<Known>; 10]) -> Blocks {
        let instrs = &program.instrs()[func.start..func.end];
        let len = instrs.len();
        // The program's blocks (`block_costs`): the function's start, jump
        // targets, and pcs after a branch or exit.
        let starts: Vec<usize> = (0..len)
            .filter(|&k| program.is_block_start(func.start + k))
            .collect();
        let block_of = |k: usize| starts.partition_point(|&s| s <= k) - 1;
        let mut succ = vec![[usize::MAX; 2]; starts.len()];
        for (b, &first) in starts.iter().enumerate() {
            let end = starts.get(b + 1).copied().unwrap_or(len);
            let Some(k) = last_instr(instrs, first, end) else {
                continue;
            };
            let i = instrs[k];
            let target = i
                .branch_target()
                .and_then(|t| usize::try_from(t).ok()?.checked_sub(func.start))
                .filter(|&t| t < len);
            if let Some(t) = target {
                succ[b][0] = block_of(t);
            }
            let next = k + i.slots();
            if i.falls_through() && next < len {
                succ[b][1] = block_of(next);
            }
        }
        let mut blocks = Blocks {
            starts,
            succ,
            entry: Vec::new(),
            exit: Vec::new(),
        };
        blocks.solve(instrs, initial.map(Offset::of));
        blocks
    }

    fn solve(&mut self, instrs: &[Instr], initial: Facts) {
        let n = self.starts.len();
        self.entry = vec![None; n];
        self.exit = vec![None; n];
        if n == 0 {
            return;
        }
        self.entry[0] = Some(initial);
        let mut work = vec![0];
        while let Some(b) = work.pop() {
            let Some(mut facts) = self.entry[b] else {
                continue;
            };
            for i in self.instrs_of(instrs, b) {
                follow(&mut facts, i);
            }
            // A change of the block's entry queues it again, so the last
            // visit leaves the exit of the final entry.
            self.exit[b] = Some(facts);
            for s in self.succ[b] {
                if s == usize::MAX {
                    continue;
                }
                let merged = match self.entry[s] {
                    None => facts,
                    Some(old) => std::array::from_fn(|r| {
                        if old[r] == facts[r] {
                            old[r]
                        } else {
                            Offset::Unknown
                        }
                    }),
                };
                if self.entry[s] != Some(merged) {
                    self.entry[s] = Some(merged);
                    work.push(s);
                }
            }
        }
    }

    /// The instructions of block `b`.
    fn instrs_of<'a>(&self, instrs: &'a [Instr], b: usize) -> impl Iterator<Item = &'a Instr> {
        let end = self.starts.get(b + 1).copied().unwrap_or(instrs.len());
        let mut k = self.starts[b];
        std::iter::from_fn(move || {
            (k < end).then(|| {
                let i = &instrs[k];
                k += i.slots();
                i
            })
        })
    }

    /// The facts at the start of the block that starts at relative pc
    /// `k` (nothing when no block starts there or no path reaches it).
    fn entry_at(&self, k: usize) -> [Option<Known>; 10] {
        self.starts
            .binary_search(&k)
            .ok()
            .and_then(|b| self.entry[b])
            .map_or([None; 10], |e| e.map(Offset::known))
    }
}

/// The last instruction of relative pcs `first..end`, if any.
fn last_instr(instrs: &[Instr], first: usize, end: usize) -> Option<usize> {
    let mut k = first;
    let mut last = None;
    while k < end {
        last = Some(k);
        k += instrs[k].slots();
    }
    last
}

/// The followed facts after `i`.
fn follow(facts: &mut Facts, i: &Instr) {
    let of = |facts: &Facts, r: u8| match r {
        FRAME_POINTER => Offset::Stack(0),
        _ => facts.get(r as usize).copied().unwrap_or(Offset::Unknown),
    };
    let (dst, fact) = match *i {
        Instr::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst,
            src: Operand::Reg(s),
        } => (dst, of(facts, s)),
        Instr::Alu {
            width: Width::W64,
            op: AluOp::Add,
            dst,
            src: Operand::Imm(v),
        } => (dst, of(facts, dst).plus(v.into())),
        Instr::Alu {
            width: Width::W64,
            op: AluOp::Sub,
            dst,
            src: Operand::Imm(v),
        } => (dst, of(facts, dst).plus(-i64::from(v))),
        _ => {
            let mut w = writes(i) & 0x3ff;
            while w != 0 {
                facts[w.trailing_zeros() as usize] = Offset::Unknown;
                w &= w - 1;
            }
            return;
        }
    };
    if let Some(f) = facts.get_mut(dst as usize) {
        *f = fact;
    }
}

/// Per pc of the entry function `func` (relative): a length the input is
/// known to have there, from the tests of r2 (the input's length at the
/// entry) on the paths leading there.
///
/// A conditional jump that compares a register holding r2's entry value
/// with an immediate bounds the length on one of its edges: the
/// fall-through of `if len < N` and the jump of `if len >= N` know
/// `len >= N` (likewise `<=`/`>` with `N + 1`, `==` on its jump, `!=` on
/// its fall-through, and the signed and 32-bit forms: [`length_test`]). A
/// block knows the least of what its incoming edges know (a forward
/// data-flow problem, solved to its fixed point, so that loops and any
/// jumps backwards are accounted for); the first block knows 0. Which
/// registers hold r2's entry value comes from [`Blocks`]. A block that no
/// path reaches gets 0. Empty when no such test exists (0 everywhere).
fn input_length_floors(program: &Program, func: Function, blocks: &Blocks) -> Vec<u64> {
    let instrs = &program.instrs()[func.start..func.end];
    let len = instrs.len();
    let n = blocks.starts.len();
    // Each block's edges: what the jump and the fall-through know.
    let mut edge_floor = vec![[0u64; 2]; n];
    let mut any_test = false;
    for (b, floor) in edge_floor.iter_mut().enumerate() {
        // A conditional jump ends its block.
        let end = blocks.starts.get(b + 1).copied().unwrap_or(len);
        let last = last_instr(instrs, blocks.starts[b], end).map(|k| instrs[k]);
        if let (
            Some(facts),
            Some(Instr::Jcond {
                width,
                cond,
                dst,
                src: Operand::Imm(imm),
                ..
            }),
        ) = (blocks.exit[b], last)
        {
            if facts.get(dst as usize) == Some(&Offset::Length) {
                let (taken, fall) = length_test(width, cond, imm);
                *floor = [taken, fall];
                any_test |= *floor != [0, 0];
            }
        }
    }
    if !any_test {
        return Vec::new();
    }
    let mut known = vec![u64::MAX; n];
    known[0] = 0;
    let mut changed = true;
    while changed {
        changed = false;
        for b in 0..n {
            if known[b] == u64::MAX {
                continue;
            }
            for (e, &s) in blocks.succ[b].iter().enumerate() {
                if s == usize::MAX {
                    continue;
                }
                let v = known[b].max(edge_floor[b][e]);
                if v < known[s] {
                    known[s] = v;
                    changed = true;
                }
            }
        }
    }
    let mut floors = vec![0; len];
    for (b, &first) in blocks.starts.iter().enumerate() {
        let end = blocks.starts.get(b + 1).copied().unwrap_or(len);
        if known[b] != u64::MAX {
            floors[first..end].fill(known[b]);
        }
    }
    floors
}

/// What `if (width) len cond imm goto` tells of `len` on its (jump,
/// fall-through) edges: a length it is at least (0: nothing).
///
/// The 32-bit forms compare the low half of `len`, which is at most `len`:
/// a floor of the half is one of `len`. The signed forms give a floor only
/// from `x s>= m` with `m > 0`: then `x` is not negative, so it is at
/// least `m` unsigned too (clang turns `if (data + 14 > end)` with `end =
/// data + len` into `if len s< 14`).
fn length_test(width: Width, cond: Cond, imm: i32) -> (u64, u64) {
    let n = match width {
        Width::W64 => imm as i64 as u64,
        Width::W32 => imm as u32 as u64,
    };
    let above = n.saturating_add(1);
    // `imm` as both widths compare it when signed.
    let m = i64::from(imm);
    let at_least = |m: i64| u64::try_from(m).unwrap_or(0);
    match cond {
        Cond::Lt => (0, n),
        Cond::Le => (0, above),
        Cond::Gt => (above, 0),
        Cond::Ge => (n, 0),
        Cond::Eq => (n, 0),
        Cond::Ne => (0, n),
        Cond::SLt => (0, at_least(m)),
        Cond::SLe => (0, at_least(m + 1)),
        Cond::SGt => (at_least(m + 1), 0),
        Cond::SGe => (at_least(m), 0),
        Cond::Set => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;
    use crate::verifier::{verify, VerifyOptions};

    fn program(src: &str) -> Program {
        verify(assemble(src).unwrap(), &VerifyOptions::default()).unwrap()
    }

    const MAP: ArrayMapLayout = ArrayMapLayout {
        handle: 1,
        values: 0x10_0000,
        stride: 16,
        max_entries: 4,
        writable: false,
    };

    #[test]
    fn facts_follow_moves_and_immediates_and_stop_at_merges() {
        // 0: mov r6, r10; 1: add r6, -8; 2: mov r7, r10; 3: jeq r1, 0, +2;
        // 4: mov r0, 0; 5: mov r7, 0; 6: exit (jumped to from 3).
        let p = program(
            "mov %r6, %r10\nadd %r6, -8\nmov %r7, %r10\njeq %r1, 0, +2\nmov %r0, 0\nmov %r7, 0\nexit",
        );
        let f = p.functions()[0];
        let mut facts = RegisterFacts::new(&p, f, false);
        let k = facts.after_alu(Width::W64, AluOp::Mov, 6, Operand::Reg(10));
        facts.set(6, k);
        let k = facts.after_alu(Width::W64, AluOp::Add, 6, Operand::Imm(-8));
        facts.set(6, k);
        assert_eq!(facts.stack_offset(6), Some(-8));
        assert!(facts.in_frame(6, 0, MemSize::DW));
        assert!(
            !facts.in_frame(6, 8, MemSize::B),
            "r10 itself is past the frame"
        );
        assert_eq!(
            facts.after_alu(Width::W32, AluOp::Add, 6, Operand::Imm(1)),
            None
        );
        let k = facts.after_alu(Width::W64, AluOp::Mov, 7, Operand::Reg(10));
        facts.set(7, k);
        facts.enter_block(&p, 4);
        assert_eq!(
            facts.stack_offset(7),
            Some(0),
            "pc 4: only the fall-through"
        );
        facts.set(7, None);
        facts.enter_block(&p, 6);
        assert_eq!(
            facts.stack_offset(7),
            None,
            "pc 6: a jump leads there, and pc 5 writes r7"
        );
        assert_eq!(
            facts.stack_offset(6),
            Some(-8),
            "nothing after the first block writes r6"
        );
        assert_eq!(facts.stack_offset(10), Some(0));
    }

    #[test]
    fn a_jump_back_to_the_first_block_keeps_what_it_brings_back() {
        // 0: mov r6, r10; 1: jeq r1, 0, -2 (to 0); 2: exit.
        let p = program("mov %r6, %r10\njeq %r1, 0, -2\nexit");
        let mut facts = RegisterFacts::new(&p, p.functions()[0], true);
        facts.enter_block(&p, 0);
        assert_eq!(facts.of(1), Some(Known::Input(0)), "the loop keeps r1");
        assert_eq!(facts.of(6), None, "r6 was not set on the first entry");
        // 0: add r1, 1; 1: jeq r1, 0, -2: r1 differs on the two edges.
        let p = program("add %r1, 1\njeq %r1, 0, -2\nexit");
        let mut facts = RegisterFacts::new(&p, p.functions()[0], true);
        facts.enter_block(&p, 0);
        assert_eq!(facts.of(1), None, "r1 or r1 + 1");
        assert_eq!(facts.of(2), Some(Known::InputLength));
        facts.set(6, Some(Known::Stack(0)));
        facts.enter_block(&p, 2);
        assert_eq!(facts.stack_offset(6), Some(0), "pc 2: the fall-through");
        facts.clear();
        assert_eq!(facts.stack_offset(6), None);
    }

    #[test]
    fn a_lookup_result_is_tested_for_zero_then_trusted_within_a_stride() {
        let p = program("jeq %r0, 0, +1\nmov %r1, 1\nexit");
        let mut facts = RegisterFacts::new(&p, p.functions()[0], false);
        facts.set(0, Some(Known::lookup_result(MAP)));
        let t = |f: &RegisterFacts, off, size, write| f.target(0, off, size, write, &[MAP]);
        assert_eq!(
            t(&facts, 8, MemSize::DW, false),
            Some(KnownTarget::AllowedUnlessZero)
        );
        // Adding to a result that may be 0 loses it.
        assert_eq!(
            facts.after_alu(Width::W64, AluOp::Add, 0, Operand::Imm(8)),
            None
        );
        facts.enter_block(&p, 1);
        assert_eq!(t(&facts, 8, MemSize::DW, false), Some(KnownTarget::Allowed));
        assert_eq!(t(&facts, 9, MemSize::DW, false), None, "past the stride");
        assert_eq!(t(&facts, -1, MemSize::B, false), None, "before the value");
        assert_eq!(t(&facts, 0, MemSize::B, true), None, "a read-only map");
        let moved = facts.after_alu(Width::W64, AluOp::Sub, 0, Operand::Imm(-8));
        facts.set(0, moved);
        assert_eq!(t(&facts, 0, MemSize::DW, false), Some(KnownTarget::Allowed));
        assert_eq!(t(&facts, 1, MemSize::DW, false), None);
    }

    #[test]
    fn constants_are_trusted_inside_the_maps_values() {
        let p = program("exit");
        let mut facts = RegisterFacts::new(&p, p.functions()[0], false);
        facts.set(1, Some(Known::Const(MAP.values + 56)));
        let t = |off, size| facts.target(1, off, size, false, &[MAP]);
        assert_eq!(
            t(0, MemSize::DW),
            Some(KnownTarget::Allowed),
            "the last 8 bytes"
        );
        assert_eq!(t(1, MemSize::DW), None);
        assert_eq!(t(-56, MemSize::B), Some(KnownTarget::Allowed));
        assert_eq!(t(-57, MemSize::B), None);
        assert_eq!(facts.target(1, 0, MemSize::B, false, &[]), None, "no maps");
    }

    /// The input lengths `input_length_floors` gives each pc of `src`.
    fn floors(src: &str) -> Vec<u64> {
        let p = program(src);
        let f = p.functions()[0];
        let v = RegisterFacts::new(&p, f, true).input_floors;
        if v.is_empty() {
            vec![0; f.end - f.start]
        } else {
            v
        }
    }

    #[test]
    fn tests_of_r2_bound_the_input_length_on_their_edges() {
        // The edge that knows the length is the one into pc 1.
        let cases = [
            ("jlt %r2, 16, +1", 16),
            ("jle %r2, 15, +1", 16),
            ("jne %r2, 16, +1", 16),
            ("jlt32 %r2, 16, +1", 16),
            ("jslt %r2, 16, +1", 16),
            ("jsle %r2, 15, +1", 16),
            ("jslt32 %r2, 16, +1", 16),
            ("jsge %r2, 16, +1", 0),
            // `len s>= -5` or `s> -1`: anything from 0 up.
            ("jslt %r2, -5, +1", 0),
            ("jsle %r2, -1, +1", 0),
            ("jset %r2, 16, +1", 0),
            ("jlt %r2, %r3, +1", 0),
        ];
        for (test, want) in cases {
            // pc 2 is also the jump's target.
            let src = format!("{test}\nmov %r0, 1\nexit");
            assert_eq!(floors(&src), vec![0, want, 0], "{test}");
        }
        // Jumps: the target knows.
        for (test, want) in [
            ("jge %r2, 16, +1", 16),
            ("jgt %r2, 15, +1", 16),
            ("jeq %r2, 16, +1", 16),
            ("jgt32 %r2, 15, +1", 16),
            ("jsge %r2, 16, +1", 16),
            ("jsgt %r2, 15, +1", 16),
            ("jsgt32 %r2, 15, +1", 16),
            ("jsgt %r2, -1, +1", 0),
            ("jsge %r2, 0, +1", 0),
            ("jsgt %r2, 2147483647, +1", 1 << 31),
        ] {
            let src = format!("{test}\nexit\nmov %r0, 1\nexit");
            assert_eq!(floors(&src), vec![0, 0, want, want], "{test}");
        }
        // A negative immediate is a huge unsigned length: what follows
        // cannot run, and gets 0, as code that no path reaches does.
        assert_eq!(floors("jlt %r2, -1, +1\nexit\nexit")[1], 0);
        assert_eq!(floors("jlt %r2, -2, +1\nexit\nexit")[1], u64::MAX - 1);
    }

    #[test]
    fn only_r2_and_its_copies_bound_the_length() {
        assert_eq!(floors("mov %r3, %r2\njlt %r3, 8, +1\nexit\nexit")[2], 8);
        assert_eq!(floors("mov32 %r3, %r2\njlt %r3, 8, +1\nexit\nexit")[2], 0);
        assert_eq!(floors("add %r2, 1\njlt %r2, 8, +1\nexit\nexit")[2], 0);
        assert_eq!(floors("mov %r2, 100\njlt %r2, 8, +1\nexit\nexit")[2], 0);
        // A call forgets r0 to r5, r6 keeps it.
        assert_eq!(
            floors("mov %r6, %r2\ncall 1\njlt %r6, 8, +1\nexit\nexit")[3],
            8
        );
        assert_eq!(floors("call 1\njlt %r2, 8, +1\nexit\nexit")[2], 0);
        // After a merge, only a register that the first block left
        // holding it and that nothing later writes.
        assert_eq!(floors("jeq %r1, 0, +0\njlt %r2, 8, +1\nexit\nexit")[2], 8);
        let changed = "jeq %r1, 0, +0\nmov %r2, 1\njlt %r2, 8, +1\nexit\nexit";
        assert_eq!(floors(changed)[3], 0);
        let kept = "mov %r7, %r2\njeq %r1, 0, +0\ncall 1\njlt %r7, 8, +1\nexit\nexit";
        assert_eq!(floors(kept)[4], 8);
        let one_path = "mov %r7, %r2\njeq %r1, 0, +1\nmov %r7, 0\njlt %r7, 8, +1\nexit\nexit";
        assert_eq!(floors(one_path)[4], 0);
    }

    #[test]
    fn a_block_knows_the_least_of_its_paths_loops_and_backward_jumps_included() {
        // 0: jlt r2, 16 -> 5; 1: loop body (known 16) ... 3: jne r3, 0 -> 1;
        // 4: exit; 5: exit.
        let f = floors("jlt %r2, 16, +4\nadd %r3, -1\nmov %r0, 1\njne %r3, 0, -3\nexit\nexit");
        assert_eq!(f, vec![0, 16, 16, 16, 16, 0]);
        // Two paths into pc 3: through the test (16) and around it (0).
        let f = floors("jeq %r3, 0, +2\njlt %r2, 16, +2\nmov %r0, 1\nmov %r0, 2\nexit");
        assert_eq!(f, vec![0, 0, 16, 0, 0]);
        // pc 2 is reached by its fall-through (16) and by a backward jump
        // from a path that only knows 5.
        let f = floors(
            "jeq %r2, 5, +3\njlt %r2, 16, +4\nldxdw %r0, [%r1+8]\nexit\nmov %r0, 1\nja -4\nmov %r0, 7\nexit",
        );
        assert_eq!(f, vec![0, 0, 5, 5, 5, 5, 0, 0]);
    }

    #[test]
    fn a_group_runs_to_what_may_trap_or_write_memory() {
        // pcs of the loads a check at `at` covers in `src`, in the entry
        // function (r1 is the input, with no length tested) or not.
        let group = |src: &str, at: usize, input: bool| -> Vec<usize> {
            let p = program(src);
            let facts = RegisterFacts::new(&p, p.functions()[0], input);
            facts
                .access_group(&p, at, &[])
                .iter()
                .map(|g| g.pc)
                .collect()
        };
        let loads = "ldxb %r0, [%r1+0]\nadd %r0, 1\nldxdw %r3, [%r10-8]\nldxh %r4, [%r1+6]\n";
        assert_eq!(group(&format!("{loads}exit"), 0, true), vec![0, 3]);
        assert_eq!(group(&format!("{loads}exit"), 3, true), Vec::<usize>::new());
        // Each of these ends the group before the load after it.
        for end in [
            "stxdw [%r10-8], %r0",
            "stb [%r2+1], 1",
            "ldxb %r5, [%r2+0]",
            "ldxb %r5, [%r10+0]",
            "call 1",
            "jeq %r0, 0, +0",
            "mov %r1, %r2",
        ] {
            let src = format!("ldxb %r0, [%r1+0]\n{end}\nldxb %r3, [%r1+2]\nexit");
            assert_eq!(group(&src, 0, true), Vec::<usize>::new(), "{end}");
        }
        // A store through the base is the group's last access.
        let src = "ldxb %r0, [%r1+0]\nstb [%r1+1], 1\nldxb %r3, [%r1+2]\nexit";
        assert_eq!(group(src, 0, true), vec![0, 1]);
        let src = "ldxb %r0, [%r1+0]\nstxw [%r1+4], %r0\nexit";
        assert_eq!(group(src, 0, true), vec![0, 1]);
        // A load into the base is the group's last.
        let src = "ldxb %r0, [%r1+0]\nldxb %r1, [%r1+1]\nldxb %r3, [%r1+2]\nexit";
        assert_eq!(group(src, 0, true), vec![0, 1]);
        // Loads the facts leave unchecked are not members, and do not end it.
        let src = "jlt %r2, 2, +4\nldxb %r0, [%r1+0]\nldxb %r3, [%r1+4]\nldxb %r4, [%r1+1]\nldxb %r5, [%r1+8]\nexit";
        let p = program(src);
        let mut facts = RegisterFacts::new(&p, p.functions()[0], true);
        facts.enter_block(&p, 1);
        let pcs = |at| -> Vec<usize> {
            facts
                .access_group(&p, at, &[])
                .iter()
                .map(|g| g.pc)
                .collect()
        };
        assert_eq!(pcs(1), Vec::<usize>::new(), "pc 1 needs no check");
        assert_eq!(pcs(2), vec![2, 4]);
        // Not through a lookup's result, nor through r10 in the frame.
        let p = program("ldxb %r0, [%r0+0]\nldxb %r3, [%r0+1]\nexit");
        let mut facts = RegisterFacts::new(&p, p.functions()[0], false);
        facts.set(0, Some(Known::lookup_result(MAP)));
        assert!(facts.access_group(&p, 0, &[MAP]).is_empty());
        let src = "ldxb %r0, [%r10-1]\nldxb %r3, [%r10-2]\nexit";
        assert_eq!(group(src, 0, false), Vec::<usize>::new());
        // Outside the entry function r1 is not the input: checked.
        let src = "mov %r6, %r1\nldxb %r0, [%r6+0]\nldxb %r3, [%r6+1]\nexit";
        assert_eq!(group(src, 1, false), vec![1, 2]);
    }

    #[test]
    fn input_accesses_are_trusted_within_the_known_length() {
        let p = program("jlt %r2, 16, +3\nadd %r1, 4\nldxdw %r0, [%r1]\nexit\nexit");
        let f = p.functions()[0];
        let mut facts = RegisterFacts::new(&p, f, true);
        assert_eq!(facts.of(1), Some(Known::Input(0)));
        assert_eq!(facts.of(2), Some(Known::InputLength));
        let t = |f: &RegisterFacts, r, off, size| f.target(r, off, size, true, &[]);
        assert_eq!(t(&facts, 1, 0, MemSize::B), None, "nothing known yet");
        facts.enter_block(&p, 1);
        let moved = facts.after_alu(Width::W64, AluOp::Add, 1, Operand::Imm(4));
        facts.set(1, moved);
        assert_eq!(t(&facts, 1, 4, MemSize::DW), Some(KnownTarget::Allowed));
        assert_eq!(t(&facts, 1, 5, MemSize::DW), None, "one byte past 16");
        assert_eq!(t(&facts, 1, -4, MemSize::B), Some(KnownTarget::Allowed));
        assert_eq!(t(&facts, 1, -5, MemSize::B), None, "before the input");
        assert_eq!(
            t(&facts, 2, 0, MemSize::B),
            None,
            "the length is no address"
        );
        facts.enter_block(&p, 4);
        assert_eq!(
            facts.of(1),
            Some(Known::Input(0)),
            "pc 4: only the jump leads here"
        );
        // Two paths with r1 and r1 + 4 meet at pc 3.
        let two = program("jlt %r2, 16, +1\nadd %r1, 4\nmov %r0, 0\nexit");
        let mut facts = RegisterFacts::new(&two, two.functions()[0], true);
        facts.enter_block(&two, 2);
        assert_eq!(facts.of(1), None, "r1 or r1 + 4");
        assert_eq!(facts.of(2), Some(Known::InputLength));
        // Not for AOT code, nor for any function but the entry.
        let facts = RegisterFacts::new(&p, f, false);
        assert_eq!(facts.of(1), None);
        let p = program("call local +1\nexit\nldxb %r0, [%r1]\nexit");
        let callee = p.functions()[1];
        assert_eq!(RegisterFacts::new(&p, callee, true).of(1), None);
        // An entry function that a call enters again gets its arguments
        // there, not the input.
        let p =
            program("jlt %r2, 16, +2\nldxdw %r0, [%r1+8]\nexit\nmov %r2, 16\ncall local -5\nexit");
        assert_eq!(RegisterFacts::new(&p, p.functions()[0], true).of(1), None);
    }
}
