//! bpfvm tier 0: a Cranelift JIT.
//!
//! Each eBPF function becomes one Cranelift function
//! `(ctx, r1, r2, r3, r4, r5, r10) -> r0` (see `translate`); the program
//! is entered by calling the first one with r10 at the top of the stack.
//! A small function is translated at its call sites instead (`inline`).
//! A large function may be cut into pieces, each a Cranelift function of
//! its own (`pieces`). The functions and pieces compile at the same time
//! on the compiling thread and helper threads (`offload`). All of a
//! program's code lives in one mapping, freed when the [`CraneliftCode`]
//! is dropped.

mod abort;
mod code_memory;
mod inline;
mod offload;
mod pieces;
mod slow_path;
mod translate;

use std::cell::RefCell;
use std::collections::hash_map::Entry as Slot;
use std::collections::HashMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use abort::Entry;
use bpfvm_engine::backend::{
    validate_options, Backend, CompileError, CompileOptions, CompiledCode,
};
use bpfvm_engine::instr::Instr;
use bpfvm_engine::program::Program;
use bpfvm_engine::vmctx::VmCtx;
use code_memory::{CodeMemory, FunctionCode};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{
    AbiParam, Block, ExtFuncData, ExternalName, Function, Inst, Opcode, Signature, SourceLoc,
    UserExternalName, UserExternalNameRef, UserFuncName,
};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

use inline::InlinePlan;
use pieces::{Piece, PIECE_REGISTERS};
use translate::{Externals, Translated, Translator};

pub use inline::{inline_slots, inlined_functions, set_inline_slots, DEFAULT_INLINE_SLOTS};
pub use offload::{set_helper_threads, MAX_HELPERS};
pub use pieces::force_pieces;

const TIER: &str = "cranelift";

/// The Cranelift tier.
#[derive(Clone, Copy, Debug, Default)]
pub struct CraneliftBackend;

impl Backend for CraneliftBackend {
    fn name(&self) -> &'static str {
        TIER
    }

    fn compile(
        &self,
        program: &Arc<Program>,
        opts: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        validate_options(opts)?;
        let (memory, entry, aborts, tables) = build(program, Some(program), opts, None)?;
        Ok(Box::new(CraneliftCode {
            _memory: memory,
            _tables: tables,
            entry,
            aborts,
            opts: opts.clone(),
        }))
    }
}

/// The Cranelift IR of a program, before and after optimisation.
pub struct ClifText {
    pub before: String,
    pub after: String,
    /// Cranelift's listing of the machine instructions after register
    /// allocation.
    pub machine: String,
}

/// Translates and compiles a program, returning its Cranelift IR (for
/// `bpfvm emit clif`).
pub fn clif_text(program: &Program, opts: &CompileOptions) -> Result<ClifText, CompileError> {
    validate_options(opts)?;
    let mut text = ClifText {
        before: String::new(),
        after: String::new(),
        machine: String::new(),
    };
    build(program, None, opts, Some(&mut text))?;
    Ok(text)
}

/// A compiled program. Dropping it unmaps its machine code.
pub struct CraneliftCode {
    entry: Entry,
    /// Whether the code may abandon a run ([`abort`]): entered through
    /// [`abort::enter`] then, else called directly (which saves a run
    /// about a nanosecond).
    aborts: bool,
    opts: CompileOptions,
    /// Declared last so the entry pointer is never used after unmapping.
    _memory: CodeMemory,
    /// The tables of the code's group checks.
    _tables: GroupTables,
}

// SAFETY: the machine code is immutable after placement and may be called
// from any thread; `CodeMemory` is only unmapped on drop, when no call can
// be running (drop takes the value by `&mut`).
unsafe impl Send for CraneliftCode {}
// SAFETY: as above; `call` only reads `entry`.
unsafe impl Sync for CraneliftCode {}

impl CompiledCode for CraneliftCode {
    fn tier(&self) -> &'static str {
        TIER
    }

    fn options(&self) -> &CompileOptions {
        &self.opts
    }

    unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64 {
        // SAFETY: the caller guarantees a prepared context; the entry was
        // generated for this ABI, with r10 in its last argument.
        unsafe {
            let r10 = (*ctx).stack_top;
            if self.aborts {
                abort::enter(self.entry, ctx, r1, r2, r10)
            } else {
                (self.entry)(ctx, r1, r2, 0, 0, 0, r10)
            }
        }
    }
}

fn fail(message: impl std::fmt::Display) -> CompileError {
    CompileError::Failed {
        tier: TIER,
        message: message.to_string(),
    }
}

