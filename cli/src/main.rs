//! `bpfvm`: run, assemble, disassemble and verify eBPF programs.

mod bench;

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use bpfvm::emit::{self, TextOutput};
use bpfvm::engine::backend::{CompileOptions, Outcome, DEFAULT_CALL_DEPTH, MAX_CALL_DEPTH};
use bpfvm::engine::disasm;
use bpfvm::engine::instr::Instr;
use bpfvm::engine::isa::encode_program;
use bpfvm::tier::Tier;
use bpfvm_cli::error::{EXIT_INTERNAL, EXIT_OK, EXIT_TRAPPED};
use bpfvm_cli::exec::{self, EngineRun, TierChoice};
use bpfvm_cli::hex;
use bpfvm_cli::input::{self, Format, Loaded};
use bpfvm_cli::{exit_code, one_line, CliError};
use bpfvm_conformance::data::CaseOptions;
use clap::{Args, Parser, Subcommand};
use serde_json::json;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the program trapped at run time (out-of-bounds access, budget, call depth, ...)
  2  usage error, or the input cannot be read
  3  the program was rejected at load (parse, assemble, ELF, verify)
  4  internal or compile error

Input formats (detected, or forced with --format): a BPF ELF object, a
conformance .data file, hex bytes, assembler text (conformance syntax), or
raw bytecode. FILE `-` reads standard input.";

/// A userspace eBPF virtual machine.
#[derive(Parser)]
#[command(name = "bpfvm", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify, compile and run a program; print r0.
    Run(RunArgs),
    /// Assemble a program to raw bytecode.
    Asm(AsmArgs),
    /// Disassemble a program (llvm-objdump syntax).
    Disasm(InputArgs),
    /// Check a program with the load-time verifier.
    Verify(InputArgs),
    /// Print a program as Cranelift IR, LLVM IR, native assembly or PTX.
    Emit(EmitArgs),
    /// Differential fuzzing: generated programs on every chosen tier against
    /// the interpreter; divergences are minimised and saved as .data tests.
    Fuzz(FuzzArgs),
    /// Write generated programs (those `fuzz` makes) as conformance .data
    /// tests, each expecting the interpreter's outcome.
    Gen(GenArgs),
    /// Compile a program to a relocatable native object (AOT); its entry is
    /// callable from C as `uint64_t bpf_main(void *mem, uint64_t len)`.
    Compile(CompileArgs),
    /// Measure the tier trade-off: compile time, median run time, ratio
    /// to native and to the fastest tier, break-even call counts.
    Bench(bench::BenchArgs),
    /// Show the programs, maps and relocations of a BPF ELF object.
    Inspect(InspectArgs),
}

