//! NVPTX: the program as a CUDA kernel, as PTX text.

use bpfvm_engine::backend::{validate_options, CompileError, CompileOptions};
use bpfvm_engine::program::Program;
use inkwell::context::Context;
use inkwell::targets::FileType;

use crate::translate::{Codegen, Mode};
use crate::{entry, fail, target, Tier};

/// PTX for `nvptx64-nvidia-cuda` at architecture `sm` (e.g. `sm_70`).
///
/// The kernel is `.entry bpf_kernel(u8 *mem, u64 per_thread_len,
/// u64 *results, u64 n)`: thread `i = ctaid.x * ntid.x + tid.x`, when
/// `i < n`, runs the program with r1 = `mem + i * per_thread_len` and r2 =
/// `per_thread_len`, a zeroed stack of `opts.call_depth` frames in local
/// memory, and stores r0 to `results[i]`, or `UINT64_MAX` when the run
/// trapped (out-of-bounds access, budget, call depth, misaligned atomic).
///
/// In checked mode the input slice and the stack are the only accessible
/// memory. Programs that call helpers (there is no host on the GPU) or load
/// host addresses (`lddw` pseudo sources) are rejected with an error.
pub fn emit_ptx(
    program: &Program,
    opts: &CompileOptions,
    sm: &str,
) -> Result<String, CompileError> {
    validate_options(opts)?;
    let machine = target::ptx_machine(sm)?;
    let context = Context::create();
    let mut cg = Codegen::new(&context, "bpf", Mode::Ptx, opts, Tier::Ptx);
    target::configure(&cg.module, &machine);
    cg.translate_program(program)?;
    entry::ptx_kernel(&cg)?;
    let module = cg.module;
    target::optimize(Tier::Ptx, &module, &machine, opts.opt_level)?;
    let text = target::emit(Tier::Ptx, &module, &machine, FileType::Assembly)?;
    let text =
        String::from_utf8(text).map_err(|e| fail(Tier::Ptx, format!("PTX is not UTF-8: {e}")))?;
    if !text.contains(&format!(".target {sm}")) {
        return Err(fail(
            Tier::Ptx,
            format!("LLVM does not know the GPU architecture `{sm}`"),
        ));
    }
    Ok(text)
}
