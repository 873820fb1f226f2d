//! AOT objects of an ELF object's programs: [`LoadedObject::compile_aot`]
//! writes a native object that reaches the maps and global data through
//! llvmbpf's `lddw` hooks, and [`LoadedObject::prepare_aot`] loads such an
//! object back with those hooks bound to this object's maps, so that it
//! runs with the runtime's maps, helpers and regions like any other tier.
//!
//! Hooks and values, in process:
//!
//! - `__lddw_helper_map_by_fd(i)` and `__lddw_helper_map_by_idx(i)`: the
//!   handle of map `i` (the map index the ELF loader put in the `lddw`), or
//!   0 when there is no map `i`.
//! - `__lddw_helper_map_val(handle)`: the address of the first value of
//!   that array map (global data included), or 0 for any other value. The
//!   program adds the offset; checked code traps on a bad address.
//! - Function addresses (`bpf_loop` callbacks) are compiled in: they name a
//!   program and a pc, which hold in any process that loads the object.
//!
//! The object records a digest of the maps and programs it was compiled
//! against (`<entry>_maps_digest`); loading it for an object with other
//! maps is refused, since map indices would then name other maps.

use std::cell::Cell;
use std::sync::Arc;

use bpfvm_engine::backend::{CompileOptions, CompiledCode};
use bpfvm_engine::vmctx::VmCtx;

use super::{LoadedObject, ObjectError, PreparedProgram, Shared};
use crate::emit::{self, AotTarget};
use crate::maps::MapSet;
use crate::tier::Tier;

thread_local! {
    /// The maps of the AOT code running on this thread, for the hooks.
    static MAPS: Cell<*const MapSet> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` on the maps of the AOT call in progress on this thread.
fn with_maps(f: impl FnOnce(&MapSet) -> Option<u64>) -> u64 {
    let maps = MAPS.with(|m| m.get());
    if maps.is_null() {
        return 0;
    }
    // SAFETY: MAPS is set by `AotWithMaps::call` to maps that its `Shared`
    // keeps alive for the duration of the call this hook is part of.
    f(unsafe { &*maps }).unwrap_or(0)
}

/// `__lddw_helper_map_by_fd` and `__lddw_helper_map_by_idx`.
extern "C" fn hook_map_by_index(index: u32) -> u64 {
    with_maps(|maps| maps.get(index as usize).map(|m| m.handle()))
}

/// `__lddw_helper_map_val`.
extern "C" fn hook_map_val(handle: u64) -> u64 {
    with_maps(|maps| maps.by_handle(handle)?.value_addr(0).ok())
}

/// The address the object's undefined symbol `name` binds to.
fn hook(name: &str) -> Option<u64> {
    let f = match name {
        "__lddw_helper_map_by_fd" | "__lddw_helper_map_by_idx" => {
            hook_map_by_index as extern "C" fn(u32) -> u64 as usize
        }
        "__lddw_helper_map_val" => hook_map_val as extern "C" fn(u64) -> u64 as usize,
        _ => return None,
    };
    Some(f as u64)
}

/// A loaded AOT object that sees `shared`'s maps through the hooks.
struct AotWithMaps {
    code: Box<dyn CompiledCode>,
    shared: Arc<Shared>,
}

impl CompiledCode for AotWithMaps {
    fn tier(&self) -> &'static str {
        self.code.tier()
    }

    fn options(&self) -> &CompileOptions {
        self.code.options()
    }

    unsafe fn call(&self, ctx: *mut VmCtx, r1: u64, r2: u64) -> u64 {
        /// Restores the previous maps even if the call unwinds.
        struct Restore(*const MapSet);
        impl Drop for Restore {
            fn drop(&mut self) {
                MAPS.with(|m| m.set(self.0));
            }
        }
        let maps: *const MapSet = &self.shared.maps;
        let _restore = Restore(MAPS.with(|m| m.replace(maps)));
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { self.code.call(ctx, r1, r2) }
    }
}

/// FNV-1a over fields, each preceded by its length.
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn field(&mut self, bytes: &[u8]) {
        self.bytes(&(bytes.len() as u64).to_le_bytes());
        self.bytes(bytes);
    }
}

impl LoadedObject {
    /// A digest of what an AOT object of this object's programs depends on
    /// (FNV-1a, 64 bits, over length-prefixed fields): each map's name,
    /// type, sizes, entries, flags and initial data, and each program's
    /// and function's name and linked instructions, in order. Function
    /// addresses compiled into the object name a program and a pc, and
    /// tail calls and `bpf_loop` callbacks run this object's code, so a
    /// rebuilt object with the same maps but other code is another object.
    pub fn maps_digest(&self) -> u64 {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        for m in self.shared.maps.iter() {
            let d = m.def();
            h.field(b"map");
            h.field(d.name.as_bytes());
            h.field(m.kind().name().as_bytes());
            for n in [d.key_size, d.value_size, d.max_entries, d.flags] {
                h.field(&n.to_le_bytes());
            }
            h.field(d.data.as_deref().unwrap_or(b"\0none"));
        }
        let object = &self.shared.object;
        let count = object.programs.len() + object.functions.len();
        for id in 0..count {
            h.field(b"program");
            match u32::try_from(id).map(|id| self.shared.linked(id)) {
                Ok(Ok(p)) => {
                    h.field(p.name.as_bytes());
                    h.field(&bpfvm_engine::isa::encode_program(&p.insns));
                }
                _ => h.field(b"\0unlinkable"),
            }
        }
        h.0
    }

    /// Compiles program `name` to a relocatable native object (see
    /// [`emit::compile_object`]) that [`LoadedObject::prepare_aot`] can
    /// load back, or a C host can link with its own `lddw` hooks and
    /// helpers.
    pub fn compile_aot(
        &self,
        name: &str,
        opts: &CompileOptions,
        target: &AotTarget,
    ) -> Result<Vec<u8>, ObjectError> {
        let program = self.verify_program(name)?;
        emit::compile_object_with(&program, opts, target, Some(self.maps_digest()))
            .map_err(|e| ObjectError::Aot(e.to_string()))
    }

    /// Loads an AOT object made by [`LoadedObject::compile_aot`] (entry
    /// `entry`, `bpf_main` when `None`) with its `lddw` hooks bound to this
    /// object's maps and its helpers to this object's helpers. Refused when
    /// the object was compiled against other maps; an object without a
    /// digest (compiled from bare bytecode) is taken as it is.
    pub fn prepare_aot(
        &self,
        bytes: &[u8],
        entry: Option<&str>,
    ) -> Result<PreparedProgram, ObjectError> {
        let (code, digest) = emit::load_object_digest(bytes, entry, Some(&hook))
            .map_err(|e| ObjectError::Aot(e.to_string()))?;
        let ours = self.maps_digest();
        if let Some(theirs) = digest {
            if theirs != ours {
                return Err(ObjectError::Aot(format!(
                    "it was compiled against other maps or programs (digest {theirs:#018x}, this object's is {ours:#018x})"
                )));
            }
        }
        let opts = code.options().clone();
        let code = AotWithMaps {
            code,
            shared: self.shared.clone(),
        };
        Ok(PreparedProgram {
            code: Box::new(code),
            table: self.helpers_for(Tier::Aot, &opts)?.table(),
            regions: self.regions(),
        })
    }
}
