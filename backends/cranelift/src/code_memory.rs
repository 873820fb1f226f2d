//! Executable memory for one compiled program: functions laid out in one
//! mapping, relocated, then made read-only and executable. Unmapped on drop.

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
    /// Places `functions` (aligned to `align`) in a new mapping, resolves
    /// calls between them, and makes it executable. Returns the memory and
    /// each function's address, in the order given.
    pub(crate) fn place(
        functions: &[FunctionCode],
        align: usize,
    ) -> Result<(CodeMemory, Vec<usize>), String> {
        let align = align.max(16);
        let mut offsets = Vec::with_capacity(functions.len());
        let mut size = 0usize;
        for f in functions {
            size = size.next_multiple_of(align);
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
