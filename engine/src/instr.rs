//! The decoded form of an instruction: what every executor matches on.
//!
//! [`decode`] turns one raw slot (two for `lddw`) into an [`Instr`], checking
//! that the opcode is known and that every field the instruction does not use
//! is zero. Jump and call targets are made absolute here; whether they land
//! inside the program is the verifier's job.

use crate::isa::*;

/// Operand width of an ALU or JMP instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    W32,
    W64,
}

/// Size of a memory access in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemSize {
    B = 1,
    H = 2,
    W = 4,
    DW = 8,
}

impl MemSize {
    pub fn bytes(self) -> u32 {
        self as u32
    }
    pub fn bits(self) -> u32 {
        self as u32 * 8
    }
    /// 0 to 3 for 1, 2, 4, 8 bytes (to index per-size tables).
    pub fn index(self) -> usize {
        match self {
            MemSize::B => 0,
            MemSize::H => 1,
            MemSize::W => 2,
            MemSize::DW => 3,
        }
    }
    fn from_field(code: u8) -> MemSize {
        match code & 0x18 {
            SIZE_W => MemSize::W,
            SIZE_H => MemSize::H,
            SIZE_B => MemSize::B,
            _ => MemSize::DW,
        }
    }
}

/// A register or a sign-extended 32-bit immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    Reg(u8),
    Imm(i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    /// Unsigned division (offset 0).
    Div,
    /// Signed division (offset 1, ISA v4).
    SDiv,
    Or,
    And,
    Lsh,
    Rsh,
    /// Unsigned modulo (offset 0).
    Mod,
    /// Signed modulo (offset 1, ISA v4).
    SMod,
    Xor,
    Mov,
    Arsh,
}

/// Byte-order operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Convert to little endian (a truncation to `bits` on a little-endian host).
    ToLe,
    /// Convert to big endian (a byte swap on a little-endian host).
    ToBe,
    /// Unconditional byte swap (ALU64 END, ISA v4).
    Swap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    Eq,
    Gt,
    Ge,
    Set,
    Ne,
    SGt,
    SGe,
    Lt,
    Le,
    SLt,
    SLe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    Add,
    Or,
    And,
    Xor,
    Xchg,
    CmpXchg,
}

/// A `lddw` with a pseudo source: the raw fields, kept so that AOT code can
/// call the host's lddw hooks, and so the disassembler can show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LddwPseudo {
    pub kind: u8,
    pub imm: i32,
    pub next_imm: i32,
}

/// One decoded instruction. Targets are absolute slot indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Instr {
    Alu {
        width: Width,
        op: AluOp,
        dst: u8,
        src: Operand,
    },
    Neg {
        width: Width,
        dst: u8,
    },
    /// `movsx`: sign-extend the low `bits` of `src` (ISA v4). With `W32` the
    /// result is then zero-extended from 32 bits.
    MovSx {
        width: Width,
        bits: u8,
        dst: u8,
        src: u8,
    },
    Endian {
        kind: Endian,
        bits: u8,
        dst: u8,
    },
    /// `dst = *(size *)(base + off)`, sign-extended when `signed`.
    Load {
        size: MemSize,
        signed: bool,
        dst: u8,
        base: u8,
        off: i16,
    },
    /// `*(size *)(base + off) = src`.
    Store {
        size: MemSize,
        base: u8,
        off: i16,
        src: Operand,
    },
    Atomic {
        size: MemSize,
        op: AtomicOp,
        fetch: bool,
        base: u8,
        off: i16,
        src: u8,
    },
    /// `lddw`: a 64-bit constant; `pseudo` is set for pseudo sources 1..6,
    /// whose `value` the loader resolves through host hooks.
    Lddw {
        dst: u8,
        value: u64,
        pseudo: Option<LddwPseudo>,
    },
    /// The second slot of a `lddw`; never executed.
    LddwTail,
    Ja {
        target: i64,
    },
    Jcond {
        width: Width,
        cond: Cond,
        dst: u8,
        src: Operand,
        target: i64,
    },
    CallHelper {
        id: u32,
    },
    CallLocal {
        target: i64,
    },
    /// `callx`: call the helper whose id is in `reg` (the conformance suite's
    /// convention; the register number is in the dst field).
    CallReg {
        reg: u8,
    },
    Exit,
}

