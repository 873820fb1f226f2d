//! The C API from the outside: the header's functions against the
//! library's exports (so that it cannot drift; its constants and struct
//! layouts are checked by the unit tests in `src/header_check.rs`), and the
//! C and C++ examples compiled with the system compilers (`cc`, `c++`)
//! with warnings as errors, linked against `libbpfvm.so` (and
//! `libbpfvm.a`) and run.
//!
//! The library is built by the test itself (see [`build_library`]) into
//! the target directory of the test executable, `target/<profile>`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use object::{Object, ObjectSymbol};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("capi/ has a parent")
        .to_path_buf()
}

fn header_path() -> PathBuf {
    repo_root().join("capi/include/bpfvm.h")
}

fn header() -> String {
    std::fs::read_to_string(header_path()).expect("read capi/include/bpfvm.h")
}

/// `target/<profile>`: the test runs as `target/<profile>/deps/c_examples-HASH`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// Builds `libbpfvm.so` and `libbpfvm.a` once per test run: cargo does
/// not build a library that is only a cdylib and a staticlib for
/// integration tests, so this runs `cargo build -p bpfvm-capi` with the
/// test's profile, features and target directory (a no-op when fresh).
fn build_library() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = profile_dir();
        let target_dir = dir.parent().expect("target/<profile> has a parent");
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let profile = if profile == "debug" { "dev" } else { profile };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let mut features = Vec::new();
        if cfg!(feature = "cranelift") {
            features.push("cranelift");
        }
        if cfg!(feature = "llvm") {
            features.push("llvm");
        }
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "bpfvm-capi",
            "--lib",
            "--no-default-features",
        ])
        .arg(format!("--features={}", features.join(",")))
        .arg(format!("--profile={profile}"))
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(repo_root());
        let shown = format!("{cmd:?}");
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {shown}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{shown} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
}

/// A library artifact, from `target/<profile>` or its `deps/`, whichever
/// is newer, built first.
fn artifact(name: &str) -> PathBuf {
    build_library();
    let dir = profile_dir();
    let found: Vec<PathBuf> = [dir.join(name), dir.join("deps").join(name)]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    found
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("{name} is not in {} after the build", dir.display()))
}

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capi")
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e} (is a C/C++ compiler installed?)"));
    out
}

fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The header without its comments.
fn header_code() -> String {
    let text = header();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("unterminated comment") + start + 2;
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names `bpfvm_...` followed by `(` in `code`.
fn called_names(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while let Some(k) = code[i..].find("bpfvm_") {
        let start = i + k;
        let word_start =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let mut j = end;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if word_start && j < bytes.len() && bytes[j] == b'(' {
            names.insert(code[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Functions the header declares.
fn header_functions() -> BTreeSet<String> {
    called_names(&header_code())
}

/// `#[no_mangle]` functions of capi/src.
fn source_functions() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let src = repo_root().join("capi/src");
    for entry in std::fs::read_dir(&src).expect("read capi/src") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read source");
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.trim() != "#[no_mangle]" {
                continue;
            }
            let decl = lines.next().unwrap_or("");
            let name = decl
                .split("fn ")
                .nth(1)
                .and_then(|s| s.split('(').next())
                .unwrap_or_else(|| panic!("#[no_mangle] not followed by a fn: {decl}"));
            names.insert(name.to_string());
        }
    }
    names
}

/// Global functions `bpfvm_*` that the shared library exports.
fn exported_functions() -> BTreeSet<String> {
    let data = std::fs::read(artifact("libbpfvm.so")).expect("read libbpfvm.so");
    let file = object::File::parse(&*data).expect("parse libbpfvm.so");
    file.dynamic_symbols()
        .filter(|s| s.is_definition() && s.is_global())
        .filter_map(|s| s.name().ok().map(str::to_string))
        .filter(|n| n.starts_with("bpfvm_"))
        .collect()
}

#[test]
fn header_declares_exactly_what_the_library_exports() {
    let declared = header_functions();
    assert!(
        declared.len() >= 20,
        "too few functions parsed: {declared:?}"
    );
    let exported = exported_functions();
    assert_eq!(
        declared,
        exported,
        "bpfvm.h and libbpfvm.so differ: only in the header {:?}, only in the library {:?}",
        declared.difference(&exported).collect::<Vec<_>>(),
        exported.difference(&declared).collect::<Vec<_>>()
    );
    assert_eq!(
        declared,
        source_functions(),
        "bpfvm.h and capi/src's #[no_mangle] fns differ"
    );
}

/// The C++ compiler checks that the header is also valid C++.
#[test]
fn header_compiles_as_cpp() {
    let dir = tmp();
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let src = dir.join("header.cpp");
    std::fs::write(
        &src,
        "#include <bpfvm.h>\nint main() { return bpfvm_last_error() == nullptr; }\n",
    )
    .expect("write header.cpp");
    ok(Command::new("c++")
        .args([
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-I",
        ])
        .arg(repo_root().join("capi/include"))
        .arg(&src));
}

fn elf_fixture() -> PathBuf {
    repo_root().join("examples/c/sum.bpf.o")
}

/// Links against the shared library, with an rpath to it.
fn link_shared(cmd: &mut Command) -> &mut Command {
    let so = artifact("libbpfvm.so");
    let dir = so.parent().expect("a directory");
    cmd.arg("-L")
        .arg(dir)
        .arg("-lbpfvm")
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .arg("-lpthread")
}

fn check_example(exe: &Path, name: &str) {
    // Cargo's LD_LIBRARY_PATH lists target/<profile> before deps/, and it
    // wins over the rpath (a RUNPATH): without it, the rpath picks the
    // library this test was built with.
    let stdout = ok(Command::new(exe)
        .arg(elf_fixture())
        .current_dir(repo_root())
        .env_remove("LD_LIBRARY_PATH"));
    assert!(
        stdout.contains(&format!("{name}: all ")) && stdout.contains("checks passed"),
        "{stdout}"
    );
}

#[test]
fn c_example_runs() {
    let dir = tmp();
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let exe = dir.join("embed_c");
    ok(link_shared(
        Command::new("cc")
            .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(repo_root().join("capi/include"))
            .arg(repo_root().join("examples/c/embed.c"))
            .arg("-o")
            .arg(&exe),
    ));
    check_example(&exe, "embed.c");
}

#[test]
fn cpp_example_runs() {
    let dir = tmp();
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let exe = dir.join("embed_cpp");
    ok(link_shared(
        Command::new("c++")
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(repo_root().join("capi/include"))
            .arg(repo_root().join("examples/cpp/embed.cpp"))
            .arg("-o")
            .arg(&exe),
    ));
    check_example(&exe, "embed.cpp");
}

/// The native libraries the static library needs (what
/// `rustc --print native-static-libs` lists, plus LLVM's shared library
/// when the llvm tier is in).
fn static_deps() -> Vec<String> {
    let mut deps = Vec::new();
    if cfg!(feature = "llvm") {
        let prefix =
            std::env::var("LLVM_SYS_191_PREFIX").unwrap_or_else(|_| "/usr/lib/llvm-19".into());
        deps.push(format!("-L{prefix}/lib"));
        deps.push("-lLLVM-19".into());
        deps.push(format!("-Wl,-rpath,{prefix}/lib"));
    }
    for lib in [
        "-lgcc_s",
        "-lutil",
        "-lrt",
        "-lpthread",
        "-lm",
        "-ldl",
        "-lc",
    ] {
        deps.push(lib.into());
    }
    deps
}

#[test]
fn c_example_links_statically() {
    let dir = tmp();
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let exe = dir.join("embed_c_static");
    ok(Command::new("cc")
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(repo_root().join("capi/include"))
        .arg(repo_root().join("examples/c/embed.c"))
        .arg(artifact("libbpfvm.a"))
        .args(static_deps())
        .arg("-o")
        .arg(&exe));
    check_example(&exe, "embed.c");
}
