//! eBPF to Cranelift IR, one eBPF function (or piece of one,
//! [`crate::pieces`]) at a time.
//!
//! Every eBPF function becomes a Cranelift function with the signature
//! `(ctx, r1, r2, r3, r4, r5, r10) -> r0`, a later piece of one
//! `(ctx, entry, r0, .., r9, r10) -> r0`, except the small ones
//! [`crate::inline`] picks, which are translated at each call site
//! ([`Translator::inline_call`]). Registers r0 to r10 are
//! `cranelift_frontend::Variable`s; each basic block of the program (as the
//! engine defines them, for budget accounting) is a Cranelift block. A trap
//! stores its record in the `VmCtx` and returns; callers check
//! `ctx.trap_code` after every call of a function and return at once when
//! it is set (a piece's call is the last thing its caller does). Where
//! [`ABORTS`] (x86-64 Linux), a refused memory access and, at levels 0 and
//! 1, a helper call that traps end the run from their trampolines instead
//! ([`crate::abort`], [`crate::slow_path`]).

use crate::abort::ABORTS;
use bpfvm_engine::backend::{ArrayMapLayout, CompileOptions, COUNT_ONLY};
use bpfvm_engine::facts::{GroupedAccess, Known, KnownTarget, RegisterFacts};
use bpfvm_engine::instr::{AluOp, AtomicOp, Cond, Endian, Instr, MemSize, Operand, Width};
use bpfvm_engine::isa::STACK_FRAME_SIZE;
use bpfvm_engine::program::{Function, Program, MAP_LOOKUP_ELEM};
use bpfvm_engine::vmctx::*;
use cranelift_codegen::cursor::{Cursor, FuncCursor};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I16, I32, I64, I8};
use cranelift_codegen::ir::{
    AtomicRmwOp, Block, FuncRef, InstBuilder, MemFlagsData, SigRef, Signature, Type, Value,
};
use cranelift_frontend::{FunctionBuilder, Variable};

use crate::pieces::{Piece, PIECE_REGISTERS};
use crate::slow_path;

/// The helper slot an id past the table reads (`call_helper`): empty, as
/// `HelperSlot::EMPTY` is (a null function and data pointer), and never
/// written. Its address is a constant of the code, as the trampolines' are.
static EMPTY_SLOT: [u64; 2] = [0, 0];
const _: () = assert!(HELPER_SLOT_SIZE as usize == std::mem::size_of::<[u64; 2]>());

/// What translating a function (or piece) gives besides its IR.
pub(crate) struct Translated {
    /// The block of its hottest loop's header, if it has a loop.
    pub header: Option<Block>,
    /// Whether it calls a trampoline that may abandon the run (a check's,
    /// or the helper trampoline), where [`ABORTS`]: the code must then be
    /// entered through [`crate::abort::enter`].
    pub may_abort: bool,
    /// The tables of its group checks.
    pub tables: Vec<Box<[u64]>>,
}

/// What the translation of one function refers to outside itself.
pub(crate) struct Externals<'a> {
    /// The program's functions, by start pc, imported into this function.
    pub funcs: &'a dyn Fn(usize) -> Option<FuncRef>,
    /// The function starting at a pc, when its calls are translated
    /// inline ([`crate::inline`]).
    pub inline: &'a dyn Fn(usize) -> Option<Function>,
    /// For a pc past the piece being translated: the later piece that
    /// holds it, imported, the index of its entry there, and the registers
    /// live there (bit r).
    pub later_pieces: &'a dyn Fn(usize) -> Option<(FuncRef, usize, u16)>,
    /// Signature of a helper call, imported at its first use: of
    /// `HelperFn`, or of the helper trampoline when `helper_fn` is set.
    pub helper_sig: Signature,
    /// The address of the helper trampoline ([`crate::slow_path`]) that
    /// helper calls go through, or 0 for helper calls made inline.
    pub helper_fn: i64,
    /// Signature of the out-of-line check ([`crate::slow_path`]), imported
    /// at its first use.
    pub check_sig: Signature,
    /// Its address (checked code only).
    pub check_fn: i64,
    /// The address of the group check's trampoline (same signature).
    pub group_fn: i64,
}

/// A trap site: a cold block at the end of the function that passes what
/// the record needs, packed into one constant, to the function's shared
/// trap block (see [`Translator::emit_traps`]).
struct TrapSite {
    block: Block,
    /// `None` when a helper already wrote all of the record but the pc.
    code: Option<u32>,
    pc: usize,
    addr: Option<Value>,
    size: u32,
}

/// The function's shared exits for traps, made when first needed.
#[derive(Default)]
struct TrapExits {
    /// `return 0`: the record is complete (written by a callee, a helper
    /// and the site, or the check trampoline).
    trapped: Option<Block>,
    /// `(code | size << 8 | pc << 16, addr)`: writes the whole record.
    record: Option<Block>,
    /// `(pc)`: writes the pc of a record a helper started.
    pc_only: Option<Block>,
}

pub(crate) struct Translator<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    program: &'a Program,
    opts: &'a CompileOptions,
    ext: &'a Externals<'a>,
    func: Function,
    /// The piece of `func` translated here (all of it unless it was cut).
    piece: &'a Piece,
    regs: [Variable; 11],
    ctx: Value,
    r10: Value,
    /// Lowest stack address of this frame (r10 - 512).
    frame_lo: Value,
    /// Input region start, and per access size the bound `len - n + 1`
    /// (0 when the region is smaller than n): `addr - start < bound`.
    mem_start: Option<Value>,
    mem_bound: [Option<Value>; 4],
    /// Per access size, `stack_top - frame_lo - n + 1`.
    stack_bound: [Option<Value>; 4],
    /// The stack's top (the entry's r10).
    stack_top: Option<Value>,
    /// The input's length and `stack_top - frame_lo`, for a group's check.
    mem_len: Option<Value>,
    window: Option<Value>,
    /// Per pc (relative): an access whose check a group's covered.
    covered: Vec<bool>,
    /// The bounds `span_bound` computed: (the frame's, span, bound).
    span_bounds: Vec<(bool, i64, Value)>,
    /// The function's entry block, where the per-run values are.
    entry: Block,
    /// The groups' tables ([`bpfvm_engine::vmctx::bpfvm_check_group`]),
    /// whose addresses the code holds as constants (as it holds the
    /// trampolines'): the compiled code owns them, and code that left the
    /// process would not find them.
    tables: Vec<Box<[u64]>>,
    /// `stack_bottom + 512`: a call whose new r10 is below it is too deep.
    depth_floor: Option<Value>,
    helpers: Option<Value>,
    helper_count: Option<Value>,
    blocks: Vec<Option<Block>>,
    /// For each pc (relative to the function start): the blocks to seal
    /// once that instruction is translated (its last branch to them).
    seal_after: Vec<Vec<usize>>,
    /// For each leader (relative): the last pc that branches to it, if any.
    last_branch_to: Vec<Option<usize>>,
    traps: Vec<TrapSite>,
    exits: TrapExits,
    /// `0`, defined in the entry block.
    zero: Value,
    /// Whether the current block already ends in a terminator.
    filled: bool,
    /// `Externals::helper_sig` and `check_sig` once imported.
    helper_sig: Option<SigRef>,
    check_sig: Option<SigRef>,
    /// What the code since the last merge point shows of the registers'
    /// values, for the checks of the accesses through them.
    facts: RegisterFacts,
    /// The registers' SSA values since the last merge point.
    cache: RegisterCache,
    /// For a function translated inline at a call site: the block after
    /// the call, which its `exit`s jump to with r0.
    ret: Option<Block>,
}

