//! The tiered runtime: promotion, thresholds, forced tier-up, concurrency
//! during promotion, cross-checks catching a faulty tier.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;

use bpfvm::engine::backend::{Backend, CompileError, CompileOptions, CompiledCode};
use bpfvm::engine::interp::Interpreter;
use bpfvm::engine::vmctx::VmCtx;
use bpfvm::engine::Program as Verified;
use bpfvm::{Config, CrossCheck, Engine, Tier, TierPolicy};

/// Sums the input bytes, calls helper 1 with the sum, returns sum * 3 + helper.
const SUM: &str = "
    mov %r0, 0
    mov %r3, 0
loop:
    jge %r3, %r2, done
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4+0]
    add %r0, %r5
    add %r3, 1
    ja loop
done:
    mov %r6, %r0
    mov %r1, %r0
    call 1
    mul %r6, 3
    add %r0, %r6
    exit";

fn config(policy: TierPolicy) -> Config {
    let mut c = Config::new();
    c.tier_policy(policy)
        .helper(1, "plus_seven", |_, a| Ok(a[0] + 7));
    c
}

/// Tier 1 for these tests: LLVM when compiled in, else a stand-in that
/// runs the interpreter (so promotion is exercised in every build).
fn with_tier1(c: &mut Config) -> &mut Config {
    if !Tier::Llvm.is_available() {
        c.tier1_backend(Arc::new(Interpreter));
    }
    c
}

fn expected(mem: &[u8]) -> u64 {
    let s: u64 = mem.iter().map(|&b| b as u64).sum();
    s * 3 + s + 7
}

#[test]
fn synchronous_tier_up_is_deterministic_and_honours_the_threshold() {
    let mut c = config(TierPolicy::Tiered {
        call_threshold: 5,
        instruction_threshold: u64::MAX,
    });
    with_tier1(&mut c).synchronous_tier_up(true);
    let engine = Engine::new(&c);
    let p = engine.load_asm(SUM).unwrap();
    let tier0 = p.current_tier();
    assert_ne!(tier0, Tier::Llvm);
    let mut mem = [1u8, 2, 3, 4];
    for call in 1..=5 {
        assert_eq!(p.run(&mut mem).unwrap(), expected(&mem));
        let want = if call < 5 { tier0 } else { Tier::Llvm };
        assert_eq!(p.current_tier(), want, "after call {call}");
    }
    let s = p.stats();
    assert_eq!(s.tier, Tier::Llvm);
    assert_eq!(s.calls.cranelift + s.calls.interp, 5);
    assert!(s.compile_ns.llvm > 0);
    p.run(&mut mem).unwrap();
    assert_eq!(p.stats().calls.llvm, 1);
}

#[test]
fn instruction_threshold_counts_long_calls() {
    let mut c = config(TierPolicy::Tiered {
        call_threshold: u64::MAX,
        instruction_threshold: 500,
    });
    with_tier1(&mut c).synchronous_tier_up(true);
    let p = Engine::new(&c).load_asm(SUM).unwrap();
    let mut mem = vec![1u8; 100]; // about 700 instructions
    p.run(&mut mem).unwrap();
    assert_eq!(
        p.current_tier(),
        Tier::Llvm,
        "one long call crosses the threshold"
    );
    assert!(p.stats().tier0_instructions >= 500);
}

#[test]
fn force_tier_up_waits_for_the_compile() {
    let mut c = config(TierPolicy::tiered());
    with_tier1(&mut c);
    let p = Engine::new(&c).load_asm(SUM).unwrap();
    assert_ne!(p.current_tier(), Tier::Llvm);
    assert_eq!(p.force_tier_up(true), Ok(Tier::Llvm));
    let mut mem = [9u8; 3];
    assert_eq!(p.run(&mut mem).unwrap(), expected(&mem));
}

#[test]
fn fixed_tier_never_moves() {
    let p = Engine::new(&config(TierPolicy::Fixed(Tier::Interp)))
        .load_asm(SUM)
        .unwrap();
    for _ in 0..50 {
        p.run(&mut [1, 2]).unwrap();
    }
    assert_eq!(p.current_tier(), Tier::Interp);
    assert_eq!(p.stats().calls.interp, 50);
}

