//! The conformance harness: every `.data` file of the public suite and of
//! the project's corpus, on every tier this build has (checked, and
//! unchecked where the tier has such a mode).
//!
//! Trials are named `<tier>[::unchecked]::<suite>::<file>`, e.g.
//! `interp::public::add` or `interp::corpus::div64-by-zero-imm`; filter them
//! as usual (`cargo test -p bpfvm-conformance -- corpus`).
//!
//! The public suite is read from `$BPF_CONFORMANCE_TESTS`, else from
//! `shared/bpf_conformance/tests` beside the repository. A missing or empty
//! directory is a failing trial, never a silent pass.

use std::path::{Path, PathBuf};

use bpfvm::tier::{self, Tier};
use bpfvm_conformance::{
    corpus_dir, data_files, parse, public_dir, run_case, RunOptions, TestCase,
};
use libtest_mimic::{Arguments, Failed, Trial};

/// Number of files in the pinned public suite.
const PUBLIC_COUNT: usize = 313;

/// A suite's files, each parsed or with the reason it does not parse.
type Cases = Vec<(PathBuf, Result<TestCase, String>)>;

/// A suite's parsed cases, or a failing trial explaining why there are none.
fn load_suite(suite: &str, dir: &Path) -> Result<Cases, Trial> {
    let missing = |why: String| {
        let name = format!("{suite}::files-found");
        Trial::test(name, move || Err(Failed::from(why)))
    };
    let files =
        data_files(dir).map_err(|e| missing(format!("cannot read {}: {e}", dir.display())))?;
    if files.is_empty() {
        return Err(missing(format!("no .data files in {}", dir.display())));
    }
    Ok(files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let case = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| parse(&name, &text).map_err(|e| e.to_string()))
                .map_err(|e| format!("{}: {e}", path.display()));
            (path, case)
        })
        .collect())
}

/// One trial per case for one executor.
fn case_trials(
    prefix: &str,
    suite: &str,
    tier: Tier,
    opts: RunOptions,
    cases: &Cases,
) -> Vec<Trial> {
    cases
        .iter()
        .map(|(path, case)| {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = format!("{prefix}::{suite}::{stem}");
            let case = case.clone();
            // Memory traps must not run without checks: the access would hit the host.
            let skip = !opts.checked && case.as_ref().is_ok_and(|c| c.needs_checked_memory());
            Trial::test(name, move || {
                let case = case.map_err(Failed::from)?;
                let backend = tier::backend(tier).map_err(|e| Failed::from(e.to_string()))?;
                run_case(&case, backend.as_ref(), &opts).map_err(Failed::from)
            })
            .with_ignored_flag(skip)
        })
        .collect()
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();

    let public = load_suite("public", &public_dir());
    let corpus = load_suite("corpus", &corpus_dir());

    if let Ok(cases) = &public {
        let (count, dir) = (cases.len(), public_dir());
        trials.push(Trial::test("public::count", move || {
            if count == PUBLIC_COUNT {
                Ok(())
            } else {
                Err(format!(
                    "found {count} .data files in {}, expected all {PUBLIC_COUNT}",
                    dir.display()
                )
                .into())
            }
        }));
    }

    let suites: Vec<(&str, Cases)> = [("public", public), ("corpus", corpus)]
        .into_iter()
        .filter_map(|(name, loaded)| match loaded {
            Ok(cases) => Some((name, cases)),
            Err(trial) => {
                trials.push(trial);
                None
            }
        })
        .collect();

    for tier in Tier::available() {
        let checked = RunOptions::default();
        let mut modes = vec![(tier.name().to_string(), checked)];
        if tier.has_unchecked_mode() {
            let unchecked = RunOptions {
                checked: false,
                ..checked
            };
            modes.push((format!("{tier}::unchecked"), unchecked));
        }
        if tier == Tier::Cranelift {
            // Its other levels: the cheapest checks at 0, tier 0's level
            // in the runtime at 1 (the default, 3, is Cranelift's `speed`).
            for opt_level in [0, 1] {
                modes.push((
                    format!("{tier}::o{opt_level}"),
                    RunOptions {
                        opt_level,
                        ..checked
                    },
                ));
            }
        }
        for (prefix, opts) in &modes {
            for (suite, cases) in &suites {
                trials.extend(case_trials(prefix, suite, tier, *opts, cases));
            }
        }
    }

    libtest_mimic::run(&args, trials).exit();
}
