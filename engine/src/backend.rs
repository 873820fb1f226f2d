//! The executor interface every tier implements, and the one function that
//! runs compiled code: it lays out the stack and the `VmCtx`, calls the code
//! and turns its trap record into a [`Trap`].

use std::ffi::c_void;
use std::sync::Arc;

use crate::helpers::HelperTable;
use crate::isa::STACK_FRAME_SIZE;
use crate::program::Program;
use crate::trap::Trap;
use crate::vmctx::{Region, VmCtx, TRAP_EXIT, TRAP_NONE};

/// Default call-depth limit, in frames (the outermost function counts).
pub const DEFAULT_CALL_DEPTH: usize = 8;

/// The budget that counts instructions without limiting them: no run can
/// execute this many (at one instruction a nanosecond it would take 584
/// years), so the JIT tiers count down from it without testing for the
/// end, as the tiered runtime's tier 0 does to decide on promotion. The
/// count, and so the budget left, are the same as with a test.
pub const COUNT_ONLY: u64 = u64::MAX;

/// How a program is compiled. Every tier honours every field.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CompileOptions {
    /// Check every load, store and atomic against the allowed regions.
    /// Unchecked code trusts the program: a wild access can crash the host.
    pub checked: bool,
    /// Initial instruction budget; `None` disables counting. A budget of
    /// [`COUNT_ONLY`] counts without a limit.
    pub budget: Option<u64>,
    /// Maximum number of call frames (the stack is `call_depth * 512` bytes).
    pub call_depth: usize,
    /// Optimisation level for tiers that have one (0 to 3).
    pub opt_level: u8,
    /// Array maps whose lookups a tier may inline: a `call 1` whose r1 is
    /// known at compile time to hold one of these handles (an `lddw` of the
    /// map earlier in the same basic block) may compute the value address
    /// itself instead of calling the helper. Whoever compiles sets this only
    /// when helper 1 is the runtime's `map_lookup_elem` over these maps and
    /// every run has their values as regions ([`ArrayMapLayout`]).
    pub array_maps: Vec<ArrayMapLayout>,
}

/// Where an array map keeps its values: `value i` (for `i < max_entries`)
/// is at `values + i * stride`; the key is a 4-byte little-endian index.
/// The `max_entries * stride` bytes at `values` are a region of every run
/// of code compiled with the layout (writable when `writable`): a tier may
/// leave accesses it can prove to be inside them unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArrayMapLayout {
    /// The value `lddw` of the map loads (what helpers take as the map).
    pub handle: u64,
    /// Address of value 0.
    pub values: u64,
    pub stride: u64,
    pub max_entries: u32,
    /// Whether programs may write the values (not `BPF_F_RDONLY_PROG`).
    pub writable: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            checked: true,
            budget: None,
            call_depth: DEFAULT_CALL_DEPTH,
            opt_level: 3,
            array_maps: Vec::new(),
        }
    }
}

/// Why a tier could not compile a program.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("{tier}: {message}")]
    Failed { tier: &'static str, message: String },
    #[error("call depth must be between 1 and {max}, got {got}")]
    BadCallDepth { got: usize, max: usize },
}

/// Largest accepted call-depth limit.
pub const MAX_CALL_DEPTH: usize = 1024;

/// A tier: turns a verified program into something that runs.
pub trait Backend: Send + Sync {
    /// The tier's name (`interp`, `cranelift`, `llvm`, ...).
    fn name(&self) -> &'static str;
    fn compile(
        &self,
        program: &Arc<Program>,
        opts: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError>;
}

/// Compiled code of one program. Dropping it frees the code.
pub trait CompiledCode: Send + Sync {
    /// The tier that made it.
    fn tier(&self) -> &'static str;
    /// The options it was compiled with.
    fn options(&self) -> &CompileOptions;
    /// Runs the program with r1 and r2 set, r10 = `ctx.stack_top`, and
    /// returns r0; the trap record in `ctx` says whether it trapped.
    ///
    /// # Safety
    /// `ctx` must be a context prepared by [`execute`]: its stack, memory,
    /// regions and helper table valid for the whole call. r1 and r2 must
    /// be the input's start and length (`ctx.mem_start` and
    /// `ctx.mem_end - ctx.mem_start`), or r2 must be 0, or the program's
    /// entry function must make no memory access (the `bpf_loop` callback
    /// stub, `call; exit`): a JIT leaves accesses unchecked when it can
    /// prove them inside the length that tests of r2 establish (see
    /// [`crate::facts`]).
    unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64;
}

/// Checks a compile option set before a tier uses it.
pub fn validate_options(opts: &CompileOptions) -> Result<(), CompileError> {
    if opts.call_depth == 0 || opts.call_depth > MAX_CALL_DEPTH {
        return Err(CompileError::BadCallDepth {
            got: opts.call_depth,
            max: MAX_CALL_DEPTH,
        });
    }
    Ok(())
}

/// What a run may touch besides its input and stack.
pub struct RunEnv<'a> {
    pub helpers: &'a HelperTable,
    pub regions: &'a [Region],
    /// Passed to helpers as `ctx.host`.
    pub host: *mut c_void,
}

/// The end of a run that reached `exit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub r0: u64,
    /// Instructions left of the budget, when one was set.
    pub budget_left: Option<u64>,
}

/// A run's end, successful or not, with what a differential test compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    pub result: Result<u64, Trap>,
    pub budget_left: Option<u64>,
    /// The whole stack area after the run (outermost frame at the end).
    pub stack: Vec<u8>,
}

