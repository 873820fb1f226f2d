//! A seeded generator of random, valid, terminating eBPF programs for
//! differential testing (every tier against the interpreter).
//!
//! Programs are built from statements: ALU operations of every kind and
//! width with operands biased to boundary values, loads, stores and atomics
//! on the input memory and the stack (mostly in bounds, sometimes not),
//! pointer arithmetic, byte swaps, sign extensions, `lddw`, forward
//! conditional jumps, counted loops, helper calls (direct and `callx`) and
//! bpf-to-bpf calls into generated functions. Registers are reserved so that
//! every program terminates and can report its state:
//!
//! - r9 holds the input memory's address for the whole run;
//! - r8 is the loop counter (loops do not nest);
//! - the epilogue stores r0 to r8 into the last 72 bytes of the input
//!   memory, so comparing memory compares every register.

use bpfvm::engine::isa::*;
use bpfvm::engine::program::MAP_LOOKUP_ELEM;

use crate::host_regions::{MAP_HANDLES, MAP_SHAPES, REGION_HELPER_ID, REGION_SIZE};

/// Size of the input memory generated programs expect.
pub const MEM_SIZE: usize = 256;
/// Offset of the register dump in the input memory.
pub const DUMP_OFFSET: usize = MEM_SIZE - 72;
/// Helper id of [`mix_helper`].
pub const MIX_HELPER_ID: u32 = 1;

/// The deterministic helper generated programs call: mixes its arguments.
pub fn mix_helper(a: [u64; 5]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for v in a {
        h = (h ^ v).wrapping_mul(0x100_0000_01b3).rotate_left(17);
    }
    h
}

/// SplitMix64: small, seeded, good enough for program generation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Boundary values operands are biased towards.
pub const BOUNDARY: [u64; 16] = [
    0,
    1,
    u64::MAX,
    i64::MIN as u64,
    i64::MAX as u64,
    i32::MIN as u32 as u64,
    i32::MAX as u64,
    u32::MAX as u64,
    1 << 31,
    1 << 32,
    31,
    32,
    63,
    64,
    0xffff_ffff_0000_0000,
    0x8000,
];

fn value(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 | 1 => rng.pick(&BOUNDARY),
        2 => rng.below(256),
        _ => rng.next_u64(),
    }
}

fn imm(rng: &mut Rng) -> i32 {
    match rng.below(3) {
        0 => rng.pick(&BOUNDARY) as i32,
        1 => rng.below(64) as i32 - 8,
        _ => rng.next_u64() as i32,
    }
}

/// What the generator may produce.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// Statements in the main function.
    pub statements: usize,
    /// Allow accesses outside the allowed regions (they trap in checked mode;
    /// must be off for unchecked runs).
    pub out_of_bounds: bool,
    /// Allow helper calls (helper [`MIX_HELPER_ID`] must be registered).
    pub helpers: bool,
    /// Allow bpf-to-bpf calls.
    pub local_calls: bool,
    /// End with r0 = a checksum of the whole input memory (after the
    /// register dump), so that r0 alone reflects every register and every
    /// byte the program wrote: what a saved `.data` regression test needs.
    /// Such programs are also kept independent of where the memory lies:
    /// r9 (the memory pointer) is never a value, compared or stored, and a
    /// pointer built for a dynamic access is turned back into an offset, so
    /// that a saved test replays with the memory at another address.
    pub checksum: bool,
    /// Allow accesses to the two host regions of
    /// [`crate::host_regions`], reached through the region helper or as
    /// the values of their array maps through `map_lookup_elem` (needs
    /// `helpers`). Off by default, so that the seeds of earlier campaigns
    /// still give the same programs. (Map lookups came after the first
    /// host-region campaigns: their seeds give other programs since.)
    pub host_regions: bool,
    /// Start with a test of the input's length (`if len < N goto end`, or
    /// an equivalent form, on r2 or a copy of it), after which the JITs
    /// trust accesses below N (`bpfvm_engine::facts`). Off by default, so
    /// that the seeds of earlier campaigns still give the same programs.
    pub length_guards: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            statements: 24,
            out_of_bounds: true,
            helpers: true,
            local_calls: true,
            checksum: false,
            host_regions: false,
            length_guards: false,
        }
    }
}

/// Instructions with labels resolved at the end.
struct Asm {
    insns: Vec<Insn>,
    /// (slot, label) pairs to patch: jumps (offset) or calls (imm).
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn new() -> Asm {
        Asm {
            insns: Vec::new(),
            fixups: Vec::new(),
            labels: Vec::new(),
        }
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.insns.len());
    }
    fn emit(&mut self, i: Insn) {
        self.insns.push(i);
    }
    fn emit_to(&mut self, i: Insn, label: usize) {
        self.fixups.push((self.insns.len(), label));
        self.insns.push(i);
    }
    fn finish(mut self) -> Vec<Insn> {
        for (slot, label) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label].unwrap_or(slot + 1) as i64;
            let rel = target - slot as i64 - 1;
            let i = &mut self.insns[slot];
            if i.code == OP_CALL {
                i.imm = rel as i32;
            } else {
                i.off = rel as i16;
            }
        }
        self.insns
    }
}

