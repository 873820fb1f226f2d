//! `bpfvm_engine`: configuration, helpers, `lddw` hooks and regions, and
//! loading programs (bytecode, assembler text, ELF objects, AOT objects).
//!
//! The engine keeps what the host registers and builds a runtime
//! [`runtime::Engine`] from it when a program is loaded (a [`Snapshot`]),
//! reusing it until the host registers something else. A program keeps the
//! snapshot it was loaded with: helpers, hooks and regions registered later
//! apply to programs loaded later.

use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex, MutexGuard};

use ::bpfvm_engine::helpers::{HelperClosure, Helpers};
use ::bpfvm_engine::isa::{decode_program, Insn};
use ::bpfvm_engine::vmctx::Region;
use runtime::{Engine, LoadError, Program, TierPolicy};

use crate::config::{bpfvm_config, Settings};
use crate::error::{guard, Code, Error, Result};
use crate::handles::{self, bpfvm_engine, bpfvm_program};
use crate::helpers::{self, HelperCtxFn, HelperFn};
use crate::lddw::{Hook32, Hook64, LddwHooks};
use crate::program::ProgramHandle;
use crate::util;

/// Helper ids are below this (`BPFVM_HELPER_ID_LIMIT`): the helper table
/// has a slot for every id up to the largest.
pub const HELPER_ID_LIMIT: u32 = 1 << 16;

/// What an engine's programs are loaded with.
pub struct Snapshot {
    pub engine: Engine,
    pub settings: Settings,
    pub helpers: Helpers,
    pub regions: Vec<Region>,
    pub hooks: LddwHooks,
}

impl Snapshot {
    fn build(
        settings: Settings,
        helpers: Helpers,
        regions: Vec<Region>,
        hooks: LddwHooks,
    ) -> Snapshot {
        let mut config = settings.config.clone();
        config.helpers(&helpers);
        for r in &regions {
            // SAFETY: the host promised, when it added the region with
            // bpfvm_engine_add_region, that the memory stays valid for as
            // long as any program of the engine may run.
            unsafe {
                config.region(
                    r.start as usize as *const u8,
                    r.len as usize,
                    r.writable != 0,
                )
            };
        }
        Snapshot {
            engine: Engine::new(&config),
            settings,
            helpers,
            regions,
            hooks,
        }
    }

    /// The same engine under another tier policy (for recompiling a
    /// program at a chosen tier).
    pub fn with_policy(&self, policy: TierPolicy) -> Snapshot {
        let mut settings = self.settings.clone();
        settings.config.tier_policy(policy);
        settings.policy = policy;
        Snapshot::build(
            settings,
            self.helpers.clone(),
            self.regions.clone(),
            self.hooks,
        )
    }

    /// Verifies and compiles `insns`, resolving `lddw`s with the hooks.
    pub fn load(&self, insns: Vec<Insn>) -> Result<Program> {
        self.engine
            .load_with(insns, Some(&self.hooks))
            .map_err(load_error)
    }
}

/// A load failure as a C error.
pub fn load_error(e: LoadError) -> Error {
    let code = match &e {
        LoadError::Verify(_) => Code::Load,
        LoadError::Compile(_) => Code::Compile,
        LoadError::Tier(_) => Code::Unsupported,
    };
    Error::new(code, e.to_string())
}

struct State {
    settings: Settings,
    helpers: Helpers,
    regions: Vec<Region>,
    hooks: LddwHooks,
    /// Built on the first load after a change.
    snapshot: Option<Arc<Snapshot>>,
}

/// The object behind a `bpfvm_engine` handle.
pub struct EngineHandle {
    state: Mutex<State>,
}

