//! Running clang-compiled eBPF objects: [`LoadedObject`] builds an object's
//! maps, resolves its `lddw` pseudo instructions, and provides the regions
//! and the standard helpers its programs need.
//!
//! ```no_run
//! use bpfvm::object::LoadedObject;
//! use bpfvm::tier::Tier;
//!
//! let bytes = std::fs::read("counter.o").unwrap();
//! let obj = LoadedObject::load(&bytes).unwrap();
//! let run = obj.prepare("xdp_count", Tier::Interp, &Default::default()).unwrap();
//! let mut packet = vec![0u8; 64];
//! let r0 = run.run(&mut packet).unwrap().r0;
//! for (key, value) in obj.map("pkt_count").unwrap().entries() {
//!     println!("{key:?} {value:?} -> {r0}");
//! }
//! ```
//!
//! The lower-level pieces, for an embedder with its own run loop (such as
//! the tiered [`crate::Engine`]): [`LoadedObject::verify_program`] gives
//! the verified program with its `lddw`s resolved,
//! [`LoadedObject::regions`] the memory checked code may access (map
//! values, global data, host regions), and [`LoadedObject::helpers_for`]
//! the helper set for a tier. All three must be used together: helpers
//! return pointers into the regions, and the program's `lddw`s hold
//! addresses of the maps.
//!
//! **Program ids.** Ids `0..n` are the object's entry programs
//! ([`bpfvm_engine::elf::Object::programs`]); a program array's value is
//! such an id (4 bytes, little endian). `.text` functions run as entry
//! points get ids from `n` on.
//!
//! **lddw values.** `BPF_PSEUDO_MAP_FD`/`_IDX` (map index) load the map's
//! handle ([`Map::handle`]); `BPF_PSEUDO_MAP_VALUE`/`_IDX_VALUE` load the
//! address of the first value of an array map plus the offset (global
//! data); `BPF_PSEUDO_FUNC` loads an opaque code address that only
//! `bpf_loop` understands; `BPF_PSEUDO_BTF_ID` (ksyms) is refused.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bpfvm_engine::backend::{
    self, ArrayMapLayout, CompileError, CompileOptions, CompiledCode, Outcome, RunEnv,
};
use bpfvm_engine::elf::{self, ElfError, Object, ProgramSection};
use bpfvm_engine::helpers::{HelperError, HelperTable, Helpers};
use bpfvm_engine::instr::LddwPseudo;
use bpfvm_engine::isa::{
    Insn, PSEUDO_BTF_ID, PSEUDO_FUNC, PSEUDO_MAP_FD, PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE,
    PSEUDO_MAP_VALUE,
};
use bpfvm_engine::verifier::{self, LddwResolver, VerifyError, VerifyOptions};
use bpfvm_engine::vmctx::{Region, VmCtx};
use bpfvm_engine::{Program, Trap};

use crate::helpers::{self, reenter::Reenter, STANDARD_IDS};
use crate::maps::{Map, MapError, MapSet, DEFAULT_MAP_MEMORY};
use crate::tier::{self, Tier, TierError};

mod aot;

/// A map's contents: (key, value) pairs.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// Where `bpf_trace_printk` lines go (without their trailing newline).
pub type TraceSink = Arc<dyn Fn(&str) + Send + Sync>;

/// How an object is loaded.
#[derive(Clone)]
pub struct LoadOptions {
    /// Limit on the memory of all maps together, in bytes.
    pub max_map_memory: u64,
    /// Seed of `bpf_get_prandom_u32` (non-zero).
    pub prandom_seed: u64,
    /// Where `bpf_trace_printk` writes (default: standard error, prefixed
    /// with `bpf_trace_printk: `).
    pub trace: Option<TraceSink>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_map_memory: DEFAULT_MAP_MEMORY,
            prandom_seed: 0x2545_f491_4f6c_dd1d,
            trace: None,
        }
    }
}

/// Why an object cannot be loaded, verified or run.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error("map `{map}`: {error}")]
    Map { map: String, error: MapError },
    #[error("program `{program}`: {error}")]
    Verify { program: String, error: VerifyError },
    #[error(transparent)]
    Tier(#[from] TierError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("AOT object: {0}")]
    Aot(String),
}

