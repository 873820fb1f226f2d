//! `bpfvm inspect` and `bpfvm run` for BPF ELF objects: programs with
//! maps, global data, tail calls and the standard helpers, through
//! `bpfvm::object::LoadedObject`.
//!
//! `--map-init NAME=FILE` preloads map NAME from FILE: one entry per line,
//! `KEY VALUE`, each a run of hex digits (two per byte, in memory order,
//! optionally `0x`-prefixed), e.g. `01000000 2a00000000000000` for key 1,
//! value 42 of a `u32 -> u64` map. For a program array the value may be
//! `@NAME`, the program named NAME. Blank lines and lines starting with
//! `#` are skipped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bpfvm::engine::backend::CompileOptions;
use bpfvm::engine::elf::{self, Object};
use bpfvm::object::{LoadOptions, LoadedObject};
use bpfvm::tier::Tier;
use serde_json::{json, Value};

use crate::error::{CliError, EXIT_OK, EXIT_TRAPPED};
use crate::exec::{self, TierChoice};
use crate::hex;
use crate::input;

/// How `bpfvm run` runs a program of an object.
#[derive(Clone, Debug)]
pub struct ObjectRun {
    /// One tier, or `auto`: the runtime's tiered engine with the object's
    /// maps and helpers.
    pub tier: TierChoice,
    /// With `auto`: calls after which the program moves to tier 1.
    pub threshold: u64,
    /// With `auto`: cross-check promoted code when the engine can (see
    /// `Engine::cross_checks_possible`).
    pub cross_check: bool,
    pub checked: bool,
    pub budget: Option<u64>,
    pub call_depth: usize,
    /// Runs; each starts from the same input memory, maps keep their state.
    pub repeat: u64,
    /// `(map name, file)` to preload.
    pub map_init: Vec<(String, PathBuf)>,
    pub dump_maps: bool,
    pub dump_mem: bool,
    pub json: bool,
    /// An AOT object of one of the object's programs (`bpfvm compile`) to
    /// run instead of a tier.
    pub aot: Option<AotRun>,
}

/// An AOT object to run with an ELF object's maps.
#[derive(Clone, Debug)]
pub struct AotRun {
    pub bytes: Vec<u8>,
    /// Its entry symbol (`bpf_main` when `None`).
    pub entry: Option<String>,
}

/// What a run printed and its exit code.
pub struct Report {
    pub exit: u8,
    pub stdout: String,
    /// Trace lines and the trap message (for standard error).
    pub stderr: Vec<String>,
}

/// Parses a `--map-init` argument, `NAME=FILE`.
pub fn parse_map_init(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("`{arg}` is not NAME=FILE")),
    }
}

fn usage(msg: String) -> CliError {
    CliError::Usage(msg)
}

/// Parses one hex token (`0x` prefix allowed) into bytes.
fn hex_token(t: &str) -> Option<Vec<u8>> {
    let d = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if d.is_empty() || !d.len().is_multiple_of(2) {
        return None;
    }
    hex::parse_hex(d).ok()
}

/// Preloads `map` from the text of a `--map-init` file.
pub fn init_map(
    obj: &LoadedObject,
    name: &str,
    path: &Path,
    text: &str,
) -> Result<usize, CliError> {
    let map = obj
        .map(name)
        .ok_or_else(|| usage(format!("--map-init: the object has no map `{name}`")))?;
    let mut n = 0;
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("--map-init {}:{}", path.display(), k + 1);
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(usage(format!("{}: expected `KEY VALUE`", at())));
        };
        let key = hex_token(key).ok_or_else(|| usage(format!("{}: bad key `{key}`", at())))?;
        let value = match value.strip_prefix('@') {
            Some(prog) => obj
                .program_id(prog)
                .ok_or_else(|| usage(format!("{}: no program `{prog}`", at())))?
                .to_le_bytes()
                .to_vec(),
            None => {
                hex_token(value).ok_or_else(|| usage(format!("{}: bad value `{value}`", at())))?
            }
        };
        map.update(&key, &value, 0)
            .map_err(|e| usage(format!("{}: map `{name}`: {e}", at())))?;
        n += 1;
    }
    Ok(n)
}

