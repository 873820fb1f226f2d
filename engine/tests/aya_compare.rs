//! The relocated, linked instructions of the ELF fixtures are the ones
//! aya-obj produces for the same object, when aya is given our map indices
//! as file descriptors. aya-obj 0.3 refuses `tailcall.o` (its BTF for a
//! statically initialised program array, `__array(values, ...)`), so that
//! fixture is checked against values computed by hand from its ELF.

use std::collections::HashSet;

use bpfvm_engine::elf;
use bpfvm_engine::isa::Insn;

/// The fixtures aya-obj 0.3 parses.
const FIXTURES: [&str; 7] = [
    "legacy_maps",
    "xdp_counter",
    "hash_count",
    "ringbuf",
    "calls",
    "printk",
    "loop",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../conformance/fixtures/{name}.o",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn aya_insn(i: &aya_obj::generated::bpf_insn) -> Insn {
    Insn::new(i.code, i.dst_reg(), i.src_reg(), i.off, i.imm)
}

#[test]
fn relocations_match_aya_obj() {
    for name in FIXTURES {
        let bytes = fixture(name);
        let ours = elf::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut aya =
            aya_obj::Object::parse(&bytes).unwrap_or_else(|e| panic!("{name}: aya: {e:?}"));
        let text_sections: HashSet<usize> = aya.functions.keys().map(|(s, _)| *s).collect();
        let maps: Vec<(String, i32, aya_obj::Map)> = aya
            .maps
            .iter()
            .map(|(n, m)| {
                let fd = ours
                    .map_index(n)
                    .unwrap_or_else(|| panic!("{name}: aya has map {n}, we do not"));
                (n.clone(), fd as i32, m.clone())
            })
            .collect();
        assert_eq!(maps.len(), ours.maps.len(), "{name}: map count");
        aya.relocate_maps(
            maps.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)),
            &text_sections,
        )
        .unwrap_or_else(|e| panic!("{name}: aya relocate_maps: {e}"));
        aya.relocate_calls(&text_sections)
            .unwrap_or_else(|e| panic!("{name}: aya relocate_calls: {e}"));
        assert_eq!(
            aya.programs.len(),
            ours.programs.len(),
            "{name}: program count"
        );
        for p in &ours.programs {
            let ap = aya
                .programs
                .get(&p.name)
                .unwrap_or_else(|| panic!("{name}: aya has no program {}", p.name));
            let theirs: Vec<Insn> = aya.functions[&ap.function_key()]
                .instructions
                .iter()
                .map(aya_insn)
                .collect();
            assert_eq!(theirs.len(), p.insns.len(), "{name}/{}: length", p.name);
            for (pc, (a, b)) in p.insns.iter().zip(&theirs).enumerate() {
                assert_eq!(a, b, "{name}/{} pc {pc}", p.name);
            }
        }
    }
}

#[test]
fn tailcall_relocations_by_hand() {
    // From `llvm-objdump -dr tailcall.o`: `entry` (socket/entry) is 16
    // slots; it calls `visit` (.text, 11 slots) at pc 2 through
    // R_BPF_64_32 against `.text` with imm -1 (visit is at .text+0), and
    // loads `jmp_table` (the first map of .maps) at pcs 4 and 9; `visit`
    // loads `visits` (the second) at its pc 3.
    let o = elf::parse(&fixture("tailcall")).unwrap();
    assert_eq!(o.maps[0].name, "jmp_table");
    assert_eq!(o.maps[1].name, "visits");
    assert_eq!(
        o.maps[0].prog_slots,
        vec![(1, "stage1".to_string()), (2, "stage2".to_string())]
    );
    let entry = o.programs.iter().find(|p| p.name == "entry").unwrap();
    assert_eq!(entry.insns.len(), 16 + 11);
    assert_eq!(entry.subprograms, vec![("visit".to_string(), 16)]);
    let call = entry.insns[2];
    assert_eq!((call.code, call.src, call.imm), (0x85, 1, 16 - 2 - 1));
    for pc in [4, 9] {
        let (a, b) = (entry.insns[pc], entry.insns[pc + 1]);
        assert_eq!((a.code, a.src, a.imm, b.imm), (0x18, 1, 0, 0), "pc {pc}");
    }
    let l = entry.insns[16 + 3];
    assert_eq!((l.code, l.src, l.imm), (0x18, 1, 1));
    // Helper calls are left alone.
    assert_eq!(
        (entry.insns[7].code, entry.insns[7].src, entry.insns[7].imm),
        (0x85, 0, 12)
    );
}
