//! eBPF to LLVM IR, one eBPF function at a time.
//!
//! Every eBPF function becomes an internal LLVM function
//! `bpf_fn_<start>(ptr ctx, i64 r1, .., i64 r5, i64 r10) -> i64` (fastcc on
//! CPUs). Registers r0 to r9 are allocas that SROA/mem2reg promote; r10 is
//! the read-only parameter. Each basic block of the program (as the engine
//! defines them, for budget accounting) starts an LLVM block.
//!
//! The code has no undefined behaviour whatever the input: divisions are
//! guarded so that no `udiv`/`sdiv`/`urem`/`srem` can see a zero divisor or
//! `MIN / -1`, shift counts are masked first, arithmetic carries no
//! `nsw`/`nuw`, memory accesses are `align 1` (atomics are checked for
//! alignment before they run), and nothing poison-producing reaches a branch.
//!
//! A trap stores its record in the `VmCtx` and returns 0; callers check
//! `ctx.trap_code` after every call and return at once when it is set,
//! exactly as the Cranelift tier does.

use std::cell::RefCell;
use std::collections::HashMap;

use bpfvm_engine::backend::{ArrayMapLayout, CompileOptions, COUNT_ONLY};
use bpfvm_engine::facts::{Known, KnownTarget, RegisterFacts};
use bpfvm_engine::instr::{
    AluOp, AtomicOp, Cond, Endian, Instr, LddwPseudo, MemSize, Operand, Width,
};
use bpfvm_engine::isa::*;
use bpfvm_engine::program::{Function, Program, MAP_LOOKUP_ELEM};
use bpfvm_engine::vmctx::*;
use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::basic_block::BasicBlock;
use inkwell::builder::{Builder, BuilderError};
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::types::{FunctionType, IntType, PointerType};
use inkwell::values::{
    BasicMetadataValueEnum, BasicValue, CallSiteValue, FunctionValue, InstructionValue, IntValue,
    MetadataValue, PointerValue, ValueKind,
};
use inkwell::{AddressSpace, AtomicOrdering, AtomicRMWBinOp, IntPredicate};

use crate::{fail, CompileError, Tier};

mod alu;
mod calls;
mod memory;

/// LLVM's `fastcc` calling convention number.
const FASTCC: u32 = 8;

/// Name of the out-of-line memory check (the engine's `bpfvm_check_access`).
pub(crate) const CHECK_ACCESS: &str = "bpfvm_check_access";
/// LLVM's `preserve_allcc` (`llvm::CallingConv::PreserveAll`).
pub(crate) const CALL_CONV_PRESERVE_ALL: u32 = 15;

/// AOT: `callx` goes through this external `(id, r1..r5) -> r0`.
pub(crate) const AOT_CALLX: &str = "__bpfvm_callx";
/// Prefix of AOT helper symbols: `_bpf_helper_ext_0005`.
pub(crate) const HELPER_PREFIX: &str = "_bpf_helper_ext_";
/// llvmbpf-compatible `lddw` hooks.
pub(crate) const LDDW_MAP_BY_FD: &str = "__lddw_helper_map_by_fd";
pub(crate) const LDDW_MAP_BY_IDX: &str = "__lddw_helper_map_by_idx";
pub(crate) const LDDW_MAP_VAL: &str = "__lddw_helper_map_val";
pub(crate) const LDDW_VAR_ADDR: &str = "__lddw_helper_var_addr";
pub(crate) const LDDW_CODE_ADDR: &str = "__lddw_helper_code_addr";

/// The AOT symbol of helper `id`.
pub(crate) fn helper_symbol(id: u32) -> String {
    format!("{HELPER_PREFIX}{id:04}")
}

/// What the generated code may rely on outside itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// In-process JIT: helpers through `ctx.helpers`, the slow memory check
    /// through `bpfvm_check_access`, `lddw` values resolved at load time.
    Jit,
    /// Native object: helpers are external `_bpf_helper_ext_NNNN`, the slow
    /// memory check an optional (weak) `bpfvm_check_access`; `lddw` pseudo
    /// sources call the llvmbpf hooks when `lddw_hooks`, else use the
    /// values resolved at load time; with `bake_functions`, function
    /// addresses (source 4) use the resolved value even with hooks.
    Aot {
        lddw_hooks: bool,
        bake_functions: bool,
    },
    /// NVPTX: no helpers, no slow path (anything outside the input and the
    /// stack traps), no `lddw` pseudo sources.
    Ptx,
}

type R<T> = Result<T, CompileError>;

