//! Assemblers: text to eBPF instruction slots.
//!
//! Two front ends share one encoder:
//!
//! * [`assemble`] reads the syntax of the public bpf_conformance suite (the
//!   `-- asm` sections of its `.data` files), matching the reference
//!   assembler `bpf_assembler.cc`, plus a few extensions listed below.
//! * [`parse_objdump_syntax`] reads back what the disassembler
//!   ([`crate::disasm`]) prints, which is llvm-objdump's BPF syntax, so that
//!   assemble → disassemble → parse gives the same bytes.
//!
//! # Conformance syntax ([`assemble`])
//!
//! One instruction per line: a mnemonic, then operands separated by spaces
//! and/or commas. `#` starts a comment anywhere; blank lines are ignored.
//! A token `name:` at the start of a line defines a label (more may follow
//! on the same line, then an optional instruction); defining a label twice is
//! an error. The first `exit` also defines an implicit label `exit`, unless
//! the program defines `exit:` itself.
//!
//! * Registers: `%r0`..`%r10`, also `%r11`..`%r15` (they encode, so that
//!   negative tests can be written; the verifier rejects them), and the same
//!   without `%` (`r0`..`r15`).
//! * Immediates: decimal or `0x` hex, optionally signed (`-1`, `-0x10`). Any
//!   value that fits an i64 or a u64 is accepted and truncated to 32 bits (64
//!   for `lddw`), two's complement, as the reference assembler does.
//! * Memory operands: `[%rN]`, `[%rN+off]`, `[%rN-off]`, `off` decimal or hex,
//!   fitting an i16. Spaces inside the brackets are allowed.
//! * Jump targets: a label, or a relative offset in slots (`+N`, `-N`, or a
//!   bare `N`). The offset of a label is `label_pc - pc - 1`; `lddw` counts two
//!   slots. Offsets must fit an i16, except for `ja32`, `call local` and
//!   `lddw ... func`, whose offsets go in the 32-bit immediate.
//!
//! | mnemonics | encoding |
//! |---|---|
//! | `add sub mul div sdiv or and lsh rsh mod smod xor mov arsh` (+`32`) `dst, src\|imm` | ALU64 (ALU with `32`); `sdiv`/`smod` set off = 1 |
//! | `neg dst`, `neg32 dst` | ALU NEG |
//! | `movsx<bits><width> dst, src` (`movsx864`, `movsx1664`, `movsx3264`, `movsx832`, `movsx1632`) | MOV, SRC_X, off = bits |
//! | `le16/32/64`, `be16/32/64`, `swap16/32/64` = `bswap16/32/64` `dst` | 0xd4 / 0xdc / 0xd7, imm = bits |
//! | `ldxb ldxh ldxw ldxdw ldxsb ldxsh ldxsw dst, [src+off]` | LDX MEM / MEMSX |
//! | `stb sth stw stdw [dst+off], imm` | ST MEM |
//! | `stxb stxh stxw stxdw [dst+off], src` | STX MEM |
//! | `lddw dst, imm64` | two slots |
//! | `ja target`, `ja32 target` | JA (off), JMP32 JA (imm) |
//! | `jeq jgt jge jset jne jsgt jsge jlt jle jslt jsle` (+`32`) `dst, src\|imm, target` | JMP / JMP32 |
//! | `call N` = `call helper N`, `call local target`, `call runtime N` | CALL src 0 / 1 / 2 |
//! | `call %rN` = `callx %rN` | 0x8d, register in dst |
//! | `exit` | 0x95 |
//! | `lock [fetch] add\|or\|and\|xor[32] [dst+off], src` | STX ATOMIC DW (W), imm = op \| fetch |
//! | `lock xchg[32] ...`, `lock cmpxchg[32] ...` | imm 0xe1 / 0xf1 |
//!
//! Extension for `lddw` with a pseudo source (bpfvm's own tests):
//!
//! | syntax | src | imm | next imm |
//! |---|---|---|---|
//! | `lddw dst, map_fd N` | 1 | N | 0 |
//! | `lddw dst, map_value N OFF` | 2 | N | OFF |
//! | `lddw dst, btf_id N` | 3 | N | 0 |
//! | `lddw dst, func target` | 4 | `target - pc - 1` (label or `+N`/`-N`) | 0 |
//! | `lddw dst, map_idx N` | 5 | N | 0 |
//! | `lddw dst, map_idx_value N OFF` | 6 | N | OFF |
//!
//! # objdump syntax ([`parse_objdump_syntax`])
//!
//! Exactly the text [`crate::disasm::format_instr`] produces, one
//! instruction per line, optionally preceded by the `pc:` and byte columns
//! that [`crate::disasm::disassemble`] adds (a line with a pc and bytes but no
//! text is the second slot of the `lddw` before it and is skipped). See
//! [`crate::disasm`] for the forms.

use std::collections::HashMap;

use crate::instr::{AluOp, AtomicOp, Cond, Endian, MemSize, Operand, Width};
use crate::isa::*;

/// An assembly error: the 1-based source line and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct AsmError {
    /// 1-based line number in the source text.
    pub line: usize,
    /// What went wrong.
    pub kind: AsmErrorKind,
}

/// The reason for an [`AsmError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmErrorKind {
    /// The mnemonic is not known.
    #[error("unknown mnemonic '{0}'")]
    UnknownMnemonic(String),
    /// Wrong number of operands.
    #[error("'{mnemonic}' takes {expected} operand(s), found {found}")]
    OperandCount {
        mnemonic: String,
        expected: &'static str,
        found: usize,
    },
    /// Not a register name.
    #[error("invalid register '{0}' (expected %r0 to %r15)")]
    BadRegister(String),
    /// Not a decimal or `0x` hex integer.
    #[error("invalid number '{0}'")]
    BadNumber(String),
    /// A number that does not fit its field.
    #[error("'{text}' is out of range for {what}")]
    OutOfRange { text: String, what: &'static str },
    /// A malformed `[%rN+off]` operand.
    #[error("invalid memory operand '{0}' (expected [%rN], [%rN+off] or [%rN-off])")]
    BadMemOperand(String),
    /// A label name that is not an identifier.
    #[error("invalid label name '{0}'")]
    BadLabel(String),
    /// A label defined twice.
    #[error("label '{name}' is already defined on line {first_line}")]
    DuplicateLabel { name: String, first_line: usize },
    /// A jump or call to a label that is not defined.
    #[error("undefined label '{0}'")]
    UndefinedLabel(String),
    /// A jump offset too large for its field.
    #[error("jump offset {offset} does not fit in a signed {bits}-bit field")]
    JumpOutOfRange { offset: i64, bits: u8 },
    /// Any other malformed text.
    #[error("{0}")]
    Syntax(String),
}

type KResult<T> = Result<T, AsmErrorKind>;

fn at_line(line: usize) -> impl Fn(AsmErrorKind) -> AsmError {
    move |kind| AsmError { line, kind }
}

// ---------------------------------------------------------------------------
// Encoder, shared by both front ends.
// ---------------------------------------------------------------------------

fn alu_class(width: Width) -> u8 {
    match width {
        Width::W64 => CLS_ALU64,
        Width::W32 => CLS_ALU,
    }
}

fn jmp_class(width: Width) -> u8 {
    match width {
        Width::W64 => CLS_JMP,
        Width::W32 => CLS_JMP32,
    }
}

/// The operation bits and the offset field of an ALU operation.
fn alu_op_bits(op: AluOp) -> (u8, i16) {
    match op {
        AluOp::Add => (ALU_ADD, 0),
        AluOp::Sub => (ALU_SUB, 0),
        AluOp::Mul => (ALU_MUL, 0),
        AluOp::Div => (ALU_DIV, 0),
        AluOp::SDiv => (ALU_DIV, 1),
        AluOp::Or => (ALU_OR, 0),
        AluOp::And => (ALU_AND, 0),
        AluOp::Lsh => (ALU_LSH, 0),
        AluOp::Rsh => (ALU_RSH, 0),
        AluOp::Mod => (ALU_MOD, 0),
        AluOp::SMod => (ALU_MOD, 1),
        AluOp::Xor => (ALU_XOR, 0),
        AluOp::Mov => (ALU_MOV, 0),
        AluOp::Arsh => (ALU_ARSH, 0),
    }
}

fn cond_bits(cond: Cond) -> u8 {
    match cond {
        Cond::Eq => JMP_JEQ,
        Cond::Gt => JMP_JGT,
        Cond::Ge => JMP_JGE,
        Cond::Set => JMP_JSET,
        Cond::Ne => JMP_JNE,
        Cond::SGt => JMP_JSGT,
        Cond::SGe => JMP_JSGE,
        Cond::Lt => JMP_JLT,
        Cond::Le => JMP_JLE,
        Cond::SLt => JMP_JSLT,
        Cond::SLe => JMP_JSLE,
    }
}

fn size_bits(size: MemSize) -> u8 {
    match size {
        MemSize::B => SIZE_B,
        MemSize::H => SIZE_H,
        MemSize::W => SIZE_W,
        MemSize::DW => SIZE_DW,
    }
}

fn atomic_imm(op: AtomicOp, fetch: bool) -> i32 {
    let f = if fetch { ATOMIC_FETCH } else { 0 };
    match op {
        AtomicOp::Add => ATOMIC_ADD | f,
        AtomicOp::Or => ATOMIC_OR | f,
        AtomicOp::And => ATOMIC_AND | f,
        AtomicOp::Xor => ATOMIC_XOR | f,
        AtomicOp::Xchg => ATOMIC_XCHG,
        AtomicOp::CmpXchg => ATOMIC_CMPXCHG,
    }
}

/// Splits an operand into the source bit, the src field and the imm field.
fn operand_fields(src: Operand) -> (u8, u8, i32) {
    match src {
        Operand::Reg(r) => (SRC_X, r, 0),
        Operand::Imm(i) => (SRC_K, 0, i),
    }
}

fn enc_alu(width: Width, op: AluOp, dst: u8, src: Operand) -> Insn {
    let (bits, off) = alu_op_bits(op);
    let (x, s, imm) = operand_fields(src);
    Insn::new(alu_class(width) | bits | x, dst, s, off, imm)
}

fn enc_neg(width: Width, dst: u8) -> Insn {
    Insn::new(alu_class(width) | ALU_NEG, dst, 0, 0, 0)
}

fn enc_movsx(width: Width, bits: u8, dst: u8, src: u8) -> Insn {
    Insn::new(
        alu_class(width) | ALU_MOV | SRC_X,
        dst,
        src,
        i16::from(bits),
        0,
    )
}

fn enc_endian(kind: Endian, bits: u8, dst: u8) -> Insn {
    let code = match kind {
        Endian::ToLe => CLS_ALU | ALU_END | SRC_K,
        Endian::ToBe => CLS_ALU | ALU_END | SRC_X,
        Endian::Swap => CLS_ALU64 | ALU_END | SRC_K,
    };
    Insn::new(code, dst, 0, 0, i32::from(bits))
}

fn enc_load(size: MemSize, signed: bool, dst: u8, base: u8, off: i16) -> Insn {
    let mode = if signed { MODE_MEMSX } else { MODE_MEM };
    Insn::new(CLS_LDX | mode | size_bits(size), dst, base, off, 0)
}

