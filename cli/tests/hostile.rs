//! The hostile-program corpus (`conformance/hostile/*.data`): address and
//! length wrapping, negative offsets, stack under- and overflow, writes to
//! r10, jumps out of range and into lddw, bad callx ids, recursion past the
//! depth limit, endless loops, bad encodings, huge programs. Each program
//! runs on every tier in its own `bpfvm` process: no run may end by a
//! signal, every tier must give the same typed outcome (trap kind and pc,
//! or result), and it must be the one the file expects.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bpfvm::Tier;
use bpfvm_conformance::{parse, Expect};

const BIN: &str = env!("CARGO_BIN_EXE_bpfvm");

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/hostile");
    let files = bpfvm_conformance::data_files(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    assert!(
        files.len() >= 60,
        "the hostile corpus has {} files, fewer than 60",
        files.len()
    );
    files
}

fn run(file: &Path, tier: Tier) -> Output {
    Command::new(BIN)
        .args([
            "run",
            &file.to_string_lossy(),
            "--tier",
            tier.name(),
            "--json",
        ])
        .output()
        .expect("run bpfvm")
}

/// (exit code, outcome) where the outcome is `result:N`, `trap:KIND@PC` or
/// `rejected` with the error text.
fn outcome(o: &Output, what: &str) -> (i32, String, String) {
    let Some(code) = o.status.code() else {
        panic!("{what}: ended by a signal: {:?}", o.status);
    };
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let summary = match serde_json::from_str::<serde_json::Value>(&stdout) {
        Ok(v) if v.get("trap").is_some() => {
            format!("trap:{}@{}", v["trap"]["kind"], v["trap"]["pc"])
        }
        Ok(v) => format!("result:{}", v["result"]),
        Err(_) => "rejected".to_string(),
    };
    (code, summary, stderr)
}

#[test]
fn every_tier_gives_the_expected_typed_outcome_without_a_signal() {
    let tiers: Vec<Tier> = Tier::available()
        .into_iter()
        .filter(|t| *t != Tier::Aot)
        .collect();
    let mut checked = 0;
    for file in corpus() {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&file).expect("readable");
        let case = parse(&name, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut first: Option<(Tier, String)> = None;
        for &tier in &tiers {
            let what = format!("{name} on {tier}");
            let (code, summary, stderr) = outcome(&run(&file, tier), &what);
            match &case.expect {
                Expect::Result(v) => {
                    assert_eq!(code, 0, "{what}: {stderr}");
                    assert_eq!(summary, format!("result:{v}"), "{what}");
                }
                Expect::Error(text) => {
                    assert!(code == 1 || code == 3, "{what}: exit {code}: {stderr}");
                    assert!(
                        stderr.contains(text.as_str()),
                        "{what}: expected `{text}` in: {stderr}"
                    );
                    assert_eq!(
                        stderr.lines().count(),
                        1,
                        "{what}: one error line: {stderr}"
                    );
                }
            }
            match &first {
                None => first = Some((tier, summary)),
                Some((t0, s0)) => assert_eq!(&summary, s0, "{what} differs from {t0}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 60 * tiers.len());
}

/// A program over the size limit is rejected at load with a clear error.
#[test]
fn a_program_over_the_size_limit_is_rejected() {
    let mut bytes = Vec::with_capacity(8 * 1_000_001);
    for _ in 0..1_000_000 {
        bytes.extend_from_slice(&[0xb7, 0, 0, 0, 1, 0, 0, 0]); // r0 = 1
    }
    bytes.extend_from_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]);
    let path = std::env::temp_dir().join(format!("bpfvm-huge-{}.bin", std::process::id()));
    std::fs::write(&path, &bytes).expect("write");
    let o = Command::new(BIN)
        .args(["run", &path.to_string_lossy(), "--format", "raw"])
        .output()
        .expect("run bpfvm");
    let _ = std::fs::remove_file(&path);
    let (code, _, stderr) = outcome(&o, "huge program");
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("more than the limit of 1000000"),
        "{stderr}"
    );
}

/// A large valid program (100,000 instructions) runs the same on every tier.
#[test]
fn a_large_program_runs_on_every_tier() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&[0xb7, 0, 0, 0, 0, 0, 0, 0]); // r0 = 0
    for k in 0..99_998u32 {
        // r0 += k & 7, then r0 ^= 1 on odd k: straight-line ALU work.
        if k % 2 == 0 {
            bytes.extend_from_slice(&[0x07, 0, 0, 0, (k & 7) as u8, 0, 0, 0]);
        } else {
            bytes.extend_from_slice(&[0xa7, 0, 0, 0, 1, 0, 0, 0]);
        }
    }
    bytes.extend_from_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]);
    // Expected: sum over even k of (k & 7), with r0 ^= 1 after each even step.
    let mut r0: u64 = 0;
    for k in 0..99_998u32 {
        if k % 2 == 0 {
            r0 = r0.wrapping_add((k & 7) as u64);
        } else {
            r0 ^= 1;
        }
    }
    let path = std::env::temp_dir().join(format!("bpfvm-large-{}.bin", std::process::id()));
    std::fs::write(&path, &bytes).expect("write");
    for tier in [Tier::Interp, Tier::Cranelift] {
        if !tier.is_available() {
            continue;
        }
        let o = Command::new(BIN)
            .args([
                "run",
                &path.to_string_lossy(),
                "--format",
                "raw",
                "--tier",
                tier.name(),
                "--json",
            ])
            .output()
            .expect("run bpfvm");
        let (code, summary, stderr) = outcome(&o, &format!("large program on {tier}"));
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(summary, format!("result:{r0}"));
    }
    let _ = std::fs::remove_file(&path);
}
