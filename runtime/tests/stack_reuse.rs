//! Every run of a program starts from a zeroed stack, though the runtime
//! reuses one stack area and zeroes after a run only what the run may have
//! written: the frames its calls can reach, or when it stores through r10
//! alone, down to the lowest of those stores in its deepest frame (in
//! unchecked mode too, whose programs are trusted to stay where checks
//! would keep them), and what its helpers wrote. A helper may write below the calling frame (`probe_read`
//! to any stack address, a host helper anywhere); what it left there must
//! not reach the next run. Each program here reads such a place first
//! (through `probe_read`), then writes it: every run must read 0.

use bpfvm::engine::asm::assemble;
use bpfvm::engine::backend::CompileOptions;
use bpfvm::engine::elf::Object;
use bpfvm::object::{LoadOptions, LoadedObject};
use bpfvm::tier::Tier;
use bpfvm::{Config, Engine, TierPolicy};

/// `probe_read(r10 - 8, 8, r10 - at)`, into r7: what was at `r10 - at`.
fn read_into_r7(at: i32) -> String {
    format!(
        "mov %r1, %r10\nadd %r1, -8\nmov %r2, 8\nmov %r3, %r10\nadd %r3, -{at}\ncall 4\n\
         ldxdw %r7, [%r10-8]\n"
    )
}

/// Runs `src` three times on every tier (and tiered), with the standard
/// helpers and `config`'s; each run must return 0.
fn runs_see_zeroes(what: &str, src: &str, config: impl Fn(&mut Config)) {
    let obj = LoadedObject::from_object(Object::default(), LoadOptions::default()).unwrap();
    let mut policies: Vec<TierPolicy> = Tier::available()
        .into_iter()
        .filter(|t| *t != Tier::Aot)
        .map(TierPolicy::Fixed)
        .collect();
    policies.push(TierPolicy::default());
    for policy in policies {
        let mut c = Config::new();
        c.tier_policy(policy);
        obj.configure(&mut c, Tier::Interp, &CompileOptions::default())
            .unwrap();
        config(&mut c);
        let engine = Engine::new(&c);
        let program = engine
            .load_insns(assemble(src).unwrap_or_else(|e| panic!("{what}: {e}")))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        for run in 0..3 {
            assert_eq!(
                program.run(&mut [0u8; 8]),
                Ok(0),
                "{what}, {policy:?}, run {run}: the stack kept a value of an earlier run"
            );
        }
    }
}

#[test]
fn probe_read_below_the_frame_is_cleared_after_the_run() {
    // One function (one frame of its own); `probe_read` writes 8 bytes
    // 4,000 below r10, in the seventh frame.
    let src = format!(
        "{}lddw %r1, 0x1122334455667788\nstxdw [%r10-16], %r1\nmov %r1, %r10\nadd %r1, -4000\n\
         mov %r2, 8\nmov %r3, %r10\nadd %r3, -16\ncall 4\nmov %r0, %r7\nexit",
        read_into_r7(4000)
    );
    runs_see_zeroes("probe_read", &src, |_| {});
}

#[test]
fn the_frames_of_nested_calls_are_cleared_after_the_run() {
    // main -> f -> g: three frames. g reads, then writes, its own frame;
    // no helper runs, so only the frames the calls reach are cleared.
    let src = "call local f\nexit\nf:\ncall local g\nexit\n\
               g:\nldxdw %r0, [%r10-8]\nlddw %r1, 0x1122334455667788\nstxdw [%r10-8], %r1\nexit";
    runs_see_zeroes("nested calls", src, |_| {});
    runs_see_zeroes("nested calls, unchecked", src, |c| {
        c.memory_checks(false);
    });
    // Through probe_read, which records what it writes: g's frame is 1,032
    // below main's r10.
    let src = format!(
        "{}call local f\nmov %r0, %r7\nexit\n\
         f:\ncall local g\nexit\n\
         g:\nlddw %r1, 0x1122334455667788\nstxdw [%r10-8], %r1\nexit",
        read_into_r7(1024 + 8)
    );
    runs_see_zeroes("nested calls and probe_read", &src, |_| {});
}

