//! bpfvm tier 0: a Cranelift JIT.
//!
//! Each eBPF function becomes one Cranelift function
//! `(ctx, r1, r2, r3, r4, r5, r10) -> r0` (see [`translate`]); the program
//! is entered by calling the first one with r10 at the top of the stack.
//! All of a program's functions live in one mapping, freed when the
//! [`CraneliftCode`] is dropped.

mod code_memory;
mod slow_path;
mod translate;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bpfvm_engine::backend::{
    validate_options, Backend, CompileError, CompileOptions, CompiledCode,
};
use bpfvm_engine::instr::Instr;
use bpfvm_engine::program::Program;
use bpfvm_engine::vmctx::VmCtx;
use code_memory::{CodeMemory, FunctionCode};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{
    AbiParam, ExtFuncData, ExternalName, Function, Signature, UserExternalName,
    UserExternalNameRef, UserFuncName,
};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

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
        let (memory, entry) = build(program, opts, None)?;
        Ok(Box::new(CraneliftCode {
            _memory: memory,
            entry,
            opts: opts.clone(),
        }))
    }
}

/// The Cranelift IR of a program, before and after optimisation.
pub struct ClifText {
    pub before: String,
    pub after: String,
    /// Cranelift's listing of the machine instructions after register
    /// allocation.
    pub machine: String,
}

/// Translates and compiles a program, returning its Cranelift IR (for
/// `bpfvm emit clif`).
pub fn clif_text(program: &Program, opts: &CompileOptions) -> Result<ClifText, CompileError> {
    validate_options(opts)?;
    let mut text = ClifText {
        before: String::new(),
        after: String::new(),
        machine: String::new(),
    };
    build(program, opts, Some(&mut text))?;
    Ok(text)
}

/// Signature of every generated function, the first one (pc 0) included:
/// `(ctx, r1, r2, r3, r4, r5, r10) -> r0`. The program is entered by
/// calling its first function directly, with r10 at the top of the stack.
type Entry = unsafe extern "C" fn(*mut VmCtx, u64, u64, u64, u64, u64, u64) -> u64;

/// A compiled program. Dropping it unmaps its machine code.
pub struct CraneliftCode {
    entry: Entry,
    opts: CompileOptions,
    /// Declared last so the entry pointer is never used after unmapping.
    _memory: CodeMemory,
}

