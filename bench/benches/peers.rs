//! bpfvm against rbpf 0.4.1 (interpreter and x86-64 JIT) and the native
//! build, in one interleaved run: for every program, each candidate runs a
//! slice of its time in each of 10 rounds (so that the machine's load
//! spreads over all of them alike), and the median per-run time of ~1 ms
//! batches is reported with its ratio to native. Prints a Markdown table.
//!
//! `cargo bench -p bpfvm-bench --bench peers` (`BPFVM_BENCH_TIME=SECONDS`
//! per candidate and program, default 0.5; `--unchecked` for bpfvm's
//! unchecked code; a program name filters).

#[path = "../peers/rbpf.rs"]
mod rbpf_peer;

use std::time::Duration;

use bpfvm::tier::Tier;
use bpfvm_bench::{geomean, Executor, Sampler, Subject, PROGRAMS};
use rbpf_peer::{Rbpf, RbpfMode};

type RunFn = Box<dyn FnMut() -> Result<u64, String>>;

const ROUNDS: u32 = 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let unchecked = args.iter().any(|a| a == "--unchecked");
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let time = std::env::var("BPFVM_BENCH_TIME")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.5);
    let slice = Duration::from_secs_f64(time) / ROUNDS;
    let cols = [
        "native",
        "interp",
        "rbpf_interp",
        "cranelift",
        "llvm",
        "rbpf_jit",
    ];
    println!(
        "bpfvm {} code vs rbpf 0.4.1 and native ({}); median per run, ratio to native\n",
        if unchecked { "unchecked" } else { "checked" },
        bpfvm_bench::native_compiler().unwrap_or("no native baseline")
    );
    println!("| program | {} |", cols.join(" | "));
    println!("|---|{}", "--:|".repeat(cols.len()));
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); cols.len()];
    for p in PROGRAMS {
        if !filter.is_empty() && !filter.iter().any(|f| p.name.contains(f.as_str())) {
            continue;
        }
        let subject = Subject::from_elf(p.bpf_object, None).expect("benchmark programs load");
        let input = (p.input)();
        let mut cands: Vec<Option<RunFn>> = Vec::new();
        for col in cols {
            let mut mem = input.clone();
            let f: Option<RunFn> = match col {
                "native" if p.native.is_some() => Some(Box::new(move || {
                    p.run_native(&mut mem).ok_or_else(String::new)
                })),
                "interp" | "cranelift" | "llvm" => {
                    let tier: Tier = col.parse().expect("tier name");
                    let exec = Executor::Tier(tier);
                    if exec.is_available() {
                        let (mut r, _) = subject.compile(exec, !unchecked).expect("compiles");
                        Some(Box::new(move || r.run(&mut mem).map_err(|t| t.to_string())))
                    } else {
                        None
                    }
                }
                "rbpf_interp" | "rbpf_jit" => {
                    let mode = if col == "rbpf_jit" {
                        RbpfMode::Jit
                    } else {
                        RbpfMode::Interp
                    };
                    if subject.uses_object() {
                        None
                    } else {
                        match Rbpf::new(&subject.insns, input.len(), mode) {
                            Ok(vm) => Some(Box::new(move || vm.run(&mut mem))),
                            Err(e) => {
                                eprintln!("{}: {}: {e}", p.name, mode.name());
                                None
                            }
                        }
                    }
                }
                _ => None,
            };
            // Only candidates that compute the expected result are timed.
            let f = f.and_then(|mut f| match f() {
                Ok(r) if r == p.expected => Some(f),
                other => {
                    eprintln!(
                        "{}: {col} returned {other:?}, not {:#x}: skipped",
                        p.name, p.expected
                    );
                    None
                }
            });
            cands.push(f);
        }
        let mut samplers: Vec<Option<Sampler>> = cands
            .iter_mut()
            .map(|c| c.as_mut().map(|f| Sampler::calibrate(f).expect("runs")))
            .collect();
        for _ in 0..ROUNDS {
            for (c, s) in cands.iter_mut().zip(samplers.iter_mut()) {
                if let (Some(f), Some(s)) = (c.as_mut(), s.as_mut()) {
                    s.sample_for(f, slice).expect("runs");
                }
            }
        }
        let medians: Vec<Option<f64>> = samplers
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.timing()).map(|t| t.median_ns))
            .collect();
        let native = medians[0];
        let mut cells = Vec::new();
        for (k, m) in medians.iter().enumerate() {
            cells.push(match (m, native) {
                (None, _) => "-".to_string(),
                (Some(m), Some(n)) if k > 0 => {
                    if !p.trivial {
                        ratios[k].push(m / n);
                    }
                    format!("{} ({:.2}×)", fmt_ns(*m), m / n)
                }
                (Some(m), _) => fmt_ns(*m),
            });
        }
        println!("| {} | {} |", p.name, cells.join(" | "));
    }
    let means: Vec<String> = ratios
        .iter()
        .skip(1)
        .map(|r| match geomean(r.iter().copied()) {
            Some(g) => format!("**{g:.2}×** ({})", r.len()),
            None => "-".into(),
        })
        .collect();
    println!(
        "| geomean vs native, non-trivial programs (count) | | {} |",
        means.join(" | ")
    );
}

fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}
