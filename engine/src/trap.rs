//! `Trap`: how a run that did not reach `exit` ends, identically in every tier.

use crate::vmctx::*;

/// Why a program stopped before `exit`. Every executor reports the same trap,
/// with the same pc, for the same program and input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Trap {
    #[error("pc {pc}: out-of-bounds {} of {size} bytes at 0x{addr:x}", if *.write { "store" } else { "load" })]
    OutOfBounds {
        pc: usize,
        addr: u64,
        size: u32,
        write: bool,
    },
    #[error("pc {pc}: atomic access of {size} bytes at 0x{addr:x} is not aligned")]
    MisalignedAtomic { pc: usize, addr: u64, size: u32 },
    #[error("pc {pc}: instruction budget exhausted")]
    BudgetExhausted { pc: usize },
    #[error("pc {pc}: call depth limit of {limit} frames exceeded")]
    CallDepthExceeded { pc: usize, limit: usize },
    #[error("pc {pc}: call to unregistered helper {id}")]
    UnknownHelper { pc: usize, id: u64 },
    #[error("pc {pc}: helper {id} failed with error code {code}")]
    HelperFailed { pc: usize, id: u64, code: u32 },
    #[error("pc {pc}: unknown trap code {code}")]
    Unknown { pc: usize, code: u32 },
}

impl Trap {
    /// The pc of the instruction that trapped (the block start for budget traps).
    pub fn pc(&self) -> usize {
        match *self {
            Trap::OutOfBounds { pc, .. }
            | Trap::MisalignedAtomic { pc, .. }
            | Trap::BudgetExhausted { pc }
            | Trap::CallDepthExceeded { pc, .. }
            | Trap::UnknownHelper { pc, .. }
            | Trap::HelperFailed { pc, .. }
            | Trap::Unknown { pc, .. } => pc,
        }
    }

    /// A short stable name of the trap's kind, for JSON output and comparisons.
    pub fn kind(&self) -> &'static str {
        match self {
            Trap::OutOfBounds { write: false, .. } => "out_of_bounds_load",
            Trap::OutOfBounds { write: true, .. } => "out_of_bounds_store",
            Trap::MisalignedAtomic { .. } => "misaligned_atomic",
            Trap::BudgetExhausted { .. } => "budget_exhausted",
            Trap::CallDepthExceeded { .. } => "call_depth_exceeded",
            Trap::UnknownHelper { .. } => "unknown_helper",
            Trap::HelperFailed { .. } => "helper_failed",
            Trap::Unknown { .. } => "unknown",
        }
    }

    /// Reads the trap record of a context after a run; `None` when the run
    /// exited normally. `call_depth` is the configured limit, for the message.
    pub fn from_ctx(ctx: &VmCtx, call_depth: usize) -> Option<Trap> {
        let pc = ctx.trap_pc as usize;
        Some(match ctx.trap_code {
            TRAP_NONE => return None,
            TRAP_LOAD | TRAP_STORE => Trap::OutOfBounds {
                pc,
                addr: ctx.trap_addr,
                size: ctx.trap_size,
                write: ctx.trap_code == TRAP_STORE,
            },
            TRAP_MISALIGNED => Trap::MisalignedAtomic {
                pc,
                addr: ctx.trap_addr,
                size: ctx.trap_size,
            },
            TRAP_BUDGET => Trap::BudgetExhausted { pc },
            TRAP_CALL_DEPTH => Trap::CallDepthExceeded {
                pc,
                limit: call_depth,
            },
            TRAP_UNKNOWN_HELPER => Trap::UnknownHelper {
                pc,
                id: ctx.trap_addr,
            },
            TRAP_HELPER => Trap::HelperFailed {
                pc,
                id: ctx.trap_addr,
                code: ctx.trap_size,
            },
            code => Trap::Unknown { pc, code },
        })
    }
}
