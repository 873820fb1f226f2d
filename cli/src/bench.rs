//! `bpfvm bench`: the tier trade-off of one or more programs, measured in
//! this process: compile time and median run time per tier, the ratio to
//! the native build (for the benchmark programs of `bench/programs`, whose
//! native baseline is linked into `bpfvm`) and to the fastest tier, and
//! the call count at which a tier pays back its longer compile.
//!
//! Self-timed: each tier (and the native build) runs for about `--time`
//! seconds in all, in batches of about 1 ms, the median batch reported.
//! The candidates take turns in 10 rounds, so that the machine's load
//! spreads over all of them alike. Output: a table per program, or with
//! `--json` one JSON object per program and line; `--plot` writes an SVG
//! of the average time per call, (compile + N runs) / N, against the
//! call count N.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bpfvm::engine::isa::Insn;
use bpfvm_bench::{geomean, BenchProgram, Executor, Sampler, Subject, Timing};
use bpfvm_cli::input;
use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde_json::{json, Value};

/// Calls after which the tiered policy promotes (its default threshold).
const TIERED_THRESHOLD: u64 = 1000;

/// Rounds over the candidates (native and each tier) of one program.
const ROUNDS: u32 = 10;

#[derive(Args)]
pub struct BenchArgs {
    /// Program files (ELF objects, .data files, assembler, hex or raw).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Executors to measure, comma separated: interp, cranelift, llvm, aot,
    /// tiered (the tiered runtime after promotion) [default: all in this build].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    tiers: Vec<String>,
    /// Input memory (raw bytes) for every program. Without it, a benchmark
    /// program gets its own input, a .data file its `-- mem`, others none.
    #[arg(long, value_name = "FILE")]
    mem: Option<PathBuf>,
    /// In an ELF object: the program to use (default `bpf_main`, or the only one).
    #[arg(long, value_name = "NAME")]
    prog: Option<String>,
    /// Measure unchecked code (no memory checks; the interpreter always checks).
    #[arg(long)]
    unchecked: bool,
    /// Seconds of runs per tier.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.2)]
    time: f64,
    /// Print JSON, one object per program and line.
    #[arg(long)]
    json: bool,
    /// Write an SVG plot of the trade-off: average time per call,
    /// (compile + N runs) / N, against the number of calls N.
    #[arg(long, value_name = "OUT.svg")]
    plot: Option<PathBuf>,
}

/// One executor's measurements.
struct TierResult {
    name: &'static str,
    compile_ns: f64,
    run: Timing,
}

/// One program's measurements.
struct Report {
    program: String,
    file: PathBuf,
    slots: usize,
    executed: Option<u64>,
    input_bytes: usize,
    result: u64,
    native: Option<Timing>,
    tiers: Vec<TierResult>,
    /// A benchmark program marked trivial (left out of geometric means).
    trivial: bool,
}

impl Report {
    fn tier(&self, name: &str) -> Option<&TierResult> {
        self.tiers.iter().find(|t| t.name == name)
    }

    fn fastest_ns(&self) -> f64 {
        self.tiers
            .iter()
            .map(|t| t.run.median_ns)
            .fold(f64::INFINITY, f64::min)
    }

    /// The tier a tier's compile is weighed against: Cranelift against the
    /// interpreter, the LLVM tiers against Cranelift (tier 0). The tiered
    /// runtime has none: it compiles tier 1 in the background.
    fn base_of(&self, name: &str) -> Option<&TierResult> {
        match name {
            "interp" | "tiered" => None,
            "cranelift" => self.tier("interp"),
            _ => self.tier("cranelift").or_else(|| self.tier("interp")),
        }
    }

    /// Calls after which `t` (compile, then runs) is ahead of its base
    /// tier: `None` when it never is.
    fn break_even(&self, t: &TierResult) -> Option<f64> {
        let base = self.base_of(t.name)?;
        let gain = base.run.median_ns - t.run.median_ns;
        if gain <= 0.0 {
            return None;
        }
        let extra = (t.compile_ns - base.compile_ns).max(0.0);
        Some((extra / gain).ceil().max(1.0))
    }
}

