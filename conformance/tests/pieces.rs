//! Tier 0 with every function cut into pieces (as it cuts large ones when
//! helper threads can compile the pieces at once), here into up to six
//! pieces of as little as 8 slots, so that generated programs of a
//! hundred slots are cut too: compared with the interpreter as in
//! `differential.rs` (result, trap, registers, memory, stack, budget
//! left). Its own test binary: the cut is process-wide.

use bpfvm::emit::{emit_text, TextOutput};
use bpfvm::engine::asm::assemble;
use bpfvm::engine::backend::{CompileOptions, COUNT_ONLY};
use bpfvm::engine::interp::Interpreter;
use bpfvm::engine::verifier::{verify, VerifyOptions};
use bpfvm::tier::{backend, Tier};
use bpfvm_conformance::clif_functions;
use bpfvm_conformance::differential::{compare, difference, differential_helpers, env_u64, Differ};
use bpfvm_conformance::generate::{generate, GenOptions};

/// Compares 1,000 programs (by default) from `start` under `opts` and
/// `gen`, after checking that the first hundred are cut into 150 pieces
/// or more.
fn cut_campaign(start: u64, gen: &GenOptions, opts: &CompileOptions) {
    bpfvm_cranelift::force_pieces(Some((6, 8)));
    let Ok(tier0) = backend(Tier::Cranelift) else {
        return;
    };
    let (mut functions, mut pieces) = (0, 0);
    for seed in start..start + 100 {
        let program = verify(generate(seed, gen), &VerifyOptions::default()).unwrap();
        let clif = emit_text(&program, opts, TextOutput::Clif).unwrap();
        functions += program.functions().len();
        pieces += clif_functions(&clif);
    }
    assert!(
        pieces >= 150 && pieces > functions + 50,
        "{pieces} pieces of {functions} functions"
    );
    // `BPFVM_PIECES_COUNT` (and `BPFVM_PIECES_SEED`, added to each
    // test's start) for longer campaigns.
    let count = env_u64("BPFVM_PIECES_COUNT", 1_000);
    let start = start + env_u64("BPFVM_PIECES_SEED", 0);
    let n = compare(start, &[tier0.as_ref()], gen, opts, count).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, count);
}

#[test]
fn pieces_checked_level_0() {
    let opts = CompileOptions {
        opt_level: 0,
        ..CompileOptions::default()
    };
    cut_campaign(3_000_000, &GenOptions::default(), &opts);
}

#[test]
fn pieces_counting_level_1() {
    // The runtime's tier 0: level 1, counting for promotion.
    let opts = CompileOptions {
        opt_level: 1,
        budget: Some(COUNT_ONLY),
        ..CompileOptions::default()
    };
    cut_campaign(3_100_000, &GenOptions::default(), &opts);
}

#[test]
fn pieces_tight_budget_with_length_guards() {
    // Budgets that run out in a later piece; accesses left unchecked
    // after a length test in an earlier one.
    let gen = GenOptions {
        length_guards: true,
        ..GenOptions::default()
    };
    let opts = CompileOptions {
        opt_level: 1,
        budget: Some(60),
        ..CompileOptions::default()
    };
    cut_campaign(3_200_000, &gen, &opts);
}

#[test]
fn pieces_host_regions() {
    // Accesses to host regions (the check's slow path) and map lookups.
    let gen = GenOptions {
        host_regions: true,
        ..GenOptions::default()
    };
    let opts = CompileOptions {
        opt_level: 1,
        budget: Some(1_000_000),
        ..CompileOptions::default()
    };
    cut_campaign(3_400_000, &gen, &opts);
}

#[test]
fn pieces_unchecked_speed() {
    let gen = GenOptions {
        out_of_bounds: false,
        ..GenOptions::default()
    };
    let opts = CompileOptions {
        checked: false,
        opt_level: 3,
        ..CompileOptions::default()
    };
    cut_campaign(3_300_000, &gen, &opts);
}

#[test]
fn a_later_piece_knows_only_what_holds_where_it_starts() {
    // r1 is the input, whose length the first block tests, until piece 0
    // replaces it; piece 1 starts at the fall-through of a `jeq` (no jump
    // leads there) and loads through r1: its check must stay (a piece
    // that kept the function's entry facts would read address 0).
    bpfvm_cranelift::force_pieces(Some((6, 8)));
    let Ok(tier0) = backend(Tier::Cranelift) else {
        return;
    };
    let pad: String = (0..8).map(|k| format!("add %r0, {k}\n")).collect();
    let src = format!(
        "jlt %r2, 16, out\nmov %r1, %r3\n{pad}jeq %r0, 12345, out\n\
         ldxb %r0, [%r1]\n{pad}exit\nout:\nmov %r0, 7\nexit"
    );
    let insns = assemble(&src).unwrap();
    let interp = Interpreter;
    let mut d = Differ::new(differential_helpers(), 32, 8);
    for opt_level in [0, 1, 3] {
        let opts = CompileOptions {
            opt_level,
            ..CompileOptions::default()
        };
        let program = verify(insns.clone(), &VerifyOptions::default()).unwrap();
        let clif = emit_text(&program, &opts, TextOutput::Clif).unwrap();
        assert_eq!(clif_functions(&clif), 2, "cut once:\n{clif}");
        let runs = d
            .run_all(&insns, &[1; 32], &[&interp, tier0.as_ref()], &opts)
            .unwrap();
        assert!(
            difference(&runs[0].1, &runs[1].1).is_none(),
            "O{opt_level}: {:?} against {:?}",
            runs[0].1,
            runs[1].1
        );
    }
}