/// A `BPF_PSEUDO_FUNC` value: a function of a program, by pc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FuncAddr {
    pub program: u32,
    pub pc: u32,
}

/// Top byte of every function address.
const FUNC_TAG: u64 = 0xbf;
/// Program ids that fit in a function address.
const MAX_PROGRAM_ID: u32 = 0xff_ffff;

impl FuncAddr {
    fn encode(self) -> u64 {
        FUNC_TAG << 56 | ((self.program & MAX_PROGRAM_ID) as u64) << 32 | self.pc as u64
    }

    pub fn decode(v: u64) -> Option<FuncAddr> {
        (v >> 56 == FUNC_TAG).then_some(FuncAddr {
            program: ((v >> 32) as u32) & MAX_PROGRAM_ID,
            pc: v as u32,
        })
    }
}

/// What helpers share: the object, its maps and per-object state.
pub(crate) struct Shared {
    pub object: Object,
    pub maps: MapSet,
    trace: RwLock<TraceSink>,
    pub rng: AtomicU64,
    pub epoch: Instant,
}

impl Shared {
    /// Sends one trace line to the sink.
    pub fn trace(&self, line: &str) {
        let sink = self.trace.read().unwrap_or_else(|p| p.into_inner()).clone();
        sink(line);
    }

    /// The linked program with id `id`.
    pub fn linked(&self, id: u32) -> Result<ProgramSection, String> {
        let id = id as usize;
        let n = self.object.programs.len();
        if let Some(p) = self.object.programs.get(id) {
            return Ok(p.clone());
        }
        let f = id
            .checked_sub(n)
            .and_then(|k| self.object.functions.get(k))
            .ok_or_else(|| format!("program id {id} does not exist"))?;
        self.object.program(&f.name).map_err(|e| e.to_string())
    }

    /// Verifies the instructions of program `id` (shifted by `pc_shift`
    /// slots when an entry stub precedes them).
    pub fn verify_insns(
        &self,
        id: u32,
        insns: Vec<Insn>,
        pc_shift: usize,
        helper_exists: &dyn Fn(u32) -> bool,
    ) -> Result<Program, VerifyError> {
        let resolver = Resolver {
            maps: &self.maps,
            program: id,
            pc_shift,
        };
        let opts = VerifyOptions {
            helper_exists,
            lddw: Some(&resolver),
            ..VerifyOptions::default()
        };
        verifier::verify(insns, &opts)
    }
}

/// Resolves the `lddw` pseudo sources of one program of the object.
struct Resolver<'a> {
    maps: &'a MapSet,
    program: u32,
    pc_shift: usize,
}

impl Resolver<'_> {
    fn map(&self, imm: i32) -> Result<&Arc<Map>, String> {
        usize::try_from(imm)
            .ok()
            .and_then(|i| self.maps.get(i))
            .ok_or_else(|| format!("map index {imm} does not exist ({} maps)", self.maps.len()))
    }
}

impl LddwResolver for Resolver<'_> {
    fn resolve(&self, p: &LddwPseudo) -> Result<u64, String> {
        match p.kind {
            PSEUDO_MAP_FD | PSEUDO_MAP_IDX => Ok(self.map(p.imm)?.handle()),
            PSEUDO_MAP_VALUE | PSEUDO_MAP_IDX_VALUE => {
                self.map(p.imm)?.value_addr(p.next_imm as u32)
            }
            PSEUDO_BTF_ID => Err("kernel symbols (BTF ids) do not exist in bpfvm".into()),
            PSEUDO_FUNC => Err("a function address needs the lddw's pc".into()),
            k => Err(format!("unknown pseudo source {k}")),
        }
    }

    fn resolve_at(&self, pc: usize, p: &LddwPseudo) -> Result<u64, String> {
        if p.kind != PSEUDO_FUNC {
            return self.resolve(p);
        }
        let target = (pc as i64 + 1 + p.imm as i64)
            .checked_sub(self.pc_shift as i64)
            .and_then(|t| u32::try_from(t).ok())
            .ok_or("the function is outside the program")?;
        if self.program > MAX_PROGRAM_ID {
            return Err(format!(
                "program id {} is too large for function addresses",
                self.program
            ));
        }
        Ok(FuncAddr {
            program: self.program,
            pc: target,
        }
        .encode())
    }
}

