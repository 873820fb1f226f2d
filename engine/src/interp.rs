//! The reference interpreter: the semantics oracle every tier is checked
//! against. It runs verified programs only, always checks memory (an
//! "unchecked" compile option changes nothing here), and never panics.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::backend::{validate_options, Backend, CompileError, CompileOptions, CompiledCode};
use crate::instr::{AtomicOp, Instr, MemSize, Operand, Width};
use crate::isa::STACK_FRAME_SIZE;
use crate::program::Program;
use crate::semantics;
use crate::vmctx::*;

/// The interpreter as a tier.
#[derive(Clone, Copy, Debug, Default)]
pub struct Interpreter;

impl Backend for Interpreter {
    fn name(&self) -> &'static str {
        "interp"
    }

    fn compile(
        &self,
        program: &Arc<Program>,
        opts: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        validate_options(opts)?;
        Ok(Box::new(InterpCode {
            program: program.clone(),
            opts: opts.clone(),
        }))
    }
}

/// A program prepared for the interpreter.
pub struct InterpCode {
    program: Arc<Program>,
    opts: CompileOptions,
}

impl CompiledCode for InterpCode {
    fn tier(&self) -> &'static str {
        "interp"
    }

    fn options(&self) -> &CompileOptions {
        &self.opts
    }

    unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64 {
        // SAFETY: the caller guarantees ctx is a live, prepared context.
        let ctx = unsafe { &mut *ctx };
        interpret(&self.program, self.opts.budget.is_some(), ctx, r1, r2)
    }
}

struct Frame {
    return_pc: usize,
    saved: [u64; 4],
    r10: u64,
}

/// Records a trap and yields the value the executor returns with it.
fn trap(ctx: &mut VmCtx, code: u32, pc: usize, addr: u64, size: u32) -> u64 {
    ctx.trap_code = code;
    ctx.trap_pc = pc as u64;
    ctx.trap_addr = addr;
    ctx.trap_size = size;
    0
}

