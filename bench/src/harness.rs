//! Loading a program once and running it on every executor the benchmarks
//! compare: the tiers (interpreter, Cranelift, LLVM, AOT), checked and
//! unchecked, and the tiered runtime after promotion. Shared by the
//! criterion benches, the tests and `bpfvm bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bpfvm::engine::backend::{execute_on, CompileOptions, CompiledCode, RunEnv, Stack};
use bpfvm::engine::helpers::{HelperTable, Helpers};
use bpfvm::engine::instr::LddwPseudo;
use bpfvm::engine::isa::{
    Insn, PSEUDO_MAP_FD, PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE, PSEUDO_MAP_VALUE,
};
use bpfvm::engine::verifier::{verify, LddwResolver, VerifyOptions};
use bpfvm::engine::vmctx::Region;
use bpfvm::engine::{Program as Verified, Trap};
use bpfvm::maps::MapSet;
use bpfvm::object::LoadedObject;
use bpfvm::tier::{self, Tier};
use bpfvm::{Config, Engine, TierPolicy};

/// Errors of the harness, as text.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What runs a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Executor {
    /// One tier, compiled directly through its backend.
    Tier(Tier),
    /// The tiered runtime ([`bpfvm::Engine`] with the default tiered
    /// policy), measured after promotion to tier 1 (its steady state).
    Tiered,
}

impl Executor {
    /// Every executor, in order.
    pub const ALL: [Executor; 5] = [
        Executor::Tier(Tier::Interp),
        Executor::Tier(Tier::Cranelift),
        Executor::Tier(Tier::Llvm),
        Executor::Tier(Tier::Aot),
        Executor::Tiered,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Executor::Tier(t) => t.name(),
            Executor::Tiered => "tiered",
        }
    }

    /// Parses a name as [`Executor::name`] spells it.
    pub fn parse(s: &str) -> Option<Executor> {
        Executor::ALL.into_iter().find(|e| e.name() == s)
    }

    /// Whether this build has it.
    pub fn is_available(self) -> bool {
        match self {
            Executor::Tier(t) => t.is_available(),
            Executor::Tiered => Tier::Llvm.is_available(),
        }
    }

    /// Whether checked and unchecked code differ (the interpreter always checks).
    pub fn has_unchecked_mode(self) -> bool {
        self != Executor::Tier(Tier::Interp)
    }
}

/// The options the runtime compiles on `tier` with: the default
/// configuration's level for the tier (Cranelift at tier 0's); the
/// interpreter always checks memory.
pub fn tier_options(tier: Tier, checked: bool) -> CompileOptions {
    CompileOptions {
        checked: checked || tier == Tier::Interp,
        opt_level: Config::default().opt_level(tier),
        ..CompileOptions::default()
    }
}

/// A program ready to compile on any executor: verified, with the
/// helpers, regions and maps it needs.
pub struct Subject {
    pub name: String,
    /// The linked instructions (before verification).
    pub insns: Vec<Insn>,
    pub program: Arc<Verified>,
    /// The object the program comes from, when it uses maps or helpers.
    object: Option<LoadedObject>,
}

/// Picks `bpf_main`, else the object's only program.
fn entry_name(object: &LoadedObject, prog: Option<&str>) -> Result<String, Error> {
    if let Some(p) = prog {
        return Ok(p.to_string());
    }
    let o = object.object();
    if o.program_index("bpf_main").is_some() || o.functions.iter().any(|f| f.name == "bpf_main") {
        return Ok("bpf_main".into());
    }
    match &o.programs[..] {
        [p] => Ok(p.name.clone()),
        _ => Err(format!(
            "the object has several programs; name one with --prog ({})",
            o.describe_programs()
        )
        .into()),
    }
}

impl Subject {
    /// Loads program `prog` (default: `bpf_main`, else the only program)
    /// of a BPF ELF object: creates its maps, links and verifies it.
    pub fn from_elf(bytes: &[u8], prog: Option<&str>) -> Result<Subject, Error> {
        let object = LoadedObject::load(bytes)?;
        let name = entry_name(&object, prog)?;
        let insns = object.program_insns(&name)?;
        let program = Arc::new(object.verify_program(&name)?);
        Ok(Subject {
            name,
            insns,
            program,
            object: Some(object),
        })
    }

