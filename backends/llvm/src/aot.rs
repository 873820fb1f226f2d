//! Ahead-of-time native objects: writing them ([`compile_object`]), loading
//! them back into the process ([`load_object`]) and the `aot` tier that does
//! both ([`AotBackend`]).
//!
//! # The object's interface
//!
//! See [`AOT_HEADER`] for the C declarations. For entry name `bpf_main`:
//!
//! - `uint64_t bpf_main(void *mem, uint64_t len)`: runs the program with
//!   r1 = `mem`, r2 = `len`, a zeroed stack of `call_depth` 512-byte frames
//!   allocated on the caller's stack, and returns r0, or `UINT64_MAX` when
//!   the run trapped.
//! - `uint64_t bpf_main_ex(void *mem, uint64_t len, struct bpfvm_aot_trap *t)`:
//!   the same, and when `t` is not NULL it receives the trap record (code 0
//!   when the program exited) and the budget left.
//! - `uint64_t bpf_main_vmctx(VmCtx *ctx, uint64_t r1, uint64_t r2)`: the
//!   VmCtx ABI shared with the JIT tiers (what [`load_object`] calls).
//! - `const uint64_t bpf_main_maps_digest` (only with
//!   [`AotOptions::maps_digest`]): which maps the program was compiled
//!   against.
//! - `const uint64_t bpf_main_info[5]`: magic, flags (bit 0: checked, bit 1:
//!   budget), initial budget, call depth, optimisation level.
//!
//! Undefined symbols the object may reference:
//!
//! - `uint64_t _bpf_helper_ext_NNNN(uint64_t r1, .., uint64_t r5)` for each
//!   helper id NNNN (4 decimal digits, more for ids above 9999) the program
//!   calls, as in llvmbpf.
//! - `uint64_t __bpfvm_callx(uint64_t id, uint64_t r1, .., uint64_t r5)` when
//!   the program uses `callx`.
//! - The llvmbpf `lddw` hooks, for pseudo sources (unless
//!   [`AotOptions::lddw_hooks`] is false, which bakes in the values resolved
//!   at load time): `__lddw_helper_map_by_fd(uint32_t fd)` (src 1),
//!   `__lddw_helper_map_val(__lddw_helper_map_by_fd(imm)) + next_imm` (src 2),
//!   `__lddw_helper_var_addr(uint32_t imm)` (src 3),
//!   `__lddw_helper_code_addr(uint32_t imm)` (src 4),
//!   `__lddw_helper_map_by_idx(uint32_t idx)` (src 5),
//!   `__lddw_helper_map_val(__lddw_helper_map_by_idx(imm)) + next_imm`
//!   (src 6). `map_by_fd` and `map_by_idx` are weak references: a host that
//!   does not define them gets the immediate itself, llvmbpf's default.
//! - `bpfvm_check_access` (weak, checked mode only): the slow path of the
//!   memory check for addresses outside the input and the stack. A C host
//!   normally leaves it undefined, and then such accesses trap;
//!   [`load_object`] binds it to the engine's, so that host regions work.
//!
//! Helpers called through these symbols cannot raise traps from C (they
//! have no context); in process, [`load_object`] routes them to the helper
//! table of the `VmCtx` the code runs with, where they can.

use std::cell::Cell;
use std::sync::Arc;

use bpfvm_engine::backend::{
    validate_options, Backend, CompileError, CompileOptions, CompiledCode,
};
use bpfvm_engine::program::Program;
use bpfvm_engine::vmctx::{bpfvm_call_helper_by_id, bpfvm_check_access, VmCtx};
use inkwell::context::Context;
use inkwell::targets::FileType;

use crate::entry::{self, INFO_MAGIC};
use crate::jit::Entry;
use crate::loader::{self, Image, LoadError, Resolved};
use crate::target::{self, MachineSpec};
use crate::translate::{Codegen, Mode, AOT_CALLX, CHECK_ACCESS, HELPER_PREFIX};
use crate::{fail, Tier};

/// C declarations of an AOT object made with entry name `bpf_main`
/// ([`aot_header`] gives them for another name).
pub const AOT_HEADER: &str = r#"/* bpfvm AOT object interface (bpfvm-llvm). */
#include <stdint.h>

#ifndef BPFVM_AOT_COMMON_H
#define BPFVM_AOT_COMMON_H