/// Runs `program` in `ctx`; returns r0, or 0 with the trap recorded in `ctx`.
pub fn interpret(program: &Program, count_budget: bool, ctx: &mut VmCtx, r1: u64, r2: u64) -> u64 {
    let instrs = program.instrs();
    let mut reg = [0u64; 11];
    reg[1] = r1;
    reg[2] = r2;
    reg[10] = ctx.stack_top;
    let mut frames: Vec<Frame> = Vec::new();
    let mut pc = 0usize;
    loop {
        if count_budget {
            let cost = program.block_cost(pc) as u64;
            if cost != 0 {
                if ctx.budget < cost {
                    return trap(ctx, TRAP_BUDGET, pc, 0, 0);
                }
                ctx.budget -= cost;
            }
        }
        // The verifier guarantees pc stays inside the program: every function
        // ends in exit or a jump and every target is in range.
        let Some(ins) = instrs.get(pc) else {
            return trap(ctx, TRAP_INTERNAL, pc, 0, 0);
        };
        match *ins {
            Instr::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let s = operand(&reg, width, src);
                reg[dst as usize] = semantics::alu(width, op, reg[dst as usize], s);
            }
            Instr::Neg { width, dst } => {
                reg[dst as usize] = semantics::neg(width, reg[dst as usize]);
            }
            Instr::MovSx {
                width,
                bits,
                dst,
                src,
            } => {
                reg[dst as usize] = semantics::movsx(width, bits, reg[src as usize]);
            }
            Instr::Endian { kind, bits, dst } => {
                reg[dst as usize] = semantics::endian(kind, bits, reg[dst as usize]);
            }
            Instr::Load {
                size,
                signed,
                dst,
                base,
                off,
            } => {
                let addr = reg[base as usize].wrapping_add(off as i64 as u64);
                if !ctx.allows(addr, size.bytes() as u64, false, frame_lo(&reg)) {
                    return trap(ctx, TRAP_LOAD, pc, addr, size.bytes());
                }
                // SAFETY: the access lies inside a region the context allows.
                let v = unsafe { load(addr, size) };
                reg[dst as usize] = if signed { sign_extend(v, size) } else { v };
            }
            Instr::Store {
                size,
                base,
                off,
                src,
            } => {
                let addr = reg[base as usize].wrapping_add(off as i64 as u64);
                if !ctx.allows(addr, size.bytes() as u64, true, frame_lo(&reg)) {
                    return trap(ctx, TRAP_STORE, pc, addr, size.bytes());
                }
                let v = match src {
                    Operand::Reg(r) => reg[r as usize],
                    Operand::Imm(i) => i as i64 as u64,
                };
                // SAFETY: as for loads, and the region is writable.
                unsafe { store(addr, size, v) };
            }
            Instr::Atomic {
                size,
                op,
                fetch,
                base,
                off,
                src,
            } => {
                let addr = reg[base as usize].wrapping_add(off as i64 as u64);
                let n = size.bytes();
                if !ctx.allows(addr, n as u64, true, frame_lo(&reg)) {
                    return trap(ctx, TRAP_STORE, pc, addr, n);
                }
                if addr % n as u64 != 0 {
                    return trap(ctx, TRAP_MISALIGNED, pc, addr, n);
                }
                // SAFETY: allowed, writable and aligned.
                let old = unsafe { atomic(addr, size, op, reg[src as usize], reg[0]) };
                match op {
                    AtomicOp::CmpXchg => reg[0] = old,
                    _ if fetch => reg[src as usize] = old,
                    _ => {}
                }
            }
            Instr::Lddw { dst, value, .. } => {
                reg[dst as usize] = value;
                pc += 2;
                continue;
            }
            Instr::LddwTail => return trap(ctx, TRAP_INTERNAL, pc, 0, 0),
            Instr::Ja { target } => {
                pc = target as usize;
                continue;
            }
            Instr::Jcond {
                width,
                cond,
                dst,
                src,
                target,
            } => {
                let b = operand(&reg, width, src);
                if semantics::cond(width, cond, reg[dst as usize], b) {
                    pc = target as usize;
                    continue;
                }
            }
            Instr::CallHelper { id } => {
                reg[0] = call_helper(ctx, id as u64, &reg);
                if ctx.trap_code != TRAP_NONE {
                    ctx.trap_pc = pc as u64;
                    return 0;
                }
            }
            Instr::CallReg { reg: r } => {
                reg[0] = call_helper(ctx, reg[r as usize], &reg);
                if ctx.trap_code != TRAP_NONE {
                    ctx.trap_pc = pc as u64;
                    return 0;
                }
            }
            Instr::CallLocal { target } => {
                let new_r10 = reg[10].wrapping_sub(STACK_FRAME_SIZE as u64);
                if new_r10 < ctx.stack_bottom + STACK_FRAME_SIZE as u64 {
                    return trap(ctx, TRAP_CALL_DEPTH, pc, 0, 0);
                }
                frames.push(Frame {
                    return_pc: pc + 1,
                    saved: [reg[6], reg[7], reg[8], reg[9]],
                    r10: reg[10],
                });
                reg[10] = new_r10;
                // A callee starts with r0 and r6 to r9 zero; r1 to r5 are its arguments.
                reg[0] = 0;
                reg[6..10].fill(0);
                pc = target as usize;
                continue;
            }
            Instr::Exit => match frames.pop() {
                None => return reg[0],
                Some(f) => {
                    reg[6..10].copy_from_slice(&f.saved);
                    reg[10] = f.r10;
                    // r1 to r5 are caller-saved: a call leaves them zero.
                    reg[1..6].fill(0);
                    pc = f.return_pc;
                    continue;
                }
            },
        }
        pc += 1;
    }
}

#[inline(always)]
fn operand(reg: &[u64; 11], width: Width, src: Operand) -> u64 {
    match src {
        Operand::Reg(r) => reg[r as usize],
        Operand::Imm(i) => semantics::imm_operand(width, i),
    }
}

