//! Compile times by program size and optimisation level (ignored: run with
//! `cargo test -p bpfvm-llvm --test compile_times -- --ignored --nocapture`).
//! A measurement to read, not a timed assertion.

mod common;

use std::time::Instant;

use bpfvm_engine::backend::{Backend, CompileOptions};
use bpfvm_llvm::{AotBackend, LlvmBackend};

/// A program of about `n` instructions: ALU work, loads, stores and
/// forward branches over the input.
fn sized_program(n: usize) -> String {
    let mut t = String::from("mov %r0, 0\nmov %r6, %r1\n");
    let mut k = 0;
    while k < n {
        t.push_str(&format!(
            "ldxb %r3, [%r6+{}]\nadd %r0, %r3\nmul %r0, 31\nxor %r0, {k}\n\
             jgt %r0, 1000, s{k}\nlsh %r0, 3\ns{k}:\nstxdw [%r10-8], %r0\n",
            k % 8
        ));
        k += 8;
    }
    t.push_str("exit");
    t
}

#[test]
#[ignore]
fn compile_times() {
    for n in [10, 100, 1000, 10000] {
        let p = common::program(&sized_program(n));
        for (name, b) in [("llvm", &LlvmBackend as &dyn Backend), ("aot", &AotBackend)] {
            for level in [0u8, 3] {
                let opts = CompileOptions {
                    opt_level: level,
                    ..CompileOptions::default()
                };
                let runs = if n >= 10000 { 1 } else { 5 };
                drop(b.compile(&p, &opts).expect("compiles")); // warm up
                let t = Instant::now();
                for _ in 0..runs {
                    drop(b.compile(&p, &opts).expect("compiles"));
                }
                let ms = t.elapsed().as_secs_f64() * 1000.0 / runs as f64;
                eprintln!("{name:5} O{level} {:6} insns: {ms:8.2} ms", p.len());
            }
        }
    }
}
