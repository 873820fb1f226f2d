//! The Cranelift floor (`bpfvm_bench::floor`) builds IR that computes what
//! the program computes, Cranelift accepts and compiles it, and anything
//! but a straight 64-bit ALU run is refused with an error.

#![cfg(feature = "cranelift")]

use std::collections::HashMap;

use bpfvm::engine::asm::assemble;
use bpfvm::tier::Tier;
use bpfvm_bench::floor::{floor_isa, straight_function, Floor};
use bpfvm_bench::{straight_alu_300, Executor, Subject};
use cranelift_codegen::ir::{Function, InstructionData, Opcode, Value};
use cranelift_frontend::FunctionBuilderContext;

/// Evaluates a one-block function of integer operations on `params`.
fn evaluate(func: &Function, params: &[u64]) -> u64 {
    let block = func.layout.entry_block().expect("has a block");
    assert!(
        func.layout.next_block(block).is_none(),
        "the floor is one block"
    );
    let mut values: HashMap<Value, u64> = func
        .dfg
        .block_params(block)
        .iter()
        .copied()
        .zip(params.iter().copied())
        .collect();
    for inst in func.layout.block_insts(block) {
        let data = &func.dfg.insts[inst];
        let args: Vec<u64> = func
            .dfg
            .inst_args(inst)
            .iter()
            .map(|a| values[&func.dfg.resolve_aliases(*a)])
            .collect();
        let result = match (data.opcode(), data) {
            (Opcode::Iconst, InstructionData::UnaryImm { imm, .. }) => imm.bits() as u64,
            (Opcode::Return, _) => return args[0],
            (Opcode::Iadd, _) => args[0].wrapping_add(args[1]),
            (Opcode::Isub, _) => args[0].wrapping_sub(args[1]),
            (Opcode::Imul, _) => args[0].wrapping_mul(args[1]),
            (Opcode::Bor, _) => args[0] | args[1],
            (Opcode::Band, _) => args[0] & args[1],
            (Opcode::Bxor, _) => args[0] ^ args[1],
            (Opcode::Ishl, _) => args[0] << (args[1] & 63),
            (Opcode::Ushr, _) => args[0] >> (args[1] & 63),
            (Opcode::Sshr, _) => ((args[0] as i64) >> (args[1] & 63)) as u64,
            (Opcode::Ineg, _) => args[0].wrapping_neg(),
            (op, _) => panic!("{op} is not in the floor"),
        };
        values.insert(func.dfg.first_result(inst), result);
    }
    panic!("no return")
}

#[test]
fn floor_computes_what_the_interpreter_computes() {
    let insns = straight_alu_300();
    let isa = floor_isa(0).expect("host ISA");
    let func =
        straight_function(&*isa, &insns, &mut FunctionBuilderContext::new()).expect("builds");
    cranelift_codegen::verify_function(&func, &*isa).expect("Cranelift's verifier accepts it");
    // One operation per instruction but the movs (an iconst, or nothing),
    // and the return: no work is left out.
    let ops = func
        .layout
        .block_insts(func.layout.entry_block().unwrap())
        .filter(|&i| func.dfg.insts[i].opcode() != Opcode::Iconst)
        .count();
    let movs = insns
        .iter()
        .filter(|i| matches!(i.code, 0xb7 | 0xbf)) // mov64 dst, imm / src
        .count();
    assert_eq!(ops, insns.len() - movs);
    let subject = Subject::from_insns("straight_alu_300", insns).expect("verifies");
    let (mut interp, _) = subject
        .compile(Executor::Tier(Tier::Interp), true)
        .expect("wraps");
    let want = interp.run(&mut []).expect("runs");
    assert_eq!(want, 2);
    assert_eq!(evaluate(&func, &[0; 7]), want);
}

#[test]
fn floor_compiles_at_each_level() {
    let insns = straight_alu_300();
    for level in [0, 1] {
        let mut floor = Floor::new(level).expect("host ISA");
        let first = floor.compile(&insns).expect("compiles");
        assert!(
            first > 300,
            "level {level}: {first} bytes for 300 instructions"
        );
        // Again with the same contexts: the same code.
        assert_eq!(floor.compile(&insns), Ok(first), "level {level}");
    }
}

#[test]
fn floor_refuses_other_code() {
    let mut floor = Floor::new(0).expect("host ISA");
    for (src, why) in [
        ("mov r0, 1\nldxw r0, [r1]\nexit", "Load"),
        ("mov r0, 1\nja +0\nexit", "Ja"),
        ("mov32 r0, 1\nexit", "Alu"),
        ("mov r0, 1\ndiv r0, 3\nexit", "Div"),
        ("add r0, 1\nexit", "r0 is read before"),
        ("mov r0, 1", "does not end in exit"),
    ] {
        let insns = assemble(src).expect("assembles");
        // After a refusal, the same floor still builds (its contexts are
        // left clean).
        let err = floor.compile(&insns).expect_err(src);
        assert!(err.contains(why), "{src}: {err}");
        assert!(floor.compile(&straight_alu_300()).is_ok(), "after {src}");
    }
    assert!(Floor::new(3).is_err(), "no floor at the optimising levels");
}
