//! Random programs on the interpreter, the llvm tier at O0/O1 and the aot
//! tier, compared on result, trap, memory, stack and budget (the runtime's
//! differential harness covers the llvm tier at its default level; this one
//! adds the levels and the aot tier it does not run).

mod common;

use bpfvm_conformance::differential::{difference, differential_helpers, Differ};
use bpfvm_conformance::generate::{generate, GenOptions, Rng, MEM_SIZE};
use bpfvm_engine::backend::{Backend, CompileOptions};
use bpfvm_engine::disasm::disassemble;
use bpfvm_engine::interp::Interpreter;
use bpfvm_llvm::{AotBackend, LlvmBackend};
use common::AtOpt;

fn campaign(seeds: std::ops::Range<u64>, gen: &GenOptions, opts: &CompileOptions) {
    let o0 = AtOpt(LlvmBackend, 0);
    let o1 = AtOpt(LlvmBackend, 1);
    let aot = AtOpt(AotBackend, 2);
    let backends: [&dyn Backend; 4] = [&Interpreter, &o0, &o1, &aot];
    let mut differ = Differ::new(differential_helpers(), MEM_SIZE, opts.call_depth);
    for seed in seeds {
        let insns = generate(seed, gen);
        let mut rng = Rng::new(seed ^ 0x5eed);
        let mem: Vec<u8> = (0..MEM_SIZE).map(|_| rng.next_u64() as u8).collect();
        let runs = differ
            .run_all(&insns, &mem, &backends, opts)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", disassemble(&insns)));
        for (k, (tier, obs)) in runs[1..].iter().enumerate() {
            if let Some(d) = difference(&runs[0].1, obs) {
                panic!(
                    "seed {seed}: {tier} (backend {}) differs from the interpreter: {d}\n{}",
                    k + 1,
                    disassemble(&insns)
                );
            }
        }
    }
}

#[test]
fn checked_with_budget() {
    let opts = CompileOptions {
        budget: Some(1_000_000),
        ..CompileOptions::default()
    };
    campaign(50_000..50_300, &GenOptions::default(), &opts);
}

#[test]
fn checked_tight_budget() {
    let opts = CompileOptions {
        budget: Some(60),
        ..CompileOptions::default()
    };
    campaign(60_000..60_200, &GenOptions::default(), &opts);
}

#[test]
fn unchecked_in_bounds() {
    let gen = GenOptions {
        out_of_bounds: false,
        ..GenOptions::default()
    };
    let opts = CompileOptions {
        checked: false,
        ..CompileOptions::default()
    };
    campaign(70_000..70_200, &gen, &opts);
}
