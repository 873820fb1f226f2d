//! Shrinking a program that shows a divergence, so that the saved test
//! case is small enough to read.
//!
//! Greedy: each instruction in turn (a `lddw` as a pair) is replaced by a
//! no-op (`r0 = r0`, which keeps jump offsets valid); the change is kept
//! when the program still verifies and still diverges. Passes repeat until
//! nothing more can go.

use bpfvm::engine::isa::{Insn, ALU_MOV, CLS_ALU64, OP_LDDW, SRC_X};

/// `r0 = r0`: changes nothing.
pub const NOP: Insn = Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 0, 0, 0, 0);

/// Shrinks `insns` while `diverges` holds (it must hold for `insns`).
/// `diverges` is called at most `budget` times.
pub fn minimize(
    insns: &[Insn],
    mut budget: usize,
    mut diverges: impl FnMut(&[Insn]) -> bool,
) -> Vec<Insn> {
    let mut best = insns.to_vec();
    loop {
        let mut changed = false;
        let mut pc = 0;
        while pc < best.len() {
            let width = if best[pc].code == OP_LDDW && pc + 1 < best.len() {
                2
            } else {
                1
            };
            if best[pc..pc + width].iter().all(|i| *i == NOP) {
                pc += width;
                continue;
            }
            if budget == 0 {
                return best;
            }
            budget -= 1;
            let mut candidate = best.clone();
            candidate[pc..pc + width].fill(NOP);
            if diverges(&candidate) {
                best = candidate;
                changed = true;
            }
            pc += width;
        }
        if !changed {
            return best;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfvm::engine::asm::assemble;

    #[test]
    fn keeps_only_what_the_property_needs() {
        let p =
            assemble("mov %r1, 5\nmov %r2, 7\nlddw %r3, 0x1122334455667788\nmov %r0, %r2\nexit")
                .unwrap();
        // "Diverges" = still contains `mov %r2, 7` and an exit.
        let needle = p[1];
        let out = minimize(&p, 100, |c| c.contains(&needle) && c.last() == p.last());
        assert_eq!(out.iter().filter(|i| **i != NOP).count(), 2);
        assert_eq!(
            out.len(),
            p.len(),
            "jump offsets stay valid: no instruction is removed"
        );
    }
}
