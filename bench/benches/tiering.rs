//! The tiered runtime's costs: steady-state speed after promotion against a
//! program fixed on LLVM, time to the first result, and call latency while
//! tier 1 compiles in the background.
//!
//! `cargo bench -p bpfvm-bench --bench tiering`

use std::time::{Duration, Instant};

use bpfvm::{Config, Engine, Tier, TierPolicy};
use criterion::{criterion_group, Criterion};

/// A byte-counting loop over the input (about 7 instructions per byte).
const PROGRAM: &str = "
    mov %r0, 0
    mov %r4, 0
loop:
    jge %r4, %r2, done
    mov %r5, %r1
    add %r5, %r4
    ldxb %r5, [%r5+0]
    jne %r5, 97, next
    add %r0, 1
next:
    add %r4, 1
    ja loop
done:
    exit";

fn engine(policy: TierPolicy) -> Engine {
    let mut c = Config::new();
    c.tier_policy(policy);
    Engine::new(&c)
}

fn steady_state(c: &mut Criterion) {
    if !Tier::Llvm.is_available() {
        return;
    }
    let mut g = c.benchmark_group("tiering/steady_state");
    let mut mem = vec![b'a'; 256];
    let fixed = engine(TierPolicy::Fixed(Tier::Llvm))
        .load_asm(PROGRAM)
        .expect("loads");
    g.bench_function("fixed_llvm", |b| {
        b.iter(|| fixed.run(&mut mem).expect("runs"))
    });
    let tiered = engine(TierPolicy::tiered())
        .load_asm(PROGRAM)
        .expect("loads");
    tiered.force_tier_up(true).expect("promotes");
    g.bench_function("tiered_after_promotion", |b| {
        b.iter(|| tiered.run(&mut mem).expect("runs"))
    });
    let cranelift = engine(TierPolicy::Fixed(Tier::Cranelift))
        .load_asm(PROGRAM)
        .expect("loads");
    g.bench_function("fixed_cranelift", |b| {
        b.iter(|| cranelift.run(&mut mem).expect("runs"))
    });
    g.finish();
}

fn first_result(c: &mut Criterion) {
    let mut g = c.benchmark_group("tiering/first_result");
    g.sample_size(20);
    let mut mem = vec![b'a'; 256];
    for (name, policy) in [
        ("tiered", TierPolicy::tiered()),
        ("fixed_llvm", TierPolicy::Fixed(Tier::Llvm)),
        ("fixed_interp", TierPolicy::Fixed(Tier::Interp)),
    ] {
        if matches!(policy, TierPolicy::Fixed(Tier::Llvm)) && !Tier::Llvm.is_available() {
            continue;
        }
        let e = engine(policy);
        g.bench_function(name, |b| {
            b.iter(|| {
                let p = e.load_asm(PROGRAM).expect("loads");
                p.run(&mut mem).expect("runs")
            })
        });
    }
    g.finish();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Per-call latency while tier 1 compiles in the background, against the
/// same calls when nothing compiles (printed, not a criterion group: the
/// window is one compile long).
fn latency_during_compile() {
    if !Tier::Llvm.is_available() {
        return;
    }
    let mut mem = vec![b'a'; 256];
    let e = engine(TierPolicy::Tiered {
        call_threshold: u64::MAX,
        instruction_threshold: u64::MAX,
    });
    let mut quiet = Vec::new();
    let mut busy = Vec::new();
    for _ in 0..5 {
        let p = e.load_asm(PROGRAM).expect("loads");
        for _ in 0..2000 {
            let t = Instant::now();
            p.run(&mut mem).expect("runs");
            quiet.push(t.elapsed());
        }
        p.force_tier_up(false).expect("queued");
        while p.current_tier() != Tier::Llvm {
            let t = Instant::now();
            p.run(&mut mem).expect("runs");
            busy.push(t.elapsed());
        }
    }
    let (q, b) = (median(quiet.clone()), median(busy.clone()));
    let p99 = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() * 99 / 100]
    };
    println!(
        "tiering/latency_during_compile: median {:?} while compiling ({} calls) vs {:?} idle; p99 {:?} vs {:?}",
        b,
        busy.len(),
        q,
        p99(busy),
        p99(quiet)
    );
}

criterion_group!(benches, steady_state, first_result);

fn main() {
    benches();
    latency_during_compile();
    Criterion::default().configure_from_args().final_summary();
}
