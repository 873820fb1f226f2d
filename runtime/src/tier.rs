//! Tiers: the executors a program can run on, by name, and the factory that
//! returns the [`Backend`] of each tier compiled into this build.

use std::fmt;
use std::str::FromStr;

use bpfvm_engine::backend::Backend;

/// An executor tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// The reference interpreter: always available, always checks memory.
    Interp,
    /// Tier 0: the Cranelift JIT (cargo feature `cranelift`).
    Cranelift,
    /// Tier 1: the LLVM JIT (cargo feature `llvm`).
    Llvm,
    /// Tier 1's ahead-of-time path: compile to a native object, load it
    /// back, run it (cargo feature `llvm`). For testing the AOT objects;
    /// not a promotion target.
    Aot,
}

impl Tier {
    /// Every tier, in order of promotion.
    pub const ALL: [Tier; 4] = [Tier::Interp, Tier::Cranelift, Tier::Llvm, Tier::Aot];

    /// The tier's name as the command line and the harness spell it.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Interp => "interp",
            Tier::Cranelift => "cranelift",
            Tier::Llvm => "llvm",
            Tier::Aot => "aot",
        }
    }

    /// Whether the tier has an unchecked (trusted, no memory checks) mode
    /// distinct from its checked one. The interpreter always checks.
    pub fn has_unchecked_mode(self) -> bool {
        self != Tier::Interp
    }

    /// Whether this build has the tier.
    pub fn is_available(self) -> bool {
        backend(self).is_ok()
    }

    /// The tiers this build has, in order.
    pub fn available() -> Vec<Tier> {
        Tier::ALL.into_iter().filter(|t| t.is_available()).collect()
    }

    /// The valid names, comma separated (for error messages).
    fn valid_names() -> String {
        Tier::ALL.map(Tier::name).join(", ")
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tier {
    type Err = TierError;

    fn from_str(s: &str) -> Result<Tier, TierError> {
        Tier::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| TierError::Unknown {
                name: s.to_string(),
                valid: Tier::valid_names(),
            })
    }
}

/// Why a tier cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("unknown tier `{name}` (valid tiers: {valid})")]
    Unknown { name: String, valid: String },
    #[error("{0} support not compiled in (build bpfvm with the cargo feature `{feature}`)", feature = feature_of(.0))]
    NotCompiledIn(&'static str),
}

/// The cargo feature that brings in a tier.
fn feature_of(tier: &str) -> &'static str {
    match tier {
        "cranelift" => "cranelift",
        _ => "llvm",
    }
}

/// Sets how many helper threads tier 0 (Cranelift) may use, process-wide,
/// to compile a program's functions, and the pieces of a large one, in
/// parallel with the thread that compiles it: by default up to 3, one
/// fewer than the CPUs; 0 compiles everything on the compiling thread;
/// larger numbers count as those bounds. It applies from the next compile
/// on. A build without tier 0 ignores it.
pub fn set_tier0_helper_threads(n: usize) {
    #[cfg(feature = "cranelift")]
    bpfvm_cranelift::set_helper_threads(n);
    #[cfg(not(feature = "cranelift"))]
    let _ = n;
}

/// For measurements: the most slots a bpf-to-bpf function may have, with
/// what it calls, for tier 0 to translate it where it is called instead
/// of as a function of its own (64 by default; 0 inlines nothing),
/// process-wide, from the next compile on. A build without tier 0
/// ignores it.
#[doc(hidden)]
pub fn set_tier0_inline_slots(slots: usize) {
    #[cfg(feature = "cranelift")]
    bpfvm_cranelift::set_inline_slots(slots);
    #[cfg(not(feature = "cranelift"))]
    let _ = slots;
}

/// The backend of `tier`, or [`TierError::NotCompiledIn`] when this build
/// lacks it.
pub fn backend(tier: Tier) -> Result<Box<dyn Backend>, TierError> {
    match tier {
        Tier::Interp => Ok(Box::new(bpfvm_engine::interp::Interpreter)),
        #[cfg(feature = "cranelift")]
        Tier::Cranelift => Ok(Box::new(bpfvm_cranelift::CraneliftBackend)),
        #[cfg(not(feature = "cranelift"))]
        Tier::Cranelift => Err(TierError::NotCompiledIn("cranelift")),
        #[cfg(feature = "llvm")]
        Tier::Llvm => Ok(Box::new(bpfvm_llvm::LlvmBackend)),
        #[cfg(not(feature = "llvm"))]
        Tier::Llvm => Err(TierError::NotCompiledIn("llvm")),
        #[cfg(feature = "llvm")]
        Tier::Aot => Ok(Box::new(bpfvm_llvm::AotBackend)),
        #[cfg(not(feature = "llvm"))]
        Tier::Aot => Err(TierError::NotCompiledIn("aot")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Tier::ALL {
            assert_eq!(t.to_string().parse::<Tier>(), Ok(t));
        }
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let e = "jit".parse::<Tier>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown tier `jit` (valid tiers: interp, cranelift, llvm, aot)"
        );
    }

    #[test]
    fn interp_is_always_available() {
        assert_eq!(backend(Tier::Interp).map(|b| b.name()).ok(), Some("interp"));
        assert_eq!(Tier::available().first(), Some(&Tier::Interp));
    }

    #[test]
    fn missing_tiers_are_errors_not_panics() {
        #[cfg(not(feature = "llvm"))]
        match backend(Tier::Llvm) {
            Err(e) => assert_eq!(
                e.to_string(),
                "llvm support not compiled in (build bpfvm with the cargo feature `llvm`)"
            ),
            Ok(_) => panic!("llvm is not compiled in, yet its backend exists"),
        }
        #[cfg(feature = "llvm")]
        assert_eq!(backend(Tier::Llvm).map(|b| b.name()).ok(), Some("llvm"));
        if !cfg!(feature = "cranelift") {
            assert!(matches!(
                backend(Tier::Cranelift),
                Err(TierError::NotCompiledIn("cranelift"))
            ));
        }
    }
}
