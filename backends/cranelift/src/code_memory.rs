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

/// The header of the innermost loop of a function: the target of its
/// shortest back edge (`to <= from`, block start offsets). Edges into a
/// block laid out earlier also come from cold blocks, which Cranelift puts
/// at the end; they are long and lose to a real loop's back edge.
pub(crate) fn innermost_loop_header(edges: &[(u32, u32)]) -> Option<u32> {
    edges
        .iter()
        .filter(|(from, to)| to <= from)
        .min_by_key(|(from, to)| (from - to, *to))
        .map(|&(_, to)| to)
}

/// The offset at or after `at` where a function may start (a multiple of
/// `alignment`) so that its `header` falls as far into a 64-byte line
/// boundary as `alignment` allows: on the boundary when it can.
fn start_for(at: usize, alignment: usize, header: Option<u32>) -> usize {
    let alignment = alignment.clamp(1, LOOP_ALIGN);
    let first = at.next_multiple_of(alignment);
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
        // A forward edge, an outer loop 40 -> 8, an inner loop 30 -> 16,
        // a cold block at 200 back to 24.
        let edges = [(0, 8), (40, 8), (30, 16), (200, 24), (16, 30)];
        assert_eq!(innermost_loop_header(&edges), Some(16));
        assert_eq!(innermost_loop_header(&[(0, 8), (8, 16)]), None);
        // A one-block loop.
        assert_eq!(innermost_loop_header(&[(12, 12), (40, 0)]), Some(12));
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
    }
}
