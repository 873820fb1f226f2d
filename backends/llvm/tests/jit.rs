//! The llvm and aot tiers against the interpreter on hand-written cases,
//! threads, helpers, and the loader's error paths.

mod common;

use std::sync::Arc;

use bpfvm_engine::backend::{Backend, CompileOptions, CompiledCode};
use bpfvm_engine::helpers::{HelperError, Helpers};
use bpfvm_engine::interp::Interpreter;
use bpfvm_engine::trap::Trap;
use bpfvm_llvm::{
    compile_object, load_object, AotBackend, AotOptions, LlvmBackend, LlvmCode, LoadError,
    LoadOptions,
};
use common::{program, run, same_as_interp, AtOpt};

fn backends() -> Vec<Box<dyn Backend>> {
    vec![
        Box::new(AtOpt(LlvmBackend, 0)),
        Box::new(AtOpt(LlvmBackend, 2)),
        Box::new(AtOpt(LlvmBackend, 3)),
        Box::new(AtOpt(AotBackend, 3)),
    ]
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn compiled_code_is_send_and_sync() {
    assert_send_sync::<LlvmCode>();
    assert_send_sync::<bpfvm_llvm::AotCode>();
    assert_send_sync::<LlvmBackend>();
}

const CASES: &[&str] = &[
    // Loops, stack, 32-bit wrap-around, signed compares.
    "mov %r0, 0\nmov %r2, 100\nl:\nadd32 %r0, 0x7fffffff\nstxw [%r10-4], %r0\nsub %r2, 1\n\
     jsgt %r2, 0, l\nldxw %r0, [%r10-4]\nexit",
    // Byte swaps and sign extension.
    "lddw %r0, 0x8877665544332211\nbe16 %r0\nmov %r1, %r0\nlddw %r2, 0x1122334455667788\n\
     be64 %r2\nadd %r0, %r2\nmovsx864 %r1, %r1\nadd %r0, %r1\nexit",
    // Atomics on the stack.
    "mov %r1, 5\nstxdw [%r10-8], %r1\nmov %r2, 7\nlock add [%r10-8], %r2\nmov %r0, 12\n\
     mov %r3, 99\nlock cmpxchg [%r10-8], %r3\nldxdw %r0, [%r10-8]\nexit",
];

#[test]
fn hand_written_cases_match_the_interpreter() {
    for text in CASES {
        for b in backends() {
            for checked in [true, false] {
                for budget in [None, Some(10_000), Some(37)] {
                    let opts = CompileOptions {
                        checked,
                        budget,
                        ..CompileOptions::default()
                    };
                    same_as_interp(b.as_ref(), text, &opts, &[1, 2, 3, 4, 5, 6, 7, 8]);
                }
            }
        }
    }
}

#[test]
fn helper_traps_and_results_match_the_interpreter() {
    let mut helpers = Helpers::new();
    helpers.register(1, "add", |_, a| Ok(a[0] + a[1] * 10));
    helpers.register(2, "fail", |_, a| {
        if a[0] == 3 {
            Err(HelperError::Failed(77))
        } else {
            Ok(0)
        }
    });
    let p = program(
        "mov %r1, 1\nmov %r2, 2\ncall 1\nmov %r6, %r0\nmov %r1, %r6\nmov %r2, 1\ncall 2\n\
         mov %r1, 3\ncall 2\nmov %r0, 5\nexit",
    );
    let opts = CompileOptions::default();
    let mut mem = [];
    let want = run(&Interpreter, &p, &opts, &helpers, &mut mem);
    assert_eq!(
        want.result,
        Err(Trap::HelperFailed {
            pc: 8,
            id: 2,
            code: 77
        })
    );
    for b in backends() {
        assert_eq!(
            run(b.as_ref(), &p, &opts, &helpers, &mut mem),
            want,
            "{}",
            b.name()
        );
    }
}

#[test]
fn compiles_and_runs_on_many_threads() {
    let p = program("mov %r0, %r2\nmul %r0, 3\nexit");
    let code: Arc<dyn CompiledCode> = Arc::from(
        LlvmBackend
            .compile(&p, &CompileOptions::default())
            .expect("compiles"),
    );
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let code = code.clone();
            std::thread::spawn(move || {
                // Compile on this thread too: every compile has its own context.
                let own = program(&format!("mov %r0, {t}\nexit"));
                let c = LlvmBackend
                    .compile(&own, &CompileOptions::default())
                    .expect("compiles");
                let table = Helpers::new().table();
                let env = bpfvm_engine::backend::RunEnv {
                    helpers: &table,
                    regions: &[],
                    host: std::ptr::null_mut(),
                };
                let mut mem = vec![0u8; t as usize + 1];
                let r = bpfvm_engine::backend::execute(code.as_ref(), &env, &mut mem)
                    .expect("runs")
                    .r0;
                let own_r = bpfvm_engine::backend::execute(c.as_ref(), &env, &mut [])
                    .expect("runs")
                    .r0;
                (r, own_r)
            })
        })
        .collect();
    for (t, h) in threads.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), ((t as u64 + 1) * 3, t as u64));
    }
}