/// The host ISA for optimisation level `level` (0 to 3), built once per
/// setting:
///
/// - 0: no optimisation, the single-pass register allocator, and the
///   cheapest form of each memory check (see `Translator::checked_addr`):
///   the least compile work;
/// - 1: no optimisation, the backtracking register allocator: tier 0's
///   level in the runtime. Cranelift's mid-end (e-graph rewrites, GVN,
///   LICM) costs about a fifth of a compile and made the benchmark
///   programs run no faster (BENCHMARKS.md, session 10): the translator
///   already folds what matters (frame offsets, constant bounds);
/// - 2 and 3: Cranelift's `speed`, the mid-end included.
///
/// Each is built at its first use (a process that compiles at one level
/// builds one: the first compile in a process pays for it).
fn isa(level: u8) -> Result<OwnedTargetIsa, CompileError> {
    static ISAS: [OnceLock<Result<OwnedTargetIsa, String>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let k = usize::from(level.min(2));
    let isa = ISAS[k].get_or_init(|| {
        let make = |opt: &str, regalloc: &str| -> Result<OwnedTargetIsa, String> {
            let mut flags = settings::builder();
            let set = |f: &mut settings::Builder, k: &str, v: &str| {
                f.set(k, v).map_err(|e| format!("setting {k}={v}: {e}"))
            };
            set(&mut flags, "opt_level", opt)?;
            set(&mut flags, "regalloc_algorithm", regalloc)?;
            set(&mut flags, "use_colocated_libcalls", "false")?;
            set(&mut flags, "is_pic", "false")?;
            // Block start offsets, to place loop headers (`block_offset`).
            set(&mut flags, "machine_code_cfg_info", "true")?;
            let verify = if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            };
            set(&mut flags, "enable_verifier", verify)?;
            let builder =
                cranelift_native::builder().map_err(|e| format!("host not supported: {e}"))?;
            builder
                .finish(settings::Flags::new(flags))
                .map_err(|e| format!("building the host ISA: {e}"))
        };
        match k {
            0 => make("none", "single_pass"),
            1 => make("none", "backtracking"),
            _ => make("speed", "backtracking"),
        }
    });
    match isa {
        Ok(isa) => Ok(isa.clone()),
        Err(e) => Err(fail(e)),
    }
}

/// The host ISA that tier 0 compiles with at optimisation level `level`
/// (see `isa`), for tools that measure Cranelift beside tier 0 with the
/// same flags (the bench's floor, `bpfvm_bench::floor`).
pub fn host_isa(level: u8) -> Result<OwnedTargetIsa, CompileError> {
    isa(level)
}

