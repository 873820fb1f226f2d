//! Executable memory for one compiled program: functions laid out in one
//! mapping, relocated, then made read-only and executable.
//!
//! A dropped program's mapping is made writable (never executable) again
//! and kept, up to [`POOL_BYTES`] in all, for the next compile that needs
//! the same number of pages: a small program's compile then costs one
//! `mprotect` instead of an `mmap`, its page faults and a `munmap`, which
//! was a fifth of tier 0's compile time for the smallest programs.
//!
//! Each mapping has an inaccessible guard page on either side. Without
//! them the kernel merges a mapping with its neighbours of the same
//! protection (another program's code, other anonymous memory), and every
//! `mprotect` then splits and re-merges those areas: a pair of
//! `mprotect`s of one page cost 3.9 µs instead of 1.5 µs (BENCHMARKS.md,
//! session 12). The guards also turn a jump or a read just past the code
//! into a fault rather than into someone else's memory.

use std::sync::Mutex;

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
    /// The alignment its code needs (its constants'), in bytes.
    pub alignment: u32,
    /// Offset of its hottest loop's header, to be placed at the start
    /// of a [`LOOP_ALIGN`]-byte line.
    pub loop_header: Option<u32>,
    /// Whether it calls a trampoline that may abandon the run (see
    /// [`crate::abort`]).
    pub may_abort: bool,
}

/// Loop headers are placed at multiples of this, the size of a cache line
/// (and of an op-cache line on current x86 cores): a loop of up to 64
/// bytes is then one line. 32 measured the same (BENCHMARKS.md, session
/// 8); 64 also keeps larger loops on the fewest lines.
pub(crate) const LOOP_ALIGN: usize = 64;

/// A mapping holding a program's machine code: `len` bytes at `ptr`,
/// between two guard pages (the whole reservation is `len` plus two
/// pages, from `ptr` minus one page).
pub(crate) struct CodeMemory {
    ptr: *mut u8,
    len: usize,
}

/// Most bytes of writable mappings kept for reuse.
const POOL_BYTES: usize = 4 << 20;

/// Mappings of dropped programs, writable, by address and length.
static POOL: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

