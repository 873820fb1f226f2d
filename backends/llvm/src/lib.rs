//! bpfvm tier 1: LLVM (through inkwell, LLVM 19).
//!
//! - [`LlvmBackend`] (tier `llvm`): an optimising JIT with the same ABI and
//!   semantics as every other tier (`extern "C" fn(ctx, r1, r2) -> r0`, see
//!   `bpfvm_engine::vmctx`).
//! - [`emit_llvm_ir`], [`emit_asm`]: the program as LLVM IR or host assembly.
//! - [`compile_object`]: an AOT relocatable native object callable from C
//!   (see [`AOT_HEADER`]); [`load_object`] loads such an object back into
//!   the process and [`AotBackend`] (tier `aot`) does both, so that the
//!   conformance suite runs on AOT code too.
//! - [`emit_ptx`]: the program as an NVPTX kernel.
//!
//! ```
//! use std::sync::Arc;
//! use bpfvm_engine::backend::{self, Backend, RunEnv};
//! use bpfvm_engine::{asm, helpers::Helpers, verifier};
//! use bpfvm_llvm::LlvmBackend;
//!
//! let insns = asm::assemble("mov %r0, %r2\nadd %r0, 40\nexit").unwrap();
//! let program = Arc::new(verifier::verify(insns, &Default::default()).unwrap());
//! let code = LlvmBackend.compile(&program, &Default::default()).unwrap();
//! let table = Helpers::new().table();
//! let env = RunEnv { helpers: &table, regions: &[], host: std::ptr::null_mut() };
//! let out = backend::execute(code.as_ref(), &env, &mut [0u8; 2]).unwrap();
//! assert_eq!(out.r0, 42);
//! ```
//!
//! # How code is made and freed
//!
//! Every compile creates its own LLVM `Context`, builds one module (see
//! `translate` for the IR), runs the new pass manager's `default<ON>`
//! pipeline with the host `TargetMachine` (host triple, CPU and features),
//! and emits a relocatable ELF object into memory. The LLVM context is then
//! dropped: no LLVM object outlives the compile, which is why the returned
//! code is plainly `Send + Sync`. The object is loaded by this crate's small
//! ELF loader (`loader`) into an `mmap`ed image, freed (`munmap`) when the
//! compiled code is dropped. The JIT and the AOT tier share that loader.
//!
//! # Semantics
//!
//! Bit for bit those of the reference interpreter (`bpfvm_engine::interp`),
//! and the same trap records (code, pc, address, size) as the Cranelift
//! tier: checked memory inline for the input region and the current stack
//! frame and through `bpfvm_check_access` otherwise, budget per basic block,
//! call depth, helper traps. The IR never has undefined behaviour whatever
//! the bytecode (guarded divisions, masked shifts, no `nsw`/`nuw`, `align 1`
//! accesses, alignment-checked atomics).
//!
//! # Limits
//!
//! The in-process loader (JIT and [`load_object`]) handles x86-64 objects
//! only; on other hosts the `llvm` and `aot` tiers report a compile error.
//! [`compile_object`] cross-compiles for x86-64 and AArch64 targets, and
//! [`emit_ptx`] for NVPTX. Optimising at O3 costs LLVM roughly 15 ms for a
//! tiny program and a few hundred ms per thousand instructions.

mod aot;
mod entry;
mod jit;
mod loader;
mod ptx;
mod target;
mod translate;

use bpfvm_engine::backend::{validate_options, CompileOptions};
use bpfvm_engine::program::Program;
use inkwell::context::Context;
use inkwell::targets::FileType;

pub use aot::{
    aot_header, compile_object, load_object, AotBackend, AotCode, AotOptions, LoadOptions,
    SymbolResolver, AOT_HEADER,
};
pub use bpfvm_engine::backend::CompileError;
pub use jit::{LlvmBackend, LlvmCode};
pub use loader::LoadError;
pub use ptx::emit_ptx;

/// Which product an error is about (the `tier` of [`CompileError::Failed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    Llvm,
    Aot,
    Ptx,
}

impl Tier {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tier::Llvm => "llvm",
            Tier::Aot => "aot",
            Tier::Ptx => "ptx",
        }
    }
}

pub(crate) fn fail(tier: Tier, message: impl std::fmt::Display) -> CompileError {
    CompileError::Failed {
        tier: tier.name(),
        message: message.to_string(),
    }
}

/// The program as LLVM IR text, in the JIT's form (the module the `llvm`
/// tier compiles), before or after the `default<ON>` pipeline.
pub fn emit_llvm_ir(
    program: &Program,
    opts: &CompileOptions,
    optimized: bool,
) -> Result<String, CompileError> {
    validate_options(opts)?;
    let machine = target::machine(Tier::Llvm, &target::MachineSpec::default(), opts.opt_level)?;
    let context = Context::create();
    let module = jit::jit_module(&context, program, opts, &machine)?;
    if optimized {
        target::optimize(Tier::Llvm, &module, &machine, opts.opt_level)?;
    } else {
        module
            .verify()
            .map_err(|e| fail(Tier::Llvm, format!("generated invalid LLVM IR: {e}")))?;
    }
    Ok(module.print_to_string().to_string())
}

/// The program as optimised native assembly for the host (AT&T syntax).
pub fn emit_asm(program: &Program, opts: &CompileOptions) -> Result<String, CompileError> {
    validate_options(opts)?;
    let machine = target::machine(Tier::Llvm, &target::MachineSpec::default(), opts.opt_level)?;
    let context = Context::create();
    let module = jit::jit_module(&context, program, opts, &machine)?;
    target::optimize(Tier::Llvm, &module, &machine, opts.opt_level)?;
    let text = target::emit(Tier::Llvm, &module, &machine, FileType::Assembly)?;
    String::from_utf8(text).map_err(|e| fail(Tier::Llvm, format!("assembly is not UTF-8: {e}")))
}