fn signature(isa: &dyn TargetIsa, params: usize) -> Signature {
    let mut sig = Signature::new(isa.default_call_conv());
    for _ in 0..params {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// Cranelift's per-function scratch state, kept per thread so that each
/// compile reuses the allocations of the last one.
struct Scratch {
    ctx: Context,
    fctx: FunctionBuilderContext,
}

/// The tables of a program's group checks, at the addresses its code uses.
type GroupTables = Vec<Box<[u64]>>;

/// A program's compiled functions, and the tables of their group checks.
type Compiled = (Vec<FunctionCode>, GroupTables);

thread_local! {
    static SCRATCH: RefCell<Option<Box<Scratch>>> = const { RefCell::new(None) };
}

/// Compiles `program` into executable memory: with `text`, recording
/// its IR; else with `shared` (the same program), letting helper threads
/// compile some of its functions. Also says whether the code may abandon
/// a run ([`abort`]).
fn build(
    program: &Program,
    shared: Option<&Arc<Program>>,
    opts: &CompileOptions,
    text: Option<&mut ClifText>,
) -> Result<(CodeMemory, Entry, bool, GroupTables), CompileError> {
    let (compiled, tables) = compile_functions(program, shared, opts, text)?;
    let aborts = abort::ABORTS && compiled.iter().any(|c| c.may_abort);
    let align = isa(opts.opt_level)?.function_alignment().preferred as usize;
    let (memory, addrs) = CodeMemory::place(&compiled, align).map_err(fail)?;
    let entry_addr = compiled
        .iter()
        .position(|c| c.index == 0)
        .map(|k| addrs[k])
        .ok_or_else(|| fail("the program has no function at pc 0"))?;
    // SAFETY: the function at pc 0 was generated with exactly the `Entry`
    // signature in the platform's default calling convention (the C one),
    // and `memory` is now executable.
    let entry = unsafe { std::mem::transmute::<usize, Entry>(entry_addr) };
    Ok((memory, entry, aborts, tables))
}

/// One function's machine code and the tables of its group checks.
type CompiledFunction = (FunctionCode, GroupTables);

/// Translates and compiles each function of `program`, cut into pieces
/// where there are helper threads to compile them ([`pieces`]): the
/// largest piece on this thread and, given `shared` (the same program, for
/// other threads), the others offered to the helpers meanwhile (see
/// [`offload`]; run here if no helper has started them). Even a function
/// of a few slots is worth offering: its compile has a fixed cost of tens
/// of µs (BENCHMARKS.md, session 16). The result is what compiling them in
/// turn gives, failures included: the first piece in program order that
/// fails decides the error, or the panic.
fn compile_functions(
    program: &Program,
    shared: Option<&Arc<Program>>,
    opts: &CompileOptions,
    mut text: Option<&mut ClifText>,
) -> Result<Compiled, CompileError> {
    // Small functions translated where they are called, and not alone.
    let inline = Arc::new(InlinePlan::of(program));
    let alone = |f: usize| !inline.is_inlined(f);
    // Functions cut where the threads would otherwise wait for one.
    let counts = match pieces::forced() {
        Some((n, min_slots)) => vec![(n, min_slots); program.functions().len()],
        None => {
            let sizes: Vec<usize> = (0..program.functions().len())
                .map(|f| if alone(f) { inline.sizes[f] } else { 0 })
                .collect();
            pieces::piece_counts(&sizes, 1 + offload::helper_threads())
                .into_iter()
                .map(|n| (n, pieces::MIN_PIECE_SLOTS))
                .collect()
        }
    };
    let pieces: Arc<Vec<Vec<Piece>>> = Arc::new(
        program
            .functions()
            .iter()
            .zip(counts)
            .enumerate()
            .map(|(k, (&f, (n, min_slots)))| match alone(k) {
                true => pieces::plan(program, f, n, min_slots),
                false => Vec::new(),
            })
            .collect(),
    );
    // Every piece, in program order: (function, piece).
    let units: Vec<(usize, usize)> = pieces
        .iter()
        .enumerate()
        .flat_map(|(f, p)| (0..p.len()).map(move |j| (f, j)))
        .collect();
    let slots = |u: usize| pieces[units[u].0][units[u].1].slots();
    let mut order: Vec<usize> = (0..units.len()).collect();
    // Largest first; the entry function first among equals.
    order.sort_by_key(|&u| std::cmp::Reverse(slots(u)));
    let (offered, offers): (Vec<usize>, Vec<_>) = match (shared, &text) {
        (Some(shared), None) => order
            .iter()
            .skip(1)
            .map(|&u| {
                let (program, opts) = (Arc::clone(shared), opts.clone());
                let (pieces, (f, j)) = (Arc::clone(&pieces), units[u]);
                let inline = Arc::clone(&inline);
                let offer = offload::offer(move || {
                    #[cfg(test)]
                    tests::note_compiling_thread(&program);
                    with_scratch(|s| compile_one(&program, &opts, &inline, &pieces[f], j, s, None))
                });
                (u, offer)
            })
            .unzip(),
        _ => (Vec::new(), Vec::new()),
    };
    // All in program order unless some were offered (when printing, so
    // that the listing reads in it).
    let own = if offered.is_empty() {
        0..units.len()
    } else {
        order[0]..order[0] + 1
    };
    let mut done: Vec<Option<std::thread::Result<_>>> = units.iter().map(|_| None).collect();
    for u in own {
        let text = text.as_deref_mut();
        let (f, j) = units[u];
        done[u] = Some(catch_unwind(AssertUnwindSafe(|| {
            with_scratch(|s| compile_one(program, opts, &inline, &pieces[f], j, s, text))
        })));
    }
    // Then what no helper has started, last offered first (helpers take
    // the queue from its front), then what they have.
    for offer in offers.iter().rev() {
        offer.run_here_if_queued();
    }
    for (u, offer) in offered.into_iter().zip(offers) {
        done[u] = Some(offer.wait());
    }
    let mut compiled = Vec::with_capacity(done.len());
    let mut tables = Vec::new();
    for result in done.into_iter() {
        match result.expect("every piece compiled") {
            Ok(Ok((code, t))) => {
                compiled.push(code);
                tables.extend(t);
            }
            Ok(Err(e)) => return Err(e),
            Err(panic) => resume_unwind(panic),
        }
    }
    Ok((compiled, tables))
}

/// Runs `f` with this thread's scratch state.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| {
        // Compiles do not nest; should one ever, it gets fresh state.
        let mut taken = cell.try_borrow_mut().ok().and_then(|mut s| s.take());
        // Boxed: `Context` is kilobytes, moved out of the cell and back in
        // every compile.
        let scratch = taken.get_or_insert_with(|| {
            Box::new(Scratch {
                ctx: Context::new(),
                fctx: FunctionBuilderContext::new(),
            })
        });
        let result = f(scratch);
        scratch.ctx.clear();
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = taken;
        }
        result
    })
}

