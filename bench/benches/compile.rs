//! Compile latency per tier by program size: generated programs of 50 to
//! 3,000 instructions (`compile/<tier>/O<level>/<size>`), and the benchmark
//! programs (`compile_programs/<program>/<tier>`, checked code as the
//! runtime compiles it: Cranelift at tier 0's level, LLVM at O3;
//! throughput in instructions).
//!
//! `cargo bench -p bpfvm-bench --bench compile -- --warm-up-time 1 --measurement-time 2`
//! (10 samples per benchmark: a few minutes, most of it LLVM on the
//! largest programs).

use std::sync::Arc;

use bpfvm::engine::backend::CompileOptions;
use bpfvm::engine::verifier::{verify, VerifyOptions};
use bpfvm::tier::{backend, Tier};
use bpfvm_bench::{program_of_size, Subject, PROGRAMS};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn compile_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    // LLVM takes up to seconds on the large sizes: the fewest samples.
    group.sample_size(10);
    for size in [50usize, 300, 1000, 3000] {
        let insns = program_of_size(size);
        let n = insns.len();
        let program =
            Arc::new(verify(insns, &VerifyOptions::default()).expect("generated programs verify"));
        group.throughput(Throughput::Elements(n as u64));
        for tier in Tier::available() {
            let Ok(b) = backend(tier) else { continue };
            let levels: &[u8] = match tier {
                Tier::Interp => &[3],
                Tier::Cranelift => &[0, 1, 3],
                _ => &[0, 3],
            };
            for &opt_level in levels {
                let opts = CompileOptions {
                    opt_level,
                    ..CompileOptions::default()
                };
                let id = BenchmarkId::new(format!("{tier}/O{opt_level}"), n);
                group.bench_with_input(id, &program, |bench, p| {
                    bench.iter(|| b.compile(p, &opts).expect("compiles"));
                });
            }
        }
    }
    group.finish();
}

fn compile_programs(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile_programs");
    group.sample_size(10);
    for p in PROGRAMS {
        let subject = Subject::from_elf(p.bpf_object, None).expect("benchmark programs load");
        group.throughput(Throughput::Elements(subject.len() as u64));
        for tier in Tier::available() {
            let Ok(b) = backend(tier) else { continue };
            let opts = subject.options(tier, true);
            group.bench_function(BenchmarkId::new(p.name, tier.name()), |bench| {
                bench.iter(|| b.compile(&subject.program, &opts).expect("compiles"));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, compile_latency, compile_programs);
criterion_main!(benches);
