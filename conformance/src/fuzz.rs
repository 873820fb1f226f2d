//! Differential fuzzing campaigns: generated programs (seeded), run on the
//! interpreter and other tiers over identical memory and stack, compared
//! on everything observable. A divergence is minimised and written as a
//! `.data` test case that the conformance harness runs unchanged.

use bpfvm::engine::backend::{Backend, CompileOptions};
use bpfvm::engine::interp::Interpreter;
use bpfvm::engine::isa::Insn;

use crate::differential::{difference, differential_helpers, Differ, Observed};
use crate::generate::{generate, GenOptions, Rng, MEM_SIZE};
use crate::minimize::minimize;

/// A program on which a tier and the interpreter disagree.
#[derive(Clone, Debug)]
pub struct Divergence {
    pub seed: u64,
    pub tier: &'static str,
    pub difference: String,
    /// The minimised program.
    pub insns: Vec<Insn>,
    pub mem: Vec<u8>,
    /// The interpreter's outcome on the minimised program.
    pub reference: Observed,
    pub budget: Option<u64>,
}

/// The program and input memory of a seed.
pub fn case_for_seed(seed: u64, gen: &GenOptions) -> (Vec<Insn>, Vec<u8>) {
    let insns = generate(seed, gen);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mem = (0..MEM_SIZE).map(|_| rng.next_u64() as u8).collect();
    (insns, mem)
}

/// Runs one seed on the interpreter (first backend) and the others.
pub struct Checker {
    differ: Differ,
}

impl Default for Checker {
    fn default() -> Self {
        Checker::new(bpfvm::engine::backend::DEFAULT_CALL_DEPTH)
    }
}

impl Checker {
    pub fn new(call_depth: usize) -> Checker {
        Checker {
            differ: Differ::new(differential_helpers(), MEM_SIZE, call_depth),
        }
    }

    /// The first tier that differs from `backends[0]` on `insns`, if any.
    fn first_difference(
        &mut self,
        insns: &[Insn],
        mem: &[u8],
        backends: &[&dyn Backend],
        opts: &CompileOptions,
    ) -> Result<Option<(&'static str, String, Observed)>, String> {
        let runs = self.differ.run_all(insns, mem, backends, opts)?;
        let (_, reference) = &runs[0];
        for (tier, obs) in &runs[1..] {
            if let Some(d) = difference(reference, obs) {
                return Ok(Some((tier, d, reference.clone())));
            }
        }
        Ok(None)
    }

    /// Checks one seed; a divergence comes back minimised.
    pub fn check_seed(
        &mut self,
        seed: u64,
        gen: &GenOptions,
        backends: &[&dyn Backend],
        opts: &CompileOptions,
    ) -> Result<(), Box<Divergence>> {
        self.check_seed_with_progress(seed, gen, backends, opts, &mut || {})
    }

    /// [`Checker::check_seed`], calling `progress` before every run of the
    /// tiers (the first comparison and each minimisation attempt), so that
    /// a watchdog can tell a long minimisation from a compile that hangs.
    pub fn check_seed_with_progress(
        &mut self,
        seed: u64,
        gen: &GenOptions,
        backends: &[&dyn Backend],
        opts: &CompileOptions,
        progress: &mut dyn FnMut(),
    ) -> Result<(), Box<Divergence>> {
        progress();
        let (insns, mem) = case_for_seed(seed, gen);
        let found = match self.first_difference(&insns, &mem, backends, opts) {
            Ok(f) => f,
            // A generated program the verifier rejects is a generator bug:
            // report it as a divergence of the generator itself.
            Err(e) => Some(("generator", e, empty_observed())),
        };
        let Some((tier, diff, _)) = found else {
            return Ok(());
        };
        let small = minimize(&insns, 2000, |candidate| {
            progress();
            matches!(self.first_difference(candidate, &mem, backends, opts), Ok(Some((t, _, _))) if t == tier)
        });
        progress();
        let (difference, reference) = match self.first_difference(&small, &mem, backends, opts) {
            Ok(Some((_, d, r))) => (d, r),
            _ => (diff, empty_observed()),
        };
        Err(Box::new(Divergence {
            seed,
            tier,
            difference,
            insns: small,
            mem,
            reference,
            budget: opts.budget,
        }))
    }
}

fn empty_observed() -> Observed {
    Observed {
        result: Ok(0),
        budget_left: None,
        mem: Vec::new(),
        stack: Vec::new(),
        host: Vec::new(),
    }
}

impl Divergence {
    /// The divergence as a conformance test: the interpreter's outcome is
    /// the expectation.
    pub fn to_data_file(&self) -> String {
        let comment = format!(
            "Found by `bpfvm fuzz`: seed {}, {} differed from the interpreter: {}",
            self.seed, self.tier, self.difference
        );
        data_file(
            &comment,
            &self.insns,
            &self.mem,
            self.budget,
            &self.reference,
        )
    }
}

/// A seed's program and memory as a conformance test whose expectation is
/// the interpreter's outcome (`bpfvm gen`): test material for other tiers
/// and other VMs, and for the GPU check, which runs such files as kernels.
/// `Err` when the verifier rejects the program (a generator bug).
pub fn seed_as_data_file(
    seed: u64,
    gen: &GenOptions,
    opts: &CompileOptions,
) -> Result<String, String> {
    let (insns, mem) = case_for_seed(seed, gen);
    let mut differ = Differ::new(differential_helpers(), MEM_SIZE, opts.call_depth);
    let runs = differ.run_all(&insns, &mem, &[&Interpreter], opts)?;
    let comment = format!("Generated by `bpfvm gen`: seed {seed}, {gen:?}");
    Ok(data_file(&comment, &insns, &mem, opts.budget, &runs[0].1))
}

/// A `.data` test: the program as raw slots, its memory, the budget, and
/// `reference` (the interpreter's outcome) as the expectation.
fn data_file(
    comment: &str,
    insns: &[Insn],
    mem: &[u8],
    budget: Option<u64>,
    reference: &Observed,
) -> String {
    let mut s = format!("# SPDX-License-Identifier: MIT OR Apache-2.0\n# {comment}\n-- raw\n");
    for i in insns {
        s.push_str(&format!("0x{:016x}\n", i.to_u64()));
    }
    s.push_str("-- mem\n");
    for chunk in mem.chunks(16) {
        let line: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        s.push_str(&line.join(" "));
        s.push('\n');
    }
    if let Some(b) = budget {
        s.push_str(&format!("-- options\nbudget {b}\n"));
    }
    match &reference.result {
        Ok(v) => s.push_str(&format!("-- result\n0x{v:x}\n")),
        Err(t) => {
            // Addresses differ from run to run: expect the text before them.
            let text = t.to_string();
            let stable = text.split(" at 0x").next().unwrap_or(&text);
            s.push_str(&format!("-- error\n{stable}\n"));
        }
    }
    s
}