/// Translates and compiles piece `j` of a function cut into `pieces`.
fn compile_one(
    program: &Program,
    opts: &CompileOptions,
    inline: &InlinePlan,
    pieces: &[Piece],
    j: usize,
    scratch: &mut Scratch,
    text: Option<&mut ClifText>,
) -> Result<CompiledFunction, CompileError> {
    let isa = isa(opts.opt_level)?;
    let isa = isa.as_ref();
    // (signature, (ctx, data, r1..r5), (ctx, addr, size, write, frame_lo))
    let internal = signature(isa, 7);
    // A later piece: (ctx, entry, r0..r9, r10).
    let later = signature(isa, 2 + PIECE_REGISTERS + 1);
    let Scratch { ctx, fctx } = scratch;
    // What the whole program needs (the code inlined into a piece lies
    // outside it): the check trampolines only for accesses that may need
    // a check, the helper trampoline only for helper calls.
    let whole = bpfvm_engine::program::Function {
        start: 0,
        end: program.instrs().len(),
    };
    let needs = program.needs(&whole, opts.checked);
    let (check_fn, group_fn) = if needs.checked_sizes.iter().any(|&s| s) {
        (
            slow_path::trampoline(opts.opt_level)?,
            slow_path::group_trampoline(opts.opt_level)?,
        )
    } else {
        (0, 0)
    };
    // Helper calls go through the helper trampoline at the levels that
    // compile for latency, where a run can be abandoned.
    let helper_fn = if abort::ABORTS && opts.opt_level <= 1 && needs.helper_calls {
        slow_path::helper_trampoline(opts.opt_level)? as i64
    } else {
        0
    };
    let piece = &pieces[j];
    // Cleared, not replaced: the function keeps its tables' capacity
    // from the last compile.
    ctx.func.clear();
    ctx.func.name = UserFuncName::user(0, piece.index());
    ctx.func.signature = if piece.is_first() {
        internal.clone()
    } else {
        later.clone()
    };
    let mut callees = Vec::new();
    let translated;
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
        // Import only the functions this one calls, and the signatures
        // it uses (each import is ABI work in every compile).
        let mut import = |b: &mut FunctionBuilder<'_>, index: u32, signature| {
            let name = b
                .func
                .declare_imported_user_function(UserExternalName::new(0, index));
            callees.push((name, index));
            b.import_function(ExtFuncData {
                name: ExternalName::User(name),
                signature,
                colocated: true,
                patchable: false,
            })
        };
        let mut callee_sig = None;
        let mut refs = HashMap::new();
        let mut later_sig = None;
        let mut later_refs = HashMap::new();
        let past = |pc: usize| {
            (pc >= piece.hi)
                .then(|| pieces::entry_of(pieces, pc))
                .flatten()
        };
        let falls_into_next = (piece.hi < piece.func.end).then_some(piece.hi);
        for pc in (piece.lo..piece.hi).chain(falls_into_next) {
            let target = match program.instrs()[pc] {
                _ if pc == piece.hi => pc,
                Instr::CallLocal { target } if inline.callee(target as usize).is_some() => continue,
                Instr::CallLocal { target } => {
                    let target = target as usize;
                    if let Slot::Vacant(slot) = refs.entry(target) {
                        let sig =
                            *callee_sig.get_or_insert_with(|| b.import_signature(internal.clone()));
                        slot.insert(import(&mut b, target as u32, sig));
                    }
                    continue;
                }
                ref i => match i.branch_target() {
                    Some(t) => t as usize,
                    None => continue,
                },
            };
            let Some((q, _)) = past(target) else {
                continue;
            };
            if let Slot::Vacant(slot) = later_refs.entry(q.index()) {
                let sig = *later_sig.get_or_insert_with(|| b.import_signature(later.clone()));
                slot.insert(import(&mut b, q.index(), sig));
            }
        }
        let lookup = |start: usize| refs.get(&start).copied();
        let later_lookup = |pc: usize| {
            let (q, k) = past(pc)?;
            Some((*later_refs.get(&q.index())?, k, q.live[k]))
        };
        let inlined = |pc: usize| inline.callee(pc);
        let ext = Externals {
            funcs: &lookup,
            inline: &inlined,
            later_pieces: &later_lookup,
            helper_sig: match helper_fn {
                0 => signature(isa, 7),
                _ => slow_path::helper_signature(isa),
            },
            helper_fn,
            check_sig: slow_path::signature(),
            check_fn: check_fn as i64,
            group_fn: group_fn as i64,
        };
        translated = Translator::new(&mut b, program, opts, &ext, piece).translate();
        b.finalize(isa.frontend_config());
    }
    let Translated {
        header,
        may_abort,
        tables,
    } = translated;
    let mut code = compile_function(isa, ctx, piece.index(), callees, header, text)?;
    code.may_abort = may_abort;
    Ok((code, tables))
}