// SAFETY: the machine code is immutable after placement and may be called
// from any thread; `CodeMemory` is only unmapped on drop, when no call can
// be running (drop takes the value by `&mut`).
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
        // SAFETY: the caller guarantees a prepared context; the entry was
        // generated for this ABI, with r10 in its last argument.
        unsafe {
            let r10 = (*ctx).stack_top;
            (self.entry)(ctx, r1, r2, 0, 0, 0, r10)
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
            if opt == "none" {
                // Tier 0's fast path: the single-pass register allocator.
                set(&mut flags, "regalloc_algorithm", "single_pass")?;
            }
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

fn signature(isa: &dyn TargetIsa, params: usize) -> Signature {
    let mut sig = Signature::new(isa.default_call_conv());
    for _ in 0..params {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// Cranelift's per-function scratch state, kept per thread so that each
/// compile reuses the allocations of the last one.
struct Scratch {
    ctx: Context,
    fctx: FunctionBuilderContext,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

fn build(
    program: &Program,
    opts: &CompileOptions,
    text: Option<&mut ClifText>,
) -> Result<(CodeMemory, Entry), CompileError> {
    SCRATCH.with(|cell| {
        // Compiles do not nest; should one ever, it gets fresh state.
        let mut taken = cell.try_borrow_mut().ok().and_then(|mut s| s.take());
        let scratch = taken.get_or_insert_with(|| Scratch {
            ctx: Context::new(),
            fctx: FunctionBuilderContext::new(),
        });
        let result = build_with(program, opts, text, scratch);
        scratch.ctx.clear();
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = taken;
        }
        result
    })
}

fn build_with(
    program: &Program,
    opts: &CompileOptions,
    mut text: Option<&mut ClifText>,
    scratch: &mut Scratch,
) -> Result<(CodeMemory, Entry), CompileError> {
    let isa = isa(opts.opt_level > 0)?;
    let isa = isa.as_ref();
    // (signature, (ctx, data, r1..r5), (ctx, addr, size, write, frame_lo))
    let internal = signature(isa, 7);
    let Scratch { ctx, fctx } = scratch;
    let check_fn = if opts.checked {
        slow_path::trampoline()?
    } else {
        0
    };
    let mut compiled = Vec::with_capacity(program.functions().len());
    for f in program.functions() {
        ctx.func =
            Function::with_name_signature(UserFuncName::user(0, f.start as u32), internal.clone());
        let mut callees = Vec::new();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
            let callee_sig = b.import_signature(internal.clone());
            // Import only the functions this one calls.
            let mut refs = HashMap::new();
            for pc in f.start..f.end {
                let Instr::CallLocal { target } = program.instrs()[pc] else {
                    continue;
                };
                let target = target as usize;
                if refs.contains_key(&target) {
                    continue;
                }
                let name = b
                    .func
                    .declare_imported_user_function(UserExternalName::new(0, target as u32));
                callees.push((name, target as u32));
                let r = b.import_function(ExtFuncData {
                    name: ExternalName::User(name),
                    signature: callee_sig,
                    colocated: true,
                    patchable: false,
                });
                refs.insert(target, r);
            }
            let helper_sig = b.import_signature(signature(isa, 7));
            let check_sig = b.import_signature(slow_path::signature());
            let lookup = |start: usize| refs.get(&start).copied();
            let ext = Externals {
                funcs: &lookup,
                helper_sig,
                check_sig,
                check_fn: check_fn as i64,
            };
            Translator::new(&mut b, program, opts, &ext, *f).translate();
            b.finalize(isa.frontend_config());
        }
        compiled.push(compile_function(
            isa,
            ctx,
            f.start as u32,
            callees,
            text.as_deref_mut(),
        )?);
    }

    let align = isa.function_alignment().preferred as usize;
    let (memory, addrs) = CodeMemory::place(&compiled, align).map_err(fail)?;
    let entry_addr = compiled
        .iter()
        .position(|c| c.index == 0)
        .map(|k| addrs[k])
        .ok_or_else(|| fail("the program has no function at pc 0"))?;
    // SAFETY: the function at pc 0 was generated with exactly the `Entry`
    // signature in the platform's default calling convention (the C one),
    // and `memory` is now executable.
    let entry = unsafe { std::mem::transmute::<usize, Entry>(entry_addr) };
    Ok((memory, entry))
}

/// Compiles the function in `ctx` to machine code, recording its IR for
/// `emit clif` when asked.
fn compile_function(
    isa: &dyn TargetIsa,
    ctx: &mut Context,
    index: u32,
    callees: Vec<(UserExternalNameRef, u32)>,
    text: Option<&mut ClifText>,
) -> Result<FunctionCode, CompileError> {
    let before = text.is_some().then(|| ctx.func.display().to_string());
    ctx.set_disasm(text.is_some());
    let code = ctx
        .compile(isa, &mut ControlPlane::default())
        .map_err(|e| fail(format!("{:?}", e.inner)))?;
    let bytes = code.code_buffer().to_vec();
    let relocs = code.buffer.relocs().to_vec();
    let machine = code.vcode.clone();
    if let (Some(t), Some(before)) = (text, before) {
        t.before.push_str(&before);
        t.before.push('\n');
        t.after.push_str(&ctx.func.display().to_string());
        t.after.push('\n');
        t.machine.push_str(&format!(
            "function u0:{index} ({} bytes)\n{}\n",
            bytes.len(),
            machine.unwrap_or_default()
        ));
    }
    ctx.clear();
    Ok(FunctionCode {
        index,
        bytes,
        relocs,
        callees,
    })
}
