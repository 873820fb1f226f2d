//! Writing LLVM IR, PTX and AOT objects into caller buffers.
//!
//! Every function takes `buf`, its capacity `cap` and `needed`: when `cap`
//! is too small the answer is `BPFVM_E_BUFFER_TOO_SMALL` with `*needed` set
//! (pass `buf` NULL and `cap` 0 to ask for the size). The last output is
//! kept, so that the call after a size query does not compile again.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use runtime::emit::{compile_object, emit_ptx, emit_text, AotTarget, EmitError, TextOutput};

use crate::error::{guard, Code, Error, Result};
use crate::handles::{self, bpfvm_program};
use crate::program::{EmitKey, ProgramHandle};
use crate::util;

/// PTX's default target, as llvmbpf's `generate_ptx`.
const DEFAULT_SM: &str = "sm_60";

fn emit_error(e: EmitError) -> Error {
    let code = match &e {
        EmitError::Tier(_) => Code::Unsupported,
        EmitError::Compile(_) => Code::Compile,
        EmitError::Load(_) => Code::Aot,
    };
    Error::new(code, e.to_string())
}

/// The output for `key`, from the cache or made now.
fn output(p: &ProgramHandle, key: EmitKey) -> Result<Arc<Vec<u8>>> {
    let lock = || p.emitted.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, bytes)) = &*lock() {
        if *k == key {
            return Ok(bytes.clone());
        }
    }
    let what = match &key {
        EmitKey::LlvmIr { .. } => "LLVM IR",
        EmitKey::Ptx { .. } => "PTX",
        EmitKey::Aot { .. } => "AOT object",
    };
    let program = p.managed_program(what)?;
    let verified = program.verified();
    let opts = p.snapshot.settings.tier1_options();
    let bytes = match &key {
        EmitKey::LlvmIr { optimized } => {
            let mut text = emit_text(
                verified,
                &opts,
                TextOutput::LlvmIr {
                    optimized: *optimized,
                },
            )
            .map_err(emit_error)?
            .into_bytes();
            text.push(0);
            text
        }
        EmitKey::Ptx { sm } => {
            let mut text = emit_ptx(verified, &opts, sm)
                .map_err(emit_error)?
                .into_bytes();
            text.push(0);
            text
        }
        EmitKey::Aot { entry } => {
            let target = AotTarget {
                entry: entry.clone(),
                ..AotTarget::default()
            };
            compile_object(verified, &opts, &target).map_err(emit_error)?
        }
    };
    let bytes = Arc::new(bytes);
    *lock() = Some((key, bytes.clone()));
    Ok(bytes)
}

/// Copies `bytes` into the caller's buffer, or says how much is needed.
///
/// # Safety
/// `buf` points to `cap` writable bytes (or `cap` is 0); `needed` is NULL
/// or writable.
unsafe fn deliver(bytes: &[u8], buf: *mut c_void, cap: usize, needed: *mut usize) -> Result<()> {
    if !needed.is_null() {
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { needed.write(bytes.len()) };
    }
    if cap < bytes.len() {
        return Err(Error::new(
            Code::BufferTooSmall,
            format!("the buffer holds {cap} bytes, {} are needed", bytes.len()),
        ));
    }
    // SAFETY: forwarded contract on `buf` and `cap`.
    let dst = unsafe { util::bytes_mut(buf, cap, "buf") }?;
    dst[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

fn emit(
    program: *mut bpfvm_program,
    key: impl FnOnce() -> Result<EmitKey>,
    buf: *mut c_void,
    cap: usize,
    needed: *mut usize,
) -> c_int {
    guard(|| {
        let p = handles::program(program)?;
        let bytes = output(&p, key()?)?;
        // SAFETY: forwarded contract of the exported function.
        unsafe { deliver(&bytes, buf, cap, needed) }
    })
}

/// Writes the program's LLVM IR (optimised at the engine's LLVM level when
/// `optimized`), NUL-terminated, into `buf`. `*needed` counts the NUL.
///
/// # Safety
/// `buf` points to `cap` writable bytes (or `cap` is 0); `needed` is NULL
/// or points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_program_emit_llvm_ir(
    program: *mut bpfvm_program,
    optimized: c_int,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> c_int {
    let key = || {
        Ok(EmitKey::LlvmIr {
            optimized: optimized != 0,
        })
    };
    emit(program, key, buf as *mut c_void, cap, needed)
}

/// Writes the program as PTX for `nvptx64-nvidia-cuda` at `sm` (NULL:
/// `"sm_60"`), NUL-terminated, into `buf`. `*needed` counts the NUL.
///
/// # Safety
/// As `bpfvm_program_emit_llvm_ir`; `sm` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_program_emit_ptx(
    program: *mut bpfvm_program,
    sm: *const c_char,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> c_int {
    let key = || {
        // SAFETY: forwarded contract on `sm`.
        let sm = unsafe { util::opt_text(sm, "sm") }?.unwrap_or(DEFAULT_SM);
        Ok(EmitKey::Ptx { sm: sm.to_string() })
    };
    emit(program, key, buf as *mut c_void, cap, needed)
}

/// Writes a relocatable native object for the host into `buf`. Its entry
/// `entry` (NULL: `bpf_main`) is callable from C as
/// `uint64_t entry(void *mem, uint64_t len)`; it is compiled with the
/// engine's memory checks, budget, call depth and LLVM level. Load it back
/// with `bpfvm_engine_load_aot`, or link it into a host (see bpfvm-llvm's
/// AOT header for the symbols it needs).
///
/// # Safety
/// As `bpfvm_program_emit_llvm_ir`; `entry` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_program_write_aot(
    program: *mut bpfvm_program,
    entry: *const c_char,
    buf: *mut c_void,
    cap: usize,
    needed: *mut usize,
) -> c_int {
    let key = || {
        // SAFETY: forwarded contract on `entry`.
        let entry = unsafe { util::opt_text(entry, "entry") }?;
        Ok(EmitKey::Aot {
            entry: entry.map(str::to_string),
        })
    };
    emit(program, key, buf, cap, needed)
}