/// The stack area of one run: `call_depth` frames of 512 bytes, zeroed,
/// 16-byte aligned.
pub struct Stack {
    words: Vec<u128>,
    /// The lowest word helpers may have written since the last clear
    /// (`words.len()`: none).
    helper_low: usize,
}

impl Stack {
    pub fn new(call_depth: usize) -> Stack {
        let words = call_depth * STACK_FRAME_SIZE / 16;
        Stack {
            words: vec![0u128; words],
            helper_low: words,
        }
    }
    pub fn bottom(&mut self) -> u64 {
        self.words.as_mut_ptr() as u64
    }
    pub fn top(&mut self) -> u64 {
        self.bottom() + (self.words.len() * 16) as u64
    }
    /// Number of 512-byte frames the area holds.
    pub fn frames(&self) -> usize {
        self.words.len() * 16 / STACK_FRAME_SIZE
    }
    /// Zeroes the whole area (the state every run starts from).
    pub fn clear(&mut self) {
        self.words.fill(0);
        self.helper_low = self.words.len();
    }
    /// Zeroes the top `bytes` bytes (rounded up to whole 16-byte words),
    /// and whatever helpers may have written since the last clear: enough
    /// after a run whose own accesses could reach no lower
    /// ([`crate::program::Program::stack_bytes_written`]).
    pub fn clear_top(&mut self, bytes: usize) {
        let len = self.words.len();
        let words = bytes.div_ceil(16).min(len);
        let start = (len - words).min(self.helper_low);
        if start == len {
            // Nothing written (no call to `memset` for nothing).
            return;
        }
        self.words[start..].fill(0);
        // Stored only when it changes: callers move the `Stack` right
        // after this, and a 16-byte load of a field just written with 8
        // bytes stalls (tiered nop +6 ns, found with perf).
        if self.helper_low != len {
            self.helper_low = len;
        }
    }
    /// Records that helpers may have written the area from address `lo`
    /// up (a run's [`VmCtx::stack_written_lo`]), for [`Stack::clear_top`].
    pub fn note_helper_writes(&mut self, lo: u64) {
        let bottom = self.words.as_ptr() as u64;
        let word = (lo.saturating_sub(bottom) / 16) as usize;
        self.helper_low = self.helper_low.min(word);
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// Runs compiled code over `mem` (r1 = its address, r2 = its length; both 0
/// when `mem` is empty) with a fresh zeroed stack.
pub fn execute(code: &dyn CompiledCode, env: &RunEnv, mem: &mut [u8]) -> Result<Outcome, Trap> {
    let mut stack = Stack::new(code.options().call_depth);
    execute_on(code, env, mem, &mut stack)
}

/// Like [`execute`] but also returns the stack, for differential tests.
pub fn execute_report(code: &dyn CompiledCode, env: &RunEnv, mem: &mut [u8]) -> RunReport {
    let mut stack = Stack::new(code.options().call_depth);
    let r = execute_on(code, env, mem, &mut stack);
    let budget_left = match &r {
        Ok(o) => o.budget_left,
        Err(_) => None,
    };
    RunReport {
        result: r.map(|o| o.r0),
        budget_left,
        stack: stack.bytes(),
    }
}

/// Runs on a caller-provided stack (which must hold `call_depth` frames and
/// be zeroed if the caller wants the documented initial state).
pub fn execute_on(
    code: &dyn CompiledCode,
    env: &RunEnv,
    mem: &mut [u8],
    stack: &mut Stack,
) -> Result<Outcome, Trap> {
    let opts = code.options();
    let (r1, r2) = if mem.is_empty() {
        (0, 0)
    } else {
        (mem.as_mut_ptr() as u64, mem.len() as u64)
    };
    let slots = env.helpers.slots();
    let mut ctx = VmCtx {
        mem_start: r1,
        mem_end: r1 + r2,
        stack_top: stack.top(),
        stack_bottom: stack.bottom(),
        regions: env.regions.as_ptr(),
        region_count: env.regions.len() as u64,
        helpers: slots.as_ptr(),
        helper_count: slots.len() as u64,
        budget: opts.budget.unwrap_or(0),
        trap_code: TRAP_NONE,
        trap_size: 0,
        trap_pc: 0,
        trap_addr: 0,
        host: env.host,
        last_region_start: 0,
        last_region_limits: [0; 8],
        check_answer: 0,
        stack_written_lo: stack.top(),
        abort_sp: 0,
    };
    // SAFETY: the context points at `mem`, `stack`, the regions and the
    // helper table, all borrowed for the duration of this call.
    let r0 = unsafe { code.call(&mut ctx, r1, r2) };
    if ctx.stack_written_lo != ctx.stack_top {
        stack.note_helper_writes(ctx.stack_written_lo);
    }
    outcome(&ctx, r0, opts)
}

/// The end of a run from its context after the code returned `r0`: a
/// trap, or r0 (a helper's early exit, `TRAP_EXIT`, carries r0 in `trap_addr`).
pub fn outcome(ctx: &VmCtx, r0: u64, opts: &CompileOptions) -> Result<Outcome, Trap> {
    if ctx.trap_code == TRAP_EXIT {
        return Ok(Outcome {
            r0: ctx.trap_addr,
            budget_left: opts.budget.map(|_| ctx.budget),
        });
    }
    match Trap::from_ctx(ctx, opts.call_depth) {
        Some(t) => Err(t),
        None => Ok(Outcome {
            r0,
            budget_left: opts.budget.map(|_| ctx.budget),
        }),
    }
}
