//! The value semantics of ALU, byte-order and jump instructions, as plain
//! functions: the interpreter's definition of each operation (RFC 9669 plus
//! DESIGN.md's choices). JIT tiers must agree with these bit for bit.

use crate::instr::{AluOp, Cond, Endian, Width};

/// `dst op src` for ALU64 (`Width::W64`) or ALU (`Width::W32`, operands
/// truncated to 32 bits, result zero-extended). For immediates, `src` is the
/// immediate sign-extended to 64 bits.
///
/// Division by zero gives 0; modulo by zero leaves dst (truncated to 32 bits
/// in the 32-bit form). Signed `MIN / -1` is `MIN`, `MIN % -1` is 0. Shift
/// counts are masked to the operand width.
#[inline(always)]
pub fn alu(width: Width, op: AluOp, dst: u64, src: u64) -> u64 {
    match width {
        Width::W64 => alu64(op, dst, src),
        Width::W32 => alu32(op, dst as u32, src as u32) as u64,
    }
}

#[inline(always)]
pub fn alu64(op: AluOp, dst: u64, src: u64) -> u64 {
    match op {
        AluOp::Add => dst.wrapping_add(src),
        AluOp::Sub => dst.wrapping_sub(src),
        AluOp::Mul => dst.wrapping_mul(src),
        AluOp::Div => dst.checked_div(src).unwrap_or(0),
        AluOp::SDiv => {
            if src == 0 {
                0
            } else {
                (dst as i64).wrapping_div(src as i64) as u64
            }
        }
        AluOp::Mod => dst.checked_rem(src).unwrap_or(dst),
        AluOp::SMod => {
            if src == 0 {
                dst
            } else {
                (dst as i64).wrapping_rem(src as i64) as u64
            }
        }
        AluOp::Or => dst | src,
        AluOp::And => dst & src,
        AluOp::Lsh => dst << (src & 63),
        AluOp::Rsh => dst >> (src & 63),
        AluOp::Arsh => ((dst as i64) >> (src & 63)) as u64,
        AluOp::Xor => dst ^ src,
        AluOp::Mov => src,
    }
}

#[inline(always)]
pub fn alu32(op: AluOp, dst: u32, src: u32) -> u32 {
    match op {
        AluOp::Add => dst.wrapping_add(src),
        AluOp::Sub => dst.wrapping_sub(src),
        AluOp::Mul => dst.wrapping_mul(src),
        AluOp::Div => dst.checked_div(src).unwrap_or(0),
        AluOp::SDiv => {
            if src == 0 {
                0
            } else {
                (dst as i32).wrapping_div(src as i32) as u32
            }
        }
        AluOp::Mod => dst.checked_rem(src).unwrap_or(dst),
        AluOp::SMod => {
            if src == 0 {
                dst
            } else {
                (dst as i32).wrapping_rem(src as i32) as u32
            }
        }
        AluOp::Or => dst | src,
        AluOp::And => dst & src,
        AluOp::Lsh => dst << (src & 31),
        AluOp::Rsh => dst >> (src & 31),
        AluOp::Arsh => ((dst as i32) >> (src & 31)) as u32,
        AluOp::Xor => dst ^ src,
        AluOp::Mov => src,
    }
}

/// The value an immediate operand has for an instruction of this width.
#[inline(always)]
pub fn imm_operand(width: Width, imm: i32) -> u64 {
    match width {
        Width::W64 => imm as i64 as u64,
        Width::W32 => imm as u32 as u64,
    }
}

/// `neg`.
#[inline(always)]
pub fn neg(width: Width, dst: u64) -> u64 {
    match width {
        Width::W64 => dst.wrapping_neg(),
        Width::W32 => (dst as u32).wrapping_neg() as u64,
    }
}

/// `movsx`: sign-extend the low `bits` of `src`; the 32-bit form then
/// zero-extends from 32 bits.
#[inline(always)]
pub fn movsx(width: Width, bits: u8, src: u64) -> u64 {
    let v = match bits {
        8 => src as i8 as i64,
        16 => src as i16 as i64,
        _ => src as i32 as i64,
    } as u64;
    match width {
        Width::W64 => v,
        Width::W32 => v as u32 as u64,
    }
}

/// Byte-order conversion on a little-endian machine.
#[inline(always)]
pub fn endian(kind: Endian, bits: u8, dst: u64) -> u64 {
    match (kind, bits) {
        (Endian::ToLe, 16) => dst as u16 as u64,
        (Endian::ToLe, 32) => dst as u32 as u64,
        (Endian::ToLe, _) => dst,
        (_, 16) => (dst as u16).swap_bytes() as u64,
        (_, 32) => (dst as u32).swap_bytes() as u64,
        (_, _) => dst.swap_bytes(),
    }
}

/// A conditional jump's condition. The 32-bit form compares the low 32 bits
/// (signed conditions as `i32`).
#[inline(always)]
pub fn cond(width: Width, c: Cond, a: u64, b: u64) -> bool {
    match width {
        Width::W64 => cond64(c, a, b),
        Width::W32 => cond32(c, a as u32, b as u32),
    }
}