    /// A program without maps; it may call the conformance helper (5).
    pub fn from_insns(name: &str, insns: Vec<Insn>) -> Result<Subject, Error> {
        let helpers = bpfvm::standard_test_helpers();
        let opts = VerifyOptions {
            helper_exists: &|id| helpers.contains(id),
            ..VerifyOptions::default()
        };
        let program = Arc::new(verify(insns.clone(), &opts)?);
        Ok(Subject {
            name: name.into(),
            insns,
            program,
            object: None,
        })
    }

    /// Number of instruction slots.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Whether the program calls helpers or uses maps (rbpf cannot run it).
    pub fn uses_object(&self) -> bool {
        self.object.as_ref().is_some_and(|o| !o.maps().is_empty())
            || self.insns.iter().any(|i| i.code == 0x85 && i.src == 0)
    }

    /// Whether it has bpf-to-bpf calls.
    pub fn uses_local_calls(&self) -> bool {
        self.insns.iter().any(|i| i.code == 0x85 && i.src == 1)
    }

    fn helpers(&self, tier: Tier, opts: &CompileOptions) -> Result<Helpers, Error> {
        Ok(match &self.object {
            Some(o) => o.helpers_for(tier, opts)?,
            None => bpfvm::standard_test_helpers(),
        })
    }

    fn regions(&self) -> Vec<Region> {
        self.object
            .as_ref()
            .map(|o| o.regions())
            .unwrap_or_default()
    }

    /// Compiles for `exec`, returning what runs it and the compile time
    /// (for the tiered runtime: the load, tier-0 compile included; tier 1
    /// is then compiled and published before this returns, untimed).
    pub fn compile(&self, exec: Executor, checked: bool) -> Result<(Runner, Duration), Error> {
        let (runner, elapsed) = self.load(exec, checked)?;
        runner.tier_up()?;
        Ok((runner, elapsed))
    }

    /// Like [`Subject::compile`], but the tiered runtime stays on tier 0
    /// until [`Runner::tier_up`]: timing several loads back to back then
    /// measures each with warm caches, as the fixed tiers' compiles are,
    /// instead of after a tier-1 compile that evicted them.
    pub fn load(&self, exec: Executor, checked: bool) -> Result<(Runner, Duration), Error> {
        let tier = match exec {
            Executor::Tier(t) => t,
            Executor::Tiered => return self.tiered(checked),
        };
        self.compile_with(tier, &self.options(tier, checked))
    }

    /// The options the runtime compiles this program with on `tier`:
    /// [`tier_options`], with array-map lookups inlined where a tier can.
    pub fn options(&self, tier: Tier, checked: bool) -> CompileOptions {
        CompileOptions {
            array_maps: self
                .object
                .as_ref()
                .map(|o| o.inlinable_array_maps())
                .unwrap_or_default(),
            ..tier_options(tier, checked)
        }
    }

    /// Compiles on `tier` with explicit options.
    pub fn compile_with(
        &self,
        tier: Tier,
        opts: &CompileOptions,
    ) -> Result<(Runner, Duration), Error> {
        let backend = tier::backend(tier)?;
        let start = Instant::now();
        let code = backend.compile(&self.program, opts)?;
        let elapsed = start.elapsed();
        let table = self.helpers(tier, opts)?.table();
        // As the runtime does.
        let dirty_bytes = self.program.stack_bytes_written(opts.call_depth);
        Ok((
            Runner::Code(CodeRunner {
                stack: Stack::new(opts.call_depth),
                dirty_bytes,
                code,
                table,
                regions: self.regions(),
            }),
            elapsed,
        ))
    }

    fn tiered(&self, checked: bool) -> Result<(Runner, Duration), Error> {
        let mut config = Config::new();
        config
            .tier_policy(TierPolicy::tiered())
            .memory_checks(checked);
        match &self.object {
            // The object's helpers (tail calls on tier 0), its maps as
            // regions kept alive by the engine, and inlinable array maps.
            Some(o) => o.configure(&mut config, Tier::Cranelift, &CompileOptions::default())?,
            None => {
                config.helpers(&bpfvm::standard_test_helpers());
            }
        }
        let engine = Engine::new(&config);
        let start = Instant::now();
        let program = match &self.object {
            Some(o) => engine.load_with(self.insns.clone(), Some(&MapResolver(o.maps())))?,
            None => engine.load_insns(self.insns.clone())?,
        };
        let elapsed = start.elapsed();
        Ok((Runner::Tiered(program), elapsed))
    }

