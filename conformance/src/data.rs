//! The `.data` test-vector format (see `shared/bpf_conformance/README.md`).
//!
//! A line containing `--` is a section header. Its keyword is found by
//! substring, in the official runner's order: `asm`, `result`, `mem`, `raw`,
//! `no register offset`, ` c`, `error`; then bpfvm's own `options`. Any
//! other header is an error (the official runner skips such a file). Lines
//! before the first header, and in `no register offset` and ` c` sections,
//! are ignored. `#` starts a comment anywhere on a line; blank lines are
//! ignored.
//!
//! * `-- asm`: assembler text ([`bpfvm::engine::asm::assemble`]).
//! * `-- raw`: whitespace-separated u64 instruction words, `0x` hex or
//!   decimal; wins over `asm` when both are present.
//! * `-- mem`: input memory, whitespace-separated hex bytes.
//! * `-- result`: the expected r0 (last line): hex if it contains `0x`, else
//!   decimal (a leading `-` means two's complement).
//! * `-- error`: the expected error (last line). bpfvm's runner passes a test
//!   when the load error or trap message *contains* this text.
//! * `-- options` (bpfvm extension; the public files never have it), one
//!   setting per line: `budget N` (instruction budget), `call_depth N`
//!   (frames), `checked_only` (the test needs checked memory: skipped on
//!   unchecked executors).

use bpfvm::engine::asm::{self, AsmError};
use bpfvm::engine::isa::Insn;

/// What a test expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The program exits with this r0.
    Result(u64),
    /// Loading or running fails with a message containing this text.
    Error(String),
}

/// Settings from the `-- options` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseOptions {
    /// Instruction budget; `None` runs without one.
    pub budget: Option<u64>,
    /// Call-depth limit in frames; `None` uses the default.
    pub call_depth: Option<usize>,
    /// The test relies on checked memory (it expects an out-of-bounds or
    /// alignment trap): unchecked executors skip it.
    pub checked_only: bool,
}

/// One parsed `.data` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCase {
    /// The file name without `.data`.
    pub name: String,
    /// The program (`raw` if present, else the assembled `asm`), or the
    /// assembler's error, which an `-- error` test may expect.
    pub program: Result<Vec<Insn>, AsmError>,
    /// Input memory (empty when there is no `-- mem`).
    pub mem: Vec<u8>,
    pub expect: Expect,
    pub options: CaseOptions,
}

impl TestCase {
    /// Whether the case can only run with checked memory: it says so in its
    /// options, or it expects a memory trap (running it unchecked would let
    /// a wild access loose in the host).
    pub fn needs_checked_memory(&self) -> bool {
        self.options.checked_only
            || matches!(&self.expect, Expect::Error(e)
                if e.contains("out-of-bounds") || e.contains("not aligned"))
    }
}

/// Why a `.data` file does not parse. Lines are 1-based.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: unknown section header `{text}`")]
    UnknownSection { line: usize, text: String },
    #[error("no `-- asm` or `-- raw` section")]
    NoProgram,
    #[error("no `-- result` or `-- error` section")]
    NoExpectation,
    #[error("both `-- result` and `-- error` sections: a test expects one outcome")]
    BothExpectations,
    #[error("line {line}: invalid result `{text}`")]
    BadResult { line: usize, text: String },
    #[error("line {line}: invalid raw instruction word `{token}`")]
    BadRaw { line: usize, token: String },
    #[error("line {line}: invalid memory byte `{token}` (expected hex, e.g. `0a` or `0x0a`)")]
    BadMem { line: usize, token: String },
    #[error("line {line}: invalid option `{text}` (expected `budget N`, `call_depth N` or `checked_only`)")]
    BadOption { line: usize, text: String },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Ignore,
    Asm,
    Raw,
    Result,
    Mem,
    Error,
    Options,
}

/// Classifies a header line, in the official runner's order.
fn section_of(line: &str) -> Option<Section> {
    const ORDER: [(&str, Section); 8] = [
        ("asm", Section::Asm),
        ("result", Section::Result),
        ("mem", Section::Mem),
        ("raw", Section::Raw),
        ("no register offset", Section::Ignore),
        (" c", Section::Ignore),
        ("error", Section::Error),
        ("options", Section::Options),
    ];
    ORDER
        .iter()
        .find(|(key, _)| line.contains(key))
        .map(|&(_, s)| s)
}

/// The sections of a `.data` file, before checking that it is a complete
/// test (the `bpfvm` command line runs files without an expectation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFile {
    /// The program (`raw` if present, else the assembled `asm`), or the
    /// assembler's error; `None` when the file has neither section.
    pub program: Option<Result<Vec<Insn>, AsmError>>,
    /// Input memory; `None` when there is no `-- mem` section.
    pub mem: Option<Vec<u8>>,
    /// The expectation; `None` when there is no `-- result` or `-- error`.
    pub expect: Option<Expect>,
    pub options: CaseOptions,
}

