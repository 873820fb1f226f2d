//! `Program`: a loaded program, callable from many threads, that moves from
//! tier 0 to tier 1 when it is hot and cross-checks the promoted code.
//!
//! The code a call runs is read through one pointer, published with a
//! single atomic store. It points at one of the three pieces of code a
//! program may have (the initial tier's, the cross-check reference's,
//! tier 1's), each made at most once and kept until the program is
//! dropped: a call takes no reference count (which cost two atomic
//! read-modify-writes a call, about half the runtime's overhead on a short
//! program), calls already running finish in the tier they started in, and
//! the code they run stays alive as long as any call can be inside it.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{
    AtomicPtr, AtomicU32, AtomicU64, AtomicU8,
    Ordering::{Acquire, Relaxed, Release, SeqCst},
};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

use bpfvm_engine::backend::{execute_on, CompiledCode, Outcome, RunEnv, Stack};
use bpfvm_engine::trap::Trap;
use bpfvm_engine::Program as Verified;

use crate::config::TierPolicy;
use crate::crosscheck::{difference, MismatchReport, Mode, RunOutcome, RunState};
use crate::tier::Tier;
use crate::vm::{Engine, LoadError};

/// Compiled code and what the program needs to know about it.
struct Compiled {
    tier: Tier,
    code: Box<dyn CompiledCode>,
    /// Subject to cross-checks (promoted code, or a fixed non-reference tier).
    checked: bool,
}

// Promotion states.
const IDLE: u8 = 0;
const COMPILING: u8 = 1;
const PROMOTED: u8 = 2;
const GAVE_UP: u8 = 3;
const DEMOTED: u8 = 4;
const FIXED: u8 = 5;

struct ProgramInner {
    engine: Engine,
    verified: Arc<Verified>,
    /// The code calls run on now: always that of `initial`, `reference`
    /// or `tier1`, which only [`ProgramInner::publish`] stores.
    current: AtomicPtr<Compiled>,
    /// The code the program started on (where a mismatch demotes it to).
    initial: Arc<Compiled>,
    reference: OnceLock<Option<Arc<Compiled>>>,
    /// Tier 1's code once compiled: a promotion after a demotion runs it
    /// again rather than compiling the same code twice.
    tier1: OnceLock<Arc<Compiled>>,
    tier_calls: [AtomicU64; 3],
    compile_ns: [AtomicU64; 3],
    tier0_insns: AtomicU64,
    /// Calls made on the current code (decides which are cross-checked).
    calls_on_current: AtomicU64,
    /// Calls after which the next tier-1 attempt may start.
    next_attempt: AtomicU64,
    state: AtomicU8,
    failures: AtomicU32,
    cross_checks: AtomicU64,
    mismatches: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_mismatch: Mutex<Option<MismatchReport>>,
    settled: (Mutex<()>, Condvar),
    /// Bytes at the stack's top a run may leave written (see `with_stack`).
    dirty_bytes: usize,
}

/// The code a program keeps for its whole life, which calls may run on.
#[derive(Clone, Copy)]
enum Kept {
    Initial,
    Reference,
    Tier1,
}

impl ProgramInner {
    /// The code calls run on now.
    fn current(&self) -> &Compiled {
        // SAFETY: `current` points at the `Compiled` of `initial`,
        // `reference` or `tier1` (made from `initial`, then stored only by
        // `publish`, which takes it from those): each is set once and
        // dropped with `self`, so it outlives this borrow of `self`. The
        // Release store in `publish` after the code was made, and this
        // Acquire load, make it visible whole.
        unsafe { &*self.current.load(Acquire) }
    }

    /// Makes the code of `which` the code calls run on, when the program
    /// has it (the reference and tier 1 once compiled); returns whether it
    /// did.
    fn publish(&self, which: Kept) -> bool {
        let code = match which {
            Kept::Initial => Some(&self.initial),
            Kept::Reference => self.reference.get().and_then(Option::as_ref),
            Kept::Tier1 => self.tier1.get(),
        };
        if let Some(code) = code {
            self.current.store(Arc::as_ptr(code).cast_mut(), Release);
        }
        code.is_some()
    }

