//! What the tiers can write out instead of running: Cranelift IR, LLVM IR,
//! native assembly, PTX, and AOT native objects (and loading those back).
//! Each needs its tier compiled in; without it the answer is
//! [`TierError::NotCompiledIn`].

use bpfvm_engine::backend::{CompileError, CompileOptions, CompiledCode};
use bpfvm_engine::Program;

use crate::tier::TierError;

/// Why an output could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error(transparent)]
    Tier(#[from] TierError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("cannot load the object: {0}")]
    Load(String),
}

/// Text outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOutput {
    /// Cranelift IR before and after optimisation.
    Clif,
    /// LLVM IR, optimised or not.
    LlvmIr { optimized: bool },
    /// Native assembly from LLVM.
    Asm,
}

/// The program as text in the chosen form.
pub fn emit_text(
    program: &Program,
    opts: &CompileOptions,
    what: TextOutput,
) -> Result<String, EmitError> {
    match what {
        TextOutput::Clif => clif(program, opts),
        TextOutput::LlvmIr { optimized } => llvm_ir(program, opts, optimized),
        TextOutput::Asm => asm(program, opts),
    }
}

#[cfg(feature = "cranelift")]
fn clif(program: &Program, opts: &CompileOptions) -> Result<String, EmitError> {
    let t = bpfvm_cranelift::clif_text(program, opts)?;
    Ok(format!(
        ";; Cranelift IR at level {}, before optimisation\n{}\n;; after optimisation\n{}\n;; machine code after register allocation\n{}",
        opts.opt_level, t.before, t.after, t.machine
    ))
}

#[cfg(not(feature = "cranelift"))]
fn clif(_: &Program, _: &CompileOptions) -> Result<String, EmitError> {
    Err(TierError::NotCompiledIn("cranelift").into())
}

#[cfg(feature = "llvm")]
fn llvm_ir(program: &Program, opts: &CompileOptions, optimized: bool) -> Result<String, EmitError> {
    Ok(bpfvm_llvm::emit_llvm_ir(program, opts, optimized)?)
}

#[cfg(feature = "llvm")]
fn asm(program: &Program, opts: &CompileOptions) -> Result<String, EmitError> {
    Ok(bpfvm_llvm::emit_asm(program, opts)?)
}

#[cfg(not(feature = "llvm"))]
fn llvm_ir(_: &Program, _: &CompileOptions, _: bool) -> Result<String, EmitError> {
    Err(TierError::NotCompiledIn("llvm").into())
}

#[cfg(not(feature = "llvm"))]
fn asm(_: &Program, _: &CompileOptions) -> Result<String, EmitError> {
    Err(TierError::NotCompiledIn("llvm").into())
}

/// PTX for `nvptx64-nvidia-cuda` at `sm` (e.g. `sm_90`).
pub fn emit_ptx(program: &Program, opts: &CompileOptions, sm: &str) -> Result<String, EmitError> {
    #[cfg(feature = "llvm")]
    {
        Ok(bpfvm_llvm::emit_ptx(program, opts, sm)?)
    }
    #[cfg(not(feature = "llvm"))]
    {
        let _ = (program, opts, sm);
        Err(TierError::NotCompiledIn("llvm").into())
    }
}

/// Where and how an AOT object is built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AotTarget {
    /// The exported entry (`bpf_main` when `None`).
    pub entry: Option<String>,
    /// Target triple (the host when `None`).
    pub triple: Option<String>,
    /// CPU name (the host's, or generic for another triple, when `None`).
    pub cpu: Option<String>,
}

/// A relocatable native object whose entry is callable from C as
/// `uint64_t bpf_main(void *mem, uint64_t len)`.
pub fn compile_object(
    program: &Program,
    opts: &CompileOptions,
    target: &AotTarget,
) -> Result<Vec<u8>, EmitError> {
    compile_object_with(program, opts, target, None)
}

/// [`compile_object`] for a program of an ELF object: `maps_digest` (see
/// [`crate::object::LoadedObject::maps_digest`]) is exported as
/// `<entry>_maps_digest`, and function addresses are compiled in rather
/// than asked of `__lddw_helper_code_addr`.
pub fn compile_object_with(
    program: &Program,
    opts: &CompileOptions,
    target: &AotTarget,
    maps_digest: Option<u64>,
) -> Result<Vec<u8>, EmitError> {
    #[cfg(feature = "llvm")]
    {
        let aot = bpfvm_llvm::AotOptions {
            entry_name: target.entry.clone().unwrap_or_else(|| "bpf_main".into()),
            target_triple: target.triple.clone(),
            cpu: target.cpu.clone(),
            bake_function_addresses: maps_digest.is_some(),
            maps_digest,
            ..bpfvm_llvm::AotOptions::default()
        };
        Ok(bpfvm_llvm::compile_object(program, opts, &aot)?)
    }
    #[cfg(not(feature = "llvm"))]
    {
        let _ = (program, opts, target, maps_digest);
        Err(TierError::NotCompiledIn("llvm").into())
    }
}

/// Loads an AOT object made by [`compile_object`] so that it runs like any
/// compiled code (its helpers resolved to the run's helper table).
pub fn load_object(bytes: &[u8], entry: Option<&str>) -> Result<Box<dyn CompiledCode>, EmitError> {
    load_object_with(bytes, entry, None)
}

/// Resolves an undefined symbol of an AOT object to an address, or `None`.
pub type SymbolLookup<'a> = &'a dyn Fn(&str) -> Option<u64>;

/// Like [`load_object`], resolving the object's other undefined symbols
/// (the llvmbpf `lddw` hooks `__lddw_helper_map_by_fd`, `_map_by_idx`,
/// `_map_val`, `_var_addr`, `_code_addr`) with `symbols`.
pub fn load_object_with(
    bytes: &[u8],
    entry: Option<&str>,
    symbols: Option<SymbolLookup<'_>>,
) -> Result<Box<dyn CompiledCode>, EmitError> {
    load_object_digest(bytes, entry, symbols).map(|(code, _)| code)
}

/// [`load_object_with`], also giving the object's `<entry>_maps_digest`
/// when it has one ([`compile_object_with`]).
pub fn load_object_digest(
    bytes: &[u8],
    entry: Option<&str>,
    symbols: Option<SymbolLookup<'_>>,
) -> Result<(Box<dyn CompiledCode>, Option<u64>), EmitError> {
    #[cfg(feature = "llvm")]
    {
        let opts = bpfvm_llvm::LoadOptions {
            entry_name: entry.unwrap_or("bpf_main"),
            symbols,
        };
        let code =
            bpfvm_llvm::load_object(bytes, &opts).map_err(|e| EmitError::Load(e.to_string()))?;
        let digest = code.maps_digest();
        Ok((Box::new(code), digest))
    }
    #[cfg(not(feature = "llvm"))]
    {
        let _ = (bytes, entry, symbols);
        Err(TierError::NotCompiledIn("llvm").into())
    }
}
