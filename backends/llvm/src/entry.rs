//! The exported entry points wrapped around a translated program: the
//! VmCtx-ABI entry (JIT and AOT), the C entries of an AOT object, and the
//! NVPTX kernel.

use bpfvm_engine::isa::STACK_FRAME_SIZE;
use bpfvm_engine::vmctx::*;
use inkwell::attributes::AttributeLoc;
use inkwell::module::Linkage;
use inkwell::values::{FunctionValue, IntValue, PointerValue};
use inkwell::IntPredicate;

use crate::translate::Codegen;
use crate::CompileError;

type R<T> = Result<T, CompileError>;

/// Size of `VmCtx` as the generated code lays it out.
pub(crate) const VMCTX_SIZE: u64 = std::mem::size_of::<VmCtx>() as u64;

/// Magic number at the start of an AOT object's `<entry>_info` record.
pub(crate) const INFO_MAGIC: u64 = 0x3176_6d66_7062_0001; // "bpfvm1" + version 1

fn b_err(cg: &Codegen, e: impl std::fmt::Display) -> CompileError {
    cg.fail(format!("LLVM builder: {e}"))
}

/// `name(ptr ctx, i64 r1, i64 r2) -> i64`: the VmCtx ABI every executor
/// shares; r10 = `ctx.stack_top`.
pub(crate) fn vmctx_entry<'ctx>(cg: &Codegen<'ctx>, name: &str) -> R<FunctionValue<'ctx>> {
    let i64 = cg.i64;
    let f = cg.module.add_function(
        name,
        i64.fn_type(&[cg.ptr.into(), i64.into(), i64.into()], false),
        Some(Linkage::External),
    );
    f.add_attribute(AttributeLoc::Function, cg.attr("nounwind"));
    let main = cg.main_function()?;
    let bb = cg.context.append_basic_block(f, "entry");
    cg.builder.position_at_end(bb);
    let p = |k| {
        f.get_nth_param(k)
            .ok_or_else(|| cg.fail("missing parameter"))
    };
    let ctx = p(0)?.into_pointer_value();
    let top = cg.load_field(ctx, OFFSET_STACK_TOP, i64)?;
    let z = i64.const_zero();
    let r0 = cg.call_bpf(
        main,
        ctx,
        [p(1)?.into_int_value(), p(2)?.into_int_value(), z, z, z, top],
    )?;
    cg.builder
        .build_return(Some(&r0))
        .map_err(|e| b_err(cg, e))?;
    Ok(f)
}

/// Builds a zeroed `VmCtx` and a zeroed stack of `call_depth` frames on
/// the current function's stack, with the input `[mem, mem + len)`, runs
/// the program and returns `(ctx, r0)`.
fn run_on_local_ctx<'ctx>(
    cg: &Codegen<'ctx>,
    mem: IntValue<'ctx>,
    len: IntValue<'ctx>,
) -> R<(PointerValue<'ctx>, IntValue<'ctx>)> {
    let b = &cg.builder;
    let e = |x| b_err(cg, x);
    let i64 = cg.i64;
    let ctx_ty = cg.i8.array_type(VMCTX_SIZE as u32);
    let ctx = b.build_alloca(ctx_ty, "ctx").map_err(e)?;
    set_align(cg, ctx, 16)?;
    b.build_memset(
        ctx,
        16,
        cg.i8.const_zero(),
        i64.const_int(VMCTX_SIZE, false),
    )
    .map_err(e)?;
    let stack_size = (cg.opts.call_depth * STACK_FRAME_SIZE) as u64;
    let stack_ty = cg.i8.array_type(stack_size as u32);
    let stack = b.build_alloca(stack_ty, "stack").map_err(e)?;
    set_align(cg, stack, 16)?;
    b.build_memset(
        stack,
        16,
        cg.i8.const_zero(),
        i64.const_int(stack_size, false),
    )
    .map_err(e)?;
    let bottom = b.build_ptr_to_int(stack, i64, "bottom").map_err(e)?;
    let top = b
        .build_int_add(bottom, i64.const_int(stack_size, false), "top")
        .map_err(e)?;
    let end = b.build_int_add(mem, len, "end").map_err(e)?;
    cg.store_field(ctx, OFFSET_MEM_START, mem)?;
    cg.store_field(ctx, OFFSET_MEM_END, end)?;
    cg.store_field(ctx, OFFSET_STACK_TOP, top)?;
    cg.store_field(ctx, OFFSET_STACK_BOTTOM, bottom)?;
    let budget = cg.opts.budget.unwrap_or(0);
    cg.store_field(ctx, OFFSET_BUDGET, i64.const_int(budget, false))?;
    let z = i64.const_zero();
    let r0 = cg.call_bpf(cg.main_function()?, ctx, [mem, len, z, z, z, top])?;
    Ok((ctx, r0))
}

