//! The registry of live handles.
//!
//! A handle given to C is not a pointer to Rust memory but a number (a
//! fresh id, never reused) dressed as the opaque pointer type of its kind.
//! Every call looks the id up in a global registry and gets an `Arc` to the
//! object, so:
//!
//! - a destroyed handle (use after destroy, double destroy), a handle that
//!   was never created (a stray pointer, uninitialised memory) and a handle
//!   of the other kind (a program where an engine is expected) are
//!   *detected*: the call returns `BPFVM_E_HANDLE`; ids are not reused, so
//!   this holds however many handles come and go;
//! - destroying a handle while another thread is inside a call on it does
//!   not free the object under that call: the call finishes on its `Arc`
//!   and the object is freed when the last such call returns.
//!
//! Not detected: a forged handle that happens to equal a live id of the
//! right kind; memory the caller passes with a wrong length.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use crate::engine::EngineHandle;
use crate::error::{Code, Error, Result};
use crate::program::ProgramHandle;

/// Opaque engine handle (`bpfvm_engine` in C).
#[allow(non_camel_case_types)]
#[repr(C)]
pub struct bpfvm_engine {
    _opaque: [u8; 0],
}

/// Opaque program handle (`bpfvm_program` in C).
#[allow(non_camel_case_types)]
#[repr(C)]
pub struct bpfvm_program {
    _opaque: [u8; 0],
}

enum Entry {
    Engine(Arc<EngineHandle>),
    Program(Arc<ProgramHandle>),
}

static REGISTRY: LazyLock<RwLock<HashMap<usize, Entry>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// The next id. Ids start well above 0 so that small integers passed by
/// mistake are not live handles.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0x1000);

fn insert(entry: Entry) -> Result<usize> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if id == usize::MAX {
        return Err(Error::new(Code::Internal, "handle ids are exhausted"));
    }
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    map.insert(id, entry);
    Ok(id)
}

fn unknown(kind: &str, id: usize) -> Error {
    Error::new(
        Code::Handle,
        format!("{kind} handle {id:#x} is not live (destroyed, never created, or not {kind})"),
    )
}

/// Registers an engine; the handle to give to C.
pub fn add_engine(engine: EngineHandle) -> Result<*mut bpfvm_engine> {
    insert(Entry::Engine(Arc::new(engine))).map(|id| id as *mut bpfvm_engine)
}

/// Registers a program; the handle to give to C.
pub fn add_program(program: ProgramHandle) -> Result<*mut bpfvm_program> {
    insert(Entry::Program(Arc::new(program))).map(|id| id as *mut bpfvm_program)
}

/// The live engine behind `handle`.
pub fn engine(handle: *const bpfvm_engine) -> Result<Arc<EngineHandle>> {
    if handle.is_null() {
        return Err(Error::null("engine"));
    }
    let id = handle as usize;
    let map = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
    match map.get(&id) {
        Some(Entry::Engine(e)) => Ok(e.clone()),
        _ => Err(unknown("engine", id)),
    }
}

/// The live program behind `handle`.
pub fn program(handle: *const bpfvm_program) -> Result<Arc<ProgramHandle>> {
    if handle.is_null() {
        return Err(Error::null("program"));
    }
    let id = handle as usize;
    let map = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
    match map.get(&id) {
        Some(Entry::Program(p)) => Ok(p.clone()),
        _ => Err(unknown("program", id)),
    }
}

/// Unregisters an engine. Returns the object so that the caller drops it
/// outside the registry lock.
pub fn remove_engine(handle: *const bpfvm_engine) -> Result<Arc<EngineHandle>> {
    if handle.is_null() {
        return Err(Error::null("engine"));
    }
    let id = handle as usize;
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    match map.get(&id) {
        Some(Entry::Engine(_)) => match map.remove(&id) {
            Some(Entry::Engine(e)) => Ok(e),
            _ => Err(unknown("engine", id)),
        },
        _ => Err(unknown("engine", id)),
    }
}

/// Unregisters a program (see [`remove_engine`]).
pub fn remove_program(handle: *const bpfvm_program) -> Result<Arc<ProgramHandle>> {
    if handle.is_null() {
        return Err(Error::null("program"));
    }
    let id = handle as usize;
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    match map.get(&id) {
        Some(Entry::Program(_)) => match map.remove(&id) {
            Some(Entry::Program(p)) => Ok(p),
            _ => Err(unknown("program", id)),
        },
        _ => Err(unknown("program", id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{bpfvm_engine_create, bpfvm_engine_destroy, bpfvm_engine_load_asm};
    use crate::program::bpfvm_program_destroy;

    fn create() -> *mut bpfvm_engine {
        let mut e = std::ptr::null_mut();
        // SAFETY: NULL config (the defaults) and a valid out pointer.
        assert_eq!(unsafe { bpfvm_engine_create(std::ptr::null(), &mut e) }, 0);
        e
    }

    #[test]
    fn destroyed_and_foreign_handles_are_detected() {
        let e = create();
        let mut p = std::ptr::null_mut();
        // SAFETY: a NUL-terminated string and a valid out pointer.
        let rc = unsafe { bpfvm_engine_load_asm(e, c"mov %r0, 1\nexit".as_ptr(), &mut p) };
        assert_eq!(rc, 0);
        // The wrong kind, either way.
        assert_eq!(
            bpfvm_engine_destroy(p as *mut bpfvm_engine),
            Code::Handle as i32
        );
        assert_eq!(
            bpfvm_program_destroy(e as *mut bpfvm_program),
            Code::Handle as i32
        );
        // Double destroy; use after destroy.
        assert_eq!(bpfvm_engine_destroy(e), 0);
        assert_eq!(bpfvm_engine_destroy(e), Code::Handle as i32);
        assert!(engine(e).is_err());
        assert_eq!(bpfvm_program_destroy(p), 0);
        assert_eq!(bpfvm_program_destroy(p), Code::Handle as i32);
        // Never handles.
        assert_eq!(
            bpfvm_engine_destroy(8 as *mut bpfvm_engine),
            Code::Handle as i32
        );
        assert_eq!(
            bpfvm_engine_destroy(std::ptr::null_mut()),
            Code::Null as i32
        );
    }

    #[test]
    fn ids_are_not_reused() {
        let a = create();
        assert_eq!(bpfvm_engine_destroy(a), 0);
        let b = create();
        assert_ne!(a, b);
        assert_eq!(bpfvm_engine_destroy(a), Code::Handle as i32);
        assert_eq!(bpfvm_engine_destroy(b), 0);
    }
}
