//! Re-entering the executor from a helper: `bpf_tail_call` runs another
//! program of the object, `bpf_loop` a callback function of the running
//! program, each compiled on the same tier with the same options as the
//! caller and run nested, on a fresh stack, in the caller's context (its
//! input memory, regions, helper table, host pointer and instruction
//! budget).
//!
//! * A tail call runs its target to the end and then ends the caller with
//!   the target's r0 (`TRAP_EXIT`), which is what the kernel's tail call
//!   looks like from outside (the caller's frame is kept while the target
//!   runs, which only costs host memory). At most [`MAX_TAIL_CALLS`] tail
//!   calls chain; past that the tail call fails and the caller goes on, as
//!   in the kernel. The target gets r1 = the helper's context argument and
//!   r2 = the input's length when r1 is the input's address, else 0.
//! * A callback is compiled as a small entry (`call <callback>; exit`)
//!   placed before the program, so every tier compiles it unchanged; it
//!   gets r1 = the index and r2 = the callback context, and may access the
//!   caller's whole stack area (where that context usually lives).
//!
//! A trap in the nested run becomes the caller's trap, reported at the pc
//! of the helper call. Callbacks nest at most [`MAX_CALLBACK_NESTING`]
//! deep (a callback's `bpf_loop` past that traps with a call-depth trap),
//! so that a program cannot exhaust the host's stack.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bpfvm_engine::backend::{Backend, CompileOptions, CompiledCode, Stack};
use bpfvm_engine::helpers::HelperError;
use bpfvm_engine::isa::{Insn, CALL_LOCAL, OP_CALL, OP_EXIT};
use bpfvm_engine::vmctx::{Region, VmCtx, TRAP_CALL_DEPTH, TRAP_EXIT, TRAP_NONE};

use super::{neg, MAX_LOOPS};
use crate::maps::{Map, E2BIG, EINVAL, ENOENT};
use crate::object::{FuncAddr, Shared};

/// Longest chain of tail calls (the kernel's `MAX_TAIL_CALL_CNT`).
pub const MAX_TAIL_CALLS: u32 = 33;
/// Deepest nesting of `bpf_loop` callbacks (a callback calling `bpf_loop`);
/// past it the call traps with `TRAP_CALL_DEPTH` (the kernel's verifier
/// bounds it with its 8 call frames).
pub const MAX_CALLBACK_NESTING: u32 = 8;

