//! A zeroed, 8-byte aligned block of memory at a fixed address, shared
//! between the host and running programs (map values, ring buffers).
//!
//! Programs read and write it through raw pointers while the host may copy
//! in and out: the host's copies go byte by byte through relaxed atomics, so
//! that a race with a program is a torn value (as in the kernel), never
//! undefined behaviour on the host's side.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

/// Alignment of every slab (and so of array and hash values).
pub(crate) const SLAB_ALIGN: usize = 8;

pub(crate) struct Slab {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: the slab is plain memory; every host access goes through atomics.
unsafe impl Send for Slab {}
// SAFETY: as above.
unsafe impl Sync for Slab {}

impl Slab {
    /// Allocates `len` zeroed bytes; `None` when the allocation fails.
    pub fn zeroed(len: usize) -> Option<Slab> {
        let layout = Layout::from_size_align(len.max(SLAB_ALIGN), SLAB_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        Some(Slab {
            ptr: NonNull::new(ptr)?,
            len,
            layout,
        })
    }

    /// The address of the first byte.
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether `[addr, addr + n)` lies in the slab; the offset if so.
    pub fn offset_of(&self, addr: u64, n: usize) -> Option<usize> {
        let off = usize::try_from(addr.checked_sub(self.addr())?).ok()?;
        (off.checked_add(n)? <= self.len).then_some(off)
    }

    fn byte(&self, off: usize) -> &AtomicU8 {
        // SAFETY: callers check `off < len`; `AtomicU8` has the size and
        // alignment of `u8`, and all host accesses to the slab are atomic.
        unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(off)) }
    }

    /// Copies `n` bytes out from `off` (`None` when out of range).
    pub fn read(&self, off: usize, n: usize) -> Option<Vec<u8>> {
        if off.checked_add(n)? > self.len {
            return None;
        }
        Some(
            (off..off + n)
                .map(|i| self.byte(i).load(Ordering::Relaxed))
                .collect(),
        )
    }

    /// Copies `bytes` in at `off` (`false` when out of range).
    pub fn write(&self, off: usize, bytes: &[u8]) -> bool {
        if off.checked_add(bytes.len()).is_none_or(|e| e > self.len) {
            return false;
        }
        for (i, b) in bytes.iter().enumerate() {
            self.byte(off + i).store(*b, Ordering::Relaxed);
        }
        true
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let s = Slab::zeroed(16).unwrap();
        assert_eq!(s.addr() % 8, 0);
        assert!(s.write(8, &[1, 2, 3]));
        assert_eq!(s.read(8, 3).unwrap(), vec![1, 2, 3]);
        assert!(!s.write(15, &[1, 2]));
        assert!(s.read(10, 7).is_none());
        assert!(s.read(usize::MAX, 2).is_none());
        assert_eq!(s.offset_of(s.addr() + 4, 12), Some(4));
        assert_eq!(s.offset_of(s.addr() + 4, 13), None);
        assert_eq!(s.offset_of(s.addr() - 1, 1), None);
        let empty = Slab::zeroed(0).unwrap();
        assert_eq!(empty.len(), 0);
        assert!(empty.read(0, 0).unwrap().is_empty());
    }
}
