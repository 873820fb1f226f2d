//! bpfvm: a userspace eBPF virtual machine.
//!
//! This crate is the embedding API. For now it offers the tier registry
//! ([`tier`]) and the standard helpers the conformance suite needs
//! ([`standard_test_helpers`]); the engine is re-exported as [`engine`].
//!
//! ```
//! use std::sync::Arc;
//! use bpfvm::engine::{asm, backend, verifier};
//! use bpfvm::tier::{self, Tier};
//!
//! let helpers = bpfvm::standard_test_helpers();
//! let insns = asm::assemble("mov %r0, 40\nadd %r0, 2\nexit").unwrap();
//! let program = Arc::new(verifier::verify(insns, &Default::default()).unwrap());
//! let code = tier::backend(Tier::Interp).unwrap().compile(&program, &Default::default()).unwrap();
//! let table = helpers.table();
//! let env = backend::RunEnv { helpers: &table, regions: &[], host: std::ptr::null_mut() };
//! assert_eq!(backend::execute(code.as_ref(), &env, &mut []).unwrap().r0, 42);
//! ```

pub mod config;
pub mod crosscheck;
pub mod emit;
pub mod helpers;
pub mod maps;
pub mod object;
pub mod program;
pub mod tier;
pub mod vm;

pub use bpfvm_engine as engine;
pub use config::{Config, CrossCheck, TierPolicy, DEFAULT_CRANELIFT_OPT_LEVEL};
pub use crosscheck::MismatchReport;
pub use program::{Program, Stats, TierCounts};
pub use tier::Tier;
pub use vm::{Engine, LoadError};

use bpfvm_engine::helpers::Helpers;

/// Id of the helper every conformance runner must provide.
pub const CONFORMANCE_HELPER_ID: u32 = 5;

/// The helpers the public conformance suite expects: helper 5
/// (`conformance_helper`), which does nothing and returns 0. Used by the
/// `bpfvm` command line, the conformance plugin and the test harness.
pub fn standard_test_helpers() -> Helpers {
    let mut helpers = Helpers::new();
    helpers.register_recording(
        CONFORMANCE_HELPER_ID,
        "conformance_helper",
        |_ctx, _args| Ok(0),
    );
    helpers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_5_is_registered() {
        let h = standard_test_helpers();
        assert!(h.contains(CONFORMANCE_HELPER_ID));
        assert_eq!(h.name(CONFORMANCE_HELPER_ID), Some("conformance_helper"));
        assert_eq!(h.list().len(), 1);
    }
}