    /// Instructions the interpreter executes on `mem` (counted with an
    /// instruction budget), and the result.
    pub fn count_instructions(&self, mem: &mut [u8]) -> Result<(u64, u64), Error> {
        let opts = CompileOptions {
            budget: Some(u64::MAX),
            ..CompileOptions::default()
        };
        let (runner, _) = self.compile_with(Tier::Interp, &opts)?;
        let Runner::Code(mut r) = runner else {
            unreachable!("compile_with gives code")
        };
        let env = RunEnv {
            helpers: &r.table,
            regions: &r.regions,
            host: std::ptr::null_mut(),
        };
        let o = execute_on(r.code.as_ref(), &env, mem, &mut r.stack)?;
        Ok((u64::MAX - o.budget_left.unwrap_or(u64::MAX), o.r0))
    }
}

/// Resolves map references to the maps of a loaded object (for the tiered
/// engine, which takes instructions and a resolver).
struct MapResolver<'a>(&'a MapSet);

impl LddwResolver for MapResolver<'_> {
    fn resolve(&self, p: &LddwPseudo) -> Result<u64, String> {
        let map = usize::try_from(p.imm)
            .ok()
            .and_then(|i| self.0.get(i))
            .ok_or_else(|| format!("map index {} does not exist", p.imm))?;
        match p.kind {
            PSEUDO_MAP_FD | PSEUDO_MAP_IDX => Ok(map.handle()),
            PSEUDO_MAP_VALUE | PSEUDO_MAP_IDX_VALUE => map.value_addr(p.next_imm as u32),
            k => Err(format!(
                "pseudo source {k} is not supported by the benchmarks"
            )),
        }
    }
}

/// Compiled code with its helper table, regions and a reused stack.
pub struct CodeRunner {
    code: Box<dyn CompiledCode>,
    table: HelperTable,
    regions: Vec<Region>,
    /// Zeroed; the top `dirty_bytes` bytes are cleared after each run.
    stack: Stack,
    dirty_bytes: usize,
}

/// Runs a compiled program.
pub enum Runner {
    Code(CodeRunner),
    Tiered(bpfvm::Program),
}

impl Runner {
    /// Runs over `mem` from a zeroed stack (as the runtime does: the stack
    /// area is reused, and what a run may have written is zeroed after
    /// it: `Program::stack_bytes_written`).
    #[inline]
    pub fn run(&mut self, mem: &mut [u8]) -> Result<u64, Trap> {
        match self {
            Runner::Code(r) => {
                let env = RunEnv {
                    helpers: &r.table,
                    regions: &r.regions,
                    host: std::ptr::null_mut(),
                };
                let out = execute_on(r.code.as_ref(), &env, mem, &mut r.stack).map(|o| o.r0);
                r.stack.clear_top(r.dirty_bytes);
                out
            }
            Runner::Tiered(p) => p.run(mem),
        }
    }

    /// For the tiered runtime, compiles tier 1 and publishes it (an
    /// error if the program is not then on tier 1); nothing for the
    /// others.
    pub fn tier_up(&self) -> Result<(), Error> {
        let Runner::Tiered(p) = self else {
            return Ok(());
        };
        p.force_tier_up(true)?;
        if p.current_tier() != Tier::Llvm {
            return Err(format!("tiered: not promoted (on {})", p.current_tier()).into());
        }
        Ok(())
    }

    /// The tier the code runs on now.
    pub fn tier(&self) -> &'static str {
        match self {
            Runner::Code(r) => r.code.tier(),
            Runner::Tiered(p) => p.current_tier().name(),
        }
    }
}

/// A self-timed measurement: the median time per run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Median of the samples, per run, in nanoseconds.
    pub median_ns: f64,
    /// Fastest and slowest sample, per run.
    pub min_ns: f64,
    pub max_ns: f64,
    /// Runs in all, and samples (each the mean of a batch of runs).
    pub runs: u64,
    pub samples: usize,
}

