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
        // The level the runtime compiles the tier at.
        opt_level: bpfvm::Config::default().opt_level(config.tier),
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

/// Which tier `bpfvm run` uses: one tier, or the tiered policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierChoice {
    /// Start on tier 0, promote to tier 1 at the call threshold, cross-check.
    Auto,
    Fixed(Tier),
}

impl std::str::FromStr for TierChoice {
    type Err = bpfvm::tier::TierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(TierChoice::Auto),
            _ => s
                .parse()
                .map(TierChoice::Fixed)
                .map_err(|_| bpfvm::tier::TierError::Unknown {
                    name: s.to_string(),
                    valid: "auto, interp, cranelift, llvm, aot".to_string(),
                }),
        }
    }
}

impl std::fmt::Display for TierChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TierChoice::Auto => f.write_str("auto"),
            TierChoice::Fixed(t) => write!(f, "{t}"),
        }
    }
}

/// The `stats` object of `bpfvm run --json`.
pub fn stats_json(stats: &bpfvm::Stats) -> serde_json::Value {
    serde_json::json!({
        "calls": { "interp": stats.calls.interp, "cranelift": stats.calls.cranelift, "llvm": stats.calls.llvm },
        "cross_checks": stats.cross_checks,
        "mismatches": stats.mismatches,
        "compile_ns": { "interp": stats.compile_ns.interp, "cranelift": stats.compile_ns.cranelift, "llvm": stats.compile_ns.llvm },
        "tier0_instructions": stats.tier0_instructions,
        "compile_failures": stats.compile_failures,
        "last_error": stats.last_error,
    })
}

/// The tiered policy of `--tier auto`: promotion after `threshold` calls,
/// compiled on the calling thread so that a run is reproducible.
pub fn tiered_config(config: &mut bpfvm::Config, threshold: u64, cross_check: bool) {
    config
        .tier_policy(bpfvm::TierPolicy::Tiered {
            call_threshold: threshold.max(1),
            instruction_threshold: u64::MAX,
        })
        .synchronous_tier_up(true);
    if cross_check {
        config.cross_check(Some(bpfvm::CrossCheck::default()));
    }
}

/// A runtime load error as the command line reports it.
pub fn load_error(e: bpfvm::LoadError) -> CliError {
    match e {
        bpfvm::LoadError::Verify(v) => CliError::Verify(v),
        bpfvm::LoadError::Compile(c) => CliError::Compile(c),
        bpfvm::LoadError::Tier(t) => CliError::Tier(t),
    }
}

/// How `bpfvm run` loads and runs a program through the runtime's `Engine`.
#[derive(Clone, Debug)]
pub struct EngineRun {
    pub tier: TierChoice,
    pub checked: bool,
    pub budget: Option<u64>,
    pub call_depth: usize,
    /// Runs of the program; each starts from the same input memory.
    pub repeat: u64,
    /// Calls after which `auto` promotes to tier 1.
    pub threshold: u64,
    /// Cross-check promoted code against the interpreter (`auto`).
    pub cross_check: bool,
}

/// The last run's result and the program's statistics.
pub struct EngineOutcome {
    pub result: Result<Outcome, bpfvm::engine::Trap>,
    pub stats: bpfvm::Stats,
}

/// Loads `insns` into an engine configured by `run` (the standard test
/// helpers registered) and runs it `run.repeat` times over `mem`, each run
/// starting from the same input. With `auto`, tier 1 is compiled on this
/// thread when the threshold is crossed, so that a run is reproducible.
pub fn run_engine(
    insns: Vec<Insn>,
    run: &EngineRun,
    mem: &mut [u8],
) -> Result<EngineOutcome, CliError> {
    let mut config = bpfvm::Config::new();
    config
        .helpers(&bpfvm::standard_test_helpers())
        .memory_checks(run.checked)
        .instruction_budget(run.budget)
        .call_depth(run.call_depth);
    match run.tier {
        TierChoice::Fixed(t) => {
            tier::backend(t)?;
            config.tier_policy(bpfvm::TierPolicy::Fixed(t));
        }
        TierChoice::Auto => tiered_config(&mut config, run.threshold, run.cross_check),
    }
    let engine = bpfvm::Engine::new(&config);
    let program = engine.load_insns(insns).map_err(load_error)?;
    let input = mem.to_vec();
    let mut result = program.run_outcome(mem);
    for _ in 1..run.repeat.max(1) {
        mem.copy_from_slice(&input);
        result = program.run_outcome(mem);
    }
    Ok(EngineOutcome {
        result,
        stats: program.stats(),
    })
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
        // A tier missing from this build is a usage error.
        for tier in [Tier::Cranelift, Tier::Llvm] {
            if tier.is_available() {
                continue;
            }
            let config = RunConfig {
                tier,
                ..RunConfig::default()
            };
            let e = go("exit", &config, &mut []).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
            assert!(e
                .to_string()
                .starts_with(&format!("{tier} support not compiled in")));
        }
    }

    #[test]
    fn auto_promotes_and_cross_checks() {
        let run = EngineRun {
            tier: TierChoice::Auto,
            checked: true,
            budget: None,
            call_depth: DEFAULT_CALL_DEPTH,
            repeat: 30,
            threshold: 10,
            cross_check: true,
        };
        let insns = bpfvm::engine::asm::assemble("mov %r0, %r2\nexit").unwrap();
        let out = run_engine(insns, &run, &mut [1, 2, 3]).unwrap();
        assert_eq!(out.result.map(|o| o.r0), Ok(3));
        let s = out.stats;
        assert_eq!(s.calls.interp + s.calls.cranelift + s.calls.llvm, 30);
        if Tier::Llvm.is_available() {
            assert_eq!(s.tier, Tier::Llvm);
            assert_eq!((s.calls.llvm, s.cross_checks, s.mismatches), (20, 20, 0));
        }
    }
}
