//! `struct bpfvm_config`: the engine configuration as C sees it, its
//! defaults (`bpfvm_config_init`), and its validation into a runtime
//! [`Config`].

use std::ffi::c_int;

use bpfvm_engine::backend::{CompileOptions, MAX_CALL_DEPTH};
use runtime::{Config, CrossCheck, Tier, TierPolicy};

use crate::error::{guard, Code, Error, Result};

/// `BPFVM_TIER_AUTO`: let the tiering policy decide (see `bpfvm_program_compile`).
pub const TIER_AUTO: c_int = -1;
pub const TIER_INTERP: c_int = 0;
pub const TIER_CRANELIFT: c_int = 1;
pub const TIER_LLVM: c_int = 2;
pub const TIER_AOT: c_int = 3;

pub const POLICY_FIXED: c_int = 0;
pub const POLICY_TIERED: c_int = 1;
pub const POLICY_EAGER: c_int = 2;

/// The engine configuration (`struct bpfvm_config`). Fill it with
/// `bpfvm_config_init`, then change fields.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct bpfvm_config {
    /// `sizeof(struct bpfvm_config)`, set by `bpfvm_config_init`.
    pub struct_size: u32,
    /// `BPFVM_POLICY_FIXED`, `_TIERED` (the default) or `_EAGER`.
    pub tier_policy: c_int,
    /// The tier of `BPFVM_POLICY_FIXED` (`BPFVM_TIER_INTERP`, ...).
    pub fixed_tier: c_int,
    /// Tiered: promote to tier 1 after this many calls...
    pub call_threshold: u64,
    /// ...or after this many instructions executed on tier 0.
    pub instruction_threshold: u64,
    /// Non-zero: check every memory access (the default).
    pub memory_checks: c_int,
    /// Instructions one run may execute before it traps; 0: no budget.
    pub instruction_budget: u64,
    /// Call-depth limit in frames (1 to 1024; default 8).
    pub call_depth: u32,
    /// Background threads that compile tier 1 (at least 1).
    pub compile_threads: u32,
    /// LLVM optimisation level, 0 to 3.
    pub llvm_opt_level: u32,
    /// Cranelift optimisation level, 0 to 3 (default 1: full register
    /// allocation, no optimisation pass; 0 compiles fastest; 2 and 3 add
    /// Cranelift's optimiser).
    pub cranelift_opt_level: u32,
    /// Non-zero: compile tier 1 on the calling thread when the threshold
    /// is crossed (deterministic, for tests).
    pub synchronous_tier_up: c_int,
    /// Non-zero: cross-check promoted code against `cross_check_reference`.
    pub cross_check: c_int,
    /// The trusted tier of cross-checks (default `BPFVM_TIER_INTERP`).
    pub cross_check_reference: c_int,
    /// Cross-check every one of the first N calls after promotion...
    pub cross_check_first: u64,
    /// ...then one call in N (0: never).
    pub cross_check_one_in: u64,
    /// Failed tier-1 compiles after which a program stops trying.
    pub max_compile_failures: u32,
}

impl Default for bpfvm_config {
    fn default() -> Self {
        let check = CrossCheck::default();
        let TierPolicy::Tiered {
            call_threshold,
            instruction_threshold,
        } = TierPolicy::tiered()
        else {
            unreachable!("TierPolicy::tiered() is Tiered")
        };
        bpfvm_config {
            struct_size: std::mem::size_of::<bpfvm_config>() as u32,
            tier_policy: POLICY_TIERED,
            fixed_tier: TIER_INTERP,
            call_threshold,
            instruction_threshold,
            memory_checks: 1,
            instruction_budget: 0,
            call_depth: bpfvm_engine::backend::DEFAULT_CALL_DEPTH as u32,
            compile_threads: 1,
            llvm_opt_level: 3,
            cranelift_opt_level: runtime::DEFAULT_CRANELIFT_OPT_LEVEL as u32,
            synchronous_tier_up: 0,
            cross_check: 0,
            cross_check_reference: TIER_INTERP,
            cross_check_first: check.first,
            cross_check_one_in: check.one_in,
            max_compile_failures: 3,
        }
    }
}

