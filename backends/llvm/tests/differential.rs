//! Random programs on the interpreter, the llvm tier at O0/O1 and the aot
//! tier, compared on result, trap, memory, stack and budget (the runtime's
//! differential harness covers the llvm tier at its default level; this one
//! adds the levels and the aot tier it does not run).

mod common;

use bpfvm_conformance::differential::compare;
use bpfvm_conformance::generate::GenOptions;
use bpfvm_engine::backend::{Backend, CompileOptions};
use bpfvm_llvm::{AotBackend, LlvmBackend};
use common::AtOpt;

fn campaign(seeds: std::ops::Range<u64>, gen: &GenOptions, opts: &CompileOptions) {
    let o0 = AtOpt(LlvmBackend, 0);
    let o1 = AtOpt(LlvmBackend, 1);
    let aot = AtOpt(AotBackend, 2);
    let backends: [&dyn Backend; 3] = [&o0, &o1, &aot];
    let count = seeds.end - seeds.start;
    compare(seeds.start, &backends, gen, opts, count).unwrap_or_else(|e| panic!("{e}"));
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