/// The maps' contents as JSON: `{"NAME": [[key_hex, value_hex], ...]}`.
pub fn maps_json(obj: &LoadedObject) -> Value {
    let mut m = serde_json::Map::new();
    for (name, entries) in obj.dump_maps() {
        let list: Vec<Value> = entries
            .iter()
            .map(|(k, v)| json!([hex::to_hex(k), hex::to_hex(v)]))
            .collect();
        m.insert(name, Value::Array(list));
    }
    Value::Object(m)
}

fn maps_text(obj: &LoadedObject) -> String {
    let mut out = String::new();
    for m in obj.maps().iter() {
        let entries = m.entries();
        out.push_str(&format!(
            "map {} ({}, {} entr{}):\n",
            m.name(),
            m.kind().name(),
            entries.len(),
            if entries.len() == 1 { "y" } else { "ies" }
        ));
        for (k, v) in entries {
            out.push_str(&format!("  {}: {}\n", hex::to_hex(&k), hex::to_hex(&v)));
        }
    }
    out
}

/// The program `prog` names, or the object's only one.
fn program_name(obj: &LoadedObject, prog: Option<&str>) -> Result<String, CliError> {
    Ok(match prog {
        Some(p) => p.to_string(),
        None => input::select_program(obj.object())?.name.clone(),
    })
}

/// Runs a program of the object in `bytes` over `mem`.
pub fn run(
    bytes: &[u8],
    prog: Option<&str>,
    mem: &[u8],
    cfg: &ObjectRun,
) -> Result<Report, CliError> {
    let trace = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = trace.clone();
    let opts = LoadOptions {
        trace: Some(Arc::new(move |line: &str| {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(line.to_string())
        })),
        ..LoadOptions::default()
    };
    let obj = LoadedObject::load_with(bytes, opts)?;
    let name = match (prog, &cfg.aot) {
        // With an AOT object the program only names the run (which one the
        // object was compiled from is what its digest checks); it must exist.
        (Some(p), Some(_)) if obj.program_id(p).is_none() => {
            return Err(usage(format!("the object has no program `{p}`")));
        }
        (None, Some(_)) => "bpf_main".to_string(),
        (p, _) => program_name(&obj, p)?,
    };
    for (map, path) in &cfg.map_init {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        init_map(&obj, map, path, &text)?;
    }
    let copts = CompileOptions {
        checked: cfg.checked,
        budget: cfg.budget,
        call_depth: cfg.call_depth,
        ..CompileOptions::default()
    };
    let runs = match (&cfg.aot, cfg.tier) {
        (Some(aot), _) => run_aot(&obj, aot, mem, cfg.repeat)?,
        (None, TierChoice::Fixed(tier)) => run_fixed(&obj, &name, tier, &copts, mem, cfg.repeat)?,
        (None, TierChoice::Auto) => run_tiered(&obj, &name, &copts, mem, cfg)?,
    };
    let Runs {
        result,
        last,
        tier,
        stats,
        cross_checks_off,
    } = runs;
    let trace = trace.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut stderr: Vec<String> = if cfg.json {
        Vec::new()
    } else {
        trace
            .iter()
            .map(|l| format!("bpf_trace_printk: {l}"))
            .collect()
    };
    let (exit, mut v, mut text) = match &result {
        Ok(o) => (
            EXIT_OK,
            json!({
                "result": o.r0,
                "result_hex": format!("{:#x}", o.r0),
                "tier": tier,
                "program": name,
                "budget_left": o.budget_left,
            }),
            format!("r0 = {:#x} ({})\n", o.r0, o.r0),
        ),
        Err(trap) => {
            stderr.push(format!("error: {trap}"));
            (
                EXIT_TRAPPED,
                json!({
                    "trap": { "kind": trap.kind(), "pc": trap.pc(), "message": trap.to_string() },
                    "tier": tier,
                    "program": name,
                }),
                String::new(),
            )
        }
    };
    if let Some(stats) = &stats {
        v["stats"] = exec::stats_json(stats);
        if cross_checks_off {
            let why = "cross-checks are off: the object's maps and global data are writable memory that a reference run would write a second time";
            v["cross_check"] = json!(why);
            if !cfg.json {
                stderr.push(format!("note: {why}"));
            }
        }
        if !cfg.json && exit == EXIT_OK {
            text.push_str(&format!(
                "tier {tier}; calls: interp {}, cranelift {}, llvm {}; cross-checks {}, mismatches {}\n",
                stats.calls.interp,
                stats.calls.cranelift,
                stats.calls.llvm,
                stats.cross_checks,
                stats.mismatches
            ));
        }
    }
    if cfg.json {
        v["trace"] = json!(trace);
        if cfg.dump_maps {
            v["maps"] = maps_json(&obj);
        }
        if cfg.dump_mem {
            v["mem"] = json!(hex::to_hex(&last));
        }
        text = format!("{v}\n");
    } else {
        if cfg.dump_maps {
            text.push_str(&maps_text(&obj));
        }
        if cfg.dump_mem {
            text.push_str(&if last.is_empty() {
                "memory: (none)\n".to_string()
            } else {
                format!("memory ({} bytes):\n{}", last.len(), hex::hexdump(&last))
            });
        }
    }
    Ok(Report {
        exit,
        stdout: text,
        stderr,
    })
}

