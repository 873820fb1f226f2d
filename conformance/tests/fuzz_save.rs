//! A divergence found by a campaign is minimised and saved as a `.data`
//! test that the harness runs unchanged: the interpreter passes it, the
//! faulty tier fails it.

use std::sync::Arc;

use bpfvm::engine::backend::{Backend, CompileError, CompileOptions, CompiledCode};
use bpfvm::engine::interp::Interpreter;
use bpfvm::engine::vmctx::VmCtx;
use bpfvm::engine::Program;
use bpfvm_conformance::fuzz::Checker;
use bpfvm_conformance::generate::GenOptions;
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

#[test]
fn divergences_become_minimised_regression_tests() {
    let gen = GenOptions {
        checksum: true,
        ..GenOptions::default()
    };
    let opts = CompileOptions {
        budget: Some(1_000_000),
        ..CompileOptions::default()
    };
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
