//! `bpfvm fuzz`: a differential campaign over generated programs, every
//! chosen tier against the interpreter, with a progress bar. Divergences
//! are minimised and saved as `.data` files that the conformance harness
//! runs unchanged.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bpfvm::engine::backend::{Backend, CompileOptions};
use bpfvm::tier::{backend, Tier};
use bpfvm_conformance::fuzz::{Checker, Divergence};
use bpfvm_conformance::generate::GenOptions;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::CliError;

/// A campaign's settings.
#[derive(Clone, Debug)]
pub struct FuzzConfig {
    /// Tiers compared with the interpreter.
    pub tiers: Vec<Tier>,
    /// Stop after this many programs...
    pub count: Option<u64>,
    /// ...or after this long.
    pub duration: Option<Duration>,
    pub seed: u64,
    pub jobs: usize,
    pub save: Option<PathBuf>,
    pub checked: bool,
    pub budget: Option<u64>,
    pub opt_level: u8,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a campaign did.
#[derive(Debug)]
pub struct FuzzReport {
    pub programs: u64,
    pub first_seed: u64,
    pub elapsed: Duration,
    pub divergences: Vec<Divergence>,
    pub saved: Vec<PathBuf>,
}

/// Runs the campaign: seeds `seed, seed + 1, ...` shared among `jobs`
/// threads until the count or the duration is reached.
pub fn run(config: &FuzzConfig) -> Result<FuzzReport, CliError> {
    let mut backends: Vec<Box<dyn Backend>> = vec![backend(Tier::Interp)?];
    for &t in &config.tiers {
        if t != Tier::Interp {
            backends.push(backend(t)?);
        }
    }
    if backends.len() < 2 {
        return Err(CliError::Usage(
            "--tiers must name a tier besides interp".into(),
        ));
    }
    let gen = GenOptions {
        out_of_bounds: config.checked,
        checksum: true,
        ..GenOptions::default()
    };
    let opts = CompileOptions {
        checked: config.checked,
        budget: config.budget,
        opt_level: config.opt_level,
        ..CompileOptions::default()
    };
    let limit = config.count.unwrap_or(u64::MAX);
    let bar = if config.progress {
        let bar = match config.count {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} programs, {per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let found: Mutex<Vec<Divergence>> = Mutex::new(Vec::new());
    let start = Instant::now();
    let refs: Vec<&dyn Backend> = backends.iter().map(|b| b.as_ref()).collect();
    std::thread::scope(|s| {
        for _ in 0..config.jobs.max(1) {
            s.spawn(|| {
                let mut checker = Checker::default();
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if config.duration.is_some_and(|d| start.elapsed() >= d) {
                        return;
                    }
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= limit {
                        return;
                    }
                    if let Err(d) =
                        checker.check_seed(config.seed.wrapping_add(k), &gen, &refs, &opts)
                    {
                        bar.println(format!(
                            "seed {}: {} differs: {}",
                            d.seed, d.tier, d.difference
                        ));
                        let mut f = found.lock().unwrap_or_else(|p| p.into_inner());
                        f.push(*d);
                        bar.set_message(format!("{} divergences", f.len()));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    stop.store(true, Ordering::Relaxed);
    let mut divergences = found.into_inner().unwrap_or_else(|p| p.into_inner());
    divergences.sort_by_key(|d| d.seed);
    let mut saved = Vec::new();
    if let Some(dir) = &config.save {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", dir.display())))?;
        for d in &divergences {
            let path = dir.join(format!("fuzz-{}-seed-{}.data", d.tier, d.seed));
            std::fs::write(&path, d.to_data_file())
                .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))?;
            saved.push(path);
        }
    }
    Ok(FuzzReport {
        programs: done.load(Ordering::Relaxed),
        first_seed: config.seed,
        elapsed: start.elapsed(),
        divergences,
        saved,
    })
}

/// Parses durations like `90s`, `10m`, `2h` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration `{s}`"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in `{s}` (use s, m or h)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("invalid duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn a_small_campaign_finds_nothing() {
        let config = FuzzConfig {
            tiers: vec![Tier::Cranelift],
            count: Some(50),
            duration: None,
            seed: 1,
            jobs: 2,
            save: None,
            checked: true,
            budget: Some(100_000),
            opt_level: 1,
            progress: false,
        };
        let r = run(&config).expect("runs");
        assert_eq!(r.programs, 50);
        assert!(r.divergences.is_empty(), "{:?}", r.divergences);
    }
}
