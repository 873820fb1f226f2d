//! Compiles one program a fixed number of times on one tier: a fixed
//! amount of compile work, to count with `valgrind --tool=cachegrind`
//! (scripts/compile-work.sh), which unlike a timer gives the same answer
//! on a loaded machine and in every address layout, or to profile with perf.
//!
//! `cargo run --release -p bpfvm-bench --example compile_work -- PROGRAM
//! [--tier T] [--opt N] [--unchecked] [--count N]`, where PROGRAM is
//! `gen:SLOTS` (the generated program of `compile/<tier>/O<n>/<slots>`),
//! `asm:FILE` (a program in assembler text) or the name of a benchmark
//! program (`compile_programs/<name>`). Prints the
//! mean wall time per compile to standard error. `--budget N` compiles with
//! instruction counting for a budget of N (the runtime's tier 0 under the
//! tiered policy counts with 18446744073709551615). `--inline SLOTS` sets
//! the largest function tier 0 translates where it is called (0: none).
//! `--write FILE` also writes
//! the program's bytecode to FILE (raw, for `bpfvm disasm --format raw`),
//! and `--clif FILE` its Cranelift IR with these options (what `bpfvm emit
//! clif` prints, which cannot for generated programs: they call the
//! benchmark's helpers).
//!
//! `--peer floor` compiles with Cranelift alone instead of the tier
//! (`bpfvm_bench::floor`: a straight run of 64-bit ALU instructions, such
//! as `asm:bench/asm/straight_alu_300.asm`, at `--opt` 0 or 1), and
//! `--peer rbpf_jit` with rbpf 0.4.1's x86-64 JIT (its verifier and its
//! compile, as `rbpf::EbpfVmRaw::new` and `jit_compile` do them).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bpfvm::emit::{emit_text, TextOutput};
use bpfvm::engine::asm::assemble;
use bpfvm::engine::verifier::{verify, VerifyOptions};
use bpfvm::tier::{backend, set_tier0_inline_slots, Tier, TierError};
use bpfvm_bench::floor::Floor;
use bpfvm_bench::{program_of_size, tier_options, Subject, PROGRAMS};

#[path = "../peers/rbpf.rs"]
mod rbpf_peer;
use rbpf_peer::{Rbpf, RbpfMode};

/// What `--peer` compiles with instead of the tier.
#[derive(Clone, Copy)]
enum Peer {
    Floor,
    RbpfJit,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compile_work: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let usage = "usage: compile_work PROGRAM|gen:SLOTS|asm:FILE [--tier T] [--opt N] [--unchecked] [--count N] [--budget N] [--inline SLOTS] [--write FILE] [--clif FILE] [--peer floor|rbpf_jit]";
    let mut args = std::env::args().skip(1);
    let what = args.next().ok_or(usage)?;
    let mut tier = Tier::Cranelift;
    let mut opt_level = None;
    let mut checked = true;
    let mut count = 1u32;
    let mut write = None;
    let mut clif = None;
    let mut peer = None;
    let mut budget = None;
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--tier" => tier = value()?.parse().map_err(|e: TierError| e.to_string())?,
            "--opt" => opt_level = Some(value()?.parse().map_err(|e| format!("--opt: {e}"))?),
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--unchecked" => checked = false,
            "--write" => write = Some(value()?),
            "--clif" => clif = Some(value()?),
            "--peer" => {
                peer = Some(match value()?.as_str() {
                    "floor" => Peer::Floor,
                    "rbpf_jit" => Peer::RbpfJit,
                    other => return Err(format!("--peer {other}: floor or rbpf_jit")),
                })
            }
            "--budget" => budget = Some(value()?.parse().map_err(|e| format!("--budget: {e}"))?),
            "--inline" => {
                set_tier0_inline_slots(value()?.parse().map_err(|e| format!("--inline: {e}"))?)
            }
            _ => return Err(usage.into()),
        }
    }
    // The runtime's options for the tier (Cranelift at tier 0's level),
    // unless --opt says otherwise.
    // The program, the tier's options, the linked instructions and the
    // input's length (for the peers).
    let (program, mut opts, insns, input_len) = if let Some(path) = what.strip_prefix("asm:") {
        let src = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let insns = assemble(&src).map_err(|e| format!("{path}: {e}"))?;
        let subject = Subject::from_insns(path, insns).map_err(|e| e.to_string())?;
        let opts = subject.options(tier, checked);
        (subject.program, opts, subject.insns, 0)
    } else if let Some(slots) = what.strip_prefix("gen:") {
        let slots = slots.parse().map_err(|e| format!("{what}: {e}"))?;
        let insns = program_of_size(slots);
        let program =
            Arc::new(verify(insns.clone(), &VerifyOptions::default()).map_err(|e| e.to_string())?);
        (program, tier_options(tier, checked), insns, 0)
    } else {
        let p = PROGRAMS
            .iter()
            .find(|p| p.name == what)
            .ok_or(format!("no benchmark program {what}"))?;
        let subject = Subject::from_elf(p.bpf_object, None).map_err(|e| e.to_string())?;
        let opts = subject.options(tier, checked);
        (subject.program, opts, subject.insns, (p.input)().len())
    };
    if let Some(path) = write {
        std::fs::write(&path, program.to_bytes()).map_err(|e| format!("{path}: {e}"))?;
    }
    if let Some(level) = opt_level {
        opts.opt_level = level;
    }
    if budget.is_some() {
        opts.budget = budget;
    }
    if let Some(path) = clif {
        let text = emit_text(&program, &opts, TextOutput::Clif).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{path}: {e}"))?;
    }
    let start = Instant::now();
    match peer {
        None => {
            let b = backend(tier).map_err(|e| e.to_string())?;
            for _ in 0..count {
                b.compile(&program, &opts).map_err(|e| e.to_string())?;
            }
        }
        Some(Peer::Floor) => {
            let mut floor = Floor::new(opts.opt_level)?;
            for _ in 0..count {
                floor.compile(&insns)?;
            }
        }
        Some(Peer::RbpfJit) => {
            // Once through the peer, which reports a refusal or a panic
            // (rbpf's code buffer is fixed) as an error.
            Rbpf::new(&insns, input_len, RbpfMode::Jit)?;
            let bytecode = rbpf_peer::bytecode(&insns, input_len);
            for _ in 0..count {
                rbpf_peer::jit_compile(&bytecode)?;
            }
        }
    }
    // rbpf's JIT has no levels.
    let on = match peer {
        Some(Peer::RbpfJit) => "rbpf_jit".to_string(),
        Some(Peer::Floor) => format!("floor, O{}", opts.opt_level),
        None => format!("{tier}, O{}", opts.opt_level),
    };
    eprintln!(
        "{what} on {on}: {:?} per compile over {count}",
        start.elapsed() / count.max(1)
    );
    Ok(())
}
