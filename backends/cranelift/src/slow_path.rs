//! The out-of-line memory check, called as a `preserve_all` function.
//!
//! A checked access outside the input, the frame and the remembered region
//! (`VmCtx::last_region_*`, all three checked inline; at O0 only the first
//! of the input and the frame) calls the check trampoline from a cold
//! block. Called with the C calling convention,
//! that call would clobber every caller-saved register, and since it sits
//! inside the program's loops the register allocator would keep loop values
//! out of those registers (spilling them, on every iteration, to keep them
//! across a call that almost never happens). So the generated code calls a
//! trampoline with Cranelift's `preserve_all` convention instead, which
//! clobbers nothing: it saves what the C function may clobber (XMM
//! included), calls `bpfvm_check_access` and on a refusal completes the
//! trap record with the access's pc, so that the generated code needs no
//! trap block of its own per access. Then, on x86-64 Linux, it abandons
//! the run ([`crate::abort`]): it returns only when the access is
//! allowed. Elsewhere it stores the answer (1: allowed, 0: not) in
//! `VmCtx::check_answer`, since `preserve_all` has no return value, for
//! the generated code to test.
//! A second trampoline, with the same signature, checks a group of accesses
//! (`bpfvm_check_group`, which records the whole trap itself).
//!
//! A third, where a refused access abandons the run ([`ABORTS`]), calls a
//! helper for code compiled for latency (levels 0 and 1): `(ctx, id, r1,
//! .., r5, pc) -> r0` in the C convention, it calls the helper through
//! `bpfvm_call_helper_by_id` (which traps with `TRAP_UNKNOWN_HELPER` when
//! the slot is empty) and abandons the run when a trap was recorded. The call
//! site is then one call, where inline those tests are two branches, two
//! trap sites and two more blocks, which is most of a helper call's compile
//! work (BENCHMARKS.md, session 18); the run pays one more call.
//!
//! Each trampoline is compiled once per process and never freed.

use std::sync::{Mutex, OnceLock};

use bpfvm_engine::instr::MemSize;
use bpfvm_engine::vmctx::{
    bpfvm_call_helper_by_id, bpfvm_check_access, bpfvm_check_group, OFFSET_CHECK_ANSWER,
    OFFSET_TRAP_CODE, OFFSET_TRAP_PC,
};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::{
    AbiParam, Function, InstBuilder, MemFlagsData, Signature, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetIsa};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

use crate::abort::{abort_fn, ABORTS};
use crate::code_memory::{CodeMemory, FunctionCode};
use crate::{fail, isa, signature as c_signature};
use bpfvm_engine::backend::CompileError;

/// `(ctx, addr, access, frame_lo)`, `preserve_all`, no result; `access` is
/// [`access`]'s packing of the size, the direction and the pc.
pub(crate) fn signature() -> Signature {
    let mut sig = Signature::new(CallConv::PreserveAll);
    for _ in 0..4 {
        sig.params.push(AbiParam::new(I64));
    }
    sig
}

/// One access, as the trampoline takes it: bits 0–7 the size in bytes,
/// bit 8 set for a store, bits 16–63 the pc.
pub(crate) fn access(pc: usize, size: MemSize, write: bool) -> i64 {
    ((pc as i64) << 16) | ((write as i64) << 8) | size.bytes() as i64
}

/// The helper trampoline's signature: `(ctx, id, r1, .., r5, pc) -> r0`,
/// the C convention.
pub(crate) fn helper_signature(isa: &dyn TargetIsa) -> Signature {
    c_signature(isa, 8)
}

/// Which trampoline.
#[derive(Clone, Copy)]
enum Check {
    /// `(ctx, addr, access, frame_lo)`: one access.
    Access,
    /// `(ctx, base, table, frame_lo)`: a group of loads.
    Group,
    /// `(ctx, id, r1, .., r5, pc) -> r0`: a helper call.
    Helper,
}

