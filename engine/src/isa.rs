//! The eBPF instruction set (RFC 9669, ISA v1 to v4): encoding constants, the
//! raw 8-byte instruction and its decoding and encoding.
//!
//! An instruction is `opcode:8 | dst:4 | src:4 | off:16 | imm:32`, little endian.
//! `lddw` takes two slots; the second slot carries the upper 32 bits of the
//! immediate in its `imm` field and must be otherwise zero.

/// Size of one instruction slot in bytes.
pub const INSN_SIZE: usize = 8;
/// Number of eBPF registers (r0 to r10).
pub const REG_COUNT: usize = 11;
/// The read-only frame pointer.
pub const FRAME_POINTER: u8 = 10;
/// Size of one call frame's stack.
pub const STACK_FRAME_SIZE: usize = 512;

// Instruction classes (low 3 bits of the opcode).
pub const CLS_LD: u8 = 0x00;
pub const CLS_LDX: u8 = 0x01;
pub const CLS_ST: u8 = 0x02;
pub const CLS_STX: u8 = 0x03;
pub const CLS_ALU: u8 = 0x04;
pub const CLS_JMP: u8 = 0x05;
pub const CLS_JMP32: u8 = 0x06;
pub const CLS_ALU64: u8 = 0x07;

// Source bit for ALU and JMP classes.
pub const SRC_K: u8 = 0x00;
pub const SRC_X: u8 = 0x08;

// Size field for load and store classes.
pub const SIZE_W: u8 = 0x00;
pub const SIZE_H: u8 = 0x08;
pub const SIZE_B: u8 = 0x10;
pub const SIZE_DW: u8 = 0x18;

// Mode field for load and store classes.
pub const MODE_IMM: u8 = 0x00;
pub const MODE_ABS: u8 = 0x20;
pub const MODE_IND: u8 = 0x40;
pub const MODE_MEM: u8 = 0x60;
pub const MODE_MEMSX: u8 = 0x80;
pub const MODE_ATOMIC: u8 = 0xc0;

// ALU operations (high 4 bits).
pub const ALU_ADD: u8 = 0x00;
pub const ALU_SUB: u8 = 0x10;
pub const ALU_MUL: u8 = 0x20;
pub const ALU_DIV: u8 = 0x30;
pub const ALU_OR: u8 = 0x40;
pub const ALU_AND: u8 = 0x50;
pub const ALU_LSH: u8 = 0x60;
pub const ALU_RSH: u8 = 0x70;
pub const ALU_NEG: u8 = 0x80;
pub const ALU_MOD: u8 = 0x90;
pub const ALU_XOR: u8 = 0xa0;
pub const ALU_MOV: u8 = 0xb0;
pub const ALU_ARSH: u8 = 0xc0;
pub const ALU_END: u8 = 0xd0;

// Jump operations (high 4 bits).
pub const JMP_JA: u8 = 0x00;
pub const JMP_JEQ: u8 = 0x10;
pub const JMP_JGT: u8 = 0x20;
pub const JMP_JGE: u8 = 0x30;
pub const JMP_JSET: u8 = 0x40;
pub const JMP_JNE: u8 = 0x50;
pub const JMP_JSGT: u8 = 0x60;
pub const JMP_JSGE: u8 = 0x70;
pub const JMP_CALL: u8 = 0x80;
pub const JMP_EXIT: u8 = 0x90;
pub const JMP_JLT: u8 = 0xa0;
pub const JMP_JLE: u8 = 0xb0;
pub const JMP_JSLT: u8 = 0xc0;
pub const JMP_JSLE: u8 = 0xd0;

// Atomic operations (the imm field of an atomic instruction).
pub const ATOMIC_ADD: i32 = 0x00;
pub const ATOMIC_OR: i32 = 0x40;
pub const ATOMIC_AND: i32 = 0x50;
pub const ATOMIC_XOR: i32 = 0xa0;
pub const ATOMIC_FETCH: i32 = 0x01;
pub const ATOMIC_XCHG: i32 = 0xe0 | ATOMIC_FETCH;
pub const ATOMIC_CMPXCHG: i32 = 0xf0 | ATOMIC_FETCH;