#[test]
fn a_host_helper_may_have_written_anywhere() {
    // Helper 100 writes at the bottom of the stack area, which it finds
    // from the context: nothing records it, so the whole area is cleared.
    let src = format!("{}call 100\nmov %r0, %r7\nexit", read_into_r7(8 * 512));
    runs_see_zeroes("host helper", &src, |c| {
        c.helper(100, "scribble", |ctx, _| {
            // SAFETY: the stack area of the run is live and writable for
            // the whole call; its bottom 8 bytes are inside it.
            unsafe { (ctx.stack_bottom as *mut u64).write(0x1122_3344) };
            Ok(0)
        });
    });
}

#[test]
fn stores_through_r10_are_cleared_down_to_the_lowest_one() {
    // Each run reads the bytes it then writes: the lowest byte of its
    // frame, one in the middle (an atomic), one at the top.
    let src = "ldxdw %r0, [%r10-512]\nldxw %r1, [%r10-300]\nor %r0, %r1\nldxb %r1, [%r10-1]\n\
               or %r0, %r1\nstdw [%r10-512], 7\nmov %r1, 9\nlock add32 [%r10-300], %r1\n\
               stb [%r10-1], 5\nexit";
    runs_see_zeroes("stores through r10", src, |_| {});
    runs_see_zeroes("stores through r10, unchecked", src, |c| {
        c.memory_checks(false);
    });
    // In a callee, whose frame is 512 bytes lower: its lowest byte is
    // 1,024 below the top.
    let src = "call local f\nexit\n\
               f:\nldxdw %r0, [%r10-512]\nstdw [%r10-512], 7\nexit";
    runs_see_zeroes("a callee's stores through r10", src, |_| {});
    // Only an atomic, in a callee.
    let src = "call local f\nexit\n\
               f:\nldxdw %r0, [%r10-64]\nmov %r1, 3\nlock add [%r10-64], %r1\nexit";
    runs_see_zeroes("a callee's atomic through r10", src, |_| {});
    // A callee's store through r10 with a positive offset lands in its
    // caller's frame.
    let src = "ldxdw %r6, [%r10-8]\ncall local f\nmov %r0, %r6\nexit\n\
               f:\nstdw [%r10+504], 7\nexit";
    runs_see_zeroes("a store into the caller's frame", src, |_| {});
}

#[test]
fn a_store_through_another_register_may_reach_every_frame() {
    // f writes the lowest byte of its frame through r1, a copy of r10.
    let src = "call local f\nexit\n\
               f:\nmov %r1, %r10\nadd %r1, -512\nldxdw %r0, [%r1+0]\nstdw [%r1+0], 7\nexit";
    runs_see_zeroes("a store through a copy of r10", src, |_| {});
    runs_see_zeroes("a store through a copy of r10, unchecked", src, |c| {
        c.memory_checks(false);
    });
    // main passes a pointer to its own frame, which f writes through.
    let src = "mov %r1, %r10\nadd %r1, -8\ncall local f\nldxdw %r0, [%r10-8]\nexit\n\
               f:\nldxdw %r0, [%r10-8]\nstdw [%r1+0], 0\nstdw [%r10-8], 7\nexit";
    runs_see_zeroes("a store through an argument", src, |_| {});
}

#[test]
fn one_program_leaves_nothing_for_the_next_on_the_same_thread() {
    // Both run on this thread's one stack area: what `deep` writes at the
    // bottom of its callee's frame, `reader` reads from the same place.
    let deep = "call local f\nexit\nf:\nstdw [%r10-512], 7\nmov %r0, 0\nexit";
    let reader = "call local f\nexit\nf:\nldxdw %r0, [%r10-512]\nexit";
    let obj = LoadedObject::from_object(Object::default(), LoadOptions::default()).unwrap();
    for tier in Tier::available().into_iter().filter(|t| *t != Tier::Aot) {
        let mut c = Config::new();
        c.tier_policy(TierPolicy::Fixed(tier));
        obj.configure(&mut c, Tier::Interp, &CompileOptions::default())
            .unwrap();
        let engine = Engine::new(&c);
        let deep = engine.load_insns(assemble(deep).unwrap()).unwrap();
        let reader = engine.load_insns(assemble(reader).unwrap()).unwrap();
        for _ in 0..3 {
            assert_eq!(deep.run(&mut [0u8; 8]), Ok(0));
            assert_eq!(reader.run(&mut [0u8; 8]), Ok(0), "{tier:?}: deep's store");
        }
    }
}
