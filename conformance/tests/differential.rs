//! Random-program differential test: thousands of generated programs run on
//! the interpreter and on every other tier compiled in, compared on result,
//! trap (kind, pc, address), every register (dumped to memory), memory,
//! stack and instruction count. Seeds are fixed so failures reproduce;
//! `BPFVM_DIFF_COUNT` and `BPFVM_DIFF_SEED` change the range.

use std::sync::Arc;

use bpfvm::engine::backend::{Backend, CompileError, CompileOptions, CompiledCode, COUNT_ONLY};
use bpfvm::engine::interp::Interpreter;
use bpfvm::engine::program::Program;
use bpfvm::engine::vmctx::{Region, VmCtx};
use bpfvm::tier::{backend, Tier};
use bpfvm_conformance::differential::{compare, env_u64};
use bpfvm_conformance::generate::GenOptions;

/// Compares `tier` with the interpreter on `count` programs; returns how
/// many were compared (0 when the tier is not compiled in).
fn campaign(tier: Tier, gen: &GenOptions, opts: &CompileOptions, count: u64) -> u64 {
    let start = env_u64("BPFVM_DIFF_SEED", 0);
    let count = env_u64("BPFVM_DIFF_COUNT", count);
    campaign_from(start, tier, gen, opts, count)
}

/// [`campaign`] on seeds `start..start + count`; panics on a divergence.
fn campaign_from(
    start: u64,
    tier: Tier,
    gen: &GenOptions,
    opts: &CompileOptions,
    count: u64,
) -> u64 {
    let Ok(other) = backend(tier) else {
        return 0;
    };
    compare(start, &[other.as_ref()], gen, opts, count).unwrap_or_else(|e| panic!("{e}"))
}

fn with_budget(budget: u64) -> CompileOptions {
    CompileOptions {
        budget: Some(budget),
        ..CompileOptions::default()
    }
}

fn unchecked() -> (GenOptions, CompileOptions) {
    let gen = GenOptions {
        out_of_bounds: false,
        ..GenOptions::default()
    };
    let opts = CompileOptions {
        checked: false,
        ..CompileOptions::default()
    };
    (gen, opts)
}

fn opt_level(level: u8) -> CompileOptions {
    CompileOptions {
        opt_level: level,
        ..CompileOptions::default()
    }
}

// Every `cargo test` compares 24,100 generated programs: Cranelift 22,000
// here (cheap to compile), LLVM and AOT 1,400 here and 700 in bpfvm-llvm's
// own tests (FUZZING.md).

#[test]
fn cranelift_checked_with_budget() {
    let n = campaign(
        Tier::Cranelift,
        &GenOptions::default(),
        &with_budget(1_000_000),
        6_000,
    );
    assert!(n == 0 || n == env_u64("BPFVM_DIFF_COUNT", 6_000));
}

#[test]
fn cranelift_checked_with_budget_more_seeds() {
    // A second range, as its own test so that both cores share the work,
    // at level 1: tier 0's level in the runtime (no optimiser), where the
    // range above runs Cranelift's `speed`.
    let start = env_u64("BPFVM_DIFF_SEED", 0) + 1_000_000;
    let count = env_u64("BPFVM_DIFF_COUNT", 6_000);
    let opts = CompileOptions {
        opt_level: 1,
        ..with_budget(1_000_000)
    };
    let n = campaign_from(start, Tier::Cranelift, &GenOptions::default(), &opts, count);
    assert!(n == 0 || n == count);
}

#[test]
fn cranelift_tight_budget() {
    // Small budgets run out mid-program: the trap pc and what was done
    // before it must match.
    campaign(
        Tier::Cranelift,
        &GenOptions::default(),
        &with_budget(60),
        2_000,
    );
}

#[test]
fn cranelift_counting_only() {
    // As the tiered runtime compiles tier 0: level 1, counting without a
    // limit (no test at each block; a branch over one instruction becomes
    // a select that charges that instruction when it runs). The budget
    // left must be the interpreter's to the instruction.
    let opts = CompileOptions {
        opt_level: 1,
        ..with_budget(COUNT_ONLY)
    };
    let start = env_u64("BPFVM_DIFF_SEED", 0) + 2_000_000;
    campaign_from(start, Tier::Cranelift, &GenOptions::default(), &opts, 2_000);
}

#[test]
fn cranelift_unchecked_in_bounds() {
    let (gen, opts) = unchecked();
    campaign(Tier::Cranelift, &gen, &opts, 3_000);
}

#[test]
fn cranelift_optimisation_off() {
    campaign(
        Tier::Cranelift,
        &GenOptions::default(),
        &opt_level(0),
        1_500,
    );
}