/// What the runs of `bpfvm run` on an object left: the last result, the
/// last input memory, the tier it ran on, and the engine's statistics
/// (tiered runs only), and whether the engine turned the requested
/// cross-checks off (`Engine::cross_checks_possible`).
struct Runs {
    result: RunResult,
    last: Vec<u8>,
    tier: &'static str,
    stats: Option<bpfvm::Stats>,
    cross_checks_off: bool,
}

type RunResult = Result<bpfvm::engine::backend::Outcome, bpfvm::engine::Trap>;

/// Runs `run` `repeat` times (at least once, stopping at a trap), each
/// time over a fresh copy of `mem`; the last result and memory.
fn repeat_runs(
    mem: &[u8],
    repeat: u64,
    mut run: impl FnMut(&mut [u8]) -> RunResult,
) -> (RunResult, Vec<u8>) {
    let mut last = mem.to_vec();
    let mut result = run(&mut last);
    for _ in 1..repeat.max(1) {
        if result.is_err() {
            break;
        }
        last = mem.to_vec();
        result = run(&mut last);
    }
    (result, last)
}

/// Runs on one tier, `repeat` times (stopping at a trap); maps keep their
/// state between runs, the input memory does not.
fn run_fixed(
    obj: &LoadedObject,
    name: &str,
    tier: Tier,
    copts: &CompileOptions,
    mem: &[u8],
    repeat: u64,
) -> Result<Runs, CliError> {
    // At the level the runtime compiles the tier at, as `run` on bytecode.
    let copts = CompileOptions {
        opt_level: bpfvm::Config::default().opt_level(tier),
        ..copts.clone()
    };
    let prepared = obj.prepare(name, tier, &copts)?;
    let (result, last) = repeat_runs(mem, repeat, |m| prepared.run(m));
    Ok(Runs {
        result,
        last,
        tier: tier.name(),
        stats: None,
        cross_checks_off: false,
    })
}

/// Runs an AOT object of one of `obj`'s programs with `obj`'s maps,
/// `repeat` times; its options (checks, budget, call depth) are those it
/// was compiled with.
fn run_aot(obj: &LoadedObject, aot: &AotRun, mem: &[u8], repeat: u64) -> Result<Runs, CliError> {
    let prepared = obj.prepare_aot(&aot.bytes, aot.entry.as_deref())?;
    let (result, last) = repeat_runs(mem, repeat, |m| prepared.run(m));
    Ok(Runs {
        result,
        last,
        tier: Tier::Aot.name(),
        stats: None,
        cross_checks_off: false,
    })
}