#[test]
fn calls_from_many_threads_during_background_promotion_agree_with_the_interpreter() {
    let mut c = config(TierPolicy::Tiered {
        call_threshold: 20_000,
        instruction_threshold: u64::MAX,
    });
    with_tier1(&mut c).cross_check(Some(CrossCheck {
        first: 50,
        one_in: 5000,
        panic_on_mismatch: true,
        ..CrossCheck::default()
    }));
    let p = Engine::new(&c).load_asm(SUM).unwrap();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let p = p.clone();
            thread::spawn(move || {
                let mut mem = [t, t + 1, 200, 7, 1];
                let want = expected(&mem);
                for i in 0..100_000u32 {
                    let got = p.run(&mut mem).unwrap();
                    assert_eq!(got, want, "thread {t} call {i} on {}", p.current_tier());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = p.stats();
    assert_eq!(s.calls.interp + s.calls.cranelift + s.calls.llvm, 400_000);
    // The background compile may still be finishing; wait for it.
    assert_eq!(p.force_tier_up(true), Ok(Tier::Llvm));
    assert_eq!(p.stats().mismatches, 0);
}

/// A tier-1 that computes a wrong result: r0 + 1.
/// A tier 1 that returns r0 + 1, counting its compiles.
struct Faulty(Arc<AtomicU32>);
struct FaultyCode(Box<dyn CompiledCode>);

impl Backend for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn compile(
        &self,
        p: &Arc<Verified>,
        o: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FaultyCode(Interpreter.compile(p, o)?)))
    }
}

impl CompiledCode for FaultyCode {
    fn tier(&self) -> &'static str {
        "faulty"
    }
    fn options(&self) -> &CompileOptions {
        self.0.options()
    }
    unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64 {
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { self.0.call(ctx, r1, r2) + 1 }
    }
}

#[test]
fn cross_check_catches_a_faulty_tier_and_demotes() {
    let mut c = config(TierPolicy::Tiered {
        call_threshold: 2,
        instruction_threshold: u64::MAX,
    });
    let compiles = Arc::new(AtomicU32::new(0));
    c.tier1_backend(Arc::new(Faulty(compiles.clone())))
        .synchronous_tier_up(true)
        .cross_check(Some(CrossCheck::default()));
    let p = Engine::new(&c).load_asm(SUM).unwrap();
    let mut mem = [5u8, 6];
    let want = expected(&mem);
    for _ in 0..2 {
        assert_eq!(p.run(&mut mem).unwrap(), want);
    }
    assert_eq!(p.current_tier(), Tier::Llvm, "promoted to the faulty tier");
    // The checked call returns the reference's (right) answer and demotes.
    assert_eq!(p.run(&mut mem).unwrap(), want);
    assert_ne!(p.current_tier(), Tier::Llvm);
    let s = p.stats();
    assert_eq!((s.cross_checks, s.mismatches), (1, 1));
    let report = p.last_mismatch().expect("a report");
    assert_eq!(report.input, vec![5, 6], "the report names the input");
    assert_eq!(report.promoted.result, Ok(want + 1));
    assert_eq!(report.reference.result, Ok(want));
    let data = report.to_data_file();
    assert!(
        data.contains("-- raw")
            && data.contains("-- mem\n05 06")
            && data.contains(&format!("0x{want:x}"))
    );
    // Demoted programs stay on tier 0.
    for _ in 0..10 {
        assert_eq!(p.run(&mut mem).unwrap(), want);
    }
    assert_ne!(p.current_tier(), Tier::Llvm);
    // Forced back up, the program runs tier 1's code again (compiled
    // once), and the cross-check catches it again.
    assert_eq!(compiles.load(Ordering::SeqCst), 1);
    assert_eq!(p.force_tier_up(true), Ok(Tier::Llvm));
    assert_eq!(compiles.load(Ordering::SeqCst), 1, "tier 1 compiled again");
    assert_eq!(p.run(&mut mem).unwrap(), want);
    assert_ne!(p.current_tier(), Tier::Llvm);
    let s = p.stats();
    assert_eq!((s.cross_checks, s.mismatches), (2, 2));
}