/// A tier from its C constant.
pub fn tier_from_c(tier: c_int) -> Result<Tier> {
    match tier {
        TIER_INTERP => Ok(Tier::Interp),
        TIER_CRANELIFT => Ok(Tier::Cranelift),
        TIER_LLVM => Ok(Tier::Llvm),
        TIER_AOT => Ok(Tier::Aot),
        other => Err(Error::invalid(format!(
            "unknown tier {other} (BPFVM_TIER_INTERP 0, _CRANELIFT 1, _LLVM 2, _AOT 3)"
        ))),
    }
}

/// A tier's C constant.
pub fn tier_to_c(tier: Tier) -> c_int {
    match tier {
        Tier::Interp => TIER_INTERP,
        Tier::Cranelift => TIER_CRANELIFT,
        Tier::Llvm => TIER_LLVM,
        Tier::Aot => TIER_AOT,
    }
}

/// A tier that this build has, or `BPFVM_E_UNSUPPORTED`.
pub fn available(tier: Tier) -> Result<Tier> {
    match runtime::tier::backend(tier) {
        Ok(_) => Ok(tier),
        Err(e) => Err(Error::new(Code::Unsupported, e.to_string())),
    }
}

/// A validated configuration: the runtime's [`Config`] (without helpers
/// and regions, which the engine adds) and what the C API needs to know
/// of it again.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: Config,
    pub policy: TierPolicy,
    pub memory_checks: bool,
    pub instruction_budget: Option<u64>,
    pub call_depth: usize,
    pub llvm_opt_level: u8,
}

impl Settings {
    /// Checks every field of `c`.
    pub fn from_c(c: &bpfvm_config) -> Result<Settings> {
        if c.struct_size as usize != std::mem::size_of::<bpfvm_config>() {
            return Err(Error::invalid(format!(
                "struct bpfvm_config has struct_size {}, expected {}: initialise it with bpfvm_config_init",
                c.struct_size,
                std::mem::size_of::<bpfvm_config>()
            )));
        }
        let policy = match c.tier_policy {
            POLICY_FIXED => TierPolicy::Fixed(available(tier_from_c(c.fixed_tier)?)?),
            POLICY_TIERED => TierPolicy::Tiered {
                call_threshold: c.call_threshold,
                instruction_threshold: c.instruction_threshold,
            },
            POLICY_EAGER => TierPolicy::Eager,
            other => {
                return Err(Error::invalid(format!(
                    "unknown tier policy {other} (BPFVM_POLICY_FIXED 0, _TIERED 1, _EAGER 2)"
                )))
            }
        };
        if c.call_depth == 0 || c.call_depth as usize > MAX_CALL_DEPTH {
            return Err(Error::invalid(format!(
                "call_depth must be between 1 and {MAX_CALL_DEPTH}, got {}",
                c.call_depth
            )));
        }
        if c.compile_threads == 0 {
            return Err(Error::invalid("compile_threads must be at least 1"));
        }
        if c.llvm_opt_level > 3 || c.cranelift_opt_level > 3 {
            return Err(Error::invalid(format!(
                "optimisation levels are 0 to 3, got llvm {} and cranelift {}",
                c.llvm_opt_level, c.cranelift_opt_level
            )));
        }
        let cross_check = if c.cross_check != 0 {
            Some(CrossCheck {
                reference: available(tier_from_c(c.cross_check_reference)?)?,
                first: c.cross_check_first,
                one_in: c.cross_check_one_in,
                panic_on_mismatch: false,
            })
        } else {
            None
        };
        let budget = (c.instruction_budget != 0).then_some(c.instruction_budget);
        let mut config = Config::new();
        config
            .tier_policy(policy)
            .cross_check(cross_check)
            .memory_checks(c.memory_checks != 0)
            .instruction_budget(budget)
            .call_depth(c.call_depth as usize)
            .compile_threads(c.compile_threads as usize)
            .llvm_opt_level(c.llvm_opt_level as u8)
            .cranelift_opt_level(c.cranelift_opt_level as u8)
            .synchronous_tier_up(c.synchronous_tier_up != 0)
            .max_compile_failures(c.max_compile_failures);
        Ok(Settings {
            config,
            policy,
            memory_checks: c.memory_checks != 0,
            instruction_budget: budget,
            call_depth: c.call_depth as usize,
            llvm_opt_level: c.llvm_opt_level as u8,
        })
    }

