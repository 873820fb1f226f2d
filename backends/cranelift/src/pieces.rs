//! A large function cut into pieces, each its own Cranelift function, so
//! that helper threads ([`crate::offload`]) compile them at the same time:
//! Cranelift compiles one function on one thread, and a program is often
//! one large function.
//!
//! A cut goes before a basic block that no later code branches back
//! across: control only goes forward from one piece to the next, so every
//! loop stays whole in one piece, and a run crosses each cut at most once
//! per call of the function. A branch to a later piece is a call of it,
//! in tail position, with the registers as arguments: a later piece is
//! `(ctx, entry, r0, .., r9, r10) -> r0`, where `entry` says at which of
//! its entry blocks to go on; its result (r0, or 0 with a trap recorded
//! in the `VmCtx`) is the function's. The call is a plain one (the entry
//! piece has the C calling convention, which has no tail calls), so a run
//! inside the n-th piece has n native frames for its eBPF frame: with the
//! default of at most 4 pieces and 8 eBPF frames, a few KiB more stack.

use std::sync::Mutex;

use bpfvm_engine::instr::{AluOp, Instr, Operand};
use bpfvm_engine::program::{Function, Program};

/// Slots `lo..hi` of function `func`, compiled as one Cranelift function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub func: Function,
    pub lo: usize,
    pub hi: usize,
    /// A later piece's entries: `lo` first, then the blocks that earlier
    /// pieces branch to, ascending. Empty for the first piece.
    pub entries: Vec<usize>,
    /// For each entry, the registers (bit r) whose values the code from
    /// there may read: the others are not passed.
    pub live: Vec<u16>,
}

/// Registers a later piece takes (r0 to r9), after `ctx` and the entry.
pub(crate) const PIECE_REGISTERS: usize = 10;

/// Pieces are no smaller than this: a Cranelift function has a fixed
/// compile cost of about 10 µs, and each cut one call more at run time.
pub(crate) const MIN_PIECE_SLOTS: usize = 32;

/// Most entries of a later piece (each a test at its start).
const MAX_ENTRIES: usize = 8;

/// Candidate cuts tried around each ideal position.
const CANDIDATES: usize = 64;

impl Piece {
    /// The whole function as one piece.
    pub fn whole(func: Function) -> Piece {
        Piece {
            func,
            lo: func.start,
            hi: func.end,
            entries: Vec::new(),
            live: Vec::new(),
        }
    }

    /// Whether this piece starts the function (and has its signature).
    pub fn is_first(&self) -> bool {
        self.lo == self.func.start
    }

    pub fn slots(&self) -> usize {
        self.hi - self.lo
    }

    /// The index its code is called by: the function's for the first
    /// piece, else its first pc (which starts no function).
    pub fn index(&self) -> u32 {
        self.lo as u32
    }
}

/// Set by [`force_pieces`]: (pieces, their least slots), 0 when unset.
static FORCED: Mutex<(usize, usize)> = Mutex::new((0, 0));

/// For tests: cut every function into `pieces` pieces of at least
/// `min_slots` slots where it can be, whatever the helper threads
/// (`None`: as many as there are threads to compile them, of at least
/// [`MIN_PIECE_SLOTS`]). Process-wide; the code's behaviour is the same
/// either way, which is what such a test checks.
#[doc(hidden)]
pub fn force_pieces(forced: Option<(usize, usize)>) {
    let mut f = FORCED.lock().unwrap_or_else(|p| p.into_inner());
    *f = forced.map_or((0, 0), |(n, min)| (n.max(1), min.max(1)));
}

/// What [`force_pieces`] set.
pub(crate) fn forced() -> Option<(usize, usize)> {
    let f = *FORCED.lock().unwrap_or_else(|p| p.into_inner());
    (f.0 > 0).then_some(f)
}

/// What compiling a piece costs relative to its share of the function's
/// slots: a piece has the fixed cost of a function, and its entries' and
/// exits' arguments (measured: the 300-slot generated program cut in two
/// does 3-5 % more work in all, `parse`'s main function 26 % more).
const PIECE_COST: f64 = 1.3;

