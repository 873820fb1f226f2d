//! The virtual machine, `Engine`: verifies and loads programs, owns the helpers, the regions and
//! the background compile threads. Cheap to clone, `Send + Sync`.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bpfvm_engine::backend::{
    validate_options, Backend, CompileError, CompileOptions, CompiledCode, COUNT_ONLY,
};
use bpfvm_engine::helpers::{HelperTable, Helpers};
use bpfvm_engine::isa::{decode_program, Insn};
use bpfvm_engine::verifier::{verify, LddwResolver, VerifyError, VerifyOptions};
use bpfvm_engine::vmctx::Region;
use bpfvm_engine::Program as Verified;

use crate::config::{Config, CrossCheck, TierPolicy};
use crate::crosscheck::recording_helpers;
use crate::program::Program;
use crate::tier::{backend, Tier, TierError};

/// Why a program could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Tier(#[from] TierError),
}

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct EngineInner {
    pub config: Config,
    /// The configured helpers, wrapped for cross-check recording.
    pub helpers: Helpers,
    pub table: HelperTable,
    pub regions: Vec<Region>,
    /// The cross-checks calls get: the configured ones, or none when some
    /// region is writable (see [`Engine::cross_checks_possible`]).
    pub cross_check: Option<CrossCheck>,
    jobs: Mutex<Option<Sender<Job>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for EngineInner {
    /// Closes the job queue and waits for the compile threads, so that no
    /// compile is still running (inside LLVM) when the host exits. A worker
    /// that drops the last reference itself is not waited for.
    fn drop(&mut self) {
        let jobs = match self.jobs.get_mut() {
            Ok(j) => j,
            Err(p) => p.into_inner(),
        };
        jobs.take();
        let workers = match self.workers.get_mut() {
            Ok(w) => std::mem::take(w),
            Err(p) => std::mem::take(p.into_inner()),
        };
        let me = std::thread::current().id();
        for w in workers {
            if w.thread().id() != me {
                let _ = w.join();
            }
        }
    }
}

/// The embedding entry point.
///
/// ```
/// use bpfvm::{Config, Engine, TierPolicy, Tier};
///
/// let mut config = Config::new();
/// config.tier_policy(TierPolicy::Fixed(Tier::Interp));
/// let engine = Engine::new(&config);
/// let program = engine.load_asm("mov %r0, 42\nexit").unwrap();
/// assert_eq!(program.run(&mut []).unwrap(), 42);
/// ```
#[derive(Clone)]
pub struct Engine(pub(crate) Arc<EngineInner>);

impl Engine {
    pub fn new(config: &Config) -> Engine {
        let helpers = recording_helpers(&config.helpers);
        let writable_regions = config.regions.iter().any(|r| r.writable != 0);
        if writable_regions && config.cross_check.is_some() {
            tracing::warn!(
                "cross-checking is off: the engine has writable host regions (map values, global data), which a reference run would write a second time"
            );
        }
        let cross_check = config.cross_check.filter(|_| !writable_regions);
        Engine(Arc::new(EngineInner {
            table: helpers.table(),
            helpers,
            regions: config.regions.clone(),
            cross_check,
            config: config.clone(),
            jobs: Mutex::new(None),
            workers: Mutex::new(Vec::new()),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Whether promoted code can be cross-checked: only when cross-checks
    /// are configured and no host region is writable. A reference run
    /// replays the helper results of the first run, but writes the program
    /// makes through pointers into writable regions (map values, global
    /// data) would happen a second time, and undoing them is not safe
    /// while other threads use the same memory; such engines run without
    /// cross-checks (and say so in a warning when they are created).
    pub fn cross_checks_possible(&self) -> bool {
        self.0.cross_check.is_some()
    }

    /// Loads raw bytecode.
    pub fn load(&self, bytecode: &[u8]) -> Result<Program, LoadError> {
        let insns = decode_program(bytecode).map_err(VerifyError::from)?;
        self.load_insns(insns)
    }

    /// Loads instructions.
    pub fn load_insns(&self, insns: Vec<Insn>) -> Result<Program, LoadError> {
        self.load_with(insns, None)
    }

    /// Loads assembler text (the conformance suite's syntax).
    pub fn load_asm(&self, text: &str) -> Result<Program, LoadError> {
        let insns = bpfvm_engine::asm::assemble(text).map_err(|e| {
            LoadError::Verify(VerifyError::At {
                pc: 0,
                text: String::new(),
                reason: bpfvm_engine::verifier::Reason::Decode(
                    bpfvm_engine::instr::DecodeError::BadField(e.to_string()),
                ),
            })
        })?;
        self.load_insns(insns)
    }

    /// Loads instructions whose `lddw` pseudo sources `resolver` resolves.
    pub fn load_with(
        &self,
        insns: Vec<Insn>,
        resolver: Option<&dyn LddwResolver>,
    ) -> Result<Program, LoadError> {
        let helpers = &self.0.helpers;
        let opts = VerifyOptions {
            helper_exists: &|id| helpers.contains(id),
            lddw: resolver,
            ..VerifyOptions::default()
        };
        let verified = Arc::new(verify(insns, &opts)?);
        Program::new(self.clone(), verified)
    }

    /// The tier programs start on under the configured policy.
    pub(crate) fn initial_tier(&self) -> Tier {
        match self.0.config.tier_policy {
            TierPolicy::Fixed(t) => t,
            TierPolicy::Tiered { .. } => self.tier0(),
            TierPolicy::Eager => Tier::Llvm,
        }
    }

    /// Tier 0: Cranelift when compiled in, else the interpreter.
    pub(crate) fn tier0(&self) -> Tier {
        if Tier::Cranelift.is_available() {
            Tier::Cranelift
        } else {
            Tier::Interp
        }
    }

    /// Compile options for a tier: tier 0 always counts instructions (with
    /// the configured budget, or an unreachable one) so that long calls
    /// count towards promotion; other tiers count only when a budget is set.
    pub(crate) fn compile_options(&self, tier: Tier, counting: bool) -> CompileOptions {
        let c = &self.0.config;
        CompileOptions {
            checked: c.memory_checks,
            budget: match (c.instruction_budget, counting) {
                (Some(b), _) => Some(b),
                (None, true) => Some(COUNT_ONLY),
                (None, false) => None,
            },
            call_depth: c.call_depth,
            opt_level: c.opt_level(tier),
            array_maps: c.array_maps.clone(),
        }
    }

    /// Compiles `program` on `tier` (tier 1 may be overridden by the
    /// configuration), returning the code and the compile time.
    pub(crate) fn compile(
        &self,
        program: &Arc<Verified>,
        tier: Tier,
        counting: bool,
    ) -> Result<(Box<dyn CompiledCode>, u64), LoadError> {
        let opts = self.compile_options(tier, counting);
        validate_options(&opts)?;
        let backend: Box<dyn Backend> = match (&self.0.config.tier1_backend, tier) {
            (Some(b), Tier::Llvm) => Box::new(SharedBackend(b.clone())),
            _ => backend(tier)?,
        };
        let start = Instant::now();
        let code = backend.compile(program, &opts)?;
        Ok((code, start.elapsed().as_nanos() as u64))
    }

    /// Runs `job` on a background compile thread (started on first use).
    pub(crate) fn spawn_compile(&self, job: Job) {
        let mut jobs = match self.0.jobs.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if jobs.is_none() {
            let (tx, rx) = channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for k in 0..self.0.config.compile_threads {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("bpfvm-compile-{k}"))
                    .spawn(move || worker(rx));
                match spawned {
                    Ok(handle) => match self.0.workers.lock() {
                        Ok(mut w) => w.push(handle),
                        Err(p) => p.into_inner().push(handle),
                    },
                    Err(e) => tracing::warn!("cannot start a compile thread: {e}"),
                }
            }
            *jobs = Some(tx);
        }
        if let Some(tx) = jobs.as_ref() {
            if let Err(e) = tx.send(job) {
                // No worker is alive: compile here rather than never.
                (e.0)();
            }
        }
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = {
            let guard = match rx.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// A configured tier-1 backend shared between compiles.
struct SharedBackend(Arc<dyn Backend>);

impl Backend for SharedBackend {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn compile(
        &self,
        program: &Arc<Verified>,
        opts: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        self.0.compile(program, opts)
    }
}
