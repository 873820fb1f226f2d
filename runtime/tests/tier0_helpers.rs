//! `set_tier0_helper_threads`: with no helper threads tier 0 compiles every
//! function, uncut, on the loading thread; with them it may cut a large
//! function into pieces and compile them elsewhere. The program's results
//! are the same either way. Its own test binary: the setting is
//! process-wide.

use bpfvm::emit::{emit_text, TextOutput};
use bpfvm::engine::backend::CompileOptions;
use bpfvm::tier::{set_tier0_helper_threads, Tier};
use bpfvm::{Config, Engine, TierPolicy};

/// A function of 40 blocks of 8 slots, each a test of the input and a few
/// ALU instructions, calling a small second one of 2 blocks (translated
/// where it is called); r0 folds in all.
fn program() -> String {
    let blocks = |name: &str, n: usize| -> String {
        (0..n)
            .map(|k| {
                format!(
                    "ldxb %r3, [%r6+{}]\njeq %r3, {k}, {name}{k}\nadd %r0, %r3\nxor %r0, {}\n\
                     mul %r0, 3\nadd %r0, 1\nrsh %r0, 1\n{name}{k}:\n",
                    k % 16,
                    k * 7
                )
            })
            .collect()
    };
    format!(
        "mov %r6, %r1\nmov %r0, 1\n{}mov %r1, %r6\nmov %r7, %r0\ncall local f\nadd %r0, %r7\n\
         exit\nf:\nmov %r6, %r1\nmov %r0, 5\n{}exit",
        blocks("a", 40),
        blocks("b", 2)
    )
}

/// The Cranelift functions `emit clif` shows for `src` at tier 0's level.
fn cranelift_functions(src: &str) -> usize {
    let insns = bpfvm::engine::asm::assemble(src).unwrap();
    let program =
        bpfvm::engine::verifier::verify(insns, &bpfvm::engine::verifier::VerifyOptions::default())
            .unwrap();
    let opts = CompileOptions {
        opt_level: 1,
        ..CompileOptions::default()
    };
    let clif = emit_text(&program, &opts, TextOutput::Clif).unwrap();
    let headers = clif
        .lines()
        .filter(|l| l.starts_with("function ") && l.ends_with('{'));
    headers.count() / 2
}

fn run(src: &str, tier: Tier) -> u64 {
    let mut config = Config::new();
    config.tier_policy(TierPolicy::Fixed(tier));
    let program = Engine::new(&config).load_asm(src).unwrap();
    let mut mem: Vec<u8> = (0..32u8).map(|b| b.wrapping_mul(29) ^ 5).collect();
    program.run(&mut mem).unwrap()
}

#[test]
fn helper_threads_change_how_not_what() {
    if !Tier::Cranelift.is_available() {
        return;
    }
    let src = program();
    let interp = run(&src, Tier::Interp);
    set_tier0_helper_threads(0);
    let alone = cranelift_functions(&src);
    assert_eq!(alone, 1, "no helpers: no pieces, and f inlined");
    assert_eq!(run(&src, Tier::Cranelift), interp);
    set_tier0_helper_threads(3);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus > 1 {
        assert!(
            cranelift_functions(&src) > alone,
            "helpers: the large function is cut"
        );
    }
    assert_eq!(run(&src, Tier::Cranelift), interp);
}