impl EngineHandle {
    fn new(settings: Settings) -> EngineHandle {
        EngineHandle {
            state: Mutex::new(State {
                settings,
                helpers: Helpers::new(),
                regions: Vec::new(),
                hooks: LddwHooks::default(),
                snapshot: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes what later loads use.
    fn change(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.lock();
        f(&mut s);
        s.snapshot = None;
    }

    /// What a load uses now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let mut s = self.lock();
        if let Some(snap) = &s.snapshot {
            return snap.clone();
        }
        let snap = Arc::new(Snapshot::build(
            s.settings.clone(),
            s.helpers.clone(),
            s.regions.clone(),
            s.hooks,
        ));
        s.snapshot = Some(snap.clone());
        snap
    }

    fn register(&self, id: u32, name: Option<&str>, f: Arc<HelperClosure>) -> Result<()> {
        if id >= HELPER_ID_LIMIT {
            return Err(Error::invalid(format!(
                "helper id {id} is too large (ids are below {HELPER_ID_LIMIT})"
            )));
        }
        let name = name.map_or_else(|| format!("helper_{id}"), str::to_string);
        self.change(|s| {
            s.helpers.register_shared(id, &name, f);
        });
        Ok(())
    }
}

/// Writes a new program handle to `*out`.
fn publish(out: *mut *mut bpfvm_program, program: ProgramHandle) -> Result<()> {
    let handle = handles::add_program(program)?;
    // SAFETY: `out` was checked non-NULL by the caller of `publish`, and
    // the header requires it to point to a writable `bpfvm_program *`.
    unsafe { out.write(handle) };
    Ok(())
}

/// Checks `out` and clears `*out`, so that it is NULL on failure.
fn clear_out(out: *mut *mut bpfvm_program) -> Result<*mut *mut bpfvm_program> {
    let out = util::out(out, "program")?;
    // SAFETY: non-NULL; the header requires a writable `bpfvm_program *`.
    unsafe { out.write(std::ptr::null_mut()) };
    Ok(out)
}

/// Creates an engine. `config` NULL means the defaults
/// (`bpfvm_config_init`). On success `*engine` is the new handle; on
/// failure it is NULL.
///
/// # Safety
/// `config` is NULL or points to a `struct bpfvm_config`; `engine` is NULL
/// or points to a writable `bpfvm_engine *`.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_engine_create(
    config: *const bpfvm_config,
    engine: *mut *mut bpfvm_engine,
) -> c_int {
    guard(|| {
        let engine = util::out(engine, "engine")?;
        // SAFETY: non-NULL, writable by the caller's contract.
        unsafe { engine.write(std::ptr::null_mut()) };
        let config = if config.is_null() {
            bpfvm_config::default()
        } else {
            // SAFETY: non-NULL and pointing to a config, by the contract.
            unsafe { config.read() }
        };
        let settings = Settings::from_c(&config)?;
        let handle = handles::add_engine(EngineHandle::new(settings))?;
        // SAFETY: as above.
        unsafe { engine.write(handle) };
        Ok(())
    })
}

/// Destroys an engine. Programs loaded from it stay valid (they keep what
/// they need). A destroyed or unknown handle is `BPFVM_E_HANDLE`.
#[no_mangle]
pub extern "C" fn bpfvm_engine_destroy(engine: *mut bpfvm_engine) -> c_int {
    guard(|| handles::remove_engine(engine).map(drop))
}

/// Registers (or replaces) helper `id` (below `BPFVM_HELPER_ID_LIMIT`) as
/// `fn(r1, .., r5)`, for programs loaded afterwards (programs loaded
/// earlier keep the helpers they were loaded with). `name` may be NULL.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `func` is NULL or a function
/// of this signature that may be called from any thread that runs a
/// program, for as long as such a program lives.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_engine_register_helper(
    engine: *mut bpfvm_engine,
    id: u32,
    name: *const c_char,
    func: Option<HelperFn>,
) -> c_int {
    guard(|| {
        let e = handles::engine(engine)?;
        let func = func.ok_or_else(|| Error::null("func"))?;
        // SAFETY: forwarded contract on `name`.
        let name = unsafe { util::opt_text(name, "name") }?;
        e.register(id, name, helpers::plain(func))
    })
}

/// Like `bpfvm_engine_register_helper`, the helper also receiving `user`.
///
/// # Safety
/// As `bpfvm_engine_register_helper`; what `user` points to must be usable
/// from the threads that run programs, for as long as such a program lives.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_engine_register_helper_ctx(
    engine: *mut bpfvm_engine,
    id: u32,
    name: *const c_char,
    func: Option<HelperCtxFn>,
    user: *mut c_void,
) -> c_int {
    guard(|| {
        let e = handles::engine(engine)?;
        let func = func.ok_or_else(|| Error::null("func"))?;
        // SAFETY: forwarded contract on `name`.
        let name = unsafe { util::opt_text(name, "name") }?;
        e.register(id, name, helpers::with_user(func, user))
    })
}

/// Sets the `lddw` hooks for programs loaded afterwards, as llvmbpf's
/// `set_lddw_helpers`. Any may be NULL.
///
/// # Safety
/// Each non-NULL hook is a function of its signature, callable from any
/// thread that loads (or runs an AOT object of) this engine's programs.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_engine_set_lddw_helpers(
    engine: *mut bpfvm_engine,
    map_by_fd: Option<Hook32>,
    map_by_idx: Option<Hook32>,
    map_val: Option<Hook64>,
    var_addr: Option<Hook32>,
    code_addr: Option<Hook32>,
) -> c_int {
    guard(|| {
        let e = handles::engine(engine)?;
        e.change(|s| {
            s.hooks = LddwHooks {
                map_by_fd,
                map_by_idx,
                map_val,
                var_addr,
                code_addr,
            }
        });
        Ok(())
    })
}

/// Lets checked programs loaded afterwards access host memory
/// `[start, start + len)` (read-only unless `writable`).
///
/// # Safety
/// The memory must stay valid (and writable when `writable`) for as long
/// as any program loaded afterwards may run.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_engine_add_region(
    engine: *mut bpfvm_engine,
    start: *mut c_void,
    len: usize,
    writable: c_int,
) -> c_int {
    guard(|| {
        let e = handles::engine(engine)?;
        if start.is_null() {
            return Err(Error::null("start"));
        }
        let end = (start as usize).checked_add(len);
        if len == 0 || end.is_none() {
            return Err(Error::invalid(format!(
                "region of {len} bytes at {start:p} is empty or wraps around"
            )));
        }
        e.change(|s| {
            s.regions.push(Region {
                start: start as usize as u64,
                len: len as u64,
                writable: (writable != 0) as u64,
            })
        });
        Ok(())
    })
}

