//! A verified program: what every executor compiles or interprets.

use crate::backend::ArrayMapLayout;
use crate::instr::{Instr, MemSize};

/// The kernel's id of `bpf_map_lookup_elem`, whose array-map lookups the
/// JITs may inline.
pub const MAP_LOOKUP_ELEM: u32 = 1;
use crate::isa::{Insn, FRAME_POINTER, STACK_FRAME_SIZE};

/// A function (subprogram): the slots `[start, end)`. Function 0 starts at pc 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    pub start: usize,
    pub end: usize,
}

/// Whether an access through r10 stays in the current frame whatever the
/// run: r10 is read-only, so `[r10 + off, r10 + off + size)` within
/// `[r10 - 512, r10)` needs no check in any tier.
pub fn statically_in_frame(base: u8, off: i16, size: MemSize) -> bool {
    base == FRAME_POINTER
        && off as i64 >= -(STACK_FRAME_SIZE as i64)
        && off as i64 + size.bytes() as i64 <= 0
}

/// What a function's code needs from the run, so that a JIT loads it once
/// in the function's entry block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionNeeds {
    /// Per access size (`MemSize::index`): some access of that size needs
    /// a run-time check (only in checked mode).
    pub checked_sizes: [bool; 4],
    pub local_calls: bool,
    pub helper_calls: bool,
}

/// A program that passed the verifier. Only [`crate::verifier::verify`] makes one.
///
/// Basic blocks are shared by every tier so that the instruction budget is
/// charged identically: a block starts at pc 0, at each function entry, at
/// each jump target and after each jump or exit. Entering a block charges
/// its instruction count (a `lddw` counts once); when fewer instructions are
/// left than the block needs, the run traps at the block's first pc with the
/// budget unchanged.
#[derive(Clone, Debug)]
pub struct Program {
    insns: Vec<Insn>,
    instrs: Vec<Instr>,
    functions: Vec<Function>,
    /// For each slot: the instruction count of the block starting there, or 0
    /// when the slot does not start a block.
    block_cost: Vec<u32>,
}

impl Program {
    pub(crate) fn new(insns: Vec<Insn>, instrs: Vec<Instr>, functions: Vec<Function>) -> Program {
        let block_cost = block_costs(&instrs, &functions);
        Program {
            insns,
            instrs,
            functions,
            block_cost,
        }
    }

