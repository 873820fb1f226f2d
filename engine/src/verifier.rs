//! The load-time (structural) verifier, producing a [`Program`].
//!
//! It checks what every executor relies on, so that none of them needs to
//! check it again at run time: every slot decodes with its unused fields
//! zero, registers are r0 to r10 and r10 is never written, jump targets lie
//! inside the program and inside the function they start in and never in
//! the second slot of a `lddw`, local calls land on an instruction, every
//! called helper id is registered, every function ends in `exit` or a jump,
//! an `exit` is reachable, and the program is within the size limit.
//!
//! Functions are the contiguous ranges that start at pc 0 and at each local
//! call target (and each `lddw` function-pointer target), as in the kernel.

use crate::disasm::format_instr;
use crate::instr::{decode, DecodeError, Instr, LddwPseudo};
use crate::isa::{decode_program, Insn, TruncatedBytecode, FRAME_POINTER, REG_COUNT};
use crate::program::{Function, Program};

/// Default program size limit, in slots (the kernel's limit for privileged loaders).
pub const DEFAULT_MAX_INSNS: usize = 1_000_000;

/// A load-time rejection, naming the pc, the instruction and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Truncated(#[from] TruncatedBytecode),
    #[error("program is empty")]
    Empty,
    #[error("program has {len} instructions, more than the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("pc {pc}: `{text}`: {reason}")]
    At {
        pc: usize,
        /// The instruction as the disassembler prints it.
        text: String,
        reason: Reason,
    },
}

impl VerifyError {
    /// The pc the error is about, if it is about one instruction.
    pub fn pc(&self) -> Option<usize> {
        match self {
            VerifyError::At { pc, .. } => Some(*pc),
            VerifyError::Truncated(t) => Some(t.offset / 8),
            _ => None,
        }
    }
}

/// Why one instruction was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("register r{0} does not exist (r0 to r10)")]
    BadRegister(u8),
    #[error("r10 is read-only")]
    WritesFramePointer,
    #[error("jump target {target} is outside the program (0 to {len})")]
    TargetOutOfRange { target: i64, len: usize },
    #[error("jump target {0} is the second slot of a lddw")]
    TargetInLddw(i64),
    #[error("jump to {target} leaves the function that spans {start} to {end}")]
    TargetOutsideFunction {
        target: i64,
        start: usize,
        end: usize,
    },
    #[error("call target {target} is outside the program (0 to {len})")]
    CallOutOfRange { target: i64, len: usize },
    #[error("call target {0} is the second slot of a lddw")]
    CallIntoLddw(i64),
    #[error("helper {0} is not registered")]
    UnknownHelper(u32),
    #[error(
        "the function falls through past its last instruction (it must end in exit or a jump)"
    )]
    FallsThrough,
    #[error("no exit is reachable from the program's entry")]
    NoExit,
    #[error("lddw pseudo source {kind} cannot be resolved: {why}")]
    Lddw { kind: u8, why: String },
}

/// Resolves `lddw` pseudo sources (map fds, map values, variable and code
/// addresses) to the 64-bit value the program sees, at load time.
pub trait LddwResolver {
    /// `Err` explains why the reference is unknown.
    fn resolve(&self, pseudo: &LddwPseudo) -> Result<u64, String>;

    /// Like [`LddwResolver::resolve`], knowing the pc of the `lddw` (so
    /// that a `BPF_PSEUDO_FUNC` reference, relative to it, can be turned
    /// into a function). The verifier calls this one; by default it
    /// forwards to `resolve`.
    fn resolve_at(&self, pc: usize, pseudo: &LddwPseudo) -> Result<u64, String> {
        let _ = pc;
        self.resolve(pseudo)
    }
}

/// What the verifier accepts.
pub struct VerifyOptions<'a> {
    /// Maximum number of slots.
    pub max_insns: usize,
    /// Whether a helper id is registered.
    pub helper_exists: &'a dyn Fn(u32) -> bool,
    /// Resolver for `lddw` pseudo sources; `None` rejects them.
    pub lddw: Option<&'a dyn LddwResolver>,
}

impl Default for VerifyOptions<'_> {
    fn default() -> Self {
        VerifyOptions {
            max_insns: DEFAULT_MAX_INSNS,
            helper_exists: &|_| true,
            lddw: None,
        }
    }
}

/// Verifies bytecode and builds the program every executor runs.
pub fn verify_bytes(bytes: &[u8], opts: &VerifyOptions) -> Result<Program, VerifyError> {
    verify(decode_program(bytes)?, opts)
}