/// Lowest stack address the current frame may touch.
#[inline(always)]
fn frame_lo(reg: &[u64; 11]) -> u64 {
    reg[10].wrapping_sub(STACK_FRAME_SIZE as u64)
}

fn call_helper(ctx: &mut VmCtx, id: u64, reg: &[u64; 11]) -> u64 {
    match ctx.helper(id) {
        // SAFETY: registered helpers follow the HelperFn contract, and ctx
        // is the live context of this run.
        Some(HelperSlot {
            func: Some(f),
            data,
        }) => unsafe { f(ctx, data, reg[1], reg[2], reg[3], reg[4], reg[5]) },
        _ => {
            ctx.raise(TRAP_UNKNOWN_HELPER, id, 0);
            0
        }
    }
}

fn sign_extend(v: u64, size: MemSize) -> u64 {
    match size {
        MemSize::B => v as i8 as i64 as u64,
        MemSize::H => v as i16 as i64 as u64,
        MemSize::W => v as i32 as i64 as u64,
        MemSize::DW => v,
    }
}

/// # Safety
/// `[addr, addr + size)` must be readable.
unsafe fn load(addr: u64, size: MemSize) -> u64 {
    let p = addr as *const u8;
    // SAFETY: per the contract; unaligned reads are allowed.
    unsafe {
        match size {
            MemSize::B => p.read() as u64,
            MemSize::H => (p as *const u16).read_unaligned() as u64,
            MemSize::W => (p as *const u32).read_unaligned() as u64,
            MemSize::DW => (p as *const u64).read_unaligned(),
        }
    }
}

/// # Safety
/// `[addr, addr + size)` must be writable.
unsafe fn store(addr: u64, size: MemSize, v: u64) {
    let p = addr as *mut u8;
    // SAFETY: per the contract; unaligned writes are allowed.
    unsafe {
        match size {
            MemSize::B => p.write(v as u8),
            MemSize::H => (p as *mut u16).write_unaligned(v as u16),
            MemSize::W => (p as *mut u32).write_unaligned(v as u32),
            MemSize::DW => (p as *mut u64).write_unaligned(v),
        }
    }
}

/// Performs an atomic read-modify-write and returns the old value (for
/// cmpxchg: the value that was really in memory, compared with `r0`).
///
/// # Safety
/// `addr` must be writable and aligned to `size` (4 or 8 bytes).
unsafe fn atomic(addr: u64, size: MemSize, op: AtomicOp, src: u64, r0: u64) -> u64 {
    const O: Ordering = Ordering::SeqCst;
    if size == MemSize::W {
        // SAFETY: per the contract.
        let a = unsafe { AtomicU32::from_ptr(addr as *mut u32) };
        let s = src as u32;
        (match op {
            AtomicOp::Add => a.fetch_add(s, O),
            AtomicOp::Or => a.fetch_or(s, O),
            AtomicOp::And => a.fetch_and(s, O),
            AtomicOp::Xor => a.fetch_xor(s, O),
            AtomicOp::Xchg => a.swap(s, O),
            AtomicOp::CmpXchg => match a.compare_exchange(r0 as u32, s, O, O) {
                Ok(v) | Err(v) => v,
            },
        }) as u64
    } else {
        // SAFETY: per the contract.
        let a = unsafe { AtomicU64::from_ptr(addr as *mut u64) };
        match op {
            AtomicOp::Add => a.fetch_add(src, O),
            AtomicOp::Or => a.fetch_or(src, O),
            AtomicOp::And => a.fetch_and(src, O),
            AtomicOp::Xor => a.fetch_xor(src, O),
            AtomicOp::Xchg => a.swap(src, O),
            AtomicOp::CmpXchg => match a.compare_exchange(r0, src, O, O) {
                Ok(v) | Err(v) => v,
            },
        }
    }
}
