//! Programs that once made LLVM 19's optimiser loop forever: each must
//! compile at every level and agree with the interpreter. A compile runs
//! on its own thread and the test fails (instead of hanging the suite)
//! when it has not finished after a generous deadline.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use std::sync::Arc;

use bpfvm_conformance::differential::{difference, differential_helpers, Differ};
use bpfvm_engine::backend::{Backend, CompileOptions};
use bpfvm_engine::interp::Interpreter;
use bpfvm_engine::isa::decode_program;
use bpfvm_llvm::{AotBackend, LlvmBackend};
use common::AtOpt;

/// Far above any compile of these few instructions (milliseconds).
const DEADLINE: Duration = Duration::from_secs(120);

/// Compiles `bytecode` with the llvm and aot tiers at every level and
/// compares their runs with the interpreter's (the fuzzer's helpers and
/// memory size).
fn compiles_and_agrees(name: &str, bytecode: &'static [u8]) {
    let insns = Arc::new(decode_program(bytecode).expect("whole instructions"));
    for level in 0..=3u8 {
        let (done, finished) = mpsc::channel();
        let insns = insns.clone();
        std::thread::spawn(move || {
            let opts = CompileOptions {
                budget: Some(1_000_000),
                ..CompileOptions::default()
            };
            let llvm = AtOpt(LlvmBackend, level);
            let aot = AtOpt(AotBackend, level);
            let backends: [&dyn Backend; 3] = [&Interpreter, &llvm, &aot];
            let mem = [0x5au8; 256];
            let mut differ = Differ::new(differential_helpers(), mem.len(), opts.call_depth);
            let runs = differ
                .run_all(&insns, &mem, &backends, &opts)
                .expect("verifies and compiles");
            for (tier, run) in &runs[1..] {
                assert_eq!(difference(&runs[0].1, run), None, "{tier} at O{level}");
            }
            let _ = done.send(());
        });
        match finished.recv_timeout(DEADLINE) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{name} at O{level}: the compile or the run failed (see above)")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name} at O{level}: no result after {DEADLINE:?}: the optimiser hangs")
            }
        }
    }
}

/// Found by `bpfvm fuzz --tiers llvm` (seed 7,003,276 of an earlier
/// generator; 116 instructions). Reduced with llvm-reduce, the loop at pc
/// 36..41 is a 32-bit negation of a loop-carried register that is then
/// shifted left: InstCombine's negator pushes the negation into the loop's
/// phi and back, forever, growing memory (llvm/llvm-project#96012, fixed in
/// LLVM 20; LLVM 19 has it at O1 and above). Tier 1 turns the negator off.
#[test]
fn negation_of_a_loop_carried_register() {
    compiles_and_agrees(
        "fuzz seed 7003276",
        include_bytes!("data/instcombine-negator-hang.bin"),
    );
}