/// The address of the trampoline for one access. A failed build (no
/// memory for the mapping) fails this compile only; the next one tries
/// again.
pub(crate) fn trampoline(level: u8) -> Result<usize, CompileError> {
    static ADDR: OnceLock<usize> = OnceLock::new();
    cached(&ADDR, Check::Access, level)
}

/// The address of the trampoline for a group of loads.
pub(crate) fn group_trampoline(level: u8) -> Result<usize, CompileError> {
    static ADDR: OnceLock<usize> = OnceLock::new();
    cached(&ADDR, Check::Group, level)
}

/// The address of the trampoline for helper calls; only where [`ABORTS`].
pub(crate) fn helper_trampoline(level: u8) -> Result<usize, CompileError> {
    static ADDR: OnceLock<usize> = OnceLock::new();
    cached(&ADDR, Check::Helper, level)
}

/// The trampoline `check`, built at its first use with the host ISA of
/// that compile's optimisation `level` (so that the first compile in a
/// process builds no other ISA); any level makes the same trampoline
/// behave the same, and it runs on cold paths only.
fn cached(slot: &OnceLock<usize>, check: Check, level: u8) -> Result<usize, CompileError> {
    static BUILDING: Mutex<()> = Mutex::new(());
    if let Some(&addr) = slot.get() {
        return Ok(addr);
    }
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&addr) = slot.get() {
        return Ok(addr);
    }
    let addr = build(check, level).map_err(fail)?;
    Ok(*slot.get_or_init(|| addr))
}

fn build(check: Check, level: u8) -> Result<usize, String> {
    let isa = isa(level).map_err(|e| e.to_string())?;
    let isa: &dyn TargetIsa = isa.as_ref();
    let mut fctx = FunctionBuilderContext::new();
    let func = match check {
        Check::Access => trampoline_function(isa, &mut fctx),
        Check::Group => group_trampoline_function(isa, &mut fctx),
        Check::Helper => helper_trampoline_function(isa, &mut fctx),
    };
    let mut ctx = Context::for_function(func);
    let code = ctx
        .compile(isa, &mut ControlPlane::default())
        .map_err(|e| format!("the check trampoline: {:?}", e.inner))?;
    let function = FunctionCode {
        index: 0,
        bytes: code.code_buffer().to_vec(),
        relocs: code.buffer.relocs().to_vec(),
        callees: Vec::new(),
        alignment: code.buffer.alignment,
        loop_header: None,
        may_abort: false,
    };
    let align = isa.function_alignment().preferred as usize;
    let (memory, addrs) = CodeMemory::place(&[function], align)?;
    // Called by every checked program for the rest of the process.
    std::mem::forget(memory);
    Ok(addrs[0])
}

/// The trampoline `(ctx, addr, access, frame_lo)`: `bpfvm_check_access`,
/// which records a refused access's trap but for its pc, stored here.
fn trampoline_function(isa: &dyn TargetIsa, fctx: &mut FunctionBuilderContext) -> Function {
    let mut func = Function::with_name_signature(UserFuncName::user(1, 0), signature());
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let entry = b.create_block();
    let refused = b.create_block();
    let done = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let p = b.block_params(entry).to_vec();
    let (ctx, addr, access, frame_lo) = (p[0], p[1], p[2], p[3]);
    let t = MemFlagsData::trusted();
    let size = b.ins().band_imm_s(access, 0xff);
    let store = b.ins().ushr_imm_s(access, 8);
    let store = b.ins().band_imm_s(store, 1);
    let check_sig = b.import_signature(c_signature(isa, 5));
    let f = b
        .ins()
        .iconst(I64, bpfvm_check_access as *const () as usize as i64);
    let call = b
        .ins()
        .call_indirect(check_sig, f, &[ctx, addr, size, store, frame_lo]);
    let allowed = b.inst_results(call)[0];
    if !ABORTS {
        b.ins().store(t, allowed, ctx, OFFSET_CHECK_ANSWER);
    }
    b.ins().brif(allowed, done, &[], refused, &[]);
    b.switch_to_block(refused);
    let pc = b.ins().ushr_imm_s(access, 16);
    b.ins().store(t, pc, ctx, OFFSET_TRAP_PC);
    abort_if_aborting(isa, &mut b, ctx);
    b.ins().return_(&[]);
    b.switch_to_block(done);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(isa.frontend_config());
    func
}

