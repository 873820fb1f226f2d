//! bpfvm-engine: the eBPF instruction set, assembler and disassembler, the
//! load-time verifier, the reference interpreter, and the ABI (`VmCtx`,
//! `Trap`, `Backend`) that the JIT tiers share.
//!
//! The engine knows nothing of Cranelift or LLVM.
//!
//! ```
//! use std::sync::Arc;
//! use bpfvm_engine::{asm, backend, helpers::Helpers, interp::Interpreter, verifier};
//! use bpfvm_engine::backend::Backend;
//!
//! let insns = asm::assemble("mov %r0, 40\nadd %r0, 2\nexit").unwrap();
//! let program = Arc::new(verifier::verify(insns, &Default::default()).unwrap());
//! let code = Interpreter.compile(&program, &Default::default()).unwrap();
//! let table = Helpers::new().table();
//! let env = backend::RunEnv { helpers: &table, regions: &[], host: std::ptr::null_mut() };
//! let out = backend::execute(code.as_ref(), &env, &mut []).unwrap();
//! assert_eq!(out.r0, 42);
//! ```

pub mod asm;
pub mod backend;
pub mod disasm;
pub mod elf;
pub mod facts;
pub mod helpers;
pub mod instr;
pub mod interp;
pub mod isa;
pub mod program;
pub mod semantics;
pub mod trap;
pub mod verifier;
pub mod vmctx;

pub use backend::{Backend, CompileOptions, CompiledCode};
pub use program::Program;
pub use trap::Trap;