/// Compiles program `prog` (or the only one) of the ELF object in `bytes`
/// to an AOT object whose maps `bpfvm run OUT.o --object FILE.o` binds.
pub fn compile(
    bytes: &[u8],
    prog: Option<&str>,
    opts: &CompileOptions,
    target: &bpfvm::emit::AotTarget,
) -> Result<Vec<u8>, CliError> {
    let obj = LoadedObject::load(bytes)?;
    let name = program_name(&obj, prog)?;
    Ok(obj.compile_aot(&name, opts, target)?)
}

/// Program `prog` (or the only one) of the ELF object in `bytes`, verified
/// with its maps and global data resolved, and the options `run` compiles
/// it with ([`LoadedObject::codegen_inputs`]), for `emit`.
pub fn codegen_program(
    bytes: &[u8],
    prog: Option<&str>,
    opts: &CompileOptions,
) -> Result<(bpfvm::engine::Program, CompileOptions), CliError> {
    let obj = LoadedObject::load(bytes)?;
    let name = program_name(&obj, prog)?;
    Ok(obj.codegen_inputs(&name, opts)?)
}

/// Runs on the runtime's tiered engine: tier 0 first, promoted to tier 1
/// after `cfg.threshold` calls; tail calls and `bpf_loop` callbacks run on
/// tier 0.
fn run_tiered(
    obj: &LoadedObject,
    name: &str,
    copts: &CompileOptions,
    mem: &[u8],
    cfg: &ObjectRun,
) -> Result<Runs, CliError> {
    let mut config = bpfvm::Config::new();
    config
        .memory_checks(cfg.checked)
        .instruction_budget(cfg.budget)
        .call_depth(cfg.call_depth);
    exec::tiered_config(&mut config, cfg.threshold, cfg.cross_check);
    let tier0 = if Tier::Cranelift.is_available() {
        Tier::Cranelift
    } else {
        Tier::Interp
    };
    obj.configure(&mut config, tier0, copts)?;
    let engine = bpfvm::Engine::new(&config);
    let resolver = obj.lddw_resolver(name)?;
    let program = engine
        .load_with(obj.program_insns(name)?, Some(&resolver))
        .map_err(exec::load_error)?;
    let (result, last) = repeat_runs(mem, cfg.repeat, |m| program.run_outcome(m));
    let stats = program.stats();
    Ok(Runs {
        result,
        last,
        tier: stats.tier.name(),
        stats: Some(stats),
        cross_checks_off: cfg.cross_check && !engine.cross_checks_possible(),
    })
}

/// Verifies a program of the object (`bpfvm verify`): (instructions, functions).
pub fn verify(bytes: &[u8], prog: Option<&str>) -> Result<(usize, usize), CliError> {
    let obj = LoadedObject::load(bytes)?;
    let name = program_name(&obj, prog)?;
    let program = obj.verify_program(&name)?;
    let instructions = program
        .instrs()
        .iter()
        .filter(|i| **i != bpfvm::engine::instr::Instr::LddwTail)
        .count();
    Ok((instructions, program.functions().len()))
}

fn reloc_type_name(t: u32) -> &'static str {
    match t {
        elf::R_BPF_64_64 => "R_BPF_64_64",
        elf::R_BPF_64_ABS64 => "R_BPF_64_ABS64",
        elf::R_BPF_64_ABS32 => "R_BPF_64_ABS32",
        elf::R_BPF_64_NODYLD32 => "R_BPF_64_NODYLD32",
        elf::R_BPF_64_32 => "R_BPF_64_32",
        _ => "?",
    }
}

fn origin_name(o: elf::MapOrigin) -> &'static str {
    match o {
        elf::MapOrigin::Btf => "btf",
        elf::MapOrigin::Legacy => "legacy",
        elf::MapOrigin::GlobalData => "global_data",
    }
}

/// `bpfvm inspect`: the programs, maps and relocations of an object.
pub fn inspect(bytes: &[u8], as_json: bool) -> Result<String, CliError> {
    let o = elf::parse(bytes).map_err(input::InputError::from)?;
    Ok(if as_json {
        format!("{}\n", inspect_json(&o))
    } else {
        inspect_text(&o)
    })
}