/* Trap codes (struct bpfvm_aot_trap.code). */
#define BPFVM_TRAP_NONE 0            /* the program exited */
#define BPFVM_TRAP_LOAD 1            /* out-of-bounds load: addr, size */
#define BPFVM_TRAP_STORE 2           /* out-of-bounds store or atomic: addr, size */
#define BPFVM_TRAP_BUDGET 3          /* instruction budget exhausted at pc */
#define BPFVM_TRAP_CALL_DEPTH 4      /* too many nested bpf-to-bpf calls */
#define BPFVM_TRAP_UNKNOWN_HELPER 5  /* addr = helper id */
#define BPFVM_TRAP_HELPER 6          /* a helper failed: addr = id, size = code */
#define BPFVM_TRAP_MISALIGNED 7      /* misaligned atomic: addr, size */

struct bpfvm_aot_trap {
    uint32_t code;        /* BPFVM_TRAP_* */
    uint32_t size;        /* access size, or a helper's error code */
    uint64_t pc;          /* instruction index of the trap */
    uint64_t addr;        /* faulting address, or helper id */
    uint64_t budget_left; /* instructions left when a budget was compiled in */
};

/* Defined by the host, for each helper id the program calls (4 digits):
 *   uint64_t _bpf_helper_ext_0005(uint64_t r1, uint64_t r2, uint64_t r3,
 *                                 uint64_t r4, uint64_t r5);
 * For callx:
 *   uint64_t __bpfvm_callx(uint64_t id, uint64_t r1, uint64_t r2,
 *                          uint64_t r3, uint64_t r4, uint64_t r5);
 * For lddw pseudo sources (llvmbpf's hooks):
 *   uint64_t __lddw_helper_map_by_fd(uint32_t fd);    optional (weak)
 *   uint64_t __lddw_helper_map_by_idx(uint32_t idx);  optional (weak)
 *   uint64_t __lddw_helper_map_val(uint64_t map);
 *   uint64_t __lddw_helper_var_addr(uint32_t imm);
 *   uint64_t __lddw_helper_code_addr(uint32_t imm);
 *     (not called for programs of ELF objects compiled by `bpfvm compile`:
 *     their function addresses are bpfvm's, fixed at compile time)
 * Optional (weak), checked objects only: allows accesses outside the input
 * and the stack (return 1) or not (return 0); ctx is opaque:
 *   uint64_t bpfvm_check_access(void *ctx, uint64_t addr, uint64_t size,
 *                               uint64_t write, uint64_t frame_lo);
 */

#endif /* BPFVM_AOT_COMMON_H */

#ifndef BPFVM_AOT_bpf_main_H
#define BPFVM_AOT_bpf_main_H

#ifdef __cplusplus
extern "C" {
#endif

/* Runs the program over [mem, mem + len) (r1 = mem, r2 = len) with a zeroed
 * stack on the caller's stack. Returns r0, or UINT64_MAX when it trapped. */
uint64_t bpf_main(void *mem, uint64_t len);

/* As bpf_main; when trap is not NULL it receives the trap record. */
uint64_t bpf_main_ex(void *mem, uint64_t len, struct bpfvm_aot_trap *trap);

/* { magic, flags (1: checked, 2: budget), budget, call depth, opt level } */
extern const uint64_t bpf_main_info[5];

/* Objects compiled from a program of an ELF object also define
 *   extern const uint64_t bpf_main_maps_digest;
 * a digest of that object's map definitions (`bpfvm run` checks it). */

#ifdef __cplusplus
}
#endif

#endif /* BPFVM_AOT_bpf_main_H */
"#;

/// [`AOT_HEADER`] for an object whose entry is `entry_name`.
pub fn aot_header(entry_name: &str) -> String {
    AOT_HEADER.replace("bpf_main", entry_name)
}

