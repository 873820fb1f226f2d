//! Differential execution: run one program on several tiers over identical
//! memory and stack (same contents, same addresses) and compare everything
//! observable: the result or trap (kind, pc, address), the input memory
//! (which holds the generated programs' register dump), the whole stack
//! area, the host regions' allocation ([`crate::host_regions`]), and the
//! instructions charged to the budget.

use std::sync::Arc;

use bpfvm::engine::backend::{execute_on, Backend, CompileOptions, RunEnv, Stack};
use bpfvm::engine::disasm::disassemble;
use bpfvm::engine::helpers::{HelperTable, Helpers};
use bpfvm::engine::isa::Insn;
use bpfvm::engine::trap::Trap;
use bpfvm::engine::verifier::{verify, VerifyOptions};

use crate::generate::{generate, mix_helper, GenOptions, Rng, MEM_SIZE, MIX_HELPER_ID};
use crate::host_regions::HostRegions;

/// Everything a run makes visible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub result: Result<u64, Trap>,
    pub budget_left: Option<u64>,
    pub mem: Vec<u8>,
    pub stack: Vec<u8>,
    /// The host regions' allocation after the run.
    pub host: Vec<u8>,
}

/// Helpers the generated programs call.
pub fn differential_helpers() -> Helpers {
    let mut h = Helpers::new();
    h.register(MIX_HELPER_ID, "mix", |_, a| Ok(mix_helper(a)));
    h
}

/// One program run on every tier, over the same buffers.
pub struct Differ {
    table: HelperTable,
    helpers: Helpers,
    mem: Vec<u8>,
    stack: Stack,
    host: HostRegions,
}

impl Differ {
    /// `helpers`, and the region helper of [`crate::host_regions`], are
    /// registered for every run.
    pub fn new(helpers: Helpers, mem_size: usize, call_depth: usize) -> Differ {
        let host = HostRegions::default();
        let helpers = host.with_helper(&helpers);
        Differ {
            table: helpers.table(),
            helpers,
            mem: vec![0; mem_size],
            stack: Stack::new(call_depth),
            host,
        }
    }

    /// Verifies `insns` and runs it on each backend with `opts`, memory
    /// starting as `mem_init`. Returns the observations, reference first,
    /// or the verifier's error, or, for unchecked code, an error when the
    /// reference traps on an out-of-bounds access.
    pub fn run_all(
        &mut self,
        insns: &[Insn],
        mem_init: &[u8],
        backends: &[&dyn Backend],
        opts: &CompileOptions,
    ) -> Result<Vec<(&'static str, Observed)>, String> {
        let helpers = &self.helpers;
        let vopts = VerifyOptions {
            helper_exists: &|id| helpers.contains(id),
            ..VerifyOptions::default()
        };
        let program = Arc::new(verify(insns.to_vec(), &vopts).map_err(|e| e.to_string())?);
        // The host regions' array maps are inlinable (helper 1 looks them up).
        let opts = CompileOptions {
            array_maps: self.host.array_maps(),
            ..opts.clone()
        };
        let mut out = Vec::new();
        for b in backends {
            let code = b.compile(&program, &opts).map_err(|e| e.to_string())?;
            self.mem[..mem_init.len()].copy_from_slice(mem_init);
            self.stack.clear();
            self.host.reset();
            let regions = self.host.regions();
            let env = RunEnv {
                helpers: &self.table,
                regions: &regions,
                host: std::ptr::null_mut(),
            };
            let r = execute_on(code.as_ref(), &env, &mut self.mem, &mut self.stack);
            // Unchecked code trusts the program: one that the reference
            // (which checks) saw leave its memory would make a wild access
            // on the other tiers. Not run (a generator bug when it comes
            // from the generator; a rejected candidate when minimising).
            if let (false, true, Err(t @ Trap::OutOfBounds { .. })) =
                (opts.checked, out.is_empty(), &r)
            {
                return Err(format!(
                    "{t} on {}: not run unchecked on the other tiers",
                    b.name()
                ));
            }
            out.push((
                b.name(),
                Observed {
                    budget_left: r.as_ref().ok().and_then(|o| o.budget_left),
                    result: r.map(|o| o.r0),
                    mem: self.mem.clone(),
                    stack: self.stack.bytes(),
                    host: self.host.contents(),
                },
            ));
        }
        Ok(out)
    }
}