fn set_align(cg: &Codegen, p: PointerValue, bytes: u32) -> R<()> {
    match p.as_instruction() {
        Some(i) => i
            .set_alignment(bytes)
            .map_err(|e| cg.fail(format!("alignment: {e}"))),
        None => Ok(()),
    }
}

/// The C entries of an AOT object:
///
/// - `uint64_t <name>_ex(void *mem, uint64_t len, struct bpfvm_aot_trap *trap)`
/// - `uint64_t <name>(void *mem, uint64_t len)` (`_ex` with no trap record)
/// - `uint64_t <name>_vmctx(VmCtx *ctx, uint64_t r1, uint64_t r2)`
/// - `const uint64_t <name>_info[5]`: magic, flags (bit 0 checked, bit 1
///   budget), initial budget, call depth, optimisation level.
pub(crate) fn aot_entries(cg: &Codegen, name: &str, maps_digest: Option<u64>) -> R<()> {
    let b = &cg.builder;
    let e = |x| b_err(cg, x);
    let i64 = cg.i64;
    vmctx_entry(cg, &format!("{name}_vmctx"))?;

    // <name>_ex
    let ex = cg.module.add_function(
        &format!("{name}_ex"),
        i64.fn_type(&[cg.ptr.into(), i64.into(), cg.ptr.into()], false),
        Some(Linkage::External),
    );
    ex.add_attribute(AttributeLoc::Function, cg.attr("nounwind"));
    let bb = cg.context.append_basic_block(ex, "entry");
    b.position_at_end(bb);
    let p = |k| {
        ex.get_nth_param(k)
            .ok_or_else(|| cg.fail("missing parameter"))
    };
    let mem = b
        .build_ptr_to_int(p(0)?.into_pointer_value(), i64, "mem")
        .map_err(e)?;
    let len = p(1)?.into_int_value();
    let out = p(2)?.into_pointer_value();
    let (ctx, r0) = run_on_local_ctx(cg, mem, len)?;
    let code = cg.load_field(ctx, OFFSET_TRAP_CODE, cg.i32)?;
    let write = cg.context.append_basic_block(ex, "report");
    let done = cg.context.append_basic_block(ex, "done");
    let no_out = b.build_is_null(out, "noout").map_err(e)?;
    b.build_conditional_branch(no_out, done, write).map_err(e)?;
    b.position_at_end(write);
    // struct bpfvm_aot_trap { u32 code; u32 size; u64 pc; u64 addr; u64 budget_left; }
    let size = cg.load_field(ctx, OFFSET_TRAP_SIZE, cg.i32)?;
    let pc = cg.load_field(ctx, OFFSET_TRAP_PC, i64)?;
    let addr = cg.load_field(ctx, OFFSET_TRAP_ADDR, i64)?;
    let left = cg.load_field(ctx, OFFSET_BUDGET, i64)?;
    cg.store_field(out, 0, code)?;
    cg.store_field(out, 4, size)?;
    cg.store_field(out, 8, pc)?;
    cg.store_field(out, 16, addr)?;
    cg.store_field(out, 24, left)?;
    b.build_unconditional_branch(done).map_err(e)?;
    b.position_at_end(done);
    let trapped = b
        .build_int_compare(IntPredicate::NE, code, cg.i32.const_zero(), "trapped")
        .map_err(e)?;
    let ret = b
        .build_select(trapped, i64.const_all_ones(), r0, "ret")
        .map_err(e)?;
    b.build_return(Some(&ret)).map_err(e)?;

    // <name>
    let plain = cg.module.add_function(
        name,
        i64.fn_type(&[cg.ptr.into(), i64.into()], false),
        Some(Linkage::External),
    );
    plain.add_attribute(AttributeLoc::Function, cg.attr("nounwind"));
    let bb = cg.context.append_basic_block(plain, "entry");
    b.position_at_end(bb);
    let p = |k| {
        plain
            .get_nth_param(k)
            .ok_or_else(|| cg.fail("missing parameter"))
    };
    let call = b
        .build_call(
            ex,
            &[p(0)?.into(), p(1)?.into(), cg.ptr.const_null().into()],
            "r0",
        )
        .map_err(e)?;
    let r0 = cg.int_result(call)?;
    b.build_return(Some(&r0)).map_err(e)?;

    // <name>_info
    let opts = &cg.opts;
    let flags = opts.checked as u64 | (opts.budget.is_some() as u64) << 1;
    let words = [
        INFO_MAGIC,
        flags,
        opts.budget.unwrap_or(0),
        opts.call_depth as u64,
        opts.opt_level as u64,
    ];
    let consts: Vec<IntValue> = words.iter().map(|w| i64.const_int(*w, false)).collect();
    let init = i64.const_array(&consts);
    let g = cg
        .module
        .add_global(init.get_type(), None, &format!("{name}_info"));
    g.set_initializer(&init);
    g.set_constant(true);
    g.set_alignment(8);

    // <name>_maps_digest
    if let Some(digest) = maps_digest {
        let init = i64.const_int(digest, false);
        let g = cg
            .module
            .add_global(i64, None, &format!("{name}_maps_digest"));
        g.set_initializer(&init);
        g.set_constant(true);
        g.set_alignment(8);
    }
    Ok(())
}

