//! Accesses through r1 after tests of r2, the input's length, which the
//! JITs leave unchecked when every path to them has established that the
//! input is long enough (`bpfvm_engine::facts`). Each program runs on
//! every tier, at Cranelift's levels 0, 1 and 3, with inputs just shorter
//! than, as long as and longer than the length it tests; every tier must
//! agree with the interpreter (result or trap, memory, stack), and the
//! interpreter's outcome is also checked against what the program means,
//! so that a case cannot pass by testing nothing.

use bpfvm::engine::asm::assemble;
use bpfvm::engine::disasm::disassemble;
use bpfvm::engine::trap::Trap;
use bpfvm_conformance::differential::agree_on_every_tier;

/// What the interpreter must give for an input of some length.
#[derive(Debug)]
enum Want {
    /// r0.
    R0(u64),
    /// The little-endian u64 at this offset of the input (bytes `i + 1`).
    Word(usize),
    /// An out-of-bounds access at this pc, of this many bytes.
    OutOfBounds(usize, u32),
}

/// Input byte `i` is `i + 1`.
fn input(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i + 1) as u8).collect()
}

fn word(mem: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(mem[at..at + 8].try_into().unwrap())
}

/// Runs `src` on every tier with each `(length, want)`.
fn check(name: &str, src: &str, cases: &[(usize, Want)]) {
    let insns = assemble(src).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (len, want) in cases {
        let mem = input(*len);
        let what = format!("{name}\n{}", disassemble(&insns));
        let result = agree_on_every_tier(&what, &insns, &mem, None);
        let ok = match (want, &result) {
            (Want::R0(v), Ok(r0)) => r0 == v,
            (Want::Word(at), Ok(r0)) => *r0 == word(&mem, *at),
            (Want::OutOfBounds(at, n), Err(Trap::OutOfBounds { pc, size, .. })) => {
                pc == at && size == n
            }
            _ => false,
        };
        assert!(
            ok,
            "{name}, input of {len} bytes: the interpreter gave {result:?}, want {want:?}"
        );
    }
}

#[test]
fn tests_of_each_form_bound_the_accesses_after_them() {
    let body = "ldxdw %r0, [%r1+8]\nexit\nout:\nmov %r0, 7\nexit";
    // `if len < 16 goto out` and its equivalents: bytes 8..16 are then in.
    for test in [
        "jlt %r2, 16, out",
        "jle %r2, 15, out",
        "jlt32 %r2, 16, out",
        "jslt %r2, 16, out",
        "jsle %r2, 15, out",
        "jslt32 %r2, 16, out",
    ] {
        let src = format!("{test}\n{body}");
        check(
            test,
            &src,
            &[
                (0, Want::R0(7)),
                (15, Want::R0(7)),
                (16, Want::Word(8)),
                (17, Want::Word(8)),
            ],
        );
    }
    for test in [
        "jge %r2, 16, in",
        "jgt %r2, 15, in",
        "jgt32 %r2, 15, in",
        "jsge %r2, 16, in",
        "jsgt %r2, 15, in",
        "jsgt32 %r2, 15, in",
    ] {
        let src = format!("{test}\nmov %r0, 7\nexit\nin:\nldxdw %r0, [%r1+8]\nexit");
        check(
            test,
            &src,
            &[(15, Want::R0(7)), (16, Want::Word(8)), (40, Want::Word(8))],
        );
    }
    let eq = "jeq %r2, 16, in\nmov %r0, 7\nexit\nin:\nldxdw %r0, [%r1+8]\nexit";
    check("jeq", eq, &[(16, Want::Word(8)), (17, Want::R0(7))]);
    let ne = format!("jne %r2, 16, out\n{body}");
    check("jne", &ne, &[(16, Want::Word(8)), (15, Want::R0(7))]);
    // Signed tests against 0 or less establish nothing: `len s>= -1`
    // holds for any length below 2^63.
    for test in ["jslt %r2, -1, out", "jslt %r2, 0, out", "jsle %r2, -1, out"] {
        let src = format!("{test}\n{body}");
        check(
            test,
            &src,
            &[(4, Want::OutOfBounds(1, 8)), (16, Want::Word(8))],
        );
    }
}