/// Why a slot does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    #[error("unused field {field} is {value}, must be 0")]
    NonZeroField { field: &'static str, value: i64 },
    #[error("{0}")]
    BadField(String),
    #[error("lddw is missing its second slot")]
    LddwTruncated,
    #[error("legacy packet access (ABS/IND) is not supported")]
    LegacyPacketAccess,
}

fn zero(field: &'static str, value: i64) -> Result<(), DecodeError> {
    if value != 0 {
        Err(DecodeError::NonZeroField { field, value })
    } else {
        Ok(())
    }
}

fn operand(i: Insn) -> Result<Operand, DecodeError> {
    if i.code & SRC_X != 0 {
        zero("imm", i.imm as i64)?;
        Ok(Operand::Reg(i.src))
    } else {
        zero("src", i.src as i64)?;
        Ok(Operand::Imm(i.imm))
    }
}

fn target(pc: usize, off: i64) -> i64 {
    pc as i64 + 1 + off
}

/// Decodes the instruction at `pc`. For `lddw` the next slot is read too.
pub fn decode(insns: &[Insn], pc: usize) -> Result<Instr, DecodeError> {
    let Some(&i) = insns.get(pc) else {
        return Err(DecodeError::BadField(format!(
            "pc {pc} is past the end of the program"
        )));
    };
    match i.class() {
        CLS_ALU | CLS_ALU64 => decode_alu(i),
        CLS_JMP | CLS_JMP32 => decode_jmp(i, pc),
        CLS_LD => {
            if i.code != OP_LDDW {
                return match i.code & 0xe0 {
                    MODE_ABS | MODE_IND => Err(DecodeError::LegacyPacketAccess),
                    _ => Err(DecodeError::UnknownOpcode(i.code)),
                };
            }
            zero("offset", i.off as i64)?;
            let Some(&next) = insns.get(pc + 1) else {
                return Err(DecodeError::LddwTruncated);
            };
            if next.code != 0 || next.dst != 0 || next.src != 0 || next.off != 0 {
                return Err(DecodeError::BadField(
                    "second slot of lddw must have opcode, registers and offset 0".into(),
                ));
            }
            let value = (i.imm as u32 as u64) | ((next.imm as u32 as u64) << 32);
            let pseudo = match i.src {
                PSEUDO_IMM64 => None,
                PSEUDO_MAP_FD..=PSEUDO_MAP_IDX_VALUE => Some(LddwPseudo {
                    kind: i.src,
                    imm: i.imm,
                    next_imm: next.imm,
                }),
                s => {
                    return Err(DecodeError::BadField(format!(
                        "lddw pseudo source {s} is not defined (0 to 6)"
                    )))
                }
            };
            if let Some(p) = pseudo {
                if matches!(
                    p.kind,
                    PSEUDO_MAP_FD | PSEUDO_MAP_IDX | PSEUDO_FUNC | PSEUDO_BTF_ID
                ) {
                    zero("imm of lddw's second slot", p.next_imm as i64)?;
                }
            }
            Ok(Instr::Lddw {
                dst: i.dst,
                value,
                pseudo,
            })
        }
        CLS_LDX => {
            let mode = i.code & 0xe0;
            let signed = match mode {
                MODE_MEM => false,
                MODE_MEMSX if i.code & 0x18 != SIZE_DW => true,
                MODE_ABS | MODE_IND => return Err(DecodeError::LegacyPacketAccess),
                _ => return Err(DecodeError::UnknownOpcode(i.code)),
            };
            zero("imm", i.imm as i64)?;
            Ok(Instr::Load {
                size: MemSize::from_field(i.code),
                signed,
                dst: i.dst,
                base: i.src,
                off: i.off,
            })
        }
        CLS_ST => {
            if i.code & 0xe0 != MODE_MEM {
                return Err(DecodeError::UnknownOpcode(i.code));
            }
            zero("src", i.src as i64)?;
            Ok(Instr::Store {
                size: MemSize::from_field(i.code),
                base: i.dst,
                off: i.off,
                src: Operand::Imm(i.imm),
            })
        }
        _ => {
            // CLS_STX
            match i.code & 0xe0 {
                MODE_MEM => {
                    zero("imm", i.imm as i64)?;
                    Ok(Instr::Store {
                        size: MemSize::from_field(i.code),
                        base: i.dst,
                        off: i.off,
                        src: Operand::Reg(i.src),
                    })
                }
                MODE_ATOMIC => {
                    let size = match i.code & 0x18 {
                        SIZE_W => MemSize::W,
                        SIZE_DW => MemSize::DW,
                        _ => return Err(DecodeError::UnknownOpcode(i.code)),
                    };
                    let (op, fetch) = match i.imm {
                        ATOMIC_XCHG => (AtomicOp::Xchg, true),
                        ATOMIC_CMPXCHG => (AtomicOp::CmpXchg, true),
                        imm => {
                            let fetch = imm & ATOMIC_FETCH != 0;
                            let op = match imm & !ATOMIC_FETCH {
                                ATOMIC_ADD => AtomicOp::Add,
                                ATOMIC_OR => AtomicOp::Or,
                                ATOMIC_AND => AtomicOp::And,
                                ATOMIC_XOR => AtomicOp::Xor,
                                _ => {
                                    return Err(DecodeError::BadField(format!(
                                        "unknown atomic operation 0x{imm:x}"
                                    )))
                                }
                            };
                            (op, fetch)
                        }
                    };
                    Ok(Instr::Atomic {
                        size,
                        op,
                        fetch,
                        base: i.dst,
                        off: i.off,
                        src: i.src,
                    })
                }
                _ => Err(DecodeError::UnknownOpcode(i.code)),
            }
        }
    }
}

