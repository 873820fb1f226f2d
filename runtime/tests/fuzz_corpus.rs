//! Replays the ELF loader's fuzz corpus (`fuzz/corpus/elf_loader/`) on
//! stable: every file goes through what the fuzz target does, and none may
//! panic. The fixtures in it must load and run.

use bpfvm::object::load_and_exercise;

#[test]
fn corpus_never_panics() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/elf_loader");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("fuzz corpus directory")
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(files.len() > 50, "the corpus has {} files", files.len());
    let (mut ok, mut errors) = (0, 0);
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus file");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = std::panic::catch_unwind(|| load_and_exercise(&bytes));
        match outcome {
            Err(_) => panic!("{name}: the loader panicked"),
            Ok(Ok(ran)) => {
                ok += 1;
                if name.starts_with("fixture-") {
                    assert!(ran > 0, "{name}: no program ran");
                }
            }
            Ok(Err(e)) => {
                errors += 1;
                assert!(!name.starts_with("fixture-"), "{name}: {e}");
                assert!(!e.to_string().is_empty());
            }
        }
    }
    eprintln!("{} files: {ok} loaded, {errors} rejected", files.len());
    assert!(errors > 0 && ok > 0);
}
