//! Helpers as Rust closures, exposed to every executor as a `HelperSlot` table.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::vmctx::{HelperSlot, VmCtx, TRAP_HELPER, TRAP_LOAD, TRAP_STORE};

/// How a helper refuses to return a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperError {
    /// The helper was given memory the program may not touch.
    Fault { addr: u64, size: u32, write: bool },
    /// Any other failure, with a helper-specific code.
    Failed(u32),
}

/// A helper's body: the context (for memory checks and host state) and r1 to r5.
pub type HelperClosure = dyn Fn(&mut VmCtx, [u64; 5]) -> Result<u64, HelperError> + Send + Sync;

struct Entry {
    id: u32,
    name: String,
    func: Arc<HelperClosure>,
    /// The helper records every write it makes to the run's stack area in
    /// [`VmCtx::stack_written_lo`] ([`Helpers::register_recording`]); for
    /// any other, the whole area counts as written after a call.
    records_stack_writes: bool,
}

/// A set of helpers by id. Cloning is cheap; the slot table built by
/// [`Helpers::table`] stays valid while the `HelperTable` lives.
#[derive(Clone, Default)]
pub struct Helpers {
    entries: Vec<Arc<Entry>>,
}

impl std::fmt::Debug for Helpers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (e.id, &e.name)))
            .finish()
    }
}

impl Helpers {
    pub fn new() -> Helpers {
        Helpers::default()
    }

    /// Registers (or replaces) helper `id`. The stack area of a run that
    /// calls it is zeroed whole after the run, since `f` may have written
    /// anywhere in it.
    pub fn register<F>(&mut self, id: u32, name: &str, f: F) -> &mut Self
    where
        F: Fn(&mut VmCtx, [u64; 5]) -> Result<u64, HelperError> + Send + Sync + 'static,
    {
        self.add(id, name, Arc::new(f), false)
    }

    /// As [`Helpers::register`], for a helper that lowers
    /// [`VmCtx::stack_written_lo`] to the lowest stack address it writes
    /// (or writes no stack memory): after the run only that part is
    /// zeroed, besides the frames the program could write itself.
    pub fn register_recording<F>(&mut self, id: u32, name: &str, f: F) -> &mut Self
    where
        F: Fn(&mut VmCtx, [u64; 5]) -> Result<u64, HelperError> + Send + Sync + 'static,
    {
        self.add(id, name, Arc::new(f), true)
    }

    /// Registers (or replaces) helper `id` with a shared closure (as
    /// [`Helpers::register`]).
    pub fn register_shared(&mut self, id: u32, name: &str, f: Arc<HelperClosure>) -> &mut Self {
        self.add(id, name, f, false)
    }

    /// As [`Helpers::register_shared`], saying whether the closure records
    /// its stack writes ([`Helpers::register_recording`]): for a wrapper
    /// that keeps what the helper it wraps does.
    pub fn register_shared_as(
        &mut self,
        id: u32,
        name: &str,
        f: Arc<HelperClosure>,
        records_stack_writes: bool,
    ) -> &mut Self {
        self.add(id, name, f, records_stack_writes)
    }

    /// Whether helper `id` records its stack writes
    /// ([`Helpers::register_recording`]).
    pub fn records_stack_writes(&self, id: u32) -> bool {
        self.entries
            .iter()
            .any(|e| e.id == id && e.records_stack_writes)
    }

    fn add(&mut self, id: u32, name: &str, func: Arc<HelperClosure>, records: bool) -> &mut Self {
        self.entries.retain(|e| e.id != id);
        self.entries.push(Arc::new(Entry {
            id,
            name: name.to_string(),
            func,
            records_stack_writes: records,
        }));
        self
    }

    /// Adds (or replaces) every helper of `other`.
    pub fn extend(&mut self, other: &Helpers) -> &mut Self {
        for e in &other.entries {
            self.entries.retain(|x| x.id != e.id);
            self.entries.push(e.clone());
        }
        self
    }

    /// Each helper's id, name and closure.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str, Arc<HelperClosure>)> + '_ {
        self.entries
            .iter()
            .map(|e| (e.id, e.name.as_str(), e.func.clone()))
    }

    pub fn contains(&self, id: u32) -> bool {
        self.entries.iter().any(|e| e.id == id)
    }

    /// The name a helper was registered under.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.name.as_str())
    }

    /// Ids and names, sorted by id.
    pub fn list(&self) -> Vec<(u32, String)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|e| (e.id, e.name.clone()))
            .collect();
        v.sort();
        v
    }

    /// Builds the slot table the executors index by helper id.
    pub fn table(&self) -> HelperTable {
        let max = self
            .entries
            .iter()
            .map(|e| e.id as usize + 1)
            .max()
            .unwrap_or(0);
        let mut slots = vec![HelperSlot::EMPTY; max];
        for e in &self.entries {
            slots[e.id as usize] = HelperSlot {
                func: Some(trampoline),
                data: Arc::as_ptr(e) as *const c_void,
            };
        }
        HelperTable {
            slots,
            _entries: self.entries.clone(),
        }
    }
}

/// The slot table plus the entries its data pointers point to.
pub struct HelperTable {
    slots: Vec<HelperSlot>,
    _entries: Vec<Arc<Entry>>,
}

// SAFETY: the raw data pointers in `slots` point into `_entries`, whose
// closures are Send + Sync and live as long as the table.
unsafe impl Send for HelperTable {}
// SAFETY: as above; the table is never mutated after construction.
unsafe impl Sync for HelperTable {}

impl HelperTable {
    pub fn slots(&self) -> &[HelperSlot] {
        &self.slots
    }
}

/// The `HelperFn` behind every Rust helper: calls the closure, turns its
/// error (or a panic) into a trap record.
unsafe extern "C" fn trampoline(
    ctx: *mut VmCtx,
    data: *const c_void,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
) -> u64 {
    // SAFETY: `data` is the `Entry` registered in the table, kept alive by it;
    // `ctx` is the live context of the run making the call.
    let (entry, ctx) = unsafe { (&*(data as *const Entry), &mut *ctx) };
    let result = catch_unwind(AssertUnwindSafe(|| (entry.func)(ctx, [a1, a2, a3, a4, a5])));
    if !entry.records_stack_writes {
        ctx.stack_written_lo = ctx.stack_bottom;
    }
    match result {
        Ok(Ok(v)) => v,
        Ok(Err(HelperError::Fault { addr, size, write })) => {
            ctx.raise(if write { TRAP_STORE } else { TRAP_LOAD }, addr, size);
            0
        }
        Ok(Err(HelperError::Failed(code))) => {
            ctx.raise(TRAP_HELPER, entry.id as u64, code);
            0
        }
        Err(_) => {
            ctx.raise(TRAP_HELPER, entry.id as u64, u32::MAX);
            0
        }
    }
}
