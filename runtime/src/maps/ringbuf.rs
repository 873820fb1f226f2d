//! The ring buffer (`BPF_MAP_TYPE_RINGBUF`) and its reader for the host.
//!
//! Programs reserve records in a slab of twice the buffer's size (so that a
//! record never wraps: positions are taken modulo the size, and a record
//! starting near the end runs into the second half), fill them in place,
//! then submit or discard them. Submitted records become readable in
//! reservation order, as with the kernel's ring buffer, and are copied out
//! to a queue the host drains with [`RingBuf::consume`]. A reservation fails
//! (returns NULL) when reserved plus unread bytes, each record rounded up to
//! 8 bytes plus an 8-byte header as in the kernel, would exceed the size.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::slab::Slab;

/// Size of a record's header, as in the kernel.
const HEADER: u64 = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Busy,
    Committed,
    Discarded,
}

struct Pending {
    /// Offset of the record's data in the slab.
    data: u64,
    len: u64,
    /// Bytes it takes in the buffer (header and padding included).
    cost: u64,
    state: State,
}

#[derive(Default)]
struct Inner {
    producer: u64,
    pending: VecDeque<Pending>,
    ready: VecDeque<Vec<u8>>,
    /// Bytes of reserved and of unread records.
    used: u64,
    /// Bytes of each unread record, in `ready` order.
    ready_cost: VecDeque<u64>,
    /// Reservations refused for lack of space.
    dropped: u64,
}

/// A ring buffer map's records.
pub struct RingBuf {
    slab: Slab,
    size: u64,
    inner: Mutex<Inner>,
}

impl RingBuf {
    pub(crate) fn new(slab: Slab, size: u64) -> RingBuf {
        RingBuf {
            slab,
            size,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(crate) fn slab(&self) -> &Slab {
        &self.slab
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The buffer's size in bytes (`max_entries`).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reserves `len` bytes; the address of the record's data, or `None`
    /// when the buffer is full or `len` is 0 or too large.
    pub(crate) fn reserve(&self, len: u64) -> Option<u64> {
        if len == 0 || len > self.size - HEADER {
            return None;
        }
        let cost = (len + HEADER).div_ceil(8) * 8;
        let mut st = self.lock();
        if st.used + cost > self.size {
            st.dropped += 1;
            return None;
        }
        let pos = st.producer % self.size;
        st.producer += cost;
        st.used += cost;
        let data = pos + HEADER;
        st.pending.push_back(Pending {
            data,
            len,
            cost,
            state: State::Busy,
        });
        Some(self.slab.addr() + data)
    }

    /// Commits (or discards) the record whose data is at `addr`; `false`
    /// when no reservation starts there.
    pub(crate) fn finish(&self, addr: u64, commit: bool) -> bool {
        let Some(off) = addr.checked_sub(self.slab.addr()) else {
            return false;
        };
        let mut st = self.lock();
        let Some(p) = st
            .pending
            .iter_mut()
            .find(|p| p.data == off && p.state == State::Busy)
        else {
            return false;
        };
        p.state = if commit {
            State::Committed
        } else {
            State::Discarded
        };
        while st.pending.front().is_some_and(|p| p.state != State::Busy) {
            let Some(p) = st.pending.pop_front() else {
                break;
            };
            match p.state {
                State::Committed => {
                    let rec = self
                        .slab
                        .read(p.data as usize, p.len as usize)
                        .unwrap_or_default();
                    st.ready.push_back(rec);
                    st.ready_cost.push_back(p.cost);
                }
                _ => st.used -= p.cost,
            }
        }
        true
    }

    /// Copies `bytes` into the slab at `addr` (a reservation's data).
    pub(crate) fn fill(&self, addr: u64, bytes: &[u8]) -> bool {
        match self.slab.offset_of(addr, bytes.len()) {
            Some(off) => self.slab.write(off, bytes),
            None => false,
        }
    }

    /// Whether `addr` lies in this ring buffer's memory.
    pub(crate) fn owns(&self, addr: u64) -> bool {
        addr.checked_sub(self.slab.addr())
            .is_some_and(|off| off < 2 * self.size)
    }

    /// Takes every readable record, oldest first.
    pub fn consume(&self) -> Vec<Vec<u8>> {
        let mut st = self.lock();
        let freed: u64 = st.ready_cost.drain(..).sum();
        st.used -= freed;
        st.ready.drain(..).collect()
    }

    /// The readable records, oldest first, without taking them.
    pub fn peek(&self) -> Vec<Vec<u8>> {
        self.lock().ready.iter().cloned().collect()
    }

    /// Number of readable records.
    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reservations refused because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rb(size: u64) -> RingBuf {
        RingBuf::new(Slab::zeroed(2 * size as usize).unwrap(), size)
    }

    fn write(r: &RingBuf, addr: u64, bytes: &[u8]) {
        let off = r.slab.offset_of(addr, bytes.len()).unwrap();
        assert!(r.slab.write(off, bytes));
    }

    #[test]
    fn records_come_out_in_reservation_order() {
        let r = rb(64);
        let a = r.reserve(4).unwrap();
        let b = r.reserve(4).unwrap();
        write(&r, a, b"aaaa");
        write(&r, b, b"bbbb");
        assert!(r.finish(b, true));
        assert!(r.is_empty(), "b waits for a");
        assert!(r.finish(a, true));
        assert_eq!(r.consume(), vec![b"aaaa".to_vec(), b"bbbb".to_vec()]);
        assert!(!r.finish(a, true), "already submitted");
    }

    #[test]
    fn full_buffer_refuses_and_consuming_frees_space() {
        let r = rb(32);
        let a = r.reserve(8).unwrap(); // 16 bytes
        let b = r.reserve(8).unwrap(); // 32
        assert_eq!(r.reserve(1), None);
        assert_eq!(r.dropped(), 1);
        r.finish(a, false);
        let c = r.reserve(8).unwrap();
        r.finish(b, true);
        r.finish(c, true);
        assert_eq!(r.len(), 2);
        assert_eq!(r.reserve(8), None, "unread records still take space");
        assert_eq!(r.consume().len(), 2);
        // Wraps around: the record lands past the end of the first half.
        let d = r.reserve(24).unwrap();
        write(&r, d, &[7; 24]);
        r.finish(d, true);
        assert_eq!(r.consume(), vec![vec![7; 24]]);
        assert_eq!(r.reserve(0), None);
        assert_eq!(r.reserve(32), None);
    }
}