/// Parses the text of a `.data` file named `name` into a complete test.
pub fn parse(name: &str, text: &str) -> Result<TestCase, ParseError> {
    let file = parse_file(text)?;
    Ok(TestCase {
        name: name.to_string(),
        program: file.program.ok_or(ParseError::NoProgram)?,
        mem: file.mem.unwrap_or_default(),
        expect: file.expect.ok_or(ParseError::NoExpectation)?,
        options: file.options,
    })
}

/// Parses the sections of a `.data` file.
pub fn parse_file(text: &str) -> Result<DataFile, ParseError> {
    let mut section = Section::Ignore;
    // The asm text keeps one line per file line, so that assembler errors
    // name the file's line numbers.
    let mut asm_text = String::new();
    let mut have_asm = false;
    let mut raw: Option<Vec<Insn>> = None;
    let mut mem: Option<Vec<u8>> = None;
    let mut result: Option<(usize, String)> = None;
    let mut error: Option<String> = None;
    let mut options = CaseOptions::default();

    for (idx, full) in text.lines().enumerate() {
        let line_no = idx + 1;
        let full = full.strip_suffix('\r').unwrap_or(full);
        if full.contains("--") {
            section = section_of(full).ok_or_else(|| ParseError::UnknownSection {
                line: line_no,
                text: full.trim().to_string(),
            })?;
            match section {
                Section::Asm => have_asm = true,
                Section::Raw => {
                    raw.get_or_insert_with(Vec::new);
                }
                Section::Mem => {
                    mem.get_or_insert_with(Vec::new);
                }
                _ => {}
            }
            asm_text.push('\n');
            continue;
        }
        let line = full.split('#').next().unwrap_or("").trim();
        if section == Section::Asm {
            asm_text.push_str(line);
        }
        asm_text.push('\n');
        if line.is_empty() {
            continue;
        }
        match section {
            Section::Ignore | Section::Asm => {}
            Section::Raw => {
                let words = raw.get_or_insert_with(Vec::new);
                for token in line.split_whitespace() {
                    let word = parse_u64(token).ok_or_else(|| ParseError::BadRaw {
                        line: line_no,
                        token: token.to_string(),
                    })?;
                    words.push(Insn::from_u64(word));
                }
            }
            Section::Mem => {
                let bytes = mem.get_or_insert_with(Vec::new);
                for token in line.split_whitespace() {
                    bytes.push(parse_hex_byte(token).ok_or_else(|| ParseError::BadMem {
                        line: line_no,
                        token: token.to_string(),
                    })?);
                }
            }
            Section::Result => result = Some((line_no, line.to_string())),
            Section::Error => error = Some(line.to_string()),
            Section::Options => parse_option(line, line_no, &mut options)?,
        }
    }

    let expect = match (result, error) {
        (Some(_), Some(_)) => return Err(ParseError::BothExpectations),
        (None, None) => None,
        (None, Some(e)) => Some(Expect::Error(e)),
        (Some((line, text)), None) => Some(Expect::Result(
            parse_result(&text).ok_or(ParseError::BadResult { line, text })?,
        )),
    };
    let program = match raw {
        Some(words) => Some(Ok(words)),
        None if have_asm => Some(asm::assemble(&asm_text)),
        None => None,
    };
    Ok(DataFile {
        program,
        mem,
        expect,
        options,
    })
}

/// Whether `text` looks like a `.data` file: it has a `-- asm` or `-- raw`
/// section header.
pub fn is_data_file(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("--") && matches!(section_of(l), Some(Section::Asm | Section::Raw))
    })
}

fn parse_option(line: &str, line_no: usize, options: &mut CaseOptions) -> Result<(), ParseError> {
    let bad = || ParseError::BadOption {
        line: line_no,
        text: line.to_string(),
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["budget", n] => options.budget = Some(parse_u64(n).ok_or_else(bad)?),
        ["call_depth", n] => {
            let n = parse_u64(n).ok_or_else(bad)?;
            options.call_depth = Some(usize::try_from(n).map_err(|_| bad())?);
        }
        ["checked_only"] => options.checked_only = true,
        _ => return Err(bad()),
    }
    Ok(())
}

/// A u64 written as `0x` hex or decimal.
fn parse_u64(token: &str) -> Option<u64> {
    match token
        .strip_prefix("0x")
        .or_else(|| token.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => token.parse().ok(),
    }
}

