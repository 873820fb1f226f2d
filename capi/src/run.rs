//! Running a program over a memory buffer: r0, or a `struct bpfvm_trap`.

use std::ffi::{c_char, c_int, c_void};

use bpfvm_engine::trap::Trap;

use crate::error::{guard, Code, Error};
use crate::handles::{self, bpfvm_program};
use crate::util;

pub const TRAP_NONE: c_int = 0;
pub const TRAP_OUT_OF_BOUNDS_LOAD: c_int = 1;
pub const TRAP_OUT_OF_BOUNDS_STORE: c_int = 2;
pub const TRAP_BUDGET_EXHAUSTED: c_int = 3;
pub const TRAP_CALL_DEPTH_EXCEEDED: c_int = 4;
pub const TRAP_UNKNOWN_HELPER: c_int = 5;
pub const TRAP_HELPER_FAILED: c_int = 6;
pub const TRAP_MISALIGNED_ATOMIC: c_int = 7;
pub const TRAP_UNKNOWN: c_int = 8;

/// How a run ended early (`struct bpfvm_trap`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct bpfvm_trap {
    /// `BPFVM_TRAP_KIND_*` (`_NONE` when the program exited).
    pub kind: c_int,
    /// The instruction that trapped (the block start for budget traps).
    pub pc: u64,
    /// The faulting address, or the helper id for helper traps, else 0.
    pub addr: u64,
    /// The trap as text, NUL-terminated (truncated to fit).
    pub message: [c_char; 128],
}

impl bpfvm_trap {
    pub fn none() -> bpfvm_trap {
        bpfvm_trap {
            kind: TRAP_NONE,
            pc: 0,
            addr: 0,
            message: [0; 128],
        }
    }

    pub fn from_trap(t: &Trap) -> bpfvm_trap {
        let (kind, addr) = match *t {
            Trap::OutOfBounds {
                addr, write: false, ..
            } => (TRAP_OUT_OF_BOUNDS_LOAD, addr),
            Trap::OutOfBounds {
                addr, write: true, ..
            } => (TRAP_OUT_OF_BOUNDS_STORE, addr),
            Trap::MisalignedAtomic { addr, .. } => (TRAP_MISALIGNED_ATOMIC, addr),
            Trap::BudgetExhausted { .. } => (TRAP_BUDGET_EXHAUSTED, 0),
            Trap::CallDepthExceeded { .. } => (TRAP_CALL_DEPTH_EXCEEDED, 0),
            Trap::UnknownHelper { id, .. } => (TRAP_UNKNOWN_HELPER, id),
            Trap::HelperFailed { id, .. } => (TRAP_HELPER_FAILED, id),
            Trap::Unknown { .. } => (TRAP_UNKNOWN, 0),
        };
        let mut out = bpfvm_trap {
            kind,
            pc: t.pc() as u64,
            addr,
            message: [0; 128],
        };
        util::fill_text(&mut out.message, &t.to_string());
        out
    }
}

/// Runs the program over `[mem, mem + len)` (r1 = `mem`, r2 = `len`; both
/// 0 when `len` is 0). On exit: 0, `*r0` set, `*trap` (if not NULL) of kind
/// `BPFVM_TRAP_KIND_NONE`. On a trap: `BPFVM_E_TRAP`, `*r0` = 0, `*trap`
/// filled, and the trap's text as the last error.
///
/// # Safety
/// `mem` points to `len` writable bytes (or `len` is 0) that no other
/// thread uses during the call; `r0` and `trap` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_program_run(
    program: *mut bpfvm_program,
    mem: *mut c_void,
    len: usize,
    r0: *mut u64,
    trap: *mut bpfvm_trap,
) -> c_int {
    guard(|| {
        let p = handles::program(program)?;
        let r0 = util::out(r0, "r0")?;
        // SAFETY: forwarded contract on `mem` and `len`.
        let mem = unsafe { util::bytes_mut(mem, len, "mem") }?;
        let result = p.current().run(mem);
        let (value, record) = match &result {
            Ok(v) => (*v, bpfvm_trap::none()),
            Err(t) => (0, bpfvm_trap::from_trap(t)),
        };
        // SAFETY: `r0` is non-NULL and writable by the caller's contract.
        unsafe { r0.write(value) };
        if !trap.is_null() {
            // SAFETY: non-NULL and writable by the caller's contract.
            unsafe { trap.write(record) };
        }
        match result {
            Ok(_) => Ok(()),
            Err(t) => Err(Error::new(Code::Trap, t.to_string())),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traps_map_to_kinds() {
        let t = bpfvm_trap::from_trap(&Trap::OutOfBounds {
            pc: 3,
            addr: 0x10,
            size: 4,
            write: true,
        });
        assert_eq!((t.kind, t.pc, t.addr), (TRAP_OUT_OF_BOUNDS_STORE, 3, 0x10));
        assert_eq!(t.message[0] as u8, b'p');
        let t = bpfvm_trap::from_trap(&Trap::HelperFailed {
            pc: 1,
            id: 9,
            code: 2,
        });
        assert_eq!((t.kind, t.addr), (TRAP_HELPER_FAILED, 9));
    }
}
