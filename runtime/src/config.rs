//! `Config`: how an [`Engine`](crate::Engine) verifies, compiles, runs,
//! promotes and cross-checks programs. Chainable setters, cheap to clone.

use std::sync::Arc;

use bpfvm_engine::backend::ArrayMapLayout;
use bpfvm_engine::backend::{Backend, DEFAULT_CALL_DEPTH};
use bpfvm_engine::helpers::{HelperError, Helpers};

use crate::helpers::MAP_LOOKUP_ELEM;
use bpfvm_engine::vmctx::{Region, VmCtx};

use crate::tier::Tier;

/// Which tier runs a program, and when it moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierPolicy {
    /// Always this tier, compiled at load.
    Fixed(Tier),
    /// Start on tier 0 (Cranelift) at once; promote to tier 1 (LLVM) in the
    /// background when the program has been called `call_threshold` times
    /// or has executed `instruction_threshold` instructions on tier 0
    /// (so that one long call also counts).
    Tiered {
        call_threshold: u64,
        instruction_threshold: u64,
    },
    /// Compile tier 1 at load (tier 0 if tier 1 fails).
    Eager,
}

impl TierPolicy {
    /// The tiered policy with default thresholds.
    pub const fn tiered() -> TierPolicy {
        TierPolicy::Tiered {
            call_threshold: 1000,
            instruction_threshold: 10_000_000,
        }
    }
}

impl Default for TierPolicy {
    fn default() -> Self {
        TierPolicy::tiered()
    }
}

/// Cross-checking of promoted code against a reference tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrossCheck {
    /// The tier whose results are trusted (the interpreter by default).
    pub reference: Tier,
    /// Check every one of the first `first` calls after promotion...
    pub first: u64,
    /// ...then one call in `one_in` (0: never).
    pub one_in: u64,
    /// Panic on a mismatch (for tests) instead of demoting quietly.
    pub panic_on_mismatch: bool,
}

impl Default for CrossCheck {
    fn default() -> Self {
        CrossCheck {
            reference: Tier::Interp,
            first: 100,
            one_in: 1000,
            panic_on_mismatch: false,
        }
    }
}

/// Engine configuration.
#[derive(Clone)]
pub struct Config {
    pub(crate) tier_policy: TierPolicy,
    pub(crate) cross_check: Option<CrossCheck>,
    pub(crate) memory_checks: bool,
    pub(crate) instruction_budget: Option<u64>,
    pub(crate) call_depth: usize,
    pub(crate) compile_threads: usize,
    pub(crate) llvm_opt_level: u8,
    pub(crate) cranelift_opt_level: u8,
    pub(crate) synchronous_tier_up: bool,
    pub(crate) helpers: Helpers,
    pub(crate) regions: Vec<Region>,
    /// What owns the memory of `regions` added safely (an object's maps).
    pub(crate) region_owners: Vec<Arc<dyn std::any::Any + Send + Sync>>,
    /// Array maps whose lookups tier 1 may inline (set by
    /// `LoadedObject::configure`; cleared when helper 1 is replaced).
    pub(crate) array_maps: Vec<ArrayMapLayout>,
    pub(crate) tier1_backend: Option<Arc<dyn Backend>>,
    pub(crate) max_compile_failures: u32,
}

/// Tier 0's optimisation level unless [`Config::cranelift_opt_level`]
/// sets another: full register allocation, no optimisation pass.
pub const DEFAULT_CRANELIFT_OPT_LEVEL: u8 = 1;