#[test]
fn cranelift_length_guards() {
    // Programs that start by testing the input's length: the accesses
    // below it are left unchecked (`bpfvm_engine::facts`).
    let gen = GenOptions {
        length_guards: true,
        ..GenOptions::default()
    };
    campaign(Tier::Cranelift, &gen, &opt_level(1), 1_000);
}

#[test]
fn llvm_length_guards() {
    let gen = GenOptions {
        length_guards: true,
        ..GenOptions::default()
    };
    campaign(Tier::Llvm, &gen, &CompileOptions::default(), 100);
}

#[test]
fn llvm_o3_checked_with_budget() {
    campaign(
        Tier::Llvm,
        &GenOptions::default(),
        &with_budget(1_000_000),
        400,
    );
}

#[test]
fn llvm_o3_tight_budget() {
    campaign(Tier::Llvm, &GenOptions::default(), &with_budget(60), 100);
}

#[test]
fn llvm_counting_only() {
    let start = env_u64("BPFVM_DIFF_SEED", 0) + 2_100_000;
    campaign_from(
        start,
        Tier::Llvm,
        &GenOptions::default(),
        &with_budget(COUNT_ONLY),
        100,
    );
}

#[test]
fn llvm_o0_checked() {
    campaign(Tier::Llvm, &GenOptions::default(), &opt_level(0), 300);
}

#[test]
fn llvm_unchecked_in_bounds() {
    let (gen, opts) = unchecked();
    campaign(Tier::Llvm, &gen, &opts, 200);
}

#[test]
fn aot_checked() {
    campaign(
        Tier::Aot,
        &GenOptions::default(),
        &with_budget(1_000_000),
        100,
    );
}

fn with_host_regions(gen: GenOptions) -> GenOptions {
    GenOptions {
        host_regions: true,
        ..gen
    }
}

#[test]
fn host_regions_on_every_tier() {
    // Loads, stores and atomics on a writable and a read-only host region,
    // in bounds and just outside: tier 0's check trampoline (remembered
    // region, then the call; at O0 the call alone) and tier 1's
    // out-of-line check.
    let start = env_u64("BPFVM_DIFF_SEED", 0) + 2_000_000;
    let gen = with_host_regions(GenOptions::default());
    for (tier, count) in [(Tier::Cranelift, 1_000), (Tier::Llvm, 150), (Tier::Aot, 50)] {
        campaign_from(start, tier, &gen, &with_budget(1_000_000), count);
    }
    campaign_from(start, Tier::Cranelift, &gen, &opt_level(0), 500);
    campaign_from(start, Tier::Cranelift, &gen, &opt_level(1), 500);
    let (gen, opts) = unchecked();
    campaign_from(start, Tier::Cranelift, &with_host_regions(gen), &opts, 500);
}

/// The interpreter with every region made writable: a tier that forgets
/// that some regions are read-only.
struct AllWritable;

struct AllWritableCode(Box<dyn CompiledCode>);

impl Backend for AllWritable {
    fn name(&self) -> &'static str {
        "all-writable"
    }
    fn compile(
        &self,
        p: &Arc<Program>,
        o: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        Ok(Box::new(AllWritableCode(Interpreter.compile(p, o)?)))
    }
}

impl CompiledCode for AllWritableCode {
    fn tier(&self) -> &'static str {
        "all-writable"
    }
    fn options(&self) -> &CompileOptions {
        self.0.options()
    }
    unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64 {
        // SAFETY: the caller guarantees a prepared context, whose region
        // table holds `region_count` entries; the copy outlives the call.
        unsafe {
            let c = &mut *ctx;
            let copy: Vec<Region> = (0..c.region_count as usize)
                .map(|k| Region {
                    writable: 1,
                    ..*c.regions.add(k)
                })
                .collect();
            let saved = c.regions;
            c.regions = copy.as_ptr();
            let r0 = self.0.call(ctx, r1, r2);
            (*ctx).regions = saved;
            r0
        }
    }
}

#[test]
fn host_regions_catch_a_tier_that_writes_read_only_memory() {
    let opts = with_budget(1_000_000);
    let found = compare(
        0,
        &[&AllWritable],
        &with_host_regions(GenOptions::default()),
        &opts,
        500,
    );
    let err = found.expect_err("a store to the read-only region must diverge");
    assert!(
        err.contains("all-writable (backend 0) differs"),
        "unexpected report: {err}"
    );
    // Without host regions no program can tell.
    assert_eq!(
        compare(0, &[&AllWritable], &GenOptions::default(), &opts, 500),
        Ok(500)
    );
}

#[test]
fn every_tier_besides_the_interpreter_is_compared() {
    // Cranelift is a default feature: a build without it would silently
    // compare nothing in the campaigns above.
    assert!(Tier::Cranelift.is_available());
}
