//! Runs one [`TestCase`] on one tier: verify, compile, execute on a copy of
//! its memory, and compare with what the case expects.

use std::fmt;
use std::sync::Arc;

use bpfvm::engine::backend::{self, Backend, CompileOptions, RunEnv, DEFAULT_CALL_DEPTH};
use bpfvm::engine::verifier::{self, VerifyOptions};

use crate::data::{Expect, TestCase};
use crate::host_regions::HostRegions;

/// How the runner compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Compile with checked memory (the default).
    pub checked: bool,
    /// The optimisation level (3 by default, as `CompileOptions`).
    pub opt_level: u8,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            checked: true,
            opt_level: CompileOptions::default().opt_level,
        }
    }
}

/// The step at which a case stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Assemble,
    Verify,
    Compile,
    Trap,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Assemble => "assembler error",
            Stage::Verify => "verifier error",
            Stage::Compile => "compile error",
            Stage::Trap => "trap",
        })
    }
}

/// How a case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The program reached `exit` with this r0.
    Exited(u64),
    /// It stopped at `stage` with this message.
    Failed { stage: Stage, message: String },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(r0) => write!(f, "r0 = {r0:#x}"),
            Outcome::Failed { stage, message } => write!(f, "{stage}: {message}"),
        }
    }
}

/// The helpers every case may call: the conformance suite's helper 5 and
/// the generator's helper 1 (so that saved fuzz cases run unchanged; those
/// using host regions also get the region helper, in [`execute_case`]).
pub fn harness_helpers() -> bpfvm::engine::helpers::Helpers {
    let mut h = bpfvm::standard_test_helpers();
    h.extend(&crate::differential::differential_helpers());
    h
}

/// Assembles, verifies, compiles and runs `case` on `backend`, with the
/// harness helpers registered.
pub fn execute_case(case: &TestCase, backend: &dyn Backend, opts: &RunOptions) -> Outcome {
    let fail = |stage, message: String| Outcome::Failed { stage, message };
    let insns = match &case.program {
        Ok(insns) => insns.clone(),
        Err(e) => return fail(Stage::Assemble, e.to_string()),
    };
    let host = HostRegions::default();
    let helpers = host.with_helper(&harness_helpers());
    let verify_opts = VerifyOptions {
        helper_exists: &|id| helpers.contains(id),
        ..VerifyOptions::default()
    };
    let program = match verifier::verify(insns, &verify_opts) {
        Ok(p) => Arc::new(p),
        Err(e) => return fail(Stage::Verify, e.to_string()),
    };
    let compile_opts = CompileOptions {
        checked: opts.checked,
        budget: case.options.budget,
        call_depth: case.options.call_depth.unwrap_or(DEFAULT_CALL_DEPTH),
        opt_level: opts.opt_level,
        array_maps: host.array_maps(),
    };
    let code = match backend.compile(&program, &compile_opts) {
        Ok(c) => c,
        Err(e) => return fail(Stage::Compile, e.to_string()),
    };
    let table = helpers.table();
    let regions = host.regions();
    let env = RunEnv {
        helpers: &table,
        regions: &regions,
        host: std::ptr::null_mut(),
    };
    let mut mem = case.mem.clone();
    match backend::execute(code.as_ref(), &env, &mut mem) {
        Ok(out) => Outcome::Exited(out.r0),
        Err(trap) => fail(Stage::Trap, trap.to_string()),
    }
}

/// Runs `case` and compares: `Ok` when the outcome is what the case expects
/// (r0 exactly, or an error message that contains the expected text).
pub fn run_case(case: &TestCase, backend: &dyn Backend, opts: &RunOptions) -> Result<(), String> {
    let outcome = execute_case(case, backend, opts);
    match (&case.expect, &outcome) {
        (Expect::Result(want), Outcome::Exited(got)) if want == got => Ok(()),
        (Expect::Error(want), Outcome::Failed { message, .. })
            if message.contains(want.as_str()) =>
        {
            Ok(())
        }
        (Expect::Result(want), _) => Err(format!(
            "{}: expected r0 = {want:#x} ({want}), got {outcome}",
            case.name
        )),
        (Expect::Error(want), _) => Err(format!(
            "{}: expected an error containing `{want}`, got {outcome}",
            case.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parse;
    use bpfvm::engine::interp::Interpreter;

    fn run(text: &str) -> Result<(), String> {
        run_case(
            &parse("t", text).unwrap(),
            &Interpreter,
            &RunOptions::default(),
        )
    }

    #[test]
    fn results_are_compared_exactly() {
        assert_eq!(run("-- asm\nmov %r0, 7\nexit\n-- result\n7\n"), Ok(()));
        let e = run("-- asm\nmov %r0, 7\nexit\n-- result\n8\n").unwrap_err();
        assert!(e.contains("expected r0 = 0x8 (8), got r0 = 0x7"), "{e}");
    }

    #[test]
    fn errors_match_by_substring_at_every_stage() {
        assert_eq!(run("-- asm\nfrob\n-- error\nunknown mnemonic\n"), Ok(()));
        assert_eq!(run("-- asm\nmov %r0, 1\n-- error\nfalls through\n"), Ok(()));
        assert_eq!(
            run("-- asm\ncall 99\nexit\n-- error\nhelper 99 is not registered\n"),
            Ok(())
        );
        assert_eq!(
            run("-- asm\nldxb %r0, [%r1]\nexit\n-- error\nout-of-bounds load of 1 bytes\n"),
            Ok(())
        );
        let e = run("-- asm\nmov %r0, 1\nexit\n-- error\nboom\n").unwrap_err();
        assert!(
            e.contains("expected an error containing `boom`, got r0 = 0x1"),
            "{e}"
        );
    }

    #[test]
    fn memory_is_a_copy_and_options_apply() {
        let case = parse(
            "t",
            "-- asm\nstb [%r1], 9\nldxb %r0, [%r1]\nexit\n-- mem\n01\n-- result\n9\n",
        )
        .unwrap();
        assert_eq!(
            run_case(&case, &Interpreter, &RunOptions::default()),
            Ok(())
        );
        assert_eq!(case.mem, vec![1]);
        assert_eq!(
            run("-- asm\nloop:\njne %r10, 0, loop\nexit\n-- options\nbudget 100\n-- error\ninstruction budget exhausted\n"),
            Ok(())
        );
    }
}
