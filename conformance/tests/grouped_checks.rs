//! Loads through one base register, and a store after them, that tier 0
//! checks together, with one test of the span they cover
//! (`RegisterFacts::access_group`). Each program
//! runs on every tier at levels 0, 1 and 3 (the tiers must agree with the
//! interpreter on the result or trap, memory and stack) with the base in
//! the input, at its edges, in a host region and in a caller's frame; the
//! interpreter's outcome is also checked against what the program means,
//! so that a case cannot pass by testing nothing. A group's trap must be
//! the one its first refused load raises in program order, and whatever
//! ends a group (a store, a load through another register, a write of the
//! base) must come before it.

use bpfvm::engine::asm::assemble;
use bpfvm::engine::disasm::disassemble;
use bpfvm::engine::trap::Trap;
use bpfvm_conformance::differential::agree_on_every_tier;

/// What the interpreter must give.
#[derive(Debug)]
enum Want {
    R0(u64),
    /// A result, whatever it is (the tiers must still agree on it).
    Done,
    /// An out-of-bounds load at this pc, of this many bytes.
    OutOfBounds(usize, u32),
    /// An out-of-bounds store at this pc, of this many bytes.
    StoreOutOfBounds(usize, u32),
}

/// Input byte `i` is `i + 1`.
fn input(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i + 1) as u8).collect()
}

fn check(name: &str, src: &str, len: usize, want: Want) {
    check_with_budget(name, src, len, None, want);
}

fn check_with_budget(name: &str, src: &str, len: usize, budget: Option<u64>, want: Want) {
    let insns = assemble(src).unwrap_or_else(|e| panic!("{name}: {e}"));
    let what = format!("{name}\n{}", disassemble(&insns));
    let result = agree_on_every_tier(&what, &insns, &input(len), budget);
    let ok = match (&want, &result) {
        (Want::R0(v), Ok(r0)) => r0 == v,
        (Want::Done, Ok(_)) => true,
        (
            Want::OutOfBounds(at, n) | Want::StoreOutOfBounds(at, n),
            Err(Trap::OutOfBounds {
                pc, size, write, ..
            }),
        ) => pc == at && size == n && *write == matches!(want, Want::StoreOutOfBounds(..)),
        _ => false,
    };
    assert!(
        ok,
        "{name}, input of {len} bytes: the interpreter gave {result:?}, want {want:?}"
    );
}

/// pcs 0 and 1: the entry calls `f` (from pc 2) with r1 = the input and
/// r2 = its length, so that `f` knows nothing of r1 and its loads through
/// r1 need checks.
const CALL_F: &str = "call local f\nexit\nf:\n";

#[test]
fn a_group_traps_at_its_first_refused_load() {
    // pc 3: [r1+0], 1 byte; pc 5: [r1+3], 1 byte; pc 6: a load from the
    // frame (never checked); pc 8: [r1+6], 2 bytes; ALU instructions
    // between them.
    let src = format!(
        "{CALL_F}stxdw [%r10-8], %r2\nldxb %r0, [%r1+0]\nadd %r0, 1\nldxb %r3, [%r1+3]\n\
         ldxdw %r4, [%r10-8]\nadd %r0, %r3\nldxh %r3, [%r1+6]\nadd %r0, %r3\nexit"
    );
    let name = "three loads";
    check(name, &src, 0, Want::OutOfBounds(3, 1));
    check(name, &src, 1, Want::OutOfBounds(5, 1));
    check(name, &src, 3, Want::OutOfBounds(5, 1));
    check(name, &src, 4, Want::OutOfBounds(8, 2));
    check(name, &src, 7, Want::OutOfBounds(8, 2));
    // Bytes are i + 1: 1, plus 1, plus 4, plus 7 | 8 << 8.
    check(name, &src, 8, Want::R0(1 + 1 + 4 + 0x0807));
    check(name, &src, 100, Want::R0(1 + 1 + 4 + 0x0807));
}