#[inline(always)]
fn cond64(c: Cond, a: u64, b: u64) -> bool {
    match c {
        Cond::Eq => a == b,
        Cond::Ne => a != b,
        Cond::Gt => a > b,
        Cond::Ge => a >= b,
        Cond::Lt => a < b,
        Cond::Le => a <= b,
        Cond::Set => a & b != 0,
        Cond::SGt => (a as i64) > (b as i64),
        Cond::SGe => (a as i64) >= (b as i64),
        Cond::SLt => (a as i64) < (b as i64),
        Cond::SLe => (a as i64) <= (b as i64),
    }
}

#[inline(always)]
fn cond32(c: Cond, a: u32, b: u32) -> bool {
    match c {
        Cond::Eq => a == b,
        Cond::Ne => a != b,
        Cond::Gt => a > b,
        Cond::Ge => a >= b,
        Cond::Lt => a < b,
        Cond::Le => a <= b,
        Cond::Set => a & b != 0,
        Cond::SGt => (a as i32) > (b as i32),
        Cond::SGe => (a as i32) >= (b as i32),
        Cond::SLt => (a as i32) < (b as i32),
        Cond::SLe => (a as i32) <= (b as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_edge_cases() {
        assert_eq!(alu64(AluOp::Div, 7, 0), 0);
        assert_eq!(alu64(AluOp::Mod, 7, 0), 7);
        assert_eq!(alu32(AluOp::Mod, 7, 0), 7);
        assert_eq!(
            alu(Width::W32, AluOp::Mod, 0x1_0000_0007, 0),
            7,
            "32-bit mod by zero truncates dst"
        );
        assert_eq!(
            alu64(AluOp::SDiv, i64::MIN as u64, -1i64 as u64),
            i64::MIN as u64
        );
        assert_eq!(alu64(AluOp::SMod, i64::MIN as u64, -1i64 as u64), 0);
        assert_eq!(
            alu32(AluOp::SDiv, i32::MIN as u32, u32::MAX),
            i32::MIN as u32
        );
        assert_eq!(alu32(AluOp::SMod, i32::MIN as u32, u32::MAX), 0);
        assert_eq!(
            alu64(AluOp::SMod, -7i64 as u64, 2),
            -1i64 as u64,
            "sign of the dividend"
        );
        assert_eq!(
            alu64(AluOp::SDiv, -7i64 as u64, 2),
            -3i64 as u64,
            "truncates toward zero"
        );
        // 32-bit divisors are the low 32 bits; 64-bit divisors are all 64.
        assert_eq!(alu(Width::W32, AluOp::Div, 10, 0x1_0000_0000), 0);
        assert_eq!(alu(Width::W64, AluOp::Div, 10, 0x1_0000_0000), 0);
        assert_eq!(alu(Width::W64, AluOp::Mod, 10, 0x1_0000_0000), 10);
    }

    #[test]
    fn shifts_are_masked_and_results_zero_extended() {
        assert_eq!(alu64(AluOp::Lsh, 1, 64), 1);
        assert_eq!(alu64(AluOp::Lsh, 1, 63), 1 << 63);
        assert_eq!(alu32(AluOp::Lsh, 1, 32), 1);
        assert_eq!(alu(Width::W32, AluOp::Arsh, 0x8000_0000, 31), 0xffff_ffff);
        assert_eq!(alu(Width::W32, AluOp::Add, u64::MAX, 1), 0);
        assert_eq!(
            alu(Width::W32, AluOp::Mov, 0, imm_operand(Width::W32, -1)),
            0xffff_ffff
        );
        assert_eq!(
            alu(Width::W64, AluOp::Mov, 0, imm_operand(Width::W64, -1)),
            u64::MAX
        );
    }

    #[test]
    fn extensions_and_swaps() {
        assert_eq!(movsx(Width::W64, 8, 0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(movsx(Width::W32, 8, 0x80), 0xffff_ff80);
        assert_eq!(movsx(Width::W64, 32, 0x8000_0000), 0xffff_ffff_8000_0000);
        assert_eq!(endian(Endian::ToBe, 16, 0x1122_3344), 0x4433);
        assert_eq!(endian(Endian::ToLe, 32, 0x1122_3344_5566_7788), 0x5566_7788);
        assert_eq!(
            endian(Endian::Swap, 64, 0x0102_0304_0506_0708),
            0x0807_0605_0403_0201
        );
        assert_eq!(neg(Width::W32, 1), 0xffff_ffff);
    }

    #[test]
    fn conditions_use_the_full_width() {
        // rbpf 0.4.1's Cranelift hazard: 64-bit compares must see the high half.
        assert!(cond(Width::W64, Cond::Gt, 1 << 32, 5));
        assert!(!cond(Width::W32, Cond::Gt, 1 << 32, 5));
        assert!(cond(Width::W32, Cond::SLt, 0xffff_ffff, 0));
        assert!(!cond(Width::W64, Cond::SLt, 0xffff_ffff, 0));
    }
}
