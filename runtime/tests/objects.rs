//! Every C fixture in `conformance/fixtures/` (compiled by clang-19, see
//! `scripts/build-fixtures.sh`) loads, verifies and runs with the same r0
//! and the same map contents on every tier this build has, in checked mode,
//! and gives the values computed by hand from its C source.

use std::sync::{Arc, Mutex};

use bpfvm::engine::backend::CompileOptions;
use bpfvm::object::{LoadOptions, LoadedObject};
use bpfvm::tier::Tier;

type Dump = Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>;

/// What one scenario produced on one tier.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    results: Vec<Result<u64, String>>,
    maps: Dump,
    trace: Vec<String>,
    ringbuf: Vec<Vec<u8>>,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../conformance/fixtures/{name}.o",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// How a scenario's programs are compiled.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// The tier's backend, in process.
    Tier(Tier),
    /// A native object written by `compile_aot` and loaded back by
    /// `prepare_aot` (the maps reached through the `lddw` hooks).
    AotObject,
}

/// Loads `name`, runs `program` over each input on `tier`, returns what happened.
fn scenario(name: &str, tier: Tier, runs: &[(&str, Vec<u8>)]) -> Outcome {
    scenario_via(name, Via::Tier(tier), runs)
}

fn scenario_via(name: &str, via: Via, runs: &[(&str, Vec<u8>)]) -> Outcome {
    let trace = Arc::new(Mutex::new(Vec::new()));
    let t = trace.clone();
    let opts = LoadOptions {
        trace: Some(Arc::new(move |line: &str| {
            t.lock().unwrap().push(line.to_string())
        })),
        ..LoadOptions::default()
    };
    let obj = LoadedObject::load_with(&fixture(name), opts).unwrap();
    let copts = CompileOptions {
        checked: true,
        ..CompileOptions::default()
    };
    let mut results = Vec::new();
    for (prog, input) in runs {
        let run = match via {
            Via::Tier(tier) => obj.prepare(prog, tier, &copts),
            Via::AotObject => obj
                .compile_aot(prog, &copts, &Default::default())
                .and_then(|bytes| obj.prepare_aot(&bytes, None)),
        }
        .unwrap_or_else(|e| panic!("{name}/{prog} via {via:?}: {e}"));
        let mut mem = input.clone();
        results.push(run.run(&mut mem).map(|o| o.r0).map_err(|t| t.to_string()));
    }
    let ringbuf = obj
        .maps()
        .iter()
        .filter_map(|m| m.ringbuf())
        .flat_map(|r| r.consume())
        .collect();
    let trace = trace.lock().unwrap().clone();
    Outcome {
        results,
        maps: obj.dump_maps(),
        trace,
        ringbuf,
    }
}

/// Runs the scenario on every available tier; all must match the interpreter.
fn on_all_tiers(name: &str, runs: &[(&str, Vec<u8>)]) -> Outcome {
    let reference = scenario(name, Tier::Interp, runs);
    for tier in Tier::available() {
        if tier == Tier::Interp {
            continue;
        }
        let got = scenario(name, tier, runs);
        assert_eq!(
            got, reference,
            "{name}: {tier} differs from the interpreter"
        );
    }
    if Tier::Aot.is_available() {
        let got = scenario_via(name, Via::AotObject, runs);
        assert_eq!(
            got, reference,
            "{name}: the AOT object loaded back differs from the interpreter"
        );
    }
    reference
}

fn map<'a>(dump: &'a Dump, name: &str) -> &'a [(Vec<u8>, Vec<u8>)] {
    &dump
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no map {name}"))
        .1
}