    /// Calls on every tier (derived: one counter per tier is all a call bumps).
    fn total_calls(&self) -> u64 {
        self.tier_calls.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// A loaded program. Cheap to clone; `run` may be called from many threads.
#[derive(Clone)]
pub struct Program(Arc<ProgramInner>);

/// Counts per tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierCounts {
    pub interp: u64,
    pub cranelift: u64,
    pub llvm: u64,
}

impl TierCounts {
    fn from(a: &[AtomicU64; 3]) -> TierCounts {
        TierCounts {
            interp: a[0].load(Relaxed),
            cranelift: a[1].load(Relaxed),
            llvm: a[2].load(Relaxed),
        }
    }
}

/// A program's statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// The tier calls run on now.
    pub tier: Tier,
    pub calls: TierCounts,
    /// Time spent compiling each tier, in nanoseconds.
    pub compile_ns: TierCounts,
    /// Instructions executed on tier 0 (counted towards promotion).
    pub tier0_instructions: u64,
    pub cross_checks: u64,
    pub mismatches: u64,
    pub compile_failures: u32,
    /// The last tier-1 compile error, if any.
    pub last_error: Option<String>,
}

fn idx(t: Tier) -> usize {
    match t {
        Tier::Interp => 0,
        Tier::Cranelift => 1,
        Tier::Llvm | Tier::Aot => 2,
    }
}

thread_local! {
    static STACK: Cell<Option<Stack>> = const { Cell::new(None) };
}

/// Runs `f` on this thread's stack area (reused across calls; zero when
/// `f` starts), then zeroes the `dirty` top bytes `f` may have written.
fn with_stack<R>(depth: usize, dirty: usize, f: impl FnOnce(&mut Stack) -> R) -> R {
    let cached = STACK.with(|s| s.take());
    let mut stack = match cached {
        Some(s) if s.frames() == depth => s,
        _ => Stack::new(depth),
    };
    let r = f(&mut stack);
    stack.clear_top(dirty);
    STACK.with(|s| s.set(Some(stack)));
    r
}

impl Program {
    pub(crate) fn new(engine: Engine, verified: Arc<Verified>) -> Result<Program, LoadError> {
        let policy = engine.0.config.tier_policy;
        let reference_tier = engine.0.config.cross_check.map(|c| c.reference);
        let tier0 = engine.initial_tier();
        let tiered = matches!(policy, TierPolicy::Tiered { .. });
        let (code, ns, tier, failed) = match engine.compile(&verified, tier0, tiered) {
            Ok((code, ns)) => (code, ns, tier0, None),
            // Eager: tier 1 failed at load; start on tier 0.
            Err(e) if policy == TierPolicy::Eager => {
                let t = engine.tier0();
                let (code, ns) = engine.compile(&verified, t, false)?;
                (code, ns, t, Some(e.to_string()))
            }
            Err(e) => return Err(e),
        };
        let checked = !tiered && Some(tier) != reference_tier;
        let initial = Arc::new(Compiled {
            tier,
            code,
            checked,
        });
        let state = match policy {
            TierPolicy::Tiered { .. } if tier1_available(&engine) => IDLE,
            TierPolicy::Tiered { .. } => GAVE_UP,
            _ => FIXED,
        };
        let call_threshold = match policy {
            TierPolicy::Tiered { call_threshold, .. } => call_threshold,
            _ => u64::MAX,
        };
        let config = &engine.0.config;
        let dirty_bytes = verified.stack_bytes_written(config.call_depth);
        let inner = ProgramInner {
            engine,
            verified,
            current: AtomicPtr::new(Arc::as_ptr(&initial).cast_mut()),
            initial,
            reference: OnceLock::new(),
            tier1: OnceLock::new(),
            tier_calls: Default::default(),
            compile_ns: Default::default(),
            tier0_insns: AtomicU64::new(0),
            calls_on_current: AtomicU64::new(0),
            next_attempt: AtomicU64::new(call_threshold),
            state: AtomicU8::new(state),
            failures: AtomicU32::new(failed.is_some() as u32),
            cross_checks: AtomicU64::new(0),
            mismatches: AtomicU64::new(0),
            last_error: Mutex::new(failed),
            last_mismatch: Mutex::new(None),
            settled: (Mutex::new(()), Condvar::new()),
            dirty_bytes,
        };
        inner.compile_ns[idx(tier)].store(ns, Relaxed);
        if state == GAVE_UP {
            *lock(&inner.last_error) =
                Some("no tier 1 in this build (llvm support not compiled in)".into());
        }
        Ok(Program(Arc::new(inner)))
    }

