//! The `llvm` tier: compile, emit an object in memory, load it.

use std::sync::Arc;

use bpfvm_engine::backend::{
    validate_options, Backend, CompileError, CompileOptions, CompiledCode,
};
use bpfvm_engine::program::Program;
use bpfvm_engine::vmctx::{bpfvm_check_access, VmCtx};
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::targets::{FileType, TargetMachine};

use crate::loader::{self, Image, Resolved};
use crate::target::{self, MachineSpec};
use crate::translate::{Codegen, Mode, CHECK_ACCESS};
use crate::{entry, fail, Tier};

/// Name of the JIT object's `(ctx, r1, r2) -> r0` entry.
pub(crate) const JIT_ENTRY: &str = "bpf_entry";

/// Entry signature of generated code: `(ctx, r1, r2) -> r0`.
pub(crate) type Entry = unsafe extern "C" fn(*mut VmCtx, u64, u64) -> u64;

/// The LLVM tier.
#[derive(Clone, Copy, Debug, Default)]
pub struct LlvmBackend;

impl Backend for LlvmBackend {
    fn name(&self) -> &'static str {
        Tier::Llvm.name()
    }

    fn compile(
        &self,
        program: &Arc<Program>,
        opts: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        Ok(Box::new(LlvmCode::compile(program, opts)?))
    }
}

/// A program compiled by the LLVM tier. Dropping it unmaps its code.
pub struct LlvmCode {
    image: Image,
    entry: Entry,
    opts: CompileOptions,
}

impl LlvmCode {
    /// Compiles `program` (what [`LlvmBackend::compile`] does, unboxed).
    pub fn compile(program: &Program, opts: &CompileOptions) -> Result<LlvmCode, CompileError> {
        validate_options(opts)?;
        let machine = target::machine(Tier::Llvm, &MachineSpec::default(), opts.opt_level)?;
        let object = {
            let context = Context::create();
            let module = jit_module(&context, program, opts, &machine)?;
            target::optimize(Tier::Llvm, &module, &machine, opts.opt_level)?;
            target::emit(Tier::Llvm, &module, &machine, FileType::Object)?
        };
        let image = loader::load(&object, &|name| match name {
            CHECK_ACCESS => Some(Resolved::Addr(
                bpfvm_check_access as *const () as usize as u64,
            )),
            _ => None,
        })
        .map_err(|e| fail(Tier::Llvm, format!("loading the compiled object: {e}")))?;
        let addr = image
            .symbol(JIT_ENTRY)
            .ok_or_else(|| fail(Tier::Llvm, "the compiled object has no entry"))?;
        // SAFETY: `bpf_entry` was generated with exactly the `Entry`
        // signature in the C calling convention, and lives in `image`,
        // which this value owns for as long as `entry` can be called.
        let entry = unsafe { std::mem::transmute::<usize, Entry>(addr as usize) };
        Ok(LlvmCode {
            image,
            entry,
            opts: opts.clone(),
        })
    }

    /// Bytes of memory the code occupies (mapped pages).
    pub fn code_size(&self) -> usize {
        self.image.mapped_len()
    }
}

impl CompiledCode for LlvmCode {
    fn tier(&self) -> &'static str {
        Tier::Llvm.name()
    }

    fn options(&self) -> &CompileOptions {
        &self.opts
    }

    unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64 {
        // SAFETY: the entry follows the VmCtx ABI and the caller guarantees
        // a prepared context.
        unsafe { (self.entry)(ctx, r1, r2) }
    }
}

/// The JIT's module: the program's functions plus `bpf_entry`.
pub(crate) fn jit_module<'ctx>(
    context: &'ctx Context,
    program: &Program,
    opts: &CompileOptions,
    machine: &TargetMachine,
) -> Result<Module<'ctx>, CompileError> {
    let mut cg = Codegen::new(context, "bpf", Mode::Jit, opts, Tier::Llvm);
    target::configure(&cg.module, machine);
    cg.translate_program(program)?;
    entry::vmctx_entry(&cg, JIT_ENTRY)?;
    Ok(cg.module)
}