    /// The raw slots as loaded.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// The decoded instructions, one per slot (`Instr::LddwTail` for the
    /// second slot of a `lddw`), with `lddw` pseudo values resolved.
    pub fn instrs(&self) -> &[Instr] {
        &self.instrs
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The functions, sorted by start; the first is the entry.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// The function that contains `pc`.
    pub fn function_of(&self, pc: usize) -> Option<&Function> {
        let k = self.functions.partition_point(|f| f.start <= pc);
        self.functions.get(k.checked_sub(1)?)
    }

    /// The most stack frames a run can have at once: the entry's, plus the
    /// deepest nesting of `call local` from it. `None` when that has no
    /// bound here: a function that a chain of calls reaches again
    /// (recursion, bounded only by the call-depth limit).
    pub fn max_frames(&self) -> Option<usize> {
        // Per function: 0 unvisited, 1 on the current path, 2 done.
        let n = self.functions.len();
        let mut state = vec![0u8; n];
        let mut depth = vec![1usize; n];
        let index = |start: usize| {
            self.functions
                .binary_search_by_key(&start, |f| f.start)
                .ok()
        };
        // Depth-first, without recursion: (function, next pc to scan).
        let mut path = vec![(0usize, self.functions.first()?.start)];
        state[0] = 1;
        while let Some(&mut (f, ref mut pc)) = path.last_mut() {
            let end = self.functions[f].end;
            let callee = (*pc..end).find_map(|p| match self.instrs[p] {
                Instr::CallLocal { target } => Some((p, target as usize)),
                _ => None,
            });
            match callee {
                Some((p, target)) => {
                    *pc = p + 1;
                    let g = index(target)?;
                    match state[g] {
                        1 => return None,
                        2 => depth[f] = depth[f].max(1 + depth[g]),
                        _ => {
                            state[g] = 1;
                            path.push((g, self.functions[g].start));
                        }
                    }
                }
                None => {
                    state[f] = 2;
                    path.pop();
                    if let Some(&(caller, _)) = path.last() {
                        depth[caller] = depth[caller].max(1 + depth[f]);
                    }
                }
            }
        }
        Some(depth[0])
    }

    /// The bytes at the top of the stack area that a run may leave
    /// written, besides what helpers record (`Stack::clear_top`).
    ///
    /// A function reaches only its own frame and its callers', so a run
    /// writes at most as many frames as calls nest ([`Program::max_frames`]),
    /// all of the `call_depth` with recursion. When every store and atomic
    /// of the program goes through r10 itself, less: the r10 of a function
    /// at nesting depth `d` is `d * 512` bytes below the top, so nothing
    /// lower than `(max_frames - 1) * 512` bytes plus the most negative of
    /// those accesses' offsets is written (nothing at all by a program
    /// that neither stores nor calls). An access below its own frame traps
    /// instead of writing, and one above it lands in a caller's frame,
    /// which the bound covers. Checked code cannot reach further;
    /// unchecked code is trusted to make only the accesses checked code
    /// would allow (a program that does not is outside that mode's
    /// contract, and could write any memory, not just the stack).
    pub fn stack_bytes_written(&self, call_depth: usize) -> usize {
        let frames = self.max_frames().map_or(call_depth, |n| n.min(call_depth));
        let all = frames * STACK_FRAME_SIZE;
        let mut lowest = 0i64;
        for i in &self.instrs {
            match *i {
                Instr::Store { base, off, .. } | Instr::Atomic { base, off, .. } => {
                    if base != FRAME_POINTER {
                        return all;
                    }
                    lowest = lowest.min(off.into());
                }
                _ => {}
            }
        }
        let below = frames.saturating_sub(1) * STACK_FRAME_SIZE;
        (below + lowest.unsigned_abs() as usize).min(all)
    }

    /// Whether `pc` starts a basic block.
    /// The array map a `call 1` (`map_lookup_elem`) at `pc` looks up, when
    /// a JIT may inline it: the map is one of `maps` (see
    /// [`crate::backend::CompileOptions::array_maps`]) and r1 holds its
    /// handle for certain, set by an `lddw r1` earlier in the same basic
    /// block with no other write to r1 and no call in between.
    pub fn inlinable_lookup(
        &self,
        f: &Function,
        pc: usize,
        maps: &[ArrayMapLayout],
    ) -> Option<ArrayMapLayout> {
        if maps.is_empty()
            || self.instrs[pc]
                != (Instr::CallHelper {
                    id: MAP_LOOKUP_ELEM,
                })
        {
            return None;
        }
        let mut p = pc;
        let handle = loop {
            if p <= f.start || self.is_block_start(p) {
                return None;
            }
            p -= 1;
            match self.instrs[p] {
                Instr::LddwTail => {}
                Instr::Lddw { dst: 1, value, .. } => break value,
                Instr::CallHelper { .. } | Instr::CallLocal { .. } | Instr::CallReg { .. } => {
                    return None
                }
                ins if ins.written_reg() == Some(1) => return None,
                _ => {}
            }
        };
        maps.iter().find(|m| m.handle == handle).copied()
    }

    pub fn is_block_start(&self, pc: usize) -> bool {
        self.block_cost.get(pc).is_some_and(|&c| c > 0)
    }

    /// Instruction count of the block starting at `pc` (0 if none starts there).
    pub fn block_cost(&self, pc: usize) -> u32 {
        self.block_cost.get(pc).copied().unwrap_or(0)
    }

    /// What the code of `f` needs from the run (see [`FunctionNeeds`]).
    pub fn needs(&self, f: &Function, checked: bool) -> FunctionNeeds {
        let mut n = FunctionNeeds::default();
        for ins in &self.instrs[f.start..f.end] {
            match *ins {
                Instr::Load {
                    size, base, off, ..
                }
                | Instr::Store {
                    size, base, off, ..
                }
                | Instr::Atomic {
                    size, base, off, ..
                } if checked && !statically_in_frame(base, off, size) => {
                    n.checked_sizes[size.index()] = true;
                }
                Instr::CallLocal { .. } => n.local_calls = true,
                Instr::CallHelper { .. } | Instr::CallReg { .. } => n.helper_calls = true,
                _ => {}
            }
        }
        n
    }

    /// The bytecode.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::isa::encode_program(&self.insns)
    }
}

