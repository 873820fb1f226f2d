//! The `bpfvm-plugin` binary spoken to exactly as the official
//! bpf_conformance runner does: input memory as argv[1] (hex bytes, each
//! followed by two spaces, possibly empty), the plugin options as one more
//! argument, the program as hex bytes on stdin, r0 read from stdout as hex.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bpfvm::engine::isa::encode_program;
use bpfvm::tier::Tier;
use bpfvm_conformance::{parse, Expect};

const PLUGIN: &str = env!("CARGO_BIN_EXE_bpfvm-plugin");

/// The runner's `_base_16_encode`: `"%02x  "` per byte.
fn base16(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}  ")).collect()
}

fn plugin(memory: &[u8], options: &str, program: &[u8]) -> Output {
    let mut child = Command::new(PLUGIN)
        .arg(base16(memory))
        .arg(options)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bpfvm-plugin");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{}", base16(program)).expect("write program");
    drop(stdin);
    child.wait_with_output().expect("wait for bpfvm-plugin")
}

fn public_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bpf_conformance/tests")
}

/// Runs public files through the plugin; returns how many ran.
fn run_public(names: &[&str], options: &str) -> usize {
    let mut ran = 0;
    for name in names {
        let path = public_dir().join(format!("{name}.data"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let case = parse(name, &text).expect("public file parses");
        let program = encode_program(case.program.as_ref().expect("assembles"));
        let Expect::Result(want) = case.expect else {
            panic!("{name}: public files expect results");
        };
        let o = plugin(&case.mem, options, &program);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name} {options:?}: stderr {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = u64::from_str_radix(out.trim(), 16)
            .unwrap_or_else(|e| panic!("{name}: stdout {out:?} is not hex: {e}"));
        assert_eq!(got, want, "{name} {options:?}");
        assert!(!out.trim().starts_with("0x") && out.trim() == out.trim().to_lowercase());
        ran += 1;
    }
    ran
}

const SAMPLE: [&str; 8] = [
    "add",
    "lddw",
    "mem-len",
    "ldxb",
    "callx",
    "call_unwind_fail",
    "subnet",
    "lock_cmpxchg",
];

#[test]
fn public_files_through_the_plugin() {
    assert_eq!(run_public(&SAMPLE, ""), SAMPLE.len());
    assert_eq!(run_public(&SAMPLE, "--tier interp"), SAMPLE.len());
}

#[test]
fn every_available_tier_through_the_plugin() {
    for tier in Tier::available() {
        run_public(&SAMPLE, &format!("--tier {tier}"));
        if tier.has_unchecked_mode() {
            run_public(&SAMPLE, &format!("--tier {tier} --unchecked"));
        }
    }
}

#[test]
fn prints_plain_lowercase_hex() {
    // lddw %r0, 0x1122334455667788; exit
    let prog = [
        0x18, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11, 0x95, 0, 0, 0,
        0, 0, 0, 0,
    ];
    let o = plugin(&[], "", &prog);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1122334455667788\n");
    // mov %r0, 2; exit
    let o = plugin(
        &[],
        "",
        &[0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "2\n");
}

#[test]
fn failures_exit_non_zero_with_empty_stdout() {
    let check = |o: Output, code: i32, needle: &str| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(code), "{err}");
        assert!(o.stdout.is_empty());
        assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    // No exit: rejected at load.
    check(plugin(&[], "", &[0xb7, 0, 0, 0, 2, 0, 0, 0]), 3, "pc 0: ");
    // Empty program.
    check(plugin(&[], "", &[]), 3, "program is empty");
    // Out-of-bounds load: trapped.
    check(
        plugin(
            &[1, 2],
            "",
            &[0x61, 0x10, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0],
        ),
        1,
        "pc 0: out-of-bounds load of 4 bytes",
    );
    // Unknown option.
    check(
        plugin(&[], "--elf", &[0x95, 0, 0, 0, 0, 0, 0, 0]),
        2,
        "unknown option `--elf`",
    );
    // Program that is not hex.
    let mut child = Command::new(PLUGIN)
        .arg("")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"exit\n")
        .expect("write");
    check(
        child.wait_with_output().expect("wait"),
        3,
        "invalid hex byte `exit`",
    );
}
