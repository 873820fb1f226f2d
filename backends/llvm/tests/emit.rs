//! The text outputs: LLVM IR, native assembly, PTX.

mod common;

use std::collections::HashMap;

use bpfvm_engine::backend::CompileOptions;
use bpfvm_llvm::{emit_asm, emit_llvm_ir, emit_ptx};

const DIVS: &str = "mov %r0, %r1\ndiv %r0, %r2\nmod %r0, %r3\nsdiv %r0, %r4\nsmod %r0, %r5\n\
    div32 %r0, %r2\nmod32 %r0, %r3\nsdiv32 %r0, %r4\nsmod32 %r0, %r5\n\
    div %r0, 0\nmod %r0, 0\nsdiv %r0, -1\nsmod %r0, -1\nsdiv32 %r0, -1\nexit";

fn o0() -> CompileOptions {
    CompileOptions {
        opt_level: 0,
        ..CompileOptions::default()
    }
}

/// Every `udiv`/`sdiv`/`urem`/`srem` of the unoptimised IR divides by the
/// result of a `select` (the guard that replaces 0, and -1 for the signed
/// forms, by 1) or by a constant other than 0 and -1.
#[test]
fn every_division_is_guarded() {
    let p = common::program(DIVS);
    let ir = emit_llvm_ir(&p, &o0(), false).expect("IR");
    let defs: HashMap<&str, &str> = ir
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(" = ")?;
            Some((name, rest.split_whitespace().next()?))
        })
        .collect();
    let mut divisions = 0;
    for line in ir.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(k) = words
            .iter()
            .position(|w| matches!(*w, "udiv" | "sdiv" | "urem" | "srem"))
        else {
            continue;
        };
        divisions += 1;
        let op = words[k];
        let divisor = words.get(k + 3).copied().unwrap_or("");
        match divisor.parse::<i64>() {
            Ok(c) => assert!(c != 0 && c != -1, "constant divisor in `{line}`"),
            Err(_) => assert_eq!(
                defs.get(divisor).copied(),
                Some("select"),
                "{op} divisor {divisor} is not a guard's select in `{line}`"
            ),
        }
    }
    // 8 register forms; the immediate forms 0 and -1 need no division.
    assert_eq!(divisions, 8, "{ir}");
}

#[test]
fn unoptimised_ir_has_no_poison_flags() {
    let p = common::program(
        "add %r1, %r2\nsub %r1, 3\nmul %r1, %r1\nlsh %r1, %r2\nneg32 %r1\nmov %r0, %r1\nexit",
    );
    let ir = emit_llvm_ir(&p, &o0(), false).expect("IR");
    for bad in [" nsw ", " nuw ", " exact "] {
        assert!(!ir.contains(bad), "`{bad}` in\n{ir}");
    }
    // Shift counts are masked before the shift.
    assert!(ir.contains("and i64"), "{ir}");
}

#[test]
fn ir_shape() {
    let p = common::program("mov %r0, 1\ncall local f\nexit\nf:\nmov %r0, 2\nexit");
    let ir = emit_llvm_ir(&p, &CompileOptions::default(), false).expect("IR");
    assert!(
        ir.contains("define internal fastcc i64 @bpf_fn_0(ptr"),
        "{ir}"
    );
    assert!(
        ir.contains("define internal fastcc i64 @bpf_fn_3(ptr"),
        "{ir}"
    );
    assert!(ir.contains("define i64 @bpf_entry(ptr"), "{ir}");
    assert!(ir.contains("target triple"), "{ir}");
    let opt = emit_llvm_ir(&p, &CompileOptions::default(), true).expect("IR");
    assert!(opt.contains("@bpf_entry(ptr"), "{opt}");
    assert!(
        !opt.contains("alloca"),
        "registers are promoted at O3:\n{opt}"
    );
}

#[test]
fn asm_shape() {
    let p = common::program("mov %r0, %r1\nadd %r0, 7\nexit");
    let asm = emit_asm(&p, &CompileOptions::default()).expect("asm");
    assert!(asm.contains("bpf_entry:"), "{asm}");
    assert!(asm.contains(".text"), "{asm}");
}

#[test]
fn ptx_shape() {
    let p = common::program(
        "ldxdw %r0, [%r1]\nmov %r3, 0\nl:\nadd %r0, %r3\nadd %r3, 1\njlt %r3, 4, l\n\
         stxdw [%r10-8], %r0\nldxdw %r0, [%r10-8]\nexit",
    );
    for sm in ["sm_70", "sm_80", "sm_90"] {
        let ptx = emit_ptx(&p, &CompileOptions::default(), sm).expect("PTX");
        assert!(ptx.contains(".entry bpf_kernel"), "{ptx}");
        assert!(ptx.contains(&format!(".target {sm}")), "{ptx}");
        assert!(ptx.contains(".address_size 64"), "{ptx}");
    }
    let budget = CompileOptions {
        budget: Some(100),
        opt_level: 0,
        ..CompileOptions::default()
    };
    assert!(emit_ptx(&p, &budget, "sm_75").is_ok());
}

/// PTX atomics on local memory (the stack) are undefined, and on an H200
/// they gave wrong results: an `r10`-based GPU atomic is a plain
/// read-modify-write, any other tests the address space first (plain on
/// the stack, the hardware atomic on the input buffer).
#[test]
fn ptx_atomics_on_the_stack_are_plain() {
    let p = common::program(
        "stxdw [%r10-8], %r2\nmov %r0, 1\nlock add [%r10-8], %r0\nlock add [%r1], %r0\n\
         lock fetch add [%r1+8], %r0\nmov %r0, 0\nlock cmpxchg [%r10-8], %r2\nldxdw %r0, [%r10-8]\nexit",
    );
    let ptx = emit_ptx(&p, &o0(), "sm_90").expect("PTX");
    let count = |needle: &str| ptx.matches(needle).count();
    // One test for each of the two `r1` addresses, none for `r10`.
    assert_eq!(count("isspacep.local"), 2, "{ptx}");
    assert_eq!(count("atom.add"), 2, "{ptx}");
    assert_eq!(count("atom.cas"), 0, "{ptx}");
    let stack_only = common::program(
        "stxdw [%r10-8], %r2\nmov %r0, 1\nlock add [%r10-8], %r0\n\
         lock fetch xor [%r10-16], %r0\nmov %r0, 0\nlock cmpxchg32 [%r10-4], %r2\nexit",
    );
    for opt_level in [0, 3] {
        let opts = CompileOptions {
            opt_level,
            ..CompileOptions::default()
        };
        let ptx = emit_ptx(&stack_only, &opts, "sm_90").expect("PTX");
        assert_eq!(ptx.matches("atom.").count(), 0, "O{opt_level}: {ptx}");
        assert_eq!(ptx.matches("isspacep").count(), 0, "O{opt_level}: {ptx}");
    }
}

#[test]
fn ptx_rejects_helpers_and_bad_architectures() {
    let helper = common::program("call 5\nexit");
    let e = emit_ptx(&helper, &CompileOptions::default(), "sm_70").unwrap_err();
    assert!(e.to_string().contains("helper"), "{e}");
    let callx = common::program("mov %r1, 5\ncall %r1\nexit");
    assert!(emit_ptx(&callx, &CompileOptions::default(), "sm_70").is_err());
    let ok = common::program("mov %r0, 1\nexit");
    for bad in ["sm_", "compute_70", "sm_7x", "", "sm_1234"] {
        assert!(
            emit_ptx(&ok, &CompileOptions::default(), bad).is_err(),
            "{bad}"
        );
    }
}