fn inspect_json(o: &Object) -> Value {
    json!({
        "license": o.license,
        "programs": o.programs.iter().map(|p| json!({
            "name": p.name,
            "section": p.section,
            "offset": p.offset,
            "size": p.size,
            "insns": p.insns.len(),
            "subprograms": p.subprograms.iter().map(|(n, at)| json!({"name": n, "at": at})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "functions": o.functions.iter().map(|f| json!({
            "name": f.name, "section": f.section, "offset": f.offset, "size": f.size, "global": f.global,
        })).collect::<Vec<_>>(),
        "maps": o.maps.iter().enumerate().map(|(i, m)| json!({
            "index": i,
            "name": m.name,
            "type": m.kind.name(),
            "type_id": m.kind.to_u32(),
            "key_size": m.key_size,
            "value_size": m.value_size,
            "max_entries": m.max_entries,
            "flags": m.flags,
            "origin": origin_name(m.origin),
            "section": m.section,
            "offset": m.offset,
            "prog_slots": m.prog_slots.iter().map(|(s, p)| json!([s, p])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "relocations": o.relocations.iter().map(|r| json!({
            "section": r.section,
            "offset": r.offset,
            "type": r.r_type,
            "type_name": reloc_type_name(r.r_type),
            "symbol": r.symbol,
            "target": r.target.to_string(),
        })).collect::<Vec<_>>(),
    })
}

/// Left-aligned columns.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
            .collect();
        out.push_str("  ");
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn inspect_text(o: &Object) -> String {
    let mut out = String::new();
    out.push_str(&format!("programs ({}):\n", o.programs.len()));
    let mut rows = vec![vec!["NAME", "SECTION", "SIZE", "LINKED", "SUB-PROGRAMS"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()];
    for p in &o.programs {
        let subs: Vec<&str> = p.subprograms.iter().map(|(n, _)| n.as_str()).collect();
        rows.push(vec![
            p.name.clone(),
            p.section.clone(),
            format!("{} B", p.size),
            format!("{} insns", p.insns.len()),
            if subs.is_empty() {
                "-".into()
            } else {
                subs.join(", ")
            },
        ]);
    }
    out.push_str(&table(&rows));
    out.push_str(&format!("maps ({}):\n", o.maps.len()));
    let mut rows = vec![vec![
        "#", "NAME", "TYPE", "KEY", "VALUE", "ENTRIES", "FLAGS", "FROM",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>()];
    for (i, m) in o.maps.iter().enumerate() {
        rows.push(vec![
            i.to_string(),
            m.name.clone(),
            m.kind.name(),
            m.key_size.to_string(),
            m.value_size.to_string(),
            m.max_entries.to_string(),
            format!("{:#x}", m.flags),
            format!("{} {}+{:#x}", origin_name(m.origin), m.section, m.offset),
        ]);
    }
    out.push_str(&table(&rows));
    out.push_str(&format!("relocations ({}):\n", o.relocations.len()));
    let mut rows = vec![vec!["SECTION", "OFFSET", "TYPE", "SYMBOL", "TARGET"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()];
    for r in &o.relocations {
        rows.push(vec![
            r.section.clone(),
            format!("{:#x}", r.offset),
            reloc_type_name(r.r_type).to_string(),
            r.symbol.clone(),
            r.target.to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    if let Some(l) = &o.license {
        out.push_str(&format!("license: {l}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_init_arguments() {
        assert_eq!(
            parse_map_init("m=a/b.txt").unwrap(),
            ("m".to_string(), PathBuf::from("a/b.txt"))
        );
        assert!(parse_map_init("m").is_err());
        assert!(parse_map_init("=f").is_err());
        assert_eq!(hex_token("0x0100").unwrap(), vec![1, 0]);
        assert_eq!(hex_token("2a000000").unwrap(), vec![42, 0, 0, 0]);
        assert!(hex_token("abc").is_none());
        assert!(hex_token("zz").is_none());
    }
}