/// How [`compile_object`] builds an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AotOptions {
    /// Name of the C entry (`bpf_main`); `<name>_ex`, `<name>_vmctx` and
    /// `<name>_info` are exported too.
    pub entry_name: String,
    /// Target triple; `None` for the host's.
    pub target_triple: Option<String>,
    /// Target CPU; `None` for the host's (with the host triple) or `generic`.
    pub cpu: Option<String>,
    /// Target features (`+avx2,...`); `None` for the host's with the host
    /// CPU, else none.
    pub features: Option<String>,
    /// `lddw` pseudo sources call the llvmbpf hooks (true), or use the
    /// values the verifier resolved in this process (false).
    pub lddw_hooks: bool,
    /// With `lddw_hooks`, function addresses (pseudo source 4) still use
    /// the value resolved when compiling instead of calling
    /// `__lddw_helper_code_addr(imm)`. The runtime's function addresses
    /// name a program of an ELF object and a pc, not a memory address, so
    /// they hold in any process that loads the same object; the hook only
    /// sees the relative immediate and could not rebuild them.
    pub bake_function_addresses: bool,
    /// Exported as `const uint64_t <entry>_maps_digest` when set: a digest
    /// of the maps of the ELF object the program came from, which
    /// [`AotCode::maps_digest`] reads back so that a host can refuse other
    /// maps than those the object was compiled against.
    pub maps_digest: Option<u64>,
}

impl Default for AotOptions {
    fn default() -> Self {
        AotOptions {
            entry_name: "bpf_main".to_string(),
            target_triple: None,
            cpu: None,
            features: None,
            lddw_hooks: true,
            bake_function_addresses: false,
            maps_digest: None,
        }
    }
}

fn valid_symbol(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Compiles `program` to a relocatable native object (ELF for Linux
/// targets) with the interface described in the module docs.
pub fn compile_object(
    program: &Program,
    opts: &CompileOptions,
    aot: &AotOptions,
) -> Result<Vec<u8>, CompileError> {
    validate_options(opts)?;
    if !valid_symbol(&aot.entry_name) {
        return Err(fail(
            Tier::Aot,
            format!("`{}` is not a valid C symbol name", aot.entry_name),
        ));
    }
    let spec = MachineSpec {
        triple: aot.target_triple.clone(),
        cpu: aot.cpu.clone(),
        features: aot.features.clone(),
    };
    let machine = target::machine(Tier::Aot, &spec, opts.opt_level)?;
    let context = Context::create();
    let mode = Mode::Aot {
        lddw_hooks: aot.lddw_hooks,
        bake_functions: aot.bake_function_addresses,
    };
    let mut cg = Codegen::new(&context, &aot.entry_name, mode, opts, Tier::Aot);
    target::configure(&cg.module, &machine);
    cg.translate_program(program)?;
    entry::aot_entries(&cg, &aot.entry_name, aot.maps_digest)?;
    let module = cg.module;
    target::optimize(Tier::Aot, &module, &machine, opts.opt_level)?;
    target::emit(Tier::Aot, &module, &machine, FileType::Object)
}

/// Resolves a symbol name to an address, or `None` when unknown.
pub type SymbolResolver<'a> = &'a dyn Fn(&str) -> Option<u64>;

/// How [`load_object`] loads an object.
pub struct LoadOptions<'a> {
    /// The entry name the object was compiled with.
    pub entry_name: &'a str,
    /// Addresses of other undefined symbols (e.g. the `lddw` hooks).
    pub symbols: Option<SymbolResolver<'a>>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            entry_name: "bpf_main",
            symbols: None,
        }
    }
}

thread_local! {
    /// The context of the AOT code running on this thread, for helpers.
    static CURRENT: Cell<*mut VmCtx> = const { Cell::new(std::ptr::null_mut()) };
}

/// `_bpf_helper_ext_NNNN` in process: the stub puts NNNN in the sixth
/// argument.
unsafe extern "C" fn aot_helper(a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, id: u64) -> u64 {
    let ctx = CURRENT.with(|c| c.get());
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: CURRENT is set by `AotCode::call` to its live context for
    // the duration of the call this helper is part of.
    unsafe { bpfvm_call_helper_by_id(ctx, id, a1, a2, a3, a4, a5) }
}

