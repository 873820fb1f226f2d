//! The floor of tier 0's compile time: what Cranelift alone costs for a
//! straight run of 64-bit ALU instructions, with nothing of bpfvm's in the
//! way (no facts, no checks, no frontend variables, no code memory).
//!
//! [`straight_function`] builds the Cranelift IR that tier 0's translator
//! would build for such a run, one operation per instruction and an
//! `iconst` per immediate, with the registers held in plain SSA values
//! (a straight run has one block, so it needs no SSA construction);
//! [`Floor::compile`] runs `Context::compile` on it with the flags tier 0
//! uses at that level. The compile bench measures it beside tier 0 and
//! rbpf's JIT on the same program (`compile_floor/...`, BENCHMARKS.md
//! session 20).

use bpfvm::engine::instr::{decode, AluOp, Instr, Operand, Width};
use bpfvm::engine::isa::Insn;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{AbiParam, Function, InstBuilder, Signature, UserFuncName, Value};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

/// The number of parameters of tier 0's functions (the context, r1 to r5,
/// the frame's top), so that the prologue costs the same.
const PARAMS: usize = 7;

/// The host ISA tier 0 compiles with at `level` (`bpfvm_cranelift::host_isa`):
/// 0, no optimisation and the single-pass register allocator; 1, no
/// optimisation and the backtracking allocator. Only these two: at Cranelift's
/// `speed` the mid-end folds a straight run of constants to its result.
pub fn floor_isa(level: u8) -> Result<OwnedTargetIsa, String> {
    if level > 1 {
        return Err(format!("the floor has levels 0 and 1, not {level}"));
    }
    bpfvm_cranelift::host_isa(level).map_err(|e| e.to_string())
}

/// Builds the Cranelift IR of `insns`, which must be 64-bit ALU
/// instructions (no division or modulo, which tier 0 guards) ending in
/// `exit`, reading no register before writing it except r1 to r5 (the
/// parameters). The function returns r0.
pub fn straight_function(
    isa: &dyn TargetIsa,
    insns: &[Insn],
    fctx: &mut FunctionBuilderContext,
) -> Result<Function, String> {
    let mut func = Function::new();
    build_straight(isa, insns, &mut func, fctx)?;
    Ok(func)
}

/// [`straight_function`] into `func`, which is cleared first and keeps its
/// allocations (as tier 0 reuses its function from one compile to the
/// next).
pub fn build_straight(
    isa: &dyn TargetIsa,
    insns: &[Insn],
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
) -> Result<(), String> {
    func.clear();
    func.name = UserFuncName::user(0, 0);
    func.signature = Signature::new(isa.default_call_conv());
    for _ in 0..PARAMS {
        func.signature.params.push(AbiParam::new(I64));
    }
    func.signature.returns.push(AbiParam::new(I64));
    let mut b = FunctionBuilder::new(func, fctx);
    match build_body(&mut b, insns) {
        Ok(()) => {
            b.finalize(isa.frontend_config());
            Ok(())
        }
        Err(e) => {
            // A builder left unfinished leaves its context dirty.
            *fctx = FunctionBuilderContext::new();
            Err(e)
        }
    }
}

fn build_body(b: &mut FunctionBuilder, insns: &[Insn]) -> Result<(), String> {
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let mut regs: [Option<Value>; 11] = [None; 11];
    for (r, &v) in regs[1..=5].iter_mut().zip(&b.block_params(block)[1..=5]) {
        *r = Some(v);
    }
    let read = |regs: &[Option<Value>; 11], r: u8, pc: usize| {
        regs[usize::from(r)].ok_or_else(|| format!("pc {pc}: r{r} is read before it is written"))
    };
    for pc in 0..insns.len() {
        let instr = decode(insns, pc).map_err(|e| format!("pc {pc}: {e}"))?;
        match instr {
            Instr::Alu {
                width: Width::W64,
                op,
                dst,
                src,
            } => {
                let b_val = match src {
                    Operand::Imm(i) => b.ins().iconst(I64, i64::from(i)),
                    Operand::Reg(r) => read(&regs, r, pc)?,
                };
                let value = if op == AluOp::Mov {
                    b_val
                } else {
                    let a = read(&regs, dst, pc)?;
                    match op {
                        AluOp::Add => b.ins().iadd(a, b_val),
                        AluOp::Sub => b.ins().isub(a, b_val),
                        AluOp::Mul => b.ins().imul(a, b_val),
                        AluOp::Or => b.ins().bor(a, b_val),
                        AluOp::And => b.ins().band(a, b_val),
                        AluOp::Xor => b.ins().bxor(a, b_val),
                        // Cranelift masks the shift amount to the width,
                        // as eBPF does.
                        AluOp::Lsh => b.ins().ishl(a, b_val),
                        AluOp::Rsh => b.ins().ushr(a, b_val),
                        AluOp::Arsh => b.ins().sshr(a, b_val),
                        other => return Err(format!("pc {pc}: {other:?} is not in the floor")),
                    }
                };
                regs[usize::from(dst)] = Some(value);
            }
            Instr::Neg {
                width: Width::W64,
                dst,
            } => {
                let a = read(&regs, dst, pc)?;
                regs[usize::from(dst)] = Some(b.ins().ineg(a));
            }
            Instr::Exit if pc + 1 == insns.len() => {
                let r0 = read(&regs, 0, pc)?;
                b.ins().return_(&[r0]);
                return Ok(());
            }
            other => return Err(format!("pc {pc}: {other:?} is not in the floor")),
        }
    }
    Err("the program does not end in exit".into())
}

/// What the floor needs to compile again and again: the ISA and
/// Cranelift's reusable contexts (as tier 0 keeps them per thread).
pub struct Floor {
    isa: OwnedTargetIsa,
    ctx: Context,
    fctx: FunctionBuilderContext,
}

impl Floor {
    pub fn new(level: u8) -> Result<Floor, String> {
        Ok(Floor {
            isa: floor_isa(level)?,
            ctx: Context::new(),
            fctx: FunctionBuilderContext::new(),
        })
    }

    /// Builds and compiles `insns` (see [`straight_function`]); returns
    /// the machine code's size in bytes.
    pub fn compile(&mut self, insns: &[Insn]) -> Result<usize, String> {
        self.ctx.clear();
        build_straight(&*self.isa, insns, &mut self.ctx.func, &mut self.fctx)?;
        let code = self
            .ctx
            .compile(&*self.isa, &mut Default::default())
            .map_err(|e| format!("Cranelift: {:?}", e.inner))?;
        Ok(code.code_buffer().len())
    }
}
