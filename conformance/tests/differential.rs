//! Random-program differential test: thousands of generated programs run on
//! the interpreter and on every other tier compiled in, compared on result,
//! trap (kind, pc, address), every register (dumped to memory), memory,
//! stack and instruction count. Seeds are fixed so failures reproduce;
//! `BPFVM_DIFF_COUNT` and `BPFVM_DIFF_SEED` change the range.

use bpfvm::engine::backend::{Backend, CompileOptions};
use bpfvm::engine::disasm::disassemble;
use bpfvm::tier::{backend, Tier};
use bpfvm_conformance::differential::{difference, differential_helpers, Differ};
use bpfvm_conformance::generate::{generate, GenOptions, Rng, MEM_SIZE};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn campaign(gen: &GenOptions, opts: &CompileOptions, count: u64) -> u64 {
    let start = env_u64("BPFVM_DIFF_SEED", 0);
    let count = env_u64("BPFVM_DIFF_COUNT", count);
    let tiers: Vec<Box<dyn Backend>> = Tier::available()
        .into_iter()
        .filter_map(|t| backend(t).ok())
        .collect();
    assert!(tiers.len() >= 2, "needs a tier besides the interpreter");
    let refs: Vec<&dyn Backend> = tiers.iter().map(|b| b.as_ref()).collect();
    let mut differ = Differ::new(differential_helpers(), MEM_SIZE, opts.call_depth);
    let mut compared = 0;
    for seed in start..start + count {
        let insns = generate(seed, gen);
        let mut rng = Rng::new(seed ^ 0x5eed);
        let mem: Vec<u8> = (0..MEM_SIZE).map(|_| rng.next_u64() as u8).collect();
        let runs = differ
            .run_all(&insns, &mem, &refs, opts)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", disassemble(&insns)));
        let (_, reference) = &runs[0];
        for (tier, obs) in &runs[1..] {
            if let Some(d) = difference(reference, obs) {
                panic!(
                    "seed {seed}: {tier} differs from the interpreter: {d}\n{}",
                    disassemble(&insns)
                );
            }
        }
        compared += 1;
    }
    compared
}

#[test]
fn random_programs_checked_with_budget() {
    let opts = CompileOptions {
        budget: Some(1_000_000),
        ..CompileOptions::default()
    };
    assert_eq!(
        campaign(&GenOptions::default(), &opts, 2_500),
        env_u64("BPFVM_DIFF_COUNT", 2_500)
    );
}

#[test]
fn random_programs_checked_tight_budget() {
    // Small budgets run out mid-program: the trap pc and what was done
    // before it must match.
    let opts = CompileOptions {
        budget: Some(60),
        ..CompileOptions::default()
    };
    campaign(&GenOptions::default(), &opts, 500);
}

#[test]
fn random_programs_unchecked_in_bounds() {
    let gen = GenOptions {
        out_of_bounds: false,
        ..GenOptions::default()
    };
    let opts = CompileOptions {
        checked: false,
        ..CompileOptions::default()
    };
    campaign(&gen, &opts, 1_000);
}

#[test]
fn random_programs_optimisation_off() {
    let opts = CompileOptions {
        opt_level: 0,
        ..CompileOptions::default()
    };
    campaign(&GenOptions::default(), &opts, 500);
}