/// How many pieces to cut each function into, given what each compiles
/// to in slots (0 for one translated inline only), for `threads` threads
/// compiling at once: a function is cut (into one more piece at a
/// time, the largest first) only while that shortens the estimated
/// compile by a tenth, its work spread over the threads largest first.
/// A program whose other functions keep the threads busy is not cut.
pub(crate) fn piece_counts(sizes: &[usize], threads: usize) -> Vec<usize> {
    let sizes: Vec<f64> = sizes.iter().map(|&s| s as f64).collect();
    let mut counts = vec![1usize; sizes.len()];
    if threads < 2 {
        return counts;
    }
    let makespan = |counts: &[usize]| -> f64 {
        let mut units: Vec<f64> = Vec::new();
        for (&size, &k) in sizes.iter().zip(counts) {
            let each = if k > 1 {
                size / k as f64 * PIECE_COST
            } else {
                size
            };
            units.extend(std::iter::repeat_n(each, k));
        }
        units.sort_by(|a, b| b.total_cmp(a));
        let mut load = vec![0.0f64; threads];
        for u in units {
            let least = load
                .iter_mut()
                .min_by(|a, b| a.total_cmp(b))
                .expect("threads >= 2");
            *least += u;
        }
        load.into_iter().fold(0.0, f64::max)
    };
    loop {
        // The function with the largest pieces.
        let Some(j) = (0..sizes.len()).max_by(|&a, &b| {
            (sizes[a] / counts[a] as f64).total_cmp(&(sizes[b] / counts[b] as f64))
        }) else {
            return counts;
        };
        let k = counts[j] + 1;
        if k > threads || sizes[j] / (k as f64) < MIN_PIECE_SLOTS as f64 {
            return counts;
        }
        let mut trial = counts.clone();
        trial[j] = k;
        if makespan(&trial) >= 0.9 * makespan(&counts) {
            return counts;
        }
        counts = trial;
    }
}

/// `func` in at most `wanted` pieces of about equal size, each of at least
/// `min_slots` ([`MIN_PIECE_SLOTS`] unless a test says otherwise); fewer
/// (one: the whole function) where there is no cut that no branch goes
/// back across.
pub(crate) fn plan(
    program: &Program,
    func: Function,
    wanted: usize,
    min_slots: usize,
) -> Vec<Piece> {
    let n = func.end - func.start;
    let min_slots = min_slots.max(1);
    let wanted = wanted.min(n / min_slots).max(1);
    if wanted == 1 {
        return vec![Piece::whole(func)];
    }
    let instrs = program.instrs();
    let target = |pc: usize| {
        instrs[pc]
            .branch_target()
            .and_then(|t| usize::try_from(t).ok())
    };
    // The lowest branch target from `pc` onwards: a cut at c is valid when
    // nothing from c on branches below c.
    let mut lowest_from = vec![usize::MAX; n + 1];
    for pc in (func.start..func.end).rev() {
        let k = pc - func.start;
        lowest_from[k] = lowest_from[k + 1].min(target(pc).unwrap_or(usize::MAX));
    }
    // Blocks at or after `c` that code before `c` branches to.
    let entries_from = |c: usize| {
        let mut e: Vec<usize> = (func.start..c)
            .filter_map(target)
            .filter(|&t| t > c)
            .collect();
        e.sort_unstable();
        e.dedup();
        e
    };
    let valid = |c: usize| {
        program.is_block_start(c)
            && instrs[c] != Instr::LddwTail
            && lowest_from[c - func.start] >= c
            && entries_from(c).len() < MAX_ENTRIES
    };
    let mut cuts = Vec::new();
    let mut prev = func.start;
    for i in 1..wanted {
        let ideal = func.start + n * i / wanted;
        let (lo, hi) = (prev + min_slots, func.end - min_slots);
        if lo > hi {
            break;
        }
        let mut near: Vec<usize> = (lo..=hi).collect();
        near.sort_by_key(|&c| c.abs_diff(ideal));
        let Some(c) = near.into_iter().take(CANDIDATES).find(|&c| valid(c)) else {
            continue;
        };
        cuts.push(c);
        prev = c;
    }
    if cuts.is_empty() {
        return vec![Piece::whole(func)];
    }
    let live = live_registers(program, func);
    let mut bounds = vec![func.start];
    bounds.extend(&cuts);
    bounds.push(func.end);
    bounds
        .windows(2)
        .map(|w| {
            let (lo, hi) = (w[0], w[1]);
            let entries = if lo == func.start {
                Vec::new()
            } else {
                let mut e = vec![lo];
                e.extend(entries_from(lo).into_iter().filter(|&t| t < hi));
                e
            };
            Piece {
                func,
                lo,
                hi,
                live: entries.iter().map(|&e| live[e - func.start]).collect(),
                entries,
            }
        })
        .collect()
}