fn decode_alu(i: Insn) -> Result<Instr, DecodeError> {
    let width = if i.class() == CLS_ALU64 {
        Width::W64
    } else {
        Width::W32
    };
    let opc = i.code & 0xf0;
    let op = match opc {
        ALU_NEG => {
            if i.code & SRC_X != 0 {
                return Err(DecodeError::UnknownOpcode(i.code));
            }
            zero("src", i.src as i64)?;
            zero("offset", i.off as i64)?;
            zero("imm", i.imm as i64)?;
            return Ok(Instr::Neg { width, dst: i.dst });
        }
        ALU_END => {
            zero("src", i.src as i64)?;
            zero("offset", i.off as i64)?;
            let kind = match (width, i.code & SRC_X != 0) {
                (Width::W32, false) => Endian::ToLe,
                (Width::W32, true) => Endian::ToBe,
                (Width::W64, false) => Endian::Swap,
                (Width::W64, true) => return Err(DecodeError::UnknownOpcode(i.code)),
            };
            if !matches!(i.imm, 16 | 32 | 64) {
                return Err(DecodeError::BadField(format!(
                    "byte-swap width {} must be 16, 32 or 64",
                    i.imm
                )));
            }
            return Ok(Instr::Endian {
                kind,
                bits: i.imm as u8,
                dst: i.dst,
            });
        }
        ALU_MOV if i.off != 0 => {
            // movsx (ISA v4): register source only.
            if i.code & SRC_X == 0 {
                return Err(DecodeError::BadField(format!(
                    "mov with immediate must have offset 0, found {}",
                    i.off
                )));
            }
            zero("imm", i.imm as i64)?;
            let ok = match width {
                Width::W64 => matches!(i.off, 8 | 16 | 32),
                Width::W32 => matches!(i.off, 8 | 16),
            };
            if !ok {
                return Err(DecodeError::BadField(format!(
                    "movsx offset {} is not a valid sign-extension width",
                    i.off
                )));
            }
            return Ok(Instr::MovSx {
                width,
                bits: i.off as u8,
                dst: i.dst,
                src: i.src,
            });
        }
        ALU_ADD => AluOp::Add,
        ALU_SUB => AluOp::Sub,
        ALU_MUL => AluOp::Mul,
        ALU_DIV | ALU_MOD => {
            let signed = match i.off {
                0 => false,
                1 => true,
                o => {
                    return Err(DecodeError::BadField(format!(
                        "division offset {o} must be 0 (unsigned) or 1 (signed)"
                    )))
                }
            };
            match (opc, signed) {
                (ALU_DIV, false) => AluOp::Div,
                (ALU_DIV, true) => AluOp::SDiv,
                (_, false) => AluOp::Mod,
                (_, true) => AluOp::SMod,
            }
        }
        ALU_OR => AluOp::Or,
        ALU_AND => AluOp::And,
        ALU_LSH => AluOp::Lsh,
        ALU_RSH => AluOp::Rsh,
        ALU_XOR => AluOp::Xor,
        ALU_MOV => AluOp::Mov,
        ALU_ARSH => AluOp::Arsh,
        _ => return Err(DecodeError::UnknownOpcode(i.code)),
    };
    if !matches!(op, AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod) {
        zero("offset", i.off as i64)?;
    }
    Ok(Instr::Alu {
        width,
        op,
        dst: i.dst,
        src: operand(i)?,
    })
}

