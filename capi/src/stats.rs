//! A program's statistics (`struct bpfvm_stats`).

use std::ffi::{c_char, c_int};
use std::sync::atomic::Ordering::Relaxed;

use crate::config::{tier_to_c, TIER_AOT};
use crate::error::guard;
use crate::handles::{self, bpfvm_program};
use crate::program::Runnable;
use crate::util;

/// A program's statistics. Calls and compile times are per tier; an AOT
/// object's calls count as `calls_llvm` (tier 1's native code).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct bpfvm_stats {
    /// The tier calls run on now (`BPFVM_TIER_*`).
    pub tier: c_int,
    /// Calls in all.
    pub calls: u64,
    pub calls_interp: u64,
    pub calls_cranelift: u64,
    pub calls_llvm: u64,
    /// Time spent compiling each tier, in nanoseconds.
    pub compile_ns_interp: u64,
    pub compile_ns_cranelift: u64,
    pub compile_ns_llvm: u64,
    /// Instructions executed on tier 0 (counted towards promotion).
    pub tier0_instructions: u64,
    /// Calls cross-checked against the reference tier, and mismatches found.
    pub cross_checks: u64,
    pub mismatches: u64,
    /// Failed tier-1 compiles.
    pub compile_failures: u32,
    /// The last tier-1 compile error, NUL-terminated (empty if none).
    pub last_error: [c_char; 256],
}

impl bpfvm_stats {
    fn of(r: &Runnable) -> bpfvm_stats {
        let mut out = bpfvm_stats {
            tier: tier_to_c(r.tier()),
            calls: 0,
            calls_interp: 0,
            calls_cranelift: 0,
            calls_llvm: 0,
            compile_ns_interp: 0,
            compile_ns_cranelift: 0,
            compile_ns_llvm: 0,
            tier0_instructions: 0,
            cross_checks: 0,
            mismatches: 0,
            compile_failures: 0,
            last_error: [0; 256],
        };
        match r {
            Runnable::Managed { program, .. } => {
                let s = program.stats();
                out.calls_interp = s.calls.interp;
                out.calls_cranelift = s.calls.cranelift;
                out.calls_llvm = s.calls.llvm;
                out.calls = s.calls.interp + s.calls.cranelift + s.calls.llvm;
                out.compile_ns_interp = s.compile_ns.interp;
                out.compile_ns_cranelift = s.compile_ns.cranelift;
                out.compile_ns_llvm = s.compile_ns.llvm;
                out.tier0_instructions = s.tier0_instructions;
                out.cross_checks = s.cross_checks;
                out.mismatches = s.mismatches;
                out.compile_failures = s.compile_failures;
                util::fill_text(&mut out.last_error, s.last_error.as_deref().unwrap_or(""));
            }
            Runnable::Aot(a) => {
                out.tier = TIER_AOT;
                out.calls = a.calls.load(Relaxed);
                out.calls_llvm = out.calls;
            }
        }
        out
    }
}

/// Fills `*stats` with the program's statistics. They count from the
/// load, or from the last `bpfvm_program_compile` that recompiled the
/// program (any tier but `BPFVM_TIER_LLVM`, which promotes it).
///
/// # Safety
/// `stats` is NULL or points to a writable `struct bpfvm_stats`.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_program_stats(
    program: *mut bpfvm_program,
    stats: *mut bpfvm_stats,
) -> c_int {
    guard(|| {
        let p = handles::program(program)?;
        let out = util::out(stats, "stats")?;
        let s = bpfvm_stats::of(&p.current());
        // SAFETY: non-NULL; the caller promises a writable struct.
        unsafe { out.write(s) };
        Ok(())
    })
}