/// Per pc of `func` (relative): the registers r0 to r9 (bit r) that code
/// from there may read before writing them. Over-approximated: a call
/// reads r1 to r5, an atomic r0, and only the register an instruction is
/// known to write counts as written (calls: r0).
fn live_registers(program: &Program, func: Function) -> Vec<u16> {
    let instrs = program.instrs();
    let n = func.end - func.start;
    let reg = |o: &Operand| match *o {
        Operand::Reg(r) => 1u16 << r,
        Operand::Imm(_) => 0,
    };
    let args = 0b11_1110u16;
    let reads = |i: &Instr| -> u16 {
        let r = match i {
            Instr::Alu {
                op: AluOp::Mov,
                src,
                ..
            } => reg(src),
            Instr::Alu { dst, src, .. } | Instr::Jcond { dst, src, .. } => 1 << dst | reg(src),
            Instr::Neg { dst, .. } | Instr::Endian { dst, .. } => 1 << dst,
            Instr::MovSx { src, .. } => 1 << src,
            Instr::Load { base, .. } => 1 << base,
            Instr::Store { base, src, .. } => 1 << base | reg(src),
            Instr::Atomic { base, src, .. } => 1 << base | 1 << src | 1,
            Instr::CallReg { reg } => 1 << reg | args,
            Instr::CallHelper { .. } | Instr::CallLocal { .. } => args,
            Instr::Exit => 1,
            Instr::Lddw { .. } | Instr::LddwTail | Instr::Ja { .. } => 0,
        };
        r & 0x3ff
    };
    let mut live = vec![0u16; n + 1];
    loop {
        let mut changed = false;
        for pc in (func.start..func.end).rev() {
            let i = &instrs[pc];
            if *i == Instr::LddwTail {
                continue;
            }
            let k = pc - func.start;
            let mut out = 0;
            if i.falls_through() {
                out |= live.get(k + i.slots()).copied().unwrap_or(0);
            }
            if let Some(t) = i.branch_target().and_then(|t| usize::try_from(t).ok()) {
                out |= live.get(t.wrapping_sub(func.start)).copied().unwrap_or(0);
            }
            let written = i.written_reg().map_or(0, |r| 1u16 << r);
            let here = reads(i) | (out & !written);
            if here != live[k] {
                live[k] = here;
                changed = true;
            }
        }
        if !changed {
            return live;
        }
    }
}

