//! `bpfvm fuzz`: a differential campaign over generated programs, every
//! chosen tier against the interpreter, with a progress bar. Divergences
//! are minimised and saved as `.data` files that the conformance harness
//! runs unchanged.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpfvm::engine::backend::{Backend, CompileError, CompileOptions, CompiledCode};
use bpfvm::engine::program::Program;
use bpfvm::tier::{backend, Tier};
use bpfvm_conformance::fuzz::{case_for_seed, seed_as_data_file, Checker, Divergence};
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
    /// Generate accesses to host regions too ([`GenOptions::host_regions`]).
    pub host_regions: bool,
    /// Start programs with a test of the input's length
    /// ([`GenOptions::length_guards`]).
    pub length_guards: bool,
    pub budget: Option<u64>,
    /// Every tier at this optimisation level; `None`: each at the level the
    /// runtime compiles it at ([`opt_level`]).
    pub opt_level: Option<u8>,
    /// A seed still compiling or running after this long stops the
    /// campaign and is reported: an optimiser that does not finish is a
    /// finding, not a reason to wait forever.
    pub stall: Duration,
    /// Show a progress bar.
    pub progress: bool,
}

/// A seed that did not finish within [`FuzzConfig::stall`].
#[derive(Clone, Debug)]
pub struct Stall {
    pub seed: u64,
    pub after: Duration,
    /// The program, saved as raw bytecode when `--save` was given.
    pub saved: Option<PathBuf>,
}

/// What a campaign did.
#[derive(Debug)]
pub struct FuzzReport {
    pub programs: u64,
    pub first_seed: u64,
    pub elapsed: Duration,
    pub divergences: Vec<Divergence>,
    pub saved: Vec<PathBuf>,
    /// Set when a seed stalled; the campaign stopped there.
    pub stalled: Option<Stall>,
    /// Set when a tier panicked; the campaign stopped there.
    pub panic: Option<Panic>,
}

/// A tier that panicked on a seed (a bug: tiers report errors as values).
#[derive(Clone, Debug)]
pub struct Panic {
    pub seed: u64,
    pub message: String,
}

/// What the workers have finished, kept under one lock so that the
/// report's count and its divergences always agree.
#[derive(Default)]
struct Results {
    done: u64,
    divergences: Vec<Divergence>,
    panic: Option<Panic>,
    /// Set when the campaign reports a stall: results that arrive later
    /// (from seeds still running) are not counted.
    closed: bool,
}

/// State the workers share with the watchdog.
struct Shared {
    backends: Vec<Box<dyn Backend>>,
    gen: GenOptions,
    opts: CompileOptions,
    first_seed: u64,
    limit: u64,
    deadline: Option<Instant>,
    next: AtomicU64,
    stop: AtomicBool,
    results: Mutex<Results>,
    /// Per worker: the seed it is on and when it last made progress (a
    /// run of the tiers started).
    current: Vec<Mutex<Option<(u64, Instant)>>>,
    bar: ProgressBar,
}

