#[test]
fn dump() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../conformance/fixtures");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    names.sort();
    for p in names {
        let bytes = std::fs::read(&p).unwrap();
        let o = bpfvm_engine::elf::parse(&bytes);
        match o {
            Err(e) => println!("{}: ERROR {e}", p.display()),
            Ok(o) => {
                println!("== {}", p.display());
                for m in &o.maps {
                    println!(
                        "  map {} {:?} k{} v{} n{} f{:#x} slots {:?}",
                        m.name,
                        m.kind,
                        m.key_size,
                        m.value_size,
                        m.max_entries,
                        m.flags,
                        m.prog_slots
                    );
                }
                for pr in &o.programs {
                    println!(
                        "  prog {} ({}) {} insns subs {:?}",
                        pr.name,
                        pr.section,
                        pr.insns.len(),
                        pr.subprograms
                    );
                    print!("{}", bpfvm_engine::disasm::disassemble(&pr.insns));
                }
                for r in &o.relocations {
                    println!(
                        "  rel {} {:#x} t{} {} -> {}",
                        r.section, r.offset, r.r_type, r.symbol, r.target
                    );
                }
            }
        }
    }
}
