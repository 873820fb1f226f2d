//! Which bpf-to-bpf calls tier 0 translates inline, in the caller's
//! Cranelift function, instead of as calls of a function of their own.
//!
//! A Cranelift function has a fixed compile cost of tens of µs (its ABI,
//! prologue and epilogue, the register allocator's set-up), more than a
//! small eBPF function's own instructions cost; and a call costs at run
//! time seven arguments, the callee's frame, and a test of the trap
//! record after it. A small function is therefore translated at each of
//! its call sites instead, with the semantics of the call unchanged
//! (`Translator::inline_call`): the same depth test at the call, a frame
//! 512 bytes below the caller's, r0 and r6 to r9 zero at its start, the
//! caller's r6 to r9 and r10 after it, r1 to r5 zero.
//!
//! A function is inlined when it is not the entry, every function it calls
//! is inlined too (so no cycle of calls ever is, and the code inlined
//! holds no call of its own), it is called at all, and what it brings to
//! the program stays small: at most [`inline_slots`] slots with all it
//! inlines itself, and at most twice that over all its call sites.

use std::sync::atomic::{AtomicUsize, Ordering};

use bpfvm_engine::instr::Instr;
use bpfvm_engine::program::{Function, Program};

/// The default of [`set_inline_slots`]. Larger functions, compiled on
/// their own, are compiled by helper threads at the same time as their
/// callers; translated inline, they add to their caller's compile:
/// a caller of 100 slots with two callees of 60 compiled 1.45 times
/// slower with a limit of 64 (BENCHMARKS.md, session 17).
pub const DEFAULT_INLINE_SLOTS: usize = 32;

static INLINE_SLOTS: AtomicUsize = AtomicUsize::new(DEFAULT_INLINE_SLOTS);

/// For measurements and tests, process-wide: the most slots a function
/// may have, with the functions it inlines itself, to be translated at
/// its call sites; 0 inlines nothing. Programs compiled afterwards use it.
#[doc(hidden)]
pub fn set_inline_slots(slots: usize) {
    INLINE_SLOTS.store(slots, Ordering::Relaxed);
}

/// What [`set_inline_slots`] set.
pub fn inline_slots() -> usize {
    INLINE_SLOTS.load(Ordering::Relaxed)
}

/// For tests: how many of `program`'s functions tier 0 translates at
/// their call sites only, when [`inline_slots`] is `limit`.
#[doc(hidden)]
pub fn inlined_functions(program: &Program, limit: usize) -> usize {
    let plan = InlinePlan::with_limit(program, limit);
    (0..plan.inlined.len()).filter(|&f| plan.inlined[f]).count()
}

/// The program's functions, which of them are inlined, and what each
/// compiles to in slots with what it inlines.
pub(crate) struct InlinePlan {
    functions: Vec<Function>,
    inlined: Vec<bool>,
    /// Per function, its slots plus those of the copies it inlines.
    pub sizes: Vec<usize>,
}

impl InlinePlan {
    /// Decides for every function of `program` (see the module's text).
    pub fn of(program: &Program) -> InlinePlan {
        Self::with_limit(program, inline_slots())
    }

    fn with_limit(program: &Program, limit: usize) -> InlinePlan {
        let functions = program.functions().to_vec();
        let n = functions.len();
        // The functions are in pc order.
        let index = |pc: usize| functions.binary_search_by_key(&pc, |f| f.start).ok();
        // Per function, the functions its call sites call.
        let calls: Vec<Vec<usize>> = functions
            .iter()
            .map(|f| {
                program.instrs()[f.start..f.end]
                    .iter()
                    .filter_map(|i| match *i {
                        Instr::CallLocal { target } => index(target as usize),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let mut sites = vec![0usize; n];
        for t in calls.iter().flatten() {
            sites[*t] += 1;
        }
        let own: Vec<usize> = functions.iter().map(|f| f.end - f.start).collect();
        let mut inlined = vec![false; n];
        let mut sizes = own.clone();
        // Callees before callers, until nothing more qualifies.
        loop {
            let mut changed = false;
            for f in 1..n {
                if inlined[f] || sites[f] == 0 || !calls[f].iter().all(|&t| inlined[t]) {
                    continue;
                }
                let size = own[f] + calls[f].iter().map(|&t| sizes[t]).sum::<usize>();
                if size <= limit && size * sites[f] <= 2 * limit {
                    inlined[f] = true;
                    sizes[f] = size;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for f in 0..n {
            if !inlined[f] {
                sizes[f] = own[f]
                    + calls[f]
                        .iter()
                        .filter(|&&t| inlined[t])
                        .map(|&t| sizes[t])
                        .sum::<usize>();
            }
        }
        InlinePlan {
            functions,
            inlined,
            sizes,
        }
    }

    /// Whether function `f` (by index) is translated at its call sites
    /// only, and so not compiled on its own.
    pub fn is_inlined(&self, f: usize) -> bool {
        self.inlined[f]
    }

    /// The function starting at `pc`, when calls of it are inlined.
    pub fn callee(&self, pc: usize) -> Option<Function> {
        let f = self.functions.binary_search_by_key(&pc, |f| f.start).ok()?;
        self.inlined[f].then_some(self.functions[f])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfvm_engine::asm::assemble;
    use bpfvm_engine::verifier::verify;

    fn program(src: &str) -> Program {
        verify(assemble(src).unwrap(), &Default::default()).unwrap()
    }

    /// main calls a (twice) and b; a calls c; b calls itself.
    const CALLS: &str = "
        call local a
        call local a
        call local b
        exit
        a:
        call local c
        add %r0, 1
        exit
        c:
        mov %r0, 7
        exit
        b:
        jeq %r1, 0, done
        sub %r1, 1
        call local b
        done:
        exit
    ";

    #[test]
    fn leaves_first_then_their_callers_never_a_cycle_or_the_entry() {
        let p = program(CALLS);
        let plan = InlinePlan::with_limit(&p, 64);
        // main, a, c, b in pc order.
        assert_eq!(
            (0..4).map(|f| plan.is_inlined(f)).collect::<Vec<_>>(),
            [false, true, true, false]
        );
        // a: 3 slots and c's 2; main: 4 and a twice.
        assert_eq!(plan.sizes[..3], [4 + 5 + 5, 5, 2]);
        assert_eq!(plan.callee(p.functions()[1].start), Some(p.functions()[1]));
        assert_eq!(plan.callee(p.functions()[3].start), None);
    }

    #[test]
    fn nothing_past_the_limit_or_its_copies_and_nothing_at_zero() {
        let p = program(CALLS);
        // a (5 slots with c) is called twice: 10 > 2 × 4.
        let plan = InlinePlan::with_limit(&p, 4);
        assert!(plan.is_inlined(2) && !plan.is_inlined(1));
        let plan = InlinePlan::with_limit(&p, 0);
        assert!((0..4).all(|f| !plan.is_inlined(f)));
        assert_eq!(plan.sizes, [4, 3, 2, 4]);
    }
}
