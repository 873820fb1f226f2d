//! `if cond goto +1` over one ALU instruction, which tier 0 compiles to a
//! `select` when no budget counts blocks: both outcomes of each condition
//! form, a body that writes the condition's own register, 32-bit bodies,
//! and a jump into the body (no select then), on every tier with and
//! without a budget, against the interpreter and against the expected r0.

use bpfvm::engine::asm::assemble;
use bpfvm::engine::backend::{Backend, CompileOptions};
use bpfvm::tier::{backend, Tier};
use bpfvm_conformance::differential::{difference, differential_helpers, Differ};

fn check(src: &str, r1: u64, want: u64) {
    // r1 comes from the input: nothing is known at compile time.
    let src = format!("ldxdw %r1, [%r1]\n{src}");
    let insns = assemble(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let tiers: Vec<Box<dyn Backend>> = Tier::available()
        .into_iter()
        .filter_map(|t| backend(t).ok())
        .collect();
    let refs: Vec<&dyn Backend> = tiers.iter().map(|b| b.as_ref()).collect();
    for (opt_level, budget) in [(0, None), (1, None), (1, Some(1000)), (3, None)] {
        let opts = CompileOptions {
            opt_level,
            budget,
            ..CompileOptions::default()
        };
        let mut differ = Differ::new(differential_helpers(), 8, opts.call_depth);
        let runs = differ
            .run_all(&insns, &r1.to_le_bytes(), &refs, &opts)
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        let what = format!("r1 = {r1:#x}, O{opt_level}, budget {budget:?}:\n{src}");
        assert_eq!(runs[0].1.result, Ok(want), "{what}");
        for (tier, obs) in &runs[1..] {
            if let Some(d) = difference(&runs[0].1, obs) {
                panic!("{tier} differs from the interpreter: {d}\n{what}");
            }
        }
    }
}

#[test]
fn each_condition_both_ways() {
    let body = "mov %r0, 1\n{test}, +1\nmov %r0, 2\nexit";
    let cases = [
        ("jlt %r1, 5", 4, 1),
        ("jlt %r1, 5", 5, 2),
        ("jsgt %r1, -1", u64::MAX, 2),
        ("jsgt %r1, -1", 0, 1),
        ("jset %r1, 6", 4, 1),
        ("jset %r1, 6", 1, 2),
        ("jeq32 %r1, 7", 0x1_0000_0007, 1),
        ("jne %r1, 7", 7, 2),
        ("jge %r1, %r1", 3, 1),
    ];
    for (test, r1, want) in cases {
        check(&body.replace("{test}", test), r1, want);
    }
}

#[test]
fn bodies_that_write_the_tested_register_or_32_bits() {
    // The test reads r1 before the body writes it.
    check("jgt %r1, 9, +1\nadd %r1, 100\nmov %r0, %r1\nexit", 3, 103);
    check("jgt %r1, 9, +1\nadd %r1, 100\nmov %r0, %r1\nexit", 10, 10);
    // A 32-bit body zero-extends; when skipped, the upper half stays.
    let w32 = "lddw %r0, 0x100000005\njeq %r1, 0, +1\nadd32 %r0, 1\nexit";
    check(w32, 0, 0x1_0000_0005);
    check(w32, 1, 6);
    check(
        "mov %r0, 3\njeq %r1, 0, +1\nneg %r0\nexit",
        1,
        (-3i64) as u64,
    );
    check("mov %r0, 0x1234\njeq %r1, 0, +1\nbe16 %r0\nexit", 1, 0x3412);
}

#[test]
fn a_body_that_is_also_jumped_to_is_a_block() {
    // pc 2 (the body) is also the target of pc 1's jump.
    let src = "mov %r0, 1\njeq %r1, 1, +1\njlt %r1, 5, +1\nadd %r0, 10\nexit";
    check(src, 1, 11);
    check(src, 3, 1);
    check(src, 7, 11);
}