/// Compiles the function in `ctx` to machine code, recording its IR for
/// `emit clif` when asked, and where in the code the loop `header` (a
/// block of `ctx.func`) starts.
fn compile_function(
    isa: &dyn TargetIsa,
    ctx: &mut Context,
    index: u32,
    callees: Vec<(UserExternalNameRef, u32)>,
    header: Option<Block>,
    text: Option<&mut ClifText>,
) -> Result<FunctionCode, CompileError> {
    let before = text.is_some().then(|| ctx.func.display().to_string());
    // Code printed for `emit clif` is never run: its listing is left
    // without the marks (which would show as `@0001` and so on).
    let header = header.filter(|_| text.is_none());
    if header.is_some() {
        mark_instructions(&mut ctx.func);
    }
    ctx.set_disasm(text.is_some());
    let code = ctx
        .compile(isa, &mut ControlPlane::default())
        .map_err(|e| fail(format!("{:?}", e.inner)))?;
    let bytes = code.code_buffer().to_vec();
    let relocs = code.buffer.relocs().to_vec();
    let alignment = code.buffer.alignment;
    let machine = code.vcode.clone();
    let layout = header.map(|_| MachineLayout::of(code));
    let loop_header = header
        .zip(layout)
        .and_then(|(h, layout)| block_offset(&ctx.func, h, &layout));
    if let (Some(t), Some(before)) = (text, before) {
        t.before.push_str(&before);
        t.before.push('\n');
        t.after.push_str(&ctx.func.display().to_string());
        t.after.push('\n');
        t.machine.push_str(&format!(
            "function u0:{index} ({} bytes)\n{}\n",
            bytes.len(),
            machine.unwrap_or_default()
        ));
    }
    ctx.clear();
    Ok(FunctionCode {
        index,
        bytes,
        relocs,
        callees,
        alignment,
        loop_header,
        may_abort: false,
    })
}

/// Gives every instruction of `func` its own source location (1, 2, …),
/// so that [`block_offset`] can find them in the machine code.
fn mark_instructions(func: &mut Function) {
    let insts: Vec<Inst> = func
        .layout
        .blocks()
        .flat_map(|b| func.layout.block_insts(b))
        .collect();
    for (k, inst) in insts.into_iter().enumerate() {
        func.set_srcloc(inst, SourceLoc::new(k as u32 + 1));
    }
}

/// What a function's machine code tells of its blocks.
struct MachineLayout {
    /// Where each instruction [`mark_instructions`] marked was first
    /// emitted, by its mark (`u32::MAX`: nowhere).
    emitted_at: Vec<u32>,
    /// The start offsets of the machine blocks, ascending.
    starts: Vec<u32>,
    /// The offsets that branches go to (after Cranelift's jump threading),
    /// ascending.
    targets: Vec<u32>,
}

impl MachineLayout {
    fn of(code: &cranelift_codegen::CompiledCode) -> MachineLayout {
        let mut emitted_at = Vec::new();
        for r in code.buffer.get_srclocs_sorted() {
            if r.loc.is_default() {
                continue;
            }
            let k = r.loc.bits() as usize;
            if emitted_at.len() <= k {
                emitted_at.resize(k + 1, u32::MAX);
            }
            emitted_at[k] = emitted_at[k].min(r.start);
        }
        let mut starts = code.bb_starts.clone();
        starts.sort_unstable();
        let mut targets: Vec<u32> = code.bb_edges.iter().map(|&(_, to)| to).collect();
        targets.sort_unstable();
        targets.dedup();
        MachineLayout {
            emitted_at,
            starts,
            targets,
        }
    }

    /// Where instruction `i` of `func` was first emitted, if it was.
    fn emitted(&self, func: &Function, i: Inst) -> Option<u32> {
        let loc = func.srcloc(i);
        if loc.is_default() {
            return None;
        }
        let at = *self.emitted_at.get(loc.bits() as usize)?;
        (at != u32::MAX).then_some(at)
    }
}

/// Most blocks followed from a loop header through jumps that Cranelift
/// threaded.
const HEADER_CHAIN: usize = 4;