    /// Runs the program over `mem` (r1 = its address, r2 = its length;
    /// both 0 when empty) and returns r0, or the trap.
    pub fn run(&self, mem: &mut [u8]) -> Result<u64, Trap> {
        self.run_outcome(mem).map(|o| o.r0)
    }

    /// Like [`Program::run`], also returning the instruction budget left
    /// when the engine has one.
    pub fn run_outcome(&self, mem: &mut [u8]) -> Result<Outcome, Trap> {
        let inner = &*self.0;
        let code = inner.current();
        inner.tier_calls[idx(code.tier)].fetch_add(1, Relaxed);
        let check = code.checked && self.cross_check_this_call();
        let depth = inner.engine.0.config.call_depth;
        let (result, consumed) = with_stack(depth, inner.dirty_bytes, |stack| {
            if check {
                let r = self.run_cross_checked(code, mem, stack);
                (
                    r.map(|r0| Outcome {
                        r0,
                        budget_left: None,
                    }),
                    0,
                )
            } else {
                let env = RunEnv {
                    helpers: &inner.engine.0.table,
                    regions: &inner.engine.0.regions,
                    host: std::ptr::null_mut(),
                };
                let r = execute_on(code.code.as_ref(), &env, mem, stack);
                let consumed = match (&r, code.code.options().budget) {
                    (Ok(o), Some(initial)) => initial - o.budget_left.unwrap_or(initial),
                    _ => 0,
                };
                (r, consumed)
            }
        });
        if inner.state.load(Relaxed) == IDLE {
            self.maybe_promote(consumed);
        }
        let user_budget = inner.engine.0.config.instruction_budget.is_some();
        result.map(|o| Outcome {
            r0: o.r0,
            budget_left: o.budget_left.filter(|_| user_budget),
        })
    }

    /// The tier calls run on now.
    pub fn current_tier(&self) -> Tier {
        self.0.current().tier
    }

    /// The verified program.
    pub fn verified(&self) -> &Verified {
        &self.0.verified
    }

    /// Compiles tier 1 now (or, when it was compiled before and the program
    /// then demoted, publishes that code again). With `wait`, returns once
    /// it is published (or has failed); without, queues the compile and
    /// returns at once.
    /// Returns the tier calls run on afterwards (with `wait`), or the
    /// current one.
    pub fn force_tier_up(&self, wait: bool) -> Result<Tier, String> {
        let inner = &*self.0;
        if !tier1_available(&inner.engine) {
            return Err("no tier 1 in this build (llvm support not compiled in)".into());
        }
        let claimed = [IDLE, GAVE_UP, DEMOTED, FIXED].into_iter().any(|from| {
            inner
                .state
                .compare_exchange(from, COMPILING, SeqCst, SeqCst)
                .is_ok()
        });
        if claimed {
            if wait {
                compile_tier1(&self.0);
            } else {
                let weak = Arc::downgrade(&self.0);
                inner
                    .engine
                    .spawn_compile(Box::new(move || background(weak)));
                return Ok(self.current_tier());
            }
        } else if wait {
            // A compile is already in flight: wait for it to settle.
            let (m, cv) = &inner.settled;
            let mut guard = lock(m);
            while inner.state.load(SeqCst) == COMPILING {
                guard = match cv.wait(guard) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
            }
        }
        match lock(&inner.last_error).clone() {
            Some(e) if self.current_tier() != Tier::Llvm => Err(e),
            _ => Ok(self.current_tier()),
        }
    }