/// The registers' SSA values in the stretch of code being emitted: since
/// the last merge point of the program, the blocks a check or a call adds
/// included, since the block that computed a value dominates all of them.
/// Reads take a register from here without asking the frontend (each
/// `use_var` is a lookup, and in a block a check added, with two
/// predecessors, a block parameter to make and remove again); writes reach
/// the frontend's variables only when control leaves the stretch
/// ([`Translator::flush`]), once per register however often it was
/// written. A 32-bit result is kept as the `i32` it is, and widened only
/// when something reads all 64 bits: a run of 32-bit instructions has no
/// `uextend`/`ireduce` between each two.
#[derive(Clone, Copy, Default)]
struct RegisterCache {
    /// The register's value.
    full: [Option<Value>; 11],
    /// An `i32` equal to the register's low half; when `full` is `None`,
    /// the register is its zero extension.
    low: [Option<Value>; 11],
    /// Registers (bit r) written since the frontend's variables were last
    /// told ([`Translator::flush`]).
    dirty: u16,
}

fn flags() -> MemFlagsData {
    MemFlagsData::new()
}

fn trusted() -> MemFlagsData {
    MemFlagsData::trusted()
}

impl<'a, 'b> Translator<'a, 'b> {
    pub(crate) fn new(
        b: &'a mut FunctionBuilder<'b>,
        program: &'a Program,
        opts: &'a CompileOptions,
        ext: &'a Externals<'a>,
        piece: &'a Piece,
    ) -> Self {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let params = b.block_params(entry).to_vec();
        let ctx = params[0];
        // A function: (ctx, r1..r5, r10); a later piece: (ctx, entry,
        // r0..r9, r10).
        let r10 = *params.last().expect("ctx and r10 at least");
        let zero = b.ins().iconst(I64, 0);
        let values: [Value; 11] = std::array::from_fn(|k| match k {
            10 => r10,
            _ if !piece.is_first() => params[2 + k],
            1..=5 => params[k],
            _ => zero,
        });
        let mut t = Self::start(b, program, opts, ext, piece, ctx, values, zero, None);
        t.load_invariants();
        t
    }

    /// A translator whose registers start as `values` in the current
    /// block, which is its entry block: it dominates all the code
    /// translated, and the per-run values are loaded there
    /// ([`Translator::load_invariants`], which the caller calls). `ret`
    /// is the block after the call for a function translated inline.
    #[allow(clippy::too_many_arguments)]
    fn start(
        b: &'a mut FunctionBuilder<'b>,
        program: &'a Program,
        opts: &'a CompileOptions,
        ext: &'a Externals<'a>,
        piece: &'a Piece,
        ctx: Value,
        values: [Value; 11],
        zero: Value,
        ret: Option<Block>,
    ) -> Self {
        let func = piece.func;
        let regs: [Variable; 11] = std::array::from_fn(|_| b.declare_var(I64));
        let entry = b.current_block().expect("the entry block is current");
        let r10 = values[10];
        let frame_lo = b.ins().iadd_imm_s(r10, -(STACK_FRAME_SIZE as i64));
        for (reg, v) in regs.iter().zip(values) {
            b.def_var(*reg, v);
        }
        let facts = if piece.is_first() {
            RegisterFacts::new(program, func, true)
        } else {
            RegisterFacts::for_code_from(program, func, true, piece.lo)
        };
        let len = func.end - func.start;
        let mut t = Translator {
            b,
            program,
            opts,
            ext,
            func,
            piece,
            regs,
            ctx,
            r10,
            frame_lo,
            mem_start: None,
            mem_bound: [None; 4],
            stack_bound: [None; 4],
            stack_top: None,
            mem_len: None,
            window: None,
            covered: vec![false; len],
            span_bounds: Vec::new(),
            entry,
            tables: Vec::new(),
            depth_floor: None,
            helpers: None,
            helper_count: None,
            blocks: vec![None; len],
            seal_after: vec![Vec::new(); len],
            last_branch_to: vec![None; len],
            traps: Vec::new(),
            exits: TrapExits::default(),
            zero,
            filled: false,
            helper_sig: None,
            check_sig: None,
            facts,
            cache: RegisterCache::default(),
            ret,
        };
        t.find_last_branches();
        t
    }