/// A tier 1 whose compile always fails, counting its attempts.
struct Failing(Arc<AtomicU32>);

impl Backend for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn compile(
        &self,
        _: &Arc<Verified>,
        _: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Err(CompileError::Failed {
            tier: "failing",
            message: format!("attempt {n} refused"),
        })
    }
}

#[test]
fn a_failing_tier1_compile_is_recorded_backed_off_and_given_up() {
    let attempts = Arc::new(AtomicU32::new(0));
    let mut c = config(TierPolicy::Tiered {
        call_threshold: 2,
        instruction_threshold: u64::MAX,
    });
    c.tier1_backend(Arc::new(Failing(attempts.clone())))
        .synchronous_tier_up(true)
        .max_compile_failures(3);
    let p = Engine::new(&c).load_asm(SUM).unwrap();
    let tier0 = p.current_tier();
    let mut mem = [3u8, 4, 5];
    let want = expected(&mem);
    // Attempts at the threshold, then after twice and four times as many
    // calls again: calls 2, 2 + 4 = 6 and 6 + 8 = 14; then never again.
    let mut attempted_at = Vec::new();
    for call in 1..=1000u32 {
        let before = attempts.load(Ordering::SeqCst);
        assert_eq!(p.run(&mut mem).unwrap(), want, "call {call}");
        if attempts.load(Ordering::SeqCst) != before {
            attempted_at.push(call);
        }
    }
    assert_eq!(attempted_at, [2, 6, 14]);
    let s = p.stats();
    assert_eq!(s.tier, tier0, "calls stay on tier 0");
    assert_eq!(s.calls.interp + s.calls.cranelift, 1000);
    assert_eq!(s.compile_failures, 3);
    assert_eq!(s.last_error.as_deref(), Some("failing: attempt 3 refused"));
    // Forcing tries once more and reports the error.
    assert_eq!(
        p.force_tier_up(true),
        Err("failing: attempt 4 refused".to_string())
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    for _ in 0..100 {
        assert_eq!(p.run(&mut mem).unwrap(), want);
    }
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        4,
        "no retry after giving up"
    );
}

#[test]
#[should_panic(expected = "cross-check mismatch")]
fn cross_check_can_panic_for_tests() {
    let mut c = config(TierPolicy::Eager);
    c.tier1_backend(Arc::new(Faulty(Arc::default())))
        .cross_check(Some(CrossCheck {
            panic_on_mismatch: true,
            ..CrossCheck::default()
        }));
    let p = Engine::new(&c).load_asm(SUM).unwrap();
    let _ = p.run(&mut [1]);
}

#[test]
fn traps_and_budgets_are_the_same_on_every_tier() {
    let src = "mov %r0, 0\nloop:\nadd %r0, 1\njne %r0, 0, loop\nexit";
    for tier in Tier::available() {
        let mut c = config(TierPolicy::Fixed(tier));
        c.instruction_budget(Some(1000));
        let p = Engine::new(&c).load_asm(src).unwrap();
        let e = p.run(&mut []).unwrap_err();
        assert_eq!(e.kind(), "budget_exhausted", "{tier}");
        assert_eq!(e.pc(), 1, "{tier}");
    }
}

#[test]
fn every_run_starts_with_a_zeroed_stack() {
    // Reads a stack slot, then dirties it (and, through a call, the
    // callee's frame): the next run must read zeros again.
    let src = "
        ldxdw %r0, [%r10-8]
        stdw [%r10-8], 7
        mov %r6, %r0
        call local f
        add %r0, %r6
        exit
    f:
        ldxdw %r0, [%r10-16]
        stdw [%r10-16], 9
        exit";
    for tier in Tier::available() {
        for checked in [true, false] {
            let mut c = config(TierPolicy::Fixed(tier));
            c.memory_checks(checked);
            let p = Engine::new(&c).load_asm(src).unwrap();
            for run in 0..3 {
                assert_eq!(
                    p.run(&mut []).unwrap(),
                    0,
                    "{tier} checked={checked} run {run}"
                );
            }
        }
    }
}