const ALU_OPS: [u8; 13] = [
    ALU_ADD, ALU_SUB, ALU_MUL, ALU_DIV, ALU_OR, ALU_AND, ALU_LSH, ALU_RSH, ALU_MOD, ALU_XOR,
    ALU_MOV, ALU_ARSH, ALU_DIV,
];
const JMP_OPS: [u8; 11] = [
    JMP_JEQ, JMP_JGT, JMP_JGE, JMP_JSET, JMP_JNE, JMP_JSGT, JMP_JSGE, JMP_JLT, JMP_JLE, JMP_JSLT,
    JMP_JSLE,
];
const SIZES: [(u8, usize); 4] = [(SIZE_B, 1), (SIZE_H, 2), (SIZE_W, 4), (SIZE_DW, 8)];

struct Gen<'a> {
    rng: &'a mut Rng,
    opts: &'a GenOptions,
    asm: Asm,
    /// Labels of generated functions to call.
    functions: Vec<usize>,
    in_loop: bool,
    /// Inside a generated function r9 is zero: memory means the stack.
    in_function: bool,
    /// Registers statements may write.
    writable: u8,
}

/// Generates one program. The same seed gives the same program.
pub fn generate(seed: u64, opts: &GenOptions) -> Vec<Insn> {
    let mut rng = Rng::new(seed);
    let mut g = Gen {
        rng: &mut rng,
        opts,
        asm: Asm::new(),
        functions: Vec::new(),
        in_loop: false,
        in_function: false,
        writable: 8,
    };
    let nfuncs = if opts.local_calls {
        g.rng.below(3) as usize
    } else {
        0
    };
    g.functions = (0..nfuncs).map(|_| g.asm.label()).collect();
    // Prologue: keep the memory pointer, give r0 and r2..r8 values (and r1
    // when the program must not depend on the memory's address).
    g.asm
        .emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 9, 1, 0, 0));
    let too_short = opts.length_guards.then(|| g.length_guard());
    for r in [0u8, 2, 3, 4, 5, 6, 7, 8] {
        g.load_value(r);
    }
    if opts.checksum {
        // r1 still holds the memory's address.
        g.load_value(1);
    }
    for _ in 0..opts.statements {
        g.statement(0);
    }
    // Epilogue: dump r0..r8, exit.
    for r in 0..=8u8 {
        g.asm.emit(Insn::new(
            CLS_STX | MODE_MEM | SIZE_DW,
            9,
            r,
            (DUMP_OFFSET + 8 * r as usize) as i16,
            0,
        ));
    }
    // A failed length test skips the dump (r1 still holds the memory's
    // address then).
    if let Some(l) = too_short {
        g.asm.bind(l);
    }
    if opts.checksum {
        g.checksum_epilogue();
    }
    g.asm.emit(Insn::new(OP_EXIT, 0, 0, 0, 0));
    // Functions: straight-line bodies over r0..r5 and their own stack.
    let funcs = g.functions.clone();
    g.writable = 5;
    g.in_function = true;
    for (k, l) in funcs.iter().enumerate() {
        g.asm.bind(*l);
        // Only later functions may be called from here: no recursion.
        g.functions = funcs[k + 1..].to_vec();
        let n = 2 + g.rng.below(6);
        for _ in 0..n {
            g.statement(1);
        }
        g.asm.emit(Insn::new(OP_EXIT, 0, 0, 0, 0));
    }
    g.asm.finish()
}