    /// The options tier 1 compiles with (for LLVM IR, PTX and AOT output).
    pub fn tier1_options(&self) -> CompileOptions {
        CompileOptions {
            checked: self.memory_checks,
            budget: self.instruction_budget,
            call_depth: self.call_depth,
            opt_level: self.llvm_opt_level,
            ..CompileOptions::default()
        }
    }
}

/// Fills `*config` with the defaults: tiered policy (1000 calls or 10^7
/// tier-0 instructions), memory checks on, no instruction budget, call
/// depth 8, one compile thread, LLVM O3, Cranelift `speed`, no cross-checks.
///
/// # Safety
/// `config` is NULL or points to writable memory for a `struct bpfvm_config`.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_config_init(config: *mut bpfvm_config) -> c_int {
    guard(|| {
        if config.is_null() {
            return Err(Error::null("config"));
        }
        // SAFETY: non-NULL, and the caller promises room for the struct;
        // `write` does not read the (possibly uninitialised) old value.
        unsafe { config.write(bpfvm_config::default()) };
        Ok(())
    })
}

/// Sets `*available` to 1 when this build has `tier`, else 0.
///
/// # Safety
/// `available` is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_tier_available(tier: c_int, available: *mut c_int) -> c_int {
    guard(|| {
        if available.is_null() {
            return Err(Error::null("available"));
        }
        let tier = tier_from_c(tier)?;
        let yes = tier.is_available() as c_int;
        // SAFETY: non-NULL, and the caller promises a writable int.
        unsafe { available.write(yes) };
        Ok(())
    })
}

/// Sets how many helper threads tier 0 may use, process-wide, to compile
/// a program's functions in parallel (see
/// `bpfvm::tier::set_tier0_helper_threads`).
#[no_mangle]
pub extern "C" fn bpfvm_set_tier0_helper_threads(n: u32) -> c_int {
    guard(|| {
        runtime::tier::set_tier0_helper_threads(n as usize);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let s = Settings::from_c(&bpfvm_config::default()).unwrap();
        assert_eq!(s.policy, TierPolicy::tiered());
        assert!(s.memory_checks);
        assert_eq!(s.instruction_budget, None);
    }

    #[test]
    fn bad_fields_are_invalid() {
        let bad = |f: &dyn Fn(&mut bpfvm_config)| {
            let mut c = bpfvm_config::default();
            f(&mut c);
            Settings::from_c(&c).unwrap_err().code
        };
        assert_eq!(bad(&|c| c.struct_size = 0), Code::Invalid);
        assert_eq!(bad(&|c| c.tier_policy = 7), Code::Invalid);
        assert_eq!(
            bad(&|c| {
                c.tier_policy = POLICY_FIXED;
                c.fixed_tier = 9
            }),
            Code::Invalid
        );
        assert_eq!(bad(&|c| c.call_depth = 0), Code::Invalid);
        assert_eq!(bad(&|c| c.call_depth = 5000), Code::Invalid);
        assert_eq!(bad(&|c| c.llvm_opt_level = 4), Code::Invalid);
        assert_eq!(bad(&|c| c.compile_threads = 0), Code::Invalid);
    }

    #[test]
    fn tiers_round_trip() {
        for t in Tier::ALL {
            assert_eq!(tier_from_c(tier_to_c(t)), Ok(t));
        }
        assert!(tier_from_c(TIER_AUTO).is_err());
    }
}