/// Where a branch from a piece of `pieces` (one function's, in order) to
/// `pc`, past its end, goes: the piece that holds `pc`, and the index of
/// `pc` among its entries (and of its live registers).
pub(crate) fn entry_of(pieces: &[Piece], pc: usize) -> Option<(&Piece, usize)> {
    let p = pieces.iter().find(|p| p.lo <= pc && pc < p.hi)?;
    let k = p.entries.iter().position(|&e| e == pc)?;
    Some((p, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfvm_engine::asm::assemble;
    use bpfvm_engine::verifier::verify;

    fn program(src: &str) -> Program {
        verify(assemble(src).unwrap(), &Default::default()).unwrap()
    }

    fn adds(n: usize) -> String {
        (0..n).map(|k| format!("add %r0, {k}\n")).collect()
    }

    #[test]
    fn straight_code_is_cut_in_the_middle() {
        let p = program(&format!("mov %r0, 0\n{}exit", adds(200)));
        let f = p.functions()[0];
        let pieces = plan(&p, f, 2, MIN_PIECE_SLOTS);
        // One block: no cut.
        assert_eq!(pieces, vec![Piece::whole(f)]);
        // Blocks every 10 slots: a cut near the middle.
        let src: String = (0..30)
            .map(|k| format!("jeq %r1, {k}, b{k}\n{}b{k}:\n", adds(9)))
            .collect();
        let p = program(&format!("mov %r0, 0\n{src}exit"));
        let f = p.functions()[0];
        let pieces = plan(&p, f, 2, MIN_PIECE_SLOTS);
        assert_eq!(pieces.len(), 2);
        let (a, b) = (&pieces[0], &pieces[1]);
        assert_eq!((a.lo, a.hi, b.lo, b.hi), (f.start, b.lo, b.lo, f.end));
        assert!(a.slots().abs_diff(b.slots()) <= 10, "{pieces:?}");
        assert!(a.entries.is_empty());
        // Entered at its start, and where the branch before it goes.
        assert_eq!(b.entries[0], b.lo);
        for &e in &b.entries {
            assert!(p.is_block_start(e));
        }
        assert!(plan(&p, f, 1, MIN_PIECE_SLOTS).len() == 1);
        assert!(plan(&p, f, 3, MIN_PIECE_SLOTS).len() == 3);
    }

    #[test]
    fn only_a_function_that_keeps_one_thread_busy_is_cut() {
        let blocks = |name: &str, n: usize| -> String {
            (0..n)
                .map(|k| format!("jeq %r1, {k}, {name}{k}\n{}{name}{k}:\n", adds(9)))
                .collect()
        };
        // One function of 300 slots: two pieces for two threads.
        let sizes =
            |p: &Program| -> Vec<usize> { p.functions().iter().map(|f| f.end - f.start).collect() };
        let one = sizes(&program(&format!("mov %r0, 0\n{}exit", blocks("a", 30))));
        assert_eq!(piece_counts(&one, 1), vec![1]);
        assert_eq!(piece_counts(&one, 2), vec![2]);
        assert_eq!(piece_counts(&one, 4), vec![4]);
        // Another function of 100 slots keeps the second thread busy.
        let two = sizes(&program(&format!(
            "mov %r0, 0\ncall local f\n{}exit\nf:\nmov %r0, 1\n{}exit",
            blocks("a", 30),
            blocks("b", 10)
        )));
        assert_eq!(piece_counts(&two, 2), vec![1, 1]);
        assert_eq!(piece_counts(&two, 4)[1], 1);
        assert!(piece_counts(&two, 4)[0] >= 2);
    }

    #[test]
    fn loops_are_never_cut() {
        // One loop around everything: no cut.
        let body: String = (0..20)
            .map(|k| format!("jeq %r1, {k}, b{k}\n{}b{k}:\n", adds(9)))
            .collect();
        let p = program(&format!(
            "mov %r0, 0\nmov %r6, 0\ntop:\n{body}add %r6, 1\njlt %r6, 3, top\nexit"
        ));
        let f = p.functions()[0];
        assert_eq!(plan(&p, f, 2, MIN_PIECE_SLOTS), vec![Piece::whole(f)]);
        // A loop in the first half: the cut comes after it.
        let p = program(&format!(
            "mov %r0, 0\nmov %r6, 0\ntop:\n{}add %r6, 1\njlt %r6, 3, top\n{body}exit",
            adds(100)
        ));
        let f = p.functions()[0];
        let pieces = plan(&p, f, 2, MIN_PIECE_SLOTS);
        assert_eq!(pieces.len(), 2);
        let back_edge = 2 + 100 + 1;
        assert!(pieces[1].lo > back_edge, "{pieces:?}");
    }

    #[test]
    fn entries_are_the_targets_of_earlier_pieces() {
        let p = program(&format!(
            "mov %r0, 0\njeq %r1, 1, far\njeq %r1, 2, farther\njeq %r1, 3, mid\n\
             {}mid:\n{}far:\n{}farther:\n{}exit",
            adds(70),
            adds(70),
            adds(70),
            adds(70)
        ));
        let f = p.functions()[0];
        let pieces = plan(&p, f, 3, MIN_PIECE_SLOTS);
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        for (j, piece) in pieces.iter().enumerate().skip(1) {
            for &e in &piece.entries {
                let (q, k) = entry_of(&pieces, e).unwrap();
                assert_eq!((q, q.entries[k]), (piece, e));
            }
            assert_eq!(piece.entries[0], piece.lo, "piece {j}");
        }
        // Every branch target past its piece is an entry of a later one.
        for piece in &pieces {
            for pc in piece.lo..piece.hi {
                if let Some(t) = p.instrs()[pc].branch_target() {
                    let t = t as usize;
                    if t >= piece.hi {
                        assert!(entry_of(&pieces, t).is_some(), "{t} from {pc}");
                    }
                }
            }
        }
    }
}
