//! Disassembler: instruction slots to text in llvm-objdump's BPF syntax.
//!
//! [`format_instr`] prints one instruction, [`disassemble`] a listing in the
//! layout of `llvm-objdump -d`. [`crate::asm::parse_objdump_syntax`] reads
//! both back, so that text → bytes → text → bytes is lossless for every
//! instruction that [`crate::instr::decode`] accepts.
//!
//! # Syntax
//!
//! 64-bit operations name registers `rN`, 32-bit ones (ALU, JMP32, 32-bit
//! atomics) `wN`. Immediates are signed decimal (`r0 = -1`); the 64-bit
//! constant of `lddw` is hex with the ` ll` suffix. Offsets carry an explicit
//! sign (`goto +0`, `(r10 - 8)`).
//!
//! | instruction | text |
//! |---|---|
//! | ALU | `r0 = 1`, `w0 = 1`, `r1 += r2`, `w1 s/= w2`, `r1 s%= 3`, `r1 s>>= 2`, `r1 <<= r2` |
//! | neg | `r0 = -r0`, `w0 = -w0` |
//! | movsx | `r1 = (s8)r2`, `w1 = (s16)w2` |
//! | byte order | `r0 = be16 r0`, `r0 = le32 r0`, `r0 = bswap64 r0` |
//! | loads | `r0 = *(u32 *)(r1 + 8)`, `r0 = *(s8 *)(r1 - 4)` |
//! | stores | `*(u32 *)(r10 - 8) = r1`, `*(u64 *)(r10 - 8) = 42` |
//! | atomics | `lock *(u64 *)(r1 + 0) += r2`, `lock *(u32 *)(r1 + 0) &= w2`, `r2 = atomic_fetch_add((u64 *)(r1 + 0), r2)`, `r2 = xchg_64(r1 + 0, r2)`, `w2 = xchg32_32(r1 + 0, w2)`, `r0 = cmpxchg_64(r1 + 0, r0, r2)`, `w0 = cmpxchg32_32(r1 + 0, w0, w2)` |
//! | lddw | `r0 = 0x1122334455667788 ll` |
//! | jumps | `goto +5`, `gotol +70000`, `if r1 > r2 goto +3`, `if w1 s< 5 goto -2`, `if r1 & r2 goto +1` |
//! | calls | `call 5` (helper id, unsigned), `call +3` / `call -1` (bpf-to-bpf call; the relative offset in slots, always signed), `callx r2`, `exit` |
//!
//! `lddw` with a pseudo source (not llvm-objdump syntax, which shows a
//! relocation instead) prints the raw immediates:
//!
//! | src | text |
//! |---|---|
//! | 1 | `r1 = map_fd(3) ll` |
//! | 2 | `r1 = map_value(3, 16) ll` (imm, next imm) |
//! | 3 | `r1 = btf_id(7) ll` |
//! | 4 | `r1 = func(+5) ll` (relative offset, like a local call) |
//! | 5 | `r1 = map_idx(2) ll` |
//! | 6 | `r1 = map_idx_value(2, 16) ll` |
//!
//! A slot that does not decode prints as `<invalid: reason>`, e.g.
//! `<invalid: unknown opcode 0x42>`; nothing here panics.

use std::fmt::Write as _;

use crate::instr::{decode, AluOp, AtomicOp, Cond, Endian, Instr, MemSize, Operand, Width};
use crate::isa::*;

/// The text of the instruction at `pc` (the first slot of an `lddw`).
///
/// A slot that does not decode, including the second slot of an `lddw` and a
/// `pc` past the end, gives `<invalid: reason>`.
pub fn format_instr(insns: &[Insn], pc: usize) -> String {
    if pc >= insns.len() {
        return format!(
            "<invalid: pc {pc} is past the end of the program ({} slots)>",
            insns.len()
        );
    }
    match decode(insns, pc) {
        Ok(instr) => text_at(insns, pc, &instr),
        Err(e) => format!("<invalid: {e}>"),
    }
}

