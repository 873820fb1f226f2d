//! Memory accesses: the checked address computation and atomics.

use super::*;

impl<'ctx> FnTranslator<'_, 'ctx> {
    /// Computes `base + off` and, in checked mode, branches to a trap unless
    /// `[addr, addr + size)` is allowed. An access the register facts put
    /// in the frame or in array-map values
    /// ([`bpfvm_engine::facts::RegisterFacts::target`]) is not checked, or,
    /// through a lookup's untested result, tested for 0 before the full
    /// check. The input region and the current frame are checked inline
    /// (the frame first for r10 and registers known to hold `r10 + k`);
    /// anything else goes to the slow path of the mode (in the JIT: the
    /// extra region the last out-of-line check allowed, then a call).
    pub(super) fn checked_addr(
        &mut self,
        pc: usize,
        base: u8,
        off: i16,
        size: MemSize,
        write: bool,
    ) -> R<IntValue<'ctx>> {
        let cg = self.cg;
        let b = &cg.builder;
        let base_v = self.get(base)?;
        let addr = b
            .build_int_add(base_v, self.c64(off as i64 as u64), "addr")
            .or_fail()?;
        let (target, in_frame, stack_based) = {
            let facts = self.facts.borrow();
            (
                facts.target(base, off, size, write, &cg.opts.array_maps),
                facts.in_frame(base, off, size),
                facts.stack_offset(base).is_some(),
            )
        };
        if !cg.opts.checked || in_frame || target == Some(KnownTarget::Allowed) {
            return Ok(addr);
        }
        let k = size.index();
        let (Some(start), Some(mem_bound), Some(stack_bound)) =
            (self.mem_start, self.mem_bound[k], self.stack_bound[k])
        else {
            return Err(cg.fail("internal: bounds of a checked access size were not computed"));
        };
        let ok = self.new_block("inb");
        if target == Some(KnownTarget::AllowedUnlessZero) {
            // A lookup's result not yet tested: inside the value unless it
            // is 0, which the full check below refuses.
            let full = self.new_block("chk0");
            let nonzero = b
                .build_int_compare(IntPredicate::NE, base_v, self.c64(0), "nz")
                .or_fail()?;
            cg.branch_weighted(nonzero, ok, full, true)?;
            b.position_at_end(full);
        }
        let slow = self.new_block("slow");
        let checks = [(start, mem_bound), (self.frame_lo, stack_bound)];
        let order = if stack_based { [1, 0] } else { [0, 1] };
        // JIT: the first check inline, the rest in one call (see
        // `check_access_out_of_line`). Else the first check is marked
        // likely, the second not: range-check elimination then versions
        // loops on the first region only.
        let steps = if cg.mode == Mode::Jit {
            vec![(true, order[0], slow)]
        } else {
            let second = self.new_block("chk");
            vec![(true, order[0], second), (false, order[1], slow)]
        };
        for (likely, step, next) in steps {
            let (lo, bound) = checks[step];
            let rel = b.build_int_sub(addr, lo, "rel").or_fail()?;
            let inside = b
                .build_int_compare(IntPredicate::ULT, rel, bound, "in")
                .or_fail()?;
            cg.branch_weighted(inside, ok, next, likely)?;
            b.position_at_end(next);
        }
        let n = size.bytes();
        let code = if write { TRAP_STORE } else { TRAP_LOAD };
        match cg.mode {
            Mode::Jit => {
                let check = self.check_access_out_of_line(n, write)?;
                let args = [self.ctx.into(), addr.into(), self.frame_lo.into()];
                self.call_check(pc, check, &args, addr, n, write, ok)?;
            }
            Mode::Aot { .. } => {
                // Without a `bpfvm_check_access` (a weak reference) nothing
                // else is accessible.
                let check = self.check_access_decl(Linkage::ExternalWeak);
                let missing = b
                    .build_is_null(check.as_global_value().as_pointer_value(), "nocheck")
                    .or_fail()?;
                let trap = self.trap(Some(code), Some(pc), Some(addr), n)?;
                let call = self.new_block("slowcall");
                cg.branch_cold(missing, trap, call)?;
                b.position_at_end(call);
                // A host's own check cannot write the record: write it here.
                let args = [
                    self.ctx.into(),
                    addr.into(),
                    self.c64(n as u64).into(),
                    self.c64(write as u64).into(),
                    self.frame_lo.into(),
                ];
                self.call_check(pc, check, &args, addr, n, write, ok)?;
            }
            Mode::Ptx => {
                let trap = self.trap(Some(code), Some(pc), Some(addr), n)?;
                b.build_unconditional_branch(trap).or_fail()?;
            }
        }
        b.position_at_end(ok);
        Ok(addr)
    }

    /// The pointer for an access at `addr` (= `base + off`): a GEP from r10
    /// or from the input region's start (see `FnTranslator::membase`); the
    /// same address either way, whichever region it is in.
    pub(super) fn access_ptr(
        &self,
        base: u8,
        off: i16,
        addr: IntValue<'ctx>,
    ) -> R<PointerValue<'ctx>> {
        let cg = self.cg;
        let b = &cg.builder;
        // SAFETY (both GEPs): plain (not `inbounds`) GEPs only compute an
        // address, here exactly `addr`.
        if base == FRAME_POINTER {
            let off = cg.i64.const_int(off as i64 as u64, true);
            return unsafe { b.build_gep(cg.i8, self.stack, &[off], "p") }.or_fail();
        }
        match (self.membase, self.mem_start) {
            (Some(membase), Some(start)) => {
                let rel = b.build_int_sub(addr, start, "rel").or_fail()?;
                unsafe { b.build_gep(cg.i8, membase, &[rel], "p") }.or_fail()
            }
            _ => b.build_int_to_ptr(addr, cg.ptr, "p").or_fail(),
        }
    }

    /// JIT: the rest of the check of an access of `n` bytes (a store when
    /// `write`) that failed the inline one, as a cold `preserve_all`
    /// function of the module, `(ctx, addr, frame_lo) -> allowed`: the
    /// frame, the input, the extra region the last out-of-line check
    /// allowed (`VmCtx::last_region_*`), then `bpfvm_check_access`, which
    /// writes a refusal's record but for the pc. In the program's code
    /// the cold path is then one call on `addr`: with the tests inline,
    /// each address expression they use became an induction variable of
    /// the loops around it (loop strength reduction), spilled on every
    /// iteration (sort); `preserve_all` keeps the call from clobbering
    /// the loop's registers.
    pub(super) fn check_access_out_of_line(&self, n: u32, write: bool) -> R<FunctionValue<'ctx>> {
        let cg = self.cg;
        let name = format!("bpfvm_check_{n}{}", if write { "w" } else { "r" });
        if let Some(f) = cg.module.get_function(&name) {
            return Ok(f);
        }
        let c_check = self.check_access_decl(Linkage::External);
        let i64 = cg.i64;
        let ty = i64.fn_type(&[cg.ptr.into(), i64.into(), i64.into()], false);
        let f = cg.module.add_function(&name, ty, Some(Linkage::Internal));
        f.set_call_conventions(CALL_CONV_PRESERVE_ALL);
        for a in ["cold", "noinline", "nounwind"] {
            f.add_attribute(AttributeLoc::Function, cg.attr(a));
        }
        let b = &cg.builder;
        let resume = b.get_insert_block();
        let block = |name: &str| cg.context.append_basic_block(f, name);
        let (entry, yes) = (block("entry"), block("yes"));
        b.position_at_end(entry);
        let param = |k: u32| {
            f.get_nth_param(k)
                .ok_or_else(|| cg.fail("missing parameter"))
        };
        let ctx = param(0)?.into_pointer_value();
        let addr = param(1)?.into_int_value();
        let frame_lo = param(2)?.into_int_value();
        let c = |v: u64| i64.const_int(v, false);
        // `addr - lo < bound`, else on to the next test.
        let test = |lo: IntValue<'ctx>, bound: IntValue<'ctx>, next: &str| -> R<()> {
            let rel = b.build_int_sub(addr, lo, "rel").or_fail()?;
            let inside = b
                .build_int_compare(IntPredicate::ULT, rel, bound, "in")
                .or_fail()?;
            let next = block(next);
            b.build_conditional_branch(inside, yes, next).or_fail()?;
            b.position_at_end(next);
            Ok(())
        };
        let top = cg.load_field(ctx, OFFSET_STACK_TOP, i64)?;
        let window = b.build_int_sub(top, frame_lo, "window").or_fail()?;
        let bound = b.build_int_sub(window, c(n as u64 - 1), "sb").or_fail()?;
        test(frame_lo, bound, "input")?;
        let start = cg.load_field(ctx, OFFSET_MEM_START, i64)?;
        let end = cg.load_field(ctx, OFFSET_MEM_END, i64)?;
        let len = b.build_int_sub(end, start, "len").or_fail()?;
        test(start, cg.region_bound(len, n as u64)?, "region")?;
        let lo = cg.load_field(ctx, OFFSET_LAST_REGION_START, i64)?;
        let limit = cg.load_field(ctx, last_region_limit_offset(n as u64, write), i64)?;
        test(lo, limit, "call")?;
        let args: [BasicMetadataValueEnum; 5] = [
            ctx.into(),
            addr.into(),
            c(n as u64).into(),
            c(write as u64).into(),
            frame_lo.into(),
        ];
        let call = b.build_call(c_check, &args, "allowed").or_fail()?;
        let allowed = cg.int_result(call)?;
        b.build_return(Some(&allowed)).or_fail()?;
        b.position_at_end(yes);
        b.build_return(Some(&c(1))).or_fail()?;
        if let Some(block) = resume {
            b.position_at_end(block);
        }
        Ok(f)
    }

    pub(super) fn check_access_decl(&self, linkage: Linkage) -> FunctionValue<'ctx> {
        let i64 = self.cg.i64;
        let existed = self.cg.module.get_function(CHECK_ACCESS).is_some();
        let f = self
            .cg
            .external(CHECK_ACCESS, &[i64, i64, i64, i64], true, linkage);
        if !existed {
            f.add_attribute(AttributeLoc::Function, self.cg.attr("cold"));
            f.add_attribute(AttributeLoc::Function, self.cg.attr("nounwind"));
        }
        f
    }

    /// Calls the out-of-line check `check` (in its calling convention) on
    /// the access of `n` bytes at `addr` and goes on to `ok` unless it
    /// answers 0. Then the engine's check has recorded the trap and the pc
    /// is added here (JIT); in AOT code the whole record is written here.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn call_check(
        &self,
        pc: usize,
        check: FunctionValue<'ctx>,
        args: &[BasicMetadataValueEnum<'ctx>],
        addr: IntValue<'ctx>,
        n: u32,
        write: bool,
        ok: BasicBlock<'ctx>,
    ) -> R<()> {
        let b = &self.cg.builder;
        let call = b.build_call(check, args, "allowed").or_fail()?;
        call.set_call_convention(check.get_call_conventions());
        let allowed = self.cg.int_result(call)?;
        let denied = b
            .build_int_compare(IntPredicate::EQ, allowed, self.c64(0), "denied")
            .or_fail()?;
        let trap = match self.cg.mode {
            Mode::Jit => self.trap(None, Some(pc), None, 0)?,
            _ => {
                let code = if write { TRAP_STORE } else { TRAP_LOAD };
                self.trap(Some(code), Some(pc), Some(addr), n)?
            }
        };
        self.cg.branch_cold(denied, trap, ok)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn atomic(
        &mut self,
        pc: usize,
        size: MemSize,
        op: AtomicOp,
        fetch: bool,
        base: u8,
        off: i16,
        src: u8,
    ) -> R<()> {
        let addr = self.checked_addr(pc, base, off, size, true)?;
        let cg = self.cg;
        let b = &cg.builder;
        let n = size.bytes() as u64;
        let low = b.build_and(addr, self.c64(n - 1), "mis").or_fail()?;
        let misaligned = b
            .build_int_compare(IntPredicate::NE, low, self.c64(0), "mis")
            .or_fail()?;
        let trap = self.trap(Some(TRAP_MISALIGNED), Some(pc), Some(addr), n as u32)?;
        self.branch_unless(misaligned, trap)?;
        let ty = if size == MemSize::W { cg.i32 } else { cg.i64 };
        let narrow = |v: IntValue<'ctx>| -> R<IntValue<'ctx>> {
            if ty == cg.i32 {
                b.build_int_truncate(v, cg.i32, "a32").or_fail()
            } else {
                Ok(v)
            }
        };
        let s = narrow(self.get(src)?)?;
        let p = self.access_ptr(base, off, addr)?;
        let expected = if op == AtomicOp::CmpXchg {
            Some(narrow(self.get(0)?)?)
        } else {
            None
        };
        let old = if cg.mode == Mode::Ptx {
            self.ptx_atomic(op, p, ty, s, expected, base == FRAME_POINTER)?
        } else {
            self.atomic_rmw(op, p, s, expected)?
        };
        let old = if ty == cg.i32 {
            b.build_int_z_extend(old, cg.i64, "old").or_fail()?
        } else {
            old
        };
        match op {
            AtomicOp::CmpXchg => self.set(0, old),
            _ if fetch => self.set(src, old),
            _ => Ok(()),
        }
    }

    /// The hardware atomic: `cmpxchg` (when `expected` is given) or
    /// `atomicrmw`; returns the value that was in memory.
    fn atomic_rmw(
        &self,
        op: AtomicOp,
        p: PointerValue<'ctx>,
        s: IntValue<'ctx>,
        expected: Option<IntValue<'ctx>>,
    ) -> R<IntValue<'ctx>> {
        const SEQ: AtomicOrdering = AtomicOrdering::SequentiallyConsistent;
        let b = &self.cg.builder;
        if let Some(expected) = expected {
            let pair = b.build_cmpxchg(p, expected, s, SEQ, SEQ).or_fail()?;
            return Ok(b
                .build_extract_value(pair, 0, "old")
                .or_fail()?
                .into_int_value());
        }
        let rmw = match op {
            AtomicOp::Add => AtomicRMWBinOp::Add,
            AtomicOp::Or => AtomicRMWBinOp::Or,
            AtomicOp::And => AtomicRMWBinOp::And,
            AtomicOp::Xor => AtomicRMWBinOp::Xor,
            _ => AtomicRMWBinOp::Xchg,
        };
        b.build_atomicrmw(rmw, p, s, SEQ).or_fail()
    }

    /// An atomic on the GPU. PTX atomics on local memory (where each
    /// thread's eBPF stack lives) are undefined: on an H200 they returned
    /// and left wrong values (every stack atomic of the conformance suite
    /// failed, scripts/check-ptx-gpu.py). Local memory is private to its
    /// thread, so there a plain load, operation and store is exactly
    /// atomic; global memory (the input buffer, which a kernel's threads
    /// may share) keeps the hardware atomic. An `r10`-based access
    /// (`on_stack`) is on the stack; for others `llvm.nvvm.isspacep.local`
    /// tells the two apart at run time.
    fn ptx_atomic(
        &self,
        op: AtomicOp,
        p: PointerValue<'ctx>,
        ty: IntType<'ctx>,
        s: IntValue<'ctx>,
        expected: Option<IntValue<'ctx>>,
        on_stack: bool,
    ) -> R<IntValue<'ctx>> {
        if on_stack {
            return self.plain_rmw(op, p, ty, s, expected);
        }
        let cg = self.cg;
        let b = &cg.builder;
        let decl = Intrinsic::find("llvm.nvvm.isspacep.local")
            .and_then(|i| i.get_declaration(&cg.module, &[]))
            .ok_or_else(|| cg.fail("llvm.nvvm.isspacep.local is not available"))?;
        let call = b.build_call(decl, &[p.into()], "islocal").or_fail()?;
        let local = cg.int_result(call)?;
        let (plain, hw, join) = (
            self.new_block("atomic_local"),
            self.new_block("atomic_global"),
            self.new_block("atomic_done"),
        );
        b.build_conditional_branch(local, plain, hw).or_fail()?;
        b.position_at_end(plain);
        let old_plain = self.plain_rmw(op, p, ty, s, expected)?;
        b.build_unconditional_branch(join).or_fail()?;
        b.position_at_end(hw);
        let old_hw = self.atomic_rmw(op, p, s, expected)?;
        b.build_unconditional_branch(join).or_fail()?;
        b.position_at_end(join);
        let phi = b.build_phi(ty, "old").or_fail()?;
        phi.add_incoming(&[(&old_plain, plain), (&old_hw, hw)]);
        Ok(phi.as_basic_value().into_int_value())
    }

    /// The atomic as a plain load, the ALU operation (`mov` for xchg) or
    /// the compare-and-select of cmpxchg, and a store (memory no other
    /// thread can see); returns the old value.
    fn plain_rmw(
        &self,
        op: AtomicOp,
        p: PointerValue<'ctx>,
        ty: IntType<'ctx>,
        s: IntValue<'ctx>,
        expected: Option<IntValue<'ctx>>,
    ) -> R<IntValue<'ctx>> {
        let b = &self.cg.builder;
        let old = b.build_load(ty, p, "old").or_fail()?.into_int_value();
        let new = match expected {
            Some(expected) => {
                let eq = b
                    .build_int_compare(IntPredicate::EQ, old, expected, "eq")
                    .or_fail()?;
                b.build_select(eq, s, old, "new")
                    .or_fail()?
                    .into_int_value()
            }
            None => {
                let alu = match op {
                    AtomicOp::Add => AluOp::Add,
                    AtomicOp::Or => AluOp::Or,
                    AtomicOp::And => AluOp::And,
                    AtomicOp::Xor => AluOp::Xor,
                    _ => AluOp::Mov,
                };
                self.alu(ty, alu, old, s)?
            }
        };
        b.build_store(p, new).or_fail()?;
        Ok(old)
    }
}
