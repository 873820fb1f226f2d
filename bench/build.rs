//! Builds the native baseline: every `programs/<name>.c` compiled with
//! `-O3 -ffreestanding -Dbpf_main=native_<name>` into a static library
//! linked into this crate, so that the benchmarks measure native code in
//! the same process as the VM.
//!
//! The compiler is `$CC` when set, else `clang-19` when it is on the PATH,
//! else the system's `cc`. Without any working C compiler the crate still
//! builds, without the baseline (`native` is `None` for every program).

use std::path::Path;
use std::process::Command;

fn main() {
    let dir = Path::new("programs");
    println!("cargo::rustc-check-cfg=cfg(bpfvm_native)");
    println!("cargo::rerun-if-changed=programs");
    println!("cargo::rerun-if-env-changed=CC");
    println!("cargo::rerun-if-env-changed=BPFVM_BENCH_NATIVE_CFLAGS");
    let mut sources: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "c"))
            .collect(),
        Err(e) => {
            println!("cargo::warning=cannot read bench/programs: {e}; no native baseline");
            return;
        }
    };
    sources.sort();
    let compiler = match std::env::var("CC") {
        Ok(cc) if !cc.is_empty() => Some(cc),
        _ if Command::new("clang-19").arg("--version").output().is_ok() => {
            Some("clang-19".to_string())
        }
        _ => None,
    };
    let extra: Vec<String> = std::env::var("BPFVM_BENCH_NATIVE_CFLAGS")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let mut built = 0;
    let mut used = String::new();
    for src in &sources {
        println!("cargo::rerun-if-changed={}", src.display());
        let Some(stem) = src.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let mut b = cc::Build::new();
        if let Some(c) = &compiler {
            b.compiler(c);
        }
        b.file(src)
            .include(dir)
            .opt_level(3)
            .debug(false)
            .warnings(false)
            .flag("-ffreestanding")
            .define("bpf_main", Some(format!("native_{stem}").as_str()));
        for f in &extra {
            b.flag(f);
        }
        if used.is_empty() {
            used = describe(&b);
        }
        match b.try_compile(&format!("bpfvm_bench_native_{stem}")) {
            Ok(()) => built += 1,
            Err(e) => {
                println!("cargo::warning=native baseline of {stem} not built: {e}");
                return;
            }
        }
    }
    if built > 0 {
        println!("cargo::rustc-cfg=bpfvm_native");
        let flags = if extra.is_empty() {
            String::new()
        } else {
            format!(" {}", extra.join(" "))
        };
        println!("cargo::rustc-env=BPFVM_BENCH_NATIVE_CC={used}, -O3 -ffreestanding{flags}");
    } else {
        println!("cargo::rustc-env=BPFVM_BENCH_NATIVE_CC=");
    }
}

/// The compiler's first `--version` line.
fn describe(b: &cc::Build) -> String {
    let Ok(tool) = b.try_get_compiler() else {
        return "unknown compiler".into();
    };
    let out = Command::new(tool.path()).arg("--version").output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        Err(_) => tool.path().display().to_string(),
    }
}
