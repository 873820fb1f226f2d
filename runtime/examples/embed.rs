//! Embedding bpfvm: load a program, choose a tier policy, register a
//! helper, run it from several threads while it is promoted from tier 0
//! (Cranelift) to tier 1 (LLVM) in the background, and print its stats.
//!
//! `cargo run --release -p bpfvm --example embed`

use std::thread;

use bpfvm::{Config, CrossCheck, Engine, TierPolicy};

/// Counts the bytes of the input equal to r3 = helper 1's answer (b'a').
const PROGRAM: &str = "
    mov %r6, %r1
    mov %r7, %r2
    call 1
    mov %r3, %r0
    mov %r0, 0
    mov %r4, 0
loop:
    jge %r4, %r7, done
    mov %r5, %r6
    add %r5, %r4
    ldxb %r5, [%r5+0]
    jne %r5, %r3, next
    add %r0, 1
next:
    add %r4, 1
    ja loop
done:
    exit";

fn run_threads(program: &bpfvm::Program, calls: u32) {
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let program = program.clone();
            thread::spawn(move || {
                let mut packet = b"a banana and an apple".to_vec();
                let mut last = 0;
                for _ in 0..calls {
                    last = program.run(&mut packet).expect("no trap");
                }
                println!("thread {t}: {last} a's, now on {}", program.current_tier());
            })
        })
        .collect();
    for w in workers {
        if w.join().is_err() {
            eprintln!("a worker panicked");
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::new();
    config
        .tier_policy(TierPolicy::Tiered {
            call_threshold: 1_000,
            instruction_threshold: 1_000_000,
        })
        .cross_check(Some(CrossCheck::default()))
        .helper(1, "letter_to_count", |_ctx, _args| Ok(b'a' as u64));
    let engine = Engine::new(&config);
    let program = engine.load_asm(PROGRAM)?;
    println!("loaded; running on {}", program.current_tier());

    // Calls go on while tier 1 compiles in the background: none waits.
    run_threads(&program, 20_000);
    // Wait for the compile the threshold started, then run hot.
    program.force_tier_up(true)?;
    run_threads(&program, 20_000);
    let s = program.stats();
    println!(
        "tier {}: calls interp {} cranelift {} llvm {}; compile cranelift {:.2} ms, llvm {:.2} ms; cross-checks {}, mismatches {}",
        s.tier,
        s.calls.interp,
        s.calls.cranelift,
        s.calls.llvm,
        s.compile_ns.cranelift as f64 / 1e6,
        s.compile_ns.llvm as f64 / 1e6,
        s.cross_checks,
        s.mismatches
    );
    Ok(())
}