pub fn run(args: BenchArgs) -> Result<u8> {
    let execs = executors(&args.tiers)?;
    if !(args.time > 0.0 && args.time <= 600.0) {
        bail!(bpfvm_cli::CliError::Usage(
            "--time must be between 0 and 600 seconds".into()
        ));
    }
    let target = Duration::from_secs_f64(args.time);
    let mem_override = match &args.mem {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };
    let mut reports = Vec::new();
    for file in &args.files {
        let report = measure(file, &args, &execs, mem_override.as_deref(), target)?;
        if args.json {
            println!("{}", to_json(&report));
        } else {
            print!("{}", to_table(&report));
        }
        reports.push(report);
    }
    if !args.json && reports.len() > 1 {
        print!("{}", summary(&reports));
    }
    if let Some(out) = &args.plot {
        std::fs::write(out, plot(&reports))
            .with_context(|| format!("cannot write {}", out.display()))?;
        if !args.json {
            println!("wrote {}", out.display());
        }
    }
    Ok(0)
}

fn executors(names: &[String]) -> Result<Vec<Executor>> {
    if names.is_empty() {
        return Ok(Executor::ALL
            .into_iter()
            .filter(|e| e.is_available())
            .collect());
    }
    let mut out = Vec::new();
    for n in names {
        let e = Executor::parse(n.trim()).ok_or_else(|| {
            bpfvm_cli::CliError::Usage(format!(
                "unknown tier `{n}` (valid: interp, cranelift, llvm, aot, tiered)"
            ))
        })?;
        if !e.is_available() {
            let what = if e == Executor::Tiered {
                "llvm"
            } else {
                e.name()
            };
            return Err(bpfvm_cli::CliError::Usage(format!(
                "{what} support not compiled in (build bpfvm with the cargo feature `llvm`)"
            ))
            .into());
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// The benchmark program `file` is, by its bytes or its name (`<name>.bpf.o`).
fn known_program(file: &Path, bytes: &[u8]) -> Option<&'static BenchProgram> {
    bpfvm_bench::program_by_object(bytes).or_else(|| {
        let name = file.file_name()?.to_str()?;
        bpfvm_bench::program(name.strip_suffix(".bpf.o").unwrap_or(name))
    })
}

/// A copy of the input at a 64-byte-aligned address, so that every timed
/// candidate (the native build too) sees the same cache-line alignment:
/// with `Vec`'s 16-byte alignment, the native memcpy's vector loop ran
/// 100 or 220 ns depending on where the allocator put its copy.
struct AlignedMem {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedMem {
    const ALIGN: usize = 64;

    fn new(input: &[u8]) -> Self {
        let mut buf = vec![0u8; input.len() + Self::ALIGN];
        let start = (Self::ALIGN - buf.as_ptr() as usize % Self::ALIGN) % Self::ALIGN;
        buf[start..start + input.len()].copy_from_slice(input);
        AlignedMem {
            buf,
            start,
            len: input.len(),
        }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

fn load(file: &Path, bytes: &[u8], prog: Option<&str>) -> Result<(Subject, Option<Vec<u8>>)> {
    let stem = file
        .file_name()
        .and_then(|s| s.to_str())
        .map(|s| {
            s.trim_end_matches(".o")
                .trim_end_matches(".bpf")
                .to_string()
        })
        .unwrap_or_else(|| "program".into());
    if input::detect(bytes) == input::Format::Elf {
        let s = Subject::from_elf(bytes, prog).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        return Ok((s, None));
    }
    let loaded = input::load(bytes, None, prog).map_err(bpfvm_cli::CliError::from)?;
    let insns: Vec<Insn> = loaded.insns;
    let s = Subject::from_insns(&stem, insns).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    Ok((s, loaded.mem))
}

fn measure(
    file: &Path,
    args: &BenchArgs,
    execs: &[Executor],
    mem_override: Option<&[u8]>,
    target: Duration,
) -> Result<Report> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let known = known_program(file, &bytes);
    let (subject, data_mem) = load(file, &bytes, args.prog.as_deref())?;
    let input: Vec<u8> = match (mem_override, known, data_mem) {
        (Some(m), _, _) => m.to_vec(),
        (None, Some(k), _) => (k.input)(),
        (None, None, Some(m)) => m,
        (None, None, None) => Vec::new(),
    };
    // With its own input, a benchmark program must give its expected result.
    let expected = match (mem_override, known) {
        (None, Some(k)) => Some(k.expected),
        _ => None,
    };
    let mut mem = input.clone();
    let (executed, reference) = match subject.count_instructions(&mut mem) {
        Ok((n, r)) => (Some(n), r),
        Err(e) => bail!(
            "{}: the interpreter fails on this input: {e}",
            file.display()
        ),
    };
    if let Some(want) = expected {
        if reference != want {
            bail!(
                "{}: the interpreter returned {reference:#x}, expected {want:#x}",
                file.display()
            );
        }
    }
    // What is timed: the native build (when there is one) and each
    // executor, every one checked against the interpreter's result first.
    type RunFn = Box<dyn FnMut() -> Result<u64, String>>;
    let mut timed: Vec<(&'static str, f64, RunFn)> = Vec::new();
    if let Some(k) = known.filter(|k| k.native.is_some()) {
        let mut mem = AlignedMem::new(&input);
        let r = k.run_native(mem.bytes());
        if r != Some(reference) {
            bail!(
                "{}: the native build returned {r:?}, the interpreter {reference:#x}",
                k.name
            );
        }
        timed.push((
            "native",
            0.0,
            Box::new(move || {
                k.run_native(mem.bytes())
                    .ok_or_else(|| "no native build".to_string())
            }),
        ));
    }
    let checked = !args.unchecked;
    for &exec in execs {
        let (compile_ns, mut runner) = compile_timed(&subject, exec, checked)?;
        let mut mem = AlignedMem::new(&input);
        let r = runner
            .run(mem.bytes())
            .map_err(|t| anyhow!("{} on {}: {t}", subject.name, exec.name()))?;
        if r != reference {
            bail!(
                "{} on {} returned {r:#x}, the interpreter {reference:#x}",
                subject.name,
                exec.name()
            );
        }
        timed.push((
            exec.name(),
            compile_ns,
            Box::new(move || runner.run(mem.bytes()).map_err(|t| t.to_string())),
        ));
    }
    // Rounds: every candidate runs for a slice of its time in each round,
    // so that changes in the machine's load spread over all of them.
    let mut samplers = Vec::new();
    for (name, _, f) in timed.iter_mut() {
        samplers
            .push(Sampler::calibrate(f).map_err(|e| anyhow!("{} on {name}: {e}", subject.name))?);
    }
    let slice = target / ROUNDS;
    for _ in 0..ROUNDS {
        for ((name, _, f), s) in timed.iter_mut().zip(samplers.iter_mut()) {
            s.sample_for(f, slice)
                .map_err(|e| anyhow!("{} on {name}: {e}", subject.name))?;
        }
    }
    let mut native = None;
    let mut tiers = Vec::new();
    for ((name, compile_ns, _), s) in timed.iter().zip(&samplers) {
        let run = s.timing().expect("sampled in every round");
        if *name == "native" {
            native = Some(run);
        } else {
            tiers.push(TierResult {
                name,
                compile_ns: *compile_ns,
                run,
            });
        }
    }
    Ok(Report {
        program: known
            .map(|k| k.name.to_string())
            .unwrap_or_else(|| subject.name.clone()),
        file: file.to_path_buf(),
        slots: subject.len(),
        executed,
        input_bytes: input.len(),
        result: reference,
        native,
        tiers,
        trivial: known.is_some_and(|k| k.trivial),
    })
}

/// Median compile time over up to 5 compiles (fewer when one takes long),
/// back to back, and the code of the last one (the tiered runtime's
/// promoted to tier 1 after the last load, untimed).
fn compile_timed(
    subject: &Subject,
    exec: Executor,
    checked: bool,
) -> Result<(f64, bpfvm_bench::Runner)> {
    let mut times = Vec::new();
    let mut spent = Duration::ZERO;
    let mut last = None;
    while times.len() < 5 && (times.is_empty() || spent < Duration::from_millis(300)) {
        let (runner, t) = subject
            .load(exec, checked)
            .map_err(|e| anyhow!("{} on {}: {e}", subject.name, exec.name()))?;
        spent += t;
        times.push(t.as_nanos() as f64);
        last = Some(runner);
    }
    times.sort_by(f64::total_cmp);
    let runner = last.expect("compiled at least once");
    runner
        .tier_up()
        .map_err(|e| anyhow!("{} on {}: {e}", subject.name, exec.name()))?;
    Ok((times[times.len() / 2], runner))
}

fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn fmt_calls(n: Option<f64>) -> String {
    match n {
        None => "never".into(),
        Some(n) if n < 1e6 => format!("{n:.0}"),
        Some(n) => format!("{n:.2e}"),
    }
}

fn to_table(r: &Report) -> String {
    let mut out = String::new();
    let executed = r
        .executed
        .map(|n| format!(", {n} executed"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n{} ({}): {} instruction slots{executed}, {} bytes of input, r0 = {:#x}",
        r.program,
        r.file.display(),
        r.slots,
        r.input_bytes,
        r.result
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "tier",
        "compile",
        "run (median)",
        "vs native",
        "vs fastest",
        "break-even (calls)",
    ]);
    let fastest = r.fastest_ns();
    if let Some(n) = &r.native {
        t.add_row(vec![
            Cell::new("native (clang -O3)"),
            Cell::new("-"),
            Cell::new(fmt_ns(n.median_ns)).set_alignment(CellAlignment::Right),
            Cell::new("1.00").set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.2}", n.median_ns / fastest)).set_alignment(CellAlignment::Right),
            Cell::new("-"),
        ]);
    }
    for tr in &r.tiers {
        let vs_native = r
            .native
            .map(|n| format!("{:.2}", tr.run.median_ns / n.median_ns))
            .unwrap_or_else(|| "-".into());
        let be = if r.base_of(tr.name).is_some() {
            fmt_calls(r.break_even(tr))
        } else {
            "-".into()
        };
        t.add_row(vec![
            Cell::new(tr.name),
            Cell::new(fmt_ns(tr.compile_ns)).set_alignment(CellAlignment::Right),
            Cell::new(fmt_ns(tr.run.median_ns)).set_alignment(CellAlignment::Right),
            Cell::new(vs_native).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.2}", tr.run.median_ns / fastest))
                .set_alignment(CellAlignment::Right),
            Cell::new(be).set_alignment(CellAlignment::Right),
        ]);
    }
    let _ = writeln!(out, "{t}");
    if let (Some(interp), Some(n)) = (r.tier("interp"), r.executed) {
        if n > 0 {
            let _ = writeln!(
                out,
                "interpreter: {:.2} ns per executed instruction",
                interp.run.median_ns / n as f64
            );
        }
    }
    if let Some(llvm) = r.tier("llvm") {
        if r.tier("cranelift").is_some() {
            let _ = match r.break_even(llvm) {
                Some(n) => writeln!(
                    out,
                    "tier 1 (llvm) pays back its compile time over tier 0 (cranelift) after {} calls",
                    fmt_calls(Some(n))
                ),
                None => writeln!(
                    out,
                    "tier 1 (llvm) never pays back its compile time over tier 0 (cranelift): it does not run faster here"
                ),
            };
        }
    }
    out
}

fn to_json(r: &Report) -> Value {
    let fastest = r.fastest_ns();
    let mut tiers = serde_json::Map::new();
    for t in &r.tiers {
        let mut v = json!({
            "compile_ns": t.compile_ns.round() as u64,
            "run_ns_median": t.run.median_ns,
            "run_ns_min": t.run.min_ns,
            "run_ns_max": t.run.max_ns,
            "runs": t.run.runs,
            "ratio_fastest": t.run.median_ns / fastest,
        });
        if let Some(n) = &r.native {
            v["ratio_native"] = json!(t.run.median_ns / n.median_ns);
        }
        if let Some(base) = r.base_of(t.name) {
            v["break_even_calls"] = json!(r.break_even(t));
            v["break_even_against"] = json!(base.name);
        }
        if let (Some(n), "interp") = (r.executed, t.name) {
            if n > 0 {
                v["ns_per_instruction"] = json!(t.run.median_ns / n as f64);
            }
        }
        tiers.insert(t.name.to_string(), v);
    }
    json!({
        "program": r.program,
        "file": r.file.display().to_string(),
        "instructions": r.slots,
        "executed_instructions": r.executed,
        "input_bytes": r.input_bytes,
        "result": r.result,
        "native": r.native.map(|n| json!({
            "run_ns_median": n.median_ns,
            "runs": n.runs,
            "compiler": bpfvm_bench::native_compiler(),
        })),
        "tiers": Value::Object(tiers),
        "break_even_calls": r.tier("llvm").and_then(|t| r.break_even(t)),
    })
}

/// Geometric means over the programs of several files (but the trivial
/// benchmark programs, whose run time is only call overhead).
fn summary(all: &[Report]) -> String {
    let reports: Vec<&Report> = all.iter().filter(|r| !r.trivial).collect();
    let left_out: Vec<&str> = all
        .iter()
        .filter(|r| r.trivial)
        .map(|r| r.program.as_str())
        .collect();
    let mut names: Vec<&str> = Vec::new();
    for r in &reports {
        for t in &r.tiers {
            if !names.contains(&t.name) {
                names.push(t.name);
            }
        }
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "tier",
        "geomean vs native",
        "geomean vs fastest",
        "geomean compile",
    ]);
    for name in names {
        let vs_native = geomean(reports.iter().filter_map(|r| {
            let n = r.native?;
            Some(r.tier(name)?.run.median_ns / n.median_ns)
        }));
        let vs_fastest = geomean(
            reports
                .iter()
                .filter_map(|r| Some(r.tier(name)?.run.median_ns / r.fastest_ns())),
        );
        let compile = geomean(
            reports
                .iter()
                .filter_map(|r| Some(r.tier(name)?.compile_ns)),
        );
        let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        t.add_row(vec![
            Cell::new(name),
            Cell::new(f(vs_native)).set_alignment(CellAlignment::Right),
            Cell::new(f(vs_fastest)).set_alignment(CellAlignment::Right),
            Cell::new(compile.map(fmt_ns).unwrap_or_else(|| "-".into()))
                .set_alignment(CellAlignment::Right),
        ]);
    }
    let mut out = format!(
        "\n{} programs (geometric means{}):\n{t}\n",
        reports.len(),
        if left_out.is_empty() {
            String::new()
        } else {
            format!("; left out as trivial: {}", left_out.join(", "))
        }
    );
    let per_insn = geomean(reports.iter().filter_map(|r| {
        let n = r.executed.filter(|&n| n > 0)?;
        Some(r.tier("interp")?.run.median_ns / n as f64)
    }));
    if let Some(g) = per_insn {
        let _ = writeln!(out, "interpreter: {g:.2} ns per executed instruction");
    }
    out
}

/// Total time of N calls on a tier: compile once, then N runs. The tiered
/// runtime runs on tier 0 (Cranelift) for its first calls, then on tier 1
/// (compiled in the background, so off the calls' path).
fn total_ns(r: &Report, t: &TierResult, calls: f64) -> f64 {
    if calls <= 0.0 {
        return t.compile_ns;
    }
    if t.name == "tiered" {
        if let Some(cl) = r.tier("cranelift") {
            let early = calls.min(TIERED_THRESHOLD as f64);
            return t.compile_ns + early * cl.run.median_ns + (calls - early) * t.run.median_ns;
        }
    }
    t.compile_ns + calls * t.run.median_ns
}

const COLORS: [&str; 7] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#555555",
];

fn color(name: &str) -> &'static str {
    match name {
        "interp" => COLORS[0],
        "cranelift" => COLORS[1],
        "llvm" => COLORS[2],
        "aot" => COLORS[3],
        "tiered" => COLORS[4],
        "native" => COLORS[6],
        _ => COLORS[5],
    }
}

/// An SVG with one panel per program: the average time per call when a
/// program is called N times, (compile + N runs) / N, against N (both log
/// scales), one line per tier, and the native build (no compile) dashed.
/// Where two lines cross, the tiers' total times are equal: the break-even
/// call count.
fn plot(reports: &[Report]) -> String {
    const W: f64 = 720.0;
    const PH: f64 = 300.0;
    const ML: f64 = 80.0;
    const MR: f64 = 130.0;
    const MT: f64 = 40.0;
    const MB: f64 = 50.0;
    let (x0, x1) = (0.0f64, 7.0f64); // 1 to 10^7 calls
    let mut svg = String::new();
    let height = reports.len().max(1) as f64 * PH;
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{height}" fill="white"/>"#);
    for (k, r) in reports.iter().enumerate() {
        let top = k as f64 * PH;
        let (px0, px1) = (ML, W - MR);
        let (py0, py1) = (top + PH - MB, top + MT);
        let mut series: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
        let steps = 70;
        for t in &r.tiers {
            let pts = (0..=steps)
                .map(|i| {
                    let lx = x0 + (x1 - x0) * i as f64 / steps as f64;
                    let n = 10f64.powf(lx);
                    (lx, total_ns(r, t, n) / n)
                })
                .collect();
            series.push((t.name, pts));
        }
        if let Some(n) = &r.native {
            let pts = (0..=steps)
                .map(|i| {
                    let lx = x0 + (x1 - x0) * i as f64 / steps as f64;
                    (lx, n.median_ns)
                })
                .collect();
            series.push(("native", pts));
        }
        let ys = series.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y));
        let (mut ymin, mut ymax) = (f64::INFINITY, 0.0f64);
        for y in ys {
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
        if !(ymin.is_finite() && ymax > 0.0) {
            continue;
        }
        let (ly0, ly1) = (
            ymin.max(1.0).log10().floor(),
            ymax.log10().ceil().max(ymin.log10().floor() + 1.0),
        );
        let sx = |lx: f64| px0 + (lx - x0) / (x1 - x0) * (px1 - px0);
        let sy = |y: f64| py0 - (y.max(1.0).log10() - ly0) / (ly1 - ly0) * (py0 - py1);
        let _ = writeln!(
            svg,
            r#"<text x="{ML}" y="{}" font-size="13" font-weight="bold">{}: average time per call over N calls, (compile + N runs) / N</text>"#,
            top + 22.0,
            xml(&r.program)
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{px0}" y="{py1}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
            px1 - px0,
            py0 - py1
        );
        for d in 0..=(x1 as i32) {
            let x = sx(d as f64);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{py1}" x2="{x:.1}" y2="{py0}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">1e{d}</text>"##,
                py0 + 14.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">calls (N)</text>"#,
            (px0 + px1) / 2.0,
            py0 + 30.0
        );
        for d in (ly0 as i32)..=(ly1 as i32) {
            let y = sy(10f64.powi(d));
            let _ = writeln!(
                svg,
                r##"<line x1="{px0}" y1="{y:.1}" x2="{px1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                px0 - 4.0,
                y + 4.0,
                axis_ns(10f64.powi(d))
            );
        }
        for (j, (name, pts)) in series.iter().enumerate() {
            let path: Vec<String> = pts
                .iter()
                .map(|&(lx, y)| format!("{:.1},{:.1}", sx(lx), sy(y)))
                .collect();
            let dash = if *name == "native" {
                r#" stroke-dasharray="5,4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.8"{dash}/>"#,
                path.join(" "),
                color(name)
            );
            let ly = py1 + 14.0 + j as f64 * 16.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                px1 + 8.0,
                px1 + 28.0,
                color(name),
                px1 + 32.0,
                ly + 4.0,
                xml(name)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// A power of ten of nanoseconds as an axis label (`10 ns`, `1 ms`, `100 s`).
fn axis_ns(ns: f64) -> String {
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    format!("{v:.0} {unit}")
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
