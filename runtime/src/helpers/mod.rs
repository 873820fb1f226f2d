//! The standard helpers, with their kernel ids, for programs of a loaded
//! object ([`crate::object::LoadedObject::helpers_for`]).
//!
//! | id | helper | notes |
//! |---|---|---|
//! | 1 | `map_lookup_elem` | returns the value's address in the map's region, or NULL |
//! | 2 | `map_update_elem` | 0 or a negative errno |
//! | 3 | `map_delete_elem` | 0 or a negative errno |
//! | 4 | `probe_read` | copies from any memory the run may read (input, stack, maps, host regions); -EFAULT and a zeroed destination otherwise |
//! | 5 | `ktime_get_ns` | monotonic nanoseconds since the object was loaded |
//! | 6 | `trace_printk` | formats to the object's trace sink; `%d %i %u %x %X %p %s %c %%` with `l`/`ll`, flags and widths; up to 3 arguments |
//! | 7 | `get_prandom_u32` | xorshift, seeded per object (deterministic by default) |
//! | 8 | `get_smp_processor_id` | 0 (one CPU) |
//! | 12 | `tail_call` | runs the target to its end and ends the caller with its r0; at most 33 in a chain; a missing target returns -ENOENT and the caller goes on |
//! | 14 | `get_current_pid_tgid` | the host process id in both halves |
//! | 130 to 133 | `ringbuf_output`, `ringbuf_reserve`, `ringbuf_submit`, `ringbuf_discard` | see [`crate::maps::RingBuf`] |
//! | 181 | `loop` | calls a callback of the same program on the same tier |
//!
//! Pointer arguments are checked against the run's memory (`VmCtx::allows`,
//! with the whole stack area allowed): a bad one is a `Fault` trap. A map
//! argument that is not one of the object's maps is a helper failure with
//! code `EINVAL`.

mod printk;
pub(crate) mod reenter;

pub use reenter::{MAX_CALLBACK_NESTING, MAX_TAIL_CALLS};

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bpfvm_engine::helpers::{HelperError, Helpers};
use bpfvm_engine::vmctx::VmCtx;

use crate::maps::{Map, EFAULT, EINVAL};
use crate::object::Shared;
use reenter::Reenter;

pub const MAP_LOOKUP_ELEM: u32 = bpfvm_engine::program::MAP_LOOKUP_ELEM;
pub const MAP_UPDATE_ELEM: u32 = 2;
pub const MAP_DELETE_ELEM: u32 = 3;
pub const PROBE_READ: u32 = 4;
pub const KTIME_GET_NS: u32 = 5;
pub const TRACE_PRINTK: u32 = 6;
pub const GET_PRANDOM_U32: u32 = 7;
pub const GET_SMP_PROCESSOR_ID: u32 = 8;
pub const TAIL_CALL: u32 = 12;
pub const GET_CURRENT_PID_TGID: u32 = 14;
pub const RINGBUF_OUTPUT: u32 = 130;
pub const RINGBUF_RESERVE: u32 = 131;
pub const RINGBUF_SUBMIT: u32 = 132;
pub const RINGBUF_DISCARD: u32 = 133;
pub const LOOP: u32 = 181;

/// Every standard helper id.
pub const STANDARD_IDS: [u32; 15] = [
    MAP_LOOKUP_ELEM,
    MAP_UPDATE_ELEM,
    MAP_DELETE_ELEM,
    PROBE_READ,
    KTIME_GET_NS,
    TRACE_PRINTK,
    GET_PRANDOM_U32,
    GET_SMP_PROCESSOR_ID,
    TAIL_CALL,
    GET_CURRENT_PID_TGID,
    RINGBUF_OUTPUT,
    RINGBUF_RESERVE,
    RINGBUF_SUBMIT,
    RINGBUF_DISCARD,
    LOOP,
];

/// Largest `nr_loops` of `bpf_loop`, as in the kernel.
pub const MAX_LOOPS: u64 = 1 << 23;

/// A negative errno as a helper's r0.
pub(crate) fn neg(errno: i64) -> u64 {
    (-errno) as u64
}

/// Checks that the run may access `[addr, addr + len)`.
pub(crate) fn check(ctx: &VmCtx, addr: u64, len: u64, write: bool) -> Result<(), HelperError> {
    if len == 0 || ctx.allows(addr, len, write, ctx.stack_bottom) {
        Ok(())
    } else {
        Err(HelperError::Fault {
            addr,
            size: u32::try_from(len).unwrap_or(u32::MAX),
            write,
        })
    }
}

/// Copies `len` bytes of the run's memory at `addr`, after checking them.
pub(crate) fn read(ctx: &VmCtx, addr: u64, len: u64) -> Result<Vec<u8>, HelperError> {
    check(ctx, addr, len, false)?;
    if len == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the range lies in memory the run may read (its input, its
    // stack, a map, a host region), all valid for the whole run.
    Ok(unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) }.to_vec())
}

/// Copies `bytes` into the run's memory at `addr`, after checking it;
/// a write to the stack is recorded in `stack_written_lo`.
pub(crate) fn write(ctx: &mut VmCtx, addr: u64, bytes: &[u8]) -> Result<(), HelperError> {
    check(ctx, addr, bytes.len() as u64, true)?;
    if !bytes.is_empty() && addr >= ctx.stack_bottom && addr < ctx.stack_top {
        ctx.stack_written_lo = ctx.stack_written_lo.min(addr);
    }
    // SAFETY: the range lies in writable memory of the run; `bytes` is a
    // host buffer, so the two do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
    Ok(())
}

