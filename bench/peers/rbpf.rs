//! rbpf 0.4.1 (crates.io) as a peer: its interpreter and its x86-64 JIT,
//! on the programs it can run. Included by the `run` bench and the tests
//! (rbpf is a dev-dependency only).
//!
//! rbpf calls a program with r1 = the memory and nothing in r2, so the
//! bytecode gets a one-instruction prologue, `mov r2, <len>` (the input's
//! length is fixed per benchmark). rbpf has no maps, and its interpreter
//! checks memory while its JIT does not.

#![allow(dead_code)]

use bpfvm::engine::isa::{encode_program, Insn};

/// Which of rbpf's executors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RbpfMode {
    Interp,
    Jit,
}

impl RbpfMode {
    pub fn name(self) -> &'static str {
        match self {
            RbpfMode::Interp => "rbpf_interp",
            RbpfMode::Jit => "rbpf_jit",
        }
    }
}

/// rbpf's verifier and JIT compile of `bytecode` (from [`bytecode`]),
/// the VM then dropped: what the compile benchmarks time. Panics where
/// rbpf's JIT does (a program too large for its code buffer): check
/// with [`Rbpf::new`] first.
pub fn jit_compile(bytecode: &[u8]) -> Result<(), String> {
    let mut vm = rbpf::EbpfVmRaw::new(Some(bytecode)).map_err(|e| e.to_string())?;
    vm.jit_compile().map_err(|e| e.to_string())
}

/// A program loaded into rbpf.
pub struct Rbpf {
    vm: rbpf::EbpfVmRaw<'static>,
    mode: RbpfMode,
}

/// The bytecode rbpf runs: `mov r2, len` then the program.
pub fn bytecode(insns: &[Insn], len: usize) -> Vec<u8> {
    let prologue = Insn {
        code: 0xb7, // mov64 dst, imm
        dst: 2,
        src: 0,
        off: 0,
        imm: len as i32,
    };
    let mut all = vec![prologue];
    all.extend_from_slice(insns);
    encode_program(&all)
}

impl Rbpf {
    /// Loads (and for the JIT, compiles) `insns` for inputs of `len` bytes.
    pub fn new(insns: &[Insn], len: usize, mode: RbpfMode) -> Result<Rbpf, String> {
        if len > i32::MAX as usize {
            return Err("input too large".into());
        }
        // rbpf's VM borrows its program for its whole life: leak it (a few
        // KiB per loaded program, in a benchmark process).
        let prog: &'static [u8] = Box::leak(bytecode(insns, len).into_boxed_slice());
        let mut vm = rbpf::EbpfVmRaw::new(Some(prog)).map_err(|e| e.to_string())?;
        if mode == RbpfMode::Jit {
            // rbpf's JIT panics when a program overflows its fixed-size
            // code buffer: catch it (quietly) and report an error.
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let compiled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| vm.jit_compile()));
            std::panic::set_hook(hook);
            match compiled {
                Ok(r) => r.map_err(|e| e.to_string())?,
                Err(p) => {
                    let why = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    return Err(format!("rbpf's JIT panicked: {why}"));
                }
            }
        }
        Ok(Rbpf { vm, mode })
    }

    /// Runs over `mem`.
    pub fn run(&self, mem: &mut [u8]) -> Result<u64, String> {
        // SAFETY: rbpf's API ties the memory's lifetime to the VM's; the
        // slice is used only for the duration of this call.
        let mem: &'static mut [u8] =
            unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr(), mem.len()) };
        match self.mode {
            RbpfMode::Interp => self.vm.execute_program(mem).map_err(|e| e.to_string()),
            // SAFETY: only programs whose interpreter run returned the
            // expected result (so stayed within their memory) are JIT-run.
            RbpfMode::Jit => unsafe { self.vm.execute_program_jit(mem) }.map_err(|e| e.to_string()),
        }
    }
}