fn enc_store(size: MemSize, base: u8, off: i16, src: Operand) -> Insn {
    match src {
        Operand::Imm(imm) => Insn::new(CLS_ST | MODE_MEM | size_bits(size), base, 0, off, imm),
        Operand::Reg(r) => Insn::new(CLS_STX | MODE_MEM | size_bits(size), base, r, off, 0),
    }
}

fn enc_atomic(size: MemSize, op: AtomicOp, fetch: bool, base: u8, off: i16, src: u8) -> Insn {
    let code = CLS_STX | MODE_ATOMIC | size_bits(size);
    Insn::new(code, base, src, off, atomic_imm(op, fetch))
}

fn enc_lddw(dst: u8, kind: u8, imm: i32, next_imm: i32) -> [Insn; 2] {
    [
        Insn::new(OP_LDDW, dst, kind, 0, imm),
        Insn::new(0, 0, 0, 0, next_imm),
    ]
}

fn enc_lddw_imm64(dst: u8, value: u64) -> [Insn; 2] {
    // Truncations intended: low and high halves of the 64-bit value.
    enc_lddw(
        dst,
        PSEUDO_IMM64,
        value as u32 as i32,
        (value >> 32) as u32 as i32,
    )
}

fn enc_jcond(width: Width, cond: Cond, dst: u8, src: Operand, off: i16) -> Insn {
    let (x, s, imm) = operand_fields(src);
    Insn::new(jmp_class(width) | cond_bits(cond) | x, dst, s, off, imm)
}

fn enc_ja(off: i16) -> Insn {
    Insn::new(OP_JA, 0, 0, off, 0)
}

fn enc_ja32(imm: i32) -> Insn {
    Insn::new(OP_JA32, 0, 0, 0, imm)
}

fn enc_call(kind: u8, imm: i32) -> Insn {
    Insn::new(OP_CALL, 0, kind, 0, imm)
}

fn enc_callx(reg: u8) -> Insn {
    Insn::new(OP_CALLX, reg, 0, 0, 0)
}

fn enc_exit() -> Insn {
    Insn::new(OP_EXIT, 0, 0, 0, 0)
}

// ---------------------------------------------------------------------------
// Lexical helpers shared by both front ends.
// ---------------------------------------------------------------------------

/// Parses a decimal or `0x` hex integer with an optional sign.
fn parse_int(text: &str) -> KResult<i128> {
    let bad = || AsmErrorKind::BadNumber(text.to_string());
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(hex) => (16, hex),
        None => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    let too_big = || AsmErrorKind::OutOfRange {
        text: text.to_string(),
        what: "a 64-bit integer",
    };
    let mag = u128::from_str_radix(digits, radix).map_err(|_| too_big())?;
    let mag = i128::try_from(mag).map_err(|_| too_big())?;
    Ok(if neg { -mag } else { mag })
}

fn check_range(text: &str, v: i128, lo: i128, hi: i128, what: &'static str) -> KResult<i128> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(AsmErrorKind::OutOfRange {
            text: text.to_string(),
            what,
        })
    }
}

/// A value that fits an i64 or a u64, as its 64-bit two's complement pattern.
fn parse_u64_wrapping(text: &str) -> KResult<u64> {
    let v = parse_int(text)?;
    let v = check_range(
        text,
        v,
        i128::from(i64::MIN),
        i128::from(u64::MAX),
        "a 64-bit integer",
    )?;
    // Truncation intended: two's complement of a value in i64/u64 range.
    Ok(v as u64)
}

/// A value that fits an i64 or a u64, truncated to 32 bits (the reference
/// assembler's behaviour for immediates).
fn parse_imm32_wrapping(text: &str) -> KResult<i32> {
    // Truncation intended.
    Ok(parse_u64_wrapping(text)? as u32 as i32)
}

/// A value in `-2^31..2^32`: an i32 or a u32, as its 32-bit pattern.
fn parse_imm32_strict(text: &str) -> KResult<i32> {
    let v = parse_int(text)?;
    let v = check_range(
        text,
        v,
        i128::from(i32::MIN),
        i128::from(u32::MAX),
        "a 32-bit immediate",
    )?;
    // Truncation intended: two's complement of a value in i32/u32 range.
    Ok(v as u32 as i32)
}

fn to_i16(text: &str, v: i128, what: &'static str) -> KResult<i16> {
    i16::try_from(v).map_err(|_| AsmErrorKind::OutOfRange {
        text: text.to_string(),
        what,
    })
}

fn jump_off16(offset: i64) -> KResult<i16> {
    i16::try_from(offset).map_err(|_| AsmErrorKind::JumpOutOfRange { offset, bits: 16 })
}

fn jump_imm32(offset: i64) -> KResult<i32> {
    i32::try_from(offset).map_err(|_| AsmErrorKind::JumpOutOfRange { offset, bits: 32 })
}

/// Register number of `r0`..`r15` (canonical decimal, no leading zeros).
fn reg_number(digits: &str) -> Option<u8> {
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse::<u8>().ok().filter(|&n| n <= 15)
}

/// The pseudo source named by an `lddw` keyword (both front ends).
fn pseudo_keyword(word: &str) -> Option<u8> {
    match word {
        "map_fd" => Some(PSEUDO_MAP_FD),
        "map_value" => Some(PSEUDO_MAP_VALUE),
        "btf_id" => Some(PSEUDO_BTF_ID),
        "func" => Some(PSEUDO_FUNC),
        "map_idx" => Some(PSEUDO_MAP_IDX),
        "map_idx_value" => Some(PSEUDO_MAP_IDX_VALUE),
        _ => None,
    }
}

fn strip_comment(line: &str) -> &str {
    match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    }
}

// ---------------------------------------------------------------------------
// Conformance-syntax front end.
// ---------------------------------------------------------------------------

/// Assembles conformance-suite syntax into instruction slots.
///
/// See the [module documentation](self) for the syntax. Never panics; every
/// problem is an [`AsmError`] naming its line.
pub fn assemble(src: &str) -> Result<Vec<Insn>, AsmError> {
    let mut asm = Assembler::default();
    for (idx, text) in src.lines().enumerate() {
        asm.line(idx + 1, text)?;
    }
    asm.finish()
}

/// Assembles conformance-suite syntax into bytecode (8 bytes per slot).
pub fn assemble_bytes(src: &str) -> Result<Vec<u8>, AsmError> {
    assemble(src).map(|insns| encode_program(&insns))
}

/// Where a resolved label offset goes.
#[derive(Clone, Copy, Debug)]
enum FixupField {
    Off16,
    Imm32,
}

#[derive(Debug)]
struct Fixup {
    line: usize,
    pc: usize,
    label: String,
    field: FixupField,
}

/// A jump target as written.
enum Target {
    Relative(i64),
    Label(String),
}

#[derive(Default)]
struct Assembler {
    insns: Vec<Insn>,
    /// Label name to (pc, defining line).
    labels: HashMap<String, (usize, usize)>,
    first_exit: Option<usize>,
    fixups: Vec<Fixup>,
}

/// A conformance mnemonic, parsed.
#[derive(Clone, Copy, Debug)]
enum Mnem {
    Alu(Width, AluOp),
    Neg(Width),
    MovSx(Width, u8),
    Endian(Endian, u8),
    Load(MemSize, bool),
    StoreImm(MemSize),
    StoreReg(MemSize),
    Lddw,
    Ja,
    Ja32,
    Jcond(Width, Cond),
    Call,
    Callx,
    Exit,
    Lock,
}

impl Assembler {
    fn line(&mut self, line: usize, text: &str) -> Result<(), AsmError> {
        let toks = tokenize(strip_comment(text)).map_err(at_line(line))?;
        let mut rest = &toks[..];
        while let Some((first, tail)) = rest.split_first() {
            let Some(name) = first.strip_suffix(':') else {
                break;
            };
            self.define_label(line, name).map_err(at_line(line))?;
            rest = tail;
        }
        let Some((mnemonic, ops)) = rest.split_first() else {
            return Ok(());
        };
        self.instruction(line, mnemonic, ops).map_err(at_line(line))
    }

    fn define_label(&mut self, line: usize, name: &str) -> KResult<()> {
        if !is_label_name(name) {
            return Err(AsmErrorKind::BadLabel(name.to_string()));
        }
        if let Some(&(_, first_line)) = self.labels.get(name) {
            return Err(AsmErrorKind::DuplicateLabel {
                name: name.to_string(),
                first_line,
            });
        }
        self.labels
            .insert(name.to_string(), (self.insns.len(), line));
        Ok(())
    }

    fn pc(&self) -> usize {
        self.insns.len()
    }

    /// Resolves a target now (relative) or records a fixup (label); returns
    /// the offset to encode for now.
    fn target(&mut self, line: usize, text: &str, field: FixupField) -> KResult<i64> {
        match parse_target(text)? {
            Target::Relative(off) => Ok(off),
            Target::Label(label) => {
                self.fixups.push(Fixup {
                    line,
                    pc: self.pc(),
                    label,
                    field,
                });
                Ok(0)
            }
        }
    }

    fn instruction(&mut self, line: usize, mnemonic: &str, ops: &[String]) -> KResult<()> {
        let m = parse_mnemonic(mnemonic)
            .ok_or_else(|| AsmErrorKind::UnknownMnemonic(mnemonic.to_string()))?;
        let one = match m {
            Mnem::Alu(width, op) => {
                let [dst, src] = operands::<2>(mnemonic, ops)?;
                enc_alu(width, op, parse_reg(dst)?, parse_reg_or_imm(src)?)
            }
            Mnem::Neg(width) => {
                let [dst] = operands::<1>(mnemonic, ops)?;
                enc_neg(width, parse_reg(dst)?)
            }
            Mnem::MovSx(width, bits) => {
                let [dst, src] = operands::<2>(mnemonic, ops)?;
                enc_movsx(width, bits, parse_reg(dst)?, parse_reg(src)?)
            }
            Mnem::Endian(kind, bits) => {
                let [dst] = operands::<1>(mnemonic, ops)?;
                enc_endian(kind, bits, parse_reg(dst)?)
            }
            Mnem::Load(size, signed) => {
                let [dst, mem] = operands::<2>(mnemonic, ops)?;
                let (base, off) = parse_mem(mem)?;
                enc_load(size, signed, parse_reg(dst)?, base, off)
            }
            Mnem::StoreImm(size) => {
                let [mem, imm] = operands::<2>(mnemonic, ops)?;
                let (base, off) = parse_mem(mem)?;
                enc_store(size, base, off, Operand::Imm(parse_imm32_wrapping(imm)?))
            }
            Mnem::StoreReg(size) => {
                let [mem, src] = operands::<2>(mnemonic, ops)?;
                let (base, off) = parse_mem(mem)?;
                enc_store(size, base, off, Operand::Reg(parse_reg(src)?))
            }
            Mnem::Lddw => {
                let pair = self.lddw(line, ops)?;
                self.insns.extend_from_slice(&pair);
                return Ok(());
            }
            Mnem::Ja => {
                let [t] = operands::<1>(mnemonic, ops)?;
                enc_ja(jump_off16(self.target(line, t, FixupField::Off16)?)?)
            }
            Mnem::Ja32 => {
                let [t] = operands::<1>(mnemonic, ops)?;
                enc_ja32(jump_imm32(self.target(line, t, FixupField::Imm32)?)?)
            }
            Mnem::Jcond(width, cond) => {
                let [dst, src, t] = operands::<3>(mnemonic, ops)?;
                let (dst, src) = (parse_reg(dst)?, parse_reg_or_imm(src)?);
                let off = jump_off16(self.target(line, t, FixupField::Off16)?)?;
                enc_jcond(width, cond, dst, src, off)
            }
            Mnem::Call => self.call(line, ops)?,
            Mnem::Callx => {
                let [reg] = operands::<1>(mnemonic, ops)?;
                enc_callx(parse_reg(reg)?)
            }
            Mnem::Exit => {
                operands::<0>(mnemonic, ops)?;
                self.first_exit.get_or_insert(self.insns.len());
                enc_exit()
            }
            Mnem::Lock => lock(ops)?,
        };
        self.insns.push(one);
        Ok(())
    }

