//! Checks `include/bpfvm.h` against this crate: every enum constant has
//! the library's value, and every struct the library's size and field
//! offsets (as the system C compiler lays them out). The functions the
//! header declares are checked against the library's exports by
//! `tests/c_examples.rs`.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::*;
use crate::error::Code;
use crate::run::*;
use crate::stats::bpfvm_stats;

fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// The header without its comments.
fn header_code() -> String {
    let text = std::fs::read_to_string(include_dir().join("bpfvm.h")).expect("read bpfvm.h");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("unterminated comment") + start + 2;
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `NAME = value` pairs of the header's enums, sorted.
fn header_constants() -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = header_code()
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_end_matches(',');
            let (name, value) = l.split_once(" = ")?;
            name.starts_with("BPFVM_").then(|| {
                let value = value.trim().parse().expect("an integer constant");
                (name.trim().to_string(), value)
            })
        })
        .collect();
    v.sort();
    v
}

#[test]
fn constants_match() {
    let mut expected: Vec<(String, i64)> = Code::ALL
        .iter()
        .map(|c| (c.name().to_str().unwrap().to_string(), *c as i64))
        .collect();
    let more: &[(&str, i32)] = &[
        (
            "BPFVM_HELPER_ID_LIMIT",
            crate::engine::HELPER_ID_LIMIT as i32,
        ),
        ("BPFVM_TIER_AUTO", TIER_AUTO),
        ("BPFVM_TIER_INTERP", TIER_INTERP),
        ("BPFVM_TIER_CRANELIFT", TIER_CRANELIFT),
        ("BPFVM_TIER_LLVM", TIER_LLVM),
        ("BPFVM_TIER_AOT", TIER_AOT),
        ("BPFVM_POLICY_FIXED", POLICY_FIXED),
        ("BPFVM_POLICY_TIERED", POLICY_TIERED),
        ("BPFVM_POLICY_EAGER", POLICY_EAGER),
        ("BPFVM_TRAP_KIND_NONE", TRAP_NONE),
        (
            "BPFVM_TRAP_KIND_OUT_OF_BOUNDS_LOAD",
            TRAP_OUT_OF_BOUNDS_LOAD,
        ),
        (
            "BPFVM_TRAP_KIND_OUT_OF_BOUNDS_STORE",
            TRAP_OUT_OF_BOUNDS_STORE,
        ),
        ("BPFVM_TRAP_KIND_BUDGET_EXHAUSTED", TRAP_BUDGET_EXHAUSTED),
        (
            "BPFVM_TRAP_KIND_CALL_DEPTH_EXCEEDED",
            TRAP_CALL_DEPTH_EXCEEDED,
        ),
        ("BPFVM_TRAP_KIND_UNKNOWN_HELPER", TRAP_UNKNOWN_HELPER),
        ("BPFVM_TRAP_KIND_HELPER_FAILED", TRAP_HELPER_FAILED),
        ("BPFVM_TRAP_KIND_MISALIGNED_ATOMIC", TRAP_MISALIGNED_ATOMIC),
        ("BPFVM_TRAP_KIND_UNKNOWN", TRAP_UNKNOWN),
    ];
    expected.extend(more.iter().map(|(n, v)| (n.to_string(), *v as i64)));
    expected.sort();
    assert_eq!(header_constants(), expected);
}

/// `(C expression, Rust value)` for every struct size and field offset.
fn layout() -> Vec<(String, usize)> {
    let mut v = Vec::new();
    macro_rules! fields {
        ($ty:ident: $($f:ident),*) => {
            v.push((format!("sizeof(struct {})", stringify!($ty)), size_of::<$ty>()));
            $(v.push((
                format!("offsetof(struct {}, {})", stringify!($ty), stringify!($f)),
                offset_of!($ty, $f),
            ));)*
        };
    }
    fields!(bpfvm_config: struct_size, tier_policy, fixed_tier, call_threshold,
        instruction_threshold, memory_checks, instruction_budget, call_depth, compile_threads,
        llvm_opt_level, cranelift_opt_level, synchronous_tier_up, cross_check,
        cross_check_reference, cross_check_first, cross_check_one_in, max_compile_failures);
    fields!(bpfvm_trap: kind, pc, addr, message);
    fields!(bpfvm_stats: tier, calls, calls_interp, calls_cranelift, calls_llvm,
        compile_ns_interp, compile_ns_cranelift, compile_ns_llvm, tier0_instructions,
        cross_checks, mismatches, compile_failures, last_error);
    v
}

/// Compiles and runs a C program printing every size and offset with the
/// system C compiler (`cc`), and compares.
#[test]
fn struct_layouts_match() {
    let dir = std::env::temp_dir().join(format!("bpfvm-capi-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let layout = layout();
    let mut c = String::from(
        "#include <bpfvm.h>\n#include <stddef.h>\n#include <stdio.h>\nint main(void) {\n",
    );
    for (expr, _) in &layout {
        c.push_str(&format!("    printf(\"%zu\\n\", (size_t){expr});\n"));
    }
    c.push_str("    return 0;\n}\n");
    let src = dir.join("layout.c");
    std::fs::write(&src, c).expect("write layout.c");
    let exe = dir.join("layout");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(include_dir())
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run cc (is a C compiler installed?)");
    assert!(status.success(), "cc failed on {}", src.display());
    let out = Command::new(&exe).output().expect("run the layout program");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let got: Vec<usize> = text.lines().map(|l| l.parse().expect("a number")).collect();
    assert_eq!(got.len(), layout.len());
    for ((expr, want), got) in layout.iter().zip(&got) {
        assert_eq!(got, want, "{expr}: C says {got}, Rust {want}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
