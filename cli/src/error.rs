//! The error type of the command line and the exit code of each kind.

use std::path::PathBuf;

use bpfvm::engine::backend::CompileError;
use bpfvm::engine::verifier::VerifyError;
use bpfvm::engine::Trap;
use bpfvm::object::ObjectError;
use bpfvm::tier::TierError;

use crate::input::InputError;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the program trapped.
pub const EXIT_TRAPPED: u8 = 1;
/// Exit code: usage error or unreadable input.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: rejected at load (parse, assemble, ELF, verify).
pub const EXIT_REJECTED: u8 = 3;
/// Exit code: internal or compile error.
pub const EXIT_INTERNAL: u8 = 4;

/// What can go wrong between reading the input and the end of a run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{}", verify_message(.0))]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Tier(#[from] TierError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Trap(#[from] Trap),
    /// Loading, verifying or compiling a program of an ELF object.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// An input refused for a reason of its own (e.g. a bad AOT object).
    #[error("{0}")]
    Rejected(String),
}

/// A verifier message that always leads with the pc when there is one.
fn verify_message(e: &VerifyError) -> String {
    let text = e.to_string();
    match e.pc() {
        Some(pc) if !text.starts_with("pc ") => format!("pc {pc}: {text}"),
        _ => text,
    }
}

impl CliError {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Read { .. } | CliError::Tier(_) => EXIT_USAGE,
            CliError::Input(e) if e.is_usage() => EXIT_USAGE,
            CliError::Input(_) | CliError::Verify(_) | CliError::Rejected(_) => EXIT_REJECTED,
            CliError::Compile(_) => EXIT_INTERNAL,
            CliError::Trap(_) => EXIT_TRAPPED,
            CliError::Object(ObjectError::Tier(_)) => EXIT_USAGE,
            CliError::Object(ObjectError::Compile(_)) => EXIT_INTERNAL,
            CliError::Object(_) => EXIT_REJECTED,
        }
    }
}

/// The exit code for any error: a [`CliError`]'s own, else internal.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<CliError>()
        .map(CliError::exit_code)
        .unwrap_or(EXIT_INTERNAL)
}

/// The error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    // A `CliError`'s own message already says everything its sources say.
    let text = match e.downcast_ref::<CliError>() {
        Some(c) => c.to_string(),
        None => format!("{e:#}"),
    };
    text.replace(['\n', '\r'], " ")
}
