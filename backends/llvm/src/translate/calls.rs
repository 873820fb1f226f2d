//! Calls: helpers (table, AOT symbols), `lddw` hooks, bpf-to-bpf calls.

use super::*;

impl<'ctx> FnTranslator<'_, 'ctx> {
    /// After a call into the host: a recorded trap leaves with this pc.
    pub(super) fn check_trap_after_call(&self, pc: Option<usize>) -> R<()> {
        let cg = self.cg;
        let code = cg.load_field(self.ctx, OFFSET_TRAP_CODE, cg.i32)?;
        let failed = cg
            .builder
            .build_int_compare(IntPredicate::NE, code, cg.i32.const_zero(), "trapped")
            .or_fail()?;
        let trap = self.trap(None, pc, None, 0)?;
        self.branch_unless(failed, trap)
    }

    pub(super) fn args_r1_r5(&self) -> R<Vec<BasicMetadataValueEnum<'ctx>>> {
        (1..=5).map(|r| Ok(self.get(r)?.into())).collect()
    }

    /// Calls helper `id` through the context's table; an id out of the
    /// table or an empty slot traps with `TRAP_UNKNOWN_HELPER`.
    pub(super) fn call_helper_table(&mut self, pc: usize, id: IntValue<'ctx>) -> R<()> {
        let cg = self.cg;
        let b = &cg.builder;
        let (Some(table), Some(count)) = (self.helpers, self.helper_count) else {
            return Err(cg.fail("internal: the helper table was not loaded"));
        };
        let unknown = self.trap(Some(TRAP_UNKNOWN_HELPER), Some(pc), Some(id), 0)?;
        let outside = b
            .build_int_compare(IntPredicate::UGE, id, count, "unknown")
            .or_fail()?;
        self.branch_unless(outside, unknown)?;
        let offset = b
            .build_int_mul(id, self.c64(HELPER_SLOT_SIZE as u64), "slot")
            .or_fail()?;
        // SAFETY: a plain GEP only computes an address (id < helper_count
        // was checked, so it stays inside the table).
        let slot = unsafe { b.build_gep(cg.i8, table, &[offset], "slot") }.or_fail()?;
        let fp = cg.field(slot, OFFSET_SLOT_FUNC)?;
        let func = b.build_load(cg.ptr, fp, "func").or_fail()?;
        align(func.as_instruction_value(), 8)?;
        let func = func.into_pointer_value();
        let empty = b.build_is_null(func, "empty").or_fail()?;
        self.branch_unless(empty, unknown)?;
        let dp = cg.field(slot, OFFSET_SLOT_DATA)?;
        let data = b.build_load(cg.ptr, dp, "data").or_fail()?;
        align(data.as_instruction_value(), 8)?;
        let mut args: Vec<BasicMetadataValueEnum> = vec![self.ctx.into(), data.into()];
        args.extend(self.args_r1_r5()?);
        let call = b
            .build_indirect_call(cg.helper_fn_type(), func, &args, "r0")
            .or_fail()?;
        let r0 = cg.int_result(call)?;
        self.check_trap_after_call(Some(pc))?;
        self.set(0, r0)
    }

    /// `call 1` (`map_lookup_elem`) on a known array map: when the 4-byte
    /// key is in the current frame, r0 is computed inline as the runtime's
    /// helper computes it (`values + key * stride`, or 0 when the key is
    /// out of range); any other key pointer goes to the helper, which
    /// checks it and traps exactly as on the other tiers. r1 to r5 are
    /// unchanged either way; r0 is a value of the map or 0
    /// ([`Known::lookup_result`]).
    pub(super) fn inline_array_lookup(&mut self, pc: usize, map: ArrayMapLayout) -> R<()> {
        let cg = self.cg;
        let b = &cg.builder;
        let key_addr = self.get(2)?;
        let rel = b
            .build_int_sub(key_addr, self.frame_lo, "keyrel")
            .or_fail()?;
        let in_frame = b
            .build_int_compare(
                IntPredicate::ULE,
                rel,
                self.c64(STACK_FRAME_SIZE as u64 - 4),
                "keyinframe",
            )
            .or_fail()?;
        let fast = self.new_block("lookup_inline");
        let slow = self.new_block("lookup_helper");
        let join = self.new_block("lookup_done");
        b.build_conditional_branch(in_frame, fast, slow).or_fail()?;

        b.position_at_end(fast);
        let p = b.build_int_to_ptr(key_addr, cg.ptr, "keyp").or_fail()?;
        let key = b.build_load(cg.i32, p, "key").or_fail()?;
        align(key.as_instruction_value(), 1)?;
        let index = b
            .build_int_z_extend(key.into_int_value(), cg.i64, "index")
            .or_fail()?;
        let inside = b
            .build_int_compare(
                IntPredicate::ULT,
                index,
                self.c64(map.max_entries as u64),
                "inrange",
            )
            .or_fail()?;
        let offset = b
            .build_int_mul(index, self.c64(map.stride), "offset")
            .or_fail()?;
        let addr = b
            .build_int_add(self.c64(map.values), offset, "value")
            .or_fail()?;
        let r0 = b
            .build_select(inside, addr, self.c64(0), "r0")
            .or_fail()?
            .into_int_value();
        self.set(0, r0)?;
        b.build_unconditional_branch(join).or_fail()?;

        b.position_at_end(slow);
        self.call_helper_table(pc, self.c64(MAP_LOOKUP_ELEM as u64))?;
        cg.builder.build_unconditional_branch(join).or_fail()?;
        cg.builder.position_at_end(join);
        self.facts.get_mut().set(0, Some(Known::lookup_result(map)));
        Ok(())
    }

    /// AOT: a helper is the external `_bpf_helper_ext_NNNN(r1..r5)`;
    /// `callx` is `__bpfvm_callx(id, r1..r5)`.
    pub(super) fn call_helper_aot(
        &mut self,
        pc: usize,
        id: Option<u32>,
        dynamic: Option<IntValue<'ctx>>,
    ) -> R<()> {
        let cg = self.cg;
        let i64 = cg.i64;
        let mut args = Vec::new();
        let f = match (id, dynamic) {
            (Some(id), _) => cg.external(&helper_symbol(id), &[i64; 5], false, Linkage::External),
            (None, Some(v)) => {
                args.push(v.into());
                cg.external(AOT_CALLX, &[i64; 6], false, Linkage::External)
            }
            (None, None) => return Err(cg.fail("internal: helper call without an id")),
        };
        args.extend(self.args_r1_r5()?);
        let call = cg.builder.build_call(f, &args, "r0").or_fail()?;
        let r0 = cg.int_result(call)?;
        self.check_trap_after_call(Some(pc))?;
        self.set(0, r0)
    }

    /// AOT `lddw` with a pseudo source: the llvmbpf hooks.
    /// `map_by_fd`/`map_by_idx` are weak: when absent the value is the
    /// immediate itself (llvmbpf's default).
    pub(super) fn lddw_hook(&self, p: LddwPseudo) -> R<IntValue<'ctx>> {
        let cg = self.cg;
        let b = &cg.builder;
        let imm32 = cg.i32.const_int(p.imm as u32 as u64, false);
        let next = self.c64(p.next_imm as i64 as u64);
        let map = |weak_name: &str| -> R<IntValue<'ctx>> {
            let f = cg.external(weak_name, &[cg.i32], false, Linkage::ExternalWeak);
            let missing = b
                .build_is_null(f.as_global_value().as_pointer_value(), "nohook")
                .or_fail()?;
            let call_bb = self.new_block("hook");
            let default_bb = self.new_block("nohook");
            let join = self.new_block("hooked");
            b.build_conditional_branch(missing, default_bb, call_bb)
                .or_fail()?;
            b.position_at_end(call_bb);
            let call = b.build_call(f, &[imm32.into()], "map").or_fail()?;
            let v = cg.int_result(call)?;
            b.build_store(self.tmp, v).or_fail()?;
            b.build_unconditional_branch(join).or_fail()?;
            b.position_at_end(default_bb);
            b.build_store(self.tmp, self.c64(p.imm as i64 as u64))
                .or_fail()?;
            b.build_unconditional_branch(join).or_fail()?;
            b.position_at_end(join);
            Ok(b.build_load(cg.i64, self.tmp, "map")
                .or_fail()?
                .into_int_value())
        };
        let call32 = |name: &str| -> R<IntValue<'ctx>> {
            let f = cg.external(name, &[cg.i32], false, Linkage::External);
            let call = b.build_call(f, &[imm32.into()], "addr").or_fail()?;
            cg.int_result(call)
        };
        let map_val = |m: IntValue<'ctx>| -> R<IntValue<'ctx>> {
            let f = cg.external(LDDW_MAP_VAL, &[cg.i64], false, Linkage::External);
            let call = b.build_call(f, &[m.into()], "val").or_fail()?;
            let v = cg.int_result(call)?;
            b.build_int_add(v, next, "val").or_fail()
        };
        match p.kind {
            PSEUDO_MAP_FD => map(LDDW_MAP_BY_FD),
            PSEUDO_MAP_VALUE => map_val(map(LDDW_MAP_BY_FD)?),
            PSEUDO_BTF_ID => call32(LDDW_VAR_ADDR),
            PSEUDO_FUNC => call32(LDDW_CODE_ADDR),
            PSEUDO_MAP_IDX => map(LDDW_MAP_BY_IDX),
            PSEUDO_MAP_IDX_VALUE => map_val(map(LDDW_MAP_BY_IDX)?),
            k => Err(cg.fail(format!("lddw pseudo source {k} is not defined"))),
        }
    }

    /// A bpf-to-bpf call: a new 512-byte frame below this one, the depth
    /// limit checked; r6 to r9 survive (they are this function's
    /// variables), r1 to r5 are zero afterwards.
    pub(super) fn call_local(&mut self, pc: usize, target: usize) -> R<()> {
        let cg = self.cg;
        let b = &cg.builder;
        let Some(floor) = self.depth_floor else {
            return Err(cg.fail("internal: the stack floor was not loaded"));
        };
        let callee = *cg
            .functions
            .get(&target)
            .ok_or_else(|| cg.fail(format!("pc {pc}: call target {target} starts no function")))?;
        let new_r10 = b
            .build_int_sub(self.r10, self.c64(STACK_FRAME_SIZE as u64), "r10")
            .or_fail()?;
        let too_deep = b
            .build_int_compare(IntPredicate::ULT, new_r10, floor, "deep")
            .or_fail()?;
        let trap = self.trap(Some(TRAP_CALL_DEPTH), Some(pc), None, 0)?;
        self.branch_unless(too_deep, trap)?;
        let r = |k| self.get(k);
        let r0 = cg.call_bpf(
            callee,
            self.ctx,
            [r(1)?, r(2)?, r(3)?, r(4)?, r(5)?, new_r10],
        )?;
        // The callee recorded the whole trap, pc included.
        self.check_trap_after_call(None)?;
        self.set(0, r0)?;
        for k in 1..=5 {
            self.set(k, self.c64(0))?;
        }
        Ok(())
    }
}
