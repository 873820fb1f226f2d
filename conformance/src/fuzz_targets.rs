//! What the coverage-guided fuzz targets of `fuzz/` do with an input, kept
//! here so that the stable test suite replays their corpora
//! (`tests/fuzz_corpora.rs`) without cargo-fuzz or a nightly toolchain.
//!
//! Each function returns normally for every input that bpfvm handles
//! correctly (an error value is a correct answer to bad input) and panics
//! when it finds a bug: a panic inside bpfvm, an assembler listing that does
//! not read back, or two tiers that disagree.

use std::sync::Arc;

use bpfvm::engine::asm::{assemble, parse_objdump_syntax};
use bpfvm::engine::backend::{execute, Backend, CompileOptions, RunEnv};
use bpfvm::engine::disasm::disassemble;
use bpfvm::engine::interp::Interpreter;
use bpfvm::engine::isa::decode_program;
use bpfvm::engine::verifier::{verify, VerifyOptions};
use bpfvm::tier::{backend, Tier};

use crate::differential::{difference, differential_helpers, Differ};

/// Memory the `verifier` and `execution` targets run programs over.
pub const FUZZ_MEM: usize = 64;
/// Instruction budget of those runs: every input terminates.
pub const FUZZ_BUDGET: u64 = 10_000;

/// `verifier`: raw bytes as bytecode. Decoding and verification must give
/// a program or an error; a verified program runs on the interpreter over
/// 64 zero bytes with a budget and must end in a result or a typed trap.
/// Returns whether the input verified.
pub fn verifier(data: &[u8]) -> bool {
    let Ok(insns) = decode_program(data) else {
        return false;
    };
    let helpers = differential_helpers();
    let opts = VerifyOptions {
        helper_exists: &|id| helpers.contains(id),
        ..VerifyOptions::default()
    };
    let Ok(program) = verify(insns, &opts) else {
        return false;
    };
    let copts = CompileOptions {
        budget: Some(FUZZ_BUDGET),
        ..CompileOptions::default()
    };
    let code = Interpreter
        .compile(&Arc::new(program), &copts)
        .expect("the interpreter accepts every verified program");
    let table = helpers.table();
    let env = RunEnv {
        helpers: &table,
        regions: &[],
        host: std::ptr::null_mut(),
    };
    let mut mem = [0u8; FUZZ_MEM];
    let _ = execute(code.as_ref(), &env, &mut mem);
    true
}

/// `assembler`: bytes as assembler text (the conformance syntax). Text that
/// assembles must disassemble to an `llvm-objdump` listing that reads back
/// to the same instructions. Returns whether the text assembled.
pub fn assembler(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Ok(insns) = assemble(&text) else {
        return false;
    };
    let listing = disassemble(&insns);
    if listing.contains("<invalid") {
        // The assembler wrote something the decoder rejects; that it is
        // rejected at load is checked by the verifier target. Nothing to
        // read back.
        return true;
    }
    let back = parse_objdump_syntax(&listing)
        .unwrap_or_else(|e| panic!("the listing does not read back: {e}\n{text}\n{listing}"));
    assert_eq!(back, insns, "listing round trip\n{text}\n{listing}");
    true
}

/// `execution`: the first 64 bytes of the input are the memory (zero
/// padded), the rest bytecode (whole instructions). The program runs on
/// the interpreter and on every JIT tier compiled in (checked, with a
/// budget) and the runs are compared: result or trap, budget left, memory
/// and stack. Returns whether the input verified.
pub fn execution(data: &[u8]) -> bool {
    let split = data.len().min(FUZZ_MEM);
    let mut mem = [0u8; FUZZ_MEM];
    mem[..split].copy_from_slice(&data[..split]);
    let code = &data[split..];
    let Ok(insns) = decode_program(&code[..code.len() / 8 * 8]) else {
        return false;
    };
    let mut backends: Vec<Box<dyn Backend>> = Vec::new();
    for tier in [Tier::Interp, Tier::Cranelift, Tier::Llvm] {
        if let Ok(b) = backend(tier) {
            backends.push(b);
        }
    }
    let refs: Vec<&dyn Backend> = backends.iter().map(|b| b.as_ref()).collect();
    let opts = CompileOptions {
        budget: Some(FUZZ_BUDGET),
        ..CompileOptions::default()
    };
    let mut differ = Differ::new(differential_helpers(), FUZZ_MEM, opts.call_depth);
    let Ok(runs) = differ.run_all(&insns, &mem, &refs, &opts) else {
        return false;
    };
    let (reference_tier, reference) = &runs[0];
    for (tier, observed) in &runs[1..] {
        if let Some(d) = difference(reference, observed) {
            panic!("{tier} differs from {reference_tier}: {d}\n{insns:?}");
        }
    }
    true
}
