//! Boundary matrix: every ALU and JMP operation, 32 and 64 bit, immediate
//! and register forms, over boundary operands (0, 1, -1, INT_MIN, INT_MAX,
//! 2^32-1, 2^31, shift counts 31/32/63/64, ...), on every tier against the
//! interpreter. Each (operation, width) is one program that loops over
//! operand pairs read from memory (so nothing is folded at compile time)
//! and stores each result in memory, so comparing memory compares every
//! result.

use bpfvm::engine::backend::{Backend, CompileOptions};
use bpfvm::engine::disasm::disassemble;
use bpfvm::engine::isa::*;
use bpfvm::tier::{backend, Tier};
use bpfvm_conformance::differential::{difference, differential_helpers, Differ};
use bpfvm_conformance::generate::BOUNDARY;

/// The generator's boundary values plus a few more awkward ones.
fn values() -> Vec<u64> {
    BOUNDARY
        .iter()
        .copied()
        .chain([2, 0x8000_0000_0000_0001, (-7i64) as u64])
        .collect()
}

const IMMS: [i32; 14] = [
    0,
    1,
    2,
    -1,
    i32::MIN,
    i32::MAX,
    31,
    32,
    63,
    64,
    -7,
    0x8000,
    7,
    -2,
];

/// Input memory: every (a, b) pair of `values()` as two little-endian u64s,
/// then one result slot per register-form pair and per (a, imm) pair.
fn input() -> (Vec<u8>, usize, usize) {
    let values = values();
    let mut mem = Vec::new();
    for &a in &values {
        for &b in &values {
            mem.extend(a.to_le_bytes());
            mem.extend(b.to_le_bytes());
        }
    }
    let pairs = values.len() * values.len();
    let results = mem.len();
    mem.resize(results + 8 * (pairs + values.len() * IMMS.len()), 0);
    (mem, pairs, results)
}

/// A program with two loops: over the operand pairs (register form:
/// r1 = a, r2 = b, `op(imm = None)`, store r1), and over the first
/// operands (immediate form: `op(Some(imm))` for each immediate, store r1).
/// Operands come from memory, so no tier can fold them at compile time.
fn program(op: impl Fn(&mut Vec<Insn>, Option<i32>)) -> (Vec<Insn>, Vec<u8>) {
    let (mem, pairs, results) = input();
    let mut p = vec![
        Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 9, 1, 0, 0),
        // r7 = pair pointer, r8 = result pointer, r6 = count
        Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 7, 1, 0, 0),
        Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 8, 1, 0, 0),
        Insn::new(CLS_ALU64 | ALU_ADD | SRC_K, 8, 0, 0, results as i32),
        Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, 6, 0, 0, pairs as i32),
    ];
    let head = p.len();
    p.push(Insn::new(CLS_LDX | MODE_MEM | SIZE_DW, 1, 7, 0, 0));
    p.push(Insn::new(CLS_LDX | MODE_MEM | SIZE_DW, 2, 7, 8, 0));
    op(&mut p, None);
    p.push(Insn::new(CLS_STX | MODE_MEM | SIZE_DW, 8, 1, 0, 0));
    p.push(Insn::new(CLS_ALU64 | ALU_ADD | SRC_K, 7, 0, 0, 16));
    p.push(Insn::new(CLS_ALU64 | ALU_ADD | SRC_K, 8, 0, 0, 8));
    p.push(Insn::new(CLS_ALU64 | ALU_SUB | SRC_K, 6, 0, 0, 1));
    let back = head as i64 - p.len() as i64 - 1;
    p.push(Insn::new(CLS_JMP | JMP_JNE | SRC_K, 6, 0, back as i16, 0));
    // Immediate forms: a = each distinct first operand (every `values().len()`-th pair).
    p.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 7, 9, 0, 0));
    let n = values().len();
    p.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, 6, 0, 0, n as i32));
    let head = p.len();
    for (k, &imm) in IMMS.iter().enumerate() {
        p.push(Insn::new(CLS_LDX | MODE_MEM | SIZE_DW, 1, 7, 0, 0));
        op(&mut p, Some(imm));
        p.push(Insn::new(
            CLS_STX | MODE_MEM | SIZE_DW,
            8,
            1,
            (k * 8) as i16,
            0,
        ));
    }
    p.push(Insn::new(
        CLS_ALU64 | ALU_ADD | SRC_K,
        7,
        0,
        0,
        (16 * n) as i32,
    ));
    p.push(Insn::new(
        CLS_ALU64 | ALU_ADD | SRC_K,
        8,
        0,
        0,
        (8 * IMMS.len()) as i32,
    ));
    p.push(Insn::new(CLS_ALU64 | ALU_SUB | SRC_K, 6, 0, 0, 1));
    let back = head as i64 - p.len() as i64 - 1;
    p.push(Insn::new(CLS_JMP | JMP_JNE | SRC_K, 6, 0, back as i16, 0));
    p.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, 0, 0, 0, 0));
    p.push(Insn::new(OP_EXIT, 0, 0, 0, 0));
    (p, mem)
}

