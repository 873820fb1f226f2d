//! Compile latency per tier by program size: generated programs of 50 to
//! 3,000 instructions (`compile/<tier>/O<level>/<size>`), and the benchmark
//! programs (`compile_programs/<program>/<tier>`, checked code as the
//! runtime compiles it: Cranelift at tier 0's level, LLVM at O3;
//! throughput in instructions), with rbpf 0.4.1's x86-64 JIT beside them
//! where it takes the program (`compile_programs/<program>/rbpf_jit`: its
//! verifier and its template compiler, no memory checks).
//!
//! `compile_floor/<what>/O<level>/straight_alu_300`: tier 0 against the
//! floor under it, Cranelift alone building and compiling the same
//! straight run of 300 ALU instructions (`bpfvm_bench::floor`), and
//! against rbpf's JIT.
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

#[path = "../peers/rbpf.rs"]
mod rbpf_peer;
use rbpf_peer::{Rbpf, RbpfMode};

/// rbpf's verifier and JIT on `bytecode`, once per iteration.
fn rbpf_jit_bench(bench: &mut criterion::Bencher, bytecode: &[u8]) {
    bench.iter(|| rbpf_peer::jit_compile(bytecode).expect("rbpf compiles it"));
}

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
        let len = (p.input)().len();
        if Rbpf::new(&subject.insns, len, RbpfMode::Jit).is_ok() {
            let bytecode = rbpf_peer::bytecode(&subject.insns, len);
            group.bench_function(BenchmarkId::new(p.name, "rbpf_jit"), |bench| {
                rbpf_jit_bench(bench, &bytecode)
            });
        }
    }
    group.finish();
}

#[cfg(feature = "cranelift")]
fn compile_floor(c: &mut Criterion) {
    use bpfvm_bench::floor::Floor;
    let insns = bpfvm_bench::straight_alu_300();
    let subject =
        bpfvm_bench::Subject::from_insns("straight_alu_300", insns.clone()).expect("verifies");
    let name = "straight_alu_300";
    let mut group = c.benchmark_group("compile_floor");
    group.throughput(Throughput::Elements(insns.len() as u64));
    let b = backend(Tier::Cranelift).expect("tier 0 is built");
    for level in [0u8, 1] {
        let mut opts = subject.options(Tier::Cranelift, true);
        opts.opt_level = level;
        group.bench_function(BenchmarkId::new(format!("tier0/O{level}"), name), |bench| {
            bench.iter(|| b.compile(&subject.program, &opts).expect("compiles"));
        });
        let mut floor = Floor::new(level).expect("host ISA");
        group.bench_function(
            BenchmarkId::new(format!("cranelift_alone/O{level}"), name),
            |bench| {
                bench.iter(|| floor.compile(&insns).expect("compiles"));
            },
        );
    }
    let bytecode = rbpf_peer::bytecode(&insns, 0);
    group.bench_function(BenchmarkId::new("rbpf_jit", name), |bench| {
        rbpf_jit_bench(bench, &bytecode)
    });
    group.finish();
}

#[cfg(not(feature = "cranelift"))]
fn compile_floor(_: &mut Criterion) {}

criterion_group!(benches, compile_latency, compile_programs, compile_floor);
criterion_main!(benches);