    fn call(&mut self, line: usize, ops: &[String]) -> KResult<Insn> {
        let count_err = || AsmErrorKind::OperandCount {
            mnemonic: "call".into(),
            expected: "1 or 2",
            found: ops.len(),
        };
        match ops {
            [one] if looks_like_register(one) => Ok(enc_callx(parse_reg(one)?)),
            [id] => Ok(enc_call(CALL_HELPER, parse_imm32_wrapping(id)?)),
            [mode, arg] => match mode.as_str() {
                "helper" => Ok(enc_call(CALL_HELPER, parse_imm32_wrapping(arg)?)),
                "runtime" => Ok(enc_call(CALL_KFUNC, parse_imm32_wrapping(arg)?)),
                "local" => {
                    let off = self.target(line, arg, FixupField::Imm32)?;
                    Ok(enc_call(CALL_LOCAL, jump_imm32(off)?))
                }
                _ => Err(AsmErrorKind::Syntax(format!(
                    "invalid call mode '{mode}' (expected helper, local or runtime)"
                ))),
            },
            _ => Err(count_err()),
        }
    }

    /// `lddw dst, imm64` or `lddw dst, <pseudo keyword> args...`.
    fn lddw(&mut self, line: usize, ops: &[String]) -> KResult<[Insn; 2]> {
        let count_err = || AsmErrorKind::OperandCount {
            mnemonic: "lddw".into(),
            expected: "2",
            found: ops.len(),
        };
        let Some((dst, args)) = ops.split_first() else {
            return Err(count_err());
        };
        let dst = parse_reg(dst)?;
        let Some((keyword, kind)) = args
            .first()
            .and_then(|k| pseudo_keyword(k).map(|kind| (k.as_str(), kind)))
        else {
            let [imm] = args else {
                return Err(count_err());
            };
            return Ok(enc_lddw_imm64(dst, parse_u64_wrapping(imm)?));
        };
        let with_next = matches!(kind, PSEUDO_MAP_VALUE | PSEUDO_MAP_IDX_VALUE);
        let (imm, next) = match (&args[1..], with_next) {
            ([imm], false) => (imm, None),
            ([imm, next], true) => (imm, Some(next)),
            (rest, _) => {
                return Err(AsmErrorKind::Syntax(format!(
                    "lddw {keyword} takes {} argument(s), found {}",
                    1 + usize::from(with_next),
                    rest.len()
                )))
            }
        };
        let imm = if kind == PSEUDO_FUNC {
            jump_imm32(self.target(line, imm, FixupField::Imm32)?)?
        } else {
            parse_imm32_wrapping(imm)?
        };
        let next = next.map(|n| parse_imm32_wrapping(n)).transpose()?;
        Ok(enc_lddw(dst, kind, imm, next.unwrap_or(0)))
    }

    fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for f in std::mem::take(&mut self.fixups) {
            let target_pc = self.resolve(&f.label).map_err(at_line(f.line))?;
            // Both values are slot indices of a Vec, far below i64::MAX.
            let offset = target_pc as i64 - f.pc as i64 - 1;
            let slot = self.insns.get_mut(f.pc).ok_or_else(|| AsmError {
                line: f.line,
                kind: AsmErrorKind::Syntax("internal: fixup outside the program".into()),
            })?;
            match f.field {
                FixupField::Off16 => slot.off = jump_off16(offset).map_err(at_line(f.line))?,
                FixupField::Imm32 => slot.imm = jump_imm32(offset).map_err(at_line(f.line))?,
            }
        }
        Ok(self.insns)
    }

    fn resolve(&self, label: &str) -> KResult<usize> {
        if let Some(&(pc, _)) = self.labels.get(label) {
            return Ok(pc);
        }
        match (label, self.first_exit) {
            ("exit", Some(pc)) => Ok(pc),
            _ => Err(AsmErrorKind::UndefinedLabel(label.to_string())),
        }
    }
}

