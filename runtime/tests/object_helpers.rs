//! The standard helpers and the object glue on hand-written programs (in
//! the conformance assembler syntax, with `lddw map_fd N` / `map_value N
//! OFF` / `func LABEL`), on every tier: pointer checks, read-only global
//! data, the tail-call limit, `bpf_loop` limits and budgets, probe_read,
//! host helpers and regions.

use bpfvm::engine::asm::assemble;
use bpfvm::engine::backend::CompileOptions;
use bpfvm::engine::elf::{MapDef, MapKind, MapOrigin, Object, ProgramSection, BPF_F_RDONLY_PROG};
use bpfvm::engine::vmctx::Region;
use bpfvm::engine::Trap;
use bpfvm::object::{LoadOptions, LoadedObject, ObjectError};
use bpfvm::tier::Tier;

fn map(name: &str, kind: MapKind, key: u32, value: u32, max: u32) -> MapDef {
    MapDef::host(name, kind, key, value, max)
}

fn program(name: &str, src: &str) -> ProgramSection {
    let insns = assemble(src).unwrap_or_else(|e| panic!("{name}: {e}"));
    ProgramSection {
        name: name.into(),
        section: "test".into(),
        offset: 0,
        size: (insns.len() * 8) as u64,
        insns,
        subprograms: Vec::new(),
    }
}

fn object(programs: Vec<ProgramSection>, maps: Vec<MapDef>) -> Object {
    let mut o = Object::default();
    o.programs = programs;
    o.maps = maps;
    o
}

fn tiers() -> Vec<Tier> {
    Tier::available()
        .into_iter()
        .filter(|t| *t != Tier::Aot)
        .collect()
}

fn run_on(
    obj: &LoadedObject,
    name: &str,
    tier: Tier,
    opts: &CompileOptions,
    mem: &mut [u8],
) -> Result<u64, Trap> {
    obj.prepare(name, tier, opts)
        .unwrap_or_else(|e| panic!("{name} on {tier}: {e}"))
        .run(mem)
        .map(|o| o.r0)
}

/// A trap with host addresses (which differ between objects) zeroed.
fn host_addr_free(t: Trap) -> Trap {
    match t {
        Trap::OutOfBounds {
            pc,
            addr,
            size,
            write,
        } if addr > 0xffff => Trap::OutOfBounds {
            pc,
            addr: 0,
            size,
            write,
        },
        Trap::MisalignedAtomic { pc, addr, size } if addr > 0xffff => Trap::MisalignedAtomic {
            pc,
            addr: addr & 7,
            size,
        },
        t => t,
    }
}

/// Runs `name` of a fresh object on every tier; all results must agree
/// (trap addresses in host memory are zeroed).
fn each_tier(make: impl Fn() -> LoadedObject, name: &str, mem: &[u8]) -> Result<u64, Trap> {
    let mut first: Option<Result<u64, Trap>> = None;
    for tier in tiers() {
        let obj = make();
        let got = run_on(
            &obj,
            name,
            tier,
            &CompileOptions::default(),
            &mut mem.to_vec(),
        )
        .map_err(host_addr_free);
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "{name}: {tier} differs"),
        }
    }
    first.expect("at least the interpreter")
}

#[test]
fn helper_pointer_arguments_are_checked() {
    let make = || {
        let o = object(
            vec![program(
                "bad_key",
                "lddw %r1, map_fd 0\nmov %r2, 4096\ncall 1\nexit",
            )],
            vec![map("m", MapKind::Hash, 4, 8, 4)],
        );
        LoadedObject::from_object(o, LoadOptions::default()).unwrap()
    };
    let e = each_tier(make, "bad_key", &[]).unwrap_err();
    assert_eq!(
        e,
        Trap::OutOfBounds {
            pc: 3,
            addr: 4096,
            size: 4,
            write: false
        }
    );
}

