//! End-to-end tests of the `bpfvm` binary: results, JSON, the asm/disasm
//! round trip, and for every kind of bad input a one-line error naming the
//! pc with the documented exit code (never a panic or a signal).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_bpfvm");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes a test input under cargo's scratch directory for integration tests.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).expect("write scratch file");
    path
}

fn bpfvm(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run bpfvm")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: the exit code, and one `error: ` line on stderr
/// that contains `needle`.
fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status {:?}, stderr: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

/// Runs `bpfvm run` on assembler text (and optional extra arguments).
fn run_asm(name: &str, src: &str, extra: &[&str]) -> Output {
    let path = scratch(&format!("{name}.asm"), src.as_bytes());
    let mut args = vec!["run", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    bpfvm(&args)
}

fn run_raw(name: &str, bytes: &[u8]) -> Output {
    let path = scratch(&format!("{name}.bin"), bytes);
    bpfvm(&["run", path.to_str().expect("utf-8 path")])
}

// ------------------------------------------------------------------ success

#[test]
fn runs_the_shipped_example() {
    let dir = repo().join("examples");
    let o = bpfvm(&[
        "run",
        dir.join("hello.asm").to_str().unwrap(),
        "--mem",
        dir.join("hello.mem").to_str().unwrap(),
        "--dump-mem",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("r0 = 0xa (10)\n"), "{out}");
    assert!(out.contains("|HELLO, WORLD!.|"), "{out}");

    let o = bpfvm(&["run", dir.join("factorial.asm").to_str().unwrap()]);
    assert_eq!(
        stdout(&o),
        "r0 = 0x21c3677c82b40000 (2432902008176640000)\n"
    );
}

#[test]
fn the_input_memory_may_follow_the_program() {
    // `bpfvm run --tier T prog mem.bin`, as `--mem mem.bin`.
    let dir = repo().join("examples");
    let (prog, mem) = (dir.join("hello.asm"), dir.join("hello.mem"));
    let (prog, mem) = (prog.to_str().unwrap(), mem.to_str().unwrap());
    for tier in ["interp", "cranelift"] {
        let o = bpfvm(&["run", "--tier", tier, prog, mem, "--dump-mem"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("|HELLO, WORLD!.|"), "{}", stdout(&o));
    }
    // Not together with --mem or --mem-hex: a usage error.
    for other in [["--mem", mem], ["--mem-hex", "00"]] {
        let o = bpfvm(&["run", prog, mem, other[0], other[1]]);
        assert_eq!(o.status.code(), Some(2), "{other:?}: {}", stderr(&o));
    }
}

#[test]
fn json_output_parses() {
    let o = run_asm(
        "json",
        "mov %r0, 42\nexit\n",
        &["--json", "--budget", "100"],
    );
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["result"], 42);
    assert_eq!(v["result_hex"], "0x2a");
    assert_eq!(v["tier"], "interp");
    assert_eq!(v["budget_left"], 98);

    let o = run_asm("json-trap", "ldxw %r0, [%r1+0]\nexit\n", &["--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["trap"]["kind"], "out_of_bounds_load");
    assert_eq!(v["trap"]["pc"], 0);
    assert_eq!(v["tier"], "interp");
}

#[test]
fn memory_from_hex_and_from_data_files() {
    let o = run_asm(
        "memhex",
        "ldxh %r0, [%r1+1]\nexit\n",
        &["--mem-hex", "01 02 03"],
    );
    assert_eq!(stdout(&o), "r0 = 0x302 (770)\n");
    let public = repo().join("../shared/bpf_conformance/tests/mem-len.data");
    if public.exists() {
        let o = bpfvm(&["run", public.to_str().unwrap()]);
        assert_eq!(stdout(&o), "r0 = 0x8 (8)\n", "{}", stderr(&o));
    }
}

/// `emit` (and `compile`) honour a .data file's `-- options` as `run` does,
/// so that a `.data` test compiled for the GPU keeps its budget and call
/// depth; the command line wins.
#[cfg(feature = "llvm")]
#[test]
fn emit_takes_options_from_data_files() {
    let asm = "mov %r0, 1\nadd %r0, 1\nexit\n";
    let data = scratch(
        "emit-options.data",
        format!("-- asm\n{asm}-- options\nbudget 2\ncall_depth 3\n-- result\n0x2\n").as_bytes(),
    );
    let plain = scratch("emit-options.asm", asm.as_bytes());
    let emit = |file: &Path, extra: &[&str]| {
        let mut args = vec!["emit", "llvm", "--unoptimized", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = bpfvm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let from_data = emit(&data, &[]);
    assert_ne!(from_data, emit(&plain, &[]), "the budget is lost");
    assert_eq!(
        from_data,
        emit(&plain, &["--budget", "2", "--call-depth", "3"])
    );
    assert_eq!(
        emit(&data, &["--budget", "7"]),
        emit(&plain, &["--budget", "7", "--call-depth", "3"])
    );
}

#[test]
fn asm_disasm_verify_round_trip() {
    let src = scratch(
        "round.asm",
        b"lddw %r0, 0x1122334455667788\nmov %r1, 2\ncall local f\nexit\nf:\nmov %r0, 1\nexit\n",
    );
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("round.bin");
    let o = bpfvm(&["asm", src.to_str().unwrap(), "-o", bin.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&bin).unwrap().len(), 7 * 8);

    let o = bpfvm(&["disasm", bin.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("0x1122334455667788"), "{}", stdout(&o));

    let o = bpfvm(&["verify", bin.to_str().unwrap()]);
    assert_eq!(stdout(&o), "ok: 6 instructions, 2 functions\n");

    // asm to a pipe writes the same bytes.
    let o = bpfvm(&["asm", src.to_str().unwrap()]);
    assert_eq!(o.stdout, std::fs::read(&bin).unwrap());
}

// ------------------------------------------------------------------ usage (2)

#[test]
fn usage_errors_exit_2() {
    let o = run_asm("tier", "exit\n", &["--tier", "jit"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("valid tiers: auto, interp, cranelift, llvm, aot"),
        "{}",
        stderr(&o)
    );

    if !bpfvm::Tier::Llvm.is_available() {
        let o = run_asm("llvm", "exit\n", &["--tier", "llvm"]);
        assert_fails(&o, 2, "llvm support not compiled in");
    }

    let o = bpfvm(&["run", "/nonexistent/prog.asm"]);
    assert_fails(&o, 2, "cannot read /nonexistent/prog.asm");

    let o = run_asm("prog", "exit\n", &["--prog", "xdp"]);
    assert_fails(&o, 2, "--prog selects a program in an ELF object");

    let o = run_asm("memhex-bad", "exit\n", &["--mem-hex", "zz"]);
    assert_fails(&o, 2, "--mem-hex: invalid hex byte `zz`");

    let o = bpfvm(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("3  the program was rejected at load"),
        "{}",
        stdout(&o)
    );
}

// ------------------------------------------------------------------ rejected at load (3)

#[test]
fn truncated_bytecode() {
    let o = run_raw("truncated", &[0x95, 0, 0, 0, 0, 0, 0, 0, 0xb7, 0, 0, 0]);
    assert_fails(&o, 3, "pc 1: bytecode length 12 is not a multiple of 8");
}

#[test]
fn jump_into_lddw() {
    let o = run_asm("into-lddw", "ja +1\nlddw %r0, 1\nexit\n", &[]);
    assert_fails(&o, 3, "pc 0: ");
    assert!(stderr(&o).contains("second slot of a lddw"));
}

#[test]
fn jump_out_of_the_program() {
    let o = run_asm("out", "mov %r0, 0\nja +5\nexit\n", &[]);
    assert_fails(&o, 3, "pc 1: ");
    assert!(stderr(&o).contains("outside the program"));
}

#[test]
fn no_exit() {
    let o = run_asm("noexit", "mov %r0, 0\nmov %r0, 1\n", &[]);
    assert_fails(&o, 3, "pc 1: ");
    assert!(stderr(&o).contains("falls through"));
}

#[test]
fn write_to_r10() {
    let o = run_asm("r10", "mov %r0, 0\nadd %r10, 8\nexit\n", &[]);
    assert_fails(&o, 3, "pc 1: ");
    assert!(stderr(&o).contains("r10 is read-only"));
}

#[test]
fn unknown_opcode() {
    let o = run_raw(
        "unknown",
        &[
            0xb7, 0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    assert_fails(&o, 3, "pc 1: ");
    assert!(stderr(&o).contains("unknown opcode 0xff"));
}

#[test]
fn non_zero_unused_fields() {
    // add r0, 5 with src = 3; exit with imm = 1; mov r0, r1 with imm = 7.
    let cases: [(&str, [u8; 8], &str); 3] = [
        (
            "src",
            [0x07, 0x30, 0, 0, 5, 0, 0, 0],
            "unused field src is 3",
        ),
        ("imm", [0x95, 0, 0, 0, 1, 0, 0, 0], "unused field imm is 1"),
        (
            "movimm",
            [0xbf, 0x10, 0, 0, 7, 0, 0, 0],
            "unused field imm is 7",
        ),
    ];
    for (name, slot, needle) in cases {
        let mut prog = vec![0xb7, 0, 0, 0, 0, 0, 0, 0];
        prog.extend_from_slice(&slot);
        prog.extend_from_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]);
        let o = run_raw(&format!("field-{name}"), &prog);
        assert_fails(&o, 3, "pc 1: ");
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
    }
}

#[test]
fn unregistered_helper() {
    let o = run_asm("helper99", "mov %r0, 0\ncall 99\nexit\n", &[]);
    assert_fails(&o, 3, "pc 1: ");
    assert!(stderr(&o).contains("helper 99 is not registered"));
}

#[test]
fn assembler_errors_name_the_line() {
    let o = run_asm("badasm", "mov %r0, 0\nfrobnicate %r1\nexit\n", &[]);
    assert_fails(&o, 3, "line 2: unknown mnemonic");
}

#[test]
fn invalid_elf() {
    let o = run_raw(
        "garbage.o",
        b"\x7fELF\x02\x01\x01garbage that is not an ELF object at all",
    );
    assert_fails(&o, 3, "not a valid ELF object: ");
    let o = run_raw("short.o", b"\x7fELF");
    assert_fails(&o, 3, "not a valid ELF object: ");
}

// ------------------------------------------------------------------ traps (1)

#[test]
fn out_of_bounds_load_and_store() {
    let o = run_asm(
        "oob-load",
        "mov %r0, 0\nldxw %r0, [%r1+1]\nexit\n",
        &["--mem-hex", "01 02 03 04"],
    );
    assert_fails(&o, 1, "pc 1: out-of-bounds load of 4 bytes at 0x");
    let o = run_asm("oob-store", "stdw [%r10+0], 1\nexit\n", &[]);
    assert_fails(&o, 1, "pc 0: out-of-bounds store of 8 bytes at 0x");
}

#[test]
fn endless_loop_under_budget() {
    let o = run_asm(
        "loop",
        "mov %r0, 0\nloop:\nadd %r0, 1\njne %r0, 0, loop\nexit\n",
        &["--budget", "10000"],
    );
    assert_fails(&o, 1, "pc 1: instruction budget exhausted");
}

#[test]
fn recursion_past_the_depth_limit() {
    let src = "mov %r1, 100\ncall local f\nexit\nf:\njeq %r1, 0, done\nsub %r1, 1\ncall local f\ndone:\nexit\n";
    let o = run_asm("recurse", src, &[]);
    assert_fails(&o, 1, "pc 5: call depth limit of 8 frames exceeded");
    let o = run_asm("recurse-limit", src, &["--call-depth", "2"]);
    assert_fails(&o, 1, "pc 5: call depth limit of 2 frames exceeded");
    let o = run_asm("recurse-bad", src, &["--call-depth", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn callx_to_unregistered_helper_traps() {
    let o = run_asm("callx", "mov %r2, 42\ncall %r2\nexit\n", &[]);
    assert_fails(&o, 1, "pc 1: call to unregistered helper 42");
}

#[test]
fn emit_prints_each_form() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/factorial.asm");
    let o = bpfvm(&["emit", "clif", example]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    // At tier 0's level unless --opt says otherwise.
    assert!(
        text.contains(";; Cranelift IR at level 1, before optimisation")
            && text.contains(";; after optimisation"),
        "{text}"
    );
    assert!(text.contains("function u0:0("), "{text}");
    let o = bpfvm(&["emit", "clif", example, "--opt", "3"]);
    assert!(
        stdout(&o).contains(";; Cranelift IR at level 3, before"),
        "{}",
        stderr(&o)
    );
    if !bpfvm::Tier::Llvm.is_available() {
        let o = bpfvm(&["emit", "llvm", example]);
        assert_fails(&o, 2, "llvm support not compiled in");
        return;
    }
    let o = bpfvm(&["emit", "llvm", example, "--unoptimized"]);
    assert!(stdout(&o).contains("target triple"), "{}", stderr(&o));
    let o = bpfvm(&["emit", "asm", example]);
    assert!(stdout(&o).contains("ret"), "{}", stderr(&o));
    let o = bpfvm(&["emit", "ptx", example, "--sm", "sm_90"]);
    let ptx = stdout(&o);
    assert!(
        ptx.contains(".target sm_90") && ptx.contains(".entry bpf_kernel"),
        "{ptx}"
    );
}

#[test]
fn compile_writes_an_object_that_runs_back() {
    if !bpfvm::Tier::Llvm.is_available() {
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let obj = scratch("hello-aot.o", b"");
    let o = bpfvm(&[
        "compile",
        &format!("{dir}/hello.asm"),
        "-o",
        obj.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let bytes = std::fs::read(&obj).expect("object written");
    assert!(bytes.starts_with(b"\x7fELF"));
    let o = bpfvm(&[
        "run",
        obj.to_str().expect("utf-8 path"),
        "--mem",
        &format!("{dir}/hello.mem"),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["result"], 10);
    assert_eq!(v["tier"], "aot");
    // A corrupted object is refused with a clear error, not a crash.
    let mut bad = bytes.clone();
    bad.truncate(bad.len() / 2);
    let bad_path = scratch("hello-aot-bad.o", &bad);
    let o = bpfvm(&["run", bad_path.to_str().expect("utf-8 path")]);
    assert!(o.status.code().is_some_and(|c| c != 0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn auto_tier_promotes_and_reports_stats() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/factorial.asm");
    let o = bpfvm(&[
        "run", example, "--tier", "auto", "--repeat", "3000", "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["result"], 2432902008176640000u64);
    let calls = &v["stats"]["calls"];
    let total = calls["interp"].as_u64().unwrap_or(0)
        + calls["cranelift"].as_u64().unwrap_or(0)
        + calls["llvm"].as_u64().unwrap_or(0);
    assert_eq!(total, 3000);
    if bpfvm::Tier::Llvm.is_available() {
        assert_eq!(v["tier"], "llvm");
        assert_eq!(calls["llvm"], 2000);
        assert!(v["stats"]["cross_checks"].as_u64().unwrap_or(0) >= 100);
        assert_eq!(v["stats"]["mismatches"], 0);
    }
}
