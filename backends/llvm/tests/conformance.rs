//! The public bpf_conformance suite and the project's corpus on the `llvm`
//! tier at O0 and O3, checked and unchecked, and on the `aot` tier.
//!
//! The suite is read from `$BPF_CONFORMANCE_TESTS`, else from
//! `shared/bpf_conformance/tests` beside the repository.

mod common;

use std::path::{Path, PathBuf};

use bpfvm_conformance::{data_files, parse, run_case, RunOptions};
use bpfvm_engine::backend::Backend;
use bpfvm_llvm::{AotBackend, LlvmBackend};
use common::AtOpt;

const PUBLIC_COUNT: usize = 313;

fn public_dir() -> PathBuf {
    match std::env::var_os("BPF_CONFORMANCE_TESTS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bpf_conformance/tests"),
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/corpus")
}

/// Runs every case of `dir`; returns (cases run, failures).
fn suite(dir: &Path, backend: &dyn Backend, checked: bool) -> (usize, Vec<String>) {
    let files = data_files(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let case = match parse(&name, &text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{name}: parse error {e}"));
                continue;
            }
        };
        if !checked && case.needs_checked_memory() {
            continue;
        }
        ran += 1;
        if let Err(e) = run_case(
            &case,
            backend,
            &RunOptions {
                checked,
                ..RunOptions::default()
            },
        ) {
            failures.push(e);
        }
    }
    (ran, failures)
}

fn check_all(backend: &dyn Backend, checked: bool) {
    let public = public_dir();
    let files = data_files(&public).map(|f| f.len()).unwrap_or(0);
    assert_eq!(files, PUBLIC_COUNT, "public suite at {}", public.display());
    let (ran_public, mut failures) = suite(&public, backend, checked);
    let (ran_corpus, f2) = suite(&corpus_dir(), backend, checked);
    failures.extend(f2);
    eprintln!(
        "{} checked={checked}: {ran_public} public + {ran_corpus} corpus cases, {} failures",
        backend.name(),
        failures.len()
    );
    assert!(ran_public > 300 && ran_corpus > 50);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn llvm_o0_checked() {
    check_all(&AtOpt(LlvmBackend, 0), true);
}

#[test]
fn llvm_o0_unchecked() {
    check_all(&AtOpt(LlvmBackend, 0), false);
}

#[test]
fn llvm_o3_checked() {
    check_all(&AtOpt(LlvmBackend, 3), true);
}

#[test]
fn llvm_o3_unchecked() {
    check_all(&AtOpt(LlvmBackend, 3), false);
}

#[test]
fn aot_o3_checked() {
    check_all(&AtOpt(AotBackend, 3), true);
}

#[test]
fn aot_o1_unchecked() {
    check_all(&AtOpt(AotBackend, 1), false);
}