#[test]
fn unknown_map_handle_fails_the_helper() {
    let make = || {
        let o = object(
            vec![program(
                "bad_map",
                "mov %r1, 12345\nmov %r2, %r10\nadd %r2, -8\ncall 1\nexit",
            )],
            vec![],
        );
        LoadedObject::from_object(o, LoadOptions::default()).unwrap()
    };
    let e = each_tier(make, "bad_map", &[]).unwrap_err();
    assert_eq!(
        e,
        Trap::HelperFailed {
            pc: 3,
            id: 1,
            code: 22
        }
    );
}

#[test]
fn rodata_is_read_only_and_data_is_writable() {
    let make = || {
        let mut ro = map(".rodata", MapKind::Array, 4, 8, 1);
        ro.flags = BPF_F_RDONLY_PROG;
        ro.origin = MapOrigin::GlobalData;
        ro.data = Some(vec![7, 0, 0, 0, 0, 0, 0, 0]);
        let mut rw = map(".data", MapKind::Array, 4, 8, 1);
        rw.origin = MapOrigin::GlobalData;
        rw.data = Some(vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let o = object(
            vec![
                program(
                    "read",
                    "lddw %r1, map_value 0 0\nldxdw %r0, [%r1]\nlddw %r1, map_value 1 4\nldxw %r2, [%r1]\nadd %r0, %r2\nstxw [%r1], %r0\nexit",
                ),
                program("write_ro", "lddw %r1, map_value 0 0\nstdw [%r1], 1\nexit"),
            ],
            vec![ro, rw],
        );
        LoadedObject::from_object(o, LoadOptions::default()).unwrap()
    };
    // 7 + 0x08070605
    assert_eq!(each_tier(make, "read", &[]), Ok(0x0807_060c));
    let e = each_tier(make, "write_ro", &[]).unwrap_err();
    assert!(
        matches!(
            e,
            Trap::OutOfBounds {
                pc: 2,
                write: true,
                size: 8,
                ..
            }
        ),
        "{e:?}"
    );
    let obj = make();
    run_on(
        &obj,
        "read",
        Tier::Interp,
        &CompileOptions::default(),
        &mut [],
    )
    .unwrap();
    assert_eq!(
        obj.map(".data").unwrap().entries()[0].1,
        vec![1, 2, 3, 4, 0x0c, 0x06, 0x07, 0x08]
    );
    // A value offset past the map's value is refused at load.
    let o = object(
        vec![program("past", "lddw %r1, map_value 0 8\nexit")],
        vec![map("a", MapKind::Array, 4, 8, 2)],
    );
    let obj = LoadedObject::from_object(o, LoadOptions::default()).unwrap();
    let e = obj.verify_program("past").unwrap_err();
    assert!(matches!(e, ObjectError::Verify { .. }), "{e}");
    assert!(e.to_string().contains("offset 8 is past the value"), "{e}");
}

/// Counts its runs in map 1 and tail-calls slot 0 of map 0 (itself).
const SELF_TAIL_CALL: &str = "
mov %r6, %r1
stw [%r10-4], 0
lddw %r1, map_fd 1
mov %r2, %r10
add %r2, -4
call 1
jeq %r0, 0, out
mov %r1, 1
lock add [%r0+0], %r1
mov %r1, %r6
lddw %r2, map_fd 0
mov %r3, 0
call 12
mov %r0, %r0
lsh %r0, 32
arsh %r0, 32
exit
out:
mov %r0, -1
exit
";

#[test]
fn tail_calls_stop_after_33() {
    let make = || {
        let mut slots = map("jmp", MapKind::ProgArray, 4, 4, 1);
        slots.prog_slots = vec![(0, "again".into())];
        let o = object(
            vec![program("again", SELF_TAIL_CALL)],
            vec![slots, map("count", MapKind::Array, 4, 8, 1)],
        );
        LoadedObject::from_object(o, LoadOptions::default()).unwrap()
    };
    for tier in tiers() {
        let obj = make();
        let r0 = run_on(&obj, "again", tier, &CompileOptions::default(), &mut []).unwrap();
        // The 34th run's tail call fails with -E2BIG, which it returns.
        assert_eq!(r0 as i64, -7, "{tier}");
        let count = &obj.map("count").unwrap().entries()[0].1;
        assert_eq!(
            u64::from_le_bytes(count[..8].try_into().unwrap()),
            34,
            "{tier}"
        );
        // The thread's chain depth is back to 0: a second run counts 34 more.
        run_on(&obj, "again", tier, &CompileOptions::default(), &mut []).unwrap();
        let count = &obj.map("count").unwrap().entries()[0].1;
        assert_eq!(
            u64::from_le_bytes(count[..8].try_into().unwrap()),
            68,
            "{tier}"
        );
    }
}

#[test]
fn tail_call_budget_is_shared() {
    let mut slots = map("jmp", MapKind::ProgArray, 4, 4, 1);
    slots.prog_slots = vec![(0, "again".into())];
    let o = object(
        vec![program("again", SELF_TAIL_CALL)],
        vec![slots, map("count", MapKind::Array, 4, 8, 1)],
    );
    let opts = CompileOptions {
        budget: Some(100),
        ..CompileOptions::default()
    };
    for tier in tiers() {
        let obj = LoadedObject::from_object(o.clone(), LoadOptions::default()).unwrap();
        let e = run_on(&obj, "again", tier, &opts, &mut []).unwrap_err();
        assert!(matches!(e, Trap::BudgetExhausted { .. }), "{tier}: {e:?}");
        let count = &obj.map("count").unwrap().entries()[0].1;
        let n = u64::from_le_bytes(count[..8].try_into().unwrap());
        assert!(
            (2..34).contains(&n),
            "{tier}: {n} runs within 100 instructions"
        );
    }
}

#[test]
fn bpf_loop_limits_and_errors() {
    let prog = |name: &str, nr: &str, flags: u32| {
        program(
            name,
            &format!(
                "mov %r1, {nr}\nlddw %r2, func cb\nmov %r3, 0\nmov %r4, {flags}\ncall 181\nexit\ncb:\nmov %r0, 0\nexit"
            ),
        )
    };
    let make = || {
        let o = object(
            vec![
                prog("ok", "5", 0),
                prog("too_many", "0x800001", 0),
                prog("bad_flags", "1", 1),
                program(
                    "not_func",
                    "mov %r1, 1\nmov %r2, 99\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit",
                ),
            ],
            vec![],
        );
        LoadedObject::from_object(o, LoadOptions::default()).unwrap()
    };
    assert_eq!(each_tier(make, "ok", &[]), Ok(5));
    assert_eq!(each_tier(make, "too_many", &[]).map(|v| v as i64), Ok(-7));
    assert_eq!(each_tier(make, "bad_flags", &[]).map(|v| v as i64), Ok(-22));
    assert_eq!(
        each_tier(make, "not_func", &[]),
        Err(Trap::HelperFailed {
            pc: 4,
            id: 181,
            code: 22
        })
    );
}

#[test]
fn bpf_loop_callback_traps_and_budget() {
    let make = || {
        let o = object(
            vec![
                program(
                    "oob",
                    "mov %r1, 3\nlddw %r2, func cb\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit\ncb:\nldxdw %r0, [%r2+0]\nexit",
                ),
                program(
                    "spin",
                    "mov %r1, 1000\nlddw %r2, func cb\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit\ncb:\nmov %r0, 0\nexit",
                ),
            ],
            vec![],
        );
        LoadedObject::from_object(o, LoadOptions::default()).unwrap()
    };
    // The callback's trap is the caller's, at the helper call.
    assert_eq!(
        each_tier(make, "oob", &[]),
        Err(Trap::OutOfBounds {
            pc: 5,
            addr: 0,
            size: 8,
            write: false
        })
    );
    let opts = CompileOptions {
        budget: Some(500),
        ..CompileOptions::default()
    };
    for tier in tiers() {
        let obj = make();
        let e = run_on(&obj, "spin", tier, &opts, &mut []).unwrap_err();
        assert_eq!(e, Trap::BudgetExhausted { pc: 5 }, "{tier}");
    }
}

#[test]
fn probe_read_and_host_regions() {
    let host = Box::new(*b"host data!");
    let addr = host.as_ptr() as u64;
    let make = |register: bool| {
        let o = object(
            vec![
                program(
                    "probe",
                    &format!(
                        "lddw %r3, {addr:#x}\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\ncall 4\nmov %r6, %r0\nldxdw %r0, [%r10-8]\nadd %r0, %r6\nexit"
                    ),
                ),
                program("direct", &format!("lddw %r1, {addr:#x}\nldxdw %r0, [%r1+2]\nexit")),
            ],
            vec![],
        );
        let mut obj = LoadedObject::from_object(o, LoadOptions::default()).unwrap();
        if register {
            // SAFETY: `host` outlives every run of this test.
            unsafe {
                obj.register_region(Region {
                    start: addr,
                    len: host.len() as u64,
                    writable: 0,
                })
            };
        }
        obj
    };
    for tier in tiers() {
        let opts = CompileOptions::default();
        let obj = make(true);
        assert_eq!(
            run_on(&obj, "probe", tier, &opts, &mut []),
            Ok(u64::from_le_bytes(*b"host dat")),
            "{tier}"
        );
        assert_eq!(
            run_on(&obj, "direct", tier, &opts, &mut []),
            Ok(u64::from_le_bytes(*b"st data!")),
            "{tier}"
        );
        // Unregistered: probe_read gives -EFAULT and a zeroed destination;
        // a direct load traps.
        let obj = make(false);
        assert_eq!(
            run_on(&obj, "probe", tier, &opts, &mut []).map(|v| v as i64),
            Ok(-14),
            "{tier}"
        );
        assert!(
            run_on(&obj, "direct", tier, &opts, &mut []).is_err(),
            "{tier}"
        );
    }
    assert!(make(true).regions().iter().any(|r| r.start == addr));
}

#[test]
fn host_helpers_replace_and_extend() {
    let o = object(
        vec![program(
            "h",
            "mov %r1, 20\ncall 1000\nmov %r6, %r0\ncall 8\nadd %r0, %r6\nexit",
        )],
        vec![],
    );
    let mut obj = LoadedObject::from_object(o.clone(), LoadOptions::default()).unwrap();
    // Unknown helper 1000: rejected at load.
    let e = obj.verify_program("h").unwrap_err();
    assert!(
        e.to_string().contains("helper 1000 is not registered"),
        "{e}"
    );
    obj.register_helper(1000, "double", |_, a| Ok(a[0] * 2));
    obj.register_helper(8, "cpu", |_, _| Ok(2));
    for tier in tiers() {
        assert_eq!(
            run_on(&obj, "h", tier, &CompileOptions::default(), &mut []),
            Ok(42),
            "{tier}"
        );
    }
    assert!(obj.helper_ids().contains(&1000));
}

#[test]
fn map_errors_are_typed() {
    let o = object(
        vec![],
        vec![map("big", MapKind::Array, 4, 1 << 20, 1 << 20)],
    );
    let e = LoadedObject::from_object(o, LoadOptions::default()).unwrap_err();
    assert!(
        matches!(e, ObjectError::Map { ref map, .. } if map == "big"),
        "{e}"
    );
    let o = object(vec![], vec![map("mim", MapKind::Other(12), 4, 4, 1)]);
    let e = LoadedObject::from_object(o, LoadOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "map `mim`: creation is not supported on type_12 maps"
    );
    let mut bad = map("jmp", MapKind::ProgArray, 4, 4, 1);
    bad.prog_slots = vec![(0, "missing".into())];
    let e =
        LoadedObject::from_object(object(vec![], vec![bad]), LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("`missing`, which is not an entry program"),
        "{e}"
    );
}

#[test]
fn nested_bpf_loop_callbacks_are_bounded() {
    let make = || {
        let cb = "mov %r1, 1\nlddw %r2, func cb\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit";
        let o = object(vec![program("nest", &format!("{cb}\ncb:\n{cb}"))], vec![]);
        LoadedObject::from_object(o, LoadOptions::default()).unwrap()
    };
    // A callback calling bpf_loop on itself: 8 levels, then a call-depth trap.
    assert_eq!(
        each_tier(make, "nest", &[]),
        Err(Trap::CallDepthExceeded { pc: 5, limit: 8 })
    );
}

/// Generated code checks an access to the extra region that the last
/// out-of-line check allowed inline (`VmCtx::last_region_*`). That must
/// never allow more than the regions do: a store after a load of a
/// read-only region, an access crossing the remembered region's end, or
/// one just below it still traps, on every tier.
#[test]
fn remembered_region_allows_no_more_than_the_regions() {
    let mut host = Box::new([0u8; 64]);
    host[8..24].copy_from_slice(b"writable region.");
    host[40..56].copy_from_slice(b"read-only region");
    let a = host.as_ptr() as u64 + 8;
    let b = host.as_ptr() as u64 + 40;
    let make = || {
        let programs = [
            (
                "mixed",
                format!(
                    "lddw %r1, {a:#x}\nlddw %r2, {b:#x}\nldxdw %r0, [%r1+0]\nstxdw [%r1+8], %r0\n\
                     ldxdw %r3, [%r2+0]\nstxdw [%r1+0], %r3\nldxdw %r4, [%r2+8]\nadd %r0, %r4\nexit"
                ),
            ),
            (
                "store_after_load",
                format!("lddw %r2, {b:#x}\nldxdw %r0, [%r2+0]\nstxdw [%r2+0], %r0\nexit"),
            ),
            (
                "crosses_end",
                format!("lddw %r1, {a:#x}\nldxdw %r0, [%r1+0]\nldxdw %r0, [%r1+12]\nexit"),
            ),
            (
                "below_start",
                format!("lddw %r1, {a:#x}\nldxdw %r0, [%r1+8]\nldxb %r0, [%r1-1]\nexit"),
            ),
        ];
        let o = object(
            programs.iter().map(|(n, src)| program(n, src)).collect(),
            vec![],
        );
        let mut obj = LoadedObject::from_object(o, LoadOptions::default()).unwrap();
        // SAFETY: `host` outlives every run of this test.
        unsafe {
            obj.register_region(Region {
                start: a,
                len: 16,
                writable: 1,
            });
            obj.register_region(Region {
                start: b,
                len: 16,
                writable: 0,
            });
        }
        obj
    };
    let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap());
    for tier in tiers() {
        let opts = CompileOptions::default();
        let obj = make();
        assert_eq!(
            run_on(&obj, "mixed", tier, &opts, &mut []),
            Ok(word(b"writable").wrapping_add(word(b"y region"))),
            "{tier}"
        );
        assert_eq!(&host[8..24], b"read-onlwritable", "{tier}");
        host[8..24].copy_from_slice(b"writable region.");
        let trap = |pc, size, write| {
            Err(Trap::OutOfBounds {
                pc,
                addr: 0,
                size,
                write,
            })
        };
        let run = |name| run_on(&obj, name, tier, &opts, &mut []).map_err(host_addr_free);
        assert_eq!(run("store_after_load"), trap(3, 8, true), "{tier}");
        assert_eq!(run("crosses_end"), trap(3, 8, false), "{tier}");
        assert_eq!(run("below_start"), trap(3, 1, false), "{tier}");
        assert_eq!(&host[40..56], b"read-only region", "{tier}");
    }
}