#[derive(Args)]
struct InspectArgs {
    /// The object file (`-` for standard input).
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum EmitWhat {
    /// Cranelift IR, before and after optimisation.
    Clif,
    /// LLVM IR (optimised unless --unoptimized).
    Llvm,
    /// Native assembly (LLVM).
    Asm,
    /// PTX for nvptx64-nvidia-cuda (see --sm).
    Ptx,
}

#[derive(Args)]
struct CodegenArgs {
    /// Optimisation level (0 to 3) [default: the runtime's level for the
    /// tier: 1 for Cranelift, 3 for LLVM]. LLVM: O0 to O3. Cranelift: 0
    /// compiles fastest, 1 is tier 0's level (no optimiser), 2 and 3 add
    /// Cranelift's optimiser.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u8).range(0..=3))]
    opt: Option<u8>,
    /// Generate code without memory checks.
    #[arg(long)]
    unchecked: bool,
    /// Generate instruction counting for a budget of N.
    #[arg(long, value_name = "N")]
    budget: Option<u64>,
    /// Call-depth limit in frames [default: 8].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_CALL_DEPTH as i64))]
    call_depth: Option<u32>,
}

#[derive(Args)]
struct EmitArgs {
    /// What to print.
    #[arg(value_enum)]
    what: EmitWhat,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    codegen: CodegenArgs,
    /// LLVM IR before the optimisation pipeline.
    #[arg(long)]
    unoptimized: bool,
    /// PTX: the GPU architecture.
    #[arg(long, value_name = "SM", default_value = "sm_70")]
    sm: String,
}

#[derive(Args)]
struct GenArgs {
    /// First seed; program k uses seed + k.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Number of programs.
    #[arg(long, value_name = "N", default_value_t = 100)]
    count: u64,
    /// No helper calls (for runners without the mix helper, id 1, such as the GPU).
    #[arg(long)]
    no_helpers: bool,
    /// Programs that stay in bounds, for unchecked runs.
    #[arg(long)]
    unchecked: bool,
    /// Programs that also access two host regions, through helper 2 (the
    /// conformance harness provides both; see `fuzz --host-regions`).
    #[arg(long, conflicts_with = "no_helpers")]
    host_regions: bool,
    /// Directory to write gen-seed-<seed>.data files to.
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args)]
struct FuzzArgs {
    /// Tiers to compare with the interpreter (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "cranelift")]
    tiers: Vec<Tier>,
    /// Number of programs [default: 10000 unless --duration is given].
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    count: Option<u64>,
    /// Run for this long (e.g. 90s, 10m, 1h).
    #[arg(long, value_name = "D", value_parser = bpfvm_cli::fuzz::parse_duration)]
    duration: Option<std::time::Duration>,
    /// First seed; program k uses seed + k.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Worker threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    jobs: usize,
    /// Write each divergence, minimised, as DIR/fuzz-<tier>-seed-<seed>.data.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
    /// Compile without memory checks (programs then stay in bounds).
    #[arg(long)]
    unchecked: bool,
    /// Programs also load, store and run atomics on two host regions (one
    /// read-only) that they get from a helper: the checked path for memory
    /// other than the input and the stack. Other seeds than without it.
    #[arg(long)]
    host_regions: bool,
    /// Programs start with a test of the input's length (`if len < N goto
    /// end`), after which the JITs leave accesses below N unchecked. Other
    /// seeds than without it.
    #[arg(long)]
    length_guards: bool,
    /// Instruction budget per run (compares the instructions counted too);
    /// 0: none (code without instruction counting, as the runtime compiles
    /// by default; generated programs always end).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    budget: u64,
    /// Optimisation level (0 to 3) of every tier under test [default: each
    /// tier at the runtime's level for it: 1 for Cranelift, 3 for LLVM].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u8).range(0..=3))]
    opt: Option<u8>,
    /// Stop and report a seed whose compile or run has not finished after
    /// this long (minimising a divergence counts as progress); with --save
    /// its program is written as DIR/fuzz-stall-seed-<seed>.bin.
    #[arg(long, value_name = "D", default_value = "120s", value_parser = bpfvm_cli::fuzz::parse_duration)]
    stall: std::time::Duration,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CompileArgs {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    codegen: CodegenArgs,
    /// The object file to write.
    #[arg(short, long, value_name = "OUT.o")]
    output: PathBuf,
    /// Target triple (default: the host).
    #[arg(long, value_name = "TRIPLE")]
    target: Option<String>,
    /// Target CPU (default: the host's, or generic for another target).
    #[arg(long, value_name = "CPU")]
    cpu: Option<String>,
    /// Name of the exported entry.
    #[arg(long, value_name = "SYMBOL", default_value = "bpf_main")]
    entry: String,
}

#[derive(Args)]
struct InputArgs {
    /// The program file (`-` for standard input).
    file: PathBuf,
    /// In an ELF object: the program section or function to use.
    #[arg(long, value_name = "NAME")]
    prog: Option<String>,
    /// The input format (detected when omitted).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Input memory from a file, as `--mem FILE` (`bpfvm run prog.o
    /// mem.bin`).
    #[arg(value_name = "MEM", conflicts_with_all = ["mem", "mem_hex"])]
    mem_file: Option<PathBuf>,
    /// Input memory from a file (raw bytes); the program gets r1 = its
    /// address, r2 = its length.
    #[arg(long, value_name = "FILE", conflicts_with = "mem_hex")]
    mem: Option<PathBuf>,
    /// Input memory as hex bytes, e.g. "01 02 ff".
    #[arg(long, value_name = "HEX")]
    mem_hex: Option<String>,
    /// The executor: interp, cranelift, llvm, or auto (start on Cranelift,
    /// move to LLVM after --threshold calls, cross-check against the
    /// interpreter).
    #[arg(long, value_name = "TIER")]
    tier: Option<TierChoice>,
    /// Run the program N times (each run starts from the same input memory).
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: u64,
    /// With --tier auto: calls after which the program moves to tier 1.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    threshold: u64,
    /// With --tier auto: do not cross-check promoted code.
    #[arg(long)]
    no_cross_check: bool,
    /// Instruction budget: the run traps when it is used up.
    #[arg(long, value_name = "N")]
    budget: Option<u64>,
    /// Call-depth limit in frames [default: 8].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_CALL_DEPTH as i64))]
    call_depth: Option<u32>,
    /// Do not check memory accesses (trusted programs only; the
    /// interpreter always checks).
    #[arg(long)]
    unchecked: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// ELF objects: print every map's contents after the run(s).
    #[arg(long)]
    dump_maps: bool,
    /// ELF objects: preload map NAME from FILE (lines of `KEY VALUE` hex,
    /// `@PROG` for a program array's value; see `bpfvm_cli::object`).
    #[arg(long, value_name = "NAME=FILE", value_parser = bpfvm_cli::object::parse_map_init)]
    map_init: Vec<(String, PathBuf)>,
    /// Print the input memory after the run.
    #[arg(long)]
    dump_mem: bool,
    /// AOT objects: the ELF object the program was compiled from (`bpfvm
    /// compile FILE.o --prog NAME`); the run gets its maps, global data and
    /// helpers, as with the ELF object itself (--repeat, --dump-maps,
    /// --map-init).
    #[arg(long, value_name = "FILE")]
    object: Option<PathBuf>,
    /// AOT objects: the entry symbol (`bpfvm compile --entry`) [default:
    /// bpf_main]. Without --object, --prog names it too.
    #[arg(long, value_name = "SYMBOL")]
    entry: Option<String>,
}

impl RunArgs {
    /// The executor: `--tier`, else the interpreter.
    fn tier(&self) -> TierChoice {
        self.tier.unwrap_or(TierChoice::Fixed(Tier::Interp))
    }