/// Builder errors are bugs in this crate, reported as compile errors.
trait OrFail<T> {
    fn or_fail(self) -> R<T>;
}

impl<T> OrFail<T> for Result<T, BuilderError> {
    fn or_fail(self) -> R<T> {
        self.map_err(|e| fail(Tier::Llvm, format!("LLVM builder: {e}")))
    }
}

/// Module-wide state: types, the program's functions, declarations.
pub(crate) struct Codegen<'ctx> {
    pub context: &'ctx Context,
    pub module: Module<'ctx>,
    pub builder: Builder<'ctx>,
    pub mode: Mode,
    pub opts: CompileOptions,
    pub tier: Tier,
    pub i8: IntType<'ctx>,
    pub i16: IntType<'ctx>,
    pub i32: IntType<'ctx>,
    pub i64: IntType<'ctx>,
    pub ptr: PointerType<'ctx>,
    /// The eBPF functions by start pc.
    pub functions: HashMap<usize, FunctionValue<'ctx>>,
    /// `!prof` branch weights that mark the first successor as cold.
    cold_first: MetadataValue<'ctx>,
    /// `!prof` branch weights for a likely first successor (the first
    /// region check of an access: what range-check elimination works on).
    likely_first: MetadataValue<'ctx>,
    /// Even `!prof` weights (the second region check: not a candidate for
    /// range-check elimination, whose main loop would otherwise be the
    /// iterations in which that region is hit).
    even: MetadataValue<'ctx>,
    prof_kind: u32,
}

impl<'ctx> Codegen<'ctx> {
    pub(crate) fn new(
        context: &'ctx Context,
        name: &str,
        mode: Mode,
        opts: &CompileOptions,
        tier: Tier,
    ) -> Self {
        let i32 = context.i32_type();
        let cold_first = context.metadata_node(&[
            context.metadata_string("branch_weights").into(),
            i32.const_int(1, false).into(),
            i32.const_int(2000, false).into(),
        ]);
        let weights = |a: u64, b: u64| {
            context.metadata_node(&[
                context.metadata_string("branch_weights").into(),
                i32.const_int(a, false).into(),
                i32.const_int(b, false).into(),
            ])
        };
        Codegen {
            likely_first: weights(2000, 1),
            even: weights(1, 1),
            context,
            module: context.create_module(name),
            builder: context.create_builder(),
            mode,
            opts: opts.clone(),
            tier,
            i8: context.i8_type(),
            i16: context.i16_type(),
            i32,
            i64: context.i64_type(),
            ptr: context.ptr_type(AddressSpace::default()),
            functions: HashMap::new(),
            cold_first,
            prof_kind: context.get_kind_id("prof"),
        }
    }

    fn calling_convention(&self) -> u32 {
        match self.mode {
            Mode::Ptx => 0,
            _ => FASTCC,
        }
    }

    pub(crate) fn fail(&self, message: impl std::fmt::Display) -> CompileError {
        fail(self.tier, message)
    }

    pub(crate) fn attr(&self, name: &str) -> Attribute {
        self.context
            .create_enum_attribute(Attribute::get_named_enum_kind_id(name), 0)
    }

    /// Declares every eBPF function, then translates each one.
    pub(crate) fn translate_program(&mut self, program: &Program) -> R<()> {
        self.reject_unsupported(program)?;
        let i64 = self.i64;
        let sig = i64.fn_type(
            &[
                self.ptr.into(),
                i64.into(),
                i64.into(),
                i64.into(),
                i64.into(),
                i64.into(),
                i64.into(),
            ],
            false,
        );
        for f in program.functions() {
            let name = format!("bpf_fn_{}", f.start);
            let fv = self
                .module
                .add_function(&name, sig, Some(Linkage::Internal));
            fv.set_call_conventions(self.calling_convention());
            fv.add_attribute(AttributeLoc::Function, self.attr("nounwind"));
            self.functions.insert(f.start, fv);
        }
        for f in program.functions() {
            FnTranslator::new(self, program, *f)?.translate()?;
        }
        Ok(())
    }

    /// The PTX mode has no host to call: reject what needs one.
    fn reject_unsupported(&self, program: &Program) -> R<()> {
        if self.mode != Mode::Ptx {
            return Ok(());
        }
        for (pc, ins) in program.instrs().iter().enumerate() {
            let why = match ins {
                Instr::CallHelper { id } => format!("calls helper {id}"),
                Instr::CallReg { .. } => "calls a helper through callx".to_string(),
                Instr::Lddw {
                    pseudo: Some(p), ..
                } => format!("loads a host address (lddw pseudo source {})", p.kind),
                _ => continue,
            };
            return Err(self.fail(format!(
                "pc {pc}: the program {why}; helpers and host addresses are not available on the GPU"
            )));
        }
        Ok(())
    }

