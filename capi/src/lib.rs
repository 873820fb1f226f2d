//! bpfvm's C API: `libbpfvm.so` / `libbpfvm.a` with the header
//! `include/bpfvm.h`, for embedding bpfvm in C and C++ hosts.
//!
//! Every exported function returns an `int`: 0 on success, a negative
//! [`error::Code`] on failure, with the message in `bpfvm_last_error()`
//! (thread-local). Every body runs inside [`error::guard`]
//! (`catch_unwind`): nothing unwinds into C. Handles are ids checked
//! against a registry ([`handles`]), so a destroyed handle is an error,
//! not a crash.
//!
//! | module | what |
//! |---|---|
//! | [`error`] | codes, last error, the panic guard |
//! | [`handles`] | the live-handle registry |
//! | [`config`] | `struct bpfvm_config` |
//! | [`engine`] | engines: helpers, `lddw` hooks, regions, loading |
//! | [`program`] | programs: compile at a tier, current tier, destroy |
//! | [`run`] | running, `struct bpfvm_trap` |
//! | [`stats`] | `struct bpfvm_stats` |
//! | [`emit`] | LLVM IR, PTX and AOT objects into caller buffers |
//!
//! The header mirrors these doc comments; `tests/c_examples.rs` checks that
//! it declares exactly the functions the library exports, and the unit
//! tests of `header_check.rs` that its constants and struct layouts match.
//!
//! The crate builds `libbpfvm.so` and `libbpfvm.a` only, no rlib: the
//! runtime crate's library is also named `bpfvm`, and two `libbpfvm.rlib`
//! in one target directory collide (a cargo warning, to become an error).
//! Rust programs use the runtime crate itself.

pub mod config;
pub mod emit;
pub mod engine;
pub mod error;
pub mod handles;
pub mod helpers;
pub mod lddw;
pub mod program;
pub mod run;
pub mod stats;
mod util;

#[cfg(test)]
mod header_check;

pub use config::bpfvm_config;
pub use handles::{bpfvm_engine, bpfvm_program};
pub use run::bpfvm_trap;
pub use stats::bpfvm_stats;