/// An object loaded for running: its maps exist, its programs can be
/// verified and run.
pub struct LoadedObject {
    shared: Arc<Shared>,
    custom: Helpers,
    host_regions: Vec<Region>,
}

impl std::fmt::Debug for LoadedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedObject")
            .field("programs", &self.shared.object.programs.len())
            .field("maps", &self.shared.maps)
            .finish()
    }
}

impl LoadedObject {
    /// Parses an ELF object and creates its maps, with default options.
    pub fn load(bytes: &[u8]) -> Result<LoadedObject, ObjectError> {
        LoadedObject::load_with(bytes, LoadOptions::default())
    }

    pub fn load_with(bytes: &[u8], opts: LoadOptions) -> Result<LoadedObject, ObjectError> {
        LoadedObject::from_object(elf::parse(bytes)?, opts)
    }

    /// Creates the maps of a parsed object.
    pub fn from_object(object: Object, opts: LoadOptions) -> Result<LoadedObject, ObjectError> {
        let n = object.programs.len() as u32;
        let maps = MapSet::build(
            &object.maps,
            n,
            &|name| object.program_index(name).map(|i| i as u32),
            opts.max_map_memory,
        )
        .map_err(|(map, error)| ObjectError::Map { map, error })?;
        let trace = opts.trace.unwrap_or_else(|| {
            Arc::new(|line: &str| eprintln!("bpf_trace_printk: {line}")) as TraceSink
        });
        Ok(LoadedObject {
            shared: Arc::new(Shared {
                object,
                maps,
                trace: RwLock::new(trace),
                rng: AtomicU64::new(opts.prandom_seed.max(1)),
                epoch: Instant::now(),
            }),
            custom: Helpers::new(),
            host_regions: Vec::new(),
        })
    }

    /// The parsed object (programs, map definitions, relocations).
    pub fn object(&self) -> &Object {
        &self.shared.object
    }

    pub fn maps(&self) -> &MapSet {
        &self.shared.maps
    }

    pub fn map(&self, name: &str) -> Option<&Arc<Map>> {
        self.shared.maps.by_name(name)
    }

    /// Replaces the trace sink.
    pub fn set_trace_sink(&self, sink: TraceSink) {
        *self.shared.trace.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    /// Adds a helper, or replaces a standard one, for every later
    /// [`LoadedObject::helpers_for`] and verification.
    pub fn register_helper<F>(&mut self, id: u32, name: &str, f: F) -> &mut Self
    where
        F: Fn(&mut VmCtx, [u64; 5]) -> Result<u64, HelperError> + Send + Sync + 'static,
    {
        self.custom.register(id, name, f);
        self
    }

    /// Adds host memory that programs (and `bpf_probe_read`) may access.
    ///
    /// # Safety
    /// The region must stay valid (and, when writable, writable) memory
    /// for as long as any program of this object runs.
    pub unsafe fn register_region(&mut self, region: Region) {
        self.host_regions.push(region);
    }

    /// The ids of the helpers programs may call.
    pub fn helper_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = STANDARD_IDS.to_vec();
        ids.extend(self.custom.list().into_iter().map(|(id, _)| id));
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The id of a program: an entry program by function name, or by
    /// section name when one program comes from that section, else a
    /// function of `.text`.
    pub fn program_id(&self, name: &str) -> Option<u32> {
        let o = &self.shared.object;
        if let Some(i) = o.program_index(name) {
            return Some(i as u32);
        }
        let by_section: Vec<usize> = (0..o.programs.len())
            .filter(|&i| o.programs[i].section == name)
            .collect();
        if let [i] = by_section[..] {
            return Some(i as u32);
        }
        o.functions
            .iter()
            .position(|f| f.name == name && f.section == elf::TEXT_SECTION)
            .map(|k| (o.programs.len() + k) as u32)
    }

    fn id_of(&self, name: &str) -> Result<u32, ObjectError> {
        self.program_id(name).ok_or_else(|| {
            ObjectError::Elf(ElfError::UnknownProgram {
                name: name.into(),
                available: self.shared.object.describe_programs(),
            })
        })
    }

    /// The linked, relocated instructions of program `name`.
    pub fn program_insns(&self, name: &str) -> Result<Vec<Insn>, ObjectError> {
        let id = self.id_of(name)?;
        self.shared
            .linked(id)
            .map(|p| p.insns)
            .map_err(|_| self.unknown(name))
    }

    fn unknown(&self, name: &str) -> ObjectError {
        ObjectError::Elf(ElfError::UnknownProgram {
            name: name.into(),
            available: self.shared.object.describe_programs(),
        })
    }

    /// Verifies program `name` with its `lddw`s resolved to this object's
    /// maps and its helper calls checked against [`LoadedObject::helper_ids`].
    pub fn verify_program(&self, name: &str) -> Result<Program, ObjectError> {
        let id = self.id_of(name)?;
        let insns = self
            .shared
            .linked(id)
            .map_err(|_| self.unknown(name))?
            .insns;
        let ids = self.helper_ids();
        self.shared
            .verify_insns(id, insns, 0, &|h| ids.contains(&h))
            .map_err(|error| ObjectError::Verify {
                program: name.into(),
                error,
            })
    }

    /// The `lddw` resolver of program `name`, for an embedder that runs
    /// the verifier itself (e.g. `Engine::load_with(obj.program_insns(name)?,
    /// Some(&resolver))`); [`LoadedObject::verify_program`] uses the same.
    pub fn lddw_resolver(&self, name: &str) -> Result<impl LddwResolver + '_, ObjectError> {
        Ok(Resolver {
            maps: &self.shared.maps,
            program: self.id_of(name)?,
            pc_shift: 0,
        })
    }