fn pool() -> std::sync::MutexGuard<'static, Vec<(usize, usize)>> {
    // The pool holds plain numbers: a panic elsewhere cannot leave it
    // inconsistent.
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A pooled writable mapping of exactly `len` bytes, if there is one.
fn take_pooled(len: usize) -> Option<*mut u8> {
    let mut pool = pool();
    let k = pool.iter().position(|&(_, l)| l == len)?;
    Some(pool.swap_remove(k).0 as *mut u8)
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        let (ptr, len) = (self.ptr, self.len);
        // SAFETY: `ptr`/`len` are exactly the mapping made in `place`, and
        // the owner guarantees no code in it is running.
        let writable =
            unsafe { libc::mprotect(ptr.cast(), len, libc::PROT_READ | libc::PROT_WRITE) } == 0;
        if writable {
            let mut pool = pool();
            let held: usize = pool.iter().map(|&(_, l)| l).sum();
            if held + len <= POOL_BYTES {
                pool.push((ptr as usize, len));
                return;
            }
        }
        let page = page_size();
        // SAFETY: as above, with its guard pages; nothing refers to the
        // reservation any more.
        unsafe { libc::munmap(ptr.sub(page).cast(), len + 2 * page) };
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
    /// A new writable mapping of `len` bytes (a multiple of the page
    /// size) between two inaccessible guard pages.
    fn map(len: usize) -> Result<CodeMemory, String> {
        let page = page_size();
        let total = len + 2 * page;
        // SAFETY: an anonymous private reservation with no address hint.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {total} bytes failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `page + len <= total`: inside the reservation.
        let ptr = unsafe { base.cast::<u8>().add(page) };
        // SAFETY: the pages between the guards, in the reservation above.
        let rw = unsafe { libc::mprotect(ptr.cast(), len, libc::PROT_READ | libc::PROT_WRITE) };
        if rw != 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: the reservation made above, not used by anything.
            unsafe { libc::munmap(base, total) };
            return Err(format!("mprotect of {len} bytes failed: {e}"));
        }
        Ok(CodeMemory { ptr, len })
    }

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
            size = f.start_after(size, align);
            offsets.push(size);
            size += f.bytes.len();
        }
        let len = size.max(1).next_multiple_of(page_size());
        let mem = match take_pooled(len) {
            Some(ptr) => {
                // A dropped program's code: overwrite it all with `int3`,
                // so that no stale instruction survives in the gaps.
                // SAFETY: a writable mapping of `len` bytes, owned from now.
                unsafe { std::ptr::write_bytes(ptr, 0xcc, len) };
                CodeMemory { ptr, len }
            }
            None => CodeMemory::map(len)?,
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
    /// Where this function starts when placed after `end`: so that its
    /// loop header, if it has one, starts a [`LOOP_ALIGN`]-byte line (or
    /// is as near the start as the function's own alignment allows); else
    /// at the next multiple of `align`.
    fn start_after(&self, end: usize, align: usize) -> usize {
        let needed = (self.alignment as usize).max(1);
        match self.loop_header {
            Some(h) if needed <= LOOP_ALIGN => {
                // The header goes to the start of a line, or as near it as
                // the function's own alignment lets it.
                let start = end.next_multiple_of(needed);
                let want = h as usize % needed;
                start + (LOOP_ALIGN + want - (start + h as usize) % LOOP_ALIGN) % LOOP_ALIGN
            }
            _ => end.next_multiple_of(align.max(needed)),
        }
    }

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

    /// One function of `n` bytes of `byte`; sizes of a few pages that
    /// nothing else in this crate's tests maps, so that the trampoline's
    /// mapping cannot take these from the pool while they run.
    fn function(byte: u8, n: usize) -> FunctionCode {
        FunctionCode {
            index: 0,
            bytes: vec![byte; n],
            relocs: Vec::new(),
            callees: Vec::new(),
            alignment: 1,
            loop_header: None,
            may_abort: false,
        }
    }

    /// The protection `/proc/self/maps` shows for the page at `addr`.
    fn protection_at(addr: usize) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            let (lo, hi) = fields.next()?.split_once('-')?;
            let lo = usize::from_str_radix(lo, 16).ok()?;
            let hi = usize::from_str_radix(hi, 16).ok()?;
            (lo <= addr && addr < hi).then(|| fields.next().unwrap_or("").to_string())
        })
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn code_lies_between_inaccessible_guard_pages() {
        let n = 7 * 4096 - 300;
        let (mem, _) = CodeMemory::place(&[function(0xc3, n)], 16).unwrap();
        let (lo, hi) = (mem.ptr as usize, mem.ptr as usize + mem.len);
        let page = page_size();
        assert_eq!(protection_at(lo).as_deref(), Some("r-xp"));
        assert_eq!(protection_at(hi - 1).as_deref(), Some("r-xp"));
        assert_eq!(protection_at(lo - 1).as_deref(), Some("---p"));
        assert_eq!(protection_at(hi).as_deref(), Some("---p"));
        assert_eq!(protection_at(hi + page - 1).as_deref(), Some("---p"));
        drop(mem);
        // Pooled (unless a test running beside this one filled the pool,
        // and then unmapped): writable, still between its guards.
        if protection_at(lo).as_deref() == Some("rw-p") {
            assert_eq!(protection_at(lo - 1).as_deref(), Some("---p"));
            assert_eq!(protection_at(hi).as_deref(), Some("---p"));
        }
    }

    #[test]
    fn dropped_mappings_are_reused_scrubbed_and_the_pool_is_bounded() {
        let (old, _) = CodeMemory::place(&[function(0x90, 5 * 4096 - 100)], 16).unwrap();
        let (ptr, len) = (old.ptr as usize, old.len);
        drop(old);
        let (new, addrs) = CodeMemory::place(&[function(0xc3, 5 * 4096 - 200)], 16).unwrap();
        assert_eq!(
            (new.ptr as usize, new.len),
            (ptr, len),
            "the pooled mapping"
        );
        assert_eq!(addrs, vec![ptr]);
        // SAFETY: the mapping is readable and `len` bytes long.
        let bytes = unsafe { std::slice::from_raw_parts(new.ptr, len) };
        let code = 5 * 4096 - 200;
        assert!(bytes[..code].iter().all(|&b| b == 0xc3));
        assert!(
            bytes[code..].iter().all(|&b| b == 0xcc),
            "the old code's tail must be overwritten"
        );
        drop(new);

        // (In the same test: filling the pool would make the reuse above
        // fail if both ran at once.)
        let n = 3 * 4096 - 8;
        let held: Vec<_> = (0..2 * POOL_BYTES / (3 * 4096))
            .map(|_| CodeMemory::place(&[function(0xc3, n)], 16).unwrap().0)
            .collect();
        drop(held);
        let pooled: usize = pool().iter().map(|&(_, l)| l).sum();
        assert!(pooled <= POOL_BYTES, "{pooled} bytes pooled");
    }
}
