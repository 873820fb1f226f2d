//! AOT objects linked into a C program with the system C compiler: helpers,
//! callx, lddw hooks, traps, budget and the header.

mod common;

use std::path::PathBuf;
use std::process::Command;

use bpfvm_engine::backend::CompileOptions;
use bpfvm_engine::instr::LddwPseudo;
use bpfvm_engine::isa::{Insn, OP_EXIT, OP_LDDW, PSEUDO_MAP_VALUE};
use bpfvm_engine::verifier::{verify, LddwResolver, VerifyOptions};
use bpfvm_llvm::{aot_header, compile_object, AotOptions};

fn work_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("aot-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn object(program: &bpfvm_engine::Program, opts: &CompileOptions, entry: &str) -> Vec<u8> {
    let aot = AotOptions {
        entry_name: entry.to_string(),
        ..AotOptions::default()
    };
    compile_object(program, opts, &aot).expect("compiles to an object")
}

struct Fd7;
impl LddwResolver for Fd7 {
    fn resolve(&self, p: &LddwPseudo) -> Result<u64, String> {
        Ok(p.imm as u64)
    }
}

const MAIN_C: &str = r#"
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "prog_calls.h"
#include "prog_trap.h"
#include "prog_map.h"
#include "prog_budget.h"

uint64_t _bpf_helper_ext_0005(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) {
    return a * 100 + b + c + d + e;
}
uint64_t __bpfvm_callx(uint64_t id, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) {
    return id * 1000 + a;
}
static uint64_t map_array[4] = { 1, 2, 42, 4 };
uint64_t __lddw_helper_map_val(uint64_t map) {
    return map == 7 ? (uint64_t)(uintptr_t)map_array : 0;
}

int main(void) {
    uint8_t mem[8] = { 3, 4, 0, 0, 0, 0, 0, 0 };
    printf("calls=%llu\n", (unsigned long long)prog_calls(mem, sizeof mem));
    struct bpfvm_aot_trap t;
    memset(&t, 0xff, sizeof t);
    uint64_t r = prog_trap_ex(mem, sizeof mem, &t);
    printf("trap=%llx code=%u size=%u pc=%llu off=%lld\n", (unsigned long long)r, t.code, t.size,
           (unsigned long long)t.pc, (long long)(t.addr - (uint64_t)(uintptr_t)mem));
    printf("plain_trap=%llx\n", (unsigned long long)prog_trap(mem, sizeof mem));
    printf("map=%llu\n", (unsigned long long)prog_map(mem, sizeof mem));
    r = prog_budget_ex(mem, sizeof mem, &t);
    printf("budget=%llx code=%u pc=%llu left=%llu\n", (unsigned long long)r, t.code,
           (unsigned long long)t.pc, (unsigned long long)t.budget_left);
    printf("info=%llx,%llu,%llu\n", (unsigned long long)prog_budget_info[1],
           (unsigned long long)prog_budget_info[2], (unsigned long long)prog_budget_info[3]);
    return 0;
}
"#;