impl Shared {
    fn worker(&self, slot: usize) {
        let refs: Vec<&dyn Backend> = self.backends.iter().map(|b| b.as_ref()).collect();
        let mut checker = Checker::default();
        loop {
            if self.stop.load(Ordering::Relaxed)
                || self.deadline.is_some_and(|d| Instant::now() >= d)
            {
                break;
            }
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            if k >= self.limit {
                break;
            }
            let seed = self.first_seed.wrapping_add(k);
            let mut beat = || *lock(&self.current[slot]) = Some((seed, Instant::now()));
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                checker.check_seed_with_progress(seed, &self.gen, &refs, &self.opts, &mut beat)
            }));
            *lock(&self.current[slot]) = None;
            let mut r = lock(&self.results);
            if r.closed {
                return;
            }
            match result {
                Ok(Ok(())) => {}
                Ok(Err(d)) => {
                    self.bar.println(format!(
                        "seed {}: {} differs: {}",
                        d.seed, d.tier, d.difference
                    ));
                    r.divergences.push(*d);
                    self.bar
                        .set_message(format!("{} divergences", r.divergences.len()));
                }
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|m| m.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".into());
                    r.panic.get_or_insert(Panic { seed, message });
                    self.stop.store(true, Ordering::Relaxed);
                    return;
                }
            }
            r.done += 1;
            self.bar.inc(1);
        }
    }

    /// The seed longest without progress, if that is longer than `stall`.
    fn stalled(&self, stall: Duration) -> Option<(u64, Duration)> {
        self.current
            .iter()
            .filter_map(|c| *lock(c))
            .map(|(seed, since)| (seed, since.elapsed()))
            .filter(|(_, t)| *t >= stall)
            .max_by_key(|(_, t)| *t)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the campaign: seeds `seed, seed + 1, ...` shared among `jobs`
/// threads until the count or the duration is reached, or until a seed
/// stalls.
pub fn run(config: &FuzzConfig) -> Result<FuzzReport, CliError> {
    let mut backends: Vec<Box<dyn Backend>> = vec![backend(Tier::Interp)?];
    for &t in &config.tiers {
        if t != Tier::Interp {
            backends.push(Box::new(AtLevel {
                inner: backend(t)?,
                level: opt_level(config, t),
            }));
        }
    }
    if backends.len() < 2 {
        return Err(CliError::Usage(
            "--tiers must name a tier besides interp".into(),
        ));
    }
    run_backends(backends, config)
}

/// The level a campaign compiles `tier` at: `--opt`, else the runtime's.
pub fn opt_level(config: &FuzzConfig, tier: Tier) -> u8 {
    config
        .opt_level
        .unwrap_or_else(|| bpfvm::Config::default().opt_level(tier))
}

/// A tier that compiles at its own optimisation level whatever the options
/// say, so that one campaign runs each tier at its level.
struct AtLevel {
    inner: Box<dyn Backend>,
    level: u8,
}

impl Backend for AtLevel {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn compile(
        &self,
        program: &Arc<Program>,
        opts: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        let opts = CompileOptions {
            opt_level: self.level,
            ..opts.clone()
        };
        self.inner.compile(program, &opts)
    }
}

/// [`run`] on given backends (the interpreter first), at `--opt` if set,
/// else at [`CompileOptions`]'s default level unless they choose their own.
///
/// The workers are detached threads: when a seed stalls, the campaign
/// returns without waiting for it (a compile inside LLVM cannot be
/// interrupted), and that thread ends with the process.
pub fn run_backends(
    backends: Vec<Box<dyn Backend>>,
    config: &FuzzConfig,
) -> Result<FuzzReport, CliError> {
    let gen = GenOptions {
        host_regions: config.host_regions,
        length_guards: config.length_guards,
        ..generator_options(config.checked)
    };
    let opts = CompileOptions {
        checked: config.checked,
        budget: config.budget,
        opt_level: config
            .opt_level
            .unwrap_or(CompileOptions::default().opt_level),
        ..CompileOptions::default()
    };
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
    if config.stall.is_zero() {
        return Err(CliError::Usage("--stall must be longer than zero".into()));
    }
    let jobs = config.jobs.max(1);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        backends,
        gen: gen.clone(),
        opts,
        first_seed: config.seed,
        limit: config.count.unwrap_or(u64::MAX),
        deadline: config.duration.map(|d| start + d),
        next: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        results: Mutex::new(Results::default()),
        current: (0..jobs).map(|_| Mutex::new(None)).collect(),
        bar: bar.clone(),
    });
    let workers: Vec<_> = (0..jobs)
        .map(|slot| {
            let shared = shared.clone();
            std::thread::spawn(move || shared.worker(slot))
        })
        .collect();
    let mut stalled = None;
    while !workers.iter().all(|w| w.is_finished()) {
        if let Some((seed, after)) = shared.stalled(config.stall) {
            shared.stop.store(true, Ordering::Relaxed);
            lock(&shared.results).closed = true;
            bar.println(format!(
                "seed {seed}: no progress for {:.1} s: stopping",
                after.as_secs_f64()
            ));
            stalled = Some((seed, after));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if stalled.is_none() {
        for w in workers {
            // Workers catch the tiers' panics: this is the campaign's own.
            w.join()
                .map_err(|_| CliError::Usage("a fuzzing worker panicked".into()))?;
        }
    }
    bar.finish_and_clear();
    let (done, mut divergences, panic) = {
        let mut r = lock(&shared.results);
        r.closed = true;
        (r.done, std::mem::take(&mut r.divergences), r.panic.take())
    };
    divergences.sort_by_key(|d| d.seed);
    let mut saved = Vec::new();
    let mut stall = None;
    if let Some(dir) = &config.save {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", dir.display())))?;
        for d in &divergences {
            let path = dir.join(format!("fuzz-{}-seed-{}.data", d.tier, d.seed));
            write(&path, d.to_data_file().as_bytes())?;
            saved.push(path);
        }
    }
    if let Some((seed, after)) = stalled {
        let saved = match &config.save {
            Some(dir) => {
                let (insns, _) = case_for_seed(seed, &gen);
                let bytes: Vec<u8> = insns
                    .iter()
                    .flat_map(|i| i.to_u64().to_le_bytes())
                    .collect();
                let path = dir.join(format!("fuzz-stall-seed-{seed}.bin"));
                write(&path, &bytes)?;
                Some(path)
            }
            None => None,
        };
        stall = Some(Stall { seed, after, saved });
    }
    Ok(FuzzReport {
        programs: done,
        first_seed: config.seed,
        elapsed: start.elapsed(),
        divergences,
        saved,
        stalled: stall,
        panic,
    })
}

/// What campaigns generate: programs that end with a checksum (so that a
/// divergence saves as a `.data` test), out-of-bounds accesses only when
/// checked.
fn generator_options(checked: bool) -> GenOptions {
    GenOptions {
        out_of_bounds: checked,
        checksum: true,
        ..GenOptions::default()
    }
}

/// Writes the programs of seeds `first..first + count` as conformance
/// `.data` tests in `dir` (`gen-seed-<seed>.data`), each with the
/// interpreter's outcome as its expectation: what campaigns generate, with
/// helper calls only when `helpers` (other VMs and the PTX kernel have no
/// helper 1, the mix helper), and host-region accesses only when
/// `host_regions` (the conformance harness provides them). Returns the
/// paths written.
pub fn write_generated(
    dir: &std::path::Path,
    first: u64,
    count: u64,
    helpers: bool,
    host_regions: bool,
    checked: bool,
) -> Result<Vec<std::path::PathBuf>, CliError> {
    let gen = GenOptions {
        helpers,
        host_regions,
        ..generator_options(checked)
    };
    let opts = CompileOptions {
        checked,
        ..CompileOptions::default()
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", dir.display())))?;
    let mut paths = Vec::new();
    for seed in first..first.saturating_add(count) {
        let text = seed_as_data_file(seed, &gen, &opts)
            .map_err(|e| CliError::Usage(format!("seed {seed}: generator bug: {e}")))?;
        let path = dir.join(format!("gen-seed-{seed}.data"));
        write(&path, text.as_bytes())?;
        paths.push(path);
    }
    Ok(paths)
}

fn write(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, bytes)
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))
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
            host_regions: true,
            length_guards: true,
            budget: Some(100_000),
            opt_level: Some(1),
            stall: Duration::from_secs(600),
            progress: false,
        };
        let r = run(&config).expect("runs");
        assert_eq!(r.programs, 50);
        assert!(r.divergences.is_empty(), "{:?}", r.divergences);
        assert!(r.stalled.is_none());
    }

    /// `bpfvm gen`: the files parse, pass the conformance harness on the
    /// interpreter and on Cranelift (so the expectation is the interpreter's
    /// outcome and not, say, the checksum of another seed), and call a
    /// helper only when allowed.
    #[test]
    fn generated_programs_are_conformance_tests() {
        use bpfvm_conformance::data::parse;
        use bpfvm_conformance::runner::{run_case, RunOptions};
        let calls_helper = |case: &bpfvm_conformance::data::TestCase| {
            use bpfvm::engine::isa::{CALL_HELPER, OP_CALL};
            let insns = case.program.as_ref().expect("raw program");
            insns
                .iter()
                .any(|i| i.code == OP_CALL && i.src == CALL_HELPER)
        };
        let calls_region = |case: &bpfvm_conformance::data::TestCase| {
            use bpfvm::engine::isa::{CALL_HELPER, OP_CALL};
            use bpfvm_conformance::host_regions::REGION_HELPER_ID;
            let insns = case.program.as_ref().expect("raw program");
            insns.iter().any(|i| {
                i.code == OP_CALL && i.src == CALL_HELPER && i.imm == REGION_HELPER_ID as i32
            })
        };
        let dir = std::env::temp_dir().join(format!("bpfvm-gen-test-{}", std::process::id()));
        let mut helper_calls = [0, 0, 0];
        let mut region_calls = [0, 0, 0];
        let kinds = [(false, false), (true, false), (true, true)];
        for (k, (helpers, regions)) in kinds.into_iter().enumerate() {
            let _ = std::fs::remove_dir_all(&dir);
            let paths = write_generated(&dir, 100, 40, helpers, regions, true).expect("writes");
            assert_eq!(paths.len(), 40);
            for path in &paths {
                let text = std::fs::read_to_string(path).expect("read");
                let case = parse("gen", &text).expect("parses");
                helper_calls[k] += calls_helper(&case) as usize;
                region_calls[k] += calls_region(&case) as usize;
                let cranelift = bpfvm::tier::backend(Tier::Cranelift).expect("cranelift");
                for backend in [&Interpreter as &dyn Backend, cranelift.as_ref()] {
                    run_case(&case, backend, &RunOptions::default())
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(helper_calls[0], 0, "--no-helpers programs call helpers");
        assert!(helper_calls[1] > 0, "no program of 40 calls a helper");
        assert_eq!(
            region_calls[..2],
            [0, 0],
            "host regions without --host-regions"
        );
        assert!(region_calls[2] > 0, "no program of 40 uses a host region");
    }

    use bpfvm::engine::backend::{CompileError, CompiledCode};
    use bpfvm::engine::interp::Interpreter;
    use bpfvm::engine::vmctx::VmCtx;

    /// A test tier: the interpreter, compiled after `delay`, with `add`
    /// added to every result; `panics` makes every compile panic.
    struct TestTier {
        delay: Duration,
        add: u64,
        panics: bool,
    }
    struct Added(Box<dyn CompiledCode>, u64);

    impl Backend for TestTier {
        fn name(&self) -> &'static str {
            "test"
        }
        fn compile(
            &self,
            p: &Arc<bpfvm::engine::Program>,
            o: &CompileOptions,
        ) -> Result<Box<dyn CompiledCode>, CompileError> {
            std::thread::sleep(self.delay);
            assert!(!self.panics, "tier bug");
            Ok(Box::new(Added(Interpreter.compile(p, o)?, self.add)))
        }
    }

    impl CompiledCode for Added {
        fn tier(&self) -> &'static str {
            "test"
        }
        fn options(&self) -> &CompileOptions {
            self.0.options()
        }
        unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64 {
            // SAFETY: forwarded under the caller's guarantees.
            unsafe { self.0.call(ctx, r1, r2) }.wrapping_add(self.1)
        }
    }

    /// The interpreter against `tier`.
    fn against(tier: TestTier) -> Vec<Box<dyn Backend>> {
        vec![Box::new(Interpreter), Box::new(tier)]
    }

    fn config(seed: u64, count: u64, stall: Duration, save: Option<PathBuf>) -> FuzzConfig {
        FuzzConfig {
            tiers: Vec::new(),
            count: Some(count),
            duration: None,
            seed,
            jobs: 1,
            save,
            checked: true,
            host_regions: false,
            length_guards: false,
            budget: Some(100_000),
            opt_level: Some(1),
            stall,
            progress: false,
        }
    }

    #[test]
    fn each_tier_compiles_at_its_level_unless_opt_is_given() {
        let mut c = config(1, 1, Duration::from_secs(1), None);
        c.opt_level = None;
        assert_eq!(
            opt_level(&c, Tier::Cranelift),
            bpfvm::DEFAULT_CRANELIFT_OPT_LEVEL
        );
        assert_eq!(opt_level(&c, Tier::Llvm), 3);
        c.opt_level = Some(0);
        assert_eq!(opt_level(&c, Tier::Llvm), 0);
        // The wrapper's level wins over the campaign's options.
        let tier = AtLevel {
            inner: Box::new(Interpreter),
            level: 2,
        };
        let program = Arc::new(
            bpfvm::engine::verifier::verify(
                bpfvm::engine::isa::decode_program(&[0x95, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
                &Default::default(),
            )
            .unwrap(),
        );
        let opts = CompileOptions {
            opt_level: 3,
            ..CompileOptions::default()
        };
        let code = tier.compile(&program, &opts).unwrap();
        assert_eq!(code.options().opt_level, 2);
        assert_eq!(tier.name(), "interp");
    }

    #[test]
    fn a_panicking_tier_is_reported_with_its_seed() {
        // A tier that panics on every program.
        let backends = against(TestTier {
            delay: Duration::ZERO,
            add: 0,
            panics: true,
        });
        let r = run_backends(backends, &config(7, 5, Duration::from_secs(60), None)).expect("runs");
        let p = r.panic.expect("reported");
        assert_eq!((p.seed, p.message.as_str()), (7, "tier bug"));
        assert_eq!(r.programs, 0);
        assert!(r.stalled.is_none());
    }

    #[test]
    fn a_long_minimisation_is_progress_not_a_stall() {
        // 5 ms per compile and results off by one: every program that does
        // not trap diverges and is minimised, hundreds of compiles in all,
        // far past the stall limit for the seed as a whole.
        let backends = against(TestTier {
            delay: Duration::from_millis(5),
            add: 1,
            panics: false,
        });
        let r =
            run_backends(backends, &config(1, 3, Duration::from_millis(400), None)).expect("runs");
        assert!(r.stalled.is_none(), "{:?}", r.stalled);
        assert_eq!(r.programs, 3);
        assert!(!r.divergences.is_empty(), "the off-by-one tier diverges");
        assert!(
            r.elapsed > Duration::from_millis(400),
            "minimising took longer than the limit"
        );
    }

    #[test]
    fn a_seed_that_does_not_finish_stops_the_campaign() {
        let dir = std::env::temp_dir().join(format!("bpfvm-fuzz-stall-{}", std::process::id()));
        let config = config(42, 10, Duration::from_millis(300), Some(dir.clone()));
        let started = Instant::now();
        // A compile that takes far longer than the stall limit.
        let backends = against(TestTier {
            delay: Duration::from_secs(5),
            add: 0,
            panics: false,
        });
        let r = run_backends(backends, &config).expect("runs");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "waited for the stuck compile"
        );
        let s = r.stalled.expect("the first seed stalls");
        assert_eq!(s.seed, 42);
        assert!(s.after >= Duration::from_millis(300));
        assert_eq!(r.programs, 0);
        let bin = std::fs::read(s.saved.expect("saved")).expect("readable");
        let (insns, _) = case_for_seed(42, &generator_options(true));
        assert_eq!(bin.len(), insns.len() * 8);
        let _ = std::fs::remove_dir_all(dir);
    }
}