/// The trampoline `(ctx, base, table, frame_lo)`: `bpfvm_check_group`,
/// which records a refused load's whole trap.
fn group_trampoline_function(isa: &dyn TargetIsa, fctx: &mut FunctionBuilderContext) -> Function {
    let mut func = Function::with_name_signature(UserFuncName::user(1, 1), signature());
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let p = b.block_params(entry).to_vec();
    let check_sig = b.import_signature(c_signature(isa, 4));
    let f = b
        .ins()
        .iconst(I64, bpfvm_check_group as *const () as usize as i64);
    let call = b.ins().call_indirect(check_sig, f, &p);
    let allowed = b.inst_results(call)[0];
    if ABORTS {
        let refused = b.create_block();
        let done = b.create_block();
        b.ins().brif(allowed, done, &[], refused, &[]);
        b.switch_to_block(refused);
        abort_if_aborting(isa, &mut b, p[0]);
        b.ins().return_(&[]);
        b.switch_to_block(done);
    } else {
        b.ins()
            .store(MemFlagsData::trusted(), allowed, p[0], OFFSET_CHECK_ANSWER);
    }
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(isa.frontend_config());
    func
}

/// The trampoline `(ctx, id, r1, .., r5, pc) -> r0`:
/// `bpfvm_call_helper_by_id`, which calls the helper `id` of the context's
/// table with `(ctx, data, r1, .., r5)`, or records `TRAP_UNKNOWN_HELPER`
/// (the id as its address) for an id past the table or an empty slot, as
/// `Translator::call_helper` does inline; then, when a trap is recorded
/// (that one or the helper's), its pc, and the run is abandoned.
fn helper_trampoline_function(isa: &dyn TargetIsa, fctx: &mut FunctionBuilderContext) -> Function {
    let mut func = Function::with_name_signature(UserFuncName::user(1, 2), helper_signature(isa));
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let entry = b.create_block();
    let failed = b.create_block();
    let done = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let p = b.block_params(entry).to_vec();
    let (ctx, pc) = (p[0], p[7]);
    let call_sig = b.import_signature(c_signature(isa, 7));
    let f = b
        .ins()
        .iconst(I64, bpfvm_call_helper_by_id as *const () as usize as i64);
    let call = b.ins().call_indirect(call_sig, f, &p[..7]);
    let r0 = b.inst_results(call)[0];
    let t = MemFlagsData::trusted();
    let code = b.ins().load(I32, t, ctx, OFFSET_TRAP_CODE);
    b.ins().brif(code, failed, &[], done, &[]);

    b.switch_to_block(failed);
    b.ins().store(t, pc, ctx, OFFSET_TRAP_PC);
    abort_if_aborting(isa, &mut b, ctx);
    let zero = b.ins().iconst(I64, 0);
    b.ins().return_(&[zero]);

    b.switch_to_block(done);
    b.ins().return_(&[r0]);
    b.seal_all_blocks();
    b.finalize(isa.frontend_config());
    func
}

/// Where [`ABORTS`], a call of [`abort_fn`] with `ctx`, which does not
/// return: the run ends with the trap recorded.
fn abort_if_aborting(isa: &dyn TargetIsa, b: &mut FunctionBuilder<'_>, ctx: Value) {
    if ABORTS {
        let sig = b.import_signature(c_signature(isa, 1));
        let f = b.ins().iconst(I64, abort_fn() as i64);
        b.ins().call_indirect(sig, f, &[ctx]);
    }
}