fn decode_jmp(i: Insn, pc: usize) -> Result<Instr, DecodeError> {
    let width = if i.class() == CLS_JMP {
        Width::W64
    } else {
        Width::W32
    };
    let opc = i.code & 0xf0;
    let cond = match opc {
        JMP_JA => {
            if i.code & SRC_X != 0 {
                return Err(DecodeError::UnknownOpcode(i.code));
            }
            zero("dst", i.dst as i64)?;
            zero("src", i.src as i64)?;
            return Ok(match width {
                Width::W64 => {
                    zero("imm", i.imm as i64)?;
                    Instr::Ja {
                        target: target(pc, i.off as i64),
                    }
                }
                Width::W32 => {
                    // ja32 (gotol): 32-bit offset in imm.
                    zero("offset", i.off as i64)?;
                    Instr::Ja {
                        target: target(pc, i.imm as i64),
                    }
                }
            });
        }
        JMP_CALL | JMP_EXIT if width == Width::W32 => {
            return Err(DecodeError::UnknownOpcode(i.code))
        }
        JMP_CALL => {
            zero("offset", i.off as i64)?;
            if i.code & SRC_X != 0 {
                zero("src", i.src as i64)?;
                zero("imm", i.imm as i64)?;
                return Ok(Instr::CallReg { reg: i.dst });
            }
            zero("dst", i.dst as i64)?;
            return match i.src {
                CALL_HELPER => Ok(Instr::CallHelper { id: i.imm as u32 }),
                CALL_LOCAL => Ok(Instr::CallLocal {
                    target: target(pc, i.imm as i64),
                }),
                CALL_KFUNC => Err(DecodeError::BadField(
                    "kfunc calls (call src 2) are not supported".into(),
                )),
                s => Err(DecodeError::BadField(format!(
                    "call source {s} is not defined"
                ))),
            };
        }
        JMP_EXIT => {
            if i.code & SRC_X != 0 {
                return Err(DecodeError::UnknownOpcode(i.code));
            }
            zero("dst", i.dst as i64)?;
            zero("src", i.src as i64)?;
            zero("offset", i.off as i64)?;
            zero("imm", i.imm as i64)?;
            return Ok(Instr::Exit);
        }
        JMP_JEQ => Cond::Eq,
        JMP_JGT => Cond::Gt,
        JMP_JGE => Cond::Ge,
        JMP_JSET => Cond::Set,
        JMP_JNE => Cond::Ne,
        JMP_JSGT => Cond::SGt,
        JMP_JSGE => Cond::SGe,
        JMP_JLT => Cond::Lt,
        JMP_JLE => Cond::Le,
        JMP_JSLT => Cond::SLt,
        JMP_JSLE => Cond::SLe,
        _ => return Err(DecodeError::UnknownOpcode(i.code)),
    };
    Ok(Instr::Jcond {
        width,
        cond,
        dst: i.dst,
        src: operand(i)?,
        target: target(pc, i.off as i64),
    })
}

