//! Run time of every benchmark program on every executor, checked and
//! unchecked, against the native build (clang -O3, linked into this
//! process) and against rbpf's interpreter and JIT, all in the same run.
//!
//! `cargo bench -p bpfvm-bench --bench run -- --warm-up-time 1 --measurement-time 2`
//!
//! Benchmark ids are `run/<program>/<executor>`, with executors `native`,
//! `interp`, `cranelift`, `cranelift_unchecked`, `llvm`, `llvm_unchecked`,
//! `aot`, `aot_unchecked`, `tiered`, `tiered_unchecked`, `rbpf_interp` and
//! `rbpf_jit`. Every result is checked against the expected one once
//! before it is timed.

#[path = "../peers/rbpf.rs"]
mod rbpf_peer;

use std::hint::black_box;

use bpfvm_bench::{Executor, Subject, PROGRAMS};
use criterion::{criterion_group, criterion_main, Criterion};
use rbpf_peer::{Rbpf, RbpfMode};

fn run_time(c: &mut Criterion) {
    for p in PROGRAMS {
        let subject = Subject::from_elf(p.bpf_object, None).expect("benchmark programs load");
        let mut g = c.benchmark_group(format!("run/{}", p.name));
        let mut mem = (p.input)();
        if p.native.is_some() {
            assert_eq!(
                p.run_native(&mut mem),
                Some(p.expected),
                "{}: native",
                p.name
            );
            g.bench_function("native", |b| b.iter(|| p.run_native(black_box(&mut mem))));
        }
        for exec in Executor::ALL {
            if !exec.is_available() {
                continue;
            }
            let modes: &[bool] = if exec.has_unchecked_mode() {
                &[true, false]
            } else {
                &[true]
            };
            for &checked in modes {
                let (mut runner, _) = subject.compile(exec, checked).expect("compiles");
                let mut mem = (p.input)();
                assert_eq!(
                    runner.run(&mut mem),
                    Ok(p.expected),
                    "{} on {}",
                    p.name,
                    exec.name()
                );
                let id = if checked {
                    exec.name().to_string()
                } else {
                    format!("{}_unchecked", exec.name())
                };
                g.bench_function(id, |b| b.iter(|| runner.run(black_box(&mut mem))));
            }
        }
        if !subject.uses_object() {
            for mode in [RbpfMode::Interp, RbpfMode::Jit] {
                let mut mem = (p.input)();
                let vm = match Rbpf::new(&subject.insns, mem.len(), mode) {
                    Ok(vm) => vm,
                    Err(e) => {
                        eprintln!("{}: rbpf {}: {e}", p.name, mode.name());
                        continue;
                    }
                };
                match vm.run(&mut mem) {
                    Ok(r) if r == p.expected => {}
                    other => {
                        eprintln!(
                            "{}: {} returned {other:?}, not {:#x}; skipped",
                            p.name,
                            mode.name(),
                            p.expected
                        );
                        continue;
                    }
                }
                g.bench_function(mode.name(), |b| b.iter(|| vm.run(black_box(&mut mem))));
            }
        }
        g.finish();
    }
}

criterion_group!(benches, run_time);
criterion_main!(benches);
