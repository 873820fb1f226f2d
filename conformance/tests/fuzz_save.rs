//! A divergence found by a campaign is minimised and saved as a `.data`
//! test that the harness runs unchanged: the interpreter passes it, the
//! faulty tier fails it.

use std::sync::Arc;

use bpfvm::engine::backend::{Backend, CompileError, CompileOptions, CompiledCode};
use bpfvm::engine::interp::Interpreter;
use bpfvm::engine::vmctx::VmCtx;
use bpfvm::engine::Program;
use bpfvm_conformance::differential::{differential_helpers, Differ};
use bpfvm_conformance::fuzz::{case_for_seed, Checker, Divergence};
use bpfvm_conformance::generate::{GenOptions, MEM_SIZE};
use bpfvm_conformance::minimize::NOP;
use bpfvm_conformance::{parse, run_case, RunOptions};

/// A tier whose results have bit 0 flipped when r0 is odd.
struct OddFlip;
struct OddFlipCode(Box<dyn CompiledCode>);

impl Backend for OddFlip {
    fn name(&self) -> &'static str {
        "oddflip"
    }
    fn compile(
        &self,
        p: &Arc<Program>,
        o: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        Ok(Box::new(OddFlipCode(Interpreter.compile(p, o)?)))
    }
}

impl CompiledCode for OddFlipCode {
    fn tier(&self) -> &'static str {
        "oddflip"
    }
    fn options(&self) -> &CompileOptions {
        self.0.options()
    }
    unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64 {
        // SAFETY: forwarded under the caller's guarantees.
        let r0 = unsafe { self.0.call(ctx, r1, r2) };
        if r0 & 1 == 1 {
            r0 ^ 2
        } else {
            r0
        }
    }
}

/// What `bpfvm fuzz` generates and compiles with (checked, with a budget).
fn campaign_options() -> (GenOptions, CompileOptions) {
    let gen = GenOptions {
        checksum: true,
        ..GenOptions::default()
    };
    let opts = CompileOptions {
        budget: Some(1_000_000),
        ..CompileOptions::default()
    };
    (gen, opts)
}

#[test]
fn divergences_become_minimised_regression_tests() {
    let (gen, opts) = campaign_options();
    let backends: [&dyn Backend; 2] = [&Interpreter, &OddFlip];
    let mut checker = Checker::default();
    let d = (0..200)
        .find_map(|seed| checker.check_seed(seed, &gen, &backends, &opts).err())
        .expect("a seed whose checksum is odd diverges");
    assert_eq!(d.tier, "oddflip");
    let nops = d.insns.iter().filter(|i| **i == NOP).count();
    assert!(nops > 0, "minimisation removed nothing");
    let data = d.to_data_file();
    let case = parse("fuzz", &data).expect("the saved file parses");
    let ropts = RunOptions::default();
    assert_eq!(
        run_case(&case, &Interpreter, &ropts),
        Ok(()),
        "the reference passes its own test"
    );
    assert!(
        run_case(&case, &OddFlip, &ropts).is_err(),
        "the faulty tier fails it:\n{data}"
    );
}

/// A saved test runs its memory at another address than the campaign did:
/// checksum programs must not depend on where the memory lies (a program
/// that folded r9 into r0 made this test flaky once).
#[test]
fn checksum_programs_replay_with_memory_elsewhere() {
    let (gen, opts) = campaign_options();
    let mut differ = Differ::new(
        differential_helpers(),
        MEM_SIZE,
        bpfvm::engine::backend::DEFAULT_CALL_DEPTH,
    );
    let ropts = RunOptions::default();
    let mut failures = Vec::new();
    for seed in 0..1000 {
        let (insns, mem) = case_for_seed(seed, &gen);
        let runs = differ
            .run_all(&insns, &mem, &[&Interpreter], &opts)
            .expect("generated programs verify");
        let saved = Divergence {
            seed,
            tier: "none",
            difference: String::new(),
            insns,
            mem,
            reference: runs[0].1.clone(),
            budget: opts.budget,
        };
        let data = saved.to_data_file();
        let case = parse("replay", &data).expect("the saved file parses");
        // The differ's buffer is still alive: the replay's memory is elsewhere.
        if let Err(e) = run_case(&case, &Interpreter, &ropts) {
            if failures.is_empty() {
                failures.push(bpfvm::engine::disasm::disassemble(&saved.insns));
            }
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