    /// The main function (the one at pc 0).
    pub(crate) fn main_function(&self) -> R<FunctionValue<'ctx>> {
        self.functions
            .get(&0)
            .copied()
            .ok_or_else(|| self.fail("the program has no function at pc 0"))
    }

    /// Calls an eBPF function with the right calling convention.
    pub(crate) fn call_bpf(
        &self,
        callee: FunctionValue<'ctx>,
        ctx: PointerValue<'ctx>,
        args: [IntValue<'ctx>; 6],
    ) -> R<IntValue<'ctx>> {
        let mut a: Vec<BasicMetadataValueEnum> = vec![ctx.into()];
        a.extend(args.iter().map(|v| BasicMetadataValueEnum::from(*v)));
        let call = self.builder.build_call(callee, &a, "r0").or_fail()?;
        call.set_call_convention(self.calling_convention());
        self.int_result(call)
    }

    pub(crate) fn int_result(&self, call: CallSiteValue<'ctx>) -> R<IntValue<'ctx>> {
        match call.try_as_basic_value() {
            ValueKind::Basic(v) if v.is_int_value() => Ok(v.into_int_value()),
            _ => Err(self.fail("a call that should return i64 returns nothing")),
        }
    }

    /// `ctx + off` as a pointer (byte offsets from the `OFFSET_*` constants).
    pub(crate) fn field(&self, ctx: PointerValue<'ctx>, off: i32) -> R<PointerValue<'ctx>> {
        let idx = self.i64.const_int(off as i64 as u64, true);
        // SAFETY: a plain (not inbounds) GEP only computes an address; it
        // cannot be undefined behaviour whatever the offset.
        unsafe { self.builder.build_gep(self.i8, ctx, &[idx], "f") }.or_fail()
    }

    pub(crate) fn load_field(
        &self,
        ctx: PointerValue<'ctx>,
        off: i32,
        ty: IntType<'ctx>,
    ) -> R<IntValue<'ctx>> {
        let p = self.field(ctx, off)?;
        let v = self.builder.build_load(ty, p, "ctxf").or_fail()?;
        align(v.as_instruction_value(), ty.get_bit_width() / 8)?;
        Ok(v.into_int_value())
    }

    /// `len - n + 1`, or 0 when `len < n`: an access of `n` bytes at
    /// `addr` lies in a region of `len` bytes at `lo` when `addr - lo` is
    /// below it (unsigned).
    pub(crate) fn region_bound(&self, len: IntValue<'ctx>, n: u64) -> R<IntValue<'ctx>> {
        let b = &self.builder;
        let big = b
            .build_int_compare(IntPredicate::UGE, len, self.i64.const_int(n, false), "big")
            .or_fail()?;
        let bound = b
            .build_int_sub(len, self.i64.const_int(n - 1, false), "mb")
            .or_fail()?;
        Ok(
            b.build_select(big, bound, self.i64.const_int(0, false), "mb")
                .or_fail()?
                .into_int_value(),
        )
    }

    pub(crate) fn store_field(
        &self,
        ctx: PointerValue<'ctx>,
        off: i32,
        v: IntValue<'ctx>,
    ) -> R<()> {
        let p = self.field(ctx, off)?;
        let st = self.builder.build_store(p, v).or_fail()?;
        align(Some(st), v.get_type().get_bit_width() / 8)
    }

    /// `if cond { goto cold } else { goto hot }`, marked unlikely.
    pub(crate) fn branch_cold(
        &self,
        cond: IntValue<'ctx>,
        cold: BasicBlock<'ctx>,
        hot: BasicBlock<'ctx>,
    ) -> R<()> {
        let br = self
            .builder
            .build_conditional_branch(cond, cold, hot)
            .or_fail()?;
        br.set_metadata(self.cold_first, self.prof_kind)
            .map_err(|e| self.fail(format!("branch weights: {e}")))
    }

    /// `if cond { goto a } else { goto b }` with `!prof` weights: `a`
    /// likely, or both even.
    pub(crate) fn branch_weighted(
        &self,
        cond: IntValue<'ctx>,
        a: BasicBlock<'ctx>,
        b: BasicBlock<'ctx>,
        likely: bool,
    ) -> R<()> {
        let br = self
            .builder
            .build_conditional_branch(cond, a, b)
            .or_fail()?;
        let weights = if likely { self.likely_first } else { self.even };
        br.set_metadata(weights, self.prof_kind)
            .map_err(|e| self.fail(format!("branch weights: {e}")))
    }

    /// Declares (once) an external function `name: (args) -> i64`.
    pub(crate) fn external(
        &self,
        name: &str,
        params: &[IntType<'ctx>],
        first_ptr: bool,
        linkage: Linkage,
    ) -> FunctionValue<'ctx> {
        if let Some(f) = self.module.get_function(name) {
            return f;
        }
        let mut ps: Vec<inkwell::types::BasicMetadataTypeEnum> = Vec::new();
        if first_ptr {
            ps.push(self.ptr.into());
        }
        ps.extend(
            params
                .iter()
                .map(|t| inkwell::types::BasicMetadataTypeEnum::from(*t)),
        );
        let f = self
            .module
            .add_function(name, self.i64.fn_type(&ps, false), None);
        if linkage != Linkage::External {
            f.set_linkage(linkage);
        }
        f
    }

    fn helper_fn_type(&self) -> FunctionType<'ctx> {
        let i64 = self.i64;
        i64.fn_type(
            &[
                self.ptr.into(),
                self.ptr.into(),
                i64.into(),
                i64.into(),
                i64.into(),
                i64.into(),
                i64.into(),
            ],
            false,
        )
    }
}