    /// The memory checked code may access besides its input and stack:
    /// every map's values (global data included) and the host's regions.
    pub fn regions(&self) -> Vec<Region> {
        let mut r = self.shared.maps.regions();
        r.extend_from_slice(&self.host_regions);
        r
    }

    /// The helpers for programs that run on `tier` with `opts`: the
    /// standard ones (tail calls and `bpf_loop` callbacks compile and run
    /// on the same tier with the same options) plus the host's. An
    /// embedder that runs one program on several tiers with one helper
    /// set (a tiered engine) gets its tail calls and callbacks on the tier
    /// the set was made for.
    pub fn helpers_for(&self, tier: Tier, opts: &CompileOptions) -> Result<Helpers, ObjectError> {
        let backend = tier::backend(tier)?;
        let reenter = Arc::new(Reenter::new(
            self.shared.clone(),
            backend,
            opts.clone(),
            self.helper_ids(),
        ));
        let mut h = helpers::standard(&self.shared, &reenter);
        h.extend(&self.custom);
        Ok(h)
    }

    /// [`LoadedObject::helpers_for`] the interpreter with default options.
    pub fn helpers(&self) -> Helpers {
        let reenter = Arc::new(Reenter::new(
            self.shared.clone(),
            Box::new(bpfvm_engine::interp::Interpreter),
            CompileOptions::default(),
            self.helper_ids(),
        ));
        let mut h = helpers::standard(&self.shared, &reenter);
        h.extend(&self.custom);
        h
    }

    /// Program `name` verified as [`LoadedObject::verify_program`] does,
    /// and `opts` with the array maps whose lookups a tier inlines: what
    /// [`LoadedObject::prepare`] compiles (and `bpfvm emit` prints).
    pub fn codegen_inputs(
        &self,
        name: &str,
        opts: &CompileOptions,
    ) -> Result<(Program, CompileOptions), ObjectError> {
        let program = self.verify_program(name)?;
        let opts = CompileOptions {
            array_maps: self.inlinable_array_maps(),
            ..opts.clone()
        };
        Ok((program, opts))
    }

    /// Verifies and compiles program `name` on `tier`, ready to run.
    pub fn prepare(
        &self,
        name: &str,
        tier: Tier,
        opts: &CompileOptions,
    ) -> Result<PreparedProgram, ObjectError> {
        let (program, opts) = self.codegen_inputs(name, opts)?;
        let code = tier::backend(tier)?.compile(&Arc::new(program), &opts)?;
        let table = self.helpers_for(tier, &opts)?.table();
        Ok(PreparedProgram {
            code,
            table,
            regions: self.regions(),
        })
    }