/// Splits a line (comment already removed) into tokens: separated by
/// whitespace and commas; a `[...]` group is one token with its inner
/// whitespace removed.
fn tokenize(code: &str) -> KResult<Vec<String>> {
    let mut toks = Vec::new();
    let mut cur = String::new();
    let mut chars = code.chars();
    while let Some(c) = chars.next() {
        if c.is_whitespace() || c == ',' {
            flush(&mut toks, &mut cur);
        } else if c == '[' {
            flush(&mut toks, &mut cur);
            cur.push('[');
            let mut closed = false;
            for c in chars.by_ref() {
                if !c.is_whitespace() {
                    cur.push(c);
                }
                if c == ']' {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err(AsmErrorKind::BadMemOperand(cur));
            }
            flush(&mut toks, &mut cur);
        } else {
            cur.push(c);
        }
    }
    flush(&mut toks, &mut cur);
    Ok(toks)
}

fn flush(toks: &mut Vec<String>, cur: &mut String) {
    if !cur.is_empty() {
        toks.push(std::mem::take(cur));
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '.' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$'))
}

fn parse_target(text: &str) -> KResult<Target> {
    let numeric = text.starts_with(['+', '-']) || text.starts_with(|c: char| c.is_ascii_digit());
    if numeric {
        let v = parse_int(text)?;
        let v = check_range(
            text,
            v,
            i128::from(i64::MIN),
            i128::from(i64::MAX),
            "a jump offset",
        )?;
        // In i64 range: checked just above.
        return Ok(Target::Relative(v as i64));
    }
    if is_label_name(text) {
        Ok(Target::Label(text.to_string()))
    } else {
        Err(AsmErrorKind::BadLabel(text.to_string()))
    }
}

/// Exactly `N` operands, or an operand-count error.
fn operands<'a, const N: usize>(mnemonic: &str, ops: &'a [String]) -> KResult<[&'a str; N]> {
    let count_err = || AsmErrorKind::OperandCount {
        mnemonic: mnemonic.to_string(),
        expected: ["0", "1", "2", "3"].get(N).copied().unwrap_or("several"),
        found: ops.len(),
    };
    if ops.len() != N {
        return Err(count_err());
    }
    let mut out = [""; N];
    for (o, s) in out.iter_mut().zip(ops) {
        *o = s.as_str();
    }
    Ok(out)
}

fn looks_like_register(text: &str) -> bool {
    text.starts_with(['%', 'r'])
}

/// `%rN` or `rN`, N in 0..=15.
fn parse_reg(text: &str) -> KResult<u8> {
    let body = text.strip_prefix('%').unwrap_or(text);
    body.strip_prefix('r')
        .and_then(reg_number)
        .ok_or_else(|| AsmErrorKind::BadRegister(text.to_string()))
}

fn parse_reg_or_imm(text: &str) -> KResult<Operand> {
    if looks_like_register(text) {
        Ok(Operand::Reg(parse_reg(text)?))
    } else {
        Ok(Operand::Imm(parse_imm32_wrapping(text)?))
    }
}

/// `[%rN]`, `[%rN+off]` or `[%rN-off]` (whitespace already removed).
fn parse_mem(text: &str) -> KResult<(u8, i16)> {
    let bad = || AsmErrorKind::BadMemOperand(text.to_string());
    let inner = text
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(bad)?;
    let Some(split) = inner.find(['+', '-']) else {
        return Ok((parse_reg(inner)?, 0));
    };
    let (reg, off) = inner.split_at(split);
    // The sign is part of `off`; the magnitude must not carry another one.
    if off[1..].starts_with(['+', '-']) {
        return Err(bad());
    }
    let v = parse_int(off)?;
    Ok((parse_reg(reg)?, to_i16(off, v, "a 16-bit memory offset")?))
}

fn parse_mnemonic(m: &str) -> Option<Mnem> {
    if let Some(x) = endian_mnemonic(m) {
        return Some(x);
    }
    if let Some(rest) = m.strip_prefix("movsx") {
        return movsx_mnemonic(rest);
    }
    if let Some(x) = memory_mnemonic(m) {
        return Some(x);
    }
    let fixed = match m {
        "lddw" => Some(Mnem::Lddw),
        "ja" => Some(Mnem::Ja),
        "ja32" => Some(Mnem::Ja32),
        "call" => Some(Mnem::Call),
        "callx" => Some(Mnem::Callx),
        "exit" => Some(Mnem::Exit),
        "lock" => Some(Mnem::Lock),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let (base, width) = match m.strip_suffix("32") {
        Some(b) => (b, Width::W32),
        None => (m, Width::W64),
    };
    if base == "neg" {
        return Some(Mnem::Neg(width));
    }
    if let Some(op) = alu_op_by_name(base) {
        return Some(Mnem::Alu(width, op));
    }
    cond_by_name(base).map(|c| Mnem::Jcond(width, c))
}

fn endian_mnemonic(m: &str) -> Option<Mnem> {
    let (kind, bits) = if let Some(b) = m.strip_prefix("le") {
        (Endian::ToLe, b)
    } else if let Some(b) = m.strip_prefix("be") {
        (Endian::ToBe, b)
    } else if let Some(b) = m.strip_prefix("bswap").or_else(|| m.strip_prefix("swap")) {
        (Endian::Swap, b)
    } else {
        return None;
    };
    match bits {
        "16" => Some(Mnem::Endian(kind, 16)),
        "32" => Some(Mnem::Endian(kind, 32)),
        "64" => Some(Mnem::Endian(kind, 64)),
        _ => None,
    }
}

fn movsx_mnemonic(rest: &str) -> Option<Mnem> {
    let (bits, width) = if let Some(b) = rest.strip_suffix("64") {
        (b, Width::W64)
    } else {
        (rest.strip_suffix("32")?, Width::W32)
    };
    match bits {
        "8" => Some(Mnem::MovSx(width, 8)),
        "16" => Some(Mnem::MovSx(width, 16)),
        "32" => Some(Mnem::MovSx(width, 32)),
        _ => None,
    }
}

fn memory_mnemonic(m: &str) -> Option<Mnem> {
    let size = |s: &str| match s {
        "b" => Some(MemSize::B),
        "h" => Some(MemSize::H),
        "w" => Some(MemSize::W),
        "dw" => Some(MemSize::DW),
        _ => None,
    };
    if let Some(s) = m.strip_prefix("ldxs") {
        return size(s)
            .filter(|&s| s != MemSize::DW)
            .map(|s| Mnem::Load(s, true));
    }
    if let Some(s) = m.strip_prefix("ldx") {
        return size(s).map(|s| Mnem::Load(s, false));
    }
    if let Some(s) = m.strip_prefix("stx") {
        return size(s).map(Mnem::StoreReg);
    }
    if let Some(s) = m.strip_prefix("st") {
        return size(s).map(Mnem::StoreImm);
    }
    None
}

fn alu_op_by_name(name: &str) -> Option<AluOp> {
    Some(match name {
        "add" => AluOp::Add,
        "sub" => AluOp::Sub,
        "mul" => AluOp::Mul,
        "div" => AluOp::Div,
        "sdiv" => AluOp::SDiv,
        "or" => AluOp::Or,
        "and" => AluOp::And,
        "lsh" => AluOp::Lsh,
        "rsh" => AluOp::Rsh,
        "mod" => AluOp::Mod,
        "smod" => AluOp::SMod,
        "xor" => AluOp::Xor,
        "mov" => AluOp::Mov,
        "arsh" => AluOp::Arsh,
        _ => return None,
    })
}

fn cond_by_name(name: &str) -> Option<Cond> {
    Some(match name {
        "jeq" => Cond::Eq,
        "jgt" => Cond::Gt,
        "jge" => Cond::Ge,
        "jset" => Cond::Set,
        "jne" => Cond::Ne,
        "jsgt" => Cond::SGt,
        "jsge" => Cond::SGe,
        "jlt" => Cond::Lt,
        "jle" => Cond::Le,
        "jslt" => Cond::SLt,
        "jsle" => Cond::SLe,
        _ => return None,
    })
}

/// `lock [fetch] <op>[32] [dst+off], src`.
fn lock(ops: &[String]) -> KResult<Insn> {
    let (fetch, rest) = match ops.split_first() {
        Some((f, rest)) if f == "fetch" => (true, rest),
        _ => (false, ops),
    };
    let Some((name, args)) = rest.split_first() else {
        return Err(AsmErrorKind::OperandCount {
            mnemonic: "lock".into(),
            expected: "3 or 4",
            found: ops.len(),
        });
    };
    let (base_name, size) = match name.strip_suffix("32") {
        Some(b) => (b, MemSize::W),
        None => (name.as_str(), MemSize::DW),
    };
    let op = match base_name {
        "add" => AtomicOp::Add,
        "or" => AtomicOp::Or,
        "and" => AtomicOp::And,
        "xor" => AtomicOp::Xor,
        "xchg" => AtomicOp::Xchg,
        "cmpxchg" => AtomicOp::CmpXchg,
        _ => return Err(AsmErrorKind::UnknownMnemonic(format!("lock {name}"))),
    };
    let mnemonic = format!("lock {name}");
    let [mem, src] = operands::<2>(&mnemonic, args)?;
    let (base, off) = parse_mem(mem)?;
    Ok(enc_atomic(size, op, fetch, base, off, parse_reg(src)?))
}

// ---------------------------------------------------------------------------
// objdump-syntax front end.
// ---------------------------------------------------------------------------

/// Parses llvm-objdump BPF syntax, as printed by [`crate::disasm`], back into
/// instruction slots.
///
/// Accepts one instruction per line in exactly the form of
/// [`crate::disasm::format_instr`]; the `pc:` and byte columns of
/// [`crate::disasm::disassemble`] may be present. Blank lines and `#`
/// comments are ignored. A line with a pc and bytes but no text must follow
/// an `lddw` (it is that instruction's second slot) and is skipped.
pub fn parse_objdump_syntax(text: &str) -> Result<Vec<Insn>, AsmError> {
    let mut out: Vec<Insn> = Vec::new();
    let mut tail_allowed = false;
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let (had_columns, body) = strip_listing_columns(strip_comment(raw));
        if body.trim().is_empty() {
            if had_columns && !tail_allowed {
                return Err(AsmError {
                    line,
                    kind: AsmErrorKind::Syntax(
                        "listing line without instruction text does not follow an lddw".into(),
                    ),
                });
            }
            tail_allowed = false;
            continue;
        }
        let insns = objdump::statement(body).map_err(at_line(line))?;
        tail_allowed = insns.len() == 2;
        out.extend(insns);
    }
    Ok(out)
}

/// Removes a leading `pc:` and a run of two-digit hex byte tokens. Returns
/// whether either was present, and the rest.
fn strip_listing_columns(line: &str) -> (bool, &str) {
    let mut rest = line.trim_start();
    let mut stripped = false;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && rest[digits..].starts_with(':') {
        rest = rest[digits + 1..].trim_start();
        stripped = true;
    }
    loop {
        let tok_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let tok = &rest[..tok_len];
        if tok.len() == 2 && tok.bytes().all(|b| b.is_ascii_hexdigit()) {
            rest = rest[tok_len..].trim_start();
            stripped = true;
        } else {
            return (stripped, rest);
        }
    }
}

mod objdump {
    //! Recursive-descent parser of one objdump-syntax instruction.

    use super::*;

    /// Register prefix: `r` (64-bit view) or `w` (32-bit view).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Reg {
        wide: bool,
        n: u8,
    }

    impl Reg {
        fn width(self) -> Width {
            if self.wide {
                Width::W64
            } else {
                Width::W32
            }
        }
    }

    struct Cursor<'a> {
        s: &'a str,
        pos: usize,
    }

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }

    impl<'a> Cursor<'a> {
        fn rest(&self) -> &'a str {
            self.s.get(self.pos..).unwrap_or("")
        }

        fn skip_ws(&mut self) {
            let r = self.rest();
            self.pos += r.len() - r.trim_start().len();
        }

        fn syntax(&self, expected: &str) -> AsmErrorKind {
            let rest = self.rest().trim();
            let found = if rest.is_empty() { "end of line" } else { rest };
            AsmErrorKind::Syntax(format!("expected {expected}, found '{found}'"))
        }

        /// Consumes `lit` (after whitespace) if it is next.
        fn eat(&mut self, lit: &str) -> bool {
            self.skip_ws();
            if self.rest().starts_with(lit) {
                self.pos += lit.len();
                true
            } else {
                false
            }
        }

        fn expect(&mut self, lit: &str) -> KResult<()> {
            if self.eat(lit) {
                Ok(())
            } else {
                Err(self.syntax(&format!("'{lit}'")))
            }
        }

        /// The identifier-like word at the cursor, not consumed.
        fn peek_word(&mut self) -> &'a str {
            self.skip_ws();
            let r = self.rest();
            &r[..r.find(|c| !is_ident(c)).unwrap_or(r.len())]
        }

        /// Consumes `word` if it is the whole next word.
        fn eat_word(&mut self, word: &str) -> bool {
            if self.peek_word() == word {
                self.pos += word.len();
                true
            } else {
                false
            }
        }

        fn at_end(&mut self) -> bool {
            self.skip_ws();
            self.rest().is_empty()
        }

        /// A number token: optional sign, then letters and digits.
        fn number_text(&mut self) -> KResult<&'a str> {
            self.skip_ws();
            let r = self.rest();
            let sign = usize::from(r.starts_with(['+', '-']));
            let len = sign + r[sign..].find(|c| !is_ident(c)).unwrap_or(r.len() - sign);
            if len == sign {
                return Err(self.syntax("a number"));
            }
            self.pos += len;
            Ok(&r[..len])
        }

        fn reg(&mut self) -> KResult<Reg> {
            let w = self.peek_word();
            let parsed = match w.split_at_checked(1) {
                Some(("r", n)) => reg_number(n).map(|n| Reg { wide: true, n }),
                Some(("w", n)) => reg_number(n).map(|n| Reg { wide: false, n }),
                _ => None,
            };
            match parsed {
                Some(r) => {
                    self.pos += w.len();
                    Ok(r)
                }
                None => Err(self.syntax("a register")),
            }
        }

        /// A register with the given view (`r` when `wide`).
        fn reg_of(&mut self, wide: bool) -> KResult<u8> {
            let r = self.reg()?;
            if r.wide == wide {
                Ok(r.n)
            } else {
                let p = if wide { 'r' } else { 'w' };
                Err(AsmErrorKind::Syntax(format!(
                    "register must be written {p}{}",
                    r.n
                )))
            }
        }

        fn peek_is_reg(&mut self) -> bool {
            let w = self.peek_word();
            matches!(w.split_at_checked(1), Some(("r" | "w", n)) if reg_number(n).is_some())
        }

        /// A register of the given view, or a 32-bit immediate.
        fn reg_or_imm(&mut self, wide: bool) -> KResult<Operand> {
            if self.peek_is_reg() {
                Ok(Operand::Reg(self.reg_of(wide)?))
            } else {
                Ok(Operand::Imm(parse_imm32_strict(self.number_text()?)?))
            }
        }

        /// `rN + off` or `rN - off`.
        fn mem_inner(&mut self) -> KResult<(u8, i16)> {
            let base = self.reg_of(true)?;
            let neg = if self.eat("+") {
                false
            } else if self.eat("-") {
                true
            } else {
                return Err(self.syntax("'+' or '-'"));
            };
            let text = self.number_text()?;
            if text.starts_with(['+', '-']) {
                return Err(AsmErrorKind::BadNumber(text.to_string()));
            }
            let v = parse_int(text)?;
            let v = if neg { -v } else { v };
            Ok((base, to_i16(text, v, "a 16-bit memory offset")?))
        }

        /// `(rN + off)`.
        fn mem(&mut self) -> KResult<(u8, i16)> {
            self.expect("(")?;
            let m = self.mem_inner()?;
            self.expect(")")?;
            Ok(m)
        }

        /// `*(uN *)` or `(uN *)` type cast; returns size and signedness.
        fn cast(&mut self) -> KResult<(MemSize, bool)> {
            self.expect("(")?;
            let ty = self.peek_word();
            let (size, signed) = match ty {
                "u8" => (MemSize::B, false),
                "u16" => (MemSize::H, false),
                "u32" => (MemSize::W, false),
                "u64" => (MemSize::DW, false),
                "s8" => (MemSize::B, true),
                "s16" => (MemSize::H, true),
                "s32" => (MemSize::W, true),
                _ => return Err(self.syntax("a type (u8, u16, u32, u64, s8, s16, s32)")),
            };
            self.pos += ty.len();
            self.expect("*")?;
            self.expect(")")?;
            Ok((size, signed))
        }

        /// A relative jump offset, `+N`/`-N`, within `lo..=hi`.
        fn rel(&mut self, lo: i128, hi: i128, what: &'static str) -> KResult<i128> {
            let text = self.number_text()?;
            check_range(text, parse_int(text)?, lo, hi, what)
        }
    }

    /// Parses one instruction (one or two slots).
    pub(super) fn statement(text: &str) -> KResult<Vec<Insn>> {
        let mut c = Cursor { s: text, pos: 0 };
        let insns = if c.eat_word("exit") {
            vec![enc_exit()]
        } else if c.eat_word("gotol") {
            vec![enc_ja32(c.rel_i32()?)]
        } else if c.eat_word("goto") {
            vec![enc_ja(c.rel_i16()?)]
        } else if c.eat_word("callx") {
            vec![enc_callx(c.reg_of(true)?)]
        } else if c.eat_word("call") {
            vec![call(&mut c)?]
        } else if c.eat_word("if") {
            vec![jcond(&mut c)?]
        } else if c.eat_word("lock") {
            vec![lock_op(&mut c)?]
        } else if c.rest().trim_start().starts_with('*') {
            vec![store(&mut c)?]
        } else {
            reg_statement(&mut c)?
        };
        if c.at_end() {
            Ok(insns)
        } else {
            Err(c.syntax("end of instruction"))
        }
    }

    impl Cursor<'_> {
        fn rel_i16(&mut self) -> KResult<i16> {
            let v = self.rel(
                i128::from(i16::MIN),
                i128::from(i16::MAX),
                "a 16-bit jump offset",
            )?;
            // In range: checked by `rel`.
            Ok(v as i16)
        }

        fn rel_i32(&mut self) -> KResult<i32> {
            let v = self.rel(
                i128::from(i32::MIN),
                i128::from(i32::MAX),
                "a 32-bit jump offset",
            )?;
            // In range: checked by `rel`.
            Ok(v as i32)
        }
    }

    /// `call +N` / `call -N` (local, relative) or `call N` (helper id).
    fn call(c: &mut Cursor) -> KResult<Insn> {
        c.skip_ws();
        if c.rest().starts_with(['+', '-']) {
            Ok(enc_call(CALL_LOCAL, c.rel_i32()?))
        } else {
            let text = c.number_text()?;
            let v = check_range(
                text,
                parse_int(text)?,
                0,
                i128::from(u32::MAX),
                "a helper id",
            )?;
            // In u32 range: checked just above.
            Ok(enc_call(CALL_HELPER, v as u32 as i32))
        }
    }

    fn cond_by_symbol(c: &mut Cursor) -> KResult<Cond> {
        const CONDS: [(&str, Cond); 11] = [
            ("s>=", Cond::SGe),
            ("s<=", Cond::SLe),
            ("s>", Cond::SGt),
            ("s<", Cond::SLt),
            (">=", Cond::Ge),
            ("<=", Cond::Le),
            ("==", Cond::Eq),
            ("!=", Cond::Ne),
            (">", Cond::Gt),
            ("<", Cond::Lt),
            ("&", Cond::Set),
        ];
        for (sym, cond) in CONDS {
            if c.eat(sym) {
                return Ok(cond);
            }
        }
        Err(c.syntax("a comparison"))
    }

    /// `if dst <cond> src|imm goto +N`.
    fn jcond(c: &mut Cursor) -> KResult<Insn> {
        let dst = c.reg()?;
        let cond = cond_by_symbol(c)?;
        let src = c.reg_or_imm(dst.wide)?;
        if !c.eat_word("goto") {
            return Err(c.syntax("'goto'"));
        }
        let off = c.rel_i16()?;
        Ok(enc_jcond(dst.width(), cond, dst.n, src, off))
    }

    /// The operator of `lock *(uN *)(rB + off) op= src`.
    fn atomic_op_by_symbol(c: &mut Cursor) -> KResult<AtomicOp> {
        for (sym, op) in [
            ("+=", AtomicOp::Add),
            ("|=", AtomicOp::Or),
            ("&=", AtomicOp::And),
            ("^=", AtomicOp::Xor),
        ] {
            if c.eat(sym) {
                return Ok(op);
            }
        }
        Err(c.syntax("'+=', '|=', '&=' or '^='"))
    }

    fn atomic_size(size: MemSize, c: &Cursor) -> KResult<bool> {
        match size {
            MemSize::DW => Ok(true),
            MemSize::W => Ok(false),
            _ => Err(c.syntax("an atomic access of u32 or u64")),
        }
    }

    /// `lock *(u64 *)(rB + off) += rS` (32-bit: `*(u32 *)` and `wS`).
    fn lock_op(c: &mut Cursor) -> KResult<Insn> {
        c.expect("*")?;
        let (size, signed) = c.cast()?;
        if signed {
            return Err(c.syntax("an unsigned type"));
        }
        let wide = atomic_size(size, c)?;
        let (base, off) = c.mem()?;
        let op = atomic_op_by_symbol(c)?;
        let src = c.reg_of(wide)?;
        Ok(enc_atomic(size, op, false, base, off, src))
    }

    /// `*(uN *)(rB + off) = src|imm`.
    fn store(c: &mut Cursor) -> KResult<Insn> {
        c.expect("*")?;
        let (size, signed) = c.cast()?;
        if signed {
            return Err(c.syntax("an unsigned type"));
        }
        let (base, off) = c.mem()?;
        c.expect("=")?;
        let src = c.reg_or_imm(true)?;
        Ok(enc_store(size, base, off, src))
    }

    /// Compound ALU operators, longest first.
    const ALU_OPS: [(&str, AluOp); 13] = [
        ("s>>=", AluOp::Arsh),
        ("<<=", AluOp::Lsh),
        (">>=", AluOp::Rsh),
        ("s/=", AluOp::SDiv),
        ("s%=", AluOp::SMod),
        ("+=", AluOp::Add),
        ("-=", AluOp::Sub),
        ("*=", AluOp::Mul),
        ("/=", AluOp::Div),
        ("|=", AluOp::Or),
        ("&=", AluOp::And),
        ("%=", AluOp::Mod),
        ("^=", AluOp::Xor),
    ];

    /// Statements that start with a register: `dst op= src` or `dst = ...`.
    fn reg_statement(c: &mut Cursor) -> KResult<Vec<Insn>> {
        let dst = c.reg()?;
        for (sym, op) in ALU_OPS {
            if c.eat(sym) {
                let src = c.reg_or_imm(dst.wide)?;
                return Ok(vec![enc_alu(dst.width(), op, dst.n, src)]);
            }
        }
        c.expect("=")?;
        assignment(c, dst)
    }

    fn require_wide(dst: Reg, what: &str) -> KResult<()> {
        if dst.wide {
            Ok(())
        } else {
            Err(AsmErrorKind::Syntax(format!(
                "the destination of {what} must be written r{}",
                dst.n
            )))
        }
    }

    fn same_reg(dst: Reg, other: u8, what: &str) -> KResult<()> {
        if dst.n == other {
            Ok(())
        } else {
            Err(AsmErrorKind::Syntax(format!(
                "{what} must name the same register on both sides"
            )))
        }
    }

    /// The right-hand side of `dst = ...`.
    fn assignment(c: &mut Cursor, dst: Reg) -> KResult<Vec<Insn>> {
        c.skip_ws();
        let rest = c.rest();
        if rest.starts_with("-r") || rest.starts_with("-w") {
            c.pos += 1;
            let src = c.reg_of(dst.wide)?;
            same_reg(dst, src, "neg")?;
            return Ok(vec![enc_neg(dst.width(), dst.n)]);
        }
        if rest.starts_with("(s") {
            return movsx(c, dst).map(|i| vec![i]);
        }
        if rest.starts_with('*') {
            require_wide(dst, "a load")?;
            c.expect("*")?;
            let (size, signed) = c.cast()?;
            let (base, off) = c.mem()?;
            return Ok(vec![enc_load(size, signed, dst.n, base, off)]);
        }
        let word = c.peek_word();
        if let Some(x) = endian_word(word) {
            c.pos += word.len();
            return endian(c, dst, x).map(|i| vec![i]);
        }
        if let Some(op) = word.strip_prefix("atomic_fetch_") {
            c.pos += word.len();
            return fetch_op(c, dst, op).map(|i| vec![i]);
        }
        if let Some(x) = xchg_word(word) {
            c.pos += word.len();
            return xchg(c, dst, x).map(|i| vec![i]);
        }
        if let Some(kind) = pseudo_keyword(word) {
            c.pos += word.len();
            return pseudo_lddw(c, dst, kind).map(Vec::from);
        }
        if c.peek_is_reg() {
            let src = c.reg_of(dst.wide)?;
            return Ok(vec![enc_alu(
                dst.width(),
                AluOp::Mov,
                dst.n,
                Operand::Reg(src),
            )]);
        }
        let text = c.number_text()?;
        if c.eat_word("ll") {
            require_wide(dst, "lddw")?;
            return Ok(Vec::from(enc_lddw_imm64(dst.n, parse_u64_wrapping(text)?)));
        }
        let imm = parse_imm32_strict(text)?;
        Ok(vec![enc_alu(
            dst.width(),
            AluOp::Mov,
            dst.n,
            Operand::Imm(imm),
        )])
    }

    /// `(s8)src`, `(s16)src`, `(s32)src`.
    fn movsx(c: &mut Cursor, dst: Reg) -> KResult<Insn> {
        c.expect("(")?;
        let word = c.peek_word();
        let bits = match word {
            "s8" => 8,
            "s16" => 16,
            "s32" => 32,
            _ => return Err(c.syntax("s8, s16 or s32")),
        };
        c.pos += word.len();
        c.expect(")")?;
        let src = c.reg_of(dst.wide)?;
        Ok(enc_movsx(dst.width(), bits, dst.n, src))
    }

    fn endian_word(word: &str) -> Option<(Endian, u8)> {
        let (kind, bits) = if let Some(b) = word.strip_prefix("bswap") {
            (Endian::Swap, b)
        } else if let Some(b) = word.strip_prefix("be") {
            (Endian::ToBe, b)
        } else if let Some(b) = word.strip_prefix("le") {
            (Endian::ToLe, b)
        } else {
            return None;
        };
        match bits {
            "16" => Some((kind, 16)),
            "32" => Some((kind, 32)),
            "64" => Some((kind, 64)),
            _ => None,
        }
    }

    /// `dst = be16 dst` and friends.
    fn endian(c: &mut Cursor, dst: Reg, (kind, bits): (Endian, u8)) -> KResult<Insn> {
        require_wide(dst, "a byte swap")?;
        let src = c.reg_of(true)?;
        same_reg(dst, src, "a byte swap")?;
        Ok(enc_endian(kind, bits, dst.n))
    }

    /// `dst = atomic_fetch_<op>((uN *)(rB + off), dst)`.
    fn fetch_op(c: &mut Cursor, dst: Reg, op: &str) -> KResult<Insn> {
        let op = match op {
            "add" => AtomicOp::Add,
            "or" => AtomicOp::Or,
            "and" => AtomicOp::And,
            "xor" => AtomicOp::Xor,
            _ => {
                return Err(AsmErrorKind::Syntax(format!(
                    "unknown atomic operation 'atomic_fetch_{op}'"
                )))
            }
        };
        c.expect("(")?;
        let (size, signed) = c.cast()?;
        let wide = atomic_size(size, c)?;
        if signed || wide != dst.wide {
            return Err(c.syntax("(u64 *) with r registers or (u32 *) with w registers"));
        }
        let (base, off) = c.mem()?;
        c.expect(",")?;
        let src = c.reg_of(wide)?;
        same_reg(dst, src, "atomic_fetch")?;
        c.expect(")")?;
        Ok(enc_atomic(size, op, true, base, off, src))
    }

    fn xchg_word(word: &str) -> Option<(AtomicOp, MemSize)> {
        match word {
            "xchg_64" => Some((AtomicOp::Xchg, MemSize::DW)),
            "xchg32_32" => Some((AtomicOp::Xchg, MemSize::W)),
            "cmpxchg_64" => Some((AtomicOp::CmpXchg, MemSize::DW)),
            "cmpxchg32_32" => Some((AtomicOp::CmpXchg, MemSize::W)),
            _ => None,
        }
    }

    /// `r2 = xchg_64(r1 + 0, r2)`, `r0 = cmpxchg_64(r1 + 0, r0, r2)`, and
    /// their 32-bit forms with `w` registers.
    fn xchg(c: &mut Cursor, dst: Reg, (op, size): (AtomicOp, MemSize)) -> KResult<Insn> {
        let wide = size == MemSize::DW;
        if dst.wide != wide {
            return Err(c.syntax("r registers with _64 forms, w registers with 32_32 forms"));
        }
        c.expect("(")?;
        let (base, off) = c.mem_inner()?;
        c.expect(",")?;
        if op == AtomicOp::CmpXchg {
            same_reg(dst, 0, "cmpxchg (r0)")?;
            let r0 = c.reg_of(wide)?;
            same_reg(dst, r0, "cmpxchg (r0)")?;
            c.expect(",")?;
        }
        let src = c.reg_of(wide)?;
        if op == AtomicOp::Xchg {
            same_reg(dst, src, "xchg")?;
        }
        c.expect(")")?;
        Ok(enc_atomic(size, op, true, base, off, src))
    }

    /// `dst = map_fd(N) ll`, `dst = map_value(N, OFF) ll`, `dst = func(+N) ll`, ...
    fn pseudo_lddw(c: &mut Cursor, dst: Reg, kind: u8) -> KResult<[Insn; 2]> {
        require_wide(dst, "lddw")?;
        c.expect("(")?;
        let imm = if kind == PSEUDO_FUNC {
            c.rel_i32()?
        } else {
            parse_imm32_strict(c.number_text()?)?
        };
        let next = if matches!(kind, PSEUDO_MAP_VALUE | PSEUDO_MAP_IDX_VALUE) {
            c.expect(",")?;
            parse_imm32_strict(c.number_text()?)?
        } else {
            0
        };
        c.expect(")")?;
        if !c.eat_word("ll") {
            return Err(c.syntax("'ll'"));
        }
        Ok(enc_lddw(dst.n, kind, imm, next))
    }
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

