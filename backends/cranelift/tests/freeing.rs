//! Compiled code is unmapped when its program is dropped: compiling and
//! dropping many programs does not grow the process's mappings.

use std::sync::Arc;

use bpfvm_cranelift::CraneliftBackend;
use bpfvm_engine::asm::assemble;
use bpfvm_engine::backend::{execute, Backend, CompileOptions, RunEnv};
use bpfvm_engine::helpers::Helpers;
use bpfvm_engine::verifier::verify;

/// Virtual size of the process in pages (adjacent mappings may merge, so
/// their count says less than their size).
fn mapped_pages() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn dropping_programs_frees_their_code() {
    let program = Arc::new(
        verify(
            assemble("mov %r0, 1\nloop:\nadd %r0, %r0\njlt %r0, 1000, loop\nexit").unwrap(),
            &Default::default(),
        )
        .unwrap(),
    );
    let table = Helpers::new().table();
    let env = RunEnv {
        helpers: &table,
        regions: &[],
        host: std::ptr::null_mut(),
    };
    let run = |n: usize| {
        for _ in 0..n {
            let code = CraneliftBackend
                .compile(&program, &CompileOptions::default())
                .unwrap();
            assert_eq!(execute(code.as_ref(), &env, &mut []).unwrap().r0, 1024);
        }
    };
    run(50);
    let before = mapped_pages();
    run(500);
    let after = mapped_pages();
    // Each compile maps at least one page: 500 leaked programs would add 500.
    assert!(
        after <= before + 128,
        "mapped pages grew from {before} to {after}: compiled code leaks"
    );
    // Kept code stays mapped, so the check above can fail.
    let kept: Vec<_> = (0..200)
        .map(|_| {
            CraneliftBackend
                .compile(&program, &CompileOptions::default())
                .unwrap()
        })
        .collect();
    assert!(
        mapped_pages() >= after + 150,
        "kept code should stay mapped"
    );
    drop(kept);
}
