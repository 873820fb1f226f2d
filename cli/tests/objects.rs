//! `bpfvm inspect` and `bpfvm run` on the clang-compiled fixtures in
//! `conformance/fixtures/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bpfvm");

const FIXTURES: [(&str, &str); 8] = [
    ("legacy_maps", "legacy"),
    ("xdp_counter", "xdp_count"),
    ("hash_count", "word_count"),
    ("ringbuf", "produce"),
    ("calls", "squares"),
    ("tailcall", "entry"),
    ("printk", "printk"),
    ("loop", "loop_sum"),
];

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conformance/fixtures")
        .join(format!("{name}.o"))
        .to_string_lossy()
        .into_owned()
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).expect("write scratch file");
    path
}

fn bpfvm(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run bpfvm")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).expect("JSON output")
}

#[test]
fn inspect_every_fixture() {
    for (name, prog) in FIXTURES {
        let text = ok(&bpfvm(&["inspect", &fixture(name)]));
        assert!(text.starts_with("programs ("), "{name}: {text}");
        assert!(text.contains(prog), "{name}: {text}");
        assert!(
            text.contains("maps (") && text.contains("relocations ("),
            "{text}"
        );
        let v = json(&bpfvm(&["inspect", &fixture(name), "--json"]));
        let programs = v["programs"].as_array().unwrap();
        assert!(programs.iter().any(|p| p["name"] == prog), "{name}: {v}");
        for p in programs {
            assert!(p["insns"].as_u64().unwrap() * 8 >= p["size"].as_u64().unwrap());
        }
        assert!(!v["maps"].as_array().unwrap().is_empty(), "{name}");
        assert!(!v["relocations"].as_array().unwrap().is_empty(), "{name}");
    }
}

#[test]
fn inspect_shows_types_and_relocations() {
    let v = json(&bpfvm(&["inspect", &fixture("tailcall"), "--json"]));
    let maps = v["maps"].as_array().unwrap();
    assert_eq!(maps[0]["name"], "jmp_table");
    assert_eq!(maps[0]["type"], "prog_array");
    assert_eq!(maps[0]["max_entries"], 4);
    assert_eq!(maps[1]["type"], "array");
    assert_eq!(maps[1]["value_size"], 8);
    let relocs = v["relocations"].as_array().unwrap();
    assert!(relocs
        .iter()
        .any(|r| r["type_name"] == "R_BPF_64_32" && r["target"] == "call visit"));
    let text = ok(&bpfvm(&["inspect", &fixture("printk")]));
    assert!(text.contains(".rodata.str1.1"), "{text}");
    assert!(text.contains("map #1 value + 12"), "{text}");
}

#[test]
fn run_dump_maps_json_on_every_fixture() {
    for (name, prog) in FIXTURES {
        let v = json(&bpfvm(&[
            "run",
            &fixture(name),
            "--prog",
            prog,
            "--mem-hex",
            "01 02 03 04 05 06 07 08 09 0a 0b 0c 08 00 20 20",
            "--dump-maps",
            "--json",
        ]));
        assert!(v["result"].is_u64(), "{name}: {v}");
        let maps = v["maps"].as_object().unwrap();
        assert!(!maps.is_empty(), "{name}");
        for (map, entries) in maps {
            for e in entries.as_array().unwrap() {
                let pair = e.as_array().unwrap();
                assert_eq!(pair.len(), 2, "{name}/{map}");
                assert!(pair.iter().all(|h| h.as_str().unwrap().len() % 2 == 0));
            }
        }
    }
}