/// Samples of the time per run of one function, in batches of runs about
/// 1 ms long; several samplers can take turns ([`Sampler::sample_for`])
/// so that load on the machine spreads evenly over what they compare.
#[derive(Clone, Debug)]
pub struct Sampler {
    batch: u64,
    runs: u64,
    per_run: Vec<f64>,
}

impl Sampler {
    /// Runs `f` once (warm-up) and then enough times to pick a batch size.
    pub fn calibrate<E>(f: &mut impl FnMut() -> Result<u64, E>) -> Result<Sampler, E> {
        let t0 = Instant::now();
        f()?;
        let first = t0.elapsed().as_nanos().max(1) as f64;
        let probe = ((1_000_000.0 / first) as u64).clamp(1, 10_000);
        let t1 = Instant::now();
        for _ in 0..probe {
            f()?;
        }
        let each = (t1.elapsed().as_nanos() as f64 / probe as f64).max(1.0);
        Ok(Sampler {
            batch: ((1_000_000.0 / each) as u64).max(1),
            runs: probe + 1,
            per_run: Vec::new(),
        })
    }

    /// Takes samples for about `time` (at least one).
    pub fn sample_for<E>(
        &mut self,
        f: &mut impl FnMut() -> Result<u64, E>,
        time: Duration,
    ) -> Result<(), E> {
        let start = Instant::now();
        loop {
            let t = Instant::now();
            for _ in 0..self.batch {
                std::hint::black_box(f()?);
            }
            self.per_run
                .push(t.elapsed().as_nanos() as f64 / self.batch as f64);
            self.runs += self.batch;
            if start.elapsed() >= time {
                return Ok(());
            }
        }
    }

    /// The samples so far (`None` before the first).
    pub fn timing(&self) -> Option<Timing> {
        let mut v = self.per_run.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Timing {
            median_ns: v[v.len() / 2],
            min_ns: v[0],
            max_ns: v[v.len() - 1],
            runs: self.runs,
            samples: v.len(),
        })
    }
}

/// Times `f` for about `target`: a warm-up, then batches of runs about
/// 1 ms long (at least one run each, at least 5 batches).
pub fn time_runs<E>(mut f: impl FnMut() -> Result<u64, E>, target: Duration) -> Result<Timing, E> {
    let mut s = Sampler::calibrate(&mut f)?;
    s.sample_for(&mut f, target)?;
    while s.per_run.len() < 5 {
        s.sample_for(&mut f, Duration::ZERO)?;
    }
    Ok(s.timing().expect("sampled"))
}

/// The geometric mean of positive values (`None` for none).
pub fn geomean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        if v > 0.0 && v.is_finite() {
            sum += v.ln();
            n += 1;
        }
    }
    (n > 0).then(|| (sum / n as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geomean_of_ratios() {
        let g = geomean([2.0, 8.0]).expect("two values");
        assert!((g - 4.0).abs() < 1e-9);
        assert_eq!(geomean(std::iter::empty()), None);
        // Zero, negative and non-finite values are left out.
        let g = geomean([0.0, -1.0, f64::NAN, 3.0]).expect("one value");
        assert!((g - 3.0).abs() < 1e-9);
    }

    #[test]
    fn timing_takes_at_least_five_samples() {
        let mut n = 0u64;
        let t = time_runs(
            || {
                n += 1;
                Ok::<u64, ()>(std::hint::black_box(n))
            },
            Duration::ZERO,
        )
        .expect("never fails");
        assert!(t.samples >= 5);
        assert!(t.runs <= n && t.runs >= 5);
        assert!(t.min_ns <= t.median_ns && t.median_ns <= t.max_ns);
    }

    #[test]
    fn timing_stops_at_the_first_error() {
        let mut n = 0;
        let r = time_runs(
            || {
                n += 1;
                if n > 3 {
                    Err("trap")
                } else {
                    Ok(0)
                }
            },
            Duration::from_millis(10),
        );
        assert_eq!(r, Err("trap"));
    }

    #[test]
    fn executor_names_round_trip() {
        for e in Executor::ALL {
            assert_eq!(Executor::parse(e.name()), Some(e));
        }
        assert_eq!(Executor::parse("jit"), None);
        assert!(Executor::Tier(Tier::Interp).is_available());
        assert!(!Executor::Tier(Tier::Interp).has_unchecked_mode());
    }
}
