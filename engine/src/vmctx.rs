//! The `VmCtx` ABI: the one structure every executor (the interpreter and the
//! generated code of each JIT tier) reads its environment from and writes its
//! trap record to.
//!
//! Generated code is called as
//! `extern "C" fn(ctx: *mut VmCtx, r1: u64, r2: u64) -> u64` with r1 and r2
//! the input memory's address and length, and r10 set to `ctx.stack_top`.
//! When it returns, `ctx.trap_code == TRAP_NONE` means the returned value is
//! r0; otherwise the trap fields say what happened and the value is ignored.
//!
//! Field offsets are part of the ABI (the JITs load them as constants): they
//! are exported below as `OFFSET_*` and checked by a test.

use std::ffi::c_void;
use std::mem::offset_of;

/// Signature of a helper as the executors call it: the context, the helper's
/// own data pointer, then r1 to r5. The result goes to r0. A helper that must
/// stop the program calls [`VmCtx::raise`] and returns; the caller then sees
/// `trap_code != TRAP_NONE` and leaves, filling in the pc.
pub type HelperFn =
    unsafe extern "C" fn(ctx: *mut VmCtx, data: *const c_void, u64, u64, u64, u64, u64) -> u64;

/// One entry of the helper table, indexed by helper id.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HelperSlot {
    pub func: Option<HelperFn>,
    pub data: *const c_void,
}

impl HelperSlot {
    pub const EMPTY: HelperSlot = HelperSlot {
        func: None,
        data: std::ptr::null(),
    };
}

/// A host memory region that checked code may access.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
    /// 1 when stores and atomics are allowed, 0 for read-only.
    pub writable: u64,
}

// Trap codes written to `VmCtx::trap_code`.
pub const TRAP_NONE: u32 = 0;
/// Out-of-bounds load: `trap_addr`, `trap_size` set.
pub const TRAP_LOAD: u32 = 1;
/// Out-of-bounds store or atomic: `trap_addr`, `trap_size` set.
pub const TRAP_STORE: u32 = 2;
/// The instruction budget ran out at the start of the block at `trap_pc`.
pub const TRAP_BUDGET: u32 = 3;
/// A local call would exceed the call-depth limit.
pub const TRAP_CALL_DEPTH: u32 = 4;
/// `callx` (or a helper call) named a helper id that is not registered:
/// `trap_addr` holds the id.
pub const TRAP_UNKNOWN_HELPER: u32 = 5;
/// A helper reported an error: `trap_addr` holds the helper id,
/// `trap_size` the helper's error code.
pub const TRAP_HELPER: u32 = 6;
/// An atomic instruction's address is not aligned to its size:
/// `trap_addr`, `trap_size` set.
pub const TRAP_MISALIGNED: u32 = 7;
/// Not a fault: a helper ended the run early (a tail call that ran its
/// target to the end) and `trap_addr` holds the run's r0. Every executor
/// leaves as for a trap; [`crate::backend::execute_on`] turns it into a
/// normal [`crate::backend::Outcome`].
pub const TRAP_EXIT: u32 = 8;
/// An executor reached a state the verifier rules out (a bug in bpfvm).
pub const TRAP_INTERNAL: u32 = 255;

/// What allows an access (see [`VmCtx::allowing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// The input memory.
    Input,
    /// The current frame or a caller's.
    Stack,
    /// One of the extra regions.
    Region(Region),
}

