//! bpfvm tier 0: a Cranelift JIT.
//!
//! Each eBPF function becomes one Cranelift function
//! `(ctx, r1, r2, r3, r4, r5, r10) -> r0` (see [`translate`]); a small entry
//! function `(ctx, r1, r2) -> r0` calls the first one with r10 at the top of
//! the stack. All of a program's functions live in one `JITModule`, freed
//! when the [`CraneliftCode`] is dropped.

mod translate;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bpfvm_engine::backend::{
    validate_options, Backend, CompileError, CompileOptions, CompiledCode,
};
use bpfvm_engine::program::Program;
use bpfvm_engine::vmctx::VmCtx;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{AbiParam, InstBuilder, Signature, UserFuncName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};

use translate::{Externals, Translator};

const TIER: &str = "cranelift";

/// The Cranelift tier.
#[derive(Clone, Copy, Debug, Default)]
pub struct CraneliftBackend;

impl Backend for CraneliftBackend {
    fn name(&self) -> &'static str {
        TIER
    }

    fn compile(
        &self,
        program: &Arc<Program>,
        opts: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        validate_options(opts)?;
        let (module, entry) = build(program, opts, None)?;
        Ok(Box::new(CraneliftCode {
            module: Some(module),
            entry,
            opts: opts.clone(),
        }))
    }
}

/// The Cranelift IR of a program, before and after optimisation.
pub struct ClifText {
    pub before: String,
    pub after: String,
}

/// Translates and compiles a program, returning its Cranelift IR (for
/// `bpfvm emit clif`).
pub fn clif_text(program: &Program, opts: &CompileOptions) -> Result<ClifText, CompileError> {
    validate_options(opts)?;
    let mut text = ClifText {
        before: String::new(),
        after: String::new(),
    };
    let (module, _) = build(program, opts, Some(&mut text))?;
    // SAFETY: no code from this module was ever called.
    unsafe { module.free_memory() };
    Ok(text)
}

/// Entry signature of generated code: `(ctx, r1, r2) -> r0`.
type Entry = unsafe extern "C" fn(*mut VmCtx, u64, u64) -> u64;

/// A compiled program. Dropping it frees its machine code.
pub struct CraneliftCode {
    module: Option<JITModule>,
    entry: Entry,
    opts: CompileOptions,
}

// SAFETY: after finalisation the module is only touched again to free its
// memory in `drop` (which takes `&mut self`); the machine code it holds is
// immutable and may be called from any thread.
unsafe impl Send for CraneliftCode {}
// SAFETY: as above; `call` only reads `entry`.
unsafe impl Sync for CraneliftCode {}

impl CompiledCode for CraneliftCode {
    fn tier(&self) -> &'static str {
        TIER
    }

    fn options(&self) -> &CompileOptions {
        &self.opts
    }

    unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64 {
        // SAFETY: the entry was generated for this ABI and the caller
        // guarantees a prepared context.
        unsafe { (self.entry)(ctx, r1, r2) }
    }
}

impl Drop for CraneliftCode {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: `&mut self` means no call into this code is running,
            // and no pointer to it survives this value.
            unsafe { m.free_memory() };
        }
    }
}

fn fail(message: impl std::fmt::Display) -> CompileError {
    CompileError::Failed {
        tier: TIER,
        message: message.to_string(),
    }
}

/// The host ISA, built once per optimisation setting.
fn isa(optimize: bool) -> Result<OwnedTargetIsa, CompileError> {
    static ISAS: OnceLock<Result<[OwnedTargetIsa; 2], String>> = OnceLock::new();
    let isas = ISAS.get_or_init(|| {
        let make = |opt: &str| -> Result<OwnedTargetIsa, String> {
            let mut flags = settings::builder();
            let set = |f: &mut settings::Builder, k: &str, v: &str| {
                f.set(k, v).map_err(|e| format!("setting {k}={v}: {e}"))
            };
            set(&mut flags, "opt_level", opt)?;
            set(&mut flags, "use_colocated_libcalls", "false")?;
            set(&mut flags, "is_pic", "false")?;
            let verify = if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            };
            set(&mut flags, "enable_verifier", verify)?;
            let builder =
                cranelift_native::builder().map_err(|e| format!("host not supported: {e}"))?;
            builder
                .finish(settings::Flags::new(flags))
                .map_err(|e| format!("building the host ISA: {e}"))
        };
        Ok([make("none")?, make("speed")?])
    });
    match isas {
        Ok(pair) => Ok(pair[optimize as usize].clone()),
        Err(e) => Err(fail(e)),
    }
}