/// The text of an already decoded instruction that sits at `pc` (needed to
/// turn absolute jump and call targets back into relative offsets).
///
/// An [`Instr::Ja`] does not record whether it was a `ja` or a `ja32`: this
/// prints `goto` when the offset fits 16 bits and `gotol` otherwise.
/// [`format_instr`], which sees the opcode, always picks the right one.
pub fn format_decoded(instr: &Instr, pc: usize) -> String {
    match *instr {
        Instr::Alu {
            width,
            op,
            dst,
            src,
        } => alu(width, op, dst, src),
        Instr::Neg { width, dst } => {
            let d = reg(width, dst);
            format!("{d} = -{d}")
        }
        Instr::MovSx {
            width,
            bits,
            dst,
            src,
        } => {
            format!("{} = (s{bits}){}", reg(width, dst), reg(width, src))
        }
        Instr::Endian { kind, bits, dst } => {
            let name = match kind {
                Endian::ToLe => "le",
                Endian::ToBe => "be",
                Endian::Swap => "bswap",
            };
            format!("r{dst} = {name}{bits} r{dst}")
        }
        Instr::Load {
            size,
            signed,
            dst,
            base,
            off,
        } => {
            format!("r{dst} = *({} *){}", mem_type(size, signed), mem(base, off))
        }
        Instr::Store {
            size,
            base,
            off,
            src,
        } => {
            format!(
                "*({} *){} = {}",
                mem_type(size, false),
                mem(base, off),
                operand(Width::W64, src)
            )
        }
        Instr::Atomic {
            size,
            op,
            fetch,
            base,
            off,
            src,
        } => atomic(size, op, fetch, base, off, src),
        Instr::Lddw { dst, value, pseudo } => match pseudo {
            None => format!("r{dst} = 0x{value:x} ll"),
            Some(p) => format!("r{dst} = {} ll", pseudo_source(p.kind, p.imm, p.next_imm)),
        },
        Instr::LddwTail => "<invalid: second slot of lddw>".to_string(),
        Instr::Ja { target } => {
            let rel = relative(target, pc);
            // `goto` carries a 16-bit offset; larger ones only exist as ja32.
            if i16::try_from(rel).is_ok() {
                format!("goto {rel:+}")
            } else {
                format!("gotol {rel:+}")
            }
        }
        Instr::Jcond {
            width,
            cond,
            dst,
            src,
            target,
        } => format!(
            "if {} {} {} goto {:+}",
            reg(width, dst),
            cond_symbol(cond),
            operand(width, src),
            relative(target, pc)
        ),
        Instr::CallHelper { id } => format!("call {id}"),
        Instr::CallLocal { target } => format!("call {:+}", relative(target, pc)),
        Instr::CallReg { reg } => format!("callx r{reg}"),
        Instr::Exit => "exit".to_string(),
    }
}

/// A listing in the layout of `llvm-objdump -d`: per slot, the pc
/// right-aligned in 8 columns and a colon, a tab, the 8 bytes in hex, a tab
/// and the text. The second slot of an `lddw` gets its own line with the
/// pc and bytes only.
pub fn disassemble(insns: &[Insn]) -> String {
    let mut out = String::new();
    let mut pc = 0;
    while let Some(&slot) = insns.get(pc) {
        let (text, slots) = match decode(insns, pc) {
            Ok(instr) => (text_at(insns, pc, &instr), instr.slots()),
            Err(e) => (format!("<invalid: {e}>"), 1),
        };
        let _ = writeln!(out, "{pc:>8}:\t{}\t{text}", hex_bytes(slot));
        for tail_pc in pc + 1..pc + slots {
            if let Some(&tail) = insns.get(tail_pc) {
                let _ = writeln!(out, "{tail_pc:>8}:\t{}", hex_bytes(tail));
            }
        }
        pc += slots;
    }
    out
}

/// Like [`format_decoded`], but distinguishes `ja` from `ja32` by opcode.
fn text_at(insns: &[Insn], pc: usize, instr: &Instr) -> String {
    match (*instr, insns.get(pc)) {
        (Instr::Ja { target }, Some(slot)) if slot.code == OP_JA32 => {
            format!("gotol {:+}", relative(target, pc))
        }
        _ => format_decoded(instr, pc),
    }
}