/// The execution context shared by every executor. `#[repr(C)]`, 8-byte
/// fields, offsets fixed by the `OFFSET_*` constants.
#[repr(C)]
#[derive(Debug)]
pub struct VmCtx {
    /// Input memory `[mem_start, mem_end)` (r1 and r2 at entry).
    pub mem_start: u64,
    pub mem_end: u64,
    /// r10 of the outermost frame: one past the top of the stack area.
    pub stack_top: u64,
    /// Lowest address of the stack area (`stack_top - depth * 512`).
    pub stack_bottom: u64,
    /// Extra regions the program may access in checked mode.
    pub regions: *const Region,
    pub region_count: u64,
    /// Helper table, indexed by helper id.
    pub helpers: *const HelperSlot,
    pub helper_count: u64,
    /// Instructions left when the budget is enabled; decremented per block.
    pub budget: u64,
    /// Trap record: code (`TRAP_*`), size or helper error code, pc, address.
    pub trap_code: u32,
    pub trap_size: u32,
    pub trap_pc: u64,
    pub trap_addr: u64,
    /// Host context for helpers (the runtime's per-run state).
    pub host: *mut c_void,
    /// The extra region (map values, global data, host memory) that
    /// [`bpfvm_check_access`] last allowed an access to, so that tier 0 can
    /// check the next access to it inline before calling out: an access of
    /// `n` bytes at `addr` lies in it when `addr - last_region_start`
    /// (wrapping) is below `last_region_limits[k]`, with `k` 0 to 3 for
    /// loads of 1, 2, 4 and 8 bytes and 4 to 7 for stores (see
    /// [`last_region_limit_index`]). A limit is `len - n + 1`, or 0 when the
    /// region is shorter than `n` bytes or, for stores, read-only. All zero
    /// (no region) when a run starts. Regions never change during a run, so
    /// what this allows, [`VmCtx::allows`] allows.
    pub last_region_start: u64,
    pub last_region_limits: [u64; 8],
    /// Where tier 0's out-of-line check trampoline leaves
    /// [`bpfvm_check_access`]'s answer (1: allowed, 0: not), since the
    /// `preserve_all` call it makes has no return value.
    pub check_answer: u64,
    /// The lowest stack address a helper may have written in this run
    /// (`stack_top`: none). A helper may write anywhere in the stack area,
    /// below the calling frame too, so after the run the stack is zeroed
    /// from here up as well as the frames the program itself could write
    /// ([`crate::backend::Stack::note_helper_writes`]). The runtime's
    /// helpers record their writes; after any other helper the whole area
    /// counts as written.
    pub stack_written_lo: u64,
    /// Tier 0's (on x86-64 Linux): the stack pointer its entry stub saved,
    /// to which generated code that has recorded a trap returns at once,
    /// abandoning its frames, rather than through each of them. Written by
    /// the stub at every run; 0 before.
    pub abort_sp: u64,
}

pub const OFFSET_MEM_START: i32 = offset_of!(VmCtx, mem_start) as i32;
pub const OFFSET_MEM_END: i32 = offset_of!(VmCtx, mem_end) as i32;
pub const OFFSET_STACK_TOP: i32 = offset_of!(VmCtx, stack_top) as i32;
pub const OFFSET_STACK_BOTTOM: i32 = offset_of!(VmCtx, stack_bottom) as i32;
pub const OFFSET_REGIONS: i32 = offset_of!(VmCtx, regions) as i32;
pub const OFFSET_REGION_COUNT: i32 = offset_of!(VmCtx, region_count) as i32;
pub const OFFSET_HELPERS: i32 = offset_of!(VmCtx, helpers) as i32;
pub const OFFSET_HELPER_COUNT: i32 = offset_of!(VmCtx, helper_count) as i32;
pub const OFFSET_BUDGET: i32 = offset_of!(VmCtx, budget) as i32;
pub const OFFSET_TRAP_CODE: i32 = offset_of!(VmCtx, trap_code) as i32;
pub const OFFSET_TRAP_SIZE: i32 = offset_of!(VmCtx, trap_size) as i32;
pub const OFFSET_TRAP_PC: i32 = offset_of!(VmCtx, trap_pc) as i32;
pub const OFFSET_TRAP_ADDR: i32 = offset_of!(VmCtx, trap_addr) as i32;
pub const OFFSET_HOST: i32 = offset_of!(VmCtx, host) as i32;
pub const OFFSET_LAST_REGION_START: i32 = offset_of!(VmCtx, last_region_start) as i32;
pub const OFFSET_LAST_REGION_LIMITS: i32 = offset_of!(VmCtx, last_region_limits) as i32;
pub const OFFSET_CHECK_ANSWER: i32 = offset_of!(VmCtx, check_answer) as i32;
pub const OFFSET_ABORT_SP: i32 = offset_of!(VmCtx, abort_sp) as i32;