#[test]
fn negative_offsets_and_loads_out_of_address_order() {
    // r1 = input + 8; pc 3: [r1+4], 4 bytes; pc 4: [r1-8], 8 bytes;
    // pc 6: [r1+0], 1 byte.
    let src = format!(
        "{CALL_F}add %r1, 8\nldxw %r0, [%r1+4]\nldxdw %r3, [%r1-8]\nxor %r0, %r3\n\
         ldxb %r3, [%r1+0]\nxor %r0, %r3\nexit"
    );
    let name = "out of order";
    let le = |bytes: &[u8]| {
        let mut b = [0u8; 8];
        b[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(b)
    };
    let m = input(16);
    let want = le(&m[12..16]) ^ le(&m[0..8]) ^ le(&m[8..9]);
    check(name, &src, 16, Want::R0(want));
    check(name, &src, 100, Want::R0(want));
    check(name, &src, 15, Want::OutOfBounds(3, 4));
    check(name, &src, 8, Want::OutOfBounds(3, 4));
}

#[test]
fn a_group_in_a_host_region_inside_a_loop() {
    // r6 = the read-only host region (64 bytes), then r6 + 1: the first
    // time the out-of-line check finds the region, the second time (at
    // levels 1 and 3) the remembered region's inline test must refuse
    // [r6+63] there.
    for (k, want) in [
        (62, Want::Done),
        (63, Want::OutOfBounds(8, 1)),
        (-1, Want::OutOfBounds(8, 1)),
    ] {
        let src = format!(
            "mov %r1, 1\ncall 2\nmov %r6, %r0\nmov %r7, 0\nmov %r8, 0\nl:\n\
             ldxdw %r0, [%r6+0]\nldxdw %r3, [%r6+48]\nxor %r0, %r3\nldxb %r3, [%r6{k:+}]\n\
             xor %r0, %r3\nadd %r8, %r0\nadd %r7, 1\nadd %r6, 1\njlt %r7, 2, l\nmov %r0, %r8\nexit"
        );
        check(&format!("host region, [r6{k:+}]"), &src, 16, want);
    }
}

#[test]
fn a_group_in_the_callers_frame() {
    // The entry stores the length at r10 - 16 and passes r10 - 16 to `f`
    // (pc 6), which loads 8 bytes at +0 and +8 and one at +k: up to +15
    // in the caller's frame, +16 past the top of the stack.
    for (k, want) in [(15, Want::Done), (16, Want::OutOfBounds(8, 1))] {
        let src = format!(
            "stxdw [%r10-8], %r1\nstxdw [%r10-16], %r2\nmov %r1, %r10\nadd %r1, -16\n\
             call local f\nexit\nf:\nldxdw %r0, [%r1+0]\nldxdw %r3, [%r1+8]\n\
             ldxb %r4, [%r1+{k}]\nadd %r0, %r4\nexit"
        );
        check(&format!("caller's frame, +{k}"), &src, 24, want);
    }
}

#[test]
fn what_ends_a_group_runs_before_its_traps() {
    // A load into the base: the load at pc 4 goes through the byte loaded.
    let src = format!("{CALL_F}ldxb %r0, [%r1+2]\nldxb %r1, [%r1+0]\nldxb %r3, [%r1+0]\nexit");
    check("a load into the base", &src, 2, Want::OutOfBounds(2, 1));
    check("a load into the base", &src, 3, Want::OutOfBounds(4, 1));
    // A store: it changes the input before the load at pc 4 traps (a
    // group across it would trap before it ran, with other memory).
    let src = format!("{CALL_F}ldxb %r0, [%r1+0]\nstb [%r1+1], 0x55\nldxb %r3, [%r1+4]\nexit");
    check("a store", &src, 2, Want::OutOfBounds(4, 1));
    check("a store", &src, 5, Want::R0(1));
    // A load through another register, which may trap first.
    let src = format!(
        "{CALL_F}mov %r5, %r1\nldxb %r0, [%r1+0]\nldxb %r3, [%r5+9]\nldxb %r4, [%r1+5]\nexit"
    );
    check("another base", &src, 4, Want::OutOfBounds(4, 1));
    check("another base", &src, 6, Want::OutOfBounds(4, 1));
    check("another base", &src, 10, Want::R0(1));
    // A jump: the next block's loads are a group of their own.
    let src = format!(
        "{CALL_F}ldxb %r0, [%r1+0]\njeq %r0, 0, +0\nldxb %r3, [%r1+8]\nldxb %r4, [%r1+1]\nexit"
    );
    check("a jump", &src, 1, Want::OutOfBounds(4, 1));
    check("a jump", &src, 9, Want::R0(1));
}

#[test]
fn instructions_of_every_kind_between_a_groups_loads() {
    // pc 2 [r1+0]; lddw (pcs 3-4); pc 5 movsx; pc 6 be16; pc 7 [r1+5]
    // sign-extended; pc 8 a 32-bit op; pc 9 [r1+9], 2 bytes.
    let src = format!(
        "{CALL_F}ldxb %r0, [%r1+0]\nlddw %r3, 0x100000000\nmovsx864 %r4, %r0\nbe16 %r4\n\
         ldxsb %r5, [%r1+5]\nadd32 %r0, %r5\nldxh %r3, [%r1+9]\nadd %r0, %r3\nadd %r0, %r4\nexit"
    );
    let name = "lddw, movsx, be16 and a 32-bit add between loads";
    check(name, &src, 5, Want::OutOfBounds(7, 1));
    check(name, &src, 10, Want::OutOfBounds(9, 2));
    // 1 + 6 (32 bits), then + (10 | 11 << 8), + be16(1) = 0x0100.
    check(name, &src, 11, Want::R0(7 + 0x0b0a + 0x0100));
}

#[test]
fn groups_at_the_offsets_extremes() {
    // r1 = input + 32768: [r1-32768] is the input's first byte and
    // [r1+32767] its byte 65,535.
    let src = format!(
        "{CALL_F}add %r1, 32768\nldxb %r0, [%r1-32768]\nldxb %r3, [%r1+32767]\nadd %r0, %r3\nexit"
    );
    let name = "offsets -32768 and +32767";
    check(name, &src, 65_535, Want::OutOfBounds(4, 1));
    let byte = |i: usize| ((i + 1) % 256) as u64;
    check(name, &src, 65_536, Want::R0(byte(0) + byte(65_535)));
    check(name, &src, 0, Want::OutOfBounds(3, 1));
}

#[test]
fn a_budget_runs_out_between_groups_as_on_the_interpreter() {
    // A loop of three blocks whose middle one holds a group; budgets that
    // run out at each block, and one that lets the loop finish.
    let src = format!(
        "{CALL_F}mov %r0, 0\nmov %r6, 0\nl:\njge %r6, 3, done\n\
         ldxb %r3, [%r1+0]\nldxb %r4, [%r1+2]\nadd %r0, %r3\nadd %r0, %r4\nadd %r6, 1\nja l\ndone:\nexit"
    );
    let name = "a group in a loop, with a budget";
    let insns = assemble(&src).unwrap();
    let mut exhausted = std::collections::BTreeSet::new();
    for budget in 1..40 {
        // The tiers must agree with the interpreter, the budget left
        // included.
        let what = format!("{name}, budget {budget}\n{}", disassemble(&insns));
        if let Err(Trap::BudgetExhausted { pc }) =
            agree_on_every_tier(&what, &insns, &input(3), Some(budget))
        {
            exhausted.insert(pc);
        }
    }
    // The budget ran out at the loop's test, at the group's block and at
    // the exit in turn.
    assert!(
        exhausted.contains(&4) && exhausted.contains(&5),
        "{exhausted:?}"
    );
    check_with_budget(name, &src, 3, Some(1_000), Want::R0(3 * (1 + 3)));
    check_with_budget(name, &src, 2, Some(1_000), Want::OutOfBounds(6, 1));
}

#[test]
fn a_store_is_a_groups_last_access() {
    // pc 2 [r1+0] and pc 3 [r1+2], loads; pc 4 a store of 2 bytes at
    // [r1+5]; pc 5 a load after the group.
    let src = format!(
        "{CALL_F}ldxb %r0, [%r1+0]\nldxb %r3, [%r1+2]\nsth [%r1+5], 0x5555\nldxb %r4, [%r1+6]\n\
         add %r0, %r3\nadd %r0, %r4\nexit"
    );
    let name = "loads, then a store";
    check(name, &src, 2, Want::OutOfBounds(3, 1));
    check(name, &src, 6, Want::StoreOutOfBounds(4, 2));
    // The store ran: byte 6 is 0x55.
    check(name, &src, 7, Want::R0(1 + 3 + 0x55));
    // In the host regions: the writable one takes the store, the read-only
    // one refuses it after the load. The first group (loads only) makes
    // the region the remembered one; at levels 1 and 3 the second group's
    // inline test of it must use its limit for stores.
    for (region, want) in [(0, Want::Done), (1, Want::StoreOutOfBounds(8, 4))] {
        let src = format!(
            "mov %r1, {region}\ncall 2\nmov %r6, %r0\n\
             ldxdw %r0, [%r6+0]\nldxw %r3, [%r6+8]\nadd %r0, %r3\nja +0\n\
             ldxdw %r4, [%r6+16]\nstxw [%r6+12], %r0\nexit"
        );
        check(
            &format!("host region {region}, loads then a store"),
            &src,
            16,
            want,
        );
    }
}
