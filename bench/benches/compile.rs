//! Compile latency per tier by program size.
//!
//! `cargo bench -p bpfvm-bench --bench compile`

use std::sync::Arc;

use bpfvm::engine::backend::{Backend, CompileOptions};
use bpfvm::engine::verifier::{verify, VerifyOptions};
use bpfvm::tier::{backend, Tier};
use bpfvm_bench::program_of_size;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn compile_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    for size in [50usize, 300, 1000, 3000] {
        let insns = program_of_size(size);
        let n = insns.len();
        let program =
            Arc::new(verify(insns, &VerifyOptions::default()).expect("generated programs verify"));
        group.throughput(Throughput::Elements(n as u64));
        for tier in Tier::available() {
            let Ok(b) = backend(tier) else { continue };
            let levels: &[u8] = if tier == Tier::Interp { &[3] } else { &[0, 3] };
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

criterion_group!(benches, compile_latency);
criterion_main!(benches);