    /// Adds what a tiered [`crate::Engine`] needs to run this object's
    /// programs: the helpers of [`LoadedObject::helpers_for`] `tier` with
    /// `opts` (tail calls and `bpf_loop` callbacks run there), and the
    /// regions of [`LoadedObject::regions`], whose memory the configuration
    /// keeps alive. Then load a program with
    /// `engine.load_with(obj.program_insns(name)?, Some(&obj.lddw_resolver(name)?))`.
    /// Map values are writable regions, so such an engine does not
    /// cross-check ([`crate::Engine::cross_checks_possible`]).
    pub fn configure(
        &self,
        config: &mut crate::Config,
        tier: Tier,
        opts: &CompileOptions,
    ) -> Result<(), ObjectError> {
        config.helpers(&self.helpers_for(tier, opts)?);
        config.regions.extend(self.regions());
        config.region_owners.push(self.shared.clone());
        config.array_maps = self.inlinable_array_maps();
        Ok(())
    }

    /// The array maps whose lookups a tier may inline: every array map
    /// with 4-byte keys, unless the host replaced helper 1
    /// (`map_lookup_elem`). Per-CPU arrays, hash maps and the rest always
    /// go through the helper.
    pub fn inlinable_array_maps(&self) -> Vec<ArrayMapLayout> {
        if self.custom.contains(helpers::MAP_LOOKUP_ELEM) {
            return Vec::new();
        }
        self.shared
            .maps
            .iter()
            .filter_map(|m| m.array_layout())
            .collect()
    }

    /// Every map's name and contents ([`Map::entries`]), in map order.
    pub fn dump_maps(&self) -> Vec<(String, MapEntries)> {
        self.shared
            .maps
            .iter()
            .map(|m| (m.name().to_string(), m.entries()))
            .collect()
    }
}

/// A compiled program of an object with its helper table and regions.
pub struct PreparedProgram {
    code: Box<dyn CompiledCode>,
    table: HelperTable,
    regions: Vec<Region>,
}

impl PreparedProgram {
    /// Runs over `mem` (r1 = its address, r2 = its length) on a fresh stack.
    pub fn run(&self, mem: &mut [u8]) -> Result<Outcome, Trap> {
        let env = RunEnv {
            helpers: &self.table,
            regions: &self.regions,
            host: std::ptr::null_mut(),
        };
        backend::execute(self.code.as_ref(), &env, mem)
    }

    /// The tier the code runs on.
    pub fn tier(&self) -> &'static str {
        self.code.tier()
    }
}

/// What the loader's fuzz target (`fuzz/fuzz_targets/elf_loader.rs`) and
/// its corpus replay test do with an input: parse it, create its maps
/// (with a 16 MiB limit), verify every program and run each verified one
/// on the interpreter over 64 zero bytes with a budget of 100 000
/// instructions. Returns the number of programs that ran; every failure
/// along the way is an error value, and a panic is a bug.
pub fn load_and_exercise(bytes: &[u8]) -> Result<usize, ObjectError> {
    let opts = LoadOptions {
        max_map_memory: 16 << 20,
        trace: Some(Arc::new(|_: &str| {})),
        ..LoadOptions::default()
    };
    let obj = LoadedObject::load_with(bytes, opts)?;
    let copts = CompileOptions {
        budget: Some(100_000),
        ..CompileOptions::default()
    };
    let mut ran = 0;
    let names: Vec<String> = obj
        .object()
        .programs
        .iter()
        .map(|p| p.name.clone())
        .collect();
    for name in names {
        let Ok(run) = obj.prepare(&name, Tier::Interp, &copts) else {
            continue;
        };
        let _ = run.run(&mut [0u8; 64]);
        ran += 1;
    }
    for m in obj.maps().iter() {
        let _ = m.entries();
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn func_addr_round_trips() {
        let f = FuncAddr {
            program: 7,
            pc: 1234,
        };
        assert_eq!(FuncAddr::decode(f.encode()), Some(f));
        assert_eq!(FuncAddr::decode(1234), None);
    }
}