#[test]
fn accesses_at_and_past_the_edges_of_the_known_length() {
    // One byte past what the test established: checked, and a trap when
    // the input is exactly that long.
    let past = "jlt %r2, 16, out\nldxdw %r0, [%r1+9]\nexit\nout:\nmov %r0, 7\nexit";
    check(
        "past",
        past,
        &[(16, Want::OutOfBounds(1, 8)), (17, Want::Word(9))],
    );
    // Before the input.
    let before = "jlt %r2, 16, out\nldxb %r0, [%r1-1]\nexit\nout:\nexit";
    check("before", before, &[(16, Want::OutOfBounds(1, 1))]);
    // r1 moved, then a store and a load at the new base.
    let moved = "jlt %r2, 16, out\nadd %r1, 8\nstdw [%r1-8], 5\nldxdw %r0, [%r1-8]\n\
                 ldxdw %r3, [%r1]\nadd %r0, %r3\nexit\nout:\nexit";
    check(
        "moved",
        moved,
        &[(16, Want::R0(5 + 0x100f0e0d0c0b0a09)), (15, Want::R0(0))],
    );
    let moved_past = "jlt %r2, 16, out\nadd %r1, 9\nldxdw %r0, [%r1-1]\nldxdw %r0, [%r1]\n\
                      exit\nout:\nexit";
    check("moved_past", moved_past, &[(16, Want::OutOfBounds(3, 8))]);
    // An atomic inside.
    let atomic = "jlt %r2, 16, out\nmov %r3, 1\nlock fetch add [%r1+8], %r3\nmov %r0, %r3\n\
                  exit\nout:\nexit";
    check("atomic", atomic, &[(16, Want::Word(8))]);
}

#[test]
fn only_r2_as_the_program_received_it_bounds_the_length() {
    // r2 changed before its test: the test says nothing of the input.
    let changed = "add %r2, 8\njlt %r2, 16, out\nldxdw %r0, [%r1+8]\nexit\nout:\nmov %r0, 7\nexit";
    check(
        "changed",
        changed,
        &[(8, Want::OutOfBounds(2, 8)), (16, Want::Word(8))],
    );
    // A copy of it does.
    let copy = "mov %r6, %r2\njlt %r6, 16, out\nldxdw %r0, [%r1+8]\nexit\nout:\nmov %r0, 7\nexit";
    check("copy", copy, &[(15, Want::R0(7)), (16, Want::Word(8))]);
    // A copy made in the first block, tested after a merge: nothing
    // writes it later, so it still holds the length.
    let merged = "mov %r7, %r2\njeq %r2, 3, +0\njlt %r7, 16, out\nldxdw %r0, [%r1+8]\nexit\n\
                  out:\nmov %r0, 7\nexit";
    check(
        "merged copy",
        merged,
        &[(15, Want::R0(7)), (16, Want::Word(8))],
    );
    // ...unless a path into the test writes it.
    let overwritten = "mov %r7, %r2\njne %r2, 8, +1\nmov %r7, 64\njlt %r7, 16, out\n\
                       ldxdw %r0, [%r1+8]\nexit\nout:\nmov %r0, 7\nexit";
    check(
        "overwritten copy",
        overwritten,
        &[(8, Want::OutOfBounds(4, 8)), (16, Want::Word(8))],
    );
    // A callee's r2 is its argument: its own test of it is not trusted
    // (nor needed to be right).
    let callee = "mov %r2, 64\ncall local callee\nexit\ncallee:\njlt %r2, 16, out\n\
                  ldxdw %r0, [%r1+8]\nexit\nout:\nmov %r0, 7\nexit";
    check(
        "callee",
        callee,
        &[(8, Want::OutOfBounds(4, 8)), (16, Want::Word(8))],
    );
}