fn align(ins: Option<InstructionValue>, bytes: u32) -> R<()> {
    match ins {
        Some(i) => i
            .set_alignment(bytes.max(1))
            .map_err(|e| fail(Tier::Llvm, format!("alignment: {e}"))),
        None => Ok(()),
    }
}

/// Translation state of one eBPF function.
struct FnTranslator<'a, 'ctx> {
    cg: &'a Codegen<'ctx>,
    program: &'a Program,
    func: Function,
    f: FunctionValue<'ctx>,
    /// r0 to r9 (r10 is `r10`).
    regs: Vec<PointerValue<'ctx>>,
    /// Scratch slot for values joined across blocks (AOT `lddw` hooks).
    tmp: PointerValue<'ctx>,
    ctx: PointerValue<'ctx>,
    r10: IntValue<'ctx>,
    /// Lowest stack address of this frame (r10 - 512).
    frame_lo: IntValue<'ctx>,
    /// Input region start, and per access size the bound `len - n + 1`
    /// (0 when the region is smaller than n): `addr - start < bound`.
    mem_start: Option<IntValue<'ctx>>,
    /// The input region start as a pointer: accesses through registers
    /// other than r10 address `membase + (addr - start)`, a GEP that
    /// scalar evolution can follow (an `inttoptr` per access hides the
    /// induction variable from the loop vectorisers).
    membase: Option<PointerValue<'ctx>>,
    /// r10 as a pointer: r10-based accesses are `stack + off`.
    stack: PointerValue<'ctx>,
    mem_bound: [Option<IntValue<'ctx>>; 4],
    /// Per access size, `stack_top - frame_lo - n + 1`.
    stack_bound: [Option<IntValue<'ctx>>; 4],
    /// `stack_bottom + 512`: a call whose new r10 is below it is too deep.
    depth_floor: Option<IntValue<'ctx>>,
    helpers: Option<PointerValue<'ctx>>,
    helper_count: Option<IntValue<'ctx>>,
    blocks: Vec<Option<BasicBlock<'ctx>>>,
    /// Whether the current block already ends in a terminator.
    filled: bool,
    /// What the code since the last merge point shows of the registers'
    /// values, for the checks of the accesses through them (as tier 0).
    facts: RefCell<RegisterFacts>,
}

impl<'a, 'ctx> FnTranslator<'a, 'ctx> {
    fn new(cg: &'a Codegen<'ctx>, program: &'a Program, func: Function) -> R<Self> {
        let f = *cg
            .functions
            .get(&func.start)
            .ok_or_else(|| cg.fail(format!("function at {} was not declared", func.start)))?;
        let entry = cg.context.append_basic_block(f, "entry");
        cg.builder.position_at_end(entry);
        let param = |k: u32| {
            f.get_nth_param(k)
                .ok_or_else(|| cg.fail("missing parameter"))
        };
        let ctx = param(0)?.into_pointer_value();
        let r10 = param(6)?.into_int_value();
        let b = &cg.builder;
        let mut regs = Vec::with_capacity(10);
        for k in 0..10u32 {
            let slot = b.build_alloca(cg.i64, &format!("r{k}")).or_fail()?;
            let init = if (1..=5).contains(&k) {
                param(k)?.into_int_value()
            } else {
                cg.i64.const_zero()
            };
            b.build_store(slot, init).or_fail()?;
            regs.push(slot);
        }
        let tmp = b.build_alloca(cg.i64, "tmp").or_fail()?;
        let frame_lo = b
            .build_int_sub(
                r10,
                cg.i64.const_int(STACK_FRAME_SIZE as u64, false),
                "frame_lo",
            )
            .or_fail()?;
        let stack = b.build_int_to_ptr(r10, cg.ptr, "stack").or_fail()?;
        let len = func.end - func.start;
        let mut t = FnTranslator {
            cg,
            program,
            func,
            f,
            regs,
            tmp,
            ctx,
            r10,
            frame_lo,
            mem_start: None,
            membase: None,
            stack,
            mem_bound: [None; 4],
            stack_bound: [None; 4],
            depth_floor: None,
            helpers: None,
            helper_count: None,
            blocks: vec![None; len],
            filled: false,
            // An AOT object's r1 and r2 come from whatever C calls it:
            // the input facts hold only for the JIT, called as
            // `CompiledCode::call` promises.
            facts: RefCell::new(RegisterFacts::new(program, func, cg.mode == Mode::Jit)),
        };
        t.load_invariants()?;
        Ok(t)
    }

    fn c64(&self, v: u64) -> IntValue<'ctx> {
        self.cg.i64.const_int(v, false)
    }

    /// Loads, in the entry block, the per-run values the function needs, so
    /// that they dominate every use.
    fn load_invariants(&mut self) -> R<()> {
        let cg = self.cg;
        let needs = self.program.needs(&self.func, cg.opts.checked);
        let (sizes, calls, helpers) = (needs.checked_sizes, needs.local_calls, needs.helper_calls);
        let b = &cg.builder;
        if sizes.iter().any(|&s| s) {
            let start = cg.load_field(self.ctx, OFFSET_MEM_START, cg.i64)?;
            let end = cg.load_field(self.ctx, OFFSET_MEM_END, cg.i64)?;
            let top = cg.load_field(self.ctx, OFFSET_STACK_TOP, cg.i64)?;
            let len = b.build_int_sub(end, start, "len").or_fail()?;
            let window = b.build_int_sub(top, self.frame_lo, "window").or_fail()?;
            for (k, n) in [1u64, 2, 4, 8].into_iter().enumerate() {
                if !sizes[k] {
                    continue;
                }
                self.mem_bound[k] = Some(cg.region_bound(len, n)?);
                let sb = b.build_int_sub(window, self.c64(n - 1), "sb").or_fail()?;
                self.stack_bound[k] = Some(sb);
            }
            self.mem_start = Some(start);
        }
        let through_registers = (self.func.start..self.func.end).any(|pc| {
            matches!(
                self.program.instrs()[pc],
                Instr::Load { base, .. } | Instr::Store { base, .. } | Instr::Atomic { base, .. }
                    if base != FRAME_POINTER
            )
        });
        if through_registers {
            let start = match self.mem_start {
                Some(s) => s,
                None => {
                    let s = cg.load_field(self.ctx, OFFSET_MEM_START, cg.i64)?;
                    self.mem_start = Some(s);
                    s
                }
            };
            self.membase = Some(b.build_int_to_ptr(start, cg.ptr, "membase").or_fail()?);
        }
        if calls {
            let bottom = cg.load_field(self.ctx, OFFSET_STACK_BOTTOM, cg.i64)?;
            let floor = b
                .build_int_add(bottom, self.c64(STACK_FRAME_SIZE as u64), "floor")
                .or_fail()?;
            self.depth_floor = Some(floor);
        }
        if helpers && cg.mode == Mode::Jit {
            let p = cg.field(self.ctx, OFFSET_HELPERS)?;
            let table = b.build_load(cg.ptr, p, "helpers").or_fail()?;
            align(table.as_instruction_value(), 8)?;
            self.helpers = Some(table.into_pointer_value());
            self.helper_count = Some(cg.load_field(self.ctx, OFFSET_HELPER_COUNT, cg.i64)?);
        }
        Ok(())
    }

    fn block_at(&mut self, pc: usize) -> R<BasicBlock<'ctx>> {
        let k = pc
            .checked_sub(self.func.start)
            .filter(|&k| k < self.blocks.len())
            .ok_or_else(|| {
                self.cg.fail(format!(
                    "branch to {pc} leaves the function at {}..{}",
                    self.func.start, self.func.end
                ))
            })?;
        if let Some(b) = self.blocks[k] {
            return Ok(b);
        }
        let b = self
            .cg
            .context
            .append_basic_block(self.f, &format!("pc{pc}"));
        self.blocks[k] = Some(b);
        Ok(b)
    }