#[test]
fn packet_counter_counts_calls_after_repeat() {
    let mut packet = vec![0u8; 64];
    packet[12..14].copy_from_slice(&[0x08, 0x00]);
    let mem = scratch("ipv4.bin", &packet);
    let tiers: Vec<String> = bpfvm::tier::Tier::available()
        .into_iter()
        .filter(|t| *t != bpfvm::tier::Tier::Aot)
        .map(|t| t.name().to_string())
        .collect();
    for tier in &tiers {
        let v = json(&bpfvm(&[
            "run",
            &fixture("xdp_counter"),
            "--mem",
            mem.to_str().unwrap(),
            "--repeat",
            "10",
            "--dump-maps",
            "--json",
            "--tier",
            tier,
        ]));
        assert_eq!(v["result"], 2, "{tier}: XDP_PASS");
        let maps = &v["maps"];
        assert_eq!(maps[".bss"][0][1], "0a00000000000000", "{tier}: 10 calls");
        assert_eq!(maps["pkt_count"][0][1], "0a00000000000000", "{tier}");
        assert_eq!(
            maps["byte_count"][0][1], "8002000000000000",
            "{tier}: 640 bytes"
        );
    }
    // The text form.
    let text = ok(&bpfvm(&[
        "run",
        &fixture("xdp_counter"),
        "--mem",
        mem.to_str().unwrap(),
        "--repeat",
        "3",
        "--dump-maps",
    ]));
    assert!(text.starts_with("r0 = 0x2 (2)\n"), "{text}");
    assert!(
        text.contains("map .bss (array, 1 entry):\n  00000000: 0300000000000000"),
        "{text}"
    );
}

