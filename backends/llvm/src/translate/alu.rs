//! ALU, division (guarded), byte-order operations.

use super::*;

impl<'ctx> FnTranslator<'_, 'ctx> {
    pub(super) fn alu(
        &self,
        ty: IntType<'ctx>,
        op: AluOp,
        a: IntValue<'ctx>,
        s: IntValue<'ctx>,
    ) -> R<IntValue<'ctx>> {
        let b = &self.cg.builder;
        let bits = ty.get_bit_width() as u64;
        Ok(match op {
            AluOp::Add => b.build_int_add(a, s, "add").or_fail()?,
            AluOp::Sub => b.build_int_sub(a, s, "sub").or_fail()?,
            AluOp::Mul => b.build_int_mul(a, s, "mul").or_fail()?,
            AluOp::Or => b.build_or(a, s, "or").or_fail()?,
            AluOp::And => b.build_and(a, s, "and").or_fail()?,
            AluOp::Xor => b.build_xor(a, s, "xor").or_fail()?,
            AluOp::Mov => s,
            AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => {
                let n = b
                    .build_and(s, ty.const_int(bits - 1, false), "cnt")
                    .or_fail()?;
                match op {
                    AluOp::Lsh => b.build_left_shift(a, n, "shl").or_fail()?,
                    AluOp::Rsh => b.build_right_shift(a, n, false, "shr").or_fail()?,
                    _ => b.build_right_shift(a, n, true, "sar").or_fail()?,
                }
            }
            AluOp::Div | AluOp::Mod | AluOp::SDiv | AluOp::SMod => self.div_reg(ty, op, a, s)?,
        })
    }

    /// Division and modulo by a register, guarded so that no LLVM division
    /// is undefined: the divisor the division sees is never 0, and never -1
    /// for the signed forms (whose results are then chosen by `select`).
    pub(super) fn div_reg(
        &self,
        ty: IntType<'ctx>,
        op: AluOp,
        a: IntValue<'ctx>,
        s: IntValue<'ctx>,
    ) -> R<IntValue<'ctx>> {
        let b = &self.cg.builder;
        let zero = ty.const_zero();
        let one = ty.const_int(1, false);
        let is_zero = b
            .build_int_compare(IntPredicate::EQ, s, zero, "divz")
            .or_fail()?;
        let sel = |c, x: IntValue<'ctx>, y: IntValue<'ctx>| -> R<IntValue<'ctx>> {
            Ok(b.build_select(c, x, y, "sel").or_fail()?.into_int_value())
        };
        match op {
            AluOp::Div | AluOp::Mod => {
                let safe = sel(is_zero, one, s)?;
                if op == AluOp::Div {
                    let q = b.build_int_unsigned_div(a, safe, "udiv").or_fail()?;
                    sel(is_zero, zero, q)
                } else {
                    let r = b.build_int_unsigned_rem(a, safe, "urem").or_fail()?;
                    sel(is_zero, a, r)
                }
            }
            _ => {
                let is_m1 = b
                    .build_int_compare(IntPredicate::EQ, s, ty.const_all_ones(), "divm1")
                    .or_fail()?;
                let bad = b.build_or(is_zero, is_m1, "bad").or_fail()?;
                let safe = sel(bad, one, s)?;
                if op == AluOp::SDiv {
                    let q = b.build_int_signed_div(a, safe, "sdiv").or_fail()?;
                    let n = b.build_int_sub(zero, a, "neg").or_fail()?;
                    let q = sel(is_m1, n, q)?;
                    sel(is_zero, zero, q)
                } else {
                    let r = b.build_int_signed_rem(a, safe, "srem").or_fail()?;
                    let r = sel(is_m1, zero, r)?;
                    sel(is_zero, a, r)
                }
            }
        }
    }

    /// Division and modulo by an immediate: the guards are resolved now.
    pub(super) fn div_imm(
        &self,
        ty: IntType<'ctx>,
        op: AluOp,
        a: IntValue<'ctx>,
        imm: i32,
    ) -> R<IntValue<'ctx>> {
        let b = &self.cg.builder;
        let v = if ty == self.cg.i64 {
            imm as i64 as u64
        } else {
            imm as u32 as u64
        };
        let is_m1 = imm == -1;
        Ok(match op {
            AluOp::Div | AluOp::SDiv if imm == 0 => ty.const_zero(),
            AluOp::Mod | AluOp::SMod if imm == 0 => a,
            AluOp::SDiv if is_m1 => b.build_int_sub(ty.const_zero(), a, "neg").or_fail()?,
            AluOp::SMod if is_m1 => ty.const_zero(),
            _ => {
                let d = ty.const_int(v, false);
                match op {
                    AluOp::Div => b.build_int_unsigned_div(a, d, "udiv").or_fail()?,
                    AluOp::Mod => b.build_int_unsigned_rem(a, d, "urem").or_fail()?,
                    AluOp::SDiv => b.build_int_signed_div(a, d, "sdiv").or_fail()?,
                    _ => b.build_int_signed_rem(a, d, "srem").or_fail()?,
                }
            }
        })
    }

    pub(super) fn endian(&self, kind: Endian, bits: u8, v: IntValue<'ctx>) -> R<IntValue<'ctx>> {
        let b = &self.cg.builder;
        let ty = match bits {
            16 => self.cg.i16,
            32 => self.cg.i32,
            _ => self.cg.i64,
        };
        let swap = kind != Endian::ToLe;
        let n = if ty == self.cg.i64 {
            v
        } else {
            b.build_int_truncate(v, ty, "lo").or_fail()?
        };
        let n = if swap { self.bswap(ty, n)? } else { n };
        if ty == self.cg.i64 {
            Ok(n)
        } else {
            b.build_int_z_extend(n, self.cg.i64, "zx").or_fail()
        }
    }

    pub(super) fn bswap(&self, ty: IntType<'ctx>, v: IntValue<'ctx>) -> R<IntValue<'ctx>> {
        let decl = Intrinsic::find("llvm.bswap")
            .and_then(|i| i.get_declaration(&self.cg.module, &[ty.into()]))
            .ok_or_else(|| self.cg.fail("llvm.bswap is not available"))?;
        let call = self
            .cg
            .builder
            .build_call(decl, &[v.into()], "bswap")
            .or_fail()?;
        self.cg.int_result(call)
    }
}