/// Verifies instruction slots and builds the program every executor runs.
pub fn verify(insns: Vec<Insn>, opts: &VerifyOptions) -> Result<Program, VerifyError> {
    if insns.is_empty() {
        return Err(VerifyError::Empty);
    }
    if insns.len() > opts.max_insns {
        return Err(VerifyError::TooLarge {
            len: insns.len(),
            limit: opts.max_insns,
        });
    }
    let len = insns.len();
    let at = |pc: usize, reason: Reason| VerifyError::At {
        pc,
        text: format_instr(&insns, pc),
        reason,
    };

    // Pass 1: decode every slot, check fields and registers.
    let mut instrs = Vec::with_capacity(len);
    let mut pc = 0;
    while pc < len {
        let mut ins = decode(&insns, pc).map_err(|e| at(pc, e.into()))?;
        check_registers(&ins).map_err(|r| at(pc, r))?;
        if let Instr::CallHelper { id } = ins {
            if !(opts.helper_exists)(id) {
                return Err(at(pc, Reason::UnknownHelper(id)));
            }
        }
        if let Instr::Lddw {
            value,
            pseudo: Some(p),
            ..
        } = &mut ins
        {
            *value = resolve_lddw(p, pc, len, opts).map_err(|r| at(pc, r))?;
        }
        let slots = ins.slots();
        instrs.push(ins);
        if slots == 2 {
            instrs.push(Instr::LddwTail);
        }
        pc += slots;
    }

    // Pass 2: call targets define the functions.
    let mut starts = vec![0usize];
    for (pc, ins) in instrs.iter().enumerate() {
        let target = match *ins {
            Instr::CallLocal { target } => target,
            Instr::Lddw {
                pseudo:
                    Some(LddwPseudo {
                        kind: crate::isa::PSEUDO_FUNC,
                        imm,
                        ..
                    }),
                ..
            } => pc as i64 + 1 + imm as i64,
            _ => continue,
        };
        if target < 0 || target >= len as i64 {
            return Err(at(pc, Reason::CallOutOfRange { target, len }));
        }
        if instrs[target as usize] == Instr::LddwTail {
            return Err(at(pc, Reason::CallIntoLddw(target)));
        }
        starts.push(target as usize);
    }
    starts.sort_unstable();
    starts.dedup();
    let functions: Vec<Function> = starts
        .iter()
        .enumerate()
        .map(|(k, &start)| Function {
            start,
            end: starts.get(k + 1).copied().unwrap_or(len),
        })
        .collect();

    // Pass 3: jumps stay inside their function; functions do not fall through.
    for f in &functions {
        for pc in f.start..f.end {
            let ins = &instrs[pc];
            if let Some(target) = ins.branch_target() {
                if target < 0 || target >= len as i64 {
                    return Err(at(pc, Reason::TargetOutOfRange { target, len }));
                }
                if instrs[target as usize] == Instr::LddwTail {
                    return Err(at(pc, Reason::TargetInLddw(target)));
                }
                if (target as usize) < f.start || target as usize >= f.end {
                    return Err(at(
                        pc,
                        Reason::TargetOutsideFunction {
                            target,
                            start: f.start,
                            end: f.end - 1,
                        },
                    ));
                }
            }
        }
        let last = last_instr(&instrs, f);
        if instrs[last].falls_through() {
            return Err(at(last, Reason::FallsThrough));
        }
    }

    // Pass 4: an exit must be reachable from the entry.
    if !exit_reachable(&instrs) {
        return Err(VerifyError::At {
            pc: 0,
            text: format_instr(&insns, 0),
            reason: Reason::NoExit,
        });
    }

    Ok(Program::new(insns, instrs, functions))
}

/// The pc of the last instruction of a function (skipping a trailing lddw tail).
fn last_instr(instrs: &[Instr], f: &Function) -> usize {
    let last = f.end - 1;
    if instrs[last] == Instr::LddwTail {
        last - 1
    } else {
        last
    }
}

fn check_registers(ins: &Instr) -> Result<(), Reason> {
    for r in ins.named_regs() {
        if r as usize >= REG_COUNT {
            return Err(Reason::BadRegister(r));
        }
    }
    if ins.written_reg() == Some(FRAME_POINTER) {
        return Err(Reason::WritesFramePointer);
    }
    Ok(())
}

fn resolve_lddw(
    p: &LddwPseudo,
    pc: usize,
    len: usize,
    opts: &VerifyOptions,
) -> Result<u64, Reason> {
    if p.kind == crate::isa::PSEUDO_FUNC {
        // A code address: the value is the target's pc, which executors
        // treat as opaque; the target is checked with the call targets.
        let target = pc as i64 + 1 + p.imm as i64;
        if target < 0 || target >= len as i64 {
            return Err(Reason::CallOutOfRange { target, len });
        }
    }
    match opts.lddw {
        Some(r) => r
            .resolve_at(pc, p)
            .map_err(|why| Reason::Lddw { kind: p.kind, why }),
        None => Err(Reason::Lddw {
            kind: p.kind,
            why: "no host hook is registered for it".into(),
        }),
    }
}

/// Whether an `exit` of the main function is reachable from pc 0, following
/// branches and fall-through (a callee's exit only returns to its caller).
fn exit_reachable(instrs: &[Instr]) -> bool {
    let mut seen = vec![false; instrs.len()];
    let mut work = vec![0usize];
    while let Some(pc) = work.pop() {
        if pc >= instrs.len() || seen[pc] {
            continue;
        }
        seen[pc] = true;
        let ins = &instrs[pc];
        if *ins == Instr::Exit {
            return true;
        }
        if let Some(t) = ins.branch_target() {
            work.push(t as usize);
        }
        if ins.falls_through() {
            work.push(pc + ins.slots());
        }
    }
    false
}