thread_local! {
    /// Tail calls in the chain running on this thread.
    static TAIL_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// `bpf_loop` callbacks running on this thread, nested.
    static CALLBACK_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Holds one level of a thread-local depth; leaves it when dropped.
struct DepthGuard(&'static std::thread::LocalKey<Cell<u32>>);

impl DepthGuard {
    fn enter(key: &'static std::thread::LocalKey<Cell<u32>>, max: u32) -> Option<DepthGuard> {
        key.with(|d| {
            if d.get() >= max {
                None
            } else {
                d.set(d.get() + 1);
                Some(DepthGuard(key))
            }
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        self.0.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Entry {
    /// A whole program, by program id.
    Program(u32),
    /// The callback at `pc` of program `program`.
    Callback { program: u32, pc: u32 },
}

/// The code nested runs need, compiled on one tier and cached.
pub(crate) struct Reenter {
    shared: Arc<Shared>,
    backend: Box<dyn Backend>,
    opts: CompileOptions,
    /// The helper ids the caller's table has (for verification).
    helper_ids: Vec<u32>,
    cache: Mutex<HashMap<Entry, Arc<dyn CompiledCode>>>,
}

impl Reenter {
    pub fn new(
        shared: Arc<Shared>,
        backend: Box<dyn Backend>,
        opts: CompileOptions,
        helper_ids: Vec<u32>,
    ) -> Reenter {
        Reenter {
            shared,
            backend,
            opts,
            helper_ids,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled code of `entry` (verified and compiled on first use).
    fn code(&self, entry: Entry) -> Result<Arc<dyn CompiledCode>, String> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&entry) {
            return Ok(c.clone());
        }
        let exists = |id: u32| self.helper_ids.contains(&id);
        let program = match entry {
            Entry::Program(id) => {
                let insns = self.shared.linked(id)?.insns;
                self.shared.verify_insns(id, insns, 0, &exists)
            }
            Entry::Callback { program, pc } => {
                let mut insns = vec![
                    Insn::new(OP_CALL, 0, CALL_LOCAL, 0, pc as i32 + 1),
                    Insn::new(OP_EXIT, 0, 0, 0, 0),
                ];
                insns.extend(self.shared.linked(program)?.insns);
                self.shared.verify_insns(program, insns, 2, &exists)
            }
        }
        .map_err(|e| e.to_string())?;
        let code: Arc<dyn CompiledCode> = Arc::from(
            self.backend
                .compile(&Arc::new(program), &self.opts)
                .map_err(|e| e.to_string())?,
        );
        cache.insert(entry, code.clone());
        Ok(code)
    }

    /// `bpf_tail_call(ctx, map, index)`.
    pub fn tail_call(
        &self,
        ctx: &mut VmCtx,
        map: &Map,
        arg: u64,
        index: u64,
    ) -> Result<u64, HelperError> {
        let Some(id) = u32::try_from(index).ok().and_then(|i| map.program_at(i)) else {
            return Ok(neg(ENOENT));
        };
        let Some(_depth) = DepthGuard::enter(&TAIL_DEPTH, MAX_TAIL_CALLS) else {
            return Ok(neg(E2BIG));
        };
        let code = self
            .code(Entry::Program(id))
            .map_err(|_| HelperError::Failed(EINVAL as u32))?;
        let len = if arg == ctx.mem_start {
            ctx.mem_end - ctx.mem_start
        } else {
            0
        };
        if let Some(r0) = run_nested(ctx, code.as_ref(), arg, len, None) {
            ctx.raise(TRAP_EXIT, r0, 0);
        }
        Ok(0)
    }

    /// `bpf_loop(nr_loops, callback, callback_ctx, flags)`.
    pub fn bpf_loop(
        &self,
        ctx: &mut VmCtx,
        nr: u64,
        callback: u64,
        cb_ctx: u64,
        flags: u64,
    ) -> Result<u64, HelperError> {
        let nr = nr & 0xffff_ffff;
        if flags != 0 {
            return Ok(neg(EINVAL));
        }
        if nr > MAX_LOOPS {
            return Ok(neg(E2BIG));
        }
        let Some(FuncAddr { program, pc }) = FuncAddr::decode(callback) else {
            return Err(HelperError::Failed(EINVAL as u32));
        };
        let code = self
            .code(Entry::Callback { program, pc })
            .map_err(|_| HelperError::Failed(EINVAL as u32))?;
        let Some(_depth) = DepthGuard::enter(&CALLBACK_DEPTH, MAX_CALLBACK_NESTING) else {
            ctx.raise(TRAP_CALL_DEPTH, 0, 0);
            return Ok(0);
        };
        let stack = Region {
            start: ctx.stack_bottom,
            len: ctx.stack_top - ctx.stack_bottom,
            writable: 1,
        };
        // The callbacks may write anywhere in this run's stack area.
        ctx.stack_written_lo = ctx.stack_bottom;
        for i in 0..nr {
            match run_nested(ctx, code.as_ref(), i, cb_ctx, Some(stack)) {
                None => return Ok(0),
                Some(0) => {}
                Some(_) => return Ok(i + 1),
            }
        }
        Ok(nr)
    }
}

/// Runs `code` with r1, r2 in a context derived from `parent`: `Some(r0)`
/// when it ends normally (or through a tail call), `None` when it trapped,
/// the trap then recorded in `parent`.
fn run_nested(
    parent: &mut VmCtx,
    code: &dyn CompiledCode,
    r1: u64,
    r2: u64,
    extra: Option<Region>,
) -> Option<u64> {
    let mut stack = Stack::new(code.options().call_depth);
    let mut regions = parent.regions().to_vec();
    regions.extend(extra);
    let mut ctx = VmCtx {
        mem_start: parent.mem_start,
        mem_end: parent.mem_end,
        stack_top: stack.top(),
        stack_bottom: stack.bottom(),
        regions: regions.as_ptr(),
        region_count: regions.len() as u64,
        helpers: parent.helpers,
        helper_count: parent.helper_count,
        budget: parent.budget,
        trap_code: TRAP_NONE,
        trap_size: 0,
        trap_pc: 0,
        trap_addr: 0,
        host: parent.host,
        last_region_start: 0,
        last_region_limits: [0; 8],
        check_answer: 0,
        stack_written_lo: stack.top(),
        abort_sp: 0,
    };
    // SAFETY: the context points at a fresh stack, a region list and the
    // parent's helper table and memory, all alive for the whole call (the
    // parent's run is suspended in this helper).
    let r0 = unsafe { code.call(&mut ctx, r1, r2) };
    parent.budget = ctx.budget;
    // A helper of the nested run that records nothing (a host's) may have
    // written through a pointer into this run's stack (a tail call's
    // context argument, a callback's region).
    if ctx.stack_written_lo != ctx.stack_top {
        parent.stack_written_lo = parent.stack_bottom;
    }
    match ctx.trap_code {
        TRAP_NONE => Some(r0),
        TRAP_EXIT => Some(ctx.trap_addr),
        code => {
            parent.raise(code, ctx.trap_addr, ctx.trap_size);
            None
        }
    }
}
