//! Programs and inputs shared by bpfvm's benchmarks.

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