    /// Refuses the options an AOT object cannot honour: it runs as it was
    /// compiled (checks, budget, call depth) on no tier but its own.
    fn check_aot_options(&self) -> Result<(), CliError> {
        let set = [
            ("--tier", self.tier.is_some()),
            ("--unchecked", self.unchecked),
            ("--budget", self.budget.is_some()),
            ("--call-depth", self.call_depth.is_some()),
            ("--no-cross-check", self.no_cross_check),
        ];
        match set.iter().find(|(_, on)| *on) {
            Some((flag, _)) => Err(CliError::Usage(format!(
                "{flag} does not apply to an AOT object: it runs with the options it was compiled with (`bpfvm compile`)"
            ))),
            None => Ok(()),
        }
    }
}

#[derive(Args)]
struct AsmArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Output file (default: standard output, which must not be a terminal).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

fn dispatch(command: Command) -> Result<u8> {
    match command {
        Command::Run(args) => run(args),
        Command::Asm(args) => assemble(args),
        Command::Disasm(args) => {
            let loaded = load(&args)?;
            let mut listing = disasm::disassemble(&loaded.insns);
            if !listing.ends_with('\n') {
                listing.push('\n');
            }
            print(&listing)?;
            Ok(EXIT_OK)
        }
        Command::Emit(args) => emit(args),
        Command::Compile(args) => compile(args),
        Command::Fuzz(args) => fuzz(args),
        Command::Gen(args) => {
            let written = bpfvm_cli::fuzz::write_generated(
                &args.out,
                args.seed,
                args.count,
                !args.no_helpers,
                args.host_regions,
                !args.unchecked,
            )?;
            eprintln!("wrote {} programs to {}", written.len(), args.out.display());
            Ok(EXIT_OK)
        }
        Command::Bench(args) => bench::run(args),
        Command::Inspect(args) => {
            print(&bpfvm_cli::object::inspect(
                &read_input(&args.file)?,
                args.json,
            )?)?;
            Ok(EXIT_OK)
        }
        Command::Verify(args) => {
            let bytes = read_input(&args.file)?;
            let (instructions, functions) =
                if args.format.unwrap_or_else(|| input::detect(&bytes)) == Format::Elf {
                    bpfvm_cli::object::verify(&bytes, args.prog.as_deref())?
                } else {
                    let loaded = input::load(&bytes, args.format, args.prog.as_deref())
                        .map_err(CliError::from)?;
                    let program = exec::verify(loaded.insns)?;
                    let instructions = program
                        .instrs()
                        .iter()
                        .filter(|i| **i != Instr::LddwTail)
                        .count();
                    (instructions, program.functions().len())
                };
            print(&format!(
                "ok: {instructions} instruction{}, {functions} function{}\n",
                plural(instructions),
                plural(functions)
            ))?;
            Ok(EXIT_OK)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    let read_err = |source| CliError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(read_err)?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(read_err)
    }
}

/// The input memory: `--mem` (or the MEM argument), else `--mem-hex`,
/// else `fallback` (a `.data` file's `-- mem`), else none.
fn input_memory(args: &RunArgs, fallback: Option<Vec<u8>>) -> Result<Vec<u8>, CliError> {
    match (args.mem.as_ref().or(args.mem_file.as_ref()), &args.mem_hex) {
        (Some(path), _) => read_input(path),
        (None, Some(text)) => {
            hex::parse_hex(text).map_err(|e| CliError::Usage(format!("--mem-hex: {e}")))
        }
        (None, None) => Ok(fallback.unwrap_or_default()),
    }
}

fn load(args: &InputArgs) -> Result<Loaded, CliError> {
    let bytes = read_input(&args.file)?;
    Ok(input::load(&bytes, args.format, args.prog.as_deref())?)
}

/// Writes to standard output; a closed pipe is an error, not a panic.
fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .context("writing to standard output")
}

/// Whether `bytes` looks like an AOT object: a 64-bit little-endian
/// relocatable ELF for x86-64 or AArch64 (not eBPF).
fn is_native_object(bytes: &[u8]) -> bool {
    const ET_REL: u16 = 1;
    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;
    if bytes.len() < 64 || !bytes.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let half = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    half(16) == ET_REL && matches!(half(18), EM_X86_64 | EM_AARCH64)
}

/// Whether the AOT object in `bytes` defines `<entry>_maps_digest`: it was
/// compiled from a program of an ELF object, whose maps it needs.
fn has_maps_digest(bytes: &[u8], entry: &str) -> bool {
    use object::{Object as _, ObjectSymbol as _};
    let name = format!("{entry}_maps_digest");
    object::File::parse(bytes).is_ok_and(|f| {
        f.symbols()
            .any(|s| s.is_definition() && s.name() == Ok(name.as_str()))
    })
}

/// Runs an AOT object made by `bpfvm compile`: loads it, resolves its
/// helpers to the standard ones, runs its entry.
fn run_aot(args: &RunArgs, bytes: &[u8], mut mem: Vec<u8>) -> Result<u8> {
    let entry = args.entry.as_deref().or(args.input.prog.as_deref());
    if has_maps_digest(bytes, entry.unwrap_or("bpf_main")) {
        return Err(CliError::Usage(
            "this AOT object was compiled from a program of an ELF object: give that object with --object FILE.o (its maps and global data)".into(),
        )
        .into());
    }
    let code = emit::load_object(bytes, entry).map_err(emit_error)?;
    let table = bpfvm::standard_test_helpers().table();
    let env = bpfvm::engine::backend::RunEnv {
        helpers: &table,
        regions: &[],
        host: std::ptr::null_mut(),
    };
    let result = bpfvm::engine::backend::execute(code.as_ref(), &env, &mut mem);
    match result {
        Ok(o) => {
            if args.json {
                let v = json!({"result": o.r0, "result_hex": format!("{:#x}", o.r0), "tier": "aot", "budget_left": o.budget_left});
                print(&format!("{v}\n"))?;
            } else {
                print(&format!("r0 = {:#x} ({})\n", o.r0, o.r0))?;
            }
            if args.dump_mem && !args.json {
                print(&dump(&mem))?;
            }
            Ok(EXIT_OK)
        }
        Err(trap) => {
            if args.json {
                let v = json!({"trap": { "kind": trap.kind(), "pc": trap.pc(), "message": trap.to_string() }, "tier": "aot"});
                print(&format!("{v}\n"))?;
            }
            eprintln!("error: {trap}");
            Ok(EXIT_TRAPPED)
        }
    }
}

/// `bpfvm run` on a BPF ELF object: maps, global data and standard helpers;
/// with `aot`, the program is that AOT object of one of its programs.
fn run_object(args: &RunArgs, bytes: &[u8], aot: Option<&[u8]>) -> Result<u8> {
    let mem = input_memory(args, None)?;
    let cfg = bpfvm_cli::object::ObjectRun {
        tier: args.tier(),
        threshold: args.threshold,
        cross_check: !args.no_cross_check,
        checked: !args.unchecked,
        budget: args.budget,
        call_depth: args
            .call_depth
            .map(|n| n as usize)
            .unwrap_or(DEFAULT_CALL_DEPTH),
        repeat: args.repeat,
        map_init: args.map_init.clone(),
        dump_maps: args.dump_maps,
        dump_mem: args.dump_mem,
        json: args.json,
        aot: aot.map(|bytes| bpfvm_cli::object::AotRun {
            bytes: bytes.to_vec(),
            entry: args.entry.clone(),
        }),
    };
    let report = bpfvm_cli::object::run(bytes, args.input.prog.as_deref(), &mem, &cfg)?;
    print(&report.stdout)?;
    for line in &report.stderr {
        eprintln!("{line}");
    }
    Ok(report.exit)
}

fn run(args: RunArgs) -> Result<u8> {
    let bytes = read_input(&args.input.file)?;
    if is_native_object(&bytes) {
        args.check_aot_options()?;
        if let Some(path) = &args.object {
            let object = read_input(path)?;
            return run_object(&args, &object, Some(&bytes));
        }
        if args.dump_maps || !args.map_init.is_empty() {
            return Err(CliError::Usage(
                "--dump-maps and --map-init on an AOT object need --object FILE.o (the ELF object it was compiled from)".into(),
            )
            .into());
        }
        let mem = input_memory(&args, None)?;
        return run_aot(&args, &bytes, mem);
    }
    if args.object.is_some() {
        return Err(CliError::Usage(
            "--object goes with an AOT object (from `bpfvm compile`)".into(),
        )
        .into());
    }
    if args.input.format.unwrap_or_else(|| input::detect(&bytes)) == Format::Elf {
        return run_object(&args, &bytes, None);
    }
    if args.dump_maps || !args.map_init.is_empty() {
        return Err(CliError::Usage("--dump-maps and --map-init need an ELF object".into()).into());
    }
    let loaded = input::load(&bytes, args.input.format, args.input.prog.as_deref())
        .map_err(CliError::from)?;
    let mut mem = input_memory(&args, loaded.mem.clone())?;
    // Command-line settings win over a .data file's `-- options`.
    let run = EngineRun {
        tier: args.tier(),
        checked: !args.unchecked,
        budget: args.budget.or(loaded.options.budget),
        call_depth: args
            .call_depth
            .map(|n| n as usize)
            .or(loaded.options.call_depth)
            .unwrap_or(DEFAULT_CALL_DEPTH),
        repeat: args.repeat,
        threshold: args.threshold,
        cross_check: !args.no_cross_check,
    };
    let out = exec::run_engine(loaded.insns, &run, &mut mem)?;
    let stats = &out.stats;
    let stats_json = exec::stats_json(stats);
    let tier = stats.tier.name();
    match out.result {
        Ok(Outcome { r0, budget_left }) => {
            if args.json {
                let mut v = json!({
                    "result": r0,
                    "result_hex": format!("{r0:#x}"),
                    "tier": tier,
                    "budget_left": budget_left,
                    "stats": stats_json,
                });
                if args.dump_mem {
                    v["mem"] = json!(hex::to_hex(&mem));
                }
                print(&format!("{v}\n"))?;
            } else {
                print(&format!("r0 = {r0:#x} ({r0})\n"))?;
                if args.repeat > 1 || args.tier() == TierChoice::Auto {
                    print(&format!(
                        "tier {tier}; calls: interp {}, cranelift {}, llvm {}; cross-checks {}, mismatches {}\n",
                        stats.calls.interp, stats.calls.cranelift, stats.calls.llvm, stats.cross_checks, stats.mismatches
                    ))?;
                }
                if args.dump_mem {
                    print(&dump(&mem))?;
                }
            }
            Ok(EXIT_OK)
        }
        Err(trap) => {
            if args.json {
                let mut v = json!({
                    "trap": { "kind": trap.kind(), "pc": trap.pc(), "message": trap.to_string() },
                    "tier": tier,
                    "stats": stats_json,
                });
                if args.dump_mem {
                    v["mem"] = json!(hex::to_hex(&mem));
                }
                print(&format!("{v}\n"))?;
            } else if args.dump_mem {
                print(&dump(&mem))?;
            }
            eprintln!("error: {trap}");
            Ok(EXIT_TRAPPED)
        }
    }
}

/// Code generation settings for `tier`: the command line's, else those of
/// a `.data` file's `-- options` (as `run` does), else the defaults (the
/// optimisation level the runtime compiles `tier` at).
fn codegen_options(c: &CodegenArgs, file: &CaseOptions, tier: Tier) -> CompileOptions {
    CompileOptions {
        checked: !c.unchecked,
        budget: c.budget.or(file.budget),
        call_depth: c
            .call_depth
            .map(|n| n as usize)
            .or(file.call_depth)
            .unwrap_or(DEFAULT_CALL_DEPTH),
        opt_level: c
            .opt
            .unwrap_or_else(|| bpfvm::Config::default().opt_level(tier)),
        ..CompileOptions::default()
    }
}

fn emit(args: EmitArgs) -> Result<u8> {
    let bytes = read_input(&args.input.file)?;
    let tier = match args.what {
        EmitWhat::Clif => Tier::Cranelift,
        EmitWhat::Llvm | EmitWhat::Asm | EmitWhat::Ptx => Tier::Llvm,
    };
    let (program, opts) =
        if args.input.format.unwrap_or_else(|| input::detect(&bytes)) == Format::Elf {
            // A program of an ELF object with its maps and global data
            // resolved, compiled as `run` compiles it.
            let opts = codegen_options(&args.codegen, &CaseOptions::default(), tier);
            bpfvm_cli::object::codegen_program(&bytes, args.input.prog.as_deref(), &opts)?
        } else {
            let loaded = input::load(&bytes, args.input.format, args.input.prog.as_deref())
                .map_err(CliError::from)?;
            let opts = codegen_options(&args.codegen, &loaded.options, tier);
            (exec::verify(loaded.insns)?, opts)
        };
    let text = match args.what {
        EmitWhat::Clif => emit::emit_text(&program, &opts, TextOutput::Clif),
        EmitWhat::Llvm => emit::emit_text(
            &program,
            &opts,
            TextOutput::LlvmIr {
                optimized: !args.unoptimized,
            },
        ),
        EmitWhat::Asm => emit::emit_text(&program, &opts, TextOutput::Asm),
        EmitWhat::Ptx => emit::emit_ptx(&program, &opts, &args.sm),
    }
    .map_err(emit_error)?;
    print(&text)?;
    Ok(EXIT_OK)
}

fn compile(args: CompileArgs) -> Result<u8> {
    let bytes = read_input(&args.input.file)?;
    let target = emit::AotTarget {
        entry: Some(args.entry.clone()),
        triple: args.target.clone(),
        cpu: args.cpu.clone(),
    };
    let object = if args.input.format.unwrap_or_else(|| input::detect(&bytes)) == Format::Elf {
        // A program of an ELF object: its maps and global data through the
        // lddw hooks (`bpfvm run OUT.o --object FILE.o` binds them).
        let opts = codegen_options(&args.codegen, &CaseOptions::default(), Tier::Aot);
        bpfvm_cli::object::compile(&bytes, args.input.prog.as_deref(), &opts, &target)?
    } else {
        let loaded = input::load(&bytes, args.input.format, args.input.prog.as_deref())
            .map_err(CliError::from)?;
        let opts = codegen_options(&args.codegen, &loaded.options, Tier::Aot);
        let program = exec::verify(loaded.insns)?;
        emit::compile_object(&program, &opts, &target).map_err(emit_error)?
    };
    std::fs::write(&args.output, &object)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "wrote {} ({} bytes): `uint64_t {}(void *mem, uint64_t len)`",
        args.output.display(),
        object.len(),
        args.entry
    );
    Ok(EXIT_OK)
}

