//! `bpfvm-plugin`: the plugin protocol of the bpf_conformance runner.
//!
//! `bpfvm-plugin [MEMORY] [--tier NAME] [--unchecked]`
//!
//! * MEMORY (the first argument, when it does not start with `--`; it may be
//!   empty): the input memory as hex bytes separated by spaces.
//! * Standard input: the program as hex bytes separated by whitespace.
//! * Options may also arrive as one argument holding several words
//!   (`"--tier interp"`), as the runner passes `--plugin_options`; empty
//!   arguments are ignored.
//!
//! On success it prints r0 as lowercase hex digits without `0x` (the runner
//! parses it with `stoull(.., 16)`) and exits 0. On failure it prints one
//! line on standard error and exits with `bpfvm`'s codes: 1 trapped,
//! 2 usage, 3 rejected at load, 4 internal.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use bpfvm::tier::Tier;
use bpfvm_cli::error::EXIT_OK;
use bpfvm_cli::exec::{self, RunConfig};
use bpfvm_cli::hex::parse_hex;
use bpfvm_cli::input::InputError;
use bpfvm_cli::{exit_code, one_line, CliError};

const USAGE: &str =
    "usage: bpfvm-plugin [MEMORY-HEX] [--tier interp|cranelift|llvm] [--unchecked] < PROGRAM-HEX";

fn main() -> ExitCode {
    match plugin() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Parsed command line.
struct Options {
    memory: String,
    config: RunConfig,
    help: bool,
}

fn usage(msg: String) -> CliError {
    CliError::Usage(format!("{msg}\n{USAGE}"))
}

fn parse_args(args: Vec<String>) -> Result<Options, CliError> {
    let mut args = args.into_iter().peekable();
    let memory = match args.peek() {
        Some(first) if !first.starts_with("--") => args.next().unwrap_or_default(),
        _ => String::new(),
    };
    let mut words = args.flat_map(|a| a.split_whitespace().map(String::from).collect::<Vec<_>>());
    let mut options = Options {
        memory,
        config: RunConfig::default(),
        help: false,
    };
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (word.clone(), None),
        };
        match flag.as_str() {
            "--tier" => {
                let name = inline
                    .or_else(|| words.next())
                    .ok_or_else(|| usage("--tier needs a value".into()))?;
                options.config.tier = name.parse::<Tier>().map_err(|e| usage(e.to_string()))?;
            }
            "--unchecked" if inline.is_none() => options.config.checked = false,
            "--help" | "-h" => options.help = true,
            _ => return Err(usage(format!("unknown option `{word}`"))),
        }
    }
    Ok(options)
}

fn plugin() -> Result<u8> {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| usage(format!("argument {a:?} is not UTF-8")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = parse_args(args)?;
    if options.help {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{USAGE}").context("writing to standard output")?;
        return Ok(EXIT_OK);
    }
    let mut mem = parse_hex(&options.memory).map_err(|e| usage(format!("memory argument: {e}")))?;

    let mut program_text = String::new();
    std::io::stdin()
        .read_to_string(&mut program_text)
        .map_err(|source| CliError::Read {
            path: "<stdin>".into(),
            source,
        })?;
    let bytes = parse_hex(&program_text).map_err(|e| CliError::Input(InputError::Hex(e)))?;
    let insns = bpfvm::engine::isa::decode_program(&bytes)
        .map_err(|e| CliError::Input(InputError::Truncated(e)))?;
    let program = exec::verify(insns)?;
    let out = exec::run(program, &options.config, &mut mem)?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{:x}", out.r0)
        .and_then(|_| stdout.flush())
        .context("writing to standard output")?;
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Options, CliError> {
        parse_args(a.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn memory_then_options_in_any_packing() {
        let o = args(&["00 01  ", "--tier interp"]).unwrap();
        assert_eq!(o.memory, "00 01  ");
        assert_eq!(o.config.tier, Tier::Interp);
        let o = args(&["", ""]).unwrap();
        assert_eq!((o.memory.as_str(), o.config.checked), ("", true));
        let o = args(&["--unchecked", "--tier=interp"]).unwrap();
        assert_eq!((o.memory.as_str(), o.config.checked), ("", false));
        assert!(args(&[]).is_ok());
    }

    #[test]
    fn bad_options_are_usage_errors() {
        for bad in [
            &["", "--elf"][..],
            &["--tier"],
            &["--tier", "jit"],
            &["", "extra"],
        ] {
            let e = args(bad).err().map(|e| e.exit_code());
            assert_eq!(e, Some(bpfvm_cli::error::EXIT_USAGE), "{bad:?}");
        }
    }
}
