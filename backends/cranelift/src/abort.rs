//! Entering generated code, and leaving it at once after a trap.
//!
//! A checked access that fails its inline test calls the check trampoline
//! ([`crate::slow_path`]). When the trampoline refuses the access, the run
//! is over. On x86-64 Linux the trampoline does not return then: it calls
//! [`abort_fn`], which resets the stack pointer to where [`enter`] left it
//! and returns 0 from [`enter`], abandoning the frames of the generated
//! code (a program's functions, its pieces, the trampoline) in between.
//! So an access's cold path is a call and a jump back, with no load and
//! test of an answer and no branch to a trap exit: each check has one
//! block fewer with one edge fewer, which Cranelift's allocators pay for
//! per block (BENCHMARKS.md, session 18).
//!
//! The frames abandoned are all generated code, which holds no Rust value
//! to drop: `bpfvm_check_access` and `bpfvm_check_group` have returned
//! before the trampoline aborts. The callee-saved registers are restored
//! from what [`enter`] saved. [`enter`] also saves and restores the
//! context's previous `abort_sp`, so a nested run with the same context
//! would leave it as it found it (nested runs of the runtime use contexts
//! of their own).
//!
//! Elsewhere ([`ABORTS`] false) the trampoline returns its answer in the
//! context and the generated code tests it, as before.

use bpfvm_engine::vmctx::VmCtx;

/// Whether the check trampolines leave generated code through
/// [`abort_fn`] on a refusal (else they return the answer in
/// `VmCtx::check_answer`).
pub(crate) const ABORTS: bool = cfg!(all(target_arch = "x86_64", target_os = "linux"));

/// Signature of every generated function, the first one (pc 0) included:
/// `(ctx, r1, r2, r3, r4, r5, r10) -> r0`. The program is entered by
/// calling its first function, with r10 at the top of the stack.
pub(crate) type Entry = unsafe extern "C" fn(*mut VmCtx, u64, u64, u64, u64, u64, u64) -> u64;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
std::arch::global_asm!(
    ".pushsection .text.bpfvm_cranelift_enter,\"ax\",@progbits",
    ".p2align 4",
    ".globl bpfvm_cranelift_enter",
    ".hidden bpfvm_cranelift_enter",
    ".type bpfvm_cranelift_enter,@function",
    // (entry: rdi, ctx: rsi, r1: rdx, r2: rcx, r10: r8) -> rax
    "bpfvm_cranelift_enter:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    ".cfi_offset rbx, -24",
    ".cfi_offset r12, -32",
    ".cfi_offset r13, -40",
    ".cfi_offset r14, -48",
    ".cfi_offset r15, -56",
    "mov rbx, rsi",
    "push qword ptr [rbx + {abort_sp}]",
    // Seven pushes after the return address: rsp is 16-byte aligned here.
    "mov [rbx + {abort_sp}], rsp",
    "mov rax, rdi",
    // The seventh argument (r10) on the stack, kept aligned.
    "sub rsp, 8",
    "push r8",
    "mov rdi, rbx",
    "mov rsi, rdx",
    "mov rdx, rcx",
    "xor ecx, ecx",
    "xor r8d, r8d",
    "xor r9d, r9d",
    "call rax",
    "add rsp, 16",
    "2:",
    "pop qword ptr [rbx + {abort_sp}]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size bpfvm_cranelift_enter, . - bpfvm_cranelift_enter",
    "",
    ".p2align 4",
    ".globl bpfvm_cranelift_abort",
    ".hidden bpfvm_cranelift_abort",
    ".type bpfvm_cranelift_abort,@function",
    // (ctx: rdi): back into bpfvm_cranelift_enter's frame, returning 0.
    // rbp is that frame's again (its saved registers lie between), so
    // that unwinding from its epilogue is right. A context the stub did
    // not enter with (`abort_sp` 0) ends the process with a message
    // rather than a jump through address 0.
    "bpfvm_cranelift_abort:",
    ".cfi_startproc",
    "mov rax, [rdi + {abort_sp}]",
    "test rax, rax",
    "jz {not_entered}",
    "mov rbx, rdi",
    "mov rsp, rax",
    "lea rbp, [rsp + 48]",
    "xor eax, eax",
    "jmp 2b",
    ".cfi_endproc",
    ".size bpfvm_cranelift_abort, . - bpfvm_cranelift_abort",
    ".popsection",
    abort_sp = const bpfvm_engine::vmctx::OFFSET_ABORT_SP,
    not_entered = sym not_entered_through_the_stub,
);

