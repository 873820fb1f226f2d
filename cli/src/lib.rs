//! The library behind the `bpfvm` and `bpfvm-plugin` binaries: input
//! loading, hex handling, the load-verify-compile-run pipeline and the
//! error type that decides the exit code.
//!
//! Exit codes (shared by both binaries):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the program trapped at run time |
//! | 2 | usage error, or the input cannot be read |
//! | 3 | the program was rejected at load (parse, assemble, ELF, verify) |
//! | 4 | internal or compile error |

pub mod error;
pub mod exec;
pub mod fuzz;
pub mod hex;
pub mod input;
pub mod object;

pub use error::{exit_code, one_line, CliError};