impl Gen<'_> {
    /// r0 = fold over the memory's u64 words of `h = rotl(h ^ w, 5) * K`.
    fn checksum_epilogue(&mut self) {
        let a = &mut self.asm;
        a.emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, 0, 0, 0, 0));
        a.emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 1, 9, 0, 0));
        a.emit(Insn::new(
            CLS_ALU64 | ALU_MOV | SRC_K,
            2,
            0,
            0,
            (MEM_SIZE / 8) as i32,
        ));
        let head = a.label();
        a.bind(head);
        a.emit(Insn::new(CLS_LDX | MODE_MEM | SIZE_DW, 3, 1, 0, 0));
        a.emit(Insn::new(CLS_ALU64 | ALU_XOR | SRC_X, 0, 3, 0, 0));
        // rotl(r0, 5) = (r0 << 5) | (r0 >> 59)
        a.emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 4, 0, 0, 0));
        a.emit(Insn::new(CLS_ALU64 | ALU_LSH | SRC_K, 0, 0, 0, 5));
        a.emit(Insn::new(CLS_ALU64 | ALU_RSH | SRC_K, 4, 0, 0, 59));
        a.emit(Insn::new(CLS_ALU64 | ALU_OR | SRC_X, 0, 4, 0, 0));
        a.emit(Insn::new(CLS_ALU64 | ALU_MUL | SRC_K, 0, 0, 0, 0x0100_01b3));
        a.emit(Insn::new(CLS_ALU64 | ALU_ADD | SRC_K, 1, 0, 0, 8));
        a.emit(Insn::new(CLS_ALU64 | ALU_SUB | SRC_K, 2, 0, 0, 1));
        a.emit_to(Insn::new(CLS_JMP | JMP_JNE | SRC_K, 2, 0, 0, 0), head);
    }

    /// `if len < N goto end` on r2 (the input's length) or a copy of it,
    /// in one of its forms (`<` or `<=`, signed or not, 64- or 32-bit):
    /// below N, accesses through r9 may go unchecked. N is mostly at most
    /// the memory's size; sometimes past it (the whole program is
    /// skipped). Returns the label `end`.
    fn length_guard(&mut self) -> usize {
        let end = self.asm.label();
        let n = self.rng.pick(&[
            8i32,
            64,
            128,
            DUMP_OFFSET as i32,
            MEM_SIZE as i32 - 4,
            MEM_SIZE as i32,
            MEM_SIZE as i32,
            MEM_SIZE as i32 + 8,
        ]);
        let r = if self.rng.chance(30) {
            self.asm
                .emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 3, 2, 0, 0));
            3
        } else {
            2
        };
        let class = if self.rng.chance(25) {
            CLS_JMP32
        } else {
            CLS_JMP
        };
        // Unsigned or signed (clang's form of `if (data + n > end)`).
        let (below, at_most) = if self.rng.chance(50) {
            (JMP_JLT, JMP_JLE)
        } else {
            (JMP_JSLT, JMP_JSLE)
        };
        let test = if self.rng.chance(50) {
            Insn::new(class | below | SRC_K, r, 0, 0, n)
        } else {
            Insn::new(class | at_most | SRC_K, r, 0, 0, n - 1)
        };
        self.asm.emit_to(test, end);
        end
    }

    fn reg(&mut self) -> u8 {
        self.rng.below(self.writable as u64 + 1) as u8
    }

    /// A register read as a value: r0..r9, or r0..r8 when programs must
    /// not depend on the memory's address (r9 holds it).
    fn value_reg(&mut self) -> u8 {
        let n = if self.opts.checksum { 9 } else { 10 };
        self.rng.below(n) as u8
    }

    fn load_value(&mut self, r: u8) {
        let v = value(self.rng);
        if v as i64 == v as i32 as i64 && self.rng.chance(70) {
            self.asm
                .emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, r, 0, 0, v as i32));
        } else {
            self.asm.emit(Insn::new(OP_LDDW, r, 0, 0, v as u32 as i32));
            self.asm
                .emit(Insn::new(0, 0, 0, 0, (v >> 32) as u32 as i32));
        }
    }

    fn statement(&mut self, depth: usize) {
        match self.rng.below(100) {
            0..=32 => self.alu(),
            33..=34 => self.stack_pointer_access(),
            35..=41 => self.unary(),
            42..=55 => self.memory(),
            56..=61 => self.atomic(),
            62..=65 if self.opts.host_regions && self.opts.helpers && self.rng.chance(60) => {
                if self.rng.chance(50) {
                    self.region_access()
                } else {
                    self.map_access()
                }
            }
            62..=65 if !self.in_function => self.pointer_access(),
            66..=69 => {
                let r = self.reg();
                self.load_value(r);
            }
            70..=81 if depth < 2 => self.forward_jump(depth),
            82..=86 if depth == 0 && !self.in_loop => self.counted_loop(),
            87..=92 if self.opts.helpers => self.helper_call(),
            93..=99 if !self.functions.is_empty() => self.local_call(),
            _ => self.alu(),
        }
    }

    fn alu(&mut self) {
        let class = if self.rng.chance(50) {
            CLS_ALU64
        } else {
            CLS_ALU
        };
        let op = self.rng.pick(&ALU_OPS);
        let dst = self.reg();
        let signed_div = matches!(op, ALU_DIV | ALU_MOD) && self.rng.chance(40);
        let off = if signed_div { 1 } else { 0 };
        if self.rng.chance(50) {
            let src = self.value_reg();
            self.asm
                .emit(Insn::new(class | op | SRC_X, dst, src, off, 0));
        } else {
            let mut i = imm(self.rng);
            if matches!(op, ALU_LSH | ALU_RSH | ALU_ARSH) && self.rng.chance(70) {
                i = self.rng.pick(&[0, 1, 31, 32, 63, 64, 7]);
            }
            self.asm.emit(Insn::new(class | op | SRC_K, dst, 0, off, i));
        }
    }

    fn unary(&mut self) {
        let dst = self.reg();
        match self.rng.below(4) {
            0 => {
                let class = if self.rng.chance(50) {
                    CLS_ALU64
                } else {
                    CLS_ALU
                };
                self.asm.emit(Insn::new(class | ALU_NEG, dst, 0, 0, 0));
            }
            1 => {
                let bits = self.rng.pick(&[16, 32, 64]);
                let code = self.rng.pick(&[
                    CLS_ALU | ALU_END | SRC_K,
                    CLS_ALU | ALU_END | SRC_X,
                    CLS_ALU64 | ALU_END,
                ]);
                self.asm.emit(Insn::new(code, dst, 0, 0, bits));
            }
            _ => {
                let src = self.value_reg();
                if self.rng.chance(50) {
                    let bits = self.rng.pick(&[8, 16, 32]);
                    self.asm
                        .emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, dst, src, bits, 0));
                } else {
                    let bits = self.rng.pick(&[8, 16]);
                    self.asm
                        .emit(Insn::new(CLS_ALU | ALU_MOV | SRC_X, dst, src, bits, 0));
                }
            }
        }
    }

    /// An offset for an access of `size` bytes through r9 (memory) or r10
    /// (stack), usually inside the region.
    fn offset(&mut self, stack: bool, size: usize) -> i16 {
        if self.opts.out_of_bounds && self.rng.chance(3) {
            // With a checksum, never far enough past either end to reach
            // the other allocation (memory or stack), where the access
            // would be allowed or not depending on where that lies. This
            // counts on the allocator leaving at least 16 bytes (glibc's
            // chunk header) between two allocations.
            return if stack && self.opts.checksum {
                self.rng.pick(&[0i16, 8, -520, -513])
            } else if stack {
                self.rng.pick(&[0i16, 8, -520, -513, 504])
            } else if self.opts.checksum {
                self.rng
                    .pick(&[-1i16, -8, MEM_SIZE as i16, (MEM_SIZE - 4) as i16])
            } else {
                self.rng
                    .pick(&[-1i16, -8, MEM_SIZE as i16, (MEM_SIZE - 4) as i16, 4096])
            };
        }
        if stack {
            -(self.rng.below(512 / size as u64) as i16 + 1) * size as i16
        } else {
            let limit = DUMP_OFFSET - size;
            if self.rng.chance(80) {
                (self.rng.below((limit / size) as u64 + 1) as usize * size) as i16
            } else {
                self.rng.below(limit as u64 + 1) as i16
            }
        }
    }

    fn memory(&mut self) {
        let (sz, n) = self.rng.pick(&SIZES);
        let stack = self.in_function || self.rng.chance(50);
        let base = if stack { 10 } else { 9 };
        let off = self.offset(stack, n);
        let r = self.reg();
        match self.rng.below(4) {
            0 => self
                .asm
                .emit(Insn::new(CLS_LDX | MODE_MEM | sz, r, base, off, 0)),
            1 if sz != SIZE_DW => {
                self.asm
                    .emit(Insn::new(CLS_LDX | MODE_MEMSX | sz, r, base, off, 0))
            }
            2 => {
                let v = imm(self.rng);
                self.asm
                    .emit(Insn::new(CLS_ST | MODE_MEM | sz, base, 0, off, v))
            }
            _ => {
                let src = self.value_reg();
                self.asm
                    .emit(Insn::new(CLS_STX | MODE_MEM | sz, base, src, off, 0))
            }
        }
    }

    fn atomic(&mut self) {
        let (sz, n) = self.rng.pick(&[(SIZE_W, 4usize), (SIZE_DW, 8)]);
        let stack = self.in_function || self.rng.chance(50);
        let base = if stack { 10 } else { 9 };
        let mut off = self.offset(stack, n);
        if self.rng.chance(90) {
            off &= !(n as i16 - 1);
        }
        let op = self.rng.pick(&[
            ATOMIC_ADD,
            ATOMIC_OR,
            ATOMIC_AND,
            ATOMIC_XOR,
            ATOMIC_ADD | ATOMIC_FETCH,
            ATOMIC_OR | ATOMIC_FETCH,
            ATOMIC_AND | ATOMIC_FETCH,
            ATOMIC_XOR | ATOMIC_FETCH,
            ATOMIC_XCHG,
            ATOMIC_CMPXCHG,
        ]);
        // The fetched value lands in src: keep it writable.
        let src = self.reg();
        self.asm
            .emit(Insn::new(CLS_STX | MODE_ATOMIC | sz, base, src, off, op));
    }

    /// `rA = r10; rA += k (or -= -k, sometimes in two steps); load/store
    /// [rA + off]`: a frame address held in another register, with
    /// `k + off` an offset `offset` would give r10 (so with a checksum,
    /// out of the frame only where no other allocation lies).
    fn stack_pointer_access(&mut self) {
        let (sz, n) = self.rng.pick(&SIZES);
        let total = self.offset(true, n) as i32;
        let k = match self.rng.below(4) {
            0 => total,
            1 => self.rng.pick(&[-512, -256, -8, 0, 8, 512, 40000, -40000]),
            _ => -(self.rng.below(513) as i32),
        };
        let (k, off) = match i16::try_from(total - k) {
            Ok(off) => (k, off),
            Err(_) => (total, 0),
        };
        let a = self.reg();
        self.asm
            .emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, a, 10, 0, 0));
        let step = if self.rng.chance(30) { k / 2 } else { 0 };
        for part in [step, k - step] {
            if part != 0 || step == 0 {
                let (op, imm) = if self.rng.chance(50) {
                    (ALU_SUB, part.wrapping_neg())
                } else {
                    (ALU_ADD, part)
                };
                self.asm
                    .emit(Insn::new(CLS_ALU64 | op | SRC_K, a, 0, 0, imm));
            }
        }
        let mut still_pointer = true;
        match self.rng.below(3) {
            0 => {
                let dst = self.reg();
                self.asm
                    .emit(Insn::new(CLS_LDX | MODE_MEM | sz, dst, a, off, 0));
                still_pointer = dst != a;
            }
            1 => {
                let v = imm(self.rng);
                self.asm
                    .emit(Insn::new(CLS_ST | MODE_MEM | sz, a, 0, off, v));
            }
            _ => {
                let mut src = self.value_reg();
                if self.opts.checksum && src == a {
                    src = if a == 0 { 1 } else { 0 };
                }
                self.asm
                    .emit(Insn::new(CLS_STX | MODE_MEM | sz, a, src, off, 0));
            }
        }
        if self.opts.checksum && still_pointer {
            self.asm
                .emit(Insn::new(CLS_ALU64 | ALU_SUB | SRC_X, a, 10, 0, 0));
        }
    }

    /// `rA = rB & mask; rA += r9; load/store [rA + off]`: dynamic addresses.
    fn pointer_access(&mut self) {
        let a = self.rng.below(self.writable.min(7) as u64 + 1) as u8;
        let b = self.value_reg();
        let mask = if self.opts.out_of_bounds {
            self.rng.pick(&[0x7f, 0xff, 0x1ff])
        } else {
            0x7f
        };
        self.asm
            .emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, a, b, 0, 0));
        self.asm
            .emit(Insn::new(CLS_ALU64 | ALU_AND | SRC_K, a, 0, 0, mask));
        if self.opts.checksum && mask as usize >= 2 * MEM_SIZE - 1 {
            // Offsets past the end go 2 GiB below instead, where no other
            // allocation can make them valid.
            self.asm.emit(Insn::new(
                CLS_JMP | JMP_JLT | SRC_K,
                a,
                0,
                1,
                MEM_SIZE as i32,
            ));
            self.asm
                .emit(Insn::new(CLS_ALU64 | ALU_OR | SRC_K, a, 0, 0, i32::MIN));
        }
        self.asm
            .emit(Insn::new(CLS_ALU64 | ALU_ADD | SRC_X, a, 9, 0, 0));
        let (sz, _) = self.rng.pick(&SIZES);
        let mut still_pointer = true;
        if self.rng.chance(50) {
            let dst = self.reg();
            self.asm
                .emit(Insn::new(CLS_LDX | MODE_MEM | sz, dst, a, 0, 0));
            still_pointer = dst != a;
        } else {
            let mut src = self.value_reg();
            if self.opts.checksum && src == a {
                // Store a value, not the pointer.
                src = if a == 0 { 1 } else { 0 };
            }
            self.asm
                .emit(Insn::new(CLS_STX | MODE_MEM | sz, a, src, 0, 0));
        }
        if self.opts.checksum && still_pointer {
            self.asm
                .emit(Insn::new(CLS_ALU64 | ALU_SUB | SRC_X, a, 9, 0, 0));
        }
    }

    /// `r1 = k; call region; ` then one to three loads, stores or atomics
    /// through r0, the region's address: in bounds mostly, sometimes just
    /// outside either end (when out-of-bounds accesses are allowed), and
    /// stores to region 1, which is read-only, only then. Ends with r0 set
    /// to a value again when programs must not depend on addresses.
    fn region_access(&mut self) {
        let k = self.rng.below(2);
        let read_only = k == 1;
        self.asm
            .emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, 1, 0, 0, k as i32));
        self.asm.emit(Insn::new(
            OP_CALL,
            0,
            CALL_HELPER,
            0,
            REGION_HELPER_ID as i32,
        ));
        for _ in 0..1 + self.rng.below(3) {
            let (sz, n) = self.rng.pick(&SIZES);
            let off = self.region_offset(n);
            // A store to the read-only region traps and ends the program:
            // rarely, so that most programs go on.
            let store_allowed = !read_only || (self.opts.out_of_bounds && self.rng.chance(10));
            self.access_through_r0(sz, off, store_allowed, |g| {
                let (sz, n) = g.rng.pick(&[(SIZE_W, 4usize), (SIZE_DW, 8)]);
                let mut off = g.region_offset(n);
                if g.rng.chance(90) {
                    off &= !(n as i16 - 1);
                }
                Some((sz, off))
            });
        }
        if self.opts.checksum {
            self.load_value(0);
        }
    }

    /// A `map_lookup_elem` in one of the host regions' array maps and one
    /// to three loads, stores or atomics through its result, mostly after
    /// `jeq r0, 0` (else a key out of range makes them accesses near
    /// address 0, which trap), mostly inside the value, sometimes after
    /// adding to the pointer or at the edges of the value or of the map's
    /// values. The lookup takes one of three forms: inline with the key at
    /// a known frame offset, inline with the key through a register whose
    /// offset a block boundary hides (a run-time test), or through the
    /// helper (the map handle loaded in an earlier block).
    fn map_access(&mut self) {
        let k = self.rng.below(2) as usize;
        let (stride, entries) = MAP_SHAPES[k];
        let stride = stride as i16;
        let read_only = k == 1;
        let key = if self.rng.chance(80) {
            self.rng.below(entries as u64) as i32
        } else {
            self.rng.pick(&[entries as i32, -1, 1 << 20])
        };
        // [r10 + at, +4): in the frame, else (rarely) across its top, above
        // it or in the next frame down, through the helper.
        let at = if self.opts.out_of_bounds && self.rng.chance(4) {
            self.rng.pick(&[-2i16, 8, -516])
        } else {
            -4 * (1 + self.rng.below(128) as i16)
        };
        let lddw = |g: &mut Self| {
            g.asm
                .emit(Insn::new(OP_LDDW, 1, 0, 0, MAP_HANDLES[k] as u32 as i32));
            g.asm
                .emit(Insn::new(0, 0, 0, 0, (MAP_HANDLES[k] >> 32) as u32 as i32));
        };
        let form = self.rng.below(5);
        if form == 4 {
            lddw(self);
        }
        if at <= -4 {
            self.asm
                .emit(Insn::new(CLS_ST | MODE_MEM | SIZE_W, 10, 0, at, key));
        }
        self.asm
            .emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 2, 10, 0, 0));
        self.asm
            .emit(Insn::new(CLS_ALU64 | ALU_ADD | SRC_K, 2, 0, 0, at as i32));
        if form >= 3 {
            // A jump to the next instruction: a block boundary.
            self.asm.emit(Insn::new(OP_JA, 0, 0, 0, 0));
        }
        if form < 4 {
            lddw(self);
        }
        self.asm.emit(Insn::new(
            OP_CALL,
            0,
            CALL_HELPER,
            0,
            MAP_LOOKUP_ELEM as i32,
        ));
        let skip = self.asm.label();
        if !self.opts.out_of_bounds || self.rng.chance(75) {
            self.asm
                .emit_to(Insn::new(CLS_JMP | JMP_JEQ | SRC_K, 0, 0, 0, 0), skip);
        }
        // `shift` is what was added to r0.
        let mut shift = 0i16;
        for _ in 0..1 + self.rng.below(3) {
            if self.rng.chance(20) {
                let d = self.rng.pick(&[4i16, 8, stride, -stride]);
                self.asm
                    .emit(Insn::new(CLS_ALU64 | ALU_ADD | SRC_K, 0, 0, 0, d as i32));
                shift += d;
            }
            let (sz, n) = self.rng.pick(&SIZES);
            let n = n as i16;
            let inside = if n <= stride && self.rng.chance(80) {
                self.rng.below((stride / n) as u64) as i16 * n
            } else {
                self.rng.below((stride - n.min(stride) + 1) as u64) as i16
            };
            // Relative to the value; `off` is relative to r0.
            let at = if self.opts.out_of_bounds && self.rng.chance(15) {
                self.rng
                    .pick(&[-1i16, -8, stride - n + 1, stride, 64, -64, 72])
            } else {
                inside
            };
            let off = at - shift;
            let store_allowed = !read_only || (self.opts.out_of_bounds && self.rng.chance(10));
            // An atomic at a 4- or 8-byte size, mostly aligned in the value.
            self.access_through_r0(sz, off, store_allowed, |g| {
                (n >= 4).then(|| {
                    let off = if g.rng.chance(90) {
                        (at & !(n - 1)) - shift
                    } else {
                        off
                    };
                    (sz, off)
                })
            });
        }
        self.asm.bind(skip);
        // r1 holds the handle: later `call 1`s are the mix helper again.
        self.load_value(1);
        if self.opts.checksum {
            // r0 and r2 hold addresses.
            self.load_value(0);
            self.load_value(2);
        }
    }

    /// One access of size `sz` at `r0 + off`: a load (sometimes
    /// sign-extending) or, when `store_allowed`, also a store of an
    /// immediate or a register, or the atomic that `atomic` chooses (its
    /// size and offset; a load when it gives none). r0 holds the base: a
    /// load or an atomic's fetch must not replace it, and a store must not
    /// write it (an address) into memory. (`value_reg` already leaves out
    /// r9 when programs must not depend on addresses.)
    fn access_through_r0(
        &mut self,
        sz: u8,
        off: i16,
        store_allowed: bool,
        atomic: impl FnOnce(&mut Self) -> Option<(u8, i16)>,
    ) {
        let not_base = |r: u8| if r == 0 { 1 } else { r };
        let kind = self.rng.below(5);
        let atomic = match kind {
            4 if store_allowed => atomic(self),
            _ => None,
        };
        let insn = match (kind, atomic) {
            (2, _) if store_allowed => Insn::new(CLS_ST | MODE_MEM | sz, 0, 0, off, imm(self.rng)),
            (3, _) if store_allowed => {
                let src = not_base(self.value_reg());
                Insn::new(CLS_STX | MODE_MEM | sz, 0, src, off, 0)
            }
            (_, Some((sz, off))) => {
                let op = self.rng.pick(&[
                    ATOMIC_ADD,
                    ATOMIC_XOR | ATOMIC_FETCH,
                    ATOMIC_AND | ATOMIC_FETCH,
                    ATOMIC_XCHG,
                ]);
                let src = not_base(self.reg());
                Insn::new(CLS_STX | MODE_ATOMIC | sz, 0, src, off, op)
            }
            (1, _) if sz != SIZE_DW => {
                let dst = not_base(self.reg());
                Insn::new(CLS_LDX | MODE_MEMSX | sz, dst, 0, off, 0)
            }
            _ => {
                let dst = not_base(self.reg());
                Insn::new(CLS_LDX | MODE_MEM | sz, dst, 0, off, 0)
            }
        };
        self.asm.emit(insn);
    }

    /// An offset for an access of `size` bytes into a host region: inside
    /// mostly, else at most 16 bytes beyond either end.
    fn region_offset(&mut self, size: usize) -> i16 {
        let end = REGION_SIZE as i16;
        if self.opts.out_of_bounds && self.rng.chance(10) {
            return self
                .rng
                .pick(&[-1i16, -8, end - size as i16 + 1, end, end - 1, end + 8]);
        }
        if self.rng.chance(80) {
            (self.rng.below((REGION_SIZE / size) as u64) as usize * size) as i16
        } else {
            self.rng.below((REGION_SIZE - size + 1) as u64) as i16
        }
    }

    fn forward_jump(&mut self, depth: usize) {
        let class = if self.rng.chance(50) {
            CLS_JMP
        } else {
            CLS_JMP32
        };
        let op = self.rng.pick(&JMP_OPS);
        let dst = self.value_reg();
        let skip = self.asm.label();
        if self.rng.chance(50) {
            let src = self.value_reg();
            self.asm
                .emit_to(Insn::new(class | op | SRC_X, dst, src, 0, 0), skip);
        } else {
            let i = imm(self.rng);
            self.asm
                .emit_to(Insn::new(class | op | SRC_K, dst, 0, 0, i), skip);
        }
        let n = 1 + self.rng.below(4);
        for _ in 0..n {
            self.statement(depth + 1);
        }
        self.asm.bind(skip);
    }

    fn counted_loop(&mut self) {
        let count = 1 + self.rng.below(6) as i32;
        self.asm
            .emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, 8, 0, 0, count));
        let head = self.asm.label();
        self.asm.bind(head);
        self.in_loop = true;
        let saved = self.writable;
        self.writable = 7;
        let n = 1 + self.rng.below(4);
        for _ in 0..n {
            self.statement(1);
        }
        self.writable = saved;
        self.in_loop = false;
        self.asm
            .emit(Insn::new(CLS_ALU64 | ALU_SUB | SRC_K, 8, 0, 0, 1));
        self.asm
            .emit_to(Insn::new(CLS_JMP | JMP_JNE | SRC_K, 8, 0, 0, 0), head);
    }

    fn helper_call(&mut self) {
        if self.rng.chance(30) {
            // callx through a register holding the id (sometimes a bad one).
            let r = self.rng.below(6) as u8;
            let id = if self.opts.out_of_bounds && self.rng.chance(10) {
                99
            } else {
                MIX_HELPER_ID as i32
            };
            if self.writable < r {
                return;
            }
            self.asm
                .emit(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, r, 0, 0, id));
            self.asm.emit(Insn::new(OP_CALLX, r, 0, 0, 0));
        } else {
            self.asm
                .emit(Insn::new(OP_CALL, 0, CALL_HELPER, 0, MIX_HELPER_ID as i32));
        }
    }

    fn local_call(&mut self) {
        let f = self.rng.pick(&self.functions.clone());
        self.asm.emit_to(Insn::new(OP_CALL, 0, CALL_LOCAL, 0, 0), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfvm::engine::verifier::{verify, VerifyOptions};

    #[test]
    fn generated_programs_verify_and_are_deterministic() {
        let plain = GenOptions::default();
        let regions = GenOptions {
            host_regions: true,
            ..GenOptions::default()
        };
        let guards = GenOptions {
            length_guards: true,
            checksum: true,
            ..GenOptions::default()
        };
        let all = [&plain, &regions, &guards];
        for (seed, opts) in (0..500).flat_map(|s| all.map(|o| (s, o))) {
            let p = generate(seed, opts);
            assert_eq!(p, generate(seed, opts));
            if let Err(e) = verify(p.clone(), &VerifyOptions::default()) {
                panic!(
                    "seed {seed}: {e}\n{}",
                    bpfvm::engine::disasm::disassemble(&p)
                );
            }
        }
    }

    /// With length guards, programs test r2 or a copy of it first, in the
    /// 64- and 32-bit forms of `<` and `<=`, signed and unsigned, and a
    /// test that fails skips to the end; the default options add no test.
    #[test]
    fn length_guards_come_first_in_every_form() {
        use bpfvm::engine::instr::{decode, Cond, Instr, Width};
        let opts = GenOptions {
            length_guards: true,
            ..GenOptions::default()
        };
        let mut forms = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let p = generate(seed, &opts);
            let k = if p[1].code == CLS_ALU64 | ALU_MOV | SRC_X {
                2
            } else {
                1
            };
            let Ok(Instr::Jcond {
                width,
                cond,
                dst,
                target,
                ..
            }) = decode(&p, k)
            else {
                panic!("seed {seed}: no test at pc {k}");
            };
            assert!(
                matches!(cond, Cond::Lt | Cond::Le | Cond::SLt | Cond::SLe),
                "seed {seed}"
            );
            assert_eq!(dst, if k == 2 { 3 } else { 2 }, "seed {seed}");
            assert!(
                target as usize > k + 1 && (target as usize) < p.len(),
                "seed {seed}"
            );
            forms.insert((width == Width::W64, format!("{cond:?}"), k));
        }
        assert_eq!(forms.len(), 16, "{forms:?}");
        // Off by default: pc 1 then loads r0.
        for seed in 0..50 {
            let p = generate(seed, &GenOptions::default());
            assert!(
                matches!(
                    decode(&p, 1),
                    Ok(Instr::Alu { dst: 0, .. } | Instr::Lddw { dst: 0, .. })
                ),
                "seed {seed}"
            );
        }
    }

    /// With host regions, programs look up both array maps, in each of the
    /// three forms of `map_access` (the handle loaded in the block of the
    /// call, with and without a block boundary before it, or in an earlier
    /// block), test the result for 0 or not, and access through it.
    #[test]
    fn host_region_programs_use_both_maps_in_every_form() {
        let opts = GenOptions {
            host_regions: true,
            ..GenOptions::default()
        };
        // (handle in the call's block, after a boundary, in an earlier block)
        let mut forms = [[0usize; 3]; 2];
        let (mut tested, mut untested) = (0, 0);
        for seed in 0..300 {
            let p = generate(seed, &opts);
            for pc in 0..p.len() {
                let call = p[pc].code == OP_CALL && p[pc].imm == MAP_LOOKUP_ELEM as i32;
                let Some(k) = (pc >= 2 && call)
                    .then(|| {
                        MAP_HANDLES
                            .iter()
                            .position(|&h| lddw_value(&p, pc - 2) == Some(h))
                    })
                    .flatten()
                else {
                    if call && pc >= 7 {
                        // Handle loaded before `stw`, `mov`, `add`, `ja`.
                        let before = (2..=8).find_map(|d| {
                            MAP_HANDLES
                                .iter()
                                .position(|&h| lddw_value(&p, pc - d) == Some(h))
                        });
                        if let Some(k) = before {
                            forms[k][2] += 1;
                        }
                    }
                    continue;
                };
                let after_boundary = pc >= 3 && p[pc - 3].code == OP_JA;
                forms[k][after_boundary as usize] += 1;
                let next = p.get(pc + 1).map(|i| i.code);
                if next == Some(CLS_JMP | JMP_JEQ | SRC_K) && p[pc + 1].dst == 0 {
                    tested += 1;
                } else {
                    untested += 1;
                }
            }
        }
        for (k, f) in forms.iter().enumerate() {
            assert!(f.iter().all(|&n| n > 0), "map {k}: forms {f:?}");
        }
        assert!(
            tested > 0 && untested > 0,
            "{tested} tested, {untested} not"
        );
    }

    /// The 64-bit value of an `lddw` at `pc`, if there is one.
    fn lddw_value(p: &[Insn], pc: usize) -> Option<u64> {
        (p[pc].code == OP_LDDW && pc + 1 < p.len())
            .then(|| p[pc].imm as u32 as u64 | (p[pc + 1].imm as u32 as u64) << 32)
    }
}