fn map_arg(shared: &Shared, handle: u64) -> Result<&Arc<Map>, HelperError> {
    shared
        .maps
        .by_handle(handle)
        .ok_or(HelperError::Failed(EINVAL as u32))
}

/// The standard helpers; `reenter` runs tail-call targets and callbacks.
/// Each is registered as recording its stack writes: it writes no stack
/// memory, or writes it through [`write`], which records it (`bpf_loop`
/// counts the whole area as written: its callbacks may write anywhere).
pub(crate) fn standard(shared: &Arc<Shared>, reenter: &Arc<Reenter>) -> Helpers {
    let mut h = Helpers::new();
    let s = shared.clone();
    h.register_recording(
        MAP_LOOKUP_ELEM,
        "map_lookup_elem",
        move |ctx, [m, key, ..]| {
            let map = map_arg(&s, m)?;
            let key = read(ctx, key, map.def().key_size as u64)?;
            Ok(map.lookup_addr(&key).ok().flatten().unwrap_or(0))
        },
    );
    let s = shared.clone();
    h.register_recording(
        MAP_UPDATE_ELEM,
        "map_update_elem",
        move |ctx, [m, key, value, flags, _]| {
            let map = map_arg(&s, m)?;
            let key = read(ctx, key, map.def().key_size as u64)?;
            let value = read(ctx, value, map.def().value_size as u64)?;
            if map.kind() == bpfvm_engine::elf::MapKind::ProgArray {
                return Ok(neg(EINVAL));
            }
            Ok(match map.update(&key, &value, flags) {
                Ok(()) => 0,
                Err(e) => neg(e.errno()),
            })
        },
    );
    let s = shared.clone();
    h.register_recording(
        MAP_DELETE_ELEM,
        "map_delete_elem",
        move |ctx, [m, key, ..]| {
            let map = map_arg(&s, m)?;
            let key = read(ctx, key, map.def().key_size as u64)?;
            if map.kind() == bpfvm_engine::elf::MapKind::ProgArray {
                return Ok(neg(EINVAL));
            }
            Ok(match map.delete(&key) {
                Ok(()) => 0,
                Err(e) => neg(e.errno()),
            })
        },
    );
    h.register_recording(PROBE_READ, "probe_read", |ctx, [dst, size, src, ..]| {
        let size = size & 0xffff_ffff;
        check(ctx, dst, size, true)?;
        match read(ctx, src, size) {
            Ok(bytes) => {
                write(ctx, dst, &bytes)?;
                Ok(0)
            }
            Err(_) => {
                write(ctx, dst, &vec![0; size as usize])?;
                Ok(neg(EFAULT))
            }
        }
    });
    let s = shared.clone();
    h.register_recording(KTIME_GET_NS, "ktime_get_ns", move |_, _| {
        Ok(s.epoch.elapsed().as_nanos() as u64)
    });
    let s = shared.clone();
    h.register_recording(
        TRACE_PRINTK,
        "trace_printk",
        move |ctx, [fmt, size, a1, a2, a3]| {
            printk::trace_printk(&s, ctx, fmt, size & 0xffff_ffff, [a1, a2, a3])
        },
    );
    let s = shared.clone();
    h.register_recording(GET_PRANDOM_U32, "get_prandom_u32", move |_, _| {
        let next = |x: u64| {
            let mut x = x;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let old = s
            .rng
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(next(x)))
            .unwrap_or(0);
        Ok((next(old).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32 as u64)
    });
    h.register_recording(GET_SMP_PROCESSOR_ID, "get_smp_processor_id", |_, _| Ok(0));
    h.register_recording(GET_CURRENT_PID_TGID, "get_current_pid_tgid", |_, _| {
        let pid = std::process::id() as u64;
        Ok(pid << 32 | pid)
    });
    let s = shared.clone();
    h.register_recording(
        RINGBUF_OUTPUT,
        "ringbuf_output",
        move |ctx, [m, data, size, _flags, _]| {
            let map = map_arg(&s, m)?;
            let Some(rb) = map.ringbuf() else {
                return Ok(neg(EINVAL));
            };
            let bytes = read(ctx, data, size)?;
            let Some(addr) = rb.reserve(size) else {
                return Ok(neg(crate::maps::ENOSPC));
            };
            rb.fill(addr, &bytes);
            rb.finish(addr, true);
            Ok(0)
        },
    );
    let s = shared.clone();
    h.register_recording(
        RINGBUF_RESERVE,
        "ringbuf_reserve",
        move |_, [m, size, flags, ..]| {
            let map = map_arg(&s, m)?;
            match map.ringbuf() {
                Some(rb) if flags == 0 => Ok(rb.reserve(size).unwrap_or(0)),
                _ => Ok(0),
            }
        },
    );
    for (id, name, commit) in [
        (RINGBUF_SUBMIT, "ringbuf_submit", true),
        (RINGBUF_DISCARD, "ringbuf_discard", false),
    ] {
        let s = shared.clone();
        h.register_recording(id, name, move |_, [data, ..]| {
            match s.maps.ringbuf_owning(data) {
                Some(rb) if rb.finish(data, commit) => Ok(0),
                _ => Err(HelperError::Failed(EINVAL as u32)),
            }
        });
    }
    let (s, r) = (shared.clone(), reenter.clone());
    h.register_recording(TAIL_CALL, "tail_call", move |ctx, [c, m, index, ..]| {
        let map = map_arg(&s, m)?;
        r.tail_call(ctx, map, c, index)
    });
    let r = reenter.clone();
    h.register_recording(
        LOOP,
        "loop",
        move |ctx, [nr, callback, cb_ctx, flags, _]| r.bpf_loop(ctx, nr, callback, cb_ctx, flags),
    );
    h
}