fn hex_bytes(slot: Insn) -> String {
    let b = slot.to_bytes();
    let mut s = String::with_capacity(23);
    for (i, byte) in b.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// The offset that `target` is from the slot after `pc`. Saturating, so
/// that a hand-made [`Instr`] with an absurd target cannot overflow.
fn relative(target: i64, pc: usize) -> i64 {
    let pc = i64::try_from(pc).unwrap_or(i64::MAX);
    target.saturating_sub(pc).saturating_sub(1)
}

fn reg(width: Width, r: u8) -> String {
    match width {
        Width::W64 => format!("r{r}"),
        Width::W32 => format!("w{r}"),
    }
}

fn operand(width: Width, src: Operand) -> String {
    match src {
        Operand::Reg(r) => reg(width, r),
        Operand::Imm(imm) => imm.to_string(),
    }
}

fn alu(width: Width, op: AluOp, dst: u8, src: Operand) -> String {
    let sym = match op {
        AluOp::Add => "+=",
        AluOp::Sub => "-=",
        AluOp::Mul => "*=",
        AluOp::Div => "/=",
        AluOp::SDiv => "s/=",
        AluOp::Or => "|=",
        AluOp::And => "&=",
        AluOp::Lsh => "<<=",
        AluOp::Rsh => ">>=",
        AluOp::Mod => "%=",
        AluOp::SMod => "s%=",
        AluOp::Xor => "^=",
        AluOp::Mov => "=",
        AluOp::Arsh => "s>>=",
    };
    format!("{} {sym} {}", reg(width, dst), operand(width, src))
}

fn cond_symbol(cond: Cond) -> &'static str {
    match cond {
        Cond::Eq => "==",
        Cond::Gt => ">",
        Cond::Ge => ">=",
        Cond::Set => "&",
        Cond::Ne => "!=",
        Cond::SGt => "s>",
        Cond::SGe => "s>=",
        Cond::Lt => "<",
        Cond::Le => "<=",
        Cond::SLt => "s<",
        Cond::SLe => "s<=",
    }
}

fn mem_type(size: MemSize, signed: bool) -> String {
    let s = if signed { 's' } else { 'u' };
    format!("{s}{}", size.bits())
}

/// `rB + off` / `rB - off`, without parentheses.
fn mem_inner(base: u8, off: i16) -> String {
    let sign = if off < 0 { '-' } else { '+' };
    format!("r{base} {sign} {}", off.unsigned_abs())
}

/// `(rB + off)`.
fn mem(base: u8, off: i16) -> String {
    format!("({})", mem_inner(base, off))
}

fn atomic(size: MemSize, op: AtomicOp, fetch: bool, base: u8, off: i16, src: u8) -> String {
    let width = if size == MemSize::DW {
        Width::W64
    } else {
        Width::W32
    };
    let ty = mem_type(size, false);
    let s = reg(width, src);
    let name = match op {
        AtomicOp::Add => "add",
        AtomicOp::Or => "or",
        AtomicOp::And => "and",
        AtomicOp::Xor => "xor",
        AtomicOp::Xchg => {
            let f = if width == Width::W64 {
                "xchg_64"
            } else {
                "xchg32_32"
            };
            return format!("{s} = {f}({}, {s})", mem_inner(base, off));
        }
        AtomicOp::CmpXchg => {
            let f = if width == Width::W64 {
                "cmpxchg_64"
            } else {
                "cmpxchg32_32"
            };
            let r0 = reg(width, 0);
            return format!("{r0} = {f}({}, {r0}, {s})", mem_inner(base, off));
        }
    };
    if fetch {
        format!("{s} = atomic_fetch_{name}(({ty} *){}, {s})", mem(base, off))
    } else {
        let sym = match op {
            AtomicOp::Or => "|=",
            AtomicOp::And => "&=",
            AtomicOp::Xor => "^=",
            _ => "+=",
        };
        format!("lock *({ty} *){} {sym} {s}", mem(base, off))
    }
}

