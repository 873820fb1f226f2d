//! What a JIT can know of register values while it translates a function
//! in pc order, so that it leaves out memory checks it can prove
//! redundant. Both JIT tiers use the same rules, so they check the same
//! accesses.
//!
//! Facts come from the instructions since the last point where control
//! flow merges: a block that only the previous one falls through to (no
//! branch leads there) continues what that one knew; any other block
//! starts knowing nothing but r10. What an access through a register with
//! a fact needs ([`RegisterFacts::target`]):
//!
//! - `r10 + k` ([`Known::Stack`]): nothing when the access is statically
//!   inside the current frame;
//! - a value of an array map, as an inlined lookup returned it
//!   ([`Known::MapValue`]): nothing when the access lies within one
//!   value's stride, once a `jeq r, 0` has ruled out the lookup's 0;
//!   before that, a test for 0 alone;
//! - a constant from `lddw` ([`Known::Const`], a global variable's
//!   address for one): nothing when the access lies in an array map's
//!   values.
//!
//! The map rules rest on what [`crate::backend::ArrayMapLayout`] promises:
//! the `max_entries * stride` bytes at `values` are a region of every run
//! (writable when the map is), so the interpreter allows such an access.

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
}

impl RegisterFacts {
    /// For translating `func` of `program`: nothing known yet.
    pub fn new(program: &Program, func: Function) -> RegisterFacts {
        let mut jumped_to = vec![false; func.end - func.start];
        for pc in func.start..func.end {
            let target = program.instrs()[pc].branch_target();
            if let Some(k) = target.and_then(|t| usize::try_from(t).ok()?.checked_sub(func.start)) {
                if let Some(j) = jumped_to.get_mut(k) {
                    *j = true;
                }
            }
        }
        RegisterFacts {
            known: [None; 10],
            jumped_to,
            start: func.start,
        }
    }

    /// At the start of the block at `pc`: the facts carry over when only
    /// the previous instruction's fall-through leads here, and after a
    /// 64-bit `jeq rX, 0` rX is not 0; otherwise nothing is known.
    pub fn enter_block(&mut self, program: &Program, pc: usize) {
        let k = pc - self.start;
        let before = (k > 0).then(|| program.instrs()[pc - 1]);
        let only_fall_through = !self.jumped_to[k]
            && before.is_some_and(|i| !matches!(i, Instr::Ja { .. } | Instr::Exit));
        if !only_fall_through {
            self.clear();
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
        }
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
        // 0: mov r6, r10; 1: add r6, -8; 2: jeq r1, 0, +1; 3: mov r0, 0;
        // 4: exit (jumped to from 2).
        let p = program("mov %r6, %r10\nadd %r6, -8\njeq %r1, 0, +1\nmov %r0, 0\nexit");
        let f = p.functions()[0];
        let mut facts = RegisterFacts::new(&p, f);
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
        facts.enter_block(&p, 3);
        assert_eq!(
            facts.stack_offset(6),
            Some(-8),
            "pc 3: only the fall-through"
        );
        facts.enter_block(&p, 4);
        assert_eq!(facts.stack_offset(6), None, "pc 4: a jump leads there");
        assert_eq!(facts.stack_offset(10), Some(0));
    }

    #[test]
    fn a_lookup_result_is_tested_for_zero_then_trusted_within_a_stride() {
        let p = program("jeq %r0, 0, +1\nmov %r1, 1\nexit");
        let mut facts = RegisterFacts::new(&p, p.functions()[0]);
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
        let mut facts = RegisterFacts::new(&p, p.functions()[0]);
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
}