    pub fn stats(&self) -> Stats {
        let inner = &*self.0;
        Stats {
            tier: self.current_tier(),
            calls: TierCounts::from(&inner.tier_calls),
            compile_ns: TierCounts::from(&inner.compile_ns),
            tier0_instructions: inner.tier0_insns.load(Relaxed),
            cross_checks: inner.cross_checks.load(Relaxed),
            mismatches: inner.mismatches.load(Relaxed),
            compile_failures: inner.failures.load(Relaxed),
            last_error: lock(&inner.last_error).clone(),
        }
    }

    /// The last cross-check mismatch, if any.
    pub fn last_mismatch(&self) -> Option<MismatchReport> {
        lock(&self.0.last_mismatch).clone()
    }

    fn cross_check_this_call(&self) -> bool {
        let Some(cc) = self.0.engine.0.cross_check else {
            return false;
        };
        let k = self.0.calls_on_current.fetch_add(1, Relaxed);
        k < cc.first || (cc.one_in > 0 && k.is_multiple_of(cc.one_in))
    }

    fn maybe_promote(&self, consumed: u64) {
        let inner = &*self.0;
        let TierPolicy::Tiered {
            instruction_threshold,
            ..
        } = inner.engine.0.config.tier_policy
        else {
            return;
        };
        let insns = inner.tier0_insns.fetch_add(consumed, Relaxed) + consumed;
        let calls = inner.total_calls();
        if calls < inner.next_attempt.load(Relaxed) && insns < instruction_threshold {
            return;
        }
        if inner
            .state
            .compare_exchange(IDLE, COMPILING, SeqCst, SeqCst)
            .is_err()
        {
            return;
        }
        if inner.engine.0.config.synchronous_tier_up {
            compile_tier1(&self.0);
        } else {
            let weak = Arc::downgrade(&self.0);
            inner
                .engine
                .spawn_compile(Box::new(move || background(weak)));
        }
    }

    fn reference(&self) -> Option<Arc<Compiled>> {
        let inner = &*self.0;
        inner
            .reference
            .get_or_init(|| {
                let tier = inner.engine.0.config.cross_check?.reference;
                if inner.initial.tier == tier {
                    return Some(inner.initial.clone());
                }
                match inner.engine.compile(&inner.verified, tier, false) {
                    Ok((code, _)) => Some(Arc::new(Compiled {
                        tier,
                        code,
                        checked: false,
                    })),
                    Err(e) => {
                        tracing::warn!("cross-check reference {tier} unavailable: {e}");
                        None
                    }
                }
            })
            .clone()
    }

    /// Runs on `code`, then on the reference over the same input with the
    /// helper results replayed, and compares. On a mismatch the program is
    /// demoted and the reference's outcome (and memory) is what the caller
    /// gets.
    fn run_cross_checked(
        &self,
        code: &Compiled,
        mem: &mut [u8],
        stack: &mut Stack,
    ) -> Result<u64, Trap> {
        let inner = &*self.0;
        let Some(reference) = self.reference() else {
            return self.run_plain(code, mem, stack);
        };
        let input = mem.to_vec();
        let mut state = RunState::recording();
        let env = RunEnv {
            helpers: &inner.engine.0.table,
            regions: &inner.engine.0.regions,
            host: &mut state as *mut RunState as *mut c_void,
        };
        let main = execute_on(code.code.as_ref(), &env, mem, stack).map(|o| o.r0);
        let main_mem = mem.to_vec();
        let main_stack = stack.bytes();
        mem.copy_from_slice(&input);
        stack.clear();
        state.mode = Mode::Replay;
        state.pos = 0;
        let refr = execute_on(reference.code.as_ref(), &env, mem, stack).map(|o| o.r0);
        inner.cross_checks.fetch_add(1, Relaxed);
        let replay_complete = !state.diverged && state.pos == state.log.len();
        let promoted = RunOutcome {
            tier: code.code.tier(),
            result: main.clone(),
            mem: main_mem,
            helper_calls: state.log.len(),
        };
        let reference_outcome = RunOutcome {
            tier: reference.code.tier(),
            result: refr.clone(),
            mem: mem.to_vec(),
            helper_calls: state.pos,
        };
        let diff = difference(&promoted, &reference_outcome, replay_complete)
            .or_else(|| (main_stack != stack.bytes()).then(|| "stack contents differ".to_string()));
        let Some(diff) = diff else {
            return main;
        };
        let report = MismatchReport {
            insns: inner.verified.insns().to_vec(),
            input,
            promoted,
            reference: reference_outcome,
            difference: diff,
        };
        inner.mismatches.fetch_add(1, Relaxed);
        tracing::error!("{report}; demoting the program\n{}", report.to_data_file());
        *lock(&inner.last_mismatch) = Some(report.clone());
        self.demote();
        if inner
            .engine
            .0
            .config
            .cross_check
            .is_some_and(|c| c.panic_on_mismatch)
        {
            panic!("{report}\n{}", report.to_data_file());
        }
        refr
    }

