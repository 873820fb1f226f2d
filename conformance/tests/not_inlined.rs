//! Tier 0 with no bpf-to-bpf call translated inline: by default it
//! translates small functions at their call sites (see
//! backends/cranelift/src/inline.rs), so the other test binaries mostly
//! exercise that, and this one keeps the real calls covered: every case
//! of the public suite and the corpus that calls a function, and generated
//! programs with calls, compared with the interpreter. Its own test
//! binary: the setting is process-wide. `generated_programs_do_inline`
//! checks the other side, that the default inlines the generated calls
//! the differential tests compare.

use bpfvm::emit::{emit_text, TextOutput};
use bpfvm::engine::asm::assemble;
use bpfvm::engine::backend::{CompileOptions, COUNT_ONLY};
use bpfvm::engine::instr::{decode, Instr};
use bpfvm::engine::verifier::{verify, VerifyOptions};
use bpfvm::tier::{backend, Tier};
use bpfvm_conformance::differential::{compare, env_u64};
use bpfvm_conformance::generate::{generate, GenOptions};
use bpfvm_conformance::{
    clif_functions, corpus_dir, data_files, parse, public_dir, run_case, RunOptions, TestCase,
};

fn no_inlining() {
    bpfvm_cranelift::set_inline_slots(0);
}

#[test]
fn a_small_callee_is_a_function_of_its_own() {
    no_inlining();
    let program = verify(
        assemble("mov %r1, 2\ncall local f\nexit\nf:\nmov %r0, %r1\nexit").unwrap(),
        &VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(bpfvm_cranelift::inlined_functions(&program, 0), 0);
    assert_eq!(bpfvm_cranelift::inlined_functions(&program, 64), 1);
    let clif = emit_text(&program, &CompileOptions::default(), TextOutput::Clif).unwrap();
    assert_eq!(clif_functions(&clif), 2, "{clif}");
}

#[test]
fn cases_that_call_functions() {
    no_inlining();
    let Ok(tier0) = backend(Tier::Cranelift) else {
        return;
    };
    let calls = |case: &TestCase| {
        case.program.as_ref().is_ok_and(|insns| {
            (0..insns.len()).any(|pc| matches!(decode(insns, pc), Ok(Instr::CallLocal { .. })))
        })
    };
    let mut run = 0;
    for dir in [public_dir(), corpus_dir()] {
        for path in data_files(&dir).unwrap_or_default() {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let Ok(case) = parse(&name, &text) else {
                continue;
            };
            if !calls(&case) {
                continue;
            }
            for opt_level in [0, 1, 3] {
                let opts = RunOptions {
                    opt_level,
                    ..RunOptions::default()
                };
                run_case(&case, tier0.as_ref(), &opts)
                    .unwrap_or_else(|e| panic!("{} at level {opt_level}: {e}", path.display()));
            }
            run += 1;
        }
    }
    assert!(run >= 12, "only {run} cases call a function");
}

/// Compares 1,000 generated programs (by default; `BPFVM_DIFF_COUNT`)
/// from `start` with the interpreter, no call inlined.
fn campaign(start: u64, opts: &CompileOptions) {
    no_inlining();
    let Ok(tier0) = backend(Tier::Cranelift) else {
        return;
    };
    let count = env_u64("BPFVM_DIFF_COUNT", 1_000);
    let start = start + env_u64("BPFVM_DIFF_SEED", 0);
    let gen = GenOptions::default();
    let n = compare(start, &[tier0.as_ref()], &gen, opts, count).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, count);
}

#[test]
fn generated_calls_checked_level_0() {
    let opts = CompileOptions {
        opt_level: 0,
        budget: Some(1_000_000),
        ..CompileOptions::default()
    };
    campaign(4_000_000, &opts);
}

#[test]
fn generated_calls_counting_level_1() {
    let opts = CompileOptions {
        opt_level: 1,
        budget: Some(COUNT_ONLY),
        ..CompileOptions::default()
    };
    campaign(4_100_000, &opts);
}

#[test]
fn generated_programs_do_inline() {
    // What the default would inline in the programs the differential
    // tests generate (computed with the default limit, whatever this
    // binary set).
    let gen = GenOptions::default();
    let (mut functions, mut inlined) = (0, 0);
    for seed in 0..200 {
        let program = verify(generate(seed, &gen), &VerifyOptions::default()).unwrap();
        functions += program.functions().len() - 1;
        inlined +=
            bpfvm_cranelift::inlined_functions(&program, bpfvm_cranelift::DEFAULT_INLINE_SLOTS);
    }
    assert!(
        inlined >= 50 && inlined * 2 >= functions,
        "{inlined} of {functions} called functions inlined"
    );
}