fn tiers() -> Vec<Box<dyn Backend>> {
    Tier::available()
        .into_iter()
        .filter_map(|t| backend(t).ok())
        .collect()
}

fn compare(name: &str, (insns, mem): (Vec<Insn>, Vec<u8>)) {
    let tiers = tiers();
    let refs: Vec<&dyn Backend> = tiers.iter().map(|b| b.as_ref()).collect();
    // 1: Cranelift's tier-0 level in the runtime (no optimiser).
    for opt_level in [0u8, 1, 3] {
        let opts = CompileOptions {
            opt_level,
            ..CompileOptions::default()
        };
        let mut differ = Differ::new(differential_helpers(), mem.len(), opts.call_depth);
        let runs = differ
            .run_all(&insns, &mem, &refs, &opts)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", disassemble(&insns)));
        let (_, reference) = &runs[0];
        assert_eq!(reference.result, Ok(0), "{name}");
        for (tier, obs) in &runs[1..] {
            if let Some(d) = difference(reference, obs) {
                panic!("{name} O{opt_level}: {tier} differs from the interpreter: {d}");
            }
        }
    }
}

#[test]
fn alu_matrix() {
    let ops = [
        ("add", ALU_ADD, 0),
        ("sub", ALU_SUB, 0),
        ("mul", ALU_MUL, 0),
        ("div", ALU_DIV, 0),
        ("sdiv", ALU_DIV, 1),
        ("or", ALU_OR, 0),
        ("and", ALU_AND, 0),
        ("lsh", ALU_LSH, 0),
        ("rsh", ALU_RSH, 0),
        ("mod", ALU_MOD, 0),
        ("smod", ALU_MOD, 1),
        ("xor", ALU_XOR, 0),
        ("mov", ALU_MOV, 0),
        ("arsh", ALU_ARSH, 0),
    ];
    for (name, op, off) in ops {
        for class in [CLS_ALU, CLS_ALU64] {
            let prog = program(|p, imm| match imm {
                None => p.push(Insn::new(class | op | SRC_X, 1, 2, off, 0)),
                Some(imm) => p.push(Insn::new(class | op | SRC_K, 1, 0, off, imm)),
            });
            compare(&format!("{name} class {class}"), prog);
        }
    }
}

#[test]
fn unary_matrix() {
    let forms: Vec<(String, Insn)> = vec![
        ("neg32".into(), Insn::new(CLS_ALU | ALU_NEG, 1, 0, 0, 0)),
        ("neg64".into(), Insn::new(CLS_ALU64 | ALU_NEG, 1, 0, 0, 0)),
        (
            "movsx8_64".into(),
            Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 1, 1, 8, 0),
        ),
        (
            "movsx16_64".into(),
            Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 1, 1, 16, 0),
        ),
        (
            "movsx32_64".into(),
            Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 1, 1, 32, 0),
        ),
        (
            "movsx8_32".into(),
            Insn::new(CLS_ALU | ALU_MOV | SRC_X, 1, 1, 8, 0),
        ),
        (
            "movsx16_32".into(),
            Insn::new(CLS_ALU | ALU_MOV | SRC_X, 1, 1, 16, 0),
        ),
    ]
    .into_iter()
    .chain([16, 32, 64].into_iter().flat_map(|bits| {
        [
            (
                format!("le{bits}"),
                Insn::new(CLS_ALU | ALU_END | SRC_K, 1, 0, 0, bits),
            ),
            (
                format!("be{bits}"),
                Insn::new(CLS_ALU | ALU_END | SRC_X, 1, 0, 0, bits),
            ),
            (
                format!("bswap{bits}"),
                Insn::new(CLS_ALU64 | ALU_END, 1, 0, 0, bits),
            ),
        ]
    }))
    .collect();
    for (name, insn) in forms {
        compare(&name, program(|p, _| p.push(insn)));
    }
}

#[test]
fn jmp_matrix() {
    let conds = [
        JMP_JEQ, JMP_JGT, JMP_JGE, JMP_JSET, JMP_JNE, JMP_JSGT, JMP_JSGE, JMP_JLT, JMP_JLE,
        JMP_JSLT, JMP_JSLE,
    ];
    for op in conds {
        for class in [CLS_JMP, CLS_JMP32] {
            // r1 = taken ? 1 : 0 (the comparison reads r1 before it is set).
            let prog = program(|p, imm| {
                let jump = match imm {
                    None => Insn::new(class | op | SRC_X, 1, 2, 2, 0),
                    Some(imm) => Insn::new(class | op | SRC_K, 1, 0, 2, imm),
                };
                p.push(jump);
                p.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, 1, 0, 0, 0));
                p.push(Insn::new(OP_JA, 0, 0, 1, 0));
                p.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, 1, 0, 0, 1));
            });
            compare(&format!("jmp op {op:#x} class {class}"), prog);
        }
    }
}