    fn run_plain(&self, code: &Compiled, mem: &mut [u8], stack: &mut Stack) -> Result<u64, Trap> {
        let env = RunEnv {
            helpers: &self.0.engine.0.table,
            regions: &self.0.engine.0.regions,
            host: std::ptr::null_mut(),
        };
        execute_on(code.code.as_ref(), &env, mem, stack).map(|o| o.r0)
    }

    /// Back to the initial code (or the reference when the initial code is
    /// what failed), with no further promotion.
    fn demote(&self) {
        let inner = &*self.0;
        inner.state.store(DEMOTED, SeqCst);
        let published = if inner.initial.checked {
            // Compiled now if no cross-check compiled it yet.
            self.reference().is_some() && inner.publish(Kept::Reference)
        } else {
            inner.publish(Kept::Initial)
        };
        if published {
            inner.calls_on_current.store(0, Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn tier1_available(engine: &Engine) -> bool {
    engine.0.config.tier1_backend.is_some() || Tier::Llvm.is_available()
}

fn background(weak: Weak<ProgramInner>) {
    // The program may have been dropped while the job waited.
    if let Some(inner) = weak.upgrade() {
        compile_tier1(&inner);
    }
}

/// Compiles tier 1 (once: later calls publish the same code again) and
/// publishes it, or records the failure and backs off. Called with the
/// state set to `COMPILING` by the caller.
fn compile_tier1(inner: &Arc<ProgramInner>) {
    let result = match inner.tier1.get() {
        Some(_) => Ok(()),
        None => inner
            .engine
            .compile(&inner.verified, Tier::Llvm, false)
            .map(|(code, ns)| {
                inner.compile_ns[idx(Tier::Llvm)].store(ns, Relaxed);
                inner.tier1.get_or_init(|| {
                    Arc::new(Compiled {
                        tier: Tier::Llvm,
                        code,
                        checked: true,
                    })
                });
            }),
    };
    match result {
        Ok(()) => {
            inner.publish(Kept::Tier1);
            inner.calls_on_current.store(0, Relaxed);
            *lock(&inner.last_error) = None;
            inner.state.store(PROMOTED, SeqCst);
        }
        Err(e) => {
            let failures = inner.failures.fetch_add(1, Relaxed) + 1;
            tracing::warn!("tier-1 compile failed ({failures}): {e}");
            *lock(&inner.last_error) = Some(e.to_string());
            let config = &inner.engine.0.config;
            if failures >= config.max_compile_failures {
                inner.state.store(GAVE_UP, SeqCst);
            } else {
                // Back off: the next attempt after twice as many calls again.
                let threshold = match config.tier_policy {
                    TierPolicy::Tiered { call_threshold, .. } => call_threshold.max(1),
                    _ => 1,
                };
                let wait = threshold.saturating_mul(1 << failures.min(20));
                let calls = inner.total_calls();
                inner
                    .next_attempt
                    .store(calls.saturating_add(wait), Relaxed);
                inner.tier0_insns.store(0, Relaxed);
                inner.state.store(IDLE, SeqCst);
            }
        }
    }
    let (m, cv) = &inner.settled;
    let _guard = lock(m);
    cv.notify_all();
}