impl Instr {
    /// Number of slots this instruction occupies.
    pub fn slots(&self) -> usize {
        match self {
            Instr::Lddw { .. } => 2,
            _ => 1,
        }
    }

    /// The register this instruction writes, if any (helper and local calls
    /// write r0 and clobber r1 to r5; they are reported as r0).
    pub fn written_reg(&self) -> Option<u8> {
        match *self {
            Instr::Alu { dst, .. }
            | Instr::Neg { dst, .. }
            | Instr::MovSx { dst, .. }
            | Instr::Endian { dst, .. }
            | Instr::Load { dst, .. }
            | Instr::Lddw { dst, .. } => Some(dst),
            Instr::Atomic {
                op: AtomicOp::CmpXchg,
                ..
            } => Some(0),
            Instr::Atomic {
                fetch: true, src, ..
            } => Some(src),
            Instr::CallHelper { .. } | Instr::CallLocal { .. } | Instr::CallReg { .. } => Some(0),
            _ => None,
        }
    }

    /// Registers this instruction names, as encoded (for the range check).
    pub fn named_regs(&self) -> Vec<u8> {
        let op = |o: &Operand| match o {
            Operand::Reg(r) => Some(*r),
            Operand::Imm(_) => None,
        };
        match self {
            Instr::Alu { dst, src, .. } => [Some(*dst), op(src)].into_iter().flatten().collect(),
            Instr::Neg { dst, .. } | Instr::Endian { dst, .. } | Instr::Lddw { dst, .. } => {
                vec![*dst]
            }
            Instr::MovSx { dst, src, .. } => vec![*dst, *src],
            Instr::Load { dst, base, .. } => vec![*dst, *base],
            Instr::Store { base, src, .. } => {
                [Some(*base), op(src)].into_iter().flatten().collect()
            }
            Instr::Atomic { base, src, .. } => vec![*base, *src],
            Instr::Jcond { dst, src, .. } => [Some(*dst), op(src)].into_iter().flatten().collect(),
            Instr::CallReg { reg } => vec![*reg],
            _ => vec![],
        }
    }

    /// Whether control can continue to the next instruction.
    pub fn falls_through(&self) -> bool {
        !matches!(self, Instr::Ja { .. } | Instr::Exit)
    }