fn fuzz(args: FuzzArgs) -> Result<u8> {
    let config = bpfvm_cli::fuzz::FuzzConfig {
        tiers: args.tiers.clone(),
        count: args.count.or(if args.duration.is_none() {
            Some(10_000)
        } else {
            None
        }),
        duration: args.duration,
        seed: args.seed,
        jobs: args.jobs,
        save: args.save.clone(),
        checked: !args.unchecked,
        host_regions: args.host_regions,
        length_guards: args.length_guards,
        budget: (args.budget > 0).then_some(args.budget),
        opt_level: args.opt,
        stall: args.stall,
        progress: !args.json && std::io::stderr().is_terminal(),
    };
    let report = bpfvm_cli::fuzz::run(&config)?;
    let stalled = report.stalled.as_ref().map(|s| {
        json!({
            "seed": s.seed,
            "seconds": s.after.as_secs_f64(),
            "saved": s.saved.as_ref().map(|p| p.display().to_string()),
        })
    });
    let tiers: Vec<&str> = args.tiers.iter().map(|t| t.name()).collect();
    if args.json {
        let v = json!({
            "programs": report.programs,
            "first_seed": report.first_seed,
            "last_seed": report.first_seed + report.programs.saturating_sub(1),
            "tiers": tiers,
            "checked": !args.unchecked,
            "host_regions": args.host_regions,
            "length_guards": args.length_guards,
            "opt_levels": args
                .tiers
                .iter()
                .map(|&t| (t.name().to_string(), json!(bpfvm_cli::fuzz::opt_level(&config, t))))
                .collect::<serde_json::Map<_, _>>(),
            "seconds": report.elapsed.as_secs_f64(),
            "divergences": report.divergences.iter().map(|d| json!({
                "seed": d.seed, "tier": d.tier, "difference": d.difference
            })).collect::<Vec<_>>(),
            "saved": report.saved.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "stalled": stalled,
            "panic": report.panic.as_ref().map(|p| json!({"seed": p.seed, "message": p.message})),
        });
        print(&format!("{v}\n"))?;
    } else {
        print(&format!(
            "{} programs (seeds {}..{}), interp vs {}: {} divergences in {:.1} s\n",
            report.programs,
            report.first_seed,
            report.first_seed + report.programs,
            args.tiers
                .iter()
                .map(|&t| format!("{} O{}", t.name(), bpfvm_cli::fuzz::opt_level(&config, t)))
                .collect::<Vec<_>>()
                .join(", "),
            report.divergences.len(),
            report.elapsed.as_secs_f64()
        ))?;
        for p in &report.saved {
            print(&format!("saved {}\n", p.display()))?;
        }
        if let Some(s) = &report.stalled {
            print(&format!(
                "seed {} made no progress for {:.1} s (stopped there); reproduce with \
                 `bpfvm fuzz --seed {} --count 1 --tiers {}{} --budget {}{}`\n",
                s.seed,
                s.after.as_secs_f64(),
                s.seed,
                tiers.join(","),
                args.opt.map(|n| format!(" --opt {n}")).unwrap_or_default(),
                args.budget,
                if args.unchecked { " --unchecked" } else { "" },
            ))?;
            if let Some(p) = &s.saved {
                print(&format!("saved its program as {}\n", p.display()))?;
            }
        }
        if let Some(p) = &report.panic {
            print(&format!(
                "seed {}: a tier panicked (stopped there): {}\n",
                p.seed, p.message
            ))?;
        }
    }
    if report.panic.is_some() {
        return Ok(EXIT_INTERNAL);
    }
    Ok(
        if report.divergences.is_empty() && report.stalled.is_none() {
            EXIT_OK
        } else {
            EXIT_TRAPPED
        },
    )
}

fn emit_error(e: emit::EmitError) -> CliError {
    match e {
        emit::EmitError::Tier(t) => CliError::Tier(t),
        emit::EmitError::Compile(c) => CliError::Compile(c),
        emit::EmitError::Load(m) => CliError::Rejected(format!("cannot load the AOT object: {m}")),
    }
}

fn dump(mem: &[u8]) -> String {
    if mem.is_empty() {
        "memory: (none)\n".to_string()
    } else {
        format!("memory ({} bytes):\n{}", mem.len(), hex::hexdump(mem))
    }
}

fn assemble(args: AsmArgs) -> Result<u8> {
    let loaded = load(&args.input)?;
    let bytes = encode_program(&loaded.insns);
    match &args.output {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            if out.is_terminal() {
                return Err(CliError::Usage(
                    "refusing to write binary bytecode to a terminal: use -o FILE or redirect"
                        .into(),
                )
                .into());
            }
            out.write_all(&bytes)
                .and_then(|_| out.flush())
                .context("writing to standard output")?;
        }
    }
    Ok(EXIT_OK)
}