/// Index in [`VmCtx::last_region_limits`] of an access of `size` bytes
/// (1, 2, 4 or 8), a store when `write`.
pub const fn last_region_limit_index(size: u64, write: bool) -> usize {
    let k = match size {
        1 => 0,
        2 => 1,
        4 => 2,
        _ => 3,
    };
    if write {
        k + 4
    } else {
        k
    }
}

/// Offset in [`VmCtx`] of the limit for an access of `size` bytes, a store
/// when `write`: what generated code loads for the remembered region.
pub const fn last_region_limit_offset(size: u64, write: bool) -> i32 {
    OFFSET_LAST_REGION_LIMITS + 8 * last_region_limit_index(size, write) as i32
}
/// Size of a `HelperSlot` and the offsets of its fields.
pub const HELPER_SLOT_SIZE: i32 = std::mem::size_of::<HelperSlot>() as i32;
pub const OFFSET_SLOT_FUNC: i32 = offset_of!(HelperSlot, func) as i32;
pub const OFFSET_SLOT_DATA: i32 = offset_of!(HelperSlot, data) as i32;

impl VmCtx {
    /// Records a trap raised by a helper or a slow path. The executor fills
    /// in `trap_pc` when it leaves.
    pub fn raise(&mut self, code: u32, addr: u64, size: u32) {
        self.trap_code = code;
        self.trap_addr = addr;
        self.trap_size = size;
    }

    /// Whether `[addr, addr + size)` lies in a region that permits the access.
    /// `frame_lo` is the lowest stack address the current frame may touch
    /// (its r10 minus 512): the frames of its callers lie above it and are
    /// allowed, the rest of the stack area is not.
    ///
    /// The one definition of checked memory, used by the interpreter and by
    /// the JITs' out-of-line path.
    pub fn allows(&self, addr: u64, size: u64, write: bool, frame_lo: u64) -> bool {
        self.allowing(addr, size, write, frame_lo).is_some()
    }

    /// What allows `[addr, addr + size)`, as [`VmCtx::allows`] decides it.
    pub fn allowing(&self, addr: u64, size: u64, write: bool, frame_lo: u64) -> Option<Allowed> {
        let end = addr.checked_add(size)?;
        if addr >= self.mem_start && end <= self.mem_end {
            return Some(Allowed::Input);
        }
        if addr >= frame_lo && end <= self.stack_top {
            return Some(Allowed::Stack);
        }
        self.regions()
            .iter()
            .find(|r| {
                addr >= r.start
                    && end <= r.start.saturating_add(r.len)
                    && (!write || r.writable != 0)
            })
            .map(|r| Allowed::Region(*r))
    }

    /// Remembers `r` in the `last_region_*` fields.
    fn remember_region(&mut self, r: Region) {
        let len = r.len.min(u64::MAX - r.start);
        self.last_region_start = r.start;
        for (k, n) in [1u64, 2, 4, 8].into_iter().enumerate() {
            let limit = if len >= n { len - n + 1 } else { 0 };
            self.last_region_limits[k] = limit;
            self.last_region_limits[k + 4] = if r.writable != 0 { limit } else { 0 };
        }
    }

    /// The extra regions as a slice.
    pub fn regions(&self) -> &[Region] {
        if self.regions.is_null() || self.region_count == 0 {
            return &[];
        }
        // SAFETY: the owner of the context keeps `regions` valid for
        // `region_count` entries for as long as the context is in use.
        unsafe { std::slice::from_raw_parts(self.regions, self.region_count as usize) }
    }