    fn new_block(&self, name: &str) -> BasicBlock<'ctx> {
        self.cg.context.append_basic_block(self.f, name)
    }

    /// Translates the whole function.
    fn translate(mut self) -> R<()> {
        let first = self.block_at(self.func.start)?;
        self.cg
            .builder
            .build_unconditional_branch(first)
            .or_fail()?;
        self.filled = true;
        let mut pc = self.func.start;
        while pc < self.func.end {
            let ins = self.program.instrs()[pc];
            if ins == Instr::LddwTail {
                pc += 1;
                continue;
            }
            if self.program.is_block_start(pc) {
                let blk = self.block_at(pc)?;
                if !self.filled {
                    self.cg.builder.build_unconditional_branch(blk).or_fail()?;
                }
                self.cg.builder.position_at_end(blk);
                self.filled = false;
                self.facts.get_mut().enter_block(self.program, pc);
                self.charge_budget(pc)?;
            } else if self.filled {
                // Unreachable code that starts no block: give it one.
                let blk = self.new_block("dead");
                self.cg.builder.position_at_end(blk);
                self.filled = false;
                self.facts.get_mut().clear();
            }
            self.instr(pc, ins)?;
            pc += ins.slots();
        }
        if !self.filled {
            // The verifier rules this out (functions end in exit or a jump).
            let t = self.trap(Some(TRAP_INTERNAL), Some(self.func.end), None, 0)?;
            self.cg.builder.build_unconditional_branch(t).or_fail()?;
        }
        Ok(())
    }

    fn charge_budget(&mut self, pc: usize) -> R<()> {
        let Some(budget) = self.cg.opts.budget else {
            return Ok(());
        };
        let cg = self.cg;
        let cost = self.c64(self.program.block_cost(pc) as u64);
        let left = cg.load_field(self.ctx, OFFSET_BUDGET, cg.i64)?;
        // Counting alone never runs out: no test.
        if budget != COUNT_ONLY {
            let short = cg
                .builder
                .build_int_compare(IntPredicate::ULT, left, cost, "short")
                .or_fail()?;
            let trap = self.trap(Some(TRAP_BUDGET), Some(pc), None, 0)?;
            self.branch_unless(short, trap)?;
        }
        let rest = cg.builder.build_int_sub(left, cost, "left").or_fail()?;
        cg.store_field(self.ctx, OFFSET_BUDGET, rest)
    }

    /// A trap block: records the trap (the parts given) and returns 0.
    /// `code: None` when a callee or helper already wrote the record.
    fn trap(
        &self,
        code: Option<u32>,
        pc: Option<usize>,
        addr: Option<IntValue<'ctx>>,
        size: u32,
    ) -> R<BasicBlock<'ctx>> {
        let cg = self.cg;
        let here = cg.builder.get_insert_block();
        let bb = self.new_block("trap");
        cg.builder.position_at_end(bb);
        if let Some(code) = code {
            cg.store_field(
                self.ctx,
                OFFSET_TRAP_CODE,
                cg.i32.const_int(code as u64, false),
            )?;
            cg.store_field(
                self.ctx,
                OFFSET_TRAP_SIZE,
                cg.i32.const_int(size as u64, false),
            )?;
            cg.store_field(self.ctx, OFFSET_TRAP_ADDR, addr.unwrap_or(self.c64(0)))?;
        }
        if let Some(pc) = pc {
            cg.store_field(self.ctx, OFFSET_TRAP_PC, self.c64(pc as u64))?;
        }
        cg.builder.build_return(Some(&self.c64(0))).or_fail()?;
        if let Some(h) = here {
            cg.builder.position_at_end(h);
        }
        Ok(bb)
    }

    /// `if cond { goto trap }` and continue in a fresh block.
    fn branch_unless(&self, cond: IntValue<'ctx>, trap: BasicBlock<'ctx>) -> R<()> {
        let cont = self.new_block("ok");
        self.cg.branch_cold(cond, trap, cont)?;
        self.cg.builder.position_at_end(cont);
        Ok(())
    }

    fn get(&self, r: u8) -> R<IntValue<'ctx>> {
        if r == FRAME_POINTER {
            return Ok(self.r10);
        }
        let slot = *self
            .regs
            .get(r as usize)
            .ok_or_else(|| self.cg.fail(format!("register r{r} does not exist")))?;
        Ok(self
            .cg
            .builder
            .build_load(self.cg.i64, slot, &format!("r{r}"))
            .or_fail()?
            .into_int_value())
    }

    fn set(&self, r: u8, v: IntValue<'ctx>) -> R<()> {
        self.facts.borrow_mut().set(r, None);
        let slot = *self
            .regs
            .get(r as usize)
            .ok_or_else(|| self.cg.fail(format!("register r{r} cannot be written")))?;
        self.cg.builder.build_store(slot, v).or_fail()?;
        Ok(())
    }

    fn ty(&self, width: Width) -> IntType<'ctx> {
        match width {
            Width::W64 => self.cg.i64,
            Width::W32 => self.cg.i32,
        }
    }

    fn narrow(&self, width: Width, v: IntValue<'ctx>) -> R<IntValue<'ctx>> {
        match width {
            Width::W64 => Ok(v),
            Width::W32 => self
                .cg
                .builder
                .build_int_truncate(v, self.cg.i32, "lo")
                .or_fail(),
        }
    }

    fn widen(&self, width: Width, v: IntValue<'ctx>) -> R<IntValue<'ctx>> {
        match width {
            Width::W64 => Ok(v),
            Width::W32 => self
                .cg
                .builder
                .build_int_z_extend(v, self.cg.i64, "zx")
                .or_fail(),
        }
    }

    fn operand(&self, width: Width, src: Operand) -> R<IntValue<'ctx>> {
        match src {
            Operand::Reg(r) => {
                let v = self.get(r)?;
                self.narrow(width, v)
            }
            Operand::Imm(i) => Ok(match width {
                Width::W64 => self.cg.i64.const_int(i as i64 as u64, false),
                Width::W32 => self.cg.i32.const_int(i as u32 as u64, false),
            }),
        }
    }

    fn instr(&mut self, pc: usize, ins: Instr) -> R<()> {
        let b = &self.cg.builder;
        match ins {
            Instr::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let known = self.facts.get_mut().after_alu(width, op, dst, src);
                let a = self.narrow(width, self.get(dst)?)?;
                let ty = self.ty(width);
                let r = match (op, src) {
                    (AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod, Operand::Imm(i)) => {
                        self.div_imm(ty, op, a, i)?
                    }
                    _ => {
                        let s = self.operand(width, src)?;
                        self.alu(ty, op, a, s)?
                    }
                };
                let r = self.widen(width, r)?;
                self.set(dst, r)?;
                self.facts.get_mut().set(dst, known);
            }
            Instr::Neg { width, dst } => {
                let a = self.narrow(width, self.get(dst)?)?;
                let r = b
                    .build_int_sub(self.ty(width).const_zero(), a, "neg")
                    .or_fail()?;
                let r = self.widen(width, r)?;
                self.set(dst, r)?;
            }
            Instr::MovSx {
                width,
                bits,
                dst,
                src,
            } => {
                let s = self.get(src)?;
                let small = match bits {
                    8 => self.cg.i8,
                    16 => self.cg.i16,
                    _ => self.cg.i32,
                };
                let n = b.build_int_truncate(s, small, "sx").or_fail()?;
                let r = match width {
                    Width::W64 => b.build_int_s_extend(n, self.cg.i64, "sx").or_fail()?,
                    Width::W32 => {
                        let w = b.build_int_s_extend(n, self.cg.i32, "sx").or_fail()?;
                        b.build_int_z_extend(w, self.cg.i64, "zx").or_fail()?
                    }
                };
                self.set(dst, r)?;
            }
            Instr::Endian { kind, bits, dst } => {
                let v = self.get(dst)?;
                let r = self.endian(kind, bits, v)?;
                self.set(dst, r)?;
            }
            Instr::Load {
                size,
                signed,
                dst,
                base,
                off,
            } => {
                let addr = self.checked_addr(pc, base, off, size, false)?;
                let ty = self.mem_type(size);
                let p = self.access_ptr(base, off, addr)?;
                let v = b.build_load(ty, p, "ld").or_fail()?;
                align(v.as_instruction_value(), 1)?;
                let v = v.into_int_value();
                let v = if size == MemSize::DW {
                    v
                } else if signed {
                    b.build_int_s_extend(v, self.cg.i64, "sx").or_fail()?
                } else {
                    b.build_int_z_extend(v, self.cg.i64, "zx").or_fail()?
                };
                self.set(dst, v)?;
            }
            Instr::Store {
                size,
                base,
                off,
                src,
            } => {
                let addr = self.checked_addr(pc, base, off, size, true)?;
                let v = match src {
                    Operand::Reg(r) => self.get(r)?,
                    Operand::Imm(i) => self.c64(i as i64 as u64),
                };
                let ty = self.mem_type(size);
                let v = if size == MemSize::DW {
                    v
                } else {
                    b.build_int_truncate(v, ty, "st").or_fail()?
                };
                let p = self.access_ptr(base, off, addr)?;
                let st = b.build_store(p, v).or_fail()?;
                align(Some(st), 1)?;
            }
            Instr::Atomic {
                size,
                op,
                fetch,
                base,
                off,
                src,
            } => self.atomic(pc, size, op, fetch, base, off, src)?,
            Instr::Lddw { dst, value, pseudo } => {
                let (v, known) = match (self.cg.mode, pseudo) {
                    (
                        Mode::Aot {
                            lddw_hooks: true,
                            bake_functions,
                        },
                        Some(p),
                    ) if !(bake_functions && p.kind == bpfvm_engine::isa::PSEUDO_FUNC) => {
                        (self.lddw_hook(p)?, None)
                    }
                    _ => (self.c64(value), Some(Known::Const(value))),
                };
                self.set(dst, v)?;
                self.facts.get_mut().set(dst, known);
            }
            Instr::LddwTail => {}
            Instr::Ja { target } => {
                let t = self.block_at(target as usize)?;
                b.build_unconditional_branch(t).or_fail()?;
                self.filled = true;
            }
            Instr::Jcond {
                width,
                cond,
                dst,
                src,
                target,
            } => {
                let a = self.narrow(width, self.get(dst)?)?;
                let s = self.operand(width, src)?;
                let c = match cond {
                    Cond::Set => {
                        let x = b.build_and(a, s, "set").or_fail()?;
                        b.build_int_compare(IntPredicate::NE, x, self.ty(width).const_zero(), "c")
                            .or_fail()?
                    }
                    _ => b.build_int_compare(predicate(cond), a, s, "c").or_fail()?,
                };
                let t = self.block_at(target as usize)?;
                let next = self.block_at(pc + 1)?;
                b.build_conditional_branch(c, t, next).or_fail()?;
                self.filled = true;
            }
            Instr::CallHelper { id } => match self.cg.mode {
                Mode::Jit => {
                    match self
                        .program
                        .inlinable_lookup(&self.func, pc, &self.cg.opts.array_maps)
                    {
                        Some(map) => self.inline_array_lookup(pc, map)?,
                        None => self.call_helper_table(pc, self.c64(id as u64))?,
                    }
                }
                Mode::Aot { .. } => self.call_helper_aot(pc, Some(id), None)?,
                Mode::Ptx => return Err(self.cg.fail(format!("pc {pc}: helper call on the GPU"))),
            },
            Instr::CallReg { reg } => {
                let id = self.get(reg)?;
                match self.cg.mode {
                    Mode::Jit => self.call_helper_table(pc, id)?,
                    Mode::Aot { .. } => self.call_helper_aot(pc, None, Some(id))?,
                    Mode::Ptx => {
                        return Err(self.cg.fail(format!("pc {pc}: helper call on the GPU")))
                    }
                }
            }
            Instr::CallLocal { target } => self.call_local(pc, target as usize)?,
            Instr::Exit => {
                let r0 = self.get(0)?;
                b.build_return(Some(&r0)).or_fail()?;
                self.filled = true;
            }
        }
        Ok(())
    }

    fn mem_type(&self, size: MemSize) -> IntType<'ctx> {
        match size {
            MemSize::B => self.cg.i8,
            MemSize::H => self.cg.i16,
            MemSize::W => self.cg.i32,
            MemSize::DW => self.cg.i64,
        }
    }
}

fn predicate(c: Cond) -> IntPredicate {
    match c {
        Cond::Eq => IntPredicate::EQ,
        Cond::Ne | Cond::Set => IntPredicate::NE,
        Cond::Gt => IntPredicate::UGT,
        Cond::Ge => IntPredicate::UGE,
        Cond::Lt => IntPredicate::ULT,
        Cond::Le => IntPredicate::ULE,
        Cond::SGt => IntPredicate::SGT,
        Cond::SGe => IntPredicate::SGE,
        Cond::SLt => IntPredicate::SLT,
        Cond::SLe => IntPredicate::SLE,
    }
}