    /// Loads, in the entry block, the per-run values the function needs, so
    /// that they dominate every use: those not known already (a function
    /// translated inline starts with its caller's that do not depend on
    /// the frame).
    fn load_invariants(&mut self) {
        let range = Function {
            start: self.piece.lo,
            end: self.piece.hi,
        };
        let needs = self.program.needs(&range, self.opts.checked);
        let (sizes, calls, helpers) = (needs.checked_sizes, needs.local_calls, needs.helper_calls);
        let ctx = self.ctx;
        if sizes.iter().any(|&s| s) {
            let (start, len) = match (self.mem_start, self.mem_len) {
                (Some(start), Some(len)) => (start, len),
                _ => {
                    let start = self.b.ins().load(I64, trusted(), ctx, OFFSET_MEM_START);
                    let end = self.b.ins().load(I64, trusted(), ctx, OFFSET_MEM_END);
                    (start, self.b.ins().isub(end, start))
                }
            };
            let top = match self.stack_top {
                Some(top) => top,
                None => self.b.ins().load(I64, trusted(), ctx, OFFSET_STACK_TOP),
            };
            let window = self.b.ins().isub(top, self.frame_lo);
            self.mem_len = Some(len);
            self.stack_top = Some(top);
            self.window = Some(window);
            let zero = self.b.ins().iconst(I64, 0);
            for (k, n) in [1i64, 2, 4, 8].into_iter().enumerate() {
                if !sizes[k] {
                    continue;
                }
                // One-byte accesses may start anywhere in the region: the
                // bounds are the lengths themselves (no value that only
                // Cranelift's optimiser would see to be the same).
                if n == 1 {
                    self.mem_bound[k] = Some(len);
                    self.stack_bound[k] = Some(window);
                    continue;
                }
                self.stack_bound[k] = Some(self.b.ins().iadd_imm_s(window, 1 - n));
                if self.mem_bound[k].is_some() {
                    continue;
                }
                let big = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, len, n);
                let bound = self.b.ins().iadd_imm_s(len, 1 - n);
                self.mem_bound[k] = Some(self.b.ins().select(big, bound, zero));
            }
            self.mem_start = Some(start);
        }
        if calls && self.depth_floor.is_none() {
            let bottom = self.b.ins().load(I64, trusted(), ctx, OFFSET_STACK_BOTTOM);
            self.depth_floor = Some(self.b.ins().iadd_imm_s(bottom, STACK_FRAME_SIZE as i64));
        }
        if helpers && self.helpers.is_none() && self.ext.helper_fn == 0 {
            self.helpers = Some(self.b.ins().load(I64, trusted(), ctx, OFFSET_HELPERS));
            self.helper_count = Some(self.b.ins().load(I64, trusted(), ctx, OFFSET_HELPER_COUNT));
        }
    }

    /// Blocks are sealed as soon as all their predecessors exist, so that
    /// SSA construction adds block parameters only where values really
    /// merge (sealing everything at the end makes every block a merge).
    /// Branches from other pieces count as none: a later piece's entry
    /// blocks have the piece's entry as a predecessor instead, before all
    /// others.
    fn find_last_branches(&mut self) {
        for pc in self.piece.lo..self.piece.hi {
            if let Some(t) = self.program.instrs()[pc].branch_target() {
                let k = t as usize - self.func.start;
                let last = &mut self.last_branch_to[k];
                *last = Some(last.map_or(pc, |l| l.max(pc)));
            }
        }
    }

    /// Seals leader `pc` now if no later instruction branches to it, else
    /// after the last one that does.
    fn schedule_seal(&mut self, pc: usize) {
        let k = pc - self.func.start;
        match self.last_branch_to[k] {
            Some(last) if last >= pc => self.seal_after[last - self.func.start].push(pc),
            _ => {
                let b = self.block_at(pc);
                self.b.seal_block(b);
            }
        }
    }

    fn block_at(&mut self, pc: usize) -> Block {
        let k = pc - self.func.start;
        if let Some(b) = self.blocks[k] {
            return b;
        }
        let b = self.b.create_block();
        self.blocks[k] = Some(b);
        b
    }

    /// Translates the whole function. Returns the block of its hottest
    /// loop's header, if it has a loop (see [`hottest_loop_header`]), and
    /// the tables its group checks refer to, which must live as long as
    /// its code.
    pub(crate) fn translate(mut self) -> Translated {
        let (lo, hi) = (self.piece.lo, self.piece.hi);
        let header = hottest_loop_header(self.program, self.func).filter(|h| (lo..hi).contains(h));
        self.translate_code();
        self.emit_traps();
        self.emit_transfers();
        self.b.seal_all_blocks();
        Translated {
            header: header.and_then(|pc| self.blocks[pc - self.func.start]),
            // A signature is imported by the first call of a trampoline,
            // here or in the code inlined here.
            may_abort: self.check_sig.is_some()
                || (self.ext.helper_fn != 0 && self.helper_sig.is_some()),
            tables: self.tables,
        }
    }

    /// Translates the piece's instructions, from the entry block on.
    fn translate_code(&mut self) {
        let (lo, hi) = (self.piece.lo, self.piece.hi);
        self.enter_piece();
        self.filled = true;
        let mut pc = lo;
        while pc < hi {
            let ins = self.program.instrs()[pc];
            if ins == Instr::LddwTail {
                pc += 1;
                continue;
            }
            if self.program.is_block_start(pc) {
                let blk = self.block_at(pc);
                if !self.filled {
                    self.flush();
                    self.b.ins().jump(blk, &[]);
                }
                self.b.switch_to_block(blk);
                self.schedule_seal(pc);
                self.filled = false;
                if !self.only_fall_through(pc) {
                    self.cache = RegisterCache::default();
                }
                self.facts.enter_block(self.program, pc);
                self.charge_budget(pc);
            } else if self.filled {
                // Unreachable code that starts no block: give it one.
                let blk = self.b.create_block();
                self.b.switch_to_block(blk);
                self.b.seal_block(blk);
                self.filled = false;
                self.facts.clear();
                self.cache = RegisterCache::default();
            }
            let step = if self.select_over_one(pc, ins) {
                2
            } else {
                self.instr(pc, ins);
                ins.slots()
            };
            for leader in std::mem::take(&mut self.seal_after[pc - self.func.start]) {
                let b = self.block_at(leader);
                self.b.seal_block(b);
            }
            pc += step;
        }
        if !self.filled && hi < self.func.end {
            // Falls through into the next piece.
            let next = self.block_at(hi);
            self.flush();
            self.b.ins().jump(next, &[]);
        }
    }

    /// Whether `dst cond src` holds (the condition of a `Jcond`).
    fn condition(&mut self, width: Width, cond: Cond, dst: u8, src: Operand) -> Value {
        let a = self.dst_value(width, dst);
        let b = self.operand(width, src);
        match cond {
            Cond::Set => {
                let x = self.b.ins().band(a, b);
                self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0)
            }
            _ => self.b.ins().icmp(intcc(cond), a, b),
        }
    }

    /// `if cond goto pc + 2` over one ALU instruction (clang's form of
    /// `x = c ? x : y`; eBPF has no select): the instruction's value is
    /// computed anyway and kept with a `select`, so that no block starts
    /// at pc + 1 and no branch ends this one (a block boundary is most of
    /// the compile work of a few instructions: BENCHMARKS.md, session 12).
    /// Only when nothing else jumps to pc + 1, for instructions that
    /// cannot trap and emit no block (no division), and without a budget,
    /// which counts pc + 1's block. Returns whether it translated both.
    fn select_over_one(&mut self, pc: usize, ins: Instr) -> bool {
        let Instr::Jcond {
            width,
            cond,
            dst,
            src,
            target,
        } = ins
        else {
            return false;
        };
        let next = pc + 1;
        // With a budget that can run out, the skipped instruction's block
        // must be able to trap at its start; counting alone only needs its
        // cost charged when it runs (below).
        let counting = self.opts.budget == Some(COUNT_ONLY);
        if target != pc as i64 + 2
            || next >= self.piece.hi
            || (self.opts.budget.is_some() && !counting)
        {
            return false;
        }
        if self.last_branch_to[next - self.func.start].is_some()
            || self.piece.entries.contains(&next)
        {
            return false;
        }
        let body = self.program.instrs()[next];
        let written = match body {
            Instr::Alu { op, dst, .. }
                if !matches!(op, AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod) =>
            {
                dst
            }
            Instr::Neg { dst, .. } | Instr::MovSx { dst, .. } | Instr::Endian { dst, .. } => dst,
            _ => return false,
        };
        let taken = self.condition(width, cond, dst, src);
        let old = self.get(written);
        self.instr(next, body);
        let new = self.get(written);
        let v = self.b.ins().select(taken, old, new);
        self.set(written, v);
        if counting {
            // The instruction's block (it alone) counts when the jump is
            // not taken, as when it runs.
            let cost = self.program.block_cost(next) as i64;
            let left = self.b.ins().load(I64, trusted(), self.ctx, OFFSET_BUDGET);
            let charged = self.b.ins().iconst(I64, cost);
            let charge = self.b.ins().select(taken, self.zero, charged);
            let rest = self.b.ins().isub(left, charge);
            self.b.ins().store(trusted(), rest, self.ctx, OFFSET_BUDGET);
        }
        true
    }

    fn charge_budget(&mut self, pc: usize) {
        let Some(budget) = self.opts.budget else {
            return;
        };
        let cost = self.program.block_cost(pc) as i64;
        let left = self.b.ins().load(I64, trusted(), self.ctx, OFFSET_BUDGET);
        // Counting alone never runs out: no test, no block to split.
        if budget != COUNT_ONLY {
            let short = self.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, left, cost);
            let trap = self.trap(Some(TRAP_BUDGET), pc, None, 0);
            self.branch_unless(short, trap);
        }
        let rest = self.b.ins().iadd_imm_s(left, -cost);
        self.b.ins().store(trusted(), rest, self.ctx, OFFSET_BUDGET);
    }

    /// Registers a trap site and returns its block: the record's code
    /// (`None` when a helper wrote it), the pc, the address and the size.
    fn trap(&mut self, code: Option<u32>, pc: usize, addr: Option<Value>, size: u32) -> Block {
        let block = self.b.create_block();
        self.b.set_cold_block(block);
        self.traps.push(TrapSite {
            block,
            code,
            pc,
            addr,
            size,
        });
        block
    }

    /// The block that returns from a trap whose record is complete.
    fn trapped(&mut self) -> Block {
        Self::exit_block(self.b, &mut self.exits.trapped, 0)
    }

    /// A shared exit block taking `params` i64 parameters.
    fn exit_block(b: &mut FunctionBuilder<'_>, slot: &mut Option<Block>, params: usize) -> Block {
        *slot.get_or_insert_with(|| {
            let block = b.create_block();
            b.set_cold_block(block);
            for _ in 0..params {
                b.append_block_param(block, I64);
            }
            block
        })
    }

    /// `if cond { goto trap }` and continue in a fresh block.
    fn branch_unless(&mut self, cond: Value, trap: Block) {
        let cont = self.b.create_block();
        self.b.ins().brif(cond, trap, &[], cont, &[]);
        self.b.switch_to_block(cont);
        self.b.seal_block(cont);
    }

    /// From the entry block to the piece's first block, or for a later
    /// piece to the entry block its `entry` parameter names (the last one
    /// for any larger value, which no caller passes).
    fn enter_piece(&mut self) {
        let entries = &self.piece.entries;
        if entries.is_empty() {
            let first = self.block_at(self.piece.lo);
            self.b.ins().jump(first, &[]);
            return;
        }
        let which = self.b.block_params(self.entry)[1];
        let (last, tested) = entries.split_last().expect("a later piece has entries");
        for (k, &pc) in tested.iter().enumerate() {
            let here = self.b.ins().icmp_imm_s(IntCC::Equal, which, k as i64);
            let to = self.block_at(pc);
            let next = self.b.create_block();
            self.b.ins().brif(here, to, &[], next, &[]);
            self.b.switch_to_block(next);
            self.b.seal_block(next);
        }
        let to = self.block_at(*last);
        self.b.ins().jump(to, &[]);
    }

    /// Fills the blocks of the pcs past the piece that it branches to: a
    /// call of the later piece that holds the pc, with the registers, whose
    /// result (r0, or 0 after a trap it recorded) is returned at once.
    fn emit_transfers(&mut self) {
        let (start, hi) = (self.func.start, self.piece.hi);
        for k in hi - start..self.blocks.len() {
            let Some(block) = self.blocks[k] else {
                continue;
            };
            let Some((callee, entry, live)) = (self.ext.later_pieces)(start + k) else {
                unreachable!("a branch past a piece goes to a later piece's entry")
            };
            self.b.switch_to_block(block);
            self.cache = RegisterCache::default();
            let mut args = vec![self.ctx];
            args.push(self.b.ins().iconst(I64, entry as i64));
            for r in 0..PIECE_REGISTERS {
                // A dead register's value is never read there: no merge
                // of its values here.
                let v = if live >> r & 1 == 1 {
                    self.b.use_var(self.regs[r])
                } else {
                    self.zero
                };
                args.push(v);
            }
            args.push(self.r10);
            let call = self.b.ins().call(callee, &args);
            let r0 = self.b.inst_results(call)[0];
            self.b.ins().return_(&[r0]);
        }
    }

    /// Emits the trap sites, each a jump with its packed record to one of
    /// the shared exits, and the exits (one copy of the stores each, rather
    /// than one per site: most of a function's blocks are trap paths, and
    /// each costs compile time).
    fn emit_traps(&mut self) {
        let traps = std::mem::take(&mut self.traps);
        for t in traps {
            self.b.switch_to_block(t.block);
            match t.code {
                Some(code) => {
                    let packed = code as i64 | (t.size as i64) << 8 | (t.pc as i64) << 16;
                    let packed = self.b.ins().iconst(I64, packed);
                    let addr = t.addr.unwrap_or(self.zero);
                    let exit = Self::exit_block(self.b, &mut self.exits.record, 2);
                    self.b.ins().jump(exit, &[packed.into(), addr.into()]);
                }
                None => {
                    let pc = self.b.ins().iconst(I64, t.pc as i64);
                    let exit = Self::exit_block(self.b, &mut self.exits.pc_only, 1);
                    self.b.ins().jump(exit, &[pc.into()]);
                }
            }
        }
        let ctx = self.ctx;
        if let Some(block) = self.exits.record {
            self.b.switch_to_block(block);
            let p = self.b.block_params(block).to_vec();
            let code = self.b.ins().band_imm_s(p[0], 0xff);
            self.b
                .ins()
                .istore32(trusted(), code, ctx, OFFSET_TRAP_CODE);
            let size = self.b.ins().ushr_imm_s(p[0], 8);
            let size = self.b.ins().band_imm_s(size, 0xff);
            self.b
                .ins()
                .istore32(trusted(), size, ctx, OFFSET_TRAP_SIZE);
            let pc = self.b.ins().ushr_imm_s(p[0], 16);
            self.b.ins().store(trusted(), pc, ctx, OFFSET_TRAP_PC);
            self.b.ins().store(trusted(), p[1], ctx, OFFSET_TRAP_ADDR);
            self.b.ins().return_(&[self.zero]);
        }
        if let Some(block) = self.exits.pc_only {
            self.b.switch_to_block(block);
            let pc = self.b.block_params(block)[0];
            self.b.ins().store(trusted(), pc, ctx, OFFSET_TRAP_PC);
            self.b.ins().return_(&[self.zero]);
        }
        if let Some(block) = self.exits.trapped {
            self.b.switch_to_block(block);
            self.b.ins().return_(&[self.zero]);
        }
    }

    /// Whether only the fall-through of the previous instruction leads to
    /// the block at `pc`: then the block before dominates it.
    fn only_fall_through(&self, pc: usize) -> bool {
        pc > self.func.start
            && self.last_branch_to[pc - self.func.start].is_none()
            && self.program.instrs()[pc - 1].falls_through()
            && !self.piece.entries.contains(&pc)
    }

    /// Register `r`'s value.
    fn get(&mut self, r: u8) -> Value {
        let k = r as usize;
        if let Some(v) = self.cache.full[k] {
            return v;
        }
        let v = match self.cache.low[k] {
            Some(low) => self.b.ins().uextend(I64, low),
            // r10 is the function's parameter throughout (nothing writes it).
            None if k == 10 => self.r10,
            None => self.b.use_var(self.regs[k]),
        };
        self.cache.full[k] = Some(v);
        v
    }

    /// The low half of register `r`, as an `i32`.
    fn get32(&mut self, r: u8) -> Value {
        let k = r as usize;
        if let Some(v) = self.cache.low[k] {
            return v;
        }
        let full = self.get(r);
        let v = self.b.ins().ireduce(I32, full);
        self.cache.low[k] = Some(v);
        v
    }

    /// Sets register `r` to the 64-bit `v`.
    fn set(&mut self, r: u8, v: Value) {
        self.facts.set(r, None);
        let k = r as usize;
        self.cache.full[k] = Some(v);
        self.cache.low[k] = None;
        self.cache.dirty |= 1 << r;
    }

    /// Sets register `r` to the zero extension of the `i32` `v`.
    fn set32(&mut self, r: u8, v: Value) {
        self.facts.set(r, None);
        let k = r as usize;
        self.cache.full[k] = None;
        self.cache.low[k] = Some(v);
        self.cache.dirty |= 1 << r;
    }

    /// Sets `r` to a result of `width`: `v` is an `i32` for 32 bits.
    fn set_width(&mut self, width: Width, r: u8, v: Value) {
        match width {
            Width::W64 => self.set(r, v),
            Width::W32 => self.set32(r, v),
        }
    }

    /// Tells the frontend's variables what the registers written since
    /// the last flush hold, before control leaves for a block that reads
    /// them through the variables.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.cache.dirty);
        while dirty != 0 {
            let r = dirty.trailing_zeros() as u8;
            dirty &= dirty - 1;
            let v = self.get(r);
            self.b.def_var(self.regs[r as usize], v);
        }
    }

    fn operand(&mut self, width: Width, src: Operand) -> Value {
        match src {
            Operand::Reg(r) => match width {
                Width::W64 => self.get(r),
                Width::W32 => self.get32(r),
            },
            Operand::Imm(i) => match width {
                Width::W64 => self.b.ins().iconst(I64, i as i64),
                Width::W32 => self.b.ins().iconst(I32, i as u32 as i64),
            },
        }
    }

    fn dst_value(&mut self, width: Width, dst: u8) -> Value {
        match width {
            Width::W64 => self.get(dst),
            Width::W32 => self.get32(dst),
        }
    }

    fn instr(&mut self, pc: usize, ins: Instr) {
        match ins {
            Instr::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let ty = if width == Width::W64 { I64 } else { I32 };
                let known = self.facts.after_alu(width, op, dst, src);
                match (op, src) {
                    // A move reads nothing of dst, and an immediate is
                    // made at its final width (no 32-bit constant widened).
                    (AluOp::Mov, Operand::Imm(i)) => {
                        let v = match width {
                            Width::W64 => i as i64,
                            Width::W32 => i as u32 as i64,
                        };
                        let v = self.b.ins().iconst(I64, v);
                        self.set(dst, v);
                    }
                    (AluOp::Mov, Operand::Reg(_)) => {
                        let v = self.operand(width, src);
                        self.set_width(width, dst, v);
                    }
                    (AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod, Operand::Imm(i)) => {
                        let a = self.dst_value(width, dst);
                        let r = self.div_imm(ty, op, a, i);
                        self.set_width(width, dst, r);
                    }
                    _ => {
                        let a = self.dst_value(width, dst);
                        let b = self.operand(width, src);
                        let r = self.alu(ty, op, a, b);
                        self.set_width(width, dst, r);
                    }
                }
                self.facts.set(dst, known);
            }
            Instr::Neg { width, dst } => {
                let a = self.dst_value(width, dst);
                let r = self.b.ins().ineg(a);
                self.set_width(width, dst, r);
            }
            Instr::MovSx {
                width,
                bits,
                dst,
                src,
            } => {
                let n = match bits {
                    8 | 16 => {
                        let s = self.get(src);
                        let small = if bits == 8 { I8 } else { I16 };
                        self.b.ins().ireduce(small, s)
                    }
                    _ => self.get32(src),
                };
                match width {
                    Width::W64 => {
                        let r = self.b.ins().sextend(I64, n);
                        self.set(dst, r);
                    }
                    Width::W32 => {
                        let r = if bits >= 32 {
                            n
                        } else {
                            self.b.ins().sextend(I32, n)
                        };
                        self.set32(dst, r);
                    }
                }
            }
            Instr::Endian { kind, bits, dst } => self.endian(kind, bits, dst),
            Instr::Load {
                size,
                signed,
                dst,
                base,
                off,
            } => {
                let (addr, k) = self.checked_addr(pc, base, off, size, false);
                let f = flags();
                let ins = self.b.ins();
                let v = match (size, signed) {
                    (MemSize::B, false) => ins.uload8(I64, f, addr, k),
                    (MemSize::B, true) => ins.sload8(I64, f, addr, k),
                    (MemSize::H, false) => ins.uload16(I64, f, addr, k),
                    (MemSize::H, true) => ins.sload16(I64, f, addr, k),
                    (MemSize::W, false) => ins.uload32(f, addr, k),
                    (MemSize::W, true) => ins.sload32(f, addr, k),
                    (MemSize::DW, _) => ins.load(I64, f, addr, k),
                };
                self.set(dst, v);
            }
            Instr::Store {
                size,
                base,
                off,
                src,
            } => {
                let (addr, k) = self.checked_addr(pc, base, off, size, true);
                let v = match src {
                    // A narrow store of a 32-bit result takes the `i32`.
                    Operand::Reg(r)
                        if size != MemSize::DW
                            && self.cache.full[r as usize].is_none()
                            && self.cache.low[r as usize].is_some() =>
                    {
                        self.get32(r)
                    }
                    Operand::Reg(r) => self.get(r),
                    Operand::Imm(i) => self.b.ins().iconst(I64, i as i64),
                };
                let f = flags();
                let wide = self.b.func.dfg.value_type(v) == I64;
                let ins = self.b.ins();
                match size {
                    MemSize::B => ins.istore8(f, v, addr, k),
                    MemSize::H => ins.istore16(f, v, addr, k),
                    MemSize::W if wide => ins.istore32(f, v, addr, k),
                    MemSize::W => ins.store(f, v, addr, k),
                    MemSize::DW => ins.store(f, v, addr, k),
                };
            }
            Instr::Atomic {
                size,
                op,
                fetch,
                base,
                off,
                src,
            } => {
                self.atomic(pc, size, op, fetch, base, off, src);
            }
            Instr::Lddw { dst, value, .. } => {
                let v = self.b.ins().iconst(I64, value as i64);
                self.set(dst, v);
                self.facts.set(dst, Some(Known::Const(value)));
            }
            Instr::LddwTail => {}
            Instr::Ja { target } => {
                let t = self.block_at(target as usize);
                self.flush();
                self.b.ins().jump(t, &[]);
                self.filled = true;
            }
            Instr::Jcond {
                width,
                cond,
                dst,
                src,
                target,
            } => {
                let c = self.condition(width, cond, dst, src);
                let t = self.block_at(target as usize);
                let next = self.block_at(pc + 1);
                self.flush();
                self.b.ins().brif(c, t, &[], next, &[]);
                self.filled = true;
            }
            Instr::CallHelper { id } => {
                match self
                    .program
                    .inlinable_lookup(&self.func, pc, &self.opts.array_maps)
                {
                    Some(map) => self.inline_array_lookup(pc, map),
                    None => {
                        let id = self.b.ins().iconst(I64, id as i64);
                        self.call_helper(pc, id);
                    }
                }
            }
            Instr::CallReg { reg } => {
                let id = self.get(reg);
                self.call_helper(pc, id);
            }
            Instr::CallLocal { target } => self.call_local(pc, target as usize),
            Instr::Exit => {
                let r0 = self.get(0);
                match self.ret {
                    Some(ret) => self.b.ins().jump(ret, &[r0.into()]),
                    None => self.b.ins().return_(&[r0]),
                };
                self.filled = true;
            }
        }
    }

    fn alu(&mut self, ty: Type, op: AluOp, a: Value, b: Value) -> Value {
        match op {
            AluOp::Add => self.b.ins().iadd(a, b),
            AluOp::Sub => self.b.ins().isub(a, b),
            AluOp::Mul => self.b.ins().imul(a, b),
            AluOp::Or => self.b.ins().bor(a, b),
            AluOp::And => self.b.ins().band(a, b),
            AluOp::Xor => self.b.ins().bxor(a, b),
            AluOp::Mov => b,
            // Cranelift masks a shift's amount to the type's width, as eBPF
            // does (`& 63`, or `& 31` for 32-bit shifts).
            AluOp::Lsh => self.b.ins().ishl(a, b),
            AluOp::Rsh => self.b.ins().ushr(a, b),
            AluOp::Arsh => self.b.ins().sshr(a, b),
            AluOp::Div | AluOp::Mod | AluOp::SDiv | AluOp::SMod => self.div_reg(ty, op, a, b),
        }
    }

    /// Division and modulo by a register, guarded so that no Cranelift
    /// division can trap: by zero, and `MIN / -1` for the signed forms.
    fn div_reg(&mut self, ty: Type, op: AluOp, a: Value, b: Value) -> Value {
        let zero = self.b.ins().iconst(ty, 0);
        let one = self.b.ins().iconst(ty, 1);
        let is_zero = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
        match op {
            AluOp::Div | AluOp::Mod => {
                let safe = self.b.ins().select(is_zero, one, b);
                if op == AluOp::Div {
                    let q = self.b.ins().udiv(a, safe);
                    self.b.ins().select(is_zero, zero, q)
                } else {
                    let r = self.b.ins().urem(a, safe);
                    self.b.ins().select(is_zero, a, r)
                }
            }
            _ => {
                let minus_one = self.b.ins().iconst(ty, mask(ty, -1));
                let is_m1 = self.b.ins().icmp(IntCC::Equal, b, minus_one);
                let bad = self.b.ins().bor(is_zero, is_m1);
                let safe = self.b.ins().select(bad, one, b);
                if op == AluOp::SDiv {
                    let q = self.b.ins().sdiv(a, safe);
                    let n = self.b.ins().ineg(a);
                    let q = self.b.ins().select(is_m1, n, q);
                    self.b.ins().select(is_zero, zero, q)
                } else {
                    let r = self.b.ins().srem(a, safe);
                    let r = self.b.ins().select(is_m1, zero, r);
                    self.b.ins().select(is_zero, a, r)
                }
            }
        }
    }

    /// Division and modulo by an immediate: the guards are resolved now.
    fn div_imm(&mut self, ty: Type, op: AluOp, a: Value, imm: i32) -> Value {
        let v = if ty == I64 {
            imm as i64
        } else {
            imm as u32 as i64
        };
        let is_m1 = imm == -1;
        match op {
            AluOp::Div | AluOp::SDiv if imm == 0 => self.b.ins().iconst(ty, 0),
            AluOp::Mod | AluOp::SMod if imm == 0 => a,
            AluOp::SDiv if is_m1 => self.b.ins().ineg(a),
            AluOp::SMod if is_m1 => self.b.ins().iconst(ty, 0),
            _ => {
                let b = self.b.ins().iconst(ty, v);
                match op {
                    AluOp::Div => self.b.ins().udiv(a, b),
                    AluOp::Mod => self.b.ins().urem(a, b),
                    AluOp::SDiv => self.b.ins().sdiv(a, b),
                    _ => self.b.ins().srem(a, b),
                }
            }
        }
    }

    /// A byte swap or truncation of `dst` to `bits`, zero-extended.
    fn endian(&mut self, kind: Endian, bits: u8, dst: u8) {
        let swap = kind != Endian::ToLe;
        match bits {
            16 => {
                let v = self.get(dst);
                let n = self.b.ins().ireduce(I16, v);
                let n = if swap { self.b.ins().bswap(n) } else { n };
                let r = self.b.ins().uextend(I32, n);
                self.set32(dst, r);
            }
            32 => {
                let n = self.get32(dst);
                let r = if swap { self.b.ins().bswap(n) } else { n };
                self.set32(dst, r);
            }
            _ => {
                let v = self.get(dst);
                let r = if swap { self.b.ins().bswap(v) } else { v };
                self.set(dst, r);
            }
        }
    }

    /// The address `base + off` of an access, as a value and an offset for
    /// the access instruction: `(base, off)` when nothing is checked, else
    /// `(addr, 0)` after a check that branches to a trap unless
    /// `[addr, addr + size)` is allowed. An access the code shows to be in
    /// the frame or in array-map values ([`RegisterFacts::target`]) is
    /// not checked, or, through a lookup's untested result, checked for 0
    /// alone before the full check. Otherwise the region the base most likely
    /// points into (the frame for r10 or a register set from it, else the
    /// input) is checked inline; the rest is one cold block: at levels 1
    /// to 3 the other of the two and the extra region the last out-of-line
    /// check allowed, tested together, then the check trampoline of
    /// [`crate::slow_path`]; at O0 the trampoline alone.
    fn checked_addr(
        &mut self,
        pc: usize,
        base: u8,
        off: i16,
        size: MemSize,
        write: bool,
    ) -> (Value, i32) {
        let b = self.get(base);
        let target = self
            .facts
            .target(base, off, size, write, &self.opts.array_maps);
        if !self.opts.checked
            || self.facts.in_frame(base, off, size)
            || target == Some(KnownTarget::Allowed)
            || self.covered[pc - self.func.start]
        {
            // Nothing to check (or checked with its group): the offset
            // goes into the access itself.
            return (b, off as i32);
        }
        if !write {
            let group = self
                .facts
                .access_group(self.program, pc, &self.opts.array_maps);
            if !group.is_empty() {
                self.check_group(b, base, &group);
                return (b, off as i32);
            }
        }
        let addr = if off == 0 {
            b
        } else {
            self.b.ins().iadd_imm_s(b, off as i64)
        };
        let ok = self.b.create_block();
        if target == Some(KnownTarget::AllowedUnlessZero) {
            // A lookup's result not yet tested: inside the value unless it
            // is 0, which the full check below (cold) refuses.
            let full = self.b.create_block();
            self.b.set_cold_block(full);
            self.b.ins().brif(b, ok, &[], full, &[]);
            self.b.switch_to_block(full);
            self.b.seal_block(full);
        }
        let k = size.index();
        let (Some(start), Some(mem_bound), Some(stack_bound)) =
            (self.mem_start, self.mem_bound[k], self.stack_bound[k])
        else {
            unreachable!("load_invariants computes the bounds of every checked size")
        };
        // The cold block is placed after the function's hot code, so that
        // the common case costs one compare and one branch not taken. The
        // trampoline, on a refusal, writes the whole trap record. At O0,
        // which compiles for latency, skipping the other two tests saves
        // two blocks and about ten instructions per access.
        // (One branch on both inline checks, tried, compiled no measurably
        // faster and computes both compares on every access.)
        let (first, other) =
            self.likely_first(base, (start, mem_bound), (self.frame_lo, stack_bound));
        let inside = self.below(addr, first.0, first.1);
        self.unless_cold(inside, ok);
        if self.opts.opt_level > 0 {
            let (lo, limit) = self.last_region(size.bytes() as u64, write);
            let in_other = self.below(addr, other.0, other.1);
            let in_last = self.below(addr, lo, limit);
            let hit = self.b.ins().bor(in_other, in_last);
            self.unless_cold(hit, ok);
        }
        let access = self.b.ins().iconst(I64, slow_path::access(pc, size, write));
        self.call_check(self.ext.check_fn, addr, access, ok);
        (addr, 0)
    }

    /// The region the last slow-path check allowed (`VmCtx`'s remembered
    /// one): its start, and the limit of an access's start for `size`
    /// bytes (a store when `write`), loaded on a check's cold path.
    fn last_region(&mut self, size: u64, write: bool) -> (Value, Value) {
        let ctx = self.ctx;
        let start = self
            .b
            .ins()
            .load(I64, trusted(), ctx, OFFSET_LAST_REGION_START);
        let limit_at = last_region_limit_offset(size, write);
        let limit = self.b.ins().load(I64, trusted(), ctx, limit_at);
        (start, limit)
    }

    /// `(input, frame)` in the order a check through `base` tests them:
    /// the frame first for r10 or a register set from it, else the input.
    fn likely_first<T>(&self, base: u8, input: T, frame: T) -> (T, T) {
        if self.facts.stack_offset(base).is_some() {
            (frame, input)
        } else {
            (input, frame)
        }
    }

    /// Continues in `ok` when `hit`, else in a new cold block.
    fn unless_cold(&mut self, hit: Value, ok: Block) {
        let cold = self.b.create_block();
        self.b.set_cold_block(cold);
        self.b.ins().brif(hit, ok, &[], cold, &[]);
        self.b.switch_to_block(cold);
        self.b.seal_block(cold);
    }

    /// Calls the check trampoline at `f` ([`crate::slow_path`]) with
    /// `(ctx, a, b, frame_lo)`, then continues in `ok` when it allowed
    /// the access. On a refusal it recorded the trap and, where
    /// [`ABORTS`], abandoned the run; elsewhere this returns.
    fn call_check(&mut self, f: i64, a: Value, b: Value, ok: Block) {
        let f = self.b.ins().iconst(I64, f);
        let args = [self.ctx, a, b, self.frame_lo];
        let sig = match self.check_sig {
            Some(sig) => sig,
            None => *self
                .check_sig
                .insert(self.b.import_signature(self.ext.check_sig.clone())),
        };
        self.b.ins().call_indirect(sig, f, &args);
        if ABORTS {
            self.b.ins().jump(ok, &[]);
        } else {
            let allowed = self
                .b
                .ins()
                .load(I64, trusted(), self.ctx, OFFSET_CHECK_ANSWER);
            let trapped = self.trapped();
            self.b.ins().brif(allowed, ok, &[], trapped, &[]);
        }
        self.b.switch_to_block(ok);
        self.b.seal_block(ok);
    }

    /// One check for the accesses of `group` ([`RegisterFacts::access_group`])
    /// through `base`, whose value is `b`: whether the span from its
    /// lowest to its highest byte lies in the region the base most likely
    /// points into, inline (as for one access); then, cold, at levels 1 to
    /// 3 in the other of the two or the remembered region, and last the
    /// group trampoline, which checks each access in turn and traps at the
    /// first refused one. The group's other accesses are then not checked.
    /// (The input and the frame are writable; the remembered region's
    /// limit is its limit for stores when the group ends with one.)
    fn check_group(&mut self, b: Value, base: u8, group: &[GroupedAccess]) {
        let lo = group.iter().map(|g| g.off as i64).min().unwrap_or(0);
        let hi = group
            .iter()
            .map(|g| g.off as i64 + g.size.bytes() as i64)
            .max()
            .unwrap_or(0);
        let span = hi - lo;
        for g in group {
            self.covered[g.pc - self.func.start] = true;
        }
        let table: Box<[u64]> = std::iter::once(group.len() as u64)
            .chain(
                group
                    .iter()
                    .map(|g| grouped_access(g.pc, g.off, g.size.bytes() as u64, g.write)),
            )
            .collect();
        let table_addr = table.as_ptr() as i64;
        self.tables.push(table);
        let (Some(start), Some(mem_len), Some(window)) =
            (self.mem_start, self.mem_len, self.window)
        else {
            unreachable!("load_invariants computes the regions' lengths for checked loads")
        };
        let addr = if lo == 0 {
            b
        } else {
            self.b.ins().iadd_imm_s(b, lo)
        };
        let frame_first = self.facts.stack_offset(base).is_some();
        let (first, other) = self.likely_first(base, (start, mem_len), (self.frame_lo, window));
        let ok = self.b.create_block();
        let bound = self.span_bound(frame_first, span);
        let inside = self.below(addr, first.0, bound);
        self.unless_cold(inside, ok);
        if self.opts.opt_level > 0 {
            // A region's one-byte limit is its length (0 for stores when
            // it is read-only).
            let write = group.iter().any(|g| g.write);
            let (last, last_len) = self.last_region(1, write);
            let in_other = self.span_in(addr, other.0, other.1, span);
            let in_last = self.span_in(addr, last, last_len, span);
            let hit = self.b.ins().bor(in_other, in_last);
            self.unless_cold(hit, ok);
        }
        let table = self.b.ins().iconst(I64, table_addr);
        self.call_check(self.ext.group_fn, b, table, ok);
    }

    /// For the input (or, when `frame`, the frame and its callers'), the
    /// bound `len - span + 1` of a span's start, or 0 when the region is
    /// shorter: computed once per function and span, in the entry block
    /// with the other per-run values (inline, it would be four more
    /// instructions per group on the hot path).
    fn span_bound(&mut self, frame: bool, span: i64) -> Value {
        if let Some(&(_, _, v)) = self
            .span_bounds
            .iter()
            .find(|b| b.0 == frame && b.1 == span)
        {
            return v;
        }
        let len = if frame { self.window } else { self.mem_len };
        let Some(len) = len else {
            unreachable!("load_invariants computes the regions' lengths for checked loads")
        };
        // Before the entry block's terminator, the jump `translate` made
        // first (the builder itself only appends to the current block).
        let last = self.b.func.layout.last_inst(self.entry);
        debug_assert!(last.is_some_and(|i| self.b.func.dfg.insts[i].opcode().is_terminator()));
        let mut pos = FuncCursor::new(self.b.func).at_last_inst(self.entry);
        let bound = span_limit(&mut pos, len, span);
        self.span_bounds.push((frame, span, bound));
        bound
    }

    /// Whether the `span` bytes from `addr` lie in the region of `len`
    /// bytes at `lo`: `addr - lo < len - span + 1`, unsigned, and false
    /// when the region is shorter than `span`.
    fn span_in(&mut self, addr: Value, lo: Value, len: Value, span: i64) -> Value {
        let bound = span_limit(&mut self.b.cursor(), len, span);
        self.below(addr, lo, bound)
    }

    /// `addr - lo < bound`, unsigned: whether `addr` is in the region
    /// starting at `lo` for an access whose last valid start is
    /// `lo + bound - 1`.
    fn below(&mut self, addr: Value, lo: Value, bound: Value) -> Value {
        let rel = self.b.ins().isub(addr, lo);
        self.b.ins().icmp(IntCC::UnsignedLessThan, rel, bound)
    }

    #[allow(clippy::too_many_arguments)]
    fn atomic(
        &mut self,
        pc: usize,
        size: MemSize,
        op: AtomicOp,
        fetch: bool,
        base: u8,
        off: i16,
        src: u8,
    ) {
        let (addr, k) = self.checked_addr(pc, base, off, size, true);
        let addr = if k == 0 {
            addr
        } else {
            self.b.ins().iadd_imm_s(addr, k as i64)
        };
        let n = size.bytes() as i64;
        let misaligned = self.b.ins().band_imm_s(addr, n - 1);
        let trap = self.trap(Some(TRAP_MISALIGNED), pc, Some(addr), n as u32);
        self.branch_unless(misaligned, trap);
        let ty = if size == MemSize::W { I32 } else { I64 };
        let width = if ty == I32 { Width::W32 } else { Width::W64 };
        let s = self.dst_value(width, src);
        let f = MemFlagsData::new();
        let old = if op == AtomicOp::CmpXchg {
            let expected = self.dst_value(width, 0);
            self.b.ins().atomic_cas(f, addr, expected, s)
        } else {
            let rmw = match op {
                AtomicOp::Add => AtomicRmwOp::Add,
                AtomicOp::Or => AtomicRmwOp::Or,
                AtomicOp::And => AtomicRmwOp::And,
                AtomicOp::Xor => AtomicRmwOp::Xor,
                _ => AtomicRmwOp::Xchg,
            };
            self.b.ins().atomic_rmw(ty, f, rmw, addr, s)
        };
        match op {
            AtomicOp::CmpXchg => self.set_width(width, 0, old),
            _ if fetch => self.set_width(width, src, old),
            _ => {}
        }
    }

    /// Calls helper `id` through the context's table; an id out of the
    /// table or an empty slot traps with `TRAP_UNKNOWN_HELPER`.
    fn call_helper(&mut self, pc: usize, id: Value) {
        let sig = match self.helper_sig {
            Some(sig) => sig,
            None => *self
                .helper_sig
                .insert(self.b.import_signature(self.ext.helper_sig.clone())),
        };
        if self.ext.helper_fn != 0 {
            // The trampoline finds the slot and tests for both traps.
            let mut args = vec![self.ctx, id];
            for r in 1..=5 {
                args.push(self.get(r));
            }
            args.push(self.b.ins().iconst(I64, pc as i64));
            let f = self.b.ins().iconst(I64, self.ext.helper_fn);
            let call = self.b.ins().call_indirect(sig, f, &args);
            let r0 = self.b.inst_results(call)[0];
            self.set(0, r0);
            return;
        }
        let (Some(table), Some(count)) = (self.helpers, self.helper_count) else {
            unreachable!("load_invariants loads the helper table when there are calls")
        };
        let unknown = self.trap(Some(TRAP_UNKNOWN_HELPER), pc, Some(id), 0);
        // An id past the table reads an empty slot of our own instead: one
        // test, of the function, covers both ways of being unknown.
        let inside = self.b.ins().icmp(IntCC::UnsignedLessThan, id, count);
        let offset = self.b.ins().imul_imm_s(id, HELPER_SLOT_SIZE as i64);
        let at = self.b.ins().iadd(table, offset);
        let none = self.b.ins().iconst(I64, EMPTY_SLOT.as_ptr() as i64);
        let slot = self.b.ins().select(inside, at, none);
        let func = self.b.ins().load(I64, trusted(), slot, OFFSET_SLOT_FUNC);
        let empty = self.b.ins().icmp_imm_s(IntCC::Equal, func, 0);
        self.branch_unless(empty, unknown);
        let data = self.b.ins().load(I64, trusted(), slot, OFFSET_SLOT_DATA);
        let mut args = vec![self.ctx, data];
        for r in 1..=5 {
            args.push(self.get(r));
        }
        let call = self.b.ins().call_indirect(sig, func, &args);
        let r0 = self.b.inst_results(call)[0];
        let code = self
            .b
            .ins()
            .load(I32, trusted(), self.ctx, OFFSET_TRAP_CODE);
        let failed = self.trap(None, pc, None, 0);
        self.branch_unless(code, failed);
        self.set(0, r0);
    }

    /// `call 1` (`map_lookup_elem`) on a known array map: when the 4-byte
    /// key is in the current frame, r0 is computed inline as the runtime's
    /// helper computes it (`values + key * stride`, or 0 when the key is
    /// out of range); any other key pointer goes to the helper, which
    /// checks it and traps exactly as on the other tiers. A key at a known
    /// offset in the frame (r2 = r10 - 4, as compilers write it) needs no
    /// test and no helper path. r1 to r5 are unchanged either way; r0 is
    /// known to be a value of the map or 0 ([`Known::lookup_result`]).
    fn inline_array_lookup(&mut self, pc: usize, map: ArrayMapLayout) {
        let key_addr = self.get(2);
        let value = Some(Known::lookup_result(map));
        if self.facts.in_frame(2, 0, MemSize::W) {
            let r0 = self.array_value(key_addr, map);
            self.set(0, r0);
            self.facts.set(0, value);
            return;
        }
        let rel = self.b.ins().isub(key_addr, self.frame_lo);
        let in_frame = self.b.ins().icmp_imm_s(
            IntCC::UnsignedLessThanOrEqual,
            rel,
            STACK_FRAME_SIZE as i64 - 4,
        );
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let join = self.b.create_block();
        self.b.set_cold_block(slow);
        // r0 differs on the two paths: it meets in the variable at the
        // join; the other registers' cached values dominate the join.
        // The helper's arguments are read here, so that no value the
        // branches read is cached from a block that does not.
        for r in 1..=5 {
            self.get(r);
        }
        self.flush();
        self.b.ins().brif(in_frame, fast, &[], slow, &[]);
        self.b.switch_to_block(fast);
        self.b.seal_block(fast);
        let r0 = self.array_value(key_addr, map);
        self.set(0, r0);
        self.flush();
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(slow);
        self.b.seal_block(slow);
        // The fast path's r0 does not reach here.
        self.cache.full[0] = None;
        self.cache.low[0] = None;
        let id = self.b.ins().iconst(I64, MAP_LOOKUP_ELEM as i64);
        self.call_helper(pc, id);
        self.flush();
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(join);
        self.b.seal_block(join);
        self.cache.full[0] = None;
        self.cache.low[0] = None;
        self.facts.set(0, value);
    }

    /// The address of the value that the 4-byte key at `key_addr` (in the
    /// current frame) names in `map`, or 0 when the key is out of range.
    fn array_value(&mut self, key_addr: Value, map: ArrayMapLayout) -> Value {
        let key = self.b.ins().load(I32, flags(), key_addr, 0);
        let index = self.b.ins().uextend(I64, key);
        let inside =
            self.b
                .ins()
                .icmp_imm_s(IntCC::UnsignedLessThan, index, map.max_entries as i64);
        let offset = if map.stride.is_power_of_two() {
            let shift = map.stride.trailing_zeros() as i64;
            self.b.ins().ishl_imm_s(index, shift)
        } else {
            self.b.ins().imul_imm_s(index, map.stride as i64)
        };
        let addr = self.b.ins().iadd_imm_s(offset, map.values as i64);
        let zero = self.b.ins().iconst(I64, 0);
        self.b.ins().select(inside, addr, zero)
    }

    /// A bpf-to-bpf call: a new 512-byte frame below this one, the depth
    /// limit checked; r6 to r9 survive (they are this function's
    /// variables), r1 to r5 are zero afterwards.
    fn call_local(&mut self, pc: usize, target: usize) {
        let Some(floor) = self.depth_floor else {
            unreachable!("load_invariants loads the stack floor when there are calls")
        };
        let new_r10 = self
            .b
            .ins()
            .iadd_imm_s(self.r10, -(STACK_FRAME_SIZE as i64));
        let too_deep = self.b.ins().icmp(IntCC::UnsignedLessThan, new_r10, floor);
        let trap = self.trap(Some(TRAP_CALL_DEPTH), pc, None, 0);
        self.branch_unless(too_deep, trap);
        if let Some(callee) = (self.ext.inline)(target) {
            return self.inline_call(callee, new_r10);
        }
        let Some(callee) = (self.ext.funcs)(target) else {
            unreachable!("every call target starts a function")
        };
        let mut args = vec![self.ctx];
        for r in 1..=5 {
            args.push(self.get(r));
        }
        args.push(new_r10);
        let call = self.b.ins().call(callee, &args);
        let r0 = self.b.inst_results(call)[0];
        let code = self
            .b
            .ins()
            .load(I32, trusted(), self.ctx, OFFSET_TRAP_CODE);
        let propagate = self.trapped();
        self.branch_unless(code, propagate);
        self.set(0, r0);
        let zero = self.b.ins().iconst(I64, 0);
        for r in 1..=5 {
            self.set(r, zero);
        }
    }

    /// The call of `callee`, translated here, with the frame at
    /// `new_r10`: its registers are variables of their own, starting as a
    /// call's do (r1 to r5 the arguments, the others zero); its `exit`s
    /// jump to a block after it with r0, where this function's registers
    /// are what they were, but r0 and r1 to r5 (zero). Its traps join
    /// this function's, and its exits are this function's.
    fn inline_call(&mut self, callee: Function, new_r10: Value) {
        let after = self.b.create_block();
        let r0 = self.b.append_block_param(after, I64);
        let zero = self.zero;
        let values: [Value; 11] = std::array::from_fn(|k| match k {
            1..=5 => self.get(k as u8),
            10 => new_r10,
            _ => zero,
        });
        let piece = Piece::whole(callee);
        let mut inner = Translator::start(
            &mut *self.b,
            self.program,
            self.opts,
            self.ext,
            &piece,
            self.ctx,
            values,
            zero,
            Some(after),
        );
        // What does not depend on the frame is the caller's, loaded in a
        // block that dominates this one.
        (inner.mem_start, inner.mem_len, inner.stack_top) =
            (self.mem_start, self.mem_len, self.stack_top);
        inner.mem_bound = self.mem_bound;
        inner.depth_floor = self.depth_floor;
        (inner.helpers, inner.helper_count) = (self.helpers, self.helper_count);
        inner.load_invariants();
        inner.traps = std::mem::take(&mut self.traps);
        inner.exits = std::mem::take(&mut self.exits);
        inner.tables = std::mem::take(&mut self.tables);
        (inner.helper_sig, inner.check_sig) = (self.helper_sig, self.check_sig);
        inner.translate_code();
        debug_assert!(inner.filled, "a function does not run off its end");
        self.traps = inner.traps;
        self.exits = inner.exits;
        self.tables = inner.tables;
        (self.helper_sig, self.check_sig) = (inner.helper_sig, inner.check_sig);
        // Every exit of the callee is translated: `after` has all its
        // predecessors (none if it never returns).
        self.b.switch_to_block(after);
        self.b.seal_block(after);
        self.set(0, r0);
        for r in 1..=5 {
            self.set(r, zero);
        }
    }
}