/// Runs `name` of a fresh object on the interpreter, on Cranelift at
/// levels 0, 1 and 3 and on LLVM: all must agree (host trap addresses
/// zeroed).
fn each_level(make: &impl Fn() -> LoadedObject, name: &str, mem: &[u8]) -> Result<u64, Trap> {
    let expected = run_on(
        &make(),
        name,
        Tier::Interp,
        &CompileOptions::default(),
        &mut mem.to_vec(),
    )
    .map_err(host_addr_free);
    for tier in tiers() {
        let levels: &[u8] = match tier {
            Tier::Interp => &[],
            Tier::Cranelift => &[0, 1, 3],
            _ => &[3],
        };
        for &opt_level in levels {
            let opts = CompileOptions {
                opt_level,
                ..CompileOptions::default()
            };
            let got = run_on(&make(), name, tier, &opts, &mut mem.to_vec()).map_err(host_addr_free);
            assert_eq!(
                got, expected,
                "{name} (input {mem:?}): {tier} at level {opt_level}"
            );
        }
    }
    expected
}

/// Accesses through a lookup's result and through global-data addresses
/// (which tier 0 leaves unchecked when it can prove them inside an
/// array map's values): the edges of a value, of the map's values, a
/// result that may be 0, read-only maps, pointer arithmetic, atomics, and
/// a register whose value differs between two paths into a block.
#[test]
fn accesses_through_lookup_results_and_global_addresses() {
    let make = || {
        let rw = map("a", MapKind::Array, 4, 8, 4);
        let mut ro = map("ro", MapKind::Array, 4, 12, 2);
        ro.flags = BPF_F_RDONLY_PROG;
        ro.data = Some(vec![9; 12]);
        let lookup = |m: u32, key: i32, body: &str| {
            format!(
                "mov %r6, %r2\nstw [%r10-4], {key}\nlddw %r1, map_fd {m}\nmov %r2, %r10\nadd %r2, -4\ncall 1\n{body}"
            )
        };
        let cases = [
            ("no_test_miss", lookup(0, 9, "ldxdw %r0, [%r0]\nexit")),
            ("no_test_hit", lookup(0, 1, "ldxdw %r0, [%r0]\nexit")),
            ("no_test_miss_plus_8", lookup(0, 9, "add %r0, 8\nldxdw %r0, [%r0]\nexit")),
            ("no_test_hit_plus_8", lookup(0, 1, "add %r0, 8\nldxdw %r0, [%r0]\nexit")),
            ("next_value", lookup(0, 2, "jeq %r0, 0, +1\nldxdw %r0, [%r0+8]\nexit")),
            ("past_the_values", lookup(0, 3, "jeq %r0, 0, +1\nldxdw %r0, [%r0+8]\nexit")),
            ("before_the_values", lookup(0, 0, "jeq %r0, 0, +1\nldxdw %r0, [%r0-8]\nexit")),
            ("inside_after_add", lookup(0, 3, "jeq %r0, 0, +2\nadd %r0, 4\nldxw %r0, [%r0]\nexit")),
            ("across_after_add", lookup(0, 3, "jeq %r0, 0, +2\nadd %r0, 6\nldxw %r0, [%r0]\nexit")),
            ("store_and_load", lookup(0, 3, "jeq %r0, 0, +3\nstdw [%r0], 77\nmov %r7, %r0\nldxdw %r0, [%r7]\nexit")),
            ("read_only_store", lookup(1, 1, "jeq %r0, 0, +1\nstdw [%r0], 1\nexit")),
            ("read_only_padding", lookup(1, 1, "jeq %r0, 0, +1\nldxw %r0, [%r0+12]\nexit")),
            ("read_only_load", lookup(1, 0, "jeq %r0, 0, +1\nldxw %r0, [%r0+8]\nexit")),
            ("atomic", lookup(0, 1, "jeq %r0, 0, +3\nmov %r1, 5\nlock fetch add [%r0], %r1\nmov %r0, %r1\nexit")),
            ("atomic_misaligned", lookup(0, 1, "jeq %r0, 0, +2\nmov %r1, 5\nlock add [%r0+4], %r1\nexit")),
            ("atomic_read_only", lookup(1, 1, "jeq %r0, 0, +2\nmov %r1, 5\nlock add32 [%r0], %r1\nexit")),
            // r7 is the value on the fall-through path only.
            ("merge", lookup(0, 1, "jeq %r0, 0, +4\nmov %r7, 16\njne %r6, 0, +1\nmov %r7, %r0\nldxdw %r0, [%r7]\nexit")),
            ("global", "lddw %r1, map_value 0 0\nldxdw %r0, [%r1+24]\nexit".into()),
            ("global_after_add", "lddw %r1, map_value 0 0\nadd %r1, 16\nldxdw %r0, [%r1+8]\nexit".into()),
            ("global_past", "lddw %r1, map_value 0 0\nldxdw %r0, [%r1+25]\nexit".into()),
            ("global_before", "lddw %r1, map_value 0 0\nldxb %r0, [%r1-1]\nexit".into()),
            ("global_read_only_load", "lddw %r1, map_value 1 0\nldxw %r0, [%r1+16]\nexit".into()),
            ("global_read_only_store", "lddw %r1, map_value 1 0\nstw [%r1+16], 1\nexit".into()),
            ("map_handle", "lddw %r1, map_fd 0\nldxb %r0, [%r1]\nexit".into()),
        ];
        let o = object(
            cases.iter().map(|(name, src)| program(name, src)).collect(),
            vec![rw, ro],
        );
        let obj = LoadedObject::from_object(o, LoadOptions::default()).unwrap();
        let a = obj.map("a").unwrap();
        for k in 0u32..4 {
            a.update(&k.to_le_bytes(), &(100 + k as u64).to_le_bytes(), 0)
                .unwrap();
        }
        obj
    };
    // Out of bounds at `addr` (0: a host address), pcs left out.
    let oob_at = |addr: u64, write: bool, size: u32| -> Result<u64, Trap> {
        Err(Trap::OutOfBounds {
            pc: 0,
            addr,
            size,
            write,
        })
    };
    let oob = |write: bool, size: u32| oob_at(0, write, size);
    let no_pc = |r: Result<u64, Trap>| {
        r.map_err(|t| match t {
            Trap::OutOfBounds {
                addr, size, write, ..
            } => Trap::OutOfBounds {
                pc: 0,
                addr: if addr > 0xffff { 0 } else { addr },
                size,
                write,
            },
            t => t,
        })
    };
    let run = |name: &str, mem: &[u8]| no_pc(each_level(&make, name, mem));
    assert_eq!(run("no_test_miss", &[]), oob(false, 8));
    assert_eq!(run("no_test_hit", &[]), Ok(101));
    assert_eq!(run("no_test_miss_plus_8", &[]), oob_at(8, false, 8));
    assert_eq!(run("no_test_hit_plus_8", &[]), Ok(102));
    assert_eq!(run("next_value", &[]), Ok(103));
    assert_eq!(run("past_the_values", &[]), oob(false, 8));
    assert_eq!(run("before_the_values", &[]), oob(false, 8));
    assert_eq!(run("inside_after_add", &[]), Ok(0));
    assert_eq!(
        run("across_after_add", &[]),
        oob(false, 4),
        "bytes 6 to 9 of the last value"
    );
    assert_eq!(run("store_and_load", &[]), Ok(77));
    assert_eq!(run("read_only_store", &[]), oob(true, 8));
    assert_eq!(run("read_only_padding", &[]), Ok(0));
    assert_eq!(run("read_only_load", &[]), Ok(0x0909_0909));
    assert_eq!(run("atomic", &[]), Ok(101));
    assert!(matches!(
        run("atomic_misaligned", &[]),
        Err(Trap::MisalignedAtomic { .. })
    ));
    assert_eq!(run("atomic_read_only", &[]), oob(true, 4));
    assert_eq!(run("merge", &[]), Ok(101));
    assert_eq!(run("merge", &[1]), oob_at(16, false, 8));
    assert_eq!(run("global", &[]), Ok(103));
    assert_eq!(run("global_after_add", &[]), Ok(103));
    assert_eq!(run("global_past", &[]), oob(false, 8));
    assert_eq!(run("global_before", &[]), oob(false, 1));
    assert_eq!(run("global_read_only_load", &[]), Ok(0));
    assert_eq!(run("global_read_only_store", &[]), oob(true, 4));
    assert!(run("map_handle", &[]).is_err());
}