/// The machine-code offset at which the loop `header` starts.
///
/// Cranelift reports no block-to-offset map (its `bb_starts` are offsets
/// only). So: take the instructions that are in `header` after
/// optimisation (the optimiser moves some instructions between blocks),
/// find where the first of them was emitted, and take the start of the
/// machine block containing it (register moves at a block's start come
/// before its first instruction). That is the header's offset if branches
/// go there. If none do, the header is a lone jump that Cranelift threaded
/// (branches to it go to its target instead): the target's offset is the
/// loop's. None when the header left no instruction in the machine code
/// to find it by (it then holds register moves or nothing).
fn block_offset(func: &Function, header: Block, layout: &MachineLayout) -> Option<u32> {
    let mut block = header;
    for _ in 0..HEADER_CHAIN {
        if !func.layout.is_block_inserted(block) {
            return None;
        }
        let first = func
            .layout
            .block_insts(block)
            .filter_map(|i| layout.emitted(func, i))
            .min()?;
        let start = layout
            .starts
            .iter()
            .copied()
            .filter(|&b| b <= first)
            .max()?;
        if layout.targets.binary_search(&start).is_ok() {
            return Some(start);
        }
        let mut insts = func.layout.block_insts(block);
        let only = insts.next()?;
        let data = &func.dfg.insts[only];
        if insts.next().is_some() || data.opcode() != Opcode::Jump {
            return None;
        }
        block = data.branch_destination(&func.dfg.jump_tables, &func.dfg.exception_tables)[0]
            .block(&func.dfg.value_lists);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfvm_engine::asm::assemble;
    use bpfvm_engine::verifier::verify;
    use code_memory::LOOP_ALIGN;
    use translate::hottest_loop_header;

    fn program(src: &str) -> Program {
        verify(assemble(src).unwrap(), &Default::default()).unwrap()
    }

    /// The programs (by address) some of whose code a helper thread
    /// compiled, in this test process.
    static ON_HELPERS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

    pub(crate) fn note_compiling_thread(program: &Arc<Program>) {
        let name = std::thread::current().name().map(str::to_owned);
        if name.is_some_and(|n| n.starts_with("bpfvm-jit-")) {
            let mut seen = ON_HELPERS.lock().unwrap();
            seen.push(Arc::as_ptr(program) as usize);
        }
    }

    fn helped(program: &Arc<Program>) -> bool {
        let seen = ON_HELPERS.lock().unwrap();
        seen.contains(&(Arc::as_ptr(program) as usize))
    }

    /// r0 of `program` compiled by `backend` (default options) over `mem`.
    fn run_on(backend: &dyn Backend, program: &Arc<Program>, mem: &mut [u8]) -> u64 {
        run_with(backend, program, &CompileOptions::default(), mem)
    }

    /// r0 of `program` compiled by `backend` with `opts` over `mem`.
    fn run_with(
        backend: &dyn Backend,
        program: &Arc<Program>,
        opts: &CompileOptions,
        mem: &mut [u8],
    ) -> u64 {
        use bpfvm_engine::backend::{execute_on, RunEnv, Stack};
        let code = backend.compile(program, opts).unwrap();
        let table = bpfvm_engine::helpers::Helpers::new().table();
        let env = RunEnv {
            helpers: &table,
            regions: &[],
            host: std::ptr::null_mut(),
        };
        let mut stack = Stack::new(opts.call_depth);
        execute_on(code.as_ref(), &env, mem, &mut stack).unwrap().r0
    }

    /// A set-up loop (header at pc 1), then an outer loop (4) around an
    /// inner one (5), then a last loop (10) as deep as the outer one.
    const LOOPS: &str = "
        mov %r0, 0
    setup:
        add %r0, 1
        jlt %r0, 10, setup
        mov %r1, 0
    outer:
        mov %r2, 0
    inner:
        ldxb %r3, [%r1]
        add %r2, 1
        jlt %r2, 5, inner
        add %r1, 1
        jlt %r1, 5, outer
    last:
        add %r0, %r3
        jlt %r0, 1000, last
        exit";

    #[test]
    fn the_hottest_loop_is_the_most_deeply_nested_then_the_last() {
        let p = program(LOOPS);
        assert_eq!(hottest_loop_header(&p, p.functions()[0]), Some(5));
        let p = program(
            "mov %r0, 0\na:\nadd %r0, 1\njlt %r0, 9, a\nb:\nadd %r0, 1\njlt %r0, 99, b\nexit",
        );
        assert_eq!(hottest_loop_header(&p, p.functions()[0]), Some(3));
        let p = program("mov %r0, 0\nja skip\nskip:\nadd %r0, 1\nexit");
        assert_eq!(hottest_loop_header(&p, p.functions()[0]), None);
        // An inner loop sharing its header with the outer one (pc 1),
        // then a later loop that is not nested (5): the inner one.
        let p = program(
            "mov %r0, 0\na:\nadd %r0, 1\njlt %r0, 5, a\nadd %r1, 1\njlt %r1, 9, a\nb:\nadd %r0, 1\njlt %r0, 99, b\nexit",
        );
        assert_eq!(hottest_loop_header(&p, p.functions()[0]), Some(1));
    }

    /// Whether a `jmp rel32` or `jcc rel32` in `code` branches to `target`
    /// (the back edge, or, where the header was laid out after the body,
    /// the jump into it).
    fn branched_to(code: &[u8], target: usize) -> bool {
        (0..code.len()).any(|p| {
            let (len, rel) = match code[p..] {
                [0xe9, a, b, c, d, ..] => (5, [a, b, c, d]),
                [0x0f, 0x80..=0x8f, a, b, c, d, ..] => (6, [a, b, c, d]),
                _ => return false,
            };
            (p + len) as i64 + i32::from_le_bytes(rel) as i64 == target as i64
        })
    }

    #[test]
    fn loop_headers_are_found_in_the_machine_code_and_placed_at_a_line_start() {
        let sources = [
            LOOPS,
            // A header that starts with a checked access and a helper call.
            "mov %r6, %r1\nmov %r0, 0\nl:\nldxdw %r2, [%r6]\nadd %r0, %r2\ncall 0\nadd %r6, 1\njlt %r0, 50, l\nexit",
            // The header's one instruction is dead: left a lone jump, the
            // header is threaded through, and the loop's entry is the
            // jump's target.
            "mov %r0, 0\njeq %r1, 0, m\nl:\nmov %r3, 5\nm:\nadd %r0, 1\njlt %r0, 1000, l\nexit",
        ];
        for src in sources {
            let p = program(src);
            for (opt_level, checked) in [(0, true), (3, true), (0, false), (3, false)] {
                let opts = CompileOptions {
                    opt_level,
                    checked,
                    ..CompileOptions::default()
                };
                let what = format!("O{opt_level}, checked {checked}:\n{src}");
                let (functions, _tables) = compile_functions(&p, None, &opts, None).unwrap();
                let f = &functions[0];
                let h = f
                    .loop_header
                    .unwrap_or_else(|| panic!("no header found, {what}"))
                    as usize;
                assert!(branched_to(&f.bytes, h), "no branch to {h}, {what}");
                let (memory, addrs) = CodeMemory::place(&functions, 16).unwrap();
                let needed = f.alignment.max(1) as usize;
                assert_eq!(addrs[0] % needed, 0, "{what}");
                assert_eq!((addrs[0] + h) % LOOP_ALIGN, h % needed, "{what}");
                drop(memory);
            }
        }
    }

    #[test]
    fn functions_offered_to_helpers_compile_as_in_turn() {
        // Four called functions, the last the largest (compiled by this
        // thread), two others offered to helpers and h, small enough,
        // translated where it is called.
        let body = |n: usize, r: u64| -> String {
            (0..n)
                .map(|k| {
                    format!(
                        "ldxb %r3, [%r1+{}]\nadd %r0, %r3\nxor %r0, {}\n",
                        k % 8,
                        k as u64 * r
                    )
                })
                .collect()
        };
        let src = format!(
            "mov %r6, %r1\ncall local f\nmov %r1, %r6\ncall local g\nmov %r1, %r6\n\
             call local h\nmov %r1, %r6\ncall local i\nexit\n\
             f:\n{}exit\ng:\n{}exit\nh:\n{}exit\ni:\n{}exit",
            body(20, 3),
            body(18, 5),
            body(6, 7),
            body(30, 11)
        );
        let p = Arc::new(program(&src));
        assert_eq!(p.functions().len(), 5);
        for opt_level in [0, 1] {
            let opts = CompileOptions {
                opt_level,
                ..CompileOptions::default()
            };
            let alone = compile_functions(&p, None, &opts, None).unwrap();
            // Until helpers have compiled some (where there are helpers;
            // they may be busy with other tests' work, or slow to wake).
            let helpers = offload::helper_threads() > 0;
            for round in 0.. {
                if round >= 20 && (helped(&p) || !helpers) {
                    break;
                }
                assert!(round < 2_000, "no function was compiled on a helper");
                let with_helpers = compile_functions(&p, Some(&p), &opts, None).unwrap();
                assert_eq!(with_helpers.0.len(), alone.0.len());
                for (a, b) in alone.0.iter().zip(&with_helpers.0) {
                    assert_eq!(a.index, b.index, "functions in program order");
                    assert_eq!(a.bytes.len(), b.bytes.len(), "function {}", a.index);
                    assert_eq!(a.loop_header, b.loop_header);
                }
                assert_eq!(with_helpers.1.len(), alone.1.len(), "group tables");
            }
        }
        // And the program runs the same on the interpreter and here.
        let mut mem: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
        let interp = bpfvm_engine::interp::Interpreter;
        let want = run_on(&interp, &p, &mut mem.clone());
        assert_eq!(run_on(&CraneliftBackend, &p, &mut mem), want);
    }

    #[test]
    fn small_callees_are_translated_where_they_are_called() {
        // The shape of bench/programs/calls.c: `step` calls `mix` on both
        // paths; `mix` and `fold` are leaves. All end up in the entry's
        // Cranelift function, with no call left.
        let p = Arc::new(program(
            "mov %r6, %r1\nmov %r7, 0\nmov %r0, 0x12345\n\
             l:\nldxdw %r2, [%r6]\nmov %r1, %r0\ncall local step\n\
             mov %r1, %r0\nmov %r2, %r7\ncall local fold\n\
             add %r6, 8\nadd %r7, 1\njlt %r7, 4, l\nexit\n\
             step:\nmov %r3, %r2\nand %r3, 1\njeq %r3, 0, even\n\
             call local mix\nexit\n\
             even:\nmov %r3, %r1\nmov %r1, %r2\nmov %r2, %r3\n\
             call local mix\nadd %r0, 1\nexit\n\
             mix:\nmov %r0, %r2\nxor %r0, %r1\nmov %r1, %r0\nrsh %r1, 47\n\
             lsh %r0, 17\nor %r0, %r1\nmul %r0, 0x7f4a7c15\nexit\n\
             fold:\nmov %r0, %r1\nrsh %r0, 31\nxor %r0, %r2\nxor %r0, %r1\nexit",
        ));
        assert_eq!(p.functions().len(), 4);
        let mem: Vec<u8> = (0..32u8).map(|b| b.wrapping_mul(59)).collect();
        let want = run_on(&bpfvm_engine::interp::Interpreter, &p, &mut mem.clone());
        for opt_level in [0, 1, 3] {
            let opts = CompileOptions {
                opt_level,
                ..CompileOptions::default()
            };
            let text = clif_text(&p, &opts).unwrap();
            let functions = text.before.lines().filter(|l| l.starts_with("function "));
            assert_eq!(functions.count(), 1, "{}", text.before);
            assert!(!text.before.contains(" call fn"), "{}", text.before);
            let got = run_with(&CraneliftBackend, &p, &opts, &mut mem.clone());
            assert_eq!(got, want, "level {opt_level}");
        }
    }

    #[test]
    fn accesses_inside_the_length_tested_on_r2_are_not_checked() {
        let checks = |src: &str| {
            let opts = CompileOptions {
                opt_level: 1,
                ..CompileOptions::default()
            };
            let text = clif_text(&program(src), &opts).unwrap();
            text.before.matches("call_indirect").count()
        };
        // r1 + 8..16 after `len >= 16`, and in a loop: nothing after the
        // first block writes r1, and every path into the loop knows 16.
        let guarded = "jlt %r2, 16, out\nldxdw %r0, [%r1+8]\nl:\nldxb %r3, [%r1+15]\n\
                       add %r0, %r3\njlt %r0, 100, l\nout:\nexit";
        assert_eq!(checks(guarded), 0, "{guarded}");
        let past = guarded.replace("[%r1+15]", "[%r1+16]");
        assert_eq!(checks(&past), 1, "{past}");
        let other = guarded.replace("jlt %r2", "jlt %r3");
        assert_eq!(checks(&other), 2, "{other}");
        // A copy of r2 from the first block, tested after a merge.
        let merged = guarded.replace(
            "jlt %r2, 16, out",
            "mov %r7, %r2\njeq %r2, 3, +0\njlt %r7, 16, out",
        );
        assert_eq!(checks(&merged), 0, "{merged}");
    }

    #[test]
    fn a_jump_over_one_alu_instruction_is_a_select_without_a_budget() {
        let src = "mov %r0, 1\njlt %r1, 5, +1\nmov %r0, 2\nexit";
        let text = |budget| {
            let opts = CompileOptions {
                opt_level: 1,
                budget,
                ..CompileOptions::default()
            };
            clif_text(&program(src), &opts).unwrap().before
        };
        let plain = text(None);
        assert!(plain.contains(" select "), "{plain}");
        assert!(!plain.contains("brif"), "{plain}");
        let counted = text(Some(100));
        assert!(!counted.contains(" select "), "{counted}");
    }
}