#[test]
fn loader_rejects_bad_objects_without_panicking() {
    let opts = LoadOptions::default();
    assert!(matches!(load_object(b"", &opts), Err(LoadError::Parse(_))));
    assert!(matches!(
        load_object(b"\x7fELF garbage", &opts),
        Err(LoadError::Parse(_))
    ));
    let p = program("mov %r0, 1\nexit");
    let obj = compile_object(&p, &CompileOptions::default(), &AotOptions::default()).unwrap();
    assert!(load_object(&obj, &opts).is_ok());
    // Every truncation is an error, never a crash.
    for len in (0..obj.len()).step_by(61) {
        assert!(
            load_object(&obj[..len], &opts).is_err(),
            "truncated at {len}"
        );
    }
    // Flipped bytes: any result but a crash.
    for at in (0..obj.len()).step_by(97) {
        let mut bad = obj.clone();
        bad[at] ^= 0x5a;
        let _ = load_object(&bad, &opts);
    }
    let wrong = LoadOptions {
        entry_name: "other",
        symbols: None,
    };
    assert!(matches!(
        load_object(&obj, &wrong),
        Err(LoadError::MissingEntry(_))
    ));
    let arm = AotOptions {
        target_triple: Some("aarch64-unknown-linux-gnu".into()),
        ..AotOptions::default()
    };
    let arm_obj = compile_object(&p, &CompileOptions::default(), &arm).unwrap();
    assert!(matches!(
        load_object(&arm_obj, &opts),
        Err(LoadError::Unsupported(_))
    ));
    // An undefined symbol nobody provides.
    let map = {
        use bpfvm_engine::instr::LddwPseudo;
        use bpfvm_engine::isa::{Insn, OP_EXIT, OP_LDDW, PSEUDO_BTF_ID};
        use bpfvm_engine::verifier::{verify, LddwResolver, VerifyOptions};
        struct Any;
        impl LddwResolver for Any {
            fn resolve(&self, _: &LddwPseudo) -> Result<u64, String> {
                Ok(0x1000)
            }
        }
        let insns = vec![
            Insn::new(OP_LDDW, 0, PSEUDO_BTF_ID, 0, 3),
            Insn::new(0, 0, 0, 0, 0),
            Insn::new(OP_EXIT, 0, 0, 0, 0),
        ];
        verify(
            insns,
            &VerifyOptions {
                lddw: Some(&Any),
                ..VerifyOptions::default()
            },
        )
        .unwrap()
    };
    let obj = compile_object(&map, &CompileOptions::default(), &AotOptions::default()).unwrap();
    assert_eq!(
        load_object(&obj, &opts).err(),
        Some(LoadError::Undefined("__lddw_helper_var_addr".into()))
    );
    // ... which the host can provide.
    extern "C" fn var_addr(imm: u32) -> u64 {
        0xabc0 + imm as u64
    }
    let with = LoadOptions {
        entry_name: "bpf_main",
        symbols: Some(&|name| {
            (name == "__lddw_helper_var_addr").then_some(var_addr as *const () as usize as u64)
        }),
    };
    let code = load_object(&obj, &with).expect("loads");
    let table = Helpers::new().table();
    let env = bpfvm_engine::backend::RunEnv {
        helpers: &table,
        regions: &[],
        host: std::ptr::null_mut(),
    };
    let out = bpfvm_engine::backend::execute(&code, &env, &mut []).unwrap();
    assert_eq!(out.r0, 0xabc3);
}

#[test]
fn bad_options_are_errors() {
    let p = program("mov %r0, 1\nexit");
    let opts = CompileOptions {
        call_depth: 0,
        ..CompileOptions::default()
    };
    assert!(LlvmBackend.compile(&p, &opts).is_err());
    assert!(AotBackend.compile(&p, &opts).is_err());
}