#[test]
fn aot_objects_link_and_run_from_c() {
    let dir = work_dir("link");
    let checked = CompileOptions::default();
    // Helper 5 with (mem[0], mem[1]) and a local call, then callx 6.
    let calls = common::program(
        "ldxb %r2, [%r1]\nldxb %r3, [%r1+1]\nmov %r1, %r2\nmov %r2, %r3\nmov %r3, 0\n\
         mov %r4, 0\nmov %r5, 0\ncall 5\nmov %r6, %r0\ncall local f\nadd %r6, %r0\n\
         mov %r1, 3\nmov %r4, 6\ncall %r4\nadd %r0, %r6\nexit\nf:\nmov %r0, 10000\nexit",
    );
    let trap = common::program("mov %r0, 1\nldxw %r0, [%r1+100]\nexit");
    // A (nearly) endless loop with a budget of 50.
    let budget = common::program("mov %r0, 0\nl:\nadd %r0, 1\njne %r0, 0, l\nexit");
    let budget_opts = CompileOptions {
        budget: Some(50),
        ..CompileOptions::default()
    };
    // lddw map value (fd 7, offset 16), then load the u64 there (unchecked:
    // the map lives in the C program's data).
    let map_insns = vec![
        Insn::new(OP_LDDW, 1, PSEUDO_MAP_VALUE, 0, 7),
        Insn::new(0, 0, 0, 0, 16),
        Insn::new(0x79, 0, 1, 0, 0), // ldxdw r0, [r1]
        Insn::new(OP_EXIT, 0, 0, 0, 0),
    ];
    let map = verify(
        map_insns,
        &VerifyOptions {
            lddw: Some(&Fd7),
            ..VerifyOptions::default()
        },
    )
    .expect("verifies");
    let unchecked = CompileOptions {
        checked: false,
        ..CompileOptions::default()
    };
    let mut objects = Vec::new();
    for (name, prog, opts) in [
        ("prog_calls", &*calls, &checked),
        ("prog_trap", &*trap, &checked),
        ("prog_map", &map, &unchecked),
        ("prog_budget", &*budget, &budget_opts),
    ] {
        let obj = dir.join(format!("{name}.o"));
        std::fs::write(&obj, object(prog, opts, name)).unwrap();
        std::fs::write(dir.join(format!("{name}.h")), aot_header(name)).unwrap();
        objects.push(obj);
    }
    std::fs::write(dir.join("main.c"), MAIN_C).unwrap();
    let exe = dir.join("main");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&cc)
        .current_dir(&dir)
        .args(["-std=c11", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg("main.c")
        .args(&objects)
        .output()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("runs the program");
    assert!(run.status.success());
    let stdout = String::from_utf8_lossy(&run.stdout);
    let expected = [
        // 3 * 100 + 4 = 304 from the helper, + 10000 from f, + 6003 from callx.
        "calls=16307".to_string(),
        "trap=ffffffffffffffff code=1 size=4 pc=1 off=100".to_string(),
        "plain_trap=ffffffffffffffff".to_string(),
        "map=42".to_string(),
        // 1 + 2 * 24 = 49 instructions run; the loop block (2) no longer fits.
        "budget=ffffffffffffffff code=3 pc=1 left=1".to_string(),
        "info=3,50,8".to_string(),
    ];
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{stdout}");
}

#[test]
fn cross_compiled_objects_are_for_the_target() {
    use object::Object;
    let p = common::program("mov %r0, 1\nexit");
    for (triple, arch) in [
        ("aarch64-unknown-linux-gnu", object::Architecture::Aarch64),
        ("x86_64-unknown-linux-gnu", object::Architecture::X86_64),
    ] {
        let aot = AotOptions {
            target_triple: Some(triple.to_string()),
            ..AotOptions::default()
        };
        let bytes = compile_object(&p, &CompileOptions::default(), &aot).expect("compiles");
        let file = object::File::parse(&*bytes).expect("an object");
        assert_eq!(file.architecture(), arch);
        let names: Vec<String> = file
            .symbols()
            .filter_map(|s| object::ObjectSymbol::name(&s).ok().map(str::to_string))
            .collect();
        for want in ["bpf_main", "bpf_main_ex", "bpf_main_vmctx", "bpf_main_info"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
    }
    let bad = AotOptions {
        target_triple: Some("nonsense-unknown-nowhere".into()),
        ..AotOptions::default()
    };
    let e = compile_object(&p, &CompileOptions::default(), &bad).unwrap_err();
    assert!(e.to_string().contains("aot:"), "{e}");
    let bad_name = AotOptions {
        entry_name: "1bad name".into(),
        ..AotOptions::default()
    };
    assert!(compile_object(&p, &CompileOptions::default(), &bad_name).is_err());
}
