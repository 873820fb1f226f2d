//! The pipeline shared by `bpfvm run` and `bpfvm-plugin`: verify with the
//! standard test helpers, compile on a tier, run over input memory.

use std::sync::Arc;

use bpfvm::engine::backend::{self, CompileOptions, Outcome, RunEnv, DEFAULT_CALL_DEPTH};
use bpfvm::engine::isa::Insn;
use bpfvm::engine::verifier::{self, VerifyOptions};
use bpfvm::engine::Program;
use bpfvm::tier::{self, Tier};

use crate::error::CliError;

/// How to compile and run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    pub tier: Tier,
    /// Check memory accesses (the default); `false` trusts the program.
    pub checked: bool,
    /// Instruction budget; `None` runs without one.
    pub budget: Option<u64>,
    /// Call-depth limit in frames.
    pub call_depth: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            tier: Tier::Interp,
            checked: true,
            budget: None,
            call_depth: DEFAULT_CALL_DEPTH,
        }
    }
}

/// Verifies `insns` with the standard test helpers registered.
pub fn verify(insns: Vec<Insn>) -> Result<Program, CliError> {
    let helpers = bpfvm::standard_test_helpers();
    let opts = VerifyOptions {
        helper_exists: &|id| helpers.contains(id),
        ..VerifyOptions::default()
    };
    Ok(verifier::verify(insns, &opts)?)
}

/// Compiles `program` on the configured tier and runs it over `mem`
/// (r1 = its address, r2 = its length). A trap is [`CliError::Trap`].
pub fn run(program: Program, config: &RunConfig, mem: &mut [u8]) -> Result<Outcome, CliError> {
    let backend = tier::backend(config.tier)?;
    let opts = CompileOptions {
        checked: config.checked,
        budget: config.budget,
        call_depth: config.call_depth,
        ..CompileOptions::default()
    };
    let code = backend.compile(&Arc::new(program), &opts)?;
    let table = bpfvm::standard_test_helpers().table();
    let env = RunEnv {
        helpers: &table,
        regions: &[],
        host: std::ptr::null_mut(),
    };
    Ok(backend::execute(code.as_ref(), &env, mem)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfvm::engine::asm::assemble;

    fn go(src: &str, config: &RunConfig, mem: &mut [u8]) -> Result<Outcome, CliError> {
        run(verify(assemble(src).unwrap())?, config, mem)
    }

    #[test]
    fn runs_with_memory_and_helper_5() {
        let mut mem = [1u8, 2, 3];
        let out = go("mov %r0, 9\ncall 5\nexit", &RunConfig::default(), &mut mem).unwrap();
        assert_eq!(out.r0, 0, "helper 5 returns 0");
        let out = go("mov %r0, %r2\nexit", &RunConfig::default(), &mut mem).unwrap();
        assert_eq!(out.r0, 3);
    }

    #[test]
    fn budget_is_reported() {
        let config = RunConfig {
            budget: Some(10),
            ..RunConfig::default()
        };
        let out = go("mov %r0, 1\nexit", &config, &mut []).unwrap();
        assert_eq!(out.budget_left, Some(8));
    }

    #[test]
    fn errors_have_exit_codes() {
        let e = go("call 99\nexit", &RunConfig::default(), &mut []).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_REJECTED);
        let config = RunConfig {
            tier: Tier::Llvm,
            ..RunConfig::default()
        };
        let e = go("exit", &config, &mut []).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        assert_eq!(e.to_string(), "llvm support not compiled in");
    }
}