/// Reading the bpf_conformance test vectors, for this module's and the
/// disassembler's tests.
#[cfg(test)]
pub(crate) mod conformance {
    use std::path::PathBuf;

    /// One `.data` file: its name, its `-- asm` text and its `-- raw` slots.
    pub(crate) struct Vector {
        pub name: String,
        pub asm: String,
        pub raw: Option<Vec<u64>>,
    }

    /// The test-vector directory: `$BPF_CONFORMANCE_TESTS`, else
    /// `<manifest>/../../shared/bpf_conformance/tests`.
    pub(crate) fn tests_dir() -> PathBuf {
        match std::env::var_os("BPF_CONFORMANCE_TESTS") {
            Some(p) => PathBuf::from(p),
            None => {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bpf_conformance/tests")
            }
        }
    }

    #[derive(PartialEq)]
    enum Section {
        None,
        Asm,
        Raw,
        Other,
    }

    fn section_of(line: &str) -> Section {
        // Keyword by substring, in the official runner's order.
        if line.contains("asm") {
            Section::Asm
        } else if line.contains("result") || line.contains("mem") {
            Section::Other
        } else if line.contains("raw") {
            Section::Raw
        } else {
            Section::Other
        }
    }

    fn parse_raw_token(tok: &str) -> u64 {
        match tok.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => tok.parse(),
        }
        .unwrap_or_else(|e| panic!("bad raw token {tok}: {e}"))
    }

    fn parse_file(name: String, text: &str) -> Vector {
        let mut section = Section::None;
        let mut asm = String::new();
        let mut raw: Option<Vec<u64>> = None;
        for line in text.lines() {
            if line.contains("--") {
                section = section_of(line);
                if section == Section::Raw {
                    raw.get_or_insert_with(Vec::new);
                }
                continue;
            }
            match section {
                Section::Asm => {
                    asm.push_str(line);
                    asm.push('\n');
                }
                Section::Raw => {
                    let code = line.split('#').next().unwrap_or("");
                    let slots = raw.get_or_insert_with(Vec::new);
                    slots.extend(code.split_whitespace().map(parse_raw_token));
                }
                _ => {}
            }
        }
        Vector { name, asm, raw }
    }

    /// Every `.data` file of the suite, sorted by name. Panics (failing the
    /// test) when the directory is missing or empty.
    pub(crate) fn vectors() -> Vec<Vector> {
        let dir = tests_dir();
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "bpf_conformance tests not found at {} ({e}); set BPF_CONFORMANCE_TESTS",
                dir.display()
            )
        });
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "data"))
            .collect();
        paths.sort();
        assert!(!paths.is_empty(), "no .data files in {}", dir.display());
        paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                parse_file(name, &text)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instr::decode;
    use proptest::prelude::*;

    fn asm1(src: &str) -> u64 {
        let p = assemble(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(p.len(), 1, "{src}");
        p[0].to_u64()
    }

    fn asm_u64(src: &str) -> Vec<u64> {
        assemble(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .into_iter()
            .map(Insn::to_u64)
            .collect()
    }

    fn err(src: &str) -> AsmError {
        match assemble(src) {
            Ok(p) => panic!("{src:?} assembled to {p:?}, expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn conformance_suite_assembles() {
        let vectors = conformance::vectors();
        assert_eq!(
            vectors.len(),
            313,
            "expected the 313 files of the pinned suite"
        );
        let mut with_raw = 0;
        for v in &vectors {
            let prog = assemble(&v.asm).unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert!(!prog.is_empty(), "{}: empty program", v.name);
            // Every program of the suite is made of valid instructions.
            let mut pc = 0;
            while pc < prog.len() {
                let i = decode(&prog, pc).unwrap_or_else(|e| panic!("{} pc {pc}: {e}", v.name));
                pc += i.slots();
            }
            if let Some(raw) = &v.raw {
                with_raw += 1;
                let got: Vec<u64> = prog.iter().map(|i| i.to_u64()).collect();
                assert_eq!(&got, raw, "{}: asm differs from raw", v.name);
            }
        }
        assert!(with_raw >= 1, "lddw.data's raw section was not found");
    }

    #[test]
    fn alu_encodings() {
        assert_eq!(asm1("mov %r0, 1"), 0x0000_0001_0000_00b7);
        assert_eq!(asm1("mov32 %r0, 1"), 0x0000_0001_0000_00b4);
        assert_eq!(asm1("mov %r0, -1"), 0xffff_ffff_0000_00b7);
        assert_eq!(asm1("mov %r0, 0xffffffff"), 0xffff_ffff_0000_00b7);
        assert_eq!(asm1("add %r1, %r2"), 0x0000_0000_0000_210f);
        assert_eq!(asm1("add32 %r1, 0x10"), 0x0000_0010_0000_0104);
        assert_eq!(asm1("sub %r9, %r10"), 0x0000_0000_0000_a91f);
        assert_eq!(asm1("mul32 %r3, 7"), 0x0000_0007_0000_0324);
        assert_eq!(asm1("div %r1, %r2"), 0x0000_0000_0000_213f);
        assert_eq!(asm1("sdiv32 %r1, %r2"), 0x0000_0000_0001_213c);
        assert_eq!(asm1("sdiv %r1, -3"), 0xffff_fffd_0001_0137);
        assert_eq!(asm1("or %r1, 0x40"), 0x0000_0040_0000_0147);
        assert_eq!(asm1("and32 %r1, %r2"), 0x0000_0000_0000_215c);
        assert_eq!(asm1("lsh %r1, 63"), 0x0000_003f_0000_0167);
        assert_eq!(asm1("rsh32 %r1, %r2"), 0x0000_0000_0000_217c);
        assert_eq!(asm1("mod %r1, %r2"), 0x0000_0000_0000_219f);
        assert_eq!(asm1("smod %r1, 3"), 0x0000_0003_0001_0197);
        assert_eq!(asm1("smod32 %r1, %r2"), 0x0000_0000_0001_219c);
        assert_eq!(asm1("xor %r1, %r2"), 0x0000_0000_0000_21af);
        assert_eq!(asm1("arsh32 %r1, 4"), 0x0000_0004_0000_01c4);
        assert_eq!(asm1("arsh %r1, %r2"), 0x0000_0000_0000_21cf);
        assert_eq!(asm1("neg %r0"), 0x0000_0000_0000_0087);
        assert_eq!(asm1("neg32 %r3"), 0x0000_0000_0000_0384);
        assert_eq!(asm1("movsx864 %r1, %r2"), 0x0000_0000_0008_21bf);
        assert_eq!(asm1("movsx1664 %r1, %r2"), 0x0000_0000_0010_21bf);
        assert_eq!(asm1("movsx3264 %r1, %r2"), 0x0000_0000_0020_21bf);
        assert_eq!(asm1("movsx832 %r1, %r2"), 0x0000_0000_0008_21bc);
        assert_eq!(asm1("movsx1632 %r1, %r2"), 0x0000_0000_0010_21bc);
    }

    #[test]
    fn byte_order_encodings() {
        assert_eq!(asm1("be16 %r0"), 0x0000_0010_0000_00dc);
        assert_eq!(asm1("be32 %r1"), 0x0000_0020_0000_01dc);
        assert_eq!(asm1("be64 %r2"), 0x0000_0040_0000_02dc);
        assert_eq!(asm1("le16 %r3"), 0x0000_0010_0000_03d4);
        assert_eq!(asm1("le64 %r3"), 0x0000_0040_0000_03d4);
        assert_eq!(asm1("swap32 %r3"), 0x0000_0020_0000_03d7);
        assert_eq!(asm1("bswap32 %r3"), 0x0000_0020_0000_03d7);
        assert_eq!(asm1("bswap64 %r4"), 0x0000_0040_0000_04d7);
        assert_eq!(asm1("swap16 %r4"), 0x0000_0010_0000_04d7);
    }

    #[test]
    fn memory_encodings() {
        assert_eq!(asm1("ldxw %r0, [%r1+2]"), 0x0000_0000_0002_1061);
        assert_eq!(asm1("ldxb %r0, [%r1]"), 0x0000_0000_0000_1071);
        assert_eq!(asm1("ldxh %r0, [%r1+0x10]"), 0x0000_0000_0010_1069);
        assert_eq!(asm1("ldxdw %r9, [%r10-8]"), 0x0000_0000_fff8_a979);
        assert_eq!(asm1("ldxsb %r1, [%r2-4]"), 0x0000_0000_fffc_2191);
        assert_eq!(asm1("ldxsh %r1, [%r2+4]"), 0x0000_0000_0004_2189);
        assert_eq!(asm1("ldxsw %r1, [%r2]"), 0x0000_0000_0000_2181);
        assert_eq!(asm1("stb [%r1+2], 0x12"), 0x0000_0012_0002_0172);
        assert_eq!(asm1("sth [%r1+2], -1"), 0xffff_ffff_0002_016a);
        assert_eq!(asm1("stw [%r1+2], 0x12345678"), 0x1234_5678_0002_0162);
        assert_eq!(asm1("stdw [%r10-8], 42"), 0x0000_002a_fff8_0a7a);
        assert_eq!(asm1("stxb [%r1+1], %r2"), 0x0000_0000_0001_2173);
        assert_eq!(asm1("stxh [%r1], %r2"), 0x0000_0000_0000_216b);
        assert_eq!(asm1("stxw [%r1-0x2], %r2"), 0x0000_0000_fffe_2163);
        assert_eq!(asm1("stxdw [%r10-8], %r3"), 0x0000_0000_fff8_3a7b);
        // Offsets at the edges of i16, spaces inside the brackets.
        assert_eq!(asm1("ldxb %r0, [%r1 + 32767]"), 0x0000_0000_7fff_1071);
        assert_eq!(asm1("ldxb %r0, [ %r1 - 32768 ]"), 0x0000_0000_8000_1071);
    }

    #[test]
    fn atomic_encodings() {
        assert_eq!(asm1("lock add [%r1+0], %r2"), 0x0000_0000_0000_21db);
        assert_eq!(asm1("lock add32 [%r1], %r2"), 0x0000_0000_0000_21c3);
        assert_eq!(
            asm1("lock fetch add32 [%r10-8], %r1"),
            0x0000_0001_fff8_1ac3
        );
        assert_eq!(asm1("lock or [%r10-8], %r1"), 0x0000_0040_fff8_1adb);
        assert_eq!(asm1("lock fetch or32 [%r10-4], %r3"), 0x0000_0041_fffc_3ac3);
        assert_eq!(asm1("lock and [%r10-8], %r1"), 0x0000_0050_fff8_1adb);
        assert_eq!(asm1("lock fetch and [%r10-8], %r1"), 0x0000_0051_fff8_1adb);
        assert_eq!(asm1("lock xor32 [%r10-8], %r1"), 0x0000_00a0_fff8_1ac3);
        assert_eq!(asm1("lock fetch xor [%r10-8], %r3"), 0x0000_00a1_fff8_3adb);
        assert_eq!(asm1("lock xchg [%r10-8], %r1"), 0x0000_00e1_fff8_1adb);
        assert_eq!(asm1("lock xchg32 [%r10-8], %r1"), 0x0000_00e1_fff8_1ac3);
        assert_eq!(asm1("lock cmpxchg [%r10-8], %r1"), 0x0000_00f1_fff8_1adb);
        assert_eq!(asm1("lock cmpxchg32 [%r1+4], %r2"), 0x0000_00f1_0004_21c3);
    }

    #[test]
    fn lddw_encodings() {
        assert_eq!(
            asm_u64("lddw %r0, 0x1122334455667788"),
            vec![0x5566_7788_0000_0018, 0x1122_3344_0000_0000]
        );
        assert_eq!(
            asm_u64("lddw %r1, -1"),
            vec![0xffff_ffff_0000_0118, 0xffff_ffff_0000_0000]
        );
        assert_eq!(
            asm_u64("lddw %r1, 0xffffffffffffffff"),
            vec![0xffff_ffff_0000_0118, 0xffff_ffff_0000_0000]
        );
        assert_eq!(
            asm_u64("lddw %r1, -9223372036854775808"),
            vec![0x0000_0000_0000_0118, 0x8000_0000_0000_0000]
        );
        assert_eq!(
            asm_u64("lddw %r1, map_fd 3"),
            vec![0x0000_0003_0000_1118, 0]
        );
        assert_eq!(
            asm_u64("lddw %r1, map_value 3 16"),
            vec![0x0000_0003_0000_2118, 0x0000_0010_0000_0000]
        );
        assert_eq!(
            asm_u64("lddw %r1, btf_id 7"),
            vec![0x0000_0007_0000_3118, 0]
        );
        assert_eq!(
            asm_u64("lddw %r1, map_idx 2"),
            vec![0x0000_0002_0000_5118, 0]
        );
        assert_eq!(
            asm_u64("lddw %r1, map_idx_value 2, 8"),
            vec![0x0000_0002_0000_6118, 0x0000_0008_0000_0000]
        );
        assert_eq!(asm_u64("lddw %r1, func -3"), vec![0xffff_fffd_0000_4118, 0]);
        // func with a label: imm = label_pc - pc - 1, lddw counting two slots.
        let p = assemble("lddw %r1, func f\nexit\nf:\nexit").unwrap();
        assert_eq!(p[0], Insn::new(OP_LDDW, 1, PSEUDO_FUNC, 0, 2));
        let p = assemble("f:\nmov %r0, 0\nexit\nlddw %r2, func f").unwrap();
        assert_eq!(p[2], Insn::new(OP_LDDW, 2, PSEUDO_FUNC, 0, -3));
    }

    #[test]
    fn jump_and_call_encodings() {
        assert_eq!(asm1("ja +3"), 0x0000_0000_0003_0005);
        assert_eq!(asm1("ja -1"), 0x0000_0000_ffff_0005);
        assert_eq!(asm1("ja 2"), 0x0000_0000_0002_0005);
        assert_eq!(asm1("ja32 +70000"), 0x0001_1170_0000_0006);
        assert_eq!(asm1("jeq %r1, %r2, +1"), 0x0000_0000_0001_211d);
        assert_eq!(asm1("jeq %r1, 5, +1"), 0x0000_0005_0001_0115);
        assert_eq!(asm1("jgt %r1, %r2, +0"), 0x0000_0000_0000_212d);
        assert_eq!(asm1("jge %r1, 1, +0"), 0x0000_0001_0000_0135);
        assert_eq!(asm1("jset %r1, %r2, +0"), 0x0000_0000_0000_214d);
        assert_eq!(asm1("jne %r1, 0, +0"), 0x0000_0000_0000_0155);
        assert_eq!(asm1("jsgt32 %r1, -1, -2"), 0xffff_ffff_fffe_0166);
        assert_eq!(asm1("jsge32 %r1, %r2, +0"), 0x0000_0000_0000_217e);
        assert_eq!(asm1("jlt %r1, %r2, +0"), 0x0000_0000_0000_21ad);
        assert_eq!(asm1("jle32 %r1, 1, +0"), 0x0000_0001_0000_01b6);
        assert_eq!(asm1("jslt %r1, %r2, +0"), 0x0000_0000_0000_21cd);
        assert_eq!(asm1("jsle %r1, 1, +0"), 0x0000_0001_0000_01d5);
        assert_eq!(asm1("jne32 %r2, 0xffffff80, +0"), 0xffff_ff80_0000_0256);
        assert_eq!(asm1("call 5"), 0x0000_0005_0000_0085);
        assert_eq!(asm1("call helper 5"), 0x0000_0005_0000_0085);
        assert_eq!(asm1("call local +2"), 0x0000_0002_0000_1085);
        assert_eq!(asm1("call local -1"), 0xffff_ffff_0000_1085);
        assert_eq!(asm1("call runtime 9"), 0x0000_0009_0000_2085);
        assert_eq!(asm1("call %r2"), 0x0000_0000_0000_028d);
        assert_eq!(asm1("callx r3"), 0x0000_0000_0000_038d);
        assert_eq!(asm1("exit"), 0x0000_0000_0000_0095);
    }

    #[test]
    fn labels_resolve_relative_to_next_slot() {
        let src = "
            start:
                mov %r0, 0          # pc 0
                jeq %r0, 0, end     # pc 1 -> 5: off 3
                lddw %r1, 1         # pc 2, 3
                ja start            # pc 4 -> 0: off -5
            end:
                call local start    # pc 5 -> 0: imm -6
                ja32 end            # pc 6 -> 5: imm -2
                exit
        ";
        let p = assemble(src).unwrap();
        assert_eq!(p.len(), 8);
        assert_eq!(p[1].off, 3);
        assert_eq!(p[4].off, -5);
        assert_eq!(p[5].imm, -6);
        assert_eq!((p[6].off, p[6].imm), (0, -2));
    }

    #[test]
    fn label_and_instruction_on_one_line_and_trailing_label() {
        let p = assemble("a: b: ja c\nc:").unwrap();
        assert_eq!(p, vec![enc_ja(0)]);
        let p = assemble("ja a\na: exit").unwrap();
        assert_eq!(p[0].off, 0);
    }

    #[test]
    fn implicit_exit_label_is_the_first_exit() {
        let p = assemble("jne %r0, %r1, exit\nmov %r0, 1\nexit\nexit").unwrap();
        assert_eq!(p[0].off, 1);
        // An explicit `exit:` wins over the implicit one.
        let p = assemble("ja exit\nexit\nmov %r0, 1\nexit:\nexit").unwrap();
        assert_eq!(p[0].off, 2);
        let e = err("ja exit\nmov %r0, 1");
        assert_eq!(e.kind, AsmErrorKind::UndefinedLabel("exit".into()));
    }

    #[test]
    fn comments_whitespace_and_commas() {
        let a = asm_u64("  add %r1,%r2 # trailing\n\n# whole line\n\t\tadd\t%r1 , %r2,");
        assert_eq!(a, vec![0x210f, 0x210f]);
        assert_eq!(assemble("#only a comment\n\n   \n").unwrap(), vec![]);
        assert_eq!(assemble("").unwrap(), vec![]);
    }

    #[test]
    fn registers() {
        assert_eq!(asm1("mov r1, r2"), asm1("mov %r1, %r2"));
        assert_eq!(asm1("mov %r15, %r11"), 0x0000_0000_0000_bfbf);
        for bad in ["%r16", "%r", "%x1", "%r01", "%R1", "%r-1", "r1x"] {
            let e = err(&format!("mov {bad}, 1"));
            assert_eq!(e.kind, AsmErrorKind::BadRegister(bad.into()), "{bad}");
        }
        let e = err("add %r1, %r99");
        assert_eq!(e.kind, AsmErrorKind::BadRegister("%r99".into()));
    }

    #[test]
    fn immediates() {
        assert_eq!(asm1("mov %r0, 0x80000000"), 0x8000_0000_0000_00b7);
        assert_eq!(asm1("mov %r0, -0x1"), 0xffff_ffff_0000_00b7);
        assert_eq!(asm1("mov %r0, +7"), 0x0000_0007_0000_00b7);
        // Truncated to 32 bits like the reference assembler.
        assert_eq!(asm1("mov %r0, 0x100000001"), 0x0000_0001_0000_00b7);
        assert_eq!(asm1("mov %r0, 18446744073709551615"), 0xffff_ffff_0000_00b7);
        let e = err("mov %r0, 18446744073709551616");
        assert!(matches!(e.kind, AsmErrorKind::OutOfRange { .. }), "{e}");
        let e = err("mov %r0, -9223372036854775809");
        assert!(matches!(e.kind, AsmErrorKind::OutOfRange { .. }), "{e}");
        let e = err("mov %r0, 0x1234567890abcdef1234567890abcdef12");
        assert!(matches!(e.kind, AsmErrorKind::OutOfRange { .. }), "{e}");
        for bad in ["1x", "0x", "-", "--1", "0xg", "1.5", "1e3"] {
            let e = err(&format!("mov %r0, {bad}"));
            assert_eq!(e.kind, AsmErrorKind::BadNumber(bad.into()), "{bad}");
        }
    }

    #[test]
    fn error_messages_name_the_line() {
        let e = err("mov %r0, 0\n\nfoo %r1\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.to_string(), "line 3: unknown mnemonic 'foo'");
        let e = err("exit\nexit %r0");
        assert_eq!(e.to_string(), "line 2: 'exit' takes 0 operand(s), found 1");
        let e = err("mov %r0");
        assert_eq!(e.to_string(), "line 1: 'mov' takes 2 operand(s), found 1");
        let e = err("neg %r0, 1");
        assert!(matches!(
            e.kind,
            AsmErrorKind::OperandCount { found: 2, .. }
        ));
        let e = err("jeq %r0, 1");
        assert!(matches!(
            e.kind,
            AsmErrorKind::OperandCount { found: 2, .. }
        ));
        let e = err("ja nowhere\nexit");
        assert_eq!(e.to_string(), "line 1: undefined label 'nowhere'");
        let e = err("a:\nexit\n\na:\nexit");
        assert_eq!(e.line, 4);
        assert_eq!(
            e.kind,
            AsmErrorKind::DuplicateLabel {
                name: "a".into(),
                first_line: 1
            }
        );
        let e = err("1abc:");
        assert_eq!(e.kind, AsmErrorKind::BadLabel("1abc".into()));
        let e = err("ja bad-label");
        assert_eq!(e.kind, AsmErrorKind::BadLabel("bad-label".into()));
    }

    #[test]
    fn unknown_mnemonics() {
        for m in [
            "foo",
            "movsx",
            "movsx16",
            "movsx6464",
            "le8",
            "be",
            "swap",
            "ldxsdw",
            "stxx",
            "neg64",
            "add64",
            "jeq64",
            "ja64",
            "exit32",
            "ld",
            "ADD",
        ] {
            let e = err(&format!("{m} %r0, 1"));
            assert_eq!(e.kind, AsmErrorKind::UnknownMnemonic(m.into()), "{m}");
        }
        let e = err("lock nand [%r1], %r2");
        assert_eq!(e.kind, AsmErrorKind::UnknownMnemonic("lock nand".into()));
        let e = err("lock");
        assert!(matches!(e.kind, AsmErrorKind::OperandCount { .. }));
        let e = err("lock fetch");
        assert!(matches!(e.kind, AsmErrorKind::OperandCount { .. }));
        let e = err("lock add [%r1]");
        assert!(matches!(e.kind, AsmErrorKind::OperandCount { .. }));
    }

    #[test]
    fn offset_errors() {
        let e = err("ldxb %r0, [%r1+32768]");
        assert!(matches!(e.kind, AsmErrorKind::OutOfRange { .. }), "{e}");
        let e = err("ldxb %r0, [%r1-32769]");
        assert!(matches!(e.kind, AsmErrorKind::OutOfRange { .. }), "{e}");
        for bad in [
            "[%r1+]", "[%r1", "%r1", "[]", "[%r1+-2]", "[%r1*2]", "[%r1+2",
        ] {
            let e = err(&format!("ldxb %r0, {bad}"));
            assert!(
                matches!(
                    e.kind,
                    AsmErrorKind::BadMemOperand(_)
                        | AsmErrorKind::BadNumber(_)
                        | AsmErrorKind::BadRegister(_)
                ),
                "{bad}: {e}"
            );
        }
        let e = err("ja +32768");
        assert_eq!(
            e.kind,
            AsmErrorKind::JumpOutOfRange {
                offset: 32768,
                bits: 16
            }
        );
        let e = err("ja32 +2147483648");
        assert_eq!(
            e.kind,
            AsmErrorKind::JumpOutOfRange {
                offset: 2147483648,
                bits: 32
            }
        );
        assert_eq!(asm1("ja -32768"), 0x0000_0000_8000_0005);
        // A label too far away for a 16-bit offset, but fine for ja32.
        let mut src = String::from("ja far\n");
        src.push_str(&"mov %r0, 0\n".repeat(40_000));
        src.push_str("far: exit\n");
        let e = err(&src);
        assert_eq!(e.line, 1);
        assert_eq!(
            e.kind,
            AsmErrorKind::JumpOutOfRange {
                offset: 40_000,
                bits: 16
            }
        );
        let p = assemble(&src.replacen("ja far", "ja32 far", 1)).unwrap();
        assert_eq!(p[0].imm, 40_000);
    }

    #[test]
    fn call_and_lddw_errors() {
        assert!(matches!(
            err("call").kind,
            AsmErrorKind::OperandCount { .. }
        ));
        assert!(matches!(
            err("call a b c").kind,
            AsmErrorKind::OperandCount { .. }
        ));
        assert!(matches!(err("call far 1").kind, AsmErrorKind::Syntax(_)));
        assert!(matches!(
            err("call local nowhere").kind,
            AsmErrorKind::UndefinedLabel(_)
        ));
        assert!(matches!(
            err("call %r16").kind,
            AsmErrorKind::BadRegister(_)
        ));
        assert!(matches!(
            err("lddw").kind,
            AsmErrorKind::OperandCount { .. }
        ));
        assert!(matches!(
            err("lddw %r0").kind,
            AsmErrorKind::OperandCount { .. }
        ));
        assert!(matches!(
            err("lddw %r0, 1, 2").kind,
            AsmErrorKind::OperandCount { .. }
        ));
        assert!(matches!(
            err("lddw %r0, map_fd").kind,
            AsmErrorKind::Syntax(_)
        ));
        assert!(matches!(
            err("lddw %r0, map_value 1").kind,
            AsmErrorKind::Syntax(_)
        ));
        assert!(matches!(
            err("lddw %r0, func").kind,
            AsmErrorKind::Syntax(_)
        ));
        assert!(matches!(
            err("lddw %r0, func x").kind,
            AsmErrorKind::UndefinedLabel(_)
        ));
        assert!(matches!(
            err("lddw %r0, zzz").kind,
            AsmErrorKind::BadNumber(_)
        ));
        assert!(matches!(
            err("movsx864 %r0, 1").kind,
            AsmErrorKind::BadRegister(_)
        ));
    }

    #[test]
    fn assemble_bytes_is_little_endian_slots() {
        let b = assemble_bytes("mov %r0, 1\nexit").unwrap();
        assert_eq!(
            b,
            vec![0xb7, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn objdump_parser_basics() {
        let p = parse_objdump_syntax("r0 = 1\nw1 s/= w2\nexit").unwrap();
        assert_eq!(
            p,
            vec![
                enc_alu(Width::W64, AluOp::Mov, 0, Operand::Imm(1)),
                enc_alu(Width::W32, AluOp::SDiv, 1, Operand::Reg(2)),
                enc_exit(),
            ]
        );
        // Listing columns are stripped; the lddw tail line is skipped.
        let listing = "       0:\t18 01 00 00 88 77 66 55\tr1 = 0x1122334455667788 ll\n       1:\t00 00 00 00 44 33 22 11\n       2:\t95 00 00 00 00 00 00 00\texit\n";
        let p = parse_objdump_syntax(listing).unwrap();
        assert_eq!(
            p.iter().map(|i| i.to_u64()).collect::<Vec<_>>(),
            vec![0x5566_7788_0000_0118, 0x1122_3344_0000_0000, 0x95]
        );
    }

    #[test]
    fn objdump_parser_errors() {
        for (src, line) in [
            ("r0 = 1\nr0 === 1", 2),
            ("r0 += w1", 1),
            ("w0 = *(u32 *)(r1 + 0)", 1),
            ("r0 = -r1", 1),
            ("r0 = 1 garbage", 1),
            ("if r1 > r2 goto", 1),
            ("if r1 > w2 goto +1", 1),
            ("goto +32768", 1),
            ("call 4294967296", 1),
            ("r0 = 4294967296", 1),
            ("r0 = *(u32 *)(r1 + 32768)", 1),
            ("r0 = *(u32 *)(r1 + -1)", 1),
            ("r2 = xchg_64(r1 + 0, r3)", 1),
            ("r1 = cmpxchg_64(r1 + 0, r1, r2)", 1),
            ("w2 = atomic_fetch_add((u64 *)(r1 + 0), w2)", 1),
            ("lock *(u16 *)(r1 + 0) += r2", 1),
            ("r1 = map_fd(1)", 1),
            ("       3:\t95 00 00 00 00 00 00 00", 1),
            ("<invalid: unknown opcode 0x42>", 1),
            ("r0 = be16 r1", 1),
            ("w0 = le16 w0", 1),
        ] {
            let e = parse_objdump_syntax(src).err();
            assert_eq!(e.map(|e| e.line), Some(line), "{src:?}");
        }
    }

    fn arb_token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("mov".to_string()),
            Just("lddw".to_string()),
            Just("lock".to_string()),
            Just("fetch".to_string()),
            Just("call".to_string()),
            Just("local".to_string()),
            Just("ja32".to_string()),
            Just("jeq32".to_string()),
            Just("exit".to_string()),
            Just("func".to_string()),
            Just("map_value".to_string()),
            Just("stxdw".to_string()),
            Just("movsx864".to_string()),
            Just("%r1".to_string()),
            Just("r10".to_string()),
            Just("exit:".to_string()),
            Just("l:".to_string()),
            Just("l".to_string()),
            Just(",".to_string()),
            Just("#".to_string()),
            Just("\n".to_string()),
            "[\\[\\]%r0-9+x-]{1,8}",
            any::<i64>().prop_map(|v| v.to_string()),
            any::<u64>().prop_map(|v| format!("0x{v:x}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn assemble_never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
            let _ = assemble(&s);
            let _ = parse_objdump_syntax(&s);
        }

        #[test]
        fn assemble_never_panics_on_token_soup(toks in prop::collection::vec(arb_token(), 0..24)) {
            let s = toks.join(" ");
            let _ = assemble(&s);
            let _ = parse_objdump_syntax(&s);
        }

        #[test]
        fn objdump_parser_never_panics_on_near_miss_text(
            s in "[rw0-9 =+*()<>&|^%/s,ul-]{0,40}"
        ) {
            let _ = parse_objdump_syntax(&s);
        }

        #[test]
        fn mov_imm_round_trips_any_i32(v in any::<i32>()) {
            let p = assemble(&format!("mov32 %r3, {v}")).unwrap();
            prop_assert_eq!(p[0].imm, v);
            let p = assemble(&format!("mov32 %r3, 0x{:x}", v as u32)).unwrap();
            prop_assert_eq!(p[0].imm, v);
        }

        #[test]
        fn lddw_round_trips_any_u64(v in any::<u64>()) {
            let p = assemble(&format!("lddw %r3, 0x{v:x}")).unwrap();
            let Ok(crate::instr::Instr::Lddw { value, .. }) = decode(&p, 0) else {
                panic!("lddw did not decode");
            };
            prop_assert_eq!(value, v);
        }
    }
}
