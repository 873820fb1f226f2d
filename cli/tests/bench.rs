//! `bpfvm bench`: tables, JSON and the SVG plot, on benchmark programs
//! (with their native baseline and expected results) and on other inputs.
//! Run times are tiny here: these tests check the output, not the numbers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_bpfvm");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn program(name: &str) -> String {
    repo()
        .join("bench/programs")
        .join(format!("{name}.bpf.o"))
        .display()
        .to_string()
}

fn bpfvm(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run bpfvm")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn json_has_every_requested_tier() {
    let nop = program("nop");
    let o = bpfvm(&[
        "bench",
        &nop,
        "--tiers",
        "interp,cranelift",
        "--time",
        "0.01",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert_eq!(v["program"], "nop");
    assert_eq!(v["result"], 65);
    for tier in ["interp", "cranelift"] {
        let t = &v["tiers"][tier];
        assert!(t["compile_ns"].is_u64(), "{tier}: {t}");
        assert!(
            t["run_ns_median"].as_f64().is_some_and(|x| x > 0.0),
            "{tier}: {t}"
        );
        assert!(
            t["ratio_fastest"].as_f64().is_some_and(|x| x >= 1.0),
            "{tier}: {t}"
        );
    }
    assert!(v["tiers"]["llvm"].is_null());
    assert!(v["tiers"]["cranelift"]["break_even_against"] == "interp");
    if !v["native"].is_null() {
        assert!(v["tiers"]["interp"]["ratio_native"].as_f64().is_some());
    }
}

#[test]
fn table_and_plot_for_several_programs() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let svg = dir.join("bench-plot.svg");
    let _ = std::fs::remove_file(&svg);
    let (a, b) = (program("fnv1a"), program("calls"));
    let o = bpfvm(&[
        "bench",
        &a,
        &b,
        "--tiers",
        "interp,cranelift",
        "--time",
        "0.01",
        "--plot",
        svg.to_str().expect("utf-8 path"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    for needle in [
        "fnv1a",
        "calls",
        "run (median)",
        "break-even",
        "geometric means",
        "ns per executed instruction",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    let plot = std::fs::read_to_string(&svg).expect("plot written");
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    assert_eq!(plot.matches("average time per call").count(), 2);
    assert!(plot.contains("<polyline"));
}

#[test]
fn assembler_input_and_unknown_tier() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let asm = dir.join("bench-answer.asm");
    std::fs::write(&asm, "mov %r0, 42\nexit\n").expect("write");
    let asm = asm.to_str().expect("utf-8 path");
    let o = bpfvm(&[
        "bench", asm, "--tiers", "interp", "--time", "0.01", "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["result"], 42);
    assert!(v["native"].is_null());
    let o = bpfvm(&["bench", asm, "--tiers", "jit"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown tier `jit`"));
}

#[test]
fn wrong_memory_is_caught_not_measured() {
    // With another input than its own, a benchmark program is still run on
    // every tier and each must agree with the interpreter.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let mem = dir.join("bench-mem.bin");
    std::fs::write(&mem, [1u8; 64]).expect("write");
    let o = bpfvm(&[
        "bench",
        &program("fnv1a"),
        "--mem",
        mem.to_str().expect("utf-8 path"),
        "--tiers",
        "interp,cranelift",
        "--time",
        "0.01",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["input_bytes"], 64);
}