#[test]
fn every_path_to_an_access_must_have_tested_the_length() {
    // A loop after the test: r1 is unchanged after the first block, and
    // every path into the loop knows 16.
    let looped = "jlt %r2, 16, out\nmov %r0, 0\nmov %r3, 2\nl:\nldxb %r4, [%r1+15]\n\
                  add %r0, %r4\nldxw %r4, [%r1+12]\nadd %r0, %r4\nsub %r3, 1\njne %r3, 0, l\n\
                  exit\nout:\nmov %r0, 7\nexit";
    check(
        "loop",
        looped,
        &[(15, Want::R0(7)), (16, Want::R0(2 * (16 + 0x100f0e0d)))],
    );
    // Two paths join: one through the test, one (a backward jump) around
    // it, when the length is 5.
    let joined = "jeq %r2, 5, short\njlt %r2, 16, out\njoin:\nldxdw %r0, [%r1+8]\nexit\n\
                  short:\nja join\nout:\nmov %r0, 7\nexit";
    check(
        "join",
        joined,
        &[
            (5, Want::OutOfBounds(2, 8)),
            (6, Want::R0(7)),
            (16, Want::Word(8)),
        ],
    );
    // r1 written on one path into a block: only what the first block
    // established of registers nothing writes later holds everywhere.
    let rewritten = "jlt %r2, 16, out\njeq %r2, 16, skip\nmov %r1, 0\nskip:\n\
                     ldxdw %r0, [%r1+8]\nexit\nout:\nmov %r0, 7\nexit";
    check(
        "rewritten",
        rewritten,
        &[(16, Want::Word(8)), (17, Want::OutOfBounds(3, 8))],
    );
    // A call back to the entry function passes its own r1 and r2: a JIT
    // that took them for the input's would load from 0x4141...49.
    let reentered = "start:\njlt %r2, 16, out\nldxdw %r0, [%r1+8]\nexit\nout:\n\
                     lddw %r1, 0x4141414141414141\nmov %r2, 16\ncall local start\nexit";
    check(
        "reentered",
        reentered,
        &[(8, Want::OutOfBounds(1, 8)), (16, Want::Word(8))],
    );
    // A jump back to the first block: nothing is assumed of r1 or r2.
    // (The second time round r1 is 0: an access a JIT wrongly trusted
    // would fault.)
    let back = "start:\njlt %r2, 16, out\nldxdw %r0, [%r1+8]\nmov %r1, 0\n\
                jne %r0, 0, start\nexit\nout:\nmov %r0, 7\nexit";
    check(
        "back",
        back,
        &[(16, Want::OutOfBounds(1, 8)), (8, Want::R0(7))],
    );
}

#[test]
fn offsets_that_every_path_brings_survive_the_merge() {
    // r6 = input + 8 on both paths into `join`: the load there needs no
    // check below 16.
    let same = "jlt %r2, 16, out\nmov %r6, %r1\njeq %r2, 20, other\nadd %r6, 8\nja join\n\
                other:\nadd %r6, 8\njoin:\nldxdw %r0, [%r6]\nexit\nout:\nmov %r0, 7\nexit";
    check(
        "same offset",
        same,
        &[(15, Want::R0(7)), (16, Want::Word(8)), (20, Want::Word(8))],
    );
    // input + 8 on one path, input + 9 on the other: checked, and out of
    // bounds on the second when the input is 16 bytes long.
    let differ = "jlt %r2, 16, out\nmov %r6, %r1\njeq %r2, 16, other\nadd %r6, 8\nja join\n\
                  other:\nadd %r6, 9\njoin:\nldxdw %r0, [%r6]\nexit\nout:\nmov %r0, 7\nexit";
    check(
        "different offsets",
        differ,
        &[(16, Want::OutOfBounds(6, 8)), (17, Want::Word(8))],
    );
    // A pointer that a loop moves: input + 0 on entry, + 8 and + 16 round
    // the loop, so nothing holds at its head; the third load is past a
    // 16-byte input.
    let walked = "jlt %r2, 16, out\nmov %r6, %r1\nmov %r3, 3\nmov %r0, 0\nl:\n\
                  ldxdw %r4, [%r6]\nadd %r0, %r4\nadd %r6, 8\nsub %r3, 1\njne %r3, 0, l\n\
                  exit\nout:\nmov %r0, 7\nexit";
    let sum3 = |mem: &[u8]| (0..3).fold(0u64, |a, k| a.wrapping_add(word(mem, 8 * k)));
    check(
        "walked",
        walked,
        &[
            (16, Want::OutOfBounds(4, 8)),
            (24, Want::R0(sum3(&input(24)))),
        ],
    );
    // r1 itself unchanged round a loop: every pass knows input + 0.
    let kept = "jlt %r2, 16, out\nmov %r3, 3\nmov %r0, 0\nl:\nldxdw %r4, [%r1+8]\n\
                add %r0, %r4\nmov %r1, %r1\nsub %r3, 1\njne %r3, 0, l\nexit\nout:\nmov %r0, 7\nexit";
    check(
        "kept round a loop",
        kept,
        &[
            (15, Want::R0(7)),
            (16, Want::R0(3u64.wrapping_mul(word(&input(16), 8)))),
        ],
    );
}
