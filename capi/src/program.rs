//! `bpfvm_program`: a loaded program (tiered, or fixed, or a loaded AOT
//! object), compiled at a chosen tier on request.
//!
//! The code a run uses is an `Arc` loaded from an `ArcSwap`: a compile at
//! another tier swaps in new code while runs in flight finish on the old.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bpfvm_engine::backend::{execute, CompiledCode, RunEnv};
use bpfvm_engine::helpers::HelperTable;
use bpfvm_engine::isa::Insn;
use bpfvm_engine::trap::Trap;
use bpfvm_engine::vmctx::Region;
use runtime::{Program, Tier, TierPolicy};

use crate::config::{available, tier_from_c, tier_to_c, TIER_AOT, TIER_AUTO};
use crate::engine::Snapshot;
use crate::error::{guard, Code, Error, Result};
use crate::handles::{self, bpfvm_program};
use crate::util;

/// Native code of a loaded AOT object, with what it runs with.
pub struct AotCode {
    code: Box<dyn CompiledCode>,
    table: HelperTable,
    regions: Vec<Region>,
    pub calls: AtomicU64,
}

/// What runs now.
pub enum Runnable {
    /// Bytecode loaded through an engine: the runtime's program, under the
    /// engine's policy or (`pinned`) fixed at a tier by `bpfvm_program_compile`.
    Managed { program: Program, pinned: bool },
    /// A loaded AOT object.
    Aot(AotCode),
}

impl Runnable {
    pub fn run(&self, mem: &mut [u8]) -> std::result::Result<u64, Trap> {
        match self {
            Runnable::Managed { program, .. } => program.run(mem),
            Runnable::Aot(a) => {
                a.calls.fetch_add(1, Relaxed);
                let env = RunEnv {
                    helpers: &a.table,
                    regions: &a.regions,
                    host: std::ptr::null_mut(),
                };
                execute(a.code.as_ref(), &env, mem).map(|o| o.r0)
            }
        }
    }

    pub fn tier(&self) -> Tier {
        match self {
            Runnable::Managed { program, .. } => program.current_tier(),
            Runnable::Aot(_) => Tier::Aot,
        }
    }
}

/// What was last emitted, so that a size query and the call that follows
/// it compile once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmitKey {
    LlvmIr { optimized: bool },
    Ptx { sm: String },
    Aot { entry: Option<String> },
}

/// The object behind a `bpfvm_program` handle.
pub struct ProgramHandle {
    current: ArcSwap<Runnable>,
    /// The engine state the program was loaded with.
    pub snapshot: Arc<Snapshot>,
    /// The instructions, for recompiles (`None` for an AOT object).
    insns: Option<Vec<Insn>>,
    pub emitted: Mutex<Option<(EmitKey, Arc<Vec<u8>>)>>,
}

impl ProgramHandle {
    pub fn managed(program: Program, snapshot: Arc<Snapshot>, insns: Vec<Insn>) -> ProgramHandle {
        ProgramHandle {
            current: ArcSwap::from_pointee(Runnable::Managed {
                program,
                pinned: false,
            }),
            snapshot,
            insns: Some(insns),
            emitted: Mutex::new(None),
        }
    }

    pub fn aot(code: Box<dyn CompiledCode>, snapshot: Arc<Snapshot>) -> ProgramHandle {
        let aot = AotCode {
            code,
            table: snapshot.helpers.table(),
            regions: snapshot.regions.clone(),
            calls: AtomicU64::new(0),
        };
        ProgramHandle {
            current: ArcSwap::from_pointee(Runnable::Aot(aot)),
            snapshot,
            insns: None,
            emitted: Mutex::new(None),
        }
    }

    /// The code runs use now.
    pub fn current(&self) -> Arc<Runnable> {
        self.current.load_full()
    }