fn internal_signature(module: &JITModule) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..7 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig
}

fn build(
    program: &Program,
    opts: &CompileOptions,
    mut text: Option<&mut ClifText>,
) -> Result<(JITModule, Entry), CompileError> {
    let isa = isa(opts.opt_level > 0)?;
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let internal = internal_signature(&module);
    let mut ids: HashMap<usize, FuncId> = HashMap::new();
    for f in program.functions() {
        let name = format!("bpf_fn_{}", f.start);
        let id = module
            .declare_function(&name, Linkage::Local, &internal)
            .map_err(fail)?;
        ids.insert(f.start, id);
    }

    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    for f in program.functions() {
        ctx.func.signature = internal.clone();
        ctx.func.name = UserFuncName::user(0, f.start as u32);
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let mut refs = HashMap::new();
            for (&start, &id) in &ids {
                refs.insert(start, module.declare_func_in_func(id, b.func));
            }
            let helper_sig = b.import_signature(helper_signature(&module));
            let check_sig = b.import_signature(check_signature(&module));
            let lookup = |start: usize| refs.get(&start).copied();
            let ext = Externals {
                funcs: &lookup,
                helper_sig,
                check_sig,
            };
            Translator::new(&mut b, program, opts, &ext, *f).translate();
            b.finalize(module.isa().frontend_config());
        }
        define(&mut module, ids[&f.start], &mut ctx, text.as_deref_mut())?;
    }

    // The entry: (ctx, r1, r2) -> r0, r10 = ctx.stack_top.
    let mut sig = module.make_signature();
    for _ in 0..3 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    let entry_id = module
        .declare_function("bpf_entry", Linkage::Local, &sig)
        .map_err(fail)?;
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(1, 0);
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let main = module.declare_func_in_func(ids[&0], b.func);
        let block = b.create_block();
        b.append_block_params_for_function_params(block);
        b.switch_to_block(block);
        b.seal_block(block);
        let p = b.block_params(block).to_vec();
        let top = b.ins().load(
            I64,
            cranelift_codegen::ir::MemFlagsData::trusted(),
            p[0],
            bpfvm_engine::vmctx::OFFSET_STACK_TOP,
        );
        let zero = b.ins().iconst(I64, 0);
        let call = b
            .ins()
            .call(main, &[p[0], p[1], p[2], zero, zero, zero, top]);
        let r0 = b.inst_results(call)[0];
        b.ins().return_(&[r0]);
        b.finalize(module.isa().frontend_config());
    }
    define(&mut module, entry_id, &mut ctx, text)?;
    module.finalize_definitions().map_err(fail)?;
    let ptr = module.get_finalized_function(entry_id);
    // SAFETY: `bpf_entry` was generated with exactly the `Entry` signature
    // in the platform's default calling convention (the C one).
    let entry = unsafe { std::mem::transmute::<*const u8, Entry>(ptr) };
    Ok((module, entry))
}

fn define(
    module: &mut JITModule,
    id: FuncId,
    ctx: &mut Context,
    text: Option<&mut ClifText>,
) -> Result<(), CompileError> {
    let before = text.is_some().then(|| ctx.func.display().to_string());
    module
        .define_function(id, ctx)
        .map_err(|e| fail(format!("{e:?}")))?;
    if let (Some(t), Some(before)) = (text, before) {
        t.before.push_str(&before);
        t.before.push('\n');
        t.after.push_str(&ctx.func.display().to_string());
        t.after.push('\n');
    }
    module.clear_context(ctx);
    Ok(())
}

/// `HelperFn`: (ctx, data, r1..r5) -> r0.
fn helper_signature(module: &JITModule) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..7 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// `bpfvm_check_access`: (ctx, addr, size, write, frame_lo) -> allowed.
fn check_signature(module: &JITModule) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..5 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig
}