    /// The jump target of a branch (not of a call).
    pub fn branch_target(&self) -> Option<i64> {
        match *self {
            Instr::Ja { target } | Instr::Jcond { target, .. } => Some(target),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Result<Instr, DecodeError> {
        decode(&[Insn::new(code, dst, src, off, imm), Insn::default()], 0)
    }

    #[test]
    fn alu_forms() {
        assert_eq!(
            d(0x07, 1, 0, 0, 5).unwrap(),
            Instr::Alu {
                width: Width::W64,
                op: AluOp::Add,
                dst: 1,
                src: Operand::Imm(5)
            }
        );
        assert_eq!(
            d(0x3c, 1, 2, 1, 0).unwrap(),
            Instr::Alu {
                width: Width::W32,
                op: AluOp::SDiv,
                dst: 1,
                src: Operand::Reg(2)
            }
        );
        assert_eq!(
            d(0xbf, 1, 2, 16, 0).unwrap(),
            Instr::MovSx {
                width: Width::W64,
                bits: 16,
                dst: 1,
                src: 2
            }
        );
        assert!(
            d(0xbc, 1, 2, 32, 0).is_err(),
            "movsx32 from 32 bits is not defined"
        );
        assert!(matches!(
            d(0x07, 1, 3, 0, 5),
            Err(DecodeError::NonZeroField { field: "src", .. })
        ));
        assert!(matches!(
            d(0x0f, 1, 3, 0, 5),
            Err(DecodeError::NonZeroField { field: "imm", .. })
        ));
        assert!(matches!(
            d(0x07, 1, 0, 4, 5),
            Err(DecodeError::NonZeroField {
                field: "offset",
                ..
            })
        ));
        assert!(d(0x3f, 1, 2, 2, 0).is_err());
    }

    #[test]
    fn endian_forms() {
        assert_eq!(
            d(0xdc, 3, 0, 0, 16).unwrap(),
            Instr::Endian {
                kind: Endian::ToBe,
                bits: 16,
                dst: 3
            }
        );
        assert_eq!(
            d(0xd4, 3, 0, 0, 64).unwrap(),
            Instr::Endian {
                kind: Endian::ToLe,
                bits: 64,
                dst: 3
            }
        );
        assert_eq!(
            d(0xd7, 3, 0, 0, 32).unwrap(),
            Instr::Endian {
                kind: Endian::Swap,
                bits: 32,
                dst: 3
            }
        );
        assert!(d(0xd7, 3, 0, 0, 8).is_err());
        assert!(matches!(
            d(0xdf, 3, 0, 0, 16),
            Err(DecodeError::UnknownOpcode(0xdf))
        ));
    }

    #[test]
    fn jumps_and_calls() {
        assert_eq!(d(0x05, 0, 0, -1, 0).unwrap(), Instr::Ja { target: 0 });
        assert_eq!(d(0x06, 0, 0, 0, 3).unwrap(), Instr::Ja { target: 4 });
        assert_eq!(d(0x85, 0, 1, 0, 2).unwrap(), Instr::CallLocal { target: 3 });
        assert_eq!(d(0x85, 0, 0, 0, 5).unwrap(), Instr::CallHelper { id: 5 });
        assert_eq!(d(0x8d, 2, 0, 0, 0).unwrap(), Instr::CallReg { reg: 2 });
        assert!(d(0x86, 0, 0, 0, 0).is_err(), "no call in JMP32");
        assert!(d(0x95, 0, 0, 0, 1).is_err());
        assert_eq!(
            d(0x2e, 1, 2, 3, 0).unwrap(),
            Instr::Jcond {
                width: Width::W32,
                cond: Cond::Gt,
                dst: 1,
                src: Operand::Reg(2),
                target: 4
            }
        );
    }

    #[test]
    fn memory_forms() {
        assert_eq!(
            d(0x91, 1, 2, -4, 0).unwrap(),
            Instr::Load {
                size: MemSize::B,
                signed: true,
                dst: 1,
                base: 2,
                off: -4
            }
        );
        assert!(d(0x99, 1, 2, 0, 0).is_err(), "no ldxsdw");
        assert!(matches!(
            d(0x30, 0, 0, 0, 0),
            Err(DecodeError::LegacyPacketAccess)
        ));
        assert_eq!(
            d(0xdb, 1, 2, 0, 0xf1).unwrap(),
            Instr::Atomic {
                size: MemSize::DW,
                op: AtomicOp::CmpXchg,
                fetch: true,
                base: 1,
                off: 0,
                src: 2
            }
        );
        assert!(
            d(0xd3, 1, 2, 0, 0xe0).is_err(),
            "xchg without fetch is undefined"
        );
        assert!(d(0xcb, 1, 2, 0, 0).is_err(), "no 16-bit atomics");
    }

    #[test]
    fn lddw() {
        let p = [
            Insn::new(OP_LDDW, 1, 0, 0, 0x55667788),
            Insn::new(0, 0, 0, 0, 0x11223344),
        ];
        assert_eq!(
            decode(&p, 0).unwrap(),
            Instr::Lddw {
                dst: 1,
                value: 0x1122334455667788,
                pseudo: None
            }
        );
        assert_eq!(decode(&p[..1], 0), Err(DecodeError::LddwTruncated));
        let bad = [Insn::new(OP_LDDW, 1, 0, 0, 1), Insn::new(0, 1, 0, 0, 0)];
        assert!(decode(&bad, 0).is_err());
        let pseudo = [Insn::new(OP_LDDW, 1, 2, 0, 7), Insn::new(0, 0, 0, 0, 16)];
        assert_eq!(
            decode(&pseudo, 0).unwrap(),
            Instr::Lddw {
                dst: 1,
                value: (16u64 << 32) | 7,
                pseudo: Some(LddwPseudo {
                    kind: 2,
                    imm: 7,
                    next_imm: 16
                })
            }
        );
    }
}