/// The NVPTX kernel `bpf_kernel(u8 *mem, u64 per_thread_len, u64 *results,
/// u64 n)`: thread `i < n` runs the program over
/// `[mem + i * per_thread_len, + per_thread_len)` with a local stack and
/// writes r0, or `UINT64_MAX` when it trapped, to `results[i]`.
pub(crate) fn ptx_kernel(cg: &Codegen) -> R<()> {
    let b = &cg.builder;
    let e = |x| b_err(cg, x);
    let i64 = cg.i64;
    let kernel = cg.module.add_function(
        "bpf_kernel",
        cg.context.void_type().fn_type(
            &[cg.ptr.into(), i64.into(), cg.ptr.into(), i64.into()],
            false,
        ),
        Some(Linkage::External),
    );
    let bb = cg.context.append_basic_block(kernel, "entry");
    b.position_at_end(bb);
    let sreg = |name: &str| -> R<IntValue> {
        let f = match cg.module.get_function(name) {
            Some(f) => f,
            None => cg
                .module
                .add_function(name, cg.i32.fn_type(&[], false), None),
        };
        let call = b.build_call(f, &[], "sreg").map_err(e)?;
        let v = cg.int_result(call)?;
        b.build_int_z_extend(v, i64, "sreg").map_err(e)
    };
    let tid = sreg("llvm.nvvm.read.ptx.sreg.tid.x")?;
    let ctaid = sreg("llvm.nvvm.read.ptx.sreg.ctaid.x")?;
    let ntid = sreg("llvm.nvvm.read.ptx.sreg.ntid.x")?;
    let block_base = b.build_int_mul(ctaid, ntid, "base").map_err(e)?;
    let i = b.build_int_add(block_base, tid, "i").map_err(e)?;
    let p = |k| {
        kernel
            .get_nth_param(k)
            .ok_or_else(|| cg.fail("missing parameter"))
    };
    let mem = p(0)?.into_pointer_value();
    let per = p(1)?.into_int_value();
    let results = p(2)?.into_pointer_value();
    let n = p(3)?.into_int_value();
    let run = cg.context.append_basic_block(kernel, "run");
    let exit = cg.context.append_basic_block(kernel, "exit");
    let inside = b
        .build_int_compare(IntPredicate::ULT, i, n, "inside")
        .map_err(e)?;
    b.build_conditional_branch(inside, run, exit).map_err(e)?;
    b.position_at_end(exit);
    b.build_return(None).map_err(e)?;
    b.position_at_end(run);
    let mem_int = b.build_ptr_to_int(mem, i64, "mem").map_err(e)?;
    let off = b.build_int_mul(i, per, "off").map_err(e)?;
    let base = b.build_int_add(mem_int, off, "base").map_err(e)?;
    let (ctx, r0) = run_on_local_ctx(cg, base, per)?;
    let code = cg.load_field(ctx, OFFSET_TRAP_CODE, cg.i32)?;
    let trapped = b
        .build_int_compare(IntPredicate::NE, code, cg.i32.const_zero(), "trapped")
        .map_err(e)?;
    let value = b
        .build_select(trapped, i64.const_all_ones(), r0, "result")
        .map_err(e)?
        .into_int_value();
    let res_int = b.build_ptr_to_int(results, i64, "res").map_err(e)?;
    let slot_off = b
        .build_int_mul(i, i64.const_int(8, false), "slot")
        .map_err(e)?;
    let slot = b.build_int_add(res_int, slot_off, "slot").map_err(e)?;
    let slot = b.build_int_to_ptr(slot, cg.ptr, "slot").map_err(e)?;
    b.build_store(slot, value).map_err(e)?;
    b.build_return(None).map_err(e)?;

    // Mark it a kernel for the NVPTX back end.
    let md = cg.context.metadata_node(&[
        kernel.as_global_value().as_pointer_value().into(),
        cg.context.metadata_string("kernel").into(),
        cg.i32.const_int(1, false).into(),
    ]);
    cg.module
        .add_global_metadata("nvvm.annotations", &md)
        .map_err(|x| cg.fail(format!("nvvm.annotations: {x}")))
}