    /// The helper slot for `id`, if one is registered.
    pub fn helper(&self, id: u64) -> Option<HelperSlot> {
        if id >= self.helper_count || self.helpers.is_null() {
            return None;
        }
        // SAFETY: `helpers` is valid for `helper_count` entries.
        let slot = unsafe { *self.helpers.add(id as usize) };
        slot.func.map(|_| slot)
    }
}

/// Out-of-line memory check for generated code: returns 1 when the access is
/// allowed, else records the trap and returns 0.
///
/// # Safety
/// `ctx` must point to a live `VmCtx`.
pub unsafe extern "C" fn bpfvm_check_access(
    ctx: *mut VmCtx,
    addr: u64,
    size: u64,
    write: u64,
    frame_lo: u64,
) -> u64 {
    // SAFETY: per the contract, ctx is live and not aliased mutably elsewhere.
    let ctx = unsafe { &mut *ctx };
    match ctx.allowing(addr, size, write != 0, frame_lo) {
        Some(Allowed::Region(r)) => {
            ctx.remember_region(r);
            1
        }
        Some(_) => 1,
        None => {
            ctx.raise(
                if write != 0 { TRAP_STORE } else { TRAP_LOAD },
                addr,
                size as u32,
            );
            0
        }
    }
}

/// One access of a group that generated code checks with one call
/// ([`bpfvm_check_group`]): bits 0–6 its size in bytes, bit 7 set for a
/// store, bits 8–23 its offset from the group's base register (an
/// `i16`), bits 24–63 its pc.
pub const fn grouped_access(pc: usize, off: i16, size: u64, write: bool) -> u64 {
    (pc as u64) << 24 | (off as u16 as u64) << 8 | (write as u64) << 7 | size
}

/// Out-of-line check of a group of accesses through one base register
/// (`bpfvm_engine::facts::RegisterFacts::access_group`), for generated
/// code whose inline test could not place the whole group in one region:
/// `table` holds the number of accesses, then each access in program
/// order ([`grouped_access`]). Each is checked at `base + off` as
/// [`bpfvm_check_access`] checks it; the first refused one records its
/// trap, its pc included, and the answer is 0; else 1.
///
/// # Safety
/// `ctx` must point to a live `VmCtx`, and `table` to a count `n` followed
/// by `n` entries.
pub unsafe extern "C" fn bpfvm_check_group(
    ctx: *mut VmCtx,
    base: u64,
    table: *const u64,
    frame_lo: u64,
) -> u64 {
    // SAFETY: per the contract, ctx is live and not aliased mutably
    // elsewhere, and the table holds its count and entries.
    let (ctx, accesses) = unsafe {
        let n = *table as usize;
        (&mut *ctx, std::slice::from_raw_parts(table.add(1), n))
    };
    for &access in accesses {
        let size = access & 0x7f;
        let write = access & 0x80 != 0;
        let off = (access >> 8) as u16 as i16;
        let addr = base.wrapping_add(off as i64 as u64);
        match ctx.allowing(addr, size, write, frame_lo) {
            Some(Allowed::Region(r)) => ctx.remember_region(r),
            Some(_) => {}
            None => {
                ctx.raise(
                    if write { TRAP_STORE } else { TRAP_LOAD },
                    addr,
                    size as u32,
                );
                ctx.trap_pc = access >> 24;
                return 0;
            }
        }
    }
    1
}