/// At `pos`, the last start `len - span + 1` (relative, exclusive) of
/// `span` bytes in a region of `len` bytes, or 0 when it is shorter.
fn span_limit(pos: &mut FuncCursor<'_>, len: Value, span: i64) -> Value {
    if span == 1 {
        return len;
    }
    let long = pos
        .ins()
        .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, len, span);
    let bound = pos.ins().iadd_imm_s(len, 1 - span);
    let zero = pos.ins().iconst(I64, 0);
    pos.ins().select(long, bound, zero)
}

/// The pc of the header of `func`'s most deeply nested loop (the last one
/// of those), if it has a loop. Each backward branch makes a loop, from
/// its target (the header) to the branch, so that an inner loop whose
/// header is also its outer loop's (compilers rotate loops that way:
/// `sort`'s insertion loop) counts as nested in it. Inner loops run most
/// often, and a program's main loop tends to follow its set-up loops:
/// this is a static guess at the hottest loop, whose header the function
/// is placed to start a cache line (see `code_memory`).
pub(crate) fn hottest_loop_header(program: &Program, func: Function) -> Option<usize> {
    let mut loops: Vec<(usize, usize)> = Vec::new();
    for pc in func.start..func.end {
        let Some(t) = program.instrs()[pc].branch_target() else {
            continue;
        };
        let Ok(t) = usize::try_from(t) else { continue };
        if (func.start..=pc).contains(&t) {
            loops.push((t, pc));
        }
    }
    let depth = |&(h, end): &(usize, usize)| {
        loops
            .iter()
            .filter(|&&(h2, end2)| (h2, end2) != (h, end) && h2 <= h && end <= end2)
            .count()
    };
    loops.iter().max_by_key(|l| (depth(l), l.0)).map(|l| l.0)
}

fn mask(ty: Type, v: i64) -> i64 {
    if ty == I32 {
        v as u32 as i64
    } else {
        v
    }
}

fn intcc(c: Cond) -> IntCC {
    match c {
        Cond::Eq => IntCC::Equal,
        Cond::Ne => IntCC::NotEqual,
        Cond::Gt => IntCC::UnsignedGreaterThan,
        Cond::Ge => IntCC::UnsignedGreaterThanOrEqual,
        Cond::Lt => IntCC::UnsignedLessThan,
        Cond::Le => IntCC::UnsignedLessThanOrEqual,
        Cond::SGt => IntCC::SignedGreaterThan,
        Cond::SGe => IntCC::SignedGreaterThanOrEqual,
        Cond::SLt => IntCC::SignedLessThan,
        Cond::SLe => IntCC::SignedLessThanOrEqual,
        Cond::Set => IntCC::NotEqual,
    }
}