fn pseudo_source(kind: u8, imm: i32, next_imm: i32) -> String {
    match kind {
        PSEUDO_MAP_FD => format!("map_fd({imm})"),
        PSEUDO_MAP_VALUE => format!("map_value({imm}, {next_imm})"),
        PSEUDO_BTF_ID => format!("btf_id({imm})"),
        PSEUDO_FUNC => format!("func({imm:+})"),
        PSEUDO_MAP_IDX => format!("map_idx({imm})"),
        PSEUDO_MAP_IDX_VALUE => format!("map_idx_value({imm}, {next_imm})"),
        k => format!("<invalid: lddw pseudo source {k}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::{assemble, conformance, parse_objdump_syntax};
    use proptest::prelude::*;

    /// Assembles conformance syntax and formats its first instruction.
    fn f(src: &str) -> String {
        let p = assemble(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        format_instr(&p, 0)
    }

    #[test]
    fn alu_text() {
        assert_eq!(f("mov %r0, 1"), "r0 = 1");
        assert_eq!(f("mov32 %r0, 1"), "w0 = 1");
        assert_eq!(f("mov %r0, -1"), "r0 = -1");
        assert_eq!(f("mov %r1, %r2"), "r1 = r2");
        assert_eq!(f("mov32 %r1, %r2"), "w1 = w2");
        assert_eq!(f("add %r1, %r2"), "r1 += r2");
        assert_eq!(f("sub32 %r1, 3"), "w1 -= 3");
        assert_eq!(f("mul %r1, %r2"), "r1 *= r2");
        assert_eq!(f("div %r1, %r2"), "r1 /= r2");
        assert_eq!(f("sdiv32 %r1, %r2"), "w1 s/= w2");
        assert_eq!(f("mod %r1, 7"), "r1 %= 7");
        assert_eq!(f("smod %r1, %r2"), "r1 s%= r2");
        assert_eq!(f("or %r1, %r2"), "r1 |= r2");
        assert_eq!(f("and32 %r1, 0xff"), "w1 &= 255");
        assert_eq!(f("xor %r1, %r2"), "r1 ^= r2");
        assert_eq!(f("lsh %r1, 3"), "r1 <<= 3");
        assert_eq!(f("rsh32 %r1, %r2"), "w1 >>= w2");
        assert_eq!(f("arsh %r1, 1"), "r1 s>>= 1");
        assert_eq!(f("neg %r0"), "r0 = -r0");
        assert_eq!(f("neg32 %r3"), "w3 = -w3");
        assert_eq!(f("movsx864 %r1, %r2"), "r1 = (s8)r2");
        assert_eq!(f("movsx3264 %r1, %r2"), "r1 = (s32)r2");
        assert_eq!(f("movsx1632 %r1, %r2"), "w1 = (s16)w2");
        assert_eq!(f("be16 %r0"), "r0 = be16 r0");
        assert_eq!(f("le32 %r0"), "r0 = le32 r0");
        assert_eq!(f("bswap64 %r0"), "r0 = bswap64 r0");
    }

    #[test]
    fn memory_text() {
        assert_eq!(f("ldxw %r0, [%r1+8]"), "r0 = *(u32 *)(r1 + 8)");
        assert_eq!(f("ldxsb %r0, [%r1-4]"), "r0 = *(s8 *)(r1 - 4)");
        assert_eq!(f("ldxdw %r0, [%r1]"), "r0 = *(u64 *)(r1 + 0)");
        assert_eq!(f("ldxh %r0, [%r1-32768]"), "r0 = *(u16 *)(r1 - 32768)");
        assert_eq!(f("stxw [%r10-8], %r1"), "*(u32 *)(r10 - 8) = r1");
        assert_eq!(f("stdw [%r10-8], 42"), "*(u64 *)(r10 - 8) = 42");
        assert_eq!(f("stb [%r1+1], -1"), "*(u8 *)(r1 + 1) = -1");
        assert_eq!(f("lock add [%r1], %r2"), "lock *(u64 *)(r1 + 0) += r2");
        assert_eq!(f("lock and32 [%r1], %r2"), "lock *(u32 *)(r1 + 0) &= w2");
        assert_eq!(f("lock or [%r1+8], %r2"), "lock *(u64 *)(r1 + 8) |= r2");
        assert_eq!(f("lock xor32 [%r1-8], %r2"), "lock *(u32 *)(r1 - 8) ^= w2");
        assert_eq!(
            f("lock fetch add [%r1], %r2"),
            "r2 = atomic_fetch_add((u64 *)(r1 + 0), r2)"
        );
        assert_eq!(
            f("lock fetch and32 [%r1], %r2"),
            "w2 = atomic_fetch_and((u32 *)(r1 + 0), w2)"
        );
        assert_eq!(
            f("lock fetch or [%r1], %r2"),
            "r2 = atomic_fetch_or((u64 *)(r1 + 0), r2)"
        );
        assert_eq!(
            f("lock fetch xor32 [%r1], %r2"),
            "w2 = atomic_fetch_xor((u32 *)(r1 + 0), w2)"
        );
        assert_eq!(f("lock xchg [%r1], %r2"), "r2 = xchg_64(r1 + 0, r2)");
        assert_eq!(f("lock xchg32 [%r1], %r2"), "w2 = xchg32_32(r1 + 0, w2)");
        assert_eq!(
            f("lock cmpxchg [%r1], %r2"),
            "r0 = cmpxchg_64(r1 + 0, r0, r2)"
        );
        assert_eq!(
            f("lock cmpxchg32 [%r1], %r2"),
            "w0 = cmpxchg32_32(r1 + 0, w0, w2)"
        );
    }

    #[test]
    fn lddw_text() {
        assert_eq!(
            f("lddw %r0, 0x1122334455667788"),
            "r0 = 0x1122334455667788 ll"
        );
        assert_eq!(f("lddw %r1, 0"), "r1 = 0x0 ll");
        assert_eq!(f("lddw %r1, -1"), "r1 = 0xffffffffffffffff ll");
        assert_eq!(f("lddw %r1, map_fd 3"), "r1 = map_fd(3) ll");
        assert_eq!(f("lddw %r1, map_value 3 16"), "r1 = map_value(3, 16) ll");
        assert_eq!(f("lddw %r1, btf_id 7"), "r1 = btf_id(7) ll");
        assert_eq!(f("lddw %r1, func +5"), "r1 = func(+5) ll");
        assert_eq!(f("lddw %r1, func -3"), "r1 = func(-3) ll");
        assert_eq!(f("lddw %r1, map_idx 2"), "r1 = map_idx(2) ll");
        assert_eq!(
            f("lddw %r1, map_idx_value 2 16"),
            "r1 = map_idx_value(2, 16) ll"
        );
        // The second slot on its own does not decode.
        let p = assemble("lddw %r1, 1").unwrap();
        assert_eq!(format_instr(&p, 1), "<invalid: unknown opcode 0x00>");
        assert_eq!(
            format_instr(&p[..1], 0),
            "<invalid: lddw is missing its second slot>"
        );
    }

    #[test]
    fn jump_and_call_text() {
        assert_eq!(f("jgt %r1, %r2, +3"), "if r1 > r2 goto +3");
        assert_eq!(f("jslt32 %r1, 5, -2"), "if w1 s< 5 goto -2");
        assert_eq!(f("jset %r1, %r2, +1"), "if r1 & r2 goto +1");
        assert_eq!(f("jeq %r1, -1, +0"), "if r1 == -1 goto +0");
        assert_eq!(f("jne32 %r1, %r2, +0"), "if w1 != w2 goto +0");
        assert_eq!(f("jge %r1, 1, +0"), "if r1 >= 1 goto +0");
        assert_eq!(f("jle %r1, 1, +0"), "if r1 <= 1 goto +0");
        assert_eq!(f("jlt %r1, 1, +0"), "if r1 < 1 goto +0");
        assert_eq!(f("jsgt %r1, 1, +0"), "if r1 s> 1 goto +0");
        assert_eq!(f("jsge %r1, 1, +0"), "if r1 s>= 1 goto +0");
        assert_eq!(f("jsle %r1, 1, +0"), "if r1 s<= 1 goto +0");
        assert_eq!(f("ja +5"), "goto +5");
        assert_eq!(f("ja -1"), "goto -1");
        assert_eq!(f("ja32 +70000"), "gotol +70000");
        assert_eq!(f("ja32 +1"), "gotol +1");
        assert_eq!(f("call 5"), "call 5");
        assert_eq!(f("call 0xffffffff"), "call 4294967295");
        assert_eq!(f("call local +3"), "call +3");
        assert_eq!(f("call local -1"), "call -1");
        assert_eq!(f("call %r2"), "callx r2");
        assert_eq!(f("exit"), "exit");
    }

    #[test]
    fn invalid_slots_never_panic() {
        let p = [Insn::new(0x42, 0, 0, 0, 0)];
        assert_eq!(format_instr(&p, 0), "<invalid: unknown opcode 0x42>");
        assert_eq!(
            format_instr(&p, 5),
            "<invalid: pc 5 is past the end of the program (1 slots)>"
        );
        assert_eq!(
            format_instr(&[Insn::new(0x95, 0, 0, 0, 1)], 0),
            "<invalid: unused field imm is 1, must be 0>"
        );
        assert_eq!(
            format_instr(&[], 0),
            "<invalid: pc 0 is past the end of the program (0 slots)>"
        );
        assert_eq!(disassemble(&[]), "");
    }

    #[test]
    fn format_decoded_handles_any_instr() {
        assert_eq!(format_decoded(&Instr::Ja { target: 0 }, 0), "goto -1");
        assert_eq!(
            format_decoded(&Instr::Ja { target: 100_001 }, 0),
            "gotol +100000"
        );
        assert_eq!(
            format_decoded(&Instr::CallLocal { target: i64::MIN }, usize::MAX),
            format!("call {}", i64::MIN)
        );
        assert_eq!(
            format_decoded(&Instr::LddwTail, 3),
            "<invalid: second slot of lddw>"
        );
    }

    #[test]
    fn listing_layout() {
        let p = assemble("mov %r0, 1\nlddw %r1, 0x1122334455667788\nexit").unwrap();
        assert_eq!(
            disassemble(&p),
            "       0:\tb7 00 00 00 01 00 00 00\tr0 = 1\n\
             \x20      1:\t18 01 00 00 88 77 66 55\tr1 = 0x1122334455667788 ll\n\
             \x20      2:\t00 00 00 00 44 33 22 11\n\
             \x20      3:\t95 00 00 00 00 00 00 00\texit\n"
        );
        let bad = [Insn::new(0x42, 1, 2, 3, 4), Insn::new(OP_LDDW, 0, 0, 0, 0)];
        assert_eq!(
            disassemble(&bad),
            "       0:\t42 21 03 00 04 00 00 00\t<invalid: unknown opcode 0x42>\n\
             \x20      1:\t18 00 00 00 00 00 00 00\t<invalid: lddw is missing its second slot>\n"
        );
    }

    #[test]
    fn conformance_programs_round_trip() {
        for v in conformance::vectors() {
            let prog = assemble(&v.asm).unwrap_or_else(|e| panic!("{}: {e}", v.name));
            let listing = disassemble(&prog);
            assert!(!listing.contains("<invalid"), "{}:\n{listing}", v.name);
            let back = parse_objdump_syntax(&listing)
                .unwrap_or_else(|e| panic!("{}: {e}\n{listing}", v.name));
            assert_eq!(back, prog, "{}: listing round trip\n{listing}", v.name);
            // The bare text (no pc or byte columns) round-trips too.
            let text = instruction_texts(&prog).join("\n");
            let back =
                parse_objdump_syntax(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", v.name));
            assert_eq!(back, prog, "{}: text round trip\n{text}", v.name);
        }
    }

    /// The text of each instruction (not of `lddw` second slots).
    fn instruction_texts(prog: &[Insn]) -> Vec<String> {
        let mut out = Vec::new();
        let mut pc = 0;
        while pc < prog.len() {
            out.push(format_instr(prog, pc));
            pc += if prog[pc].is_lddw() { 2 } else { 1 };
        }
        out
    }

    /// Formats and parses back one slot pair if it decodes; returns the
    /// decoded instruction's kind.
    fn round_trip_pair(pair: [Insn; 2]) -> Option<String> {
        let instr = decode(&pair, 0).ok()?;
        let text = format_instr(&pair, 0);
        let back =
            parse_objdump_syntax(&text).unwrap_or_else(|e| panic!("{text:?}: {e} ({pair:?})"));
        assert_eq!(&back[..], &pair[..instr.slots()], "{text:?}");
        let debug = format!("{instr:?}");
        Some(
            debug
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_string(),
        )
    }

    /// Every opcode against a grid of interesting field values: whatever
    /// decodes must round-trip, and every kind of instruction is reached.
    #[test]
    fn field_grid_round_trips() {
        let regs = [0u8, 1, 10, 15];
        let offs = [0i16, 1, 8, 16, 32, -1, i16::MIN, i16::MAX];
        let imms = [
            0i32,
            1,
            -1,
            16,
            32,
            64,
            0x40,
            0x41,
            0x50,
            0x51,
            0xa0,
            0xa1,
            0xe1,
            0xf1,
            i32::MIN,
            i32::MAX,
        ];
        let tails = [Insn::default(), Insn::new(0, 0, 0, 0, -7)];
        let mut kinds = std::collections::BTreeMap::new();
        for code in 0..=255u8 {
            for dst in regs {
                for src in regs {
                    for off in offs {
                        for imm in imms {
                            for tail in tails {
                                let pair = [Insn::new(code, dst, src, off, imm), tail];
                                if let Some(kind) = round_trip_pair(pair) {
                                    *kinds.entry(kind).or_insert(0usize) += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        let reached: Vec<&str> = kinds.keys().map(String::as_str).collect();
        assert_eq!(
            reached,
            [
                "Alu",
                "Atomic",
                "CallHelper",
                "CallLocal",
                "CallReg",
                "Endian",
                "Exit",
                "Ja",
                "Jcond",
                "Lddw",
                "Load",
                "MovSx",
                "Neg",
                "Store"
            ],
            "{kinds:?}"
        );
    }

    fn arb_slot() -> impl Strategy<Value = Insn> {
        // Bias every field towards the values valid instructions use (mostly
        // zero), but keep covering all 256 opcodes and arbitrary values.
        let code = prop_oneof![
            3 => prop::sample::select(vec![
                0x04u8, 0x07, 0x0c, 0x0f, 0x14, 0x17, 0x34, 0x37, 0x3c, 0x3f, 0x84, 0x87,
                0x94, 0x97, 0x9c, 0x9f, 0xb4, 0xb7, 0xbc, 0xbf, 0xd4, 0xdc, 0xd7, 0x05,
                0x06, 0x15, 0x1d, 0x16, 0x1e, 0x4d, 0xa5, 0xde, 0x85, 0x8d, 0x95, 0x18,
                0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91, 0x62, 0x6a, 0x72, 0x7a, 0x63,
                0x6b, 0x73, 0x7b, 0xc3, 0xdb,
            ]),
            1 => any::<u8>(),
        ];
        let reg = prop_oneof![2 => Just(0u8), 1 => 1u8..=2, 2 => 0u8..16];
        let off = prop_oneof![
            4 => Just(0i16),
            2 => prop::sample::select(vec![1i16, -1, 8, 16, 32, i16::MIN, i16::MAX]),
            2 => any::<i16>(),
        ];
        let imm = prop_oneof![
            3 => Just(0i32),
            3 => prop::sample::select(vec![
                1, -1, 16, 32, 64, 0x01, 0x40, 0x41, 0x50, 0x51, 0xa0, 0xa1, 0xe1, 0xf1,
                i32::MIN, i32::MAX,
            ]),
            2 => any::<i32>(),
        ];
        (code, reg.clone(), reg, off, imm)
            .prop_map(|(code, dst, src, off, imm)| Insn::new(code, dst, src, off, imm))
    }

    fn arb_tail() -> impl Strategy<Value = Insn> {
        prop_oneof![
            3 => any::<i32>().prop_map(|imm| Insn::new(0, 0, 0, 0, imm)),
            1 => Just(Insn::default()),
            1 => (any::<u8>(), 0u8..16, 0u8..16, any::<i16>(), any::<i32>())
                .prop_map(|(c, d, s, o, i)| Insn::new(c, d, s, o, i)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Every slot pair that decodes formats to text that parses back to
        /// the same slots.
        #[test]
        fn valid_instructions_round_trip(a in arb_slot(), b in arb_tail()) {
            let pair = [a, b];
            if let Ok(instr) = decode(&pair, 0) {
                let text = format_instr(&pair, 0);
                let back = parse_objdump_syntax(&text)
                    .map_err(|e| TestCaseError::fail(format!("{text:?}: {e} ({a:?})")))?;
                prop_assert_eq!(&back[..], &pair[..instr.slots()], "text {:?}", text);
            }
        }

        /// Whole listings of arbitrary slots never panic, and their valid
        /// parts round-trip.
        #[test]
        fn arbitrary_programs_disassemble(
            prog in prop::collection::vec(prop_oneof![arb_slot(), arb_tail()], 0..12)
        ) {
            let listing = disassemble(&prog);
            prop_assert_eq!(listing.lines().count(), prog.len());
            if !listing.contains("<invalid") {
                let back = parse_objdump_syntax(&listing)
                    .map_err(|e| TestCaseError::fail(format!("{e}\n{listing}")))?;
                prop_assert_eq!(&back, &prog);
            }
            for pc in 0..prog.len() + 1 {
                let _ = format_instr(&prog, pc);
            }
        }
    }
}