/// Loads `bytecode` (raw instructions, 8 bytes each) into `*program`.
fn load_insns(
    engine: *mut bpfvm_engine,
    out: *mut *mut bpfvm_program,
    insns: impl FnOnce() -> Result<Vec<Insn>>,
) -> Result<()> {
    let e = handles::engine(engine)?;
    let out = clear_out(out)?;
    let insns = insns()?;
    let snapshot = e.snapshot();
    let program = snapshot.load(insns.clone())?;
    publish(out, ProgramHandle::managed(program, snapshot, insns))
}

/// Verifies and compiles raw bytecode (`len` bytes, 8 per instruction)
/// under the engine's policy. On success `*program` is the new handle.
///
/// # Safety
/// `code` points to `len` readable bytes (or `len` is 0); `program` is
/// NULL or points to a writable `bpfvm_program *`.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_engine_load(
    engine: *mut bpfvm_engine,
    code: *const c_void,
    len: usize,
    program: *mut *mut bpfvm_program,
) -> c_int {
    guard(|| {
        load_insns(engine, program, || {
            // SAFETY: forwarded contract on `code` and `len`.
            let bytes = unsafe { util::bytes(code, len, "code") }?;
            decode_program(bytes).map_err(|e| Error::new(Code::Load, e.to_string()))
        })
    })
}

/// Assembles and loads assembler text (the conformance suite's syntax:
/// `mov %r0, 42` ...).
///
/// # Safety
/// `text` is NULL or a NUL-terminated string; `program` as in `bpfvm_engine_load`.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_engine_load_asm(
    engine: *mut bpfvm_engine,
    text: *const c_char,
    program: *mut *mut bpfvm_program,
) -> c_int {
    guard(|| {
        load_insns(engine, program, || {
            // SAFETY: forwarded contract on `text`.
            let text = unsafe { util::text(text, "text") }?;
            ::bpfvm_engine::asm::assemble(text).map_err(|e| Error::new(Code::Load, e.to_string()))
        })
    })
}

/// Loads program `name` of an ELF object (`clang -target bpf`): an entry
/// function by name, else the only program of section `name`, else a
/// `.text` function. Map references (`lddw` src 1 and 2, with the map's
/// index in the object as the "fd") go through the engine's `lddw` hooks.
///
/// # Safety
/// `elf` points to `len` readable bytes; `name` is NULL or a NUL-terminated
/// string; `program` as in `bpfvm_engine_load`.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_engine_load_elf(
    engine: *mut bpfvm_engine,
    elf: *const c_void,
    len: usize,
    name: *const c_char,
    program: *mut *mut bpfvm_program,
) -> c_int {
    guard(|| {
        load_insns(engine, program, || {
            // SAFETY: forwarded contract on `name`.
            let name = unsafe { util::text(name, "name") }?;
            // SAFETY: forwarded contract on `elf` and `len`.
            let bytes = unsafe { util::bytes(elf, len, "elf") }?;
            let object = ::bpfvm_engine::elf::parse(bytes)
                .map_err(|e| Error::new(Code::Elf, e.to_string()))?;
            let program = object
                .program(name)
                .map_err(|e| Error::new(Code::Elf, e.to_string()))?;
            Ok(program.insns)
        })
    })
}

/// Loads an AOT object made by `bpfvm_program_write_aot` (or
/// `bpfvm compile`), whose entry is `entry` (NULL: `bpf_main`). Its
/// helpers are the engine's, its `__lddw_helper_*` symbols the engine's
/// `lddw` hooks, its memory checks and budget those it was compiled with.
///
/// # Safety
/// `object` points to `len` readable bytes; `entry` is NULL or a
/// NUL-terminated string; `program` as in `bpfvm_engine_load`.
#[no_mangle]
pub unsafe extern "C" fn bpfvm_engine_load_aot(
    engine: *mut bpfvm_engine,
    object: *const c_void,
    len: usize,
    entry: *const c_char,
    program: *mut *mut bpfvm_program,
) -> c_int {
    guard(|| {
        let e = handles::engine(engine)?;
        let out = clear_out(program)?;
        // SAFETY: forwarded contract on `entry`.
        let entry = unsafe { util::opt_text(entry, "entry") }?;
        // SAFETY: forwarded contract on `object` and `len`.
        let bytes = unsafe { util::bytes(object, len, "object") }?;
        if bytes.is_empty() {
            return Err(Error::new(Code::Aot, "the AOT object is empty"));
        }
        let snapshot = e.snapshot();
        let hooks = snapshot.hooks;
        let lookup = move |name: &str| hooks.symbol(name);
        let code = runtime::emit::load_object_with(bytes, entry, Some(&lookup)).map_err(|err| {
            let code = match err {
                runtime::emit::EmitError::Tier(_) => Code::Unsupported,
                _ => Code::Aot,
            };
            Error::new(code, err.to_string())
        })?;
        publish(out, ProgramHandle::aot(code, snapshot))
    })
}