/// Runs `insns` over `mem` on every available tier, at Cranelift's levels
/// 0, 1 and 3 (the LLVM tier at O0, O1 and O3), checked, with `budget`;
/// panics, naming `what`, when the program does not verify or a tier
/// differs from the interpreter (the budget left included). Returns the
/// interpreter's result (the same at each level).
pub fn agree_on_every_tier(
    what: &str,
    insns: &[Insn],
    mem: &[u8],
    budget: Option<u64>,
) -> Result<u64, Trap> {
    let tiers: Vec<Box<dyn Backend>> = bpfvm::tier::Tier::available()
        .into_iter()
        .filter_map(|t| bpfvm::tier::backend(t).ok())
        .collect();
    let refs: Vec<&dyn Backend> = tiers.iter().map(|b| b.as_ref()).collect();
    let mut result = None;
    for opt_level in [0u8, 1, 3] {
        let opts = CompileOptions {
            opt_level,
            budget,
            ..CompileOptions::default()
        };
        let mut differ = Differ::new(differential_helpers(), mem.len(), opts.call_depth);
        let what = format!("{what}, input of {} bytes, O{opt_level}", mem.len());
        let runs = differ
            .run_all(insns, mem, &refs, &opts)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (_, reference) = &runs[0];
        for (tier, obs) in &runs[1..] {
            if let Some(d) = difference(reference, obs) {
                panic!("{what}: {tier} differs from the interpreter: {d}");
            }
        }
        result = Some(reference.result.clone());
    }
    result.expect("three levels ran")
}

/// Describes the first difference between a reference and another run.
pub fn difference(reference: &Observed, other: &Observed) -> Option<String> {
    if reference.result != other.result {
        return Some(format!(
            "result {:?} vs {:?}",
            reference.result, other.result
        ));
    }
    if reference.budget_left != other.budget_left {
        return Some(format!(
            "budget left {:?} vs {:?}",
            reference.budget_left, other.budget_left
        ));
    }
    if let Some(i) = (0..reference.mem.len()).find(|&i| reference.mem[i] != other.mem[i]) {
        return Some(format!(
            "memory byte {i}: {:#04x} vs {:#04x}",
            reference.mem[i], other.mem[i]
        ));
    }
    if let Some(i) = (0..reference.stack.len()).find(|&i| reference.stack[i] != other.stack[i]) {
        return Some(format!(
            "stack byte {i} (from the bottom): {:#04x} vs {:#04x}",
            reference.stack[i], other.stack[i]
        ));
    }
    if let Some(i) = (0..reference.host.len()).find(|&i| reference.host[i] != other.host[i]) {
        return Some(format!(
            "host region byte {i}: {:#04x} vs {:#04x}",
            reference.host[i], other.host[i]
        ));
    }
    None
}

/// The environment variable `name` as a number, else `default` (how
/// campaigns take a longer count or another first seed).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The interpreter against `others` on seeds `start..start + count`: how
/// many were compared, or the first divergence (with the tier's name and
/// its index in `others`).
pub fn compare(
    start: u64,
    others: &[&dyn Backend],
    gen: &GenOptions,
    opts: &CompileOptions,
    count: u64,
) -> Result<u64, String> {
    let interp = bpfvm::engine::interp::Interpreter;
    let mut refs: Vec<&dyn Backend> = vec![&interp];
    refs.extend(others);
    let mut differ = Differ::new(differential_helpers(), MEM_SIZE, opts.call_depth);
    let mut compared = 0;
    for seed in start..start + count {
        let insns = generate(seed, gen);
        let mut rng = Rng::new(seed ^ 0x5eed);
        let mem: Vec<u8> = (0..MEM_SIZE).map(|_| rng.next_u64() as u8).collect();
        let runs = differ
            .run_all(&insns, &mem, &refs, opts)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", disassemble(&insns)));
        let (_, reference) = &runs[0];
        for (k, (tier, obs)) in runs[1..].iter().enumerate() {
            if let Some(d) = difference(reference, obs) {
                return Err(format!(
                    "seed {seed}: {tier} (backend {k}) differs from the interpreter: {d}\n{}",
                    disassemble(&insns)
                ));
            }
        }
        compared += 1;
    }
    Ok(compared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfvm::engine::asm::assemble;
    use bpfvm::engine::interp::Interpreter;

    /// Unchecked, a program that the reference sees leave its memory is
    /// not run on the other tiers: the error says why. Checked, it is.
    #[test]
    fn out_of_bounds_programs_are_not_run_unchecked() {
        let mut d = Differ::new(differential_helpers(), 64, 8);
        let wild = assemble("mov %r1, 8\nldxdw %r0, [%r1]\nexit").unwrap();
        let both: [&dyn Backend; 2] = [&Interpreter, &Interpreter];
        let unchecked = CompileOptions {
            checked: false,
            ..CompileOptions::default()
        };
        let e = d.run_all(&wild, &[], &both, &unchecked).unwrap_err();
        assert!(e.contains("not run unchecked"), "{e}");
        let runs = d
            .run_all(&wild, &[], &both, &CompileOptions::default())
            .unwrap();
        assert_eq!(runs.len(), 2);
        let fine = assemble("mov %r0, 1\nexit").unwrap();
        assert_eq!(d.run_all(&fine, &[], &both, &unchecked).unwrap().len(), 2);
    }
}