/// Calls helper `id` for generated code (used for `callx`, where the id is
/// only known at run time): records `TRAP_UNKNOWN_HELPER` when it is not
/// registered.
///
/// # Safety
/// `ctx` must point to a live `VmCtx` whose helper table is valid.
pub unsafe extern "C" fn bpfvm_call_helper_by_id(
    ctx: *mut VmCtx,
    id: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
) -> u64 {
    // SAFETY: ctx is live per the contract.
    let slot = unsafe { (*ctx).helper(id) };
    match slot.and_then(|s| s.func.map(|f| (f, s.data))) {
        // SAFETY: registered helpers follow the HelperFn contract.
        Some((f, data)) => unsafe { f(ctx, data, a1, a2, a3, a4, a5) },
        None => {
            // SAFETY: as above.
            unsafe { (*ctx).raise(TRAP_UNKNOWN_HELPER, id, 0) };
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_offsets_are_stable() {
        assert_eq!(OFFSET_MEM_START, 0);
        assert_eq!(OFFSET_MEM_END, 8);
        assert_eq!(OFFSET_STACK_TOP, 16);
        assert_eq!(OFFSET_STACK_BOTTOM, 24);
        assert_eq!(OFFSET_REGIONS, 32);
        assert_eq!(OFFSET_REGION_COUNT, 40);
        assert_eq!(OFFSET_HELPERS, 48);
        assert_eq!(OFFSET_HELPER_COUNT, 56);
        assert_eq!(OFFSET_BUDGET, 64);
        assert_eq!(OFFSET_TRAP_CODE, 72);
        assert_eq!(OFFSET_TRAP_SIZE, 76);
        assert_eq!(OFFSET_TRAP_PC, 80);
        assert_eq!(OFFSET_TRAP_ADDR, 88);
        assert_eq!(OFFSET_HOST, 96);
        assert_eq!(OFFSET_LAST_REGION_START, 104);
        assert_eq!(OFFSET_LAST_REGION_LIMITS, 112);
        assert_eq!(OFFSET_CHECK_ANSWER, 176);
        assert_eq!(OFFSET_ABORT_SP, 192);
        assert_eq!(std::mem::size_of::<VmCtx>(), 200);
        assert_eq!(HELPER_SLOT_SIZE, 16);
    }

    /// A read-only extra region of 50 bytes at address 100.
    const READ_ONLY: Region = Region {
        start: 100,
        len: 50,
        writable: 0,
    };

    /// Gives `c` the extra regions `rs`, which must outlive its use.
    fn set_regions(c: &mut VmCtx, rs: &[Region]) {
        c.regions = rs.as_ptr();
        c.region_count = rs.len() as u64;
    }

    fn ctx() -> VmCtx {
        VmCtx {
            mem_start: 1000,
            mem_end: 1010,
            stack_top: 5000,
            stack_bottom: 5000 - 4096,
            regions: std::ptr::null(),
            region_count: 0,
            helpers: std::ptr::null(),
            helper_count: 0,
            budget: 0,
            trap_code: 0,
            trap_size: 0,
            trap_pc: 0,
            trap_addr: 0,
            host: std::ptr::null_mut(),
            last_region_start: 0,
            last_region_limits: [0; 8],
            check_answer: 0,
            stack_written_lo: 5000,
            abort_sp: 0,
        }
    }

    #[test]
    fn checked_memory_rules() {
        let mut c = ctx();
        assert!(c.allows(1000, 10, true, 4488));
        assert!(!c.allows(1001, 10, false, 4488));
        assert!(!c.allows(999, 1, false, 4488));
        assert!(c.allows(4488, 512, true, 4488));
        assert!(!c.allows(4487, 1, true, 4488), "below the current frame");
        assert!(
            c.allows(4000, 8, true, 3976),
            "caller frames are visible to callees"
        );
        assert!(
            !c.allows(u64::MAX - 2, 8, false, 4488),
            "wrapping is out of bounds"
        );
        let rs = [READ_ONLY];
        set_regions(&mut c, &rs);
        assert!(c.allows(100, 50, false, 4488));
        assert!(!c.allows(100, 50, true, 4488), "read-only region");
        assert!(!c.allows(140, 11, false, 4488));
    }

    #[test]
    fn out_of_line_check_remembers_extra_regions_only() {
        let mut c = ctx();
        let rs = [
            READ_ONLY,
            Region {
                start: 200,
                len: 8,
                writable: 1,
            },
        ];
        set_regions(&mut c, &rs);
        let last = |c: &VmCtx| (c.last_region_start, c.last_region_limits);
        // SAFETY (every call): `c` is a live context.
        let check = |c: &mut VmCtx, addr, size, write| unsafe {
            bpfvm_check_access(c, addr, size, write, 4488)
        };
        assert_eq!(check(&mut c, 1000, 4, 0), 1);
        assert_eq!(last(&c), (0, [0; 8]), "the input is checked inline anyway");
        assert_eq!(check(&mut c, 4488, 8, 1), 1);
        assert_eq!(last(&c), (0, [0; 8]), "so is the frame");
        assert_eq!(check(&mut c, 120, 8, 0), 1);
        let read_only = (100, [50, 49, 47, 43, 0, 0, 0, 0]);
        assert_eq!(last(&c), read_only, "read-only: no stores");
        assert_eq!(check(&mut c, 120, 8, 1), 0, "a store to it traps");
        assert_eq!(last(&c), read_only);
        assert_eq!(c.trap_code, TRAP_STORE);
        assert_eq!(check(&mut c, 200, 8, 1), 1);
        assert_eq!(last(&c), (200, [8, 7, 5, 1, 8, 7, 5, 1]));
        let edge = [Region {
            start: u64::MAX - 3,
            len: 100,
            writable: 1,
        }];
        set_regions(&mut c, &edge);
        assert_eq!(check(&mut c, u64::MAX - 3, 2, 0), 1);
        assert_eq!(
            last(&c),
            (u64::MAX - 3, [3, 2, 0, 0, 3, 2, 0, 0]),
            "clipped to the address space, too short for 4 and 8 bytes"
        );
    }

    #[test]
    fn a_group_check_traps_at_its_first_refused_load() {
        let mut c = ctx();
        let rs = [READ_ONLY];
        set_regions(&mut c, &rs);
        // SAFETY (every call): `c` is live and each table holds its count.
        let check = |c: &mut VmCtx, base, loads: &[u64]| {
            let table: Vec<u64> = std::iter::once(loads.len() as u64)
                .chain(loads.iter().copied())
                .collect();
            unsafe { bpfvm_check_group(c, base, table.as_ptr(), 4488) }
        };
        let loads = [
            grouped_access(7, 2, 8, false),
            grouped_access(9, -2, 1, false),
            grouped_access(12, 6, 4, false),
        ];
        // Input 1000..1010: base 1002 reads 1004..1012 first.
        assert_eq!(check(&mut c, 1002, &loads), 0);
        assert_eq!(
            (c.trap_code, c.trap_pc, c.trap_addr, c.trap_size),
            (TRAP_LOAD, 7, 1004, 8)
        );
        // 1000..1008, 998, 1006..1010: the second is the first refused.
        assert_eq!(check(&mut c, 1000, &loads), 0);
        assert_eq!((c.trap_pc, c.trap_addr, c.trap_size), (9, 998, 1));
        // All three in the read-only region: allowed, and remembered.
        assert_eq!(check(&mut c, 110, &loads), 1);
        assert_eq!(c.last_region_start, 100);
        let far = [grouped_access((1 << 30) + 5, i16::MIN, 2, false)];
        assert_eq!(check(&mut c, 40_000, &far), 0);
        assert_eq!(
            (c.trap_pc, c.trap_addr, c.trap_size),
            ((1 << 30) + 5, 40_000 - 32_768, 2)
        );
        // A store last: refused in the read-only region, after the loads.
        let store = [
            grouped_access(3, 0, 4, false),
            grouped_access(4, 4, 4, true),
        ];
        assert_eq!(check(&mut c, 110, &store), 0);
        assert_eq!(
            (c.trap_code, c.trap_pc, c.trap_addr, c.trap_size),
            (TRAP_STORE, 4, 114, 4)
        );
        assert_eq!(check(&mut c, 1000, &store), 1, "the input is writable");
    }
}