fn u64s(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u64> {
    entries
        .iter()
        .map(|(_, v)| u64::from_le_bytes(v[..8].try_into().unwrap()))
        .collect()
}

fn packet(proto: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[12..14].copy_from_slice(&proto.to_be_bytes());
    p
}

#[test]
fn xdp_counter_counts_packets_and_calls() {
    let runs = vec![
        ("xdp_count", packet(0x0800, 64)),
        ("xdp_count", packet(0x0800, 60)),
        ("xdp_count", packet(0x86dd, 80)),
        ("xdp_count", packet(0x0806, 42)),
        ("xdp_count", vec![0; 10]),
    ];
    let out = on_all_tiers("xdp_counter", &runs);
    let r: Vec<_> = out.results.iter().map(|r| r.clone().unwrap()).collect();
    assert_eq!(r, vec![2, 2, 1, 2, 2], "XDP_PASS, except the blocked IPv6");
    assert_eq!(u64s(map(&out.maps, "pkt_count")), vec![2, 1, 1, 1]);
    assert_eq!(u64s(map(&out.maps, "byte_count")), vec![64 + 60 + 80 + 42]);
    assert_eq!(u64s(map(&out.maps, ".bss")), vec![5], "every call counted");
    let data = &map(&out.maps, ".data")[0].1;
    assert_eq!(u16::from_le_bytes([data[0], data[1]]), 0x86dd);
}

#[test]
fn hash_counter_counts_words() {
    let runs = vec![
        ("word_count", b"the cat and the dog and the bird".to_vec()),
        ("word_count", b"a b c d e f".to_vec()),
    ];
    let out = on_all_tiers("hash_count", &runs);
    assert_eq!(out.results, vec![Ok(8), Ok(6)]);
    let counts = map(&out.maps, "counts");
    let word = |w: &str| {
        let mut k = w.as_bytes().to_vec();
        k.resize(16, 0);
        k
    };
    let count = |w: &str| {
        counts
            .iter()
            .find(|(k, _)| *k == word(w))
            .map(|(_, v)| u64::from_le_bytes(v[..8].try_into().unwrap()))
    };
    assert_eq!(count("the"), Some(3));
    assert_eq!(count("and"), Some(2));
    assert_eq!(count("bird"), Some(1));
    assert_eq!(counts.len(), 5 + 6);
    let recent = map(&out.maps, "recent");
    assert_eq!(recent.len(), 4, "the LRU map keeps its 4 most recent words");
    let recent_keys: Vec<_> = recent.iter().map(|(k, _)| k.clone()).collect();
    for w in ["c", "d", "e", "f"] {
        assert!(recent_keys.contains(&word(w)), "{w} is recent");
    }
    assert_eq!(u64s(map(&out.maps, "totals")), vec![1 + 6]);
}

#[test]
fn ringbuf_producer_emits_events() {
    let runs = vec![("produce", vec![1, 0, 2, 0xff, 3])];
    let out = on_all_tiers("ringbuf", &runs);
    assert_eq!(out.results, vec![Ok(3)]);
    assert_eq!(out.ringbuf.len(), 4, "3 events and a summary");
    for (rec, (index, value)) in out.ringbuf.iter().zip([(0u32, 1u32), (2, 2), (4, 3)]) {
        assert_eq!(rec.len(), 16);
        assert_eq!(u32::from_le_bytes(rec[0..4].try_into().unwrap()), index);
        assert_eq!(u32::from_le_bytes(rec[4..8].try_into().unwrap()), value);
        assert_eq!(u64::from_le_bytes(rec[8..16].try_into().unwrap()), 1);
    }
    let summary = &out.ringbuf[3];
    assert_eq!(u64::from_le_bytes(summary[0..8].try_into().unwrap()), 3);
    assert_eq!(u64::from_le_bytes(summary[8..16].try_into().unwrap()), 1);
}

#[test]
fn bpf_to_bpf_calls() {
    let runs = vec![
        ("squares", vec![1, 2, 3, 4]),
        ("fibs", vec![0; 20]),
        ("fib", vec![]),
    ];
    let out = on_all_tiers("calls", &runs);
    // squares: 1 + 4 + 9 + 16 = 30, plus fib(10) = 55; fibs: fib(20) = 6765.
    // `fib` is a .text function run as an entry point: fib(r1 = 0) = 0.
    assert_eq!(out.results, vec![Ok(85), Ok(6765), Ok(0)]);
    assert_eq!(u64s(map(&out.maps, "results")), vec![30, 6765]);
}

#[test]
fn tail_call_chain() {
    let runs = vec![("entry", vec![0; 5]), ("stage1", vec![0; 1])];
    let out = on_all_tiers("tailcall", &runs);
    // entry -> (slot 3 empty) -> stage1 -> stage2: 42 + len.
    assert_eq!(out.results, vec![Ok(47), Ok(43)]);
    assert_eq!(u64s(map(&out.maps, "visits")), vec![1, 2, 2, 0]);
    let slots = map(&out.maps, "jmp_table");
    assert_eq!(slots.len(), 2, "slots 1 and 2 initialised statically");
}

#[test]
fn rodata_strings_and_trace_printk() {
    let runs = vec![("printk", vec![0; 7])];
    let out = on_all_tiers("printk", &runs);
    assert_eq!(out.results, vec![Ok(21)]);
    assert_eq!(
        out.trace,
        vec!["hello from bpfvm: len=7 scale=3", "tail beef str"]
    );
    let rodata = &map(&out.maps, ".rodata")[0].1;
    assert_eq!(&rodata[..4], &3u32.to_le_bytes());
}

#[test]
fn bpf_loop_callbacks() {
    let runs = vec![("loop_sum", vec![1, 2, 3, 0, 9]), ("loop_sum", vec![5, 5])];
    let out = on_all_tiers("loop", &runs);
    // Stops at the zero byte (4 iterations), or past the end (len + 1).
    assert_eq!(out.results, vec![Ok(6 * 1000 + 4), Ok(10 * 1000 + 3)]);
    // Running sums 1, 3, 6, ... of the second call (the map keeps the last).
    assert_eq!(
        u64s(map(&out.maps, "sums")),
        vec![1, 3, 6, 10, 15, 21, 28, 36]
    );
}

#[test]
fn legacy_maps_and_named_data_sections() {
    let runs = vec![
        ("legacy", vec![0; 2]),
        ("legacy", vec![0; 10]),
        ("legacy", vec![0; 1]),
    ];
    let out = on_all_tiers("legacy_maps", &runs);
    assert_eq!(out.results, vec![Ok(5), Ok(5), Ok(10)]);
    assert_eq!(u64s(map(&out.maps, "legacy_counts")), vec![10, 5]);
    let hash: Vec<(u32, u32)> = map(&out.maps, "legacy_hash")
        .iter()
        .map(|(k, v)| {
            (
                u32::from_le_bytes(k[..4].try_into().unwrap()),
                u32::from_le_bytes(v[..4].try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(hash, vec![(1, 2), (2, 4), (10, 20)]);
    assert_eq!(u64s(map(&out.maps, ".data.config")), vec![5]);
    assert_eq!(u64s(map(&out.maps, ".bss.state")), vec![1]);
}

#[test]
fn every_fixture_verifies_every_program() {
    for name in [
        "legacy_maps",
        "xdp_counter",
        "hash_count",
        "ringbuf",
        "calls",
        "tailcall",
        "printk",
        "loop",
    ] {
        let obj = LoadedObject::load(&fixture(name)).unwrap();
        assert!(!obj.object().programs.is_empty(), "{name}");
        for p in &obj.object().programs {
            obj.verify_program(&p.name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn fixture_runs_through_the_engine_api() {
    // The glue as an embedder with its own run loop uses it: the object's
    // helpers and regions in the engine's configuration, its resolver at load.
    let obj = LoadedObject::load(&fixture("xdp_counter")).unwrap();
    for tier in [Tier::Interp, Tier::Cranelift] {
        if !tier.is_available() {
            continue;
        }
        let mut config = bpfvm::Config::new();
        config
            .tier_policy(bpfvm::TierPolicy::Fixed(tier))
            .helpers(&obj.helpers_for(tier, &CompileOptions::default()).unwrap());
        for r in obj.regions() {
            // SAFETY: the object (and so its maps) outlives the engine.
            unsafe { config.region(r.start as *const u8, r.len as usize, r.writable != 0) };
        }
        let engine = bpfvm::Engine::new(&config);
        let resolver = obj.lddw_resolver("xdp_count").unwrap();
        let prog = engine
            .load_with(obj.program_insns("xdp_count").unwrap(), Some(&resolver))
            .unwrap();
        assert_eq!(prog.run(&mut packet(0x0800, 64)), Ok(2), "{tier}");
    }
    let calls = &obj.map(".bss").unwrap().entries()[0].1;
    assert_eq!(calls[0], 2, "one call per tier, in the object's own map");
}

/// Tier 1 inlines `map_lookup_elem` on array maps whose handle an `lddw`
/// in the same block puts in r1: the generated code gives what the helper
/// gives for keys in range, out of range, in the input memory (the helper
/// path) and at a bad address (the helper's trap), on every tier.
#[test]
fn inlined_array_map_lookups_agree_with_the_helper() {
    let obj = LoadedObject::load(&fixture("xdp_counter")).unwrap();
    let map = obj
        .map("pkt_count")
        .expect("the fixture's array map")
        .clone();
    assert!(
        obj.inlinable_array_maps()
            .iter()
            .any(|m| m.handle == map.handle()),
        "pkt_count is inlinable"
    );
    for k in 0u32..4 {
        map.update(&k.to_le_bytes(), &(100 + k as u64).to_le_bytes(), 0)
            .unwrap();
    }
    let handle = map.handle();
    // r6 = input; key at [r10-4] (inline) or at [r6] (helper path), or r2 = 8.
    let program = |key: &str| {
        format!(
            "mov %r6, %r1\nstw [%r10-4], {key}\nlddw %r1, {handle:#x}\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, +1\nldxdw %r0, [%r0]\nexit\n"
        )
    };
    let in_input = format!(
        "mov %r6, %r1\nlddw %r1, {handle:#x}\nmov %r2, %r6\ncall 1\njeq %r0, 0, +1\nldxdw %r0, [%r0]\nexit\n"
    );
    let bad_pointer = format!("lddw %r1, {handle:#x}\nmov %r2, 8\ncall 1\nexit\n");
    let mut cases: Vec<(String, Vec<u8>)> = ["0", "3", "4", "-1"]
        .iter()
        .map(|k| (program(k), vec![0u8; 8]))
        .collect();
    cases.push((in_input.clone(), 2u32.to_le_bytes().to_vec()));
    cases.push((in_input, 9u32.to_le_bytes().to_vec()));
    cases.push((bad_pointer, vec![]));
    // The key at the frame's last slot, straddling its top, and in the
    // frame through a register whose offset the block does not show (the
    // inline path's run-time test).
    let at = |off: i32| {
        format!(
            "stw [%r10{off}], 2\nlddw %r1, {handle:#x}\nmov %r2, %r10\nadd %r2, {off}\ncall 1\njeq %r0, 0, +1\nldxdw %r0, [%r0]\nexit\n"
        )
    };
    cases.push((at(-512), vec![]));
    cases.push((at(-4).replace("add %r2, -4", "add %r2, -2"), vec![]));
    cases.push((
        format!(
            "stw [%r10-8], 1\nmov %r7, %r10\nadd %r7, -8\nja +0\nlddw %r1, {handle:#x}\nmov %r2, %r7\ncall 1\njeq %r0, 0, +1\nldxdw %r0, [%r0]\nexit\n"
        ),
        vec![],
    ));
    for (src, input) in &cases {
        let mut results = Vec::new();
        for tier in Tier::available() {
            if tier == Tier::Aot {
                continue;
            }
            let mut config = bpfvm::Config::new();
            config.tier_policy(bpfvm::TierPolicy::Fixed(tier));
            obj.configure(&mut config, tier, &CompileOptions::default())
                .unwrap();
            let engine = bpfvm::Engine::new(&config);
            let insns = bpfvm::engine::asm::assemble(src).unwrap();
            let program = engine.load_insns(insns).unwrap();
            let mut mem = input.clone();
            let r = program.run(&mut mem).map_err(|t| t.kind().to_string());
            results.push((tier, r));
        }
        let (_, expected) = &results[0];
        for (tier, r) in &results {
            assert_eq!(r, expected, "{tier} on\n{src}");
        }
    }
    // The expected values themselves (interpreter): 100 + key, or 0.
    let mut config = bpfvm::Config::new();
    config.tier_policy(bpfvm::TierPolicy::Fixed(Tier::Interp));
    obj.configure(&mut config, Tier::Interp, &CompileOptions::default())
        .unwrap();
    let engine = bpfvm::Engine::new(&config);
    let run = |src: &str, mut mem: Vec<u8>| {
        let p = engine
            .load_insns(bpfvm::engine::asm::assemble(src).unwrap())
            .unwrap();
        p.run(&mut mem)
    };
    assert_eq!(run(&program("3"), vec![0; 8]), Ok(103));
    assert_eq!(run(&program("4"), vec![0; 8]), Ok(0));
    assert!(run(&cases[6].0, vec![]).is_err(), "a bad key pointer traps");
    assert_eq!(run(&cases[7].0, vec![]), Ok(102), "key at r10-512");
    assert!(
        run(&cases[8].0, vec![]).is_err(),
        "a key across the frame's top traps"
    );
    assert_eq!(run(&cases[9].0, vec![]), Ok(101), "key through r7");
}

/// The inlined lookup is really emitted (the blocks are named in the IR),
/// and only when the map is given to the compiler.
#[cfg(feature = "llvm")]
#[test]
fn tier1_emits_inline_lookups_for_array_maps() {
    let obj = LoadedObject::load(&fixture("xdp_counter")).unwrap();
    let program = obj.verify_program("xdp_count").unwrap();
    let with = CompileOptions {
        array_maps: obj.inlinable_array_maps(),
        ..CompileOptions::default()
    };
    let ir = bpfvm_llvm::emit_llvm_ir(&program, &with, false).unwrap();
    assert!(ir.contains("lookup_inline"), "{ir}");
    let ir = bpfvm_llvm::emit_llvm_ir(&program, &CompileOptions::default(), false).unwrap();
    assert!(!ir.contains("lookup_inline"));
}

/// An AOT object carries the digest of the maps it was compiled against:
/// loading it for another object is refused, since its map indices would
/// name other maps; the same object loads it.
#[test]
fn aot_objects_are_refused_for_other_maps() {
    if !Tier::Aot.is_available() {
        return;
    }
    let counter = LoadedObject::load(&fixture("xdp_counter")).unwrap();
    let words = LoadedObject::load(&fixture("hash_count")).unwrap();
    assert_ne!(counter.maps_digest(), words.maps_digest());
    let prog = &counter.object().programs[0].name;
    let bytes = counter
        .compile_aot(prog, &CompileOptions::default(), &Default::default())
        .unwrap();
    let err = words.prepare_aot(&bytes, None).err().expect("refused");
    assert!(
        err.to_string().contains("compiled against other maps"),
        "{err}"
    );
    let again = LoadedObject::load(&fixture("xdp_counter")).unwrap();
    assert_eq!(again.maps_digest(), counter.maps_digest());
    again
        .prepare_aot(&bytes, None)
        .expect("the same object's maps");
}

/// The digest covers the code too: the same maps with another program
/// (here the runt key 3 changed to 2) is another object, whose function
/// addresses and tail-call targets an AOT object must not be run with.
#[test]
fn the_maps_digest_covers_the_programs() {
    let bytes = fixture("xdp_counter");
    // `r6 = r2; r2 = 3` at the start of xdp_count.
    let first = [
        0xbf, 0x26, 0, 0, 0, 0, 0, 0, 0xb7, 0x02, 0, 0, 0x03, 0, 0, 0,
    ];
    let at = bytes
        .windows(first.len())
        .position(|w| w == first)
        .expect("the program's first instructions");
    assert_eq!(
        bytes.windows(first.len()).filter(|w| *w == first).count(),
        1
    );
    let mut other = bytes.clone();
    other[at + 12] = 0x02;
    let a = LoadedObject::load(&bytes).unwrap();
    let b = LoadedObject::load(&other).unwrap();
    assert_eq!(a.dump_maps(), b.dump_maps());
    assert_ne!(a.maps_digest(), b.maps_digest());
    assert_eq!(
        a.maps_digest(),
        LoadedObject::load(&bytes).unwrap().maps_digest()
    );
}