/// A result line: hex when it contains `0x`, else decimal; `-N` is two's
/// complement.
fn parse_result(text: &str) -> Option<u64> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let value = if body.contains("0x") {
        u64::from_str_radix(body.strip_prefix("0x")?, 16).ok()?
    } else {
        body.parse().ok()?
    };
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// One memory byte: one or two hex digits, optionally `0x`-prefixed.
fn parse_hex_byte(token: &str) -> Option<u8> {
    let digits = token
        .strip_prefix("0x")
        .or_else(|| token.strip_prefix("0X"))
        .unwrap_or(token);
    if digits.is_empty() || digits.len() > 2 {
        return None;
    }
    u8::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asm_mem_result() {
        let t = parse(
            "ldxb",
            "# Copyright\n# SPDX-License-Identifier: MIT\n-- asm\nldxb %r0, [%r1+0x2] # load\nexit\n-- mem\naa bb 11\ncc dd\n-- result\n0x11\n",
        )
        .unwrap();
        assert_eq!(t.name, "ldxb");
        assert_eq!(t.program.as_ref().map(|p| p.len()), Ok(2));
        assert_eq!(t.mem, vec![0xaa, 0xbb, 0x11, 0xcc, 0xdd]);
        assert_eq!(t.expect, Expect::Result(0x11));
        assert_eq!(t.options, CaseOptions::default());
    }

    #[test]
    fn raw_wins_over_asm() {
        let t = parse(
            "lddw",
            "-- asm\nmov %r0, 1\nexit\n-- raw\n0x5566778800000018\n0x1122334400000000 149\n-- result\n0x1122334455667788\n",
        )
        .unwrap();
        let p = t.program.unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].imm, 0x55667788);
        assert_eq!(p[2].code, 0x95);
    }

    #[test]
    fn results_decimal_hex_negative() {
        let r = |s: &str| parse("t", &format!("-- asm\nexit\n-- result\n{s}\n")).map(|t| t.expect);
        assert_eq!(r("42"), Ok(Expect::Result(42)));
        assert_eq!(r("0xffffffffffffffff"), Ok(Expect::Result(u64::MAX)));
        assert_eq!(r("-1"), Ok(Expect::Result(u64::MAX)));
        assert!(matches!(
            r("x12"),
            Err(ParseError::BadResult { line: 4, .. })
        ));
    }

    #[test]
    fn sections_are_found_by_substring_in_order() {
        // "no register offset" and " c" sections are ignored.
        let t = parse(
            "t",
            "-- asm\nexit\n-- no register offset\ncall instruction\n-- c\nint x;\n-- result\n0x0\n",
        )
        .unwrap();
        assert_eq!(t.expect, Expect::Result(0));
        let e = parse("t", "-- asm\nexit\n-- bogus\n-- result\n0\n").unwrap_err();
        assert_eq!(
            e,
            ParseError::UnknownSection {
                line: 3,
                text: "-- bogus".into()
            }
        );
    }

    #[test]
    fn error_and_options() {
        let t = parse(
            "loop",
            "-- asm\nja -1\nexit\n-- options\nbudget 1000 # small\ncall_depth 4\nchecked_only\n-- error\ninstruction budget exhausted\n",
        )
        .unwrap();
        assert_eq!(
            t.expect,
            Expect::Error("instruction budget exhausted".into())
        );
        assert_eq!(
            t.options,
            CaseOptions {
                budget: Some(1000),
                call_depth: Some(4),
                checked_only: true
            }
        );
        assert!(t.needs_checked_memory());
        assert!(matches!(
            parse("t", "-- asm\nexit\n-- options\nspeed 9\n-- result\n0\n"),
            Err(ParseError::BadOption { line: 4, .. })
        ));
    }

    #[test]
    fn missing_or_conflicting_sections() {
        assert_eq!(parse("t", "-- result\n0\n"), Err(ParseError::NoProgram));
        assert_eq!(parse("t", "-- asm\nexit\n"), Err(ParseError::NoExpectation));
        assert_eq!(
            parse("t", "-- asm\nexit\n-- result\n0\n-- error\nboom\n"),
            Err(ParseError::BothExpectations)
        );
        assert!(matches!(
            parse("t", "-- asm\nexit\n-- mem\n123\n-- result\n0\n"),
            Err(ParseError::BadMem { line: 4, .. })
        ));
    }

    #[test]
    fn data_files_are_recognised() {
        assert!(is_data_file("# c\n-- asm\nexit\n"));
        assert!(is_data_file("-- raw\n0x95\n"));
        assert!(!is_data_file("mov %r0, 1\nexit\n"));
        let f = parse_file("-- asm\nexit\n").unwrap();
        assert_eq!((f.mem, f.expect), (None, None));
    }

    #[test]
    fn assembler_errors_keep_file_line_numbers() {
        let t = parse(
            "t",
            "# header\n-- asm\nmov %r0, 1\nfrobnicate %r0\nexit\n-- error\nunknown mnemonic\n",
        )
        .unwrap();
        let e = t.program.unwrap_err();
        assert_eq!(e.line, 4, "{e}");
    }
}
