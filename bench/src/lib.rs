//! bpfvm's benchmarks: the benchmark programs (C compiled to eBPF and,
//! as the baseline, natively), the harness that runs them on every
//! executor, and generated programs for compile-latency measurements.
//!
//! See `BENCHMARKS.md` at the repository root for the method and results.

#[cfg(feature = "cranelift")]
pub mod floor;
pub mod harness;
pub mod programs;

pub use harness::{geomean, tier_options, time_runs, Executor, Runner, Sampler, Subject, Timing};
pub use programs::{
    native_compiler, program, program_by_object, straight_alu_300, BenchProgram, PROGRAMS,
};

use bpfvm::engine::isa::Insn;
use bpfvm_conformance::generate::{generate, GenOptions};

/// A generated program of about `target` instructions (ALU, memory,
/// atomics, branches, loops, helper and local calls), for compile-latency
/// measurements. The seed is fixed so runs compare like with like.
pub fn program_of_size(target: usize) -> Vec<Insn> {
    let mut statements = target / 3;
    loop {
        let opts = GenOptions {
            statements,
            ..GenOptions::default()
        };
        let p = generate(target as u64, &opts);
        if p.len() >= target || statements > target {
            return p;
        }
        statements += statements / 8 + 1;
    }
}