impl Default for Config {
    fn default() -> Self {
        Config {
            tier_policy: TierPolicy::default(),
            cross_check: None,
            memory_checks: true,
            instruction_budget: None,
            call_depth: DEFAULT_CALL_DEPTH,
            compile_threads: 1,
            llvm_opt_level: 3,
            cranelift_opt_level: DEFAULT_CRANELIFT_OPT_LEVEL,
            synchronous_tier_up: false,
            helpers: Helpers::new(),
            regions: Vec::new(),
            region_owners: Vec::new(),
            array_maps: Vec::new(),
            tier1_backend: None,
            max_compile_failures: 3,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("tier_policy", &self.tier_policy)
            .field("cross_check", &self.cross_check)
            .field("memory_checks", &self.memory_checks)
            .field("instruction_budget", &self.instruction_budget)
            .field("call_depth", &self.call_depth)
            .field("compile_threads", &self.compile_threads)
            .field("llvm_opt_level", &self.llvm_opt_level)
            .field("cranelift_opt_level", &self.cranelift_opt_level)
            .field("synchronous_tier_up", &self.synchronous_tier_up)
            .field("helpers", &self.helpers)
            .field("regions", &self.regions)
            .finish()
    }
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    pub fn tier_policy(&mut self, policy: TierPolicy) -> &mut Self {
        self.tier_policy = policy;
        self
    }

    /// Cross-check promoted code (`None` turns it off, the default). Engines
    /// with writable regions never cross-check
    /// ([`crate::Engine::cross_checks_possible`]).
    pub fn cross_check(&mut self, check: Option<CrossCheck>) -> &mut Self {
        self.cross_check = check;
        self
    }

    /// Check memory accesses (the default). Off trusts the program: a wild
    /// access can then crash the host.
    pub fn memory_checks(&mut self, on: bool) -> &mut Self {
        self.memory_checks = on;
        self
    }

    /// Instructions a single run may execute before it traps.
    pub fn instruction_budget(&mut self, budget: Option<u64>) -> &mut Self {
        self.instruction_budget = budget;
        self
    }

    /// Call-depth limit in frames.
    pub fn call_depth(&mut self, depth: usize) -> &mut Self {
        self.call_depth = depth;
        self
    }

    /// Background threads compiling tier 1 (at least 1). Tier 0 compiles
    /// on the thread that compiles the program, with up to 3 helper
    /// threads of its own shared by the process
    /// ([`crate::tier::set_tier0_helper_threads`]).
    pub fn compile_threads(&mut self, n: usize) -> &mut Self {
        self.compile_threads = n.max(1);
        self
    }

    /// LLVM optimisation level, 0 to 3.
    pub fn llvm_opt_level(&mut self, level: u8) -> &mut Self {
        self.llvm_opt_level = level.min(3);
        self
    }

    /// Cranelift optimisation level ([`DEFAULT_CRANELIFT_OPT_LEVEL`] unless
    /// set): 0 compiles fastest (single-pass register allocation, the
    /// cheapest memory checks); 1 allocates registers fully but runs no
    /// optimisation pass; 2 and 3 add Cranelift's optimiser (`speed`),
    /// which costs about a fifth more compile time and made the benchmark
    /// programs no faster.
    pub fn cranelift_opt_level(&mut self, level: u8) -> &mut Self {
        self.cranelift_opt_level = level.min(3);
        self
    }

    /// The optimisation level this configuration compiles `tier` at (the
    /// interpreter has none: 0).
    pub fn opt_level(&self, tier: Tier) -> u8 {
        match tier {
            Tier::Llvm | Tier::Aot => self.llvm_opt_level,
            Tier::Cranelift => self.cranelift_opt_level,
            Tier::Interp => 0,
        }
    }

    /// Compile tier 1 on the calling thread when the threshold is crossed
    /// (deterministic, for tests) instead of in the background.
    pub fn synchronous_tier_up(&mut self, on: bool) -> &mut Self {
        self.synchronous_tier_up = on;
        self
    }

    /// Registers (or replaces) a helper.
    /// Before helper `id` is (re)registered: inlined array-map lookups
    /// would bypass a new `map_lookup_elem`, so they are turned off.
    fn replacing_helper(&mut self, id: u32) {
        if id == MAP_LOOKUP_ELEM {
            self.array_maps.clear();
        }
    }

    pub fn helper<F>(&mut self, id: u32, name: &str, f: F) -> &mut Self
    where
        F: Fn(&mut VmCtx, [u64; 5]) -> Result<u64, HelperError> + Send + Sync + 'static,
    {
        self.replacing_helper(id);
        self.helpers.register(id, name, f);
        self
    }

    /// Adds every helper of `helpers`.
    pub fn helpers(&mut self, helpers: &Helpers) -> &mut Self {
        for (id, _) in helpers.list() {
            self.replacing_helper(id);
        }
        self.helpers.extend(helpers);
        self
    }

    /// Lets checked programs access host memory `[start, start + len)`.
    ///
    /// # Safety
    /// The memory must stay valid (and, when `writable`, writable) for as
    /// long as any program of the engine may run.
    pub unsafe fn region(&mut self, start: *const u8, len: usize, writable: bool) -> &mut Self {
        self.regions.push(Region {
            start: start as u64,
            len: len as u64,
            writable: writable as u64,
        });
        self
    }

    /// Uses `backend` as tier 1 instead of LLVM (for other code generators,
    /// and for tests that inject a faulty tier).
    pub fn tier1_backend(&mut self, backend: Arc<dyn Backend>) -> &mut Self {
        self.tier1_backend = Some(backend);
        self
    }

    /// Failed tier-1 compiles after which a program stops trying.
    pub fn max_compile_failures(&mut self, n: u32) -> &mut Self {
        self.max_compile_failures = n;
        self
    }
}
