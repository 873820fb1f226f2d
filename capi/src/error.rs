//! Error codes, the thread-local last error, and [`guard`]: the wrapper
//! every exported function runs its body in, so that no panic unwinds into
//! C and every failure becomes a code plus a message.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The error codes (`enum bpfvm_error` in `bpfvm.h`).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Success.
    Ok = 0,
    /// A required pointer argument is NULL.
    Null = -1,
    /// An argument is out of range: an unknown tier or policy, a
    /// configuration not made by `bpfvm_config_init`, text that is not UTF-8.
    Invalid = -2,
    /// A handle is not live: destroyed, never created, or of the other kind.
    Handle = -3,
    /// The program was rejected at load (truncated bytecode, assembler
    /// error, verifier, an `lddw` the hooks cannot resolve).
    Load = -4,
    /// The ELF object cannot be parsed, or has no program of that name.
    Elf = -5,
    /// A tier failed to compile the program.
    Compile = -6,
    /// The operation needs a tier this build lacks (llvm, cranelift), or
    /// does not apply to the program (emitting from an AOT-loaded program).
    Unsupported = -7,
    /// The program trapped; `struct bpfvm_trap` says where and why.
    Trap = -8,
    /// The caller's buffer is too small; `*needed` holds the size needed.
    BufferTooSmall = -9,
    /// An AOT object cannot be loaded.
    Aot = -10,
    /// An internal error (a bug in bpfvm) was caught before it reached C.
    Internal = -11,
}

impl Code {
    /// Every code, for the header check and `bpfvm_error_name`.
    pub const ALL: [Code; 12] = [
        Code::Ok,
        Code::Null,
        Code::Invalid,
        Code::Handle,
        Code::Load,
        Code::Elf,
        Code::Compile,
        Code::Unsupported,
        Code::Trap,
        Code::BufferTooSmall,
        Code::Aot,
        Code::Internal,
    ];

    /// The constant's name in `bpfvm.h`.
    pub fn name(self) -> &'static CStr {
        match self {
            Code::Ok => c"BPFVM_OK",
            Code::Null => c"BPFVM_E_NULL",
            Code::Invalid => c"BPFVM_E_INVALID",
            Code::Handle => c"BPFVM_E_HANDLE",
            Code::Load => c"BPFVM_E_LOAD",
            Code::Elf => c"BPFVM_E_ELF",
            Code::Compile => c"BPFVM_E_COMPILE",
            Code::Unsupported => c"BPFVM_E_UNSUPPORTED",
            Code::Trap => c"BPFVM_E_TRAP",
            Code::BufferTooSmall => c"BPFVM_E_BUFFER_TOO_SMALL",
            Code::Aot => c"BPFVM_E_AOT",
            Code::Internal => c"BPFVM_E_INTERNAL",
        }
    }
}

/// A failure: a code and the text `bpfvm_last_error` will return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    /// A NULL `what` argument.
    pub fn null(what: &str) -> Error {
        Error::new(Code::Null, format!("`{what}` is NULL"))
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Code::Invalid, message)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error (NUL bytes are escaped).
pub fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // A thread being torn down has no storage left: nothing to record then.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = text);
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs an exported function's body: `Ok` is 0, an error is its (negative)
/// code with its message recorded, and a panic is `BPFVM_E_INTERNAL`
/// instead of an unwind into C (which would abort the host).
pub fn guard(body: impl FnOnce() -> Result<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => Code::Ok as c_int,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.code as c_int
        }
        Err(payload) => {
            let text = panic_text(payload.as_ref());
            // Dropping a payload can itself panic: keep that from unwinding too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            set_last_error(&format!("internal error (a bug in bpfvm): {text}"));
            Code::Internal as c_int
        }
    }
}

/// The text of the last error on the calling thread: empty before any
/// error, unchanged by calls that succeed. The pointer stays valid until
/// the next failing bpfvm call on the same thread.
#[no_mangle]
pub extern "C" fn bpfvm_last_error() -> *const c_char {
    let got = catch_unwind(|| LAST_ERROR.try_with(|e| e.borrow().as_ptr()).ok());
    match got {
        Ok(Some(p)) => p,
        _ => c"".as_ptr(),
    }
}

/// The name of an error code (`"BPFVM_E_TRAP"`), or `"BPFVM_E_UNKNOWN"`.
/// The string is static.
#[no_mangle]
pub extern "C" fn bpfvm_error_name(code: c_int) -> *const c_char {
    Code::ALL
        .into_iter()
        .find(|c| *c as c_int == code)
        .map_or(c"BPFVM_E_UNKNOWN", Code::name)
        .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: bpfvm_last_error returns a NUL-terminated string that
        // stays valid until the next failing call on this thread.
        unsafe { CStr::from_ptr(bpfvm_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn ok_is_zero_and_keeps_the_last_error() {
        set_last_error("earlier");
        assert_eq!(guard(|| Ok(())), 0);
        assert_eq!(last(), "earlier");
    }

    #[test]
    fn errors_set_the_message() {
        let code = guard(|| Err(Error::null("engine")));
        assert_eq!(code, Code::Null as c_int);
        assert_eq!(last(), "`engine` is NULL");
    }

    #[test]
    fn panics_become_internal_errors() {
        let code = guard(|| panic!("boom"));
        assert_eq!(code, Code::Internal as c_int);
        assert!(last().contains("boom"), "{}", last());
    }

    #[test]
    fn nul_bytes_are_escaped() {
        set_last_error("a\0b");
        assert_eq!(last(), "a\\0b");
    }

    #[test]
    fn names() {
        // SAFETY: bpfvm_error_name returns static NUL-terminated strings.
        let name = |c| {
            unsafe { CStr::from_ptr(bpfvm_error_name(c)) }
                .to_str()
                .unwrap()
        };
        assert_eq!(name(-8), "BPFVM_E_TRAP");
        assert_eq!(name(0), "BPFVM_OK");
        assert_eq!(name(-100), "BPFVM_E_UNKNOWN");
    }
}