/// `bpfvm compile FILE.o --prog NAME` writes an AOT object that `bpfvm run
/// OUT.o --object FILE.o` runs with the object's maps: the same r0 and the
/// same maps as the interpreter on every fixture, the packet counter
/// counting 10 calls; another object's maps are refused.
#[test]
fn aot_objects_of_fixtures_run_with_the_object_maps() {
    if !bpfvm::tier::Tier::Aot.is_available() {
        return;
    }
    let mut packet = vec![0u8; 64];
    packet[12..14].copy_from_slice(&[0x08, 0x00]);
    packet[14..30].copy_from_slice(b"the cat and dog ");
    let mem = scratch("aot-ipv4.bin", &packet);
    let mem = mem.to_str().unwrap();
    for (name, prog) in FIXTURES {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-aot.o"));
        let out = out.to_str().unwrap();
        let elf = fixture(name);
        ok(&bpfvm(&["compile", &elf, "--prog", prog, "-o", out]));
        let common = ["--mem", mem, "--repeat", "10", "--dump-maps", "--json"];
        let mut aot = vec!["run", out, "--object", &elf, "--prog", prog];
        aot.extend(common);
        let got = json(&bpfvm(&aot));
        let mut interp = vec!["run", &elf, "--prog", prog, "--tier", "interp"];
        interp.extend(common);
        let want = json(&bpfvm(&interp));
        assert_eq!(got["tier"], "aot", "{name}");
        assert_eq!(got["program"], prog, "{name}");
        for key in ["result", "maps", "trace"] {
            assert_eq!(got[key], want[key], "{name}: {key}");
        }
        if name == "xdp_counter" {
            assert_eq!(got["maps"]["pkt_count"][0][1], "0a00000000000000");
        }
    }
    // Another object's maps: refused at load (exit 3), with the reason.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdp_counter-aot.o");
    let o = bpfvm(&[
        "run",
        out.to_str().unwrap(),
        "--object",
        &fixture("hash_count"),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("compiled against other maps"));
    // Without the object, or with options it was not compiled with: usage
    // errors (exit 2) that say why.
    let out = out.to_str().unwrap();
    let counter = fixture("xdp_counter");
    for (args, why) in [
        (vec!["run", out, "--dump-maps"], "need --object"),
        (vec!["run", out], "give that object with --object"),
        (
            vec!["run", out, "--object", &counter, "--unchecked"],
            "--unchecked does not apply",
        ),
        (
            vec!["run", out, "--object", &counter, "--tier", "llvm"],
            "--tier does not apply",
        ),
        (
            vec!["run", out, "--object", &counter, "--prog", "nope"],
            "no program `nope`",
        ),
    ] {
        let o = bpfvm(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

/// A C host in the style of llvmbpf's standalone AOT example: it links the
/// object `bpfvm compile` writes for the XDP counter, defines
/// `bpf_map_lookup_elem` (helper 1), the `lddw` hooks for the maps and
/// global data, and the checked-mode slow path for its own map memory.
const XDP_HOST_C: &str = r#"
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

uint64_t bpf_main(void *mem, uint64_t len);

/* Map indices as `bpfvm inspect` lists them. */
static uint64_t pkt_count[4], byte_count[1], calls;
static uint16_t blocked_proto = 0x86dd;

uint64_t __lddw_helper_map_by_fd(uint32_t fd) { return 1000 + fd; }
uint64_t __lddw_helper_map_val(uint64_t map) {
    if (map == 1002) return (uint64_t)(uintptr_t)&calls;
    if (map == 1003) return (uint64_t)(uintptr_t)&blocked_proto;
    return 0;
}
uint64_t _bpf_helper_ext_0001(uint64_t map, uint64_t key_ptr, uint64_t a,
                              uint64_t b, uint64_t c) {
    uint32_t key;
    memcpy(&key, (void *)(uintptr_t)key_ptr, 4);
    if (map == 1000 && key < 4) return (uint64_t)(uintptr_t)&pkt_count[key];
    if (map == 1001 && key < 1) return (uint64_t)(uintptr_t)&byte_count[key];
    return 0;
}
static int inside(uint64_t addr, uint64_t size, const void *p, uint64_t n) {
    uint64_t lo = (uint64_t)(uintptr_t)p;
    return addr >= lo && addr - lo <= n && size <= n - (addr - lo);
}
uint64_t bpfvm_check_access(void *ctx, uint64_t addr, uint64_t size,
                            uint64_t write, uint64_t frame_lo) {
    return inside(addr, size, pkt_count, sizeof pkt_count) ||
           inside(addr, size, byte_count, sizeof byte_count) ||
           inside(addr, size, &calls, sizeof calls) ||
           (!write && inside(addr, size, &blocked_proto, sizeof blocked_proto));
}

int main(void) {
    uint8_t ipv4[64] = {0}, ipv6[64] = {0};
    ipv4[12] = 0x08; ipv4[13] = 0x00;
    ipv6[12] = 0x86; ipv6[13] = 0xdd;
    uint64_t r = 0;
    for (int i = 0; i < 3; i++) r = r * 10 + bpf_main(ipv4, sizeof ipv4);
    r = r * 10 + bpf_main(ipv6, sizeof ipv6);
    r = r * 10 + bpf_main(ipv4, 10); /* a runt */
    printf("r=%" PRIu64 " ipv4=%" PRIu64 " ipv6=%" PRIu64 " runt=%" PRIu64
           " bytes=%" PRIu64 " calls=%" PRIu64 "\n",
           r, pkt_count[0], pkt_count[1], pkt_count[3], byte_count[0], calls);
    return 0;
}
"#;

#[test]
fn aot_object_of_a_fixture_links_with_a_c_host() {
    if !bpfvm::tier::Tier::Aot.is_available() {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdp-c-host");
    std::fs::create_dir_all(&dir).unwrap();
    let obj = dir.join("xdp.o");
    ok(&bpfvm(&[
        "compile",
        &fixture("xdp_counter"),
        "-o",
        obj.to_str().unwrap(),
    ]));
    std::fs::write(dir.join("main.c"), XDP_HOST_C).unwrap();
    let exe = dir.join("main");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&cc)
        .args([
            "-std=c11",
            "-Wall",
            "-Werror",
            "-Wno-unused-parameter",
            "-o",
        ])
        .arg(&exe)
        .arg(dir.join("main.c"))
        .arg(&obj)
        .output()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("runs");
    assert!(run.status.success());
    // XDP_PASS (2) three times, XDP_DROP (1) for the blocked IPv6, PASS for
    // the runt; 4 * 64 bytes counted (the runt returns before), 5 calls.
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "r=22212 ipv4=3 ipv6=1 runt=1 bytes=256 calls=5\n"
    );
}

/// `--tier auto` on an object: the tiered engine with the object's maps,
/// promoted to LLVM at the threshold, every call counted in the maps.
#[test]
fn tier_auto_runs_objects_and_promotes() {
    let mut packet = vec![0u8; 64];
    packet[12..14].copy_from_slice(&[0x08, 0x00]);
    let mem = scratch("ipv4-auto.bin", &packet);
    let v = json(&bpfvm(&[
        "run",
        &fixture("xdp_counter"),
        "--mem",
        mem.to_str().unwrap(),
        "--tier",
        "auto",
        "--threshold",
        "40",
        "--repeat",
        "100",
        "--dump-maps",
        "--json",
    ]));
    assert_eq!(v["result"], 2, "XDP_PASS: {v}");
    // 100 calls: 0x64, 6400 bytes: 0x1900.
    assert_eq!(v["maps"]["pkt_count"][0][1], "6400000000000000", "{v}");
    assert_eq!(v["maps"]["byte_count"][0][1], "0019000000000000", "{v}");
    assert_eq!(v["maps"][".bss"][0][1], "6400000000000000", "{v}");
    let calls = &v["stats"]["calls"];
    let tier1 = bpfvm::tier::Tier::Llvm.is_available();
    if tier1 {
        assert_eq!(v["tier"], "llvm", "{v}");
        assert_eq!(calls["cranelift"], 40, "{v}");
        assert_eq!(calls["llvm"], 60, "{v}");
    } else {
        assert_eq!(v["tier"], "cranelift", "{v}");
        assert_eq!(calls["cranelift"], 100, "{v}");
    }
    // Map values are writable: no cross-check, and the output says why.
    assert_eq!(v["stats"]["cross_checks"], 0, "{v}");
    assert!(
        v["cross_check"].as_str().unwrap_or("").contains("writable"),
        "{v}"
    );

    // A program without maps is cross-checked after promotion.
    let plain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/programs/fnv1a.bpf.o");
    let v = json(&bpfvm(&[
        "run",
        plain.to_str().unwrap(),
        "--mem",
        mem.to_str().unwrap(),
        "--tier",
        "auto",
        "--threshold",
        "10",
        "--repeat",
        "30",
        "--json",
    ]));
    if tier1 {
        assert_eq!(v["tier"], "llvm", "{v}");
        assert_eq!(v["stats"]["cross_checks"], 20, "{v}");
        assert_eq!(v["stats"]["mismatches"], 0, "{v}");
    }
    assert!(v.get("cross_check").is_none(), "{v}");
    let fixed = json(&bpfvm(&[
        "run",
        plain.to_str().unwrap(),
        "--mem",
        mem.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["result"], fixed["result"], "{v}");
}

#[test]
fn map_init_preloads_maps() {
    let init = scratch(
        "visits.txt",
        b"# key value\n01000000 0x6400000000000000\n\n03000000 0700000000000000\n",
    );
    let slots = scratch("slots.txt", b"00000000 @stage2\n");
    let v = json(&bpfvm(&[
        "run",
        &fixture("tailcall"),
        "--prog",
        "stage1",
        "--map-init",
        &format!("visits={}", init.display()),
        "--map-init",
        &format!("jmp_table={}", slots.display()),
        "--dump-maps",
        "--json",
    ]));
    assert_eq!(v["result"], 42);
    let visits = &v["maps"]["visits"];
    assert_eq!(visits[1][1], "6500000000000000", "100 + stage1's visit");
    assert_eq!(visits[3][1], "0700000000000000");
    assert_eq!(
        v["maps"]["jmp_table"][0],
        serde_json::json!(["00000000", "01000000"])
    );

    let bad = scratch("bad.txt", b"01000000\n");
    let o = bpfvm(&[
        "run",
        &fixture("tailcall"),
        "--prog",
        "entry",
        "--map-init",
        &format!("visits={}", bad.display()),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected `KEY VALUE`"));
    let o = bpfvm(&[
        "run",
        &fixture("tailcall"),
        "--prog",
        "entry",
        "--map-init",
        "nope=x",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn trace_printk_goes_to_stderr_or_json() {
    let o = bpfvm(&["run", &fixture("printk"), "--mem-hex", "00 00"]);
    let out = ok(&o);
    assert_eq!(out, "r0 = 0x6 (6)\n");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "bpf_trace_printk: hello from bpfvm: len=2 scale=3\nbpf_trace_printk: tail beef str\n"
    );
    let v = json(&bpfvm(&["run", &fixture("printk"), "--json"]));
    assert_eq!(v["trace"][0], "hello from bpfvm: len=0 scale=3");
}

#[test]
fn verify_and_selection() {
    let text = ok(&bpfvm(&["verify", &fixture("loop")]));
    assert!(text.starts_with("ok: "), "{text}");
    let o = bpfvm(&["run", &fixture("calls")]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("several programs, choose one with --prog"));
    let o = bpfvm(&["run", &fixture("calls"), "--prog", "nope"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no program or function named `nope`"));
    // A .text function runs as an entry point.
    let v = json(&bpfvm(&[
        "run",
        &fixture("calls"),
        "--prog",
        "fib",
        "--json",
    ]));
    assert_eq!(v["result"], 0);
}

#[test]
fn malformed_objects_are_rejected_cleanly() {
    let good = std::fs::read(fixture("tailcall")).unwrap();
    for (name, bytes) in [
        ("trunc.o", good[..good.len() / 2].to_vec()),
        ("short.o", good[..100].to_vec()),
    ] {
        let path = scratch(name, &bytes);
        for cmd in ["inspect", "run", "verify"] {
            let o = bpfvm(&[cmd, path.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(3), "{cmd} {name}: {err}");
            assert!(
                err.starts_with("error: ") && !err.contains("panicked"),
                "{err}"
            );
        }
    }
}

/// `emit` takes an ELF object as `run` does: its maps and global data
/// resolved, each program selectable; the Cranelift IR of a program with
/// an array map inlines the lookup (no call through the helper table on
/// the key-in-frame path), and an unknown program is a clear error.
#[test]
fn emit_works_on_objects_with_maps() {
    for (name, prog) in FIXTURES {
        let path = fixture(name);
        let clif = ok(&bpfvm(&["emit", "clif", &path, "--prog", prog]));
        assert!(
            clif.contains(";; machine code after register allocation"),
            "{name}"
        );
        let llvm = ok(&bpfvm(&["emit", "llvm", &path, "--prog", prog]));
        assert!(llvm.contains("define"), "{name}");
    }
    // xdp_count looks up its array map pkt_count twice (key at r10-4) and
    // map 1 once: only the last calls a helper, before optimisation: at O3
    // through the helper table's signature (`call_indirect.i64`), at O0
    // and O1 (on x86-64 Linux) through the helper trampoline, whose
    // signature has eight parameters.
    let counter = fixture("xdp_counter");
    for opt in ["0", "1", "3"] {
        let clif = ok(&bpfvm(&["emit", "clif", &counter, "--opt", opt]));
        let before = clif
            .split(";; after optimisation")
            .next()
            .unwrap_or_default();
        let through_table = before.matches("call_indirect.i64").count();
        let through_trampoline = before
            .lines()
            .find(|l| l.contains("= (i64, i64, i64, i64, i64, i64, i64, i64) -> i64 system_v"))
            .and_then(|l| l.split('=').next())
            .map(str::trim)
            .map_or(0, |sig| {
                before.matches(&format!("call_indirect {sig},")).count()
            });
        let trampoline = opt != "3" && cfg!(all(target_arch = "x86_64", target_os = "linux"));
        assert_eq!(
            (through_table, through_trampoline),
            if trampoline { (0, 1) } else { (1, 0) },
            "O{opt}\n{before}"
        );
        // Memory checks that can reach the out-of-line check (a call with
        // the `preserve_all` signature): one, for the two accesses through
        // the per-CPU array's value (its lookup is the helper's), a group
        // (`RegisterFacts::access_group`: a load, then a store). The packet
        // read (2 bytes at 12, behind `if len s> 13`), the .bss atomic and
        // the .data read (constant addresses in global data) and the
        // accesses through pkt_count's lookup results (after `jeq r, 0`)
        // are not checked.
        let sig = before
            .lines()
            .find(|l| l.contains("preserve_all"))
            .and_then(|l| l.split('=').next())
            .map(str::trim)
            .unwrap_or_else(|| panic!("O{opt}: no check signature\n{before}"));
        let checks = before.matches(&format!("call_indirect {sig},")).count();
        assert_eq!(checks, 1, "O{opt}\n{before}");
    }
    // As `run`: exit 3, the object's programs named.
    let o = bpfvm(&["emit", "clif", &counter, "--prog", "nope"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nope") && err.contains("xdp_count"), "{err}");
    let o = bpfvm(&["emit", "ptx", &counter]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("host address"),
        "{o:?}"
    );
}