/// Where `bpfvm_cranelift_abort` goes for a context whose run did not
/// start in the stub: a bug of this crate (code that may abandon a run
/// must be entered through [`enter`]), never of the program run.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
extern "C" fn not_entered_through_the_stub() -> ! {
    eprintln!(
        "bpfvm: tier-0 code abandoned a run that was not entered through \
         its entry stub (a bug in bpfvm-cranelift); aborting"
    );
    std::process::abort()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
unsafe extern "C" {
    fn bpfvm_cranelift_enter(entry: Entry, ctx: *mut VmCtx, r1: u64, r2: u64, r10: u64) -> u64;
    fn bpfvm_cranelift_abort(ctx: *mut VmCtx) -> !;
}

/// Runs the generated function `entry` with `(ctx, r1, r2, 0, 0, 0, r10)`
/// and returns its r0, or 0 when the code aborted after recording a trap.
///
/// # Safety
///
/// `entry` must be generated code with the [`Entry`] signature, and `ctx`
/// a context prepared for it, as for calling `entry` directly.
pub(crate) unsafe fn enter(entry: Entry, ctx: *mut VmCtx, r1: u64, r2: u64, r10: u64) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    // SAFETY: per this function's contract; the stub calls `entry` with
    // the C convention and these arguments.
    unsafe {
        bpfvm_cranelift_enter(entry, ctx, r1, r2, r10)
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    // SAFETY: per this function's contract.
    unsafe {
        entry(ctx, r1, r2, 0, 0, 0, r10)
    }
}

/// The address of the function `(ctx)` that generated code calls, in the
/// C convention, to abandon the run after recording its trap; only where
/// [`ABORTS`].
pub(crate) fn abort_fn() -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        bpfvm_cranelift_abort as *const () as usize
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    unreachable!("only called where ABORTS")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bpfvm_engine::asm::assemble;
    use bpfvm_engine::backend::{Backend, CompileOptions, Stack};
    use bpfvm_engine::verifier::verify;
    use bpfvm_engine::vmctx::{VmCtx, TRAP_LOAD, TRAP_NONE};

    use crate::CraneliftBackend;

    /// A recursion five calls deep (so no call is inlined), r2 the input
    /// pointer throughout, whose leaf (pc 9) runs `leaf`; the program
    /// returns the leaf's r0 plus 1.
    fn deep_recursion_to(leaf: &str) -> Arc<bpfvm_engine::program::Program> {
        let src = format!(
            "mov %r2, %r1\nmov %r1, 5\ncall local f\nadd %r0, 1\nexit\n\
             f:\njeq %r1, 0, leaf\nsub %r1, 1\ncall local f\nexit\n\
             leaf:\n{leaf}\nexit"
        );
        Arc::new(verify(assemble(&src).unwrap(), &Default::default()).unwrap())
    }

    /// Runs `code` on `mem` with `abort_sp` set to `sentinel` beforehand;
    /// returns r0, the trap code and pc, and `abort_sp` afterwards.
    fn run(
        code: &dyn bpfvm_engine::backend::CompiledCode,
        mem: &mut [u8],
        sentinel: u64,
    ) -> (u64, u32, u64, u64) {
        let table = bpfvm_engine::helpers::Helpers::new().table();
        let slots = table.slots();
        let mut stack = Stack::new(code.options().call_depth);
        let (r1, r2) = if mem.is_empty() {
            (0, 0)
        } else {
            (mem.as_mut_ptr() as u64, mem.len() as u64)
        };
        let mut ctx = VmCtx {
            mem_start: r1,
            mem_end: r1 + r2,
            stack_top: stack.top(),
            stack_bottom: stack.bottom(),
            regions: std::ptr::null(),
            region_count: 0,
            helpers: slots.as_ptr(),
            helper_count: slots.len() as u64,
            budget: 0,
            trap_code: TRAP_NONE,
            trap_size: 0,
            trap_pc: 0,
            trap_addr: 0,
            host: std::ptr::null_mut(),
            last_region_start: 0,
            last_region_limits: [0; 8],
            check_answer: 0,
            stack_written_lo: stack.top(),
            abort_sp: sentinel,
        };
        // SAFETY: the context points at `mem`, `stack` and the helper
        // table, all alive for the call.
        let r0 = unsafe { code.call(&mut ctx, r1, r2) };
        (r0, ctx.trap_code, ctx.trap_pc, ctx.abort_sp)
    }

    /// A refused access five frames down ends the run with its trap, the
    /// caller's state intact (the runs alternate with ones that succeed,
    /// and the Rust values live across them are checked), and the
    /// context's `abort_sp` as it was before, at every level.
    #[test]
    fn a_refused_access_leaves_every_frame_and_the_caller_goes_on() {
        // The leaf loads 8 bytes through the input pointer.
        let program = deep_recursion_to("ldxdw %r0, [%r2+0]");
        for opt_level in [0, 1, 3] {
            let opts = CompileOptions {
                opt_level,
                ..CompileOptions::default()
            };
            let code = CraneliftBackend.compile(&program, &opts).unwrap();
            let mut sum = 0u64;
            let mut traps = 0u64;
            for k in 0..1000u64 {
                let mut mem = (k * 3).to_le_bytes();
                let sentinel = 0x5eed_0000 + k;
                let (r0, code_, pc, after) = if k % 2 == 0 {
                    run(code.as_ref(), &mut mem, sentinel)
                } else {
                    run(code.as_ref(), &mut [], sentinel)
                };
                assert_eq!(after, sentinel, "abort_sp restored, run {k}");
                if k % 2 == 0 {
                    assert_eq!((r0, code_), (k * 3 + 1, TRAP_NONE), "run {k}");
                    sum += r0;
                } else {
                    assert_eq!((r0, code_, pc), (0, TRAP_LOAD, 9), "run {k}");
                    traps += 1;
                }
            }
            assert_eq!((sum, traps), ((0..500).map(|i| 6 * i + 1).sum(), 500));
        }
    }

    /// A helper call that traps (an unknown id) five frames down, at the
    /// levels that call helpers through the helper trampoline (0 and 1),
    /// which ends the run through the stub, and inline (3), where the run
    /// returns through every frame (and the stub is not used): the same
    /// trap, and `abort_sp` as it was.
    #[test]
    fn a_helper_call_that_traps_leaves_every_frame() {
        use bpfvm_engine::vmctx::TRAP_UNKNOWN_HELPER;
        let program = deep_recursion_to("call 9999");
        for opt_level in [0, 1, 3] {
            let opts = CompileOptions {
                opt_level,
                ..CompileOptions::default()
            };
            let code = CraneliftBackend.compile(&program, &opts).unwrap();
            for k in 0..100u64 {
                let sentinel = 0x5eed_0000 + k;
                let (r0, code_, pc, after) = run(code.as_ref(), &mut [0; 8], sentinel);
                assert_eq!(
                    (r0, code_, pc, after),
                    (0, TRAP_UNKNOWN_HELPER, 9, sentinel)
                );
            }
        }
    }
}