/// `__bpfvm_callx` in process.
unsafe extern "C" fn aot_callx(id: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> u64 {
    // SAFETY: as for `aot_helper`.
    unsafe { aot_helper(a1, a2, a3, a4, a5, id) }
}

fn helper_id(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(HELPER_PREFIX)?;
    if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u32>()
        .ok()
        .filter(|&id| id <= i32::MAX as u32)
}

/// Loads an x86-64 AOT object made by [`compile_object`] into this process.
/// Helper symbols are bound to the helper table of the `VmCtx` the code is
/// called with, `bpfvm_check_access` to the engine's, `memset`, `memcpy`
/// and `memmove` to the C library's, anything else through `opts.symbols`.
pub fn load_object(bytes: &[u8], opts: &LoadOptions) -> Result<AotCode, LoadError> {
    let user = opts.symbols;
    let image = loader::load(bytes, &|name| {
        if let Some(id) = helper_id(name) {
            return Some(Resolved::WithSixthArg {
                target: aot_helper as *const () as usize as u64,
                arg: id,
            });
        }
        match name {
            CHECK_ACCESS => Some(Resolved::Addr(
                bpfvm_check_access as *const () as usize as u64,
            )),
            AOT_CALLX => Some(Resolved::Addr(aot_callx as *const () as usize as u64)),
            // LLVM lowers the entry's zeroing of the stack and context to these.
            "memset" => Some(Resolved::Addr(libc::memset as *const () as usize as u64)),
            "memcpy" => Some(Resolved::Addr(libc::memcpy as *const () as usize as u64)),
            "memmove" => Some(Resolved::Addr(libc::memmove as *const () as usize as u64)),
            _ => user.and_then(|f| f(name)).map(Resolved::Addr),
        }
    })?;
    let name = opts.entry_name;
    let info_name = format!("{name}_info");
    let info_addr = image
        .symbol(&info_name)
        .ok_or_else(|| LoadError::MissingEntry(info_name.clone()))?;
    let info = image
        .read_u64s(info_addr, 5)
        .ok_or_else(|| LoadError::MissingEntry(info_name.clone()))?;
    if info[0] != INFO_MAGIC {
        return Err(LoadError::Unsupported(format!(
            "`{info_name}` is not a bpfvm AOT record (made by another version?)"
        )));
    }
    let opts = CompileOptions {
        checked: info[1] & 1 != 0,
        budget: (info[1] & 2 != 0).then_some(info[2]),
        call_depth: usize::try_from(info[3]).unwrap_or(0),
        opt_level: info[4].min(3) as u8,
        // AOT objects call helper 1 as a symbol; nothing is inlined.
        array_maps: Vec::new(),
    };
    validate_options(&opts).map_err(|e| LoadError::Unsupported(e.to_string()))?;
    let entry_name = format!("{name}_vmctx");
    let addr = image
        .symbol(&entry_name)
        .ok_or(LoadError::MissingEntry(entry_name))?;
    // SAFETY: `<name>_vmctx` is generated with the `Entry` signature (C
    // calling convention) and lives in `image`, owned by the result.
    let entry = unsafe { std::mem::transmute::<usize, Entry>(addr as usize) };
    let maps_digest = image
        .symbol(&format!("{name}_maps_digest"))
        .and_then(|addr| image.read_u64s(addr, 1))
        .map(|w| w[0]);
    Ok(AotCode {
        image,
        entry,
        opts,
        maps_digest,
    })
}

/// An AOT object loaded in process. Dropping it unmaps the code.
pub struct AotCode {
    image: Image,
    entry: Entry,
    opts: CompileOptions,
    maps_digest: Option<u64>,
}

impl AotCode {
    /// Bytes of memory the object occupies (mapped pages).
    pub fn code_size(&self) -> usize {
        self.image.mapped_len()
    }

    /// The `<entry>_maps_digest` the object was compiled with
    /// ([`AotOptions::maps_digest`]), if any.
    pub fn maps_digest(&self) -> Option<u64> {
        self.maps_digest
    }
}

impl CompiledCode for AotCode {
    fn tier(&self) -> &'static str {
        Tier::Aot.name()
    }

    fn options(&self) -> &CompileOptions {
        &self.opts
    }

    unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64 {
        /// Restores the previous context even if the call unwinds.
        struct Restore(*mut VmCtx);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.replace(ctx)));
        // SAFETY: the entry follows the VmCtx ABI and the caller guarantees
        // a prepared context.
        unsafe { (self.entry)(ctx, r1, r2) }
    }
}

/// The `aot` tier: [`compile_object`] for the host, then [`load_object`].
#[derive(Clone, Copy, Debug, Default)]
pub struct AotBackend;

impl Backend for AotBackend {
    fn name(&self) -> &'static str {
        Tier::Aot.name()
    }

    fn compile(
        &self,
        program: &Arc<Program>,
        opts: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        let aot = AotOptions {
            lddw_hooks: false,
            ..AotOptions::default()
        };
        let object = compile_object(program, opts, &aot)?;
        let code = load_object(&object, &LoadOptions::default())
            .map_err(|e| fail(Tier::Aot, format!("loading the object: {e}")))?;
        Ok(Box::new(code))
    }
}
