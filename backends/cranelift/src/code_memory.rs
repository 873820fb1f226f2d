//! Executable memory for one compiled program: functions laid out in one
//! mapping, relocated, then made read-only and executable. Unmapped on drop.
//!
//! **Loop alignment.** Cranelift 0.135 does not align blocks, and a tight
//! loop runs at a speed that depends on where its header falls in the
//! 64-byte fetch lines (up to 1.6 times between two builds of the same
//! loop, `fnv1a` in BENCHMARKS.md). Each function is therefore placed so
//! that its innermost loop's header (the target of the shortest back edge
//! in Cranelift's block edges) starts a 64-byte line; the function's own
//! start keeps the alignment its code requires.

use std::collections::{HashMap, HashSet};

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::ir::{ExternalName, UserExternalNameRef};
use cranelift_codegen::FinalizedMachReloc;
use cranelift_codegen::FinalizedRelocTarget;

/// Machine code of one function before placement.
pub(crate) struct FunctionCode {
    /// Index this function is called by (`UserExternalName::index`).
    pub index: u32,
    pub bytes: Vec<u8>,
    pub relocs: Vec<FinalizedMachReloc>,
    /// The functions it calls: its name references and their indices.
    pub callees: Vec<(UserExternalNameRef, u32)>,
    /// Alignment its start needs (constants, the ISA's minimum).
    pub alignment: u32,
    /// Offset of the loop header to align, if it has a loop.
    pub loop_header: Option<u32>,
}

/// Line size loop headers are aligned to.
const LOOP_ALIGN: usize = 64;

/// The header of the innermost loop of a function, from Cranelift's block
/// edges `(from, to)` (block start offsets; the entry block starts at 0):
/// the target of the shortest back edge, a back edge being one whose
/// target dominates its source. Edges from the cold blocks that Cranelift
/// puts at the end back to the code after a check go backwards in the
/// layout too, but their target does not dominate them (the check does).
pub(crate) fn innermost_loop_header(edges: &[(u32, u32)]) -> Option<u32> {
    let dom = Dominators::new(edges);
    edges
        .iter()
        .filter(|&&(from, to)| to <= from && dom.dominates(to, from))
        .min_by_key(|&&(from, to)| (from - to, to))
        .map(|&(_, to)| to)
}

/// Immediate dominators of the blocks reachable from offset 0 (Cooper,
/// Harvey and Kennedy's iterative algorithm over reverse postorder).
struct Dominators {
    /// Each block's position in reverse postorder (the entry's is 0).
    position: HashMap<u32, usize>,
    /// Immediate dominator of each block, by position.
    idom: Vec<usize>,
}

impl Dominators {
    fn new(edges: &[(u32, u32)]) -> Dominators {
        let mut succs: HashMap<u32, Vec<u32>> = HashMap::new();
        for &(from, to) in edges {
            succs.entry(from).or_default().push(to);
        }
        // Depth-first postorder from the entry, without recursion.
        let mut post = Vec::new();
        let mut seen = HashSet::from([0u32]);
        let mut stack = vec![(0u32, 0usize)];
        while let Some((block, next)) = stack.pop() {
            let out = succs.get(&block).map_or(&[][..], |v| &v[..]);
            if let Some(&s) = out.get(next) {
                stack.push((block, next + 1));
                if seen.insert(s) {
                    stack.push((s, 0));
                }
            } else {
                post.push(block);
            }
        }
        let order: Vec<u32> = post.into_iter().rev().collect();
        let position: HashMap<u32, usize> =
            order.iter().enumerate().map(|(i, &b)| (b, i)).collect();
        let mut preds: Vec<Vec<usize>> = vec![Vec::new(); order.len()];
        for &(from, to) in edges {
            if let (Some(&f), Some(&t)) = (position.get(&from), position.get(&to)) {
                preds[t].push(f);
            }
        }
        const NONE: usize = usize::MAX;
        let mut idom = vec![NONE; order.len()];
        if !order.is_empty() {
            idom[0] = 0;
        }
        let mut changed = true;
        while changed {
            changed = false;
            for b in 1..order.len() {
                let mut new = NONE;
                for &p in &preds[b] {
                    if idom[p] == NONE {
                        continue;
                    }
                    new = if new == NONE {
                        p
                    } else {
                        let (mut x, mut y) = (p, new);
                        while x != y {
                            while x > y {
                                x = idom[x];
                            }
                            while y > x {
                                y = idom[y];
                            }
                        }
                        x
                    };
                }
                if new != NONE && idom[b] != new {
                    idom[b] = new;
                    changed = true;
                }
            }
        }
        Dominators { position, idom }
    }

