//! Replays the corpora of the verifier, assembler and execution fuzz
//! targets (`fuzz/corpus/<target>/`) through the functions the targets call
//! (`bpfvm_conformance::fuzz_targets`), so that `cargo test` checks every
//! committed input, crashes found by fuzzing included, without cargo-fuzz.

use std::path::PathBuf;

use bpfvm_conformance::fuzz_targets;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 100,
        "{}: {} inputs",
        dir.display(),
        files.len()
    );
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// Runs `f` on every input of `target`'s corpus and returns how many it
/// accepted (verified or assembled); a panic names the input.
fn replay(target: &str, f: fn(&[u8]) -> bool) -> usize {
    let mut accepted = 0;
    for (path, bytes) in corpus(target) {
        let r = std::panic::catch_unwind(|| f(&bytes));
        match r {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panic!("{target}: {} fails", path.display()),
        }
    }
    accepted
}

#[test]
fn verifier_corpus() {
    // Most seeds are valid programs; the hostile ones include rejected ones.
    assert!(replay("verifier", fuzz_targets::verifier) >= 100);
}

#[test]
fn assembler_corpus() {
    assert!(replay("assembler", fuzz_targets::assembler) >= 100);
}

#[test]
fn execution_corpus() {
    assert!(replay("execution", fuzz_targets::execution) >= 100);
}

/// Bad input is an error value (not accepted, no panic); a valid program
/// is accepted by each target.
#[test]
fn targets_reject_bad_input_without_panicking() {
    assert!(!fuzz_targets::verifier(&[0xff; 16]));
    assert!(!fuzz_targets::verifier(&[1, 2, 3]));
    assert!(!fuzz_targets::assembler(b"mov %r0, \xff\nexit"));
    assert!(!fuzz_targets::execution(&[0u8; 70]));
    // A valid program: verified and compared.
    let mut input = vec![0u8; 64];
    input.extend_from_slice(&[0xb7, 0, 0, 0, 7, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
    assert!(fuzz_targets::execution(&input));
    assert!(fuzz_targets::verifier(&input[64..]));
    assert!(fuzz_targets::assembler(b"mov %r0, 7\nexit"));
}
