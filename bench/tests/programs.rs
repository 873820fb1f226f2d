//! Every benchmark program returns its expected result on its input, on
//! the native build and on every executor (checked and unchecked), and
//! leaves the same memory behind, so that the benchmarks cannot silently
//! measure wrong code. rbpf runs the programs it supports, with the same
//! results.

#[path = "../peers/rbpf.rs"]
mod rbpf_peer;

use bpfvm_bench::{Executor, Subject, PROGRAMS};
use rbpf_peer::{Rbpf, RbpfMode};

#[test]
fn there_are_enough_programs() {
    assert!(PROGRAMS.len() >= 12);
    let names: std::collections::HashSet<_> = PROGRAMS.iter().map(|p| p.name).collect();
    assert_eq!(names.len(), PROGRAMS.len(), "names are unique");
}

#[test]
fn native_baseline_returns_expected() {
    if bpfvm_bench::native_compiler().is_none() {
        eprintln!("no native baseline in this build (no C compiler)");
        return;
    }
    for p in PROGRAMS {
        let mut mem = (p.input)();
        let r = p.run_native(&mut mem).expect("native baseline");
        assert_eq!(r, p.expected, "{}: native returned {r:#x}", p.name);
    }
}

#[test]
fn every_executor_returns_expected() {
    for p in PROGRAMS {
        let subject = Subject::from_elf(p.bpf_object, None)
            .unwrap_or_else(|e| panic!("{}: cannot load: {e}", p.name));
        let mut native_mem = (p.input)();
        let native = p.run_native(&mut native_mem);
        for exec in Executor::ALL {
            if !exec.is_available() {
                continue;
            }
            let modes: &[bool] = if exec.has_unchecked_mode() {
                &[true, false]
            } else {
                &[true]
            };
            for &checked in modes {
                let what = format!(
                    "{} on {} ({})",
                    p.name,
                    exec.name(),
                    if checked { "checked" } else { "unchecked" }
                );
                let (mut runner, _) = subject
                    .compile(exec, checked)
                    .unwrap_or_else(|e| panic!("{what}: cannot compile: {e}"));
                let mut mem = (p.input)();
                // Twice: the second run sees the memory the first left.
                for run in 0..2 {
                    let r = runner
                        .run(&mut mem)
                        .unwrap_or_else(|t| panic!("{what}: trapped: {t}"));
                    assert_eq!(r, p.expected, "{what}: run {run} returned {r:#x}");
                }
                if native.is_some() {
                    assert!(
                        mem == native_mem,
                        "{what}: memory differs from the native run's"
                    );
                }
            }
        }
    }
}

#[test]
fn interpreter_counts_instructions() {
    for p in PROGRAMS {
        let subject = Subject::from_elf(p.bpf_object, None).expect("loads");
        let mut mem = (p.input)();
        let (n, r) = subject.count_instructions(&mut mem).expect("runs");
        assert_eq!(r, p.expected, "{}", p.name);
        assert!(n >= 2, "{}: {n} instructions", p.name);
    }
}

#[test]
fn large_programs_are_large() {
    for name in ["straight_line", "branchy"] {
        let p = bpfvm_bench::program(name).expect("exists");
        let s = Subject::from_elf(p.bpf_object, None).expect("loads");
        assert!(s.len() >= 2000, "{name}: {} slots", s.len());
    }
}

/// `bench/asm/straight_alu_300.asm`, the floor of tier 0's compile time
/// in BENCHMARKS.md (session 19), is what it says: 300 slots, no branch,
/// memory access or call, and every executor returns its result.
#[test]
fn straight_alu_input_is_straight_and_runs() {
    let insns = bpfvm_bench::straight_alu_300();
    assert_eq!(insns.len(), 300);
    let (last, body) = insns.split_last().expect("not empty");
    assert_eq!(last.code, 0x95, "ends with exit");
    for i in body {
        assert_eq!(
            i.code & 0x07,
            0x07,
            "only 64-bit ALU before the exit: {i:?}"
        );
    }
    let subject = Subject::from_insns("straight_alu_300", insns).expect("verifies");
    for exec in Executor::ALL.into_iter().filter(|e| e.is_available()) {
        let (mut runner, _) = subject.compile(exec, true).expect("compiles");
        assert_eq!(runner.run(&mut []), Ok(2), "{}", exec.name());
    }
}

/// Whether rbpf 0.4.1 can run `p` in `mode`: it has no maps or helpers of
/// ours, and its JIT writes into a fixed-size buffer that the two large
/// programs overflow (it panics; the harness catches it).
pub fn rbpf_supports(p: &bpfvm_bench::BenchProgram, mode: RbpfMode) -> bool {
    let too_large = matches!(p.name, "straight_line" | "branchy");
    !p.uses_maps && (mode == RbpfMode::Interp || !too_large)
}

#[test]
fn rbpf_returns_expected_where_supported() {
    for p in PROGRAMS {
        let subject = Subject::from_elf(p.bpf_object, None).expect("loads");
        let input = (p.input)();
        for mode in [RbpfMode::Interp, RbpfMode::Jit] {
            let run = Rbpf::new(&subject.insns, input.len(), mode).and_then(|vm| {
                let mut mem = input.clone();
                vm.run(&mut mem)
            });
            if rbpf_supports(p, mode) {
                let r = run.unwrap_or_else(|e| panic!("{} on {}: {e}", p.name, mode.name()));
                assert_eq!(r, p.expected, "{} on {}: {r:#x}", p.name, mode.name());
            } else {
                assert!(
                    run.is_err(),
                    "{} on {} now works: update rbpf_supports",
                    p.name,
                    mode.name()
                );
            }
        }
    }
}

/// Results computed in Rust, independently of both compilers.
#[test]
fn expected_results_match_rust_references() {
    let get = |name| bpfvm_bench::program(name).expect("exists");
    let p = get("fnv1a");
    let h = (p.input)().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    assert_eq!(h, p.expected);
    let p = get("crc32");
    let mut crc = 0xffff_ffffu32;
    for &b in &(p.input)() {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    assert_eq!(!crc as u64, p.expected);
    let p = get("memcmp");
    let m = (p.input)();
    let half = m.len() / 2;
    let i = (0..half).find(|&i| m[i] != m[half + i]).expect("differs");
    assert_eq!(((i as u64) << 8) | (m[i] ^ m[half + i]) as u64, p.expected);
    let p = get("sort");
    let m = (p.input)();
    let n = m.len() / 8;
    let mut v: Vec<u32> = m[..n * 4]
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    v.sort_unstable();
    let sum = v
        .iter()
        .enumerate()
        .fold(0u64, |s, (i, &x)| s.wrapping_add(x as u64 * (i as u64 + 1)));
    assert_eq!(sum, p.expected);
    let p = get("map_lookup");
    let sum: u64 = (p.input)()
        .iter()
        .map(|&b| {
            let k = (b & 63) as u64;
            k * k + 1
        })
        .sum();
    assert_eq!(sum, p.expected);
}
