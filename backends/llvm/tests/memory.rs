//! Compiled code is freed when dropped: 500 compile-and-drop rounds must not
//! grow the process's mappings or resident memory without bound.

mod common;

use bpfvm_engine::backend::{Backend, CompileOptions};
use bpfvm_llvm::{AotBackend, LlvmBackend};

fn statm() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let mut f = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
    (f.next().unwrap_or(0), f.next().unwrap_or(0)) // (size, resident) in pages
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .count()
}

fn churn(backend: &dyn Backend, rounds: usize) {
    // Big enough that a leaked image is several pages.
    let mut text = String::from("mov %r0, 0\n");
    for k in 0..60 {
        text.push_str(&format!("add %r0, {k}\nxor %r0, %r1\nrsh %r0, 1\n"));
    }
    text.push_str("exit");
    let p = common::program(&text);
    let opts = CompileOptions {
        opt_level: 0,
        ..CompileOptions::default()
    };
    for _ in 0..rounds {
        drop(backend.compile(&p, &opts).expect("compiles"));
    }
}

#[test]
fn compiled_code_is_freed() {
    for backend in [&LlvmBackend as &dyn Backend, &AotBackend] {
        churn(backend, 30); // warm up LLVM's one-time state and the allocator
        let (size0, rss0) = statm();
        let maps0 = mappings();
        churn(backend, 500);
        let (size1, rss1) = statm();
        let maps1 = mappings();
        let page = 4096;
        eprintln!(
            "{}: vsize {} -> {} MiB, rss {} -> {} MiB, mappings {maps0} -> {maps1}",
            backend.name(),
            (size0 * page) >> 20,
            (size1 * page) >> 20,
            (rss0 * page) >> 20,
            (rss1 * page) >> 20
        );
        // A leaked AOT image adds two mappings (text and rodata); leaked JIT
        // images (text only) merge, but each adds at least a page.
        assert!(maps1 < maps0 + 100, "mappings grew {maps0} -> {maps1}");
        assert!(
            size1 < size0 + (1 << 20) / page,
            "virtual size grew {size0} -> {size1} pages"
        );
        assert!(
            rss1 < rss0 + (64 << 20) / page,
            "resident memory grew {} -> {} pages",
            rss0,
            rss1
        );
    }
}