// Pseudo sources of `lddw` (the src field).
pub const PSEUDO_IMM64: u8 = 0;
pub const PSEUDO_MAP_FD: u8 = 1;
pub const PSEUDO_MAP_VALUE: u8 = 2;
pub const PSEUDO_BTF_ID: u8 = 3;
pub const PSEUDO_FUNC: u8 = 4;
pub const PSEUDO_MAP_IDX: u8 = 5;
pub const PSEUDO_MAP_IDX_VALUE: u8 = 6;

// Call kinds (the src field of a call).
pub const CALL_HELPER: u8 = 0;
pub const CALL_LOCAL: u8 = 1;
pub const CALL_KFUNC: u8 = 2;

// Frequently used full opcodes.
pub const OP_LDDW: u8 = CLS_LD | MODE_IMM | SIZE_DW;
pub const OP_CALL: u8 = CLS_JMP | JMP_CALL;
pub const OP_CALLX: u8 = CLS_JMP | JMP_CALL | SRC_X;
pub const OP_EXIT: u8 = CLS_JMP | JMP_EXIT;
pub const OP_JA: u8 = CLS_JMP | JMP_JA;
pub const OP_JA32: u8 = CLS_JMP32 | JMP_JA;

/// The class of an opcode.
pub fn class(code: u8) -> u8 {
    code & 0x07
}

/// One raw 8-byte instruction slot, fields as encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// Decodes one slot from its 8 little-endian bytes.
    pub fn from_bytes(b: [u8; 8]) -> Insn {
        Insn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Encodes this slot as 8 little-endian bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code,
            (self.dst & 0x0f) | ((self.src & 0x0f) << 4),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }

    /// The slot as the u64 used by the conformance suite's `-- raw` sections.
    pub fn to_u64(self) -> u64 {
        u64::from_le_bytes(self.to_bytes())
    }

    pub fn from_u64(v: u64) -> Insn {
        Insn::from_bytes(v.to_le_bytes())
    }

    pub fn class(self) -> u8 {
        class(self.code)
    }

    /// True for the first slot of a two-slot `lddw`.
    pub fn is_lddw(self) -> bool {
        self.code == OP_LDDW
    }
}

/// Error for a byte stream that is not a whole number of instructions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bytecode length {len} is not a multiple of 8 (truncated instruction at byte offset {offset})"
)]
pub struct TruncatedBytecode {
    pub len: usize,
    pub offset: usize,
}

/// Splits bytecode into instruction slots.
pub fn decode_program(bytes: &[u8]) -> Result<Vec<Insn>, TruncatedBytecode> {
    if !bytes.len().is_multiple_of(INSN_SIZE) {
        return Err(TruncatedBytecode {
            len: bytes.len(),
            offset: bytes.len() - bytes.len() % INSN_SIZE,
        });
    }
    Ok(bytes
        .chunks_exact(INSN_SIZE)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            Insn::from_bytes(b)
        })
        .collect())
}

/// Joins instruction slots into bytecode.
pub fn encode_program(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trip_all_fields() {
        for code in [0x07u8, 0x18, 0x85, 0x8d, 0xdb, 0xc3, 0x95] {
            for (dst, src) in [(0u8, 0u8), (10, 1), (15, 15), (3, 7)] {
                for off in [0i16, 1, -1, i16::MIN, i16::MAX] {
                    for imm in [0i32, 1, -1, i32::MIN, i32::MAX, 0x1234_5678] {
                        let i = Insn::new(code, dst, src, off, imm);
                        assert_eq!(Insn::from_bytes(i.to_bytes()), i);
                        assert_eq!(Insn::from_u64(i.to_u64()), i);
                    }
                }
            }
        }
    }

    #[test]
    fn raw_u64_layout_matches_conformance_format() {
        // lddw %r0, 0x1122334455667788 as written in lddw.data's raw section.
        let a = Insn::from_u64(0x5566778800000018);
        assert_eq!(a, Insn::new(OP_LDDW, 0, 0, 0, 0x55667788));
        let b = Insn::from_u64(0x1122334400000000);
        assert_eq!(b.imm, 0x11223344);
    }

    #[test]
    fn truncated_bytecode_is_an_error() {
        let e = decode_program(&[0u8; 12]).unwrap_err();
        assert_eq!(e.offset, 8);
        assert!(decode_program(&[0u8; 16]).is_ok());
    }
}