    /// The runtime program, or `BPFVM_E_UNSUPPORTED` for an AOT object.
    pub fn managed_program(&self, what: &str) -> Result<Program> {
        match &*self.current() {
            Runnable::Managed { program, .. } => Ok(program.clone()),
            Runnable::Aot(_) => Err(Error::new(
                Code::Unsupported,
                format!("{what}: the program was loaded from an AOT object and has no bytecode"),
            )),
        }
    }

    /// `bpfvm_program_compile`.
    fn compile(&self, tier: c_int) -> Result<()> {
        let current = self.current();
        let (program, pinned) = match &*current {
            Runnable::Aot(_) if tier == TIER_AOT || tier == TIER_AUTO => return Ok(()),
            Runnable::Aot(_) => {
                return Err(Error::new(
                    Code::Unsupported,
                    "the program was loaded from an AOT object: it runs only its native code",
                ))
            }
            Runnable::Managed { program, pinned } => (program, *pinned),
        };
        if tier == TIER_AUTO {
            // Back under the engine's policy.
            if pinned {
                let program = self.snapshot.load(self.insns()?)?;
                self.replace(program, false);
            }
            return Ok(());
        }
        let tier = available(tier_from_c(tier)?)?;
        if program.current_tier() == tier {
            return Ok(());
        }
        if tier == Tier::Llvm {
            return match program.force_tier_up(true) {
                Ok(Tier::Llvm) => Ok(()),
                Ok(other) => Err(Error::new(
                    Code::Compile,
                    format!("tier 1 did not take over: the program runs on {other}"),
                )),
                Err(e) => Err(Error::new(Code::Compile, e)),
            };
        }
        let fixed = self.snapshot.with_policy(TierPolicy::Fixed(tier));
        let program = fixed.load(self.insns()?)?;
        self.replace(program, true);
        Ok(())
    }

    fn insns(&self) -> Result<Vec<Insn>> {
        self.insns
            .clone()
            .ok_or_else(|| Error::new(Code::Internal, "a program without instructions"))
    }

    /// Makes later runs use `program`; runs in flight finish on the old code.
    fn replace(&self, program: Program, pinned: bool) {
        self.current
            .store(Arc::new(Runnable::Managed { program, pinned }));
    }
}

/// Destroys a program. A destroyed or unknown handle is `BPFVM_E_HANDLE`.
#[no_mangle]
pub extern "C" fn bpfvm_program_destroy(program: *mut bpfvm_program) -> c_int {
    guard(|| handles::remove_program(program).map(drop))
}

/// Compiles the program at `tier` now and makes its calls run there:
///
/// - `BPFVM_TIER_LLVM`: tier 1, waiting for the compile (a tier-up under
///   the tiered policy; the program can still be demoted by a cross-check).
/// - `BPFVM_TIER_INTERP`, `_CRANELIFT`, `_AOT`: recompiles the program at
///   that tier and pins it there (no promotion; statistics start again).
/// - `BPFVM_TIER_AUTO`: let tiering decide: a pinned program goes back
///   under the engine's policy (recompiled as at load; statistics start
///   again); otherwise nothing to do.
///
/// Already on `tier`: nothing to do. A tier this build lacks is
/// `BPFVM_E_UNSUPPORTED`; a failed compile `BPFVM_E_COMPILE` (the program
/// keeps running where it was). An AOT-loaded program accepts only
/// `BPFVM_TIER_AOT` and `BPFVM_TIER_AUTO`.
#[no_mangle]
pub extern "C" fn bpfvm_program_compile(program: *mut bpfvm_program, tier: c_int) -> c_int {
    guard(|| handles::program(program)?.compile(tier))
}

/// Sets `*tier` to the tier calls run on now (`BPFVM_TIER_*`).
///
/// # Safety
/// `tier` is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_program_tier(
    program: *mut bpfvm_program,
    tier: *mut c_int,
) -> c_int {
    guard(|| {
        let p = handles::program(program)?;
        let out = util::out(tier, "tier")?;
        let t = tier_to_c(p.current().tier());
        // SAFETY: non-NULL; the caller promises a writable int.
        unsafe { out.write(t) };
        Ok(())
    })
}
