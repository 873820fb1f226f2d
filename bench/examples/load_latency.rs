//! How long `Engine::load_insns` takes for a benchmark program under the
//! tiered policy (tier 0 compiled with instruction counting, for promotion)
//! and fixed on tier 0 (no counting): the best of `--count` loads in one
//! engine, so that one-time costs and the machine's load stay out, and the
//! first of them, which has those costs.
//!
//! `cargo run --release -p bpfvm-bench --example load_latency -- PROGRAM
//! [--count N]`, PROGRAM the name of a benchmark program that uses no maps
//! (`map_lookup` needs its object loaded: `bpfvm bench` measures it).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bpfvm::{Config, Engine, Tier, TierPolicy};
use bpfvm_bench::{Subject, PROGRAMS};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load_latency: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let usage = "usage: load_latency PROGRAM [--count N]";
    let mut args = std::env::args().skip(1);
    let name = args.next().ok_or(usage)?;
    let mut count = 50u32;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--count" => {
                let v = args.next().ok_or("--count needs a value")?;
                count = v.parse().map_err(|e| format!("--count: {e}"))?;
            }
            _ => return Err(usage.into()),
        }
    }
    let p = PROGRAMS
        .iter()
        .find(|p| p.name == name)
        .ok_or(format!("no benchmark program {name}"))?;
    let subject = Subject::from_elf(p.bpf_object, None).map_err(|e| e.to_string())?;
    for policy in [TierPolicy::tiered(), TierPolicy::Fixed(Tier::Cranelift)] {
        let mut config = Config::new();
        config
            .tier_policy(policy)
            .helpers(&bpfvm::standard_test_helpers());
        let engine = Engine::new(&config);
        let mut best = Duration::MAX;
        let mut first = None;
        for _ in 0..count.max(1) {
            let start = Instant::now();
            let program = engine
                .load_insns(subject.insns.clone())
                .map_err(|e| e.to_string())?;
            let took = start.elapsed();
            best = best.min(took);
            first.get_or_insert(took);
            drop(program);
        }
        let first = first.unwrap_or_default();
        println!("{name}, {policy:?}: best load of {count}: {best:?} (the first: {first:?})");
    }
    Ok(())
}