    /// Whether block `a` dominates block `b` (both reachable).
    fn dominates(&self, a: u32, b: u32) -> bool {
        let (Some(&a), Some(&(mut b))) = (self.position.get(&a), self.position.get(&b)) else {
            return false;
        };
        loop {
            if a == b {
                return true;
            }
            if b == 0 || self.idom[b] == usize::MAX {
                return false;
            }
            b = self.idom[b];
        }
    }
}

/// The offset at or after `at` where a function may start (a multiple of
/// `alignment`) so that its `header` falls as far into a 64-byte line
/// boundary as `alignment` allows: on the boundary when it can.
fn start_for(at: usize, alignment: usize, header: Option<u32>) -> usize {
    let alignment = alignment.max(1);
    let first = at.next_multiple_of(alignment);
    if alignment >= LOOP_ALIGN {
        // The header's place in a line is fixed by the function's own.
        return first;
    }
    let Some(header) = header else {
        return first.next_multiple_of(16.max(alignment));
    };
    (0..LOOP_ALIGN / alignment)
        .map(|k| first + k * alignment)
        .max_by_key(|start| {
            let pos = start + header as usize;
            // Trailing zeros of the header's address, up to the line size;
            // the earliest start wins among equals.
            (
                pos.trailing_zeros().min(LOOP_ALIGN.trailing_zeros()),
                usize::MAX - start,
            )
        })
        .unwrap_or(first)
}

