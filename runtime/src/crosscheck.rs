//! Cross-checking: a call of promoted code is run again on a reference tier
//! over the same input, with the helper results of the first run replayed,
//! and the two outcomes compared.
//!
//! Both runs use the same memory buffer and the same stack area (restored
//! in between), so addresses the program computes are equal in both.
//! Helpers are wrapped so that, while a run's `VmCtx::host` points to a
//! [`RunState`], the first run records every helper call (id, arguments,
//! result) and the reference run gets the recorded results back without
//! calling the real helper (no side effect happens twice). A reference run
//! that makes a different helper call is a mismatch. Helpers that write
//! program memory through pointers are not replayed (their writes are not
//! recorded); keep such programs off cross-checking.

use std::sync::Arc;

use bpfvm_engine::helpers::{HelperClosure, HelperError, Helpers};
use bpfvm_engine::isa::Insn;
use bpfvm_engine::trap::Trap;
use bpfvm_engine::vmctx::VmCtx;

/// Helper error code a replaying run gets when it calls a helper the first
/// run did not call at that point.
pub const REPLAY_DIVERGED: u32 = 0xc0de_0001;

/// One recorded helper call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperCall {
    pub id: u32,
    pub args: [u64; 5],
    pub result: Result<u64, HelperError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Record,
    Replay,
}

/// Per-run state the helper wrappers find through `VmCtx::host`.
pub(crate) struct RunState {
    pub mode: Mode,
    pub log: Vec<HelperCall>,
    pub pos: usize,
    pub diverged: bool,
}

impl RunState {
    pub fn recording() -> RunState {
        RunState {
            mode: Mode::Record,
            log: Vec::new(),
            pos: 0,
            diverged: false,
        }
    }
}

/// Wraps every helper so that it records or replays when a run carries a
/// [`RunState`], and calls straight through when it does not.
pub(crate) fn recording_helpers(helpers: &Helpers) -> Helpers {
    let mut out = Helpers::new();
    for (id, name, f) in helpers.iter() {
        let wrapped: Arc<HelperClosure> = Arc::new(move |ctx: &mut VmCtx, args: [u64; 5]| {
            let state = ctx.host as *mut RunState;
            if state.is_null() {
                return f(ctx, args);
            }
            // SAFETY: a non-null host pointer is the RunState of the run in
            // progress, owned by `Program::run` for the whole call, and only
            // this thread touches it.
            let state = unsafe { &mut *state };
            match state.mode {
                Mode::Record => {
                    let result = f(ctx, args);
                    state.log.push(HelperCall { id, args, result });
                    result
                }
                Mode::Replay => match state.log.get(state.pos) {
                    Some(call) if call.id == id && call.args == args => {
                        state.pos += 1;
                        call.result
                    }
                    _ => {
                        state.diverged = true;
                        Err(HelperError::Failed(REPLAY_DIVERGED))
                    }
                },
            }
        });
        // Replaying writes nothing; recording writes what `f` writes.
        out.register_shared_as(id, name, wrapped, helpers.records_stack_writes(id));
    }
    out
}

/// What one run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    pub tier: &'static str,
    pub result: Result<u64, Trap>,
    pub mem: Vec<u8>,
    pub helper_calls: usize,
}

/// A cross-check that failed: the program, its input and both outcomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MismatchReport {
    pub insns: Vec<Insn>,
    pub input: Vec<u8>,
    pub promoted: RunOutcome,
    pub reference: RunOutcome,
    /// The first difference, in words.
    pub difference: String,
}

impl MismatchReport {
    /// The report as a conformance `.data` file: the program (`-- raw`), the
    /// input (`-- mem`) and the reference tier's result, so that it becomes
    /// a regression test by being saved under `conformance/corpus/`.
    pub fn to_data_file(&self) -> String {
        let mut s = format!(
            "# Cross-check mismatch: {} gave {:?}, {} gave {:?}.\n# {}\n-- raw\n",
            self.promoted.tier,
            self.promoted.result,
            self.reference.tier,
            self.reference.result,
            self.difference
        );
        for i in &self.insns {
            s.push_str(&format!("0x{:016x}\n", i.to_u64()));
        }
        if !self.input.is_empty() {
            s.push_str("-- mem\n");
            for chunk in self.input.chunks(16) {
                let line: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                s.push_str(&line.join(" "));
                s.push('\n');
            }
        }
        match &self.reference.result {
            Ok(v) => s.push_str(&format!("-- result\n0x{v:x}\n")),
            Err(t) => s.push_str(&format!("-- error\n{t}\n")),
        }
        s
    }
}

impl std::fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cross-check mismatch: {} ({:?}) vs {} ({:?}): {}",
            self.promoted.tier,
            self.promoted.result,
            self.reference.tier,
            self.reference.result,
            self.difference
        )
    }
}

/// The first difference between two outcomes, if any.
pub(crate) fn difference(a: &RunOutcome, b: &RunOutcome, replay_complete: bool) -> Option<String> {
    if a.result != b.result {
        return Some(format!("result {:?} vs {:?}", a.result, b.result));
    }
    if let Some(i) = (0..a.mem.len().min(b.mem.len())).find(|&i| a.mem[i] != b.mem[i]) {
        return Some(format!(
            "memory byte {i}: {:#04x} vs {:#04x}",
            a.mem[i], b.mem[i]
        ));
    }
    if !replay_complete {
        return Some(format!(
            "helper calls differ: {} recorded, the reference made different calls",
            a.helper_calls
        ));
    }
    None
}