fn block_costs(instrs: &[Instr], functions: &[Function]) -> Vec<u32> {
    let n = instrs.len();
    let mut leader = vec![false; n];
    for f in functions {
        leader[f.start] = true;
    }
    for (pc, ins) in instrs.iter().enumerate() {
        if let Some(t) = ins.branch_target() {
            leader[t as usize] = true;
        }
        if matches!(ins, Instr::Ja { .. } | Instr::Jcond { .. } | Instr::Exit) && pc + 1 < n {
            leader[pc + 1] = true;
        }
    }
    let mut cost = vec![0u32; n];
    let mut pc = 0;
    while pc < n {
        if !leader[pc] {
            pc += 1;
            continue;
        }
        let start = pc;
        let mut count = 0u32;
        loop {
            let ins = &instrs[pc];
            count += 1;
            pc += ins.slots();
            let ends = matches!(ins, Instr::Ja { .. } | Instr::Jcond { .. } | Instr::Exit);
            if ends || pc >= n || leader[pc] {
                break;
            }
        }
        cost[start] = count;
    }
    cost
}

#[cfg(test)]
mod tests {
    use crate::asm::assemble;
    use crate::verifier::{verify, VerifyOptions};

    fn frames(src: &str) -> Option<usize> {
        verify(assemble(src).unwrap(), &VerifyOptions::default())
            .unwrap()
            .max_frames()
    }

    #[test]
    fn max_frames_is_the_deepest_chain_of_calls() {
        assert_eq!(frames("mov %r0, 0\nexit"), Some(1));
        // main -> a -> b, and main -> b.
        let chain =
            "call local a\ncall local b\nexit\na:\ncall local b\nexit\nb:\nmov %r0, 1\nexit";
        assert_eq!(frames(chain), Some(3));
        // Two callees side by side: two frames at most.
        let side = "call local a\ncall local b\nexit\na:\nexit\nb:\nexit";
        assert_eq!(frames(side), Some(2));
        // Recursion: no bound but the call-depth limit.
        let rec = "call local a\nexit\na:\njeq %r1, 0, +1\ncall local a\nexit";
        assert_eq!(frames(rec), None);
        let back = "start:\njeq %r1, 0, +1\ncall local start\nexit";
        assert_eq!(frames(back), None);
    }

    fn dirty(src: &str, call_depth: usize) -> usize {
        verify(assemble(src).unwrap(), &VerifyOptions::default())
            .unwrap()
            .stack_bytes_written(call_depth)
    }

    #[test]
    fn stack_bytes_written_reach_the_lowest_store_through_r10() {
        // No store and no call: nothing.
        assert_eq!(dirty("ldxdw %r0, [%r10-8]\nexit", 8), 0);
        // The lowest offset of stores and atomics through r10, whatever
        // their order or size.
        let src = "stxdw [%r10-8], %r1\nstb [%r10-300], 1\nstxw [%r10-16], %r1\nexit";
        assert_eq!(dirty(src, 8), 300);
        let src = "mov %r1, 1\nstxdw [%r10-8], %r1\nlock add [%r10-40], %r1\nmov %r0, 0\nexit";
        assert_eq!(dirty(src, 8), 40);
        // A callee's r10 is 512 bytes lower per level of nesting.
        let src = "call local a\nexit\na:\ncall local b\nexit\nb:\nstdw [%r10-8], 1\nexit";
        assert_eq!(dirty(src, 8), 2 * 512 + 8);
        // Calls and no store: the callees' frames are not written.
        assert_eq!(dirty("call local a\nexit\na:\nexit", 8), 512);
        // A store through any other register may reach any of the frames.
        let src = "mov %r1, %r10\nadd %r1, -8\nstdw [%r1+0], 1\nexit";
        assert_eq!(dirty(src, 8), 512);
        let src = "call local a\nexit\na:\nmov %r1, %r10\nstdw [%r1-8], 1\nexit";
        assert_eq!(dirty(src, 8), 2 * 512);
        // Recursion: as deep as the call depth allows.
        let rec = "call local a\nexit\na:\njeq %r1, 0, +1\ncall local a\nstdw [%r10-8], 1\nexit";
        assert_eq!(dirty(rec, 8), 7 * 512 + 8);
        assert_eq!(dirty(rec, 3), 2 * 512 + 8);
        let rec = "call local a\nexit\na:\njeq %r1, 0, +2\ncall local a\nmov %r1, %r10\nstdw [%r1-8], 1\nexit";
        assert_eq!(dirty(rec, 8), 8 * 512);
        // Never more than the frames: a store below its frame traps.
        assert_eq!(dirty("stdw [%r10-600], 1\nexit", 8), 512);
        // Nor deeper than the call depth allows: with two frames, b's call
        // traps.
        let src = "call local a\nexit\na:\ncall local b\nexit\nb:\nstdw [%r10-8], 1\nexit";
        assert_eq!(dirty(src, 2), 512 + 8);
    }
}