/// A mapping holding a program's machine code.
pub(crate) struct CodeMemory {
    ptr: *mut u8,
    len: usize,
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `place`, and
        // the owner guarantees no code in it is running.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

impl CodeMemory {
    /// Places `functions` in a new mapping (each at its alignment, with its
    /// loop header on a 64-byte line), resolves calls between them, and
    /// makes it executable. Returns the memory and each function's address,
    /// in the order given. The mapping starts on a page, so offsets in it
    /// align as addresses do.
    pub(crate) fn place(functions: &[FunctionCode]) -> Result<(CodeMemory, Vec<usize>), String> {
        let mut offsets = Vec::with_capacity(functions.len());
        let mut size = 0usize;
        for f in functions {
            size = start_for(size, f.alignment as usize, f.loop_header);
            offsets.push(size);
            size += f.bytes.len();
        }
        let len = size.max(1).next_multiple_of(page_size());
        // SAFETY: an anonymous private mapping with no address hint.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {len} bytes failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mem = CodeMemory {
            ptr: ptr.cast(),
            len,
        };
        let base = mem.ptr as usize;
        for (f, &off) in functions.iter().zip(&offsets) {
            // SAFETY: `off + bytes.len() <= size <= len`, inside the mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(f.bytes.as_ptr(), mem.ptr.add(off), f.bytes.len())
            };
        }
        for (f, &off) in functions.iter().zip(&offsets) {
            for r in &f.relocs {
                let target = match &r.target {
                    FinalizedRelocTarget::Func(o) => base + off + *o as usize,
                    FinalizedRelocTarget::ExternalName(ExternalName::User(name)) => {
                        let idx = f
                            .callee_index(*name)
                            .ok_or_else(|| format!("call to an undeclared function {name:?}"))?;
                        let k = functions
                            .iter()
                            .position(|g| g.index == idx)
                            .ok_or_else(|| {
                                format!("call to function {idx}, which was not compiled")
                            })?;
                        base + offsets[k]
                    }
                    other => return Err(format!("unsupported relocation target {other:?}")),
                };
                let at = off + r.offset as usize;
                let value = (target as i64).wrapping_add(r.addend);
                match r.kind {
                    Reloc::Abs8 if at + 8 <= size => {
                        // SAFETY: in bounds (checked), the mapping is writable.
                        unsafe { (mem.ptr.add(at) as *mut u64).write_unaligned(value as u64) }
                    }
                    Reloc::X86PCRel4 | Reloc::X86CallPCRel4 if at + 4 <= size => {
                        let rel = value - (base + at) as i64;
                        let rel = i32::try_from(rel)
                            .map_err(|_| "call displacement out of range".to_string())?;
                        // SAFETY: in bounds (checked), the mapping is writable.
                        unsafe { (mem.ptr.add(at) as *mut i32).write_unaligned(rel) }
                    }
                    kind => return Err(format!("unsupported relocation {kind:?} at offset {at}")),
                }
            }
        }
        // SAFETY: the mapping made above; from now on it is never written.
        if unsafe { libc::mprotect(mem.ptr.cast(), len, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
            return Err(format!(
                "mprotect failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok((mem, offsets.iter().map(|o| base + o).collect()))
    }
}

impl FunctionCode {
    /// The index of the function a user external name refers to.
    fn callee_index(&self, name: UserExternalNameRef) -> Option<u32> {
        self.callees
            .iter()
            .find(|(r, _)| *r == name)
            .map(|(_, i)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_back_edge_names_the_loop_header() {
        // 0 -> 8 (outer header) -> 16 (inner header) -> 24 (a check) ->
        // 30 (ok) -> 16 (inner latch) | 40 -> 8 (outer latch) | 48 (exit);
        // the check's cold block at 200 jumps back to 30, a shorter
        // backwards edge than the inner loop's, but not a back edge.
        let edges = [
            (0, 8),
            (8, 16),
            (16, 24),
            (24, 30),
            (24, 200),
            (200, 30),
            (30, 16),
            (30, 40),
            (40, 8),
            (40, 48),
        ];
        assert_eq!(innermost_loop_header(&edges), Some(16));
        // Without loops, only cold blocks jumping back: none.
        assert_eq!(
            innermost_loop_header(&[(0, 8), (0, 100), (100, 8), (8, 16)]),
            None
        );
        // A one-block loop.
        assert_eq!(
            innermost_loop_header(&[(0, 12), (12, 12), (12, 40)]),
            Some(12)
        );
        // An unreachable edge never counts.
        assert_eq!(innermost_loop_header(&[(0, 8), (90, 80), (80, 90)]), None);
    }

    #[test]
    fn functions_start_so_that_their_loop_header_starts_a_line() {
        for at in [0usize, 1, 17, 100, 4095] {
            for header in [0u32, 5, 37, 64, 200] {
                let s = start_for(at, 1, Some(header));
                assert!(s >= at && s < at + 64);
                assert_eq!((s + header as usize) % 64, 0, "at {at} header {header}");
                // A function that needs 16-byte alignment keeps it; its
                // header lands as well as that allows.
                let s = start_for(at, 16, Some(header));
                assert_eq!(s % 16, 0);
                assert_eq!((s + header as usize) % 16, header as usize % 16);
                if header % 16 == 0 {
                    assert_eq!((s + header as usize) % 64, 0);
                }
            }
        }
        // No loop: 16-byte aligned.
        assert_eq!(start_for(17, 1, None), 32);
        assert_eq!(start_for(0, 1, None), 0);
        // Alignment above a line is kept.
        assert_eq!(start_for(65, 128, Some(5)), 128);
    }
}
