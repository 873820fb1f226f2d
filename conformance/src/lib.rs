//! Conformance testing for bpfvm.
//!
//! * [`data`]: the `.data` test-vector format of the public bpf_conformance
//!   suite, plus bpfvm's `-- options` extension.
//! * [`runner`]: runs one test case on one tier and compares the outcome.
//!
//! The test harness (`tests/conformance.rs`) runs the public suite and the
//! project's own corpus (`corpus/*.data`) on every tier compiled in.

pub mod data;
pub mod differential;
pub mod fuzz;
pub mod fuzz_targets;
pub mod generate;
pub mod host_regions;
pub mod minimize;
pub mod runner;

pub use data::{
    is_data_file, parse, parse_file, CaseOptions, DataFile, Expect, ParseError, TestCase,
};
pub use runner::{execute_case, run_case, Outcome, RunOptions, Stage};

use std::path::{Path, PathBuf};

/// The public suite's directory: `$BPF_CONFORMANCE_TESTS`, else
/// `shared/bpf_conformance/tests` beside the repository.
pub fn public_dir() -> PathBuf {
    match std::env::var_os("BPF_CONFORMANCE_TESTS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bpf_conformance/tests"),
    }
}

/// The project's own corpus (`conformance/corpus`).
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// How many Cranelift functions the output of `emit clif` shows: each is
/// printed before and after optimisation (and then as machine code,
/// whose header has no `{`).
pub fn clif_functions(clif: &str) -> usize {
    let headers = clif
        .lines()
        .filter(|l| l.starts_with("function ") && l.ends_with('{'));
    headers.count() / 2
}

/// The `.data` files directly inside `dir`, sorted by name.
pub fn data_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "data") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
