//! Maps: the runtime side of an object's [`MapDef`]s.
//!
//! | kind | implementation |
//! |---|---|
//! | `array`, `percpu_array` | one slab, values contiguous at `round_up(value_size, 8)` strides |
//! | `hash`, `percpu_hash`, `lru_hash`, `lru_percpu_hash` | preallocated value slots in one slab, a key index under a lock; LRU maps evict the least recently used entry when full |
//! | `prog_array` | slots holding program ids (indices into the object's programs) |
//! | `ringbuf` | see [`RingBuf`] |
//!
//! Per-CPU maps behave as if there were one CPU: one value per key, of
//! `value_size` bytes (the kernel's user-space API would show
//! `round_up(value_size, 8) * ncpus` bytes), and
//! `bpf_get_smp_processor_id()` returns 0.
//!
//! Values live at stable addresses for the map's whole life (deleting a
//! hash entry frees its slot for a later insert but never the memory), so
//! pointers that `bpf_map_lookup_elem` returns stay valid; each map's slab
//! is one [`Region`] that checked code may access (read-only for
//! `.rodata`, whose flags have `BPF_F_RDONLY_PROG`).

mod hash;
mod ringbuf;
mod slab;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bpfvm_engine::backend::ArrayMapLayout;
use bpfvm_engine::elf::{MapDef, MapKind, BPF_F_RDONLY_PROG};
use bpfvm_engine::vmctx::Region;

use hash::HashMapImpl;
pub use ringbuf::RingBuf;
use slab::{Slab, SLAB_ALIGN};

// errno values that helpers return negated.
pub const ENOENT: i64 = 2;
pub const E2BIG: i64 = 7;
pub const EFAULT: i64 = 14;
pub const EEXIST: i64 = 17;
pub const EINVAL: i64 = 22;
pub const ENOSPC: i64 = 28;
pub const EOPNOTSUPP: i64 = 95;

/// Default limit on the memory of all maps of an object (256 MiB).
pub const DEFAULT_MAP_MEMORY: u64 = 256 << 20;

/// Why a map operation or a map's creation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("key is {got} bytes, the map's keys are {want}")]
    KeySize { got: usize, want: usize },
    #[error("value is {got} bytes, the map's values are {want}")]
    ValueSize { got: usize, want: usize },
    #[error("no such key")]
    NotFound,
    #[error("the key exists (BPF_NOEXIST)")]
    Exists,
    #[error("the map is full")]
    Full,
    #[error("index {index} is past max_entries {max}")]
    OutOfRange { index: u32, max: u32 },
    #[error("invalid update flags {0:#x}")]
    InvalidFlags(u64),
    #[error("{op} is not supported on {kind} maps")]
    NotSupported { op: &'static str, kind: String },
    #[error("{0}")]
    BadProgram(String),
    #[error("{0}")]
    Definition(String),
    #[error("maps need {need} bytes, more than the limit of {limit}")]
    TooLarge { need: u64, limit: u64 },
}

impl MapError {
    /// The errno a helper returns (negated) for this error.
    pub fn errno(&self) -> i64 {
        match self {
            MapError::NotFound => ENOENT,
            MapError::Exists => EEXIST,
            MapError::Full | MapError::OutOfRange { .. } | MapError::TooLarge { .. } => E2BIG,
            MapError::NotSupported { .. } => EOPNOTSUPP,
            _ => EINVAL,
        }
    }
}

/// The `flags` of an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateFlag {
    /// `BPF_ANY` (0): create or replace.
    Any,
    /// `BPF_NOEXIST` (1): create only.
    NoExist,
    /// `BPF_EXIST` (2): replace only.
    Exist,
}

impl UpdateFlag {
    pub fn from_u64(flags: u64) -> Result<UpdateFlag, MapError> {
        match flags {
            0 => Ok(UpdateFlag::Any),
            1 => Ok(UpdateFlag::NoExist),
            2 => Ok(UpdateFlag::Exist),
            f => Err(MapError::InvalidFlags(f)),
        }
    }
}

/// Bookkeeping bytes per hash-map entry counted against the memory limit
/// (key slot, LRU stamp, free list), keys not included.
const HASH_ENTRY_OVERHEAD: u64 = 32;

/// No program in a program-array slot.
const EMPTY_SLOT: u32 = u32::MAX;

enum Imp {
    Array {
        slab: Slab,
        stride: usize,
    },
    Hash(HashMapImpl),
    ProgArray {
        slots: Vec<AtomicU32>,
        programs: u32,
    },
    RingBuf(RingBuf),
}

/// A map.
pub struct Map {
    def: MapDef,
    imp: Imp,
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("name", &self.def.name)
            .field("kind", &self.def.kind)
            .finish()
    }
}

fn stride_of(value_size: u32) -> usize {
    (value_size as usize).div_ceil(SLAB_ALIGN) * SLAB_ALIGN
}

impl Map {
    /// The bytes a map of this definition allocates (hash maps: values
    /// plus about [`HASH_ENTRY_OVERHEAD`] bytes of bookkeeping per entry).
    fn memory(def: &MapDef) -> u64 {
        let entries = def.max_entries as u64;
        let values = (stride_of(def.value_size) as u64).saturating_mul(entries);
        match def.kind {
            MapKind::RingBuf => 2 * entries,
            MapKind::ProgArray => 4 * entries,
            MapKind::Hash | MapKind::PercpuHash | MapKind::LruHash | MapKind::LruPercpuHash => {
                values.saturating_add(HASH_ENTRY_OVERHEAD.saturating_mul(entries))
            }
            _ => values,
        }
    }

    /// Creates a map. `programs` is the number of programs a program
    /// array's slots may name.
    fn new(def: &MapDef, programs: u32) -> Result<Map, MapError> {
        let bad = |why: String| Err(MapError::Definition(why));
        let (k, v, n) = (def.key_size, def.value_size, def.max_entries);
        if n == 0 {
            return bad("max_entries is 0".into());
        }
        let alloc = |len: u64| {
            usize::try_from(len)
                .ok()
                .and_then(Slab::zeroed)
                .ok_or(MapError::TooLarge {
                    need: len,
                    limit: isize::MAX as u64,
                })
        };
        let imp = match def.kind {
            MapKind::Array | MapKind::PercpuArray => {
                if k != 4 || v == 0 {
                    return bad(format!(
                        "an array needs 4-byte keys and values of at least 1 byte (key {k}, value {v})"
                    ));
                }
                let stride = stride_of(v);
                let slab = alloc((stride as u64).saturating_mul(n as u64))?;
                if let Some(data) = &def.data {
                    slab.write(0, &data[..data.len().min(v as usize)]);
                }
                Imp::Array { slab, stride }
            }
            MapKind::Hash | MapKind::PercpuHash | MapKind::LruHash | MapKind::LruPercpuHash => {
                if k == 0 || v == 0 {
                    return bad(format!(
                        "a hash map needs keys and values of at least 1 byte (key {k}, value {v})"
                    ));
                }
                let stride = stride_of(v);
                let slab = alloc((stride as u64).saturating_mul(n as u64))?;
                let lru = matches!(def.kind, MapKind::LruHash | MapKind::LruPercpuHash);
                Imp::Hash(HashMapImpl::new(
                    slab, stride, k as usize, v as usize, n, lru,
                ))
            }
            MapKind::ProgArray => {
                if k != 4 || v != 4 {
                    return bad(format!(
                        "a program array needs 4-byte keys and values (key {k}, value {v})"
                    ));
                }
                Imp::ProgArray {
                    slots: (0..n).map(|_| AtomicU32::new(EMPTY_SLOT)).collect(),
                    programs,
                }
            }
            MapKind::RingBuf => {
                if k != 0 || v != 0 || !n.is_power_of_two() || n < 16 {
                    return bad(format!(
                        "a ring buffer needs key and value sizes 0 and a power-of-two size of at least 16 bytes (key {k}, value {v}, size {n})"
                    ));
                }
                Imp::RingBuf(RingBuf::new(alloc(2 * n as u64)?, n as u64))
            }
            other => {
                return Err(MapError::NotSupported {
                    op: "creation",
                    kind: other.name(),
                })
            }
        };
        Ok(Map {
            def: def.clone(),
            imp,
        })
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn def(&self) -> &MapDef {
        &self.def
    }

    pub fn kind(&self) -> MapKind {
        self.def.kind
    }

    /// The value `lddw` with `BPF_PSEUDO_MAP_FD` loads, and that helpers
    /// take as the map argument: the map's address.
    pub fn handle(&self) -> u64 {
        self as *const Map as u64
    }

    /// The ring buffer reader, for ring buffer maps.
    pub fn ringbuf(&self) -> Option<&RingBuf> {
        match &self.imp {
            Imp::RingBuf(r) => Some(r),
            _ => None,
        }
    }

    fn unsupported(&self, op: &'static str) -> MapError {
        MapError::NotSupported {
            op,
            kind: self.def.kind.name(),
        }
    }

    fn index(&self, key: &[u8]) -> Result<u32, MapError> {
        let b: [u8; 4] = key.try_into().map_err(|_| MapError::KeySize {
            got: key.len(),
            want: 4,
        })?;
        Ok(u32::from_le_bytes(b))
    }

    /// The memory programs may access for this map.
    pub fn region(&self) -> Option<Region> {
        let (slab, writable) = match &self.imp {
            Imp::Array { slab, .. } => (slab, self.def.flags & BPF_F_RDONLY_PROG == 0),
            Imp::Hash(h) => (h.slab(), true),
            Imp::RingBuf(r) => (r.slab(), true),
            Imp::ProgArray { .. } => return None,
        };
        (slab.len() > 0).then(|| Region {
            start: slab.addr(),
            len: slab.len() as u64,
            writable: writable as u64,
        })
    }

    /// The address of value `offset` bytes into the first value of an
    /// array map (what `BPF_PSEUDO_MAP_VALUE` loads).
    pub fn value_addr(&self, offset: u32) -> Result<u64, String> {
        match &self.imp {
            Imp::Array { slab, .. } if offset < self.def.value_size => {
                Ok(slab.addr() + offset as u64)
            }
            Imp::Array { .. } => Err(format!(
                "offset {offset} is past the value of map `{}` ({} bytes)",
                self.def.name, self.def.value_size
            )),
            _ => Err(format!(
                "map `{}` is a {} map: direct value access needs an array",
                self.def.name,
                self.def.kind.name()
            )),
        }
    }

    /// Where a plain array map with 4-byte keys keeps its values, for
    /// tiers that inline its lookups (exactly what [`Map::lookup_addr`]
    /// computes); `None` for every other map.
    pub fn array_layout(&self) -> Option<ArrayMapLayout> {
        match &self.imp {
            Imp::Array { slab, stride }
                if self.def.kind == MapKind::Array && self.def.key_size == 4 =>
            {
                Some(ArrayMapLayout {
                    handle: self.handle(),
                    values: slab.addr(),
                    stride: *stride as u64,
                    max_entries: self.def.max_entries,
                    writable: self.def.flags & BPF_F_RDONLY_PROG == 0,
                })
            }
            _ => None,
        }
    }

    /// For `bpf_map_lookup_elem`: the address of the value, if any.
    pub(crate) fn lookup_addr(&self, key: &[u8]) -> Result<Option<u64>, MapError> {
        match &self.imp {
            Imp::Array { slab, stride } => {
                let i = self.index(key)?;
                Ok((i < self.def.max_entries).then(|| slab.addr() + (i as usize * stride) as u64))
            }
            Imp::Hash(h) => h.lookup_addr(key),
            _ => Ok(None),
        }
    }

    /// A copy of the value for `key`.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        match &self.imp {
            Imp::Array { slab, stride } => {
                let i = self.index(key)?;
                if i >= self.def.max_entries {
                    return Ok(None);
                }
                Ok(slab.read(i as usize * stride, self.def.value_size as usize))
            }
            Imp::Hash(h) => h.lookup(key),
            Imp::ProgArray { slots, .. } => {
                let i = self.index(key)?;
                let v = slots.get(i as usize).map(|s| s.load(Ordering::Acquire));
                Ok(v.filter(|&p| p != EMPTY_SLOT)
                    .map(|p| p.to_le_bytes().to_vec()))
            }
            Imp::RingBuf(_) => Err(self.unsupported("lookup")),
        }
    }

    /// Creates or replaces the value of `key` (`flags`: `BPF_ANY`,
    /// `BPF_NOEXIST`, `BPF_EXIST`). For a program array the value is a
    /// program id (4 bytes, little endian).
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        let flag = UpdateFlag::from_u64(flags)?;
        let vs = self.def.value_size as usize;
        let check_value = || {
            if value.len() == vs {
                Ok(())
            } else {
                Err(MapError::ValueSize {
                    got: value.len(),
                    want: vs,
                })
            }
        };
        match &self.imp {
            Imp::Array { slab, stride } => {
                let i = self.index(key)?;
                check_value()?;
                if i >= self.def.max_entries {
                    return Err(MapError::OutOfRange {
                        index: i,
                        max: self.def.max_entries,
                    });
                }
                if flag == UpdateFlag::NoExist {
                    return Err(MapError::Exists);
                }
                slab.write(i as usize * stride, value);
                Ok(())
            }
            Imp::Hash(h) => h.update(key, value, flag),
            Imp::ProgArray { slots, programs } => {
                let i = self.index(key)?;
                check_value()?;
                let p = self.index(value)?;
                if p >= *programs {
                    return Err(MapError::BadProgram(format!(
                        "program id {p} does not exist (the object has {programs})"
                    )));
                }
                let slot = slots.get(i as usize).ok_or(MapError::OutOfRange {
                    index: i,
                    max: self.def.max_entries,
                })?;
                if flag == UpdateFlag::NoExist {
                    return Err(MapError::Exists);
                }
                slot.store(p, Ordering::Release);
                Ok(())
            }
            Imp::RingBuf(_) => Err(self.unsupported("update")),
        }
    }

    /// Deletes `key` (hash maps and program arrays).
    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        match &self.imp {
            Imp::Hash(h) => h.delete(key),
            Imp::ProgArray { slots, .. } => {
                let i = self.index(key)?;
                let slot = slots.get(i as usize).ok_or(MapError::NotFound)?;
                if slot.swap(EMPTY_SLOT, Ordering::AcqRel) == EMPTY_SLOT {
                    return Err(MapError::NotFound);
                }
                Ok(())
            }
            Imp::Array { .. } | Imp::RingBuf(_) => Err(self.unsupported("delete")),
        }
    }

    /// The program id in slot `index` of a program array.
    pub fn program_at(&self, index: u32) -> Option<u32> {
        match &self.imp {
            Imp::ProgArray { slots, .. } => slots
                .get(index as usize)
                .map(|s| s.load(Ordering::Acquire))
                .filter(|&p| p != EMPTY_SLOT),
            _ => None,
        }
    }

    /// The map's contents as (key, value) pairs: every slot of an array;
    /// hash entries sorted by key; the occupied slots of a program array
    /// (value: the program id); a ring buffer's unread records (key: their
    /// sequence number as 4 bytes, little endian), without consuming them.
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        match &self.imp {
            Imp::Array { slab, stride } => (0..self.def.max_entries)
                .filter_map(|i| {
                    let v = slab.read(i as usize * stride, self.def.value_size as usize)?;
                    Some((i.to_le_bytes().to_vec(), v))
                })
                .collect(),
            Imp::Hash(h) => h.entries(),
            Imp::ProgArray { .. } => (0..self.def.max_entries)
                .filter_map(|i| {
                    let p = self.program_at(i)?;
                    Some((i.to_le_bytes().to_vec(), p.to_le_bytes().to_vec()))
                })
                .collect(),
            Imp::RingBuf(r) => r
                .peek()
                .into_iter()
                .enumerate()
                .map(|(i, rec)| ((i as u32).to_le_bytes().to_vec(), rec))
                .collect(),
        }
    }

    /// Number of entries in a hash map, records in a ring buffer, occupied
    /// slots in a program array, `max_entries` for an array.
    pub fn len(&self) -> usize {
        match &self.imp {
            Imp::Array { .. } => self.def.max_entries as usize,
            Imp::Hash(h) => h.len(),
            Imp::ProgArray { .. } => self.entries().len(),
            Imp::RingBuf(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The maps of an object, in the object's order (a map's index is what
/// relocated `lddw`s name).
#[derive(Debug, Default)]
pub struct MapSet {
    maps: Vec<Arc<Map>>,
}

impl MapSet {
    /// Creates the maps of `defs`. `program_id` turns a program name of a
    /// program array's static initialiser into a program id; `programs` is
    /// the number of program ids; `limit` caps the memory of all maps.
    pub fn build(
        defs: &[MapDef],
        programs: u32,
        program_id: &dyn Fn(&str) -> Option<u32>,
        limit: u64,
    ) -> Result<MapSet, (String, MapError)> {
        let mut total = 0u64;
        for d in defs {
            total = total.saturating_add(Map::memory(d));
            if total > limit {
                return Err((d.name.clone(), MapError::TooLarge { need: total, limit }));
            }
        }
        let mut maps = Vec::with_capacity(defs.len());
        for d in defs {
            let m = Map::new(d, programs).map_err(|e| (d.name.clone(), e))?;
            for (slot, name) in &d.prog_slots {
                let id = program_id(name).ok_or_else(|| {
                    (
                        d.name.clone(),
                        MapError::BadProgram(format!(
                            "slot {slot} names `{name}`, which is not an entry program"
                        )),
                    )
                })?;
                m.update(&slot.to_le_bytes(), &id.to_le_bytes(), 0)
                    .map_err(|e| (d.name.clone(), e))?;
            }
            maps.push(Arc::new(m));
        }
        Ok(MapSet { maps })
    }

    pub fn len(&self) -> usize {
        self.maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// The map with index `i`.
    pub fn get(&self, i: usize) -> Option<&Arc<Map>> {
        self.maps.get(i)
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Map>> {
        self.maps.iter().find(|m| m.name() == name)
    }

    /// The map whose [`Map::handle`] is `handle` (helpers' map argument).
    pub fn by_handle(&self, handle: u64) -> Option<&Arc<Map>> {
        self.maps.iter().find(|m| m.handle() == handle)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Map>> {
        self.maps.iter()
    }

    /// The memory regions of every map.
    pub fn regions(&self) -> Vec<Region> {
        self.maps.iter().filter_map(|m| m.region()).collect()
    }

    /// The ring buffer that holds the record at `addr`.
    pub(crate) fn ringbuf_owning(&self, addr: u64) -> Option<&RingBuf> {
        self.maps
            .iter()
            .filter_map(|m| m.ringbuf())
            .find(|r| r.owns(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(kind: MapKind, key: u32, value: u32, max: u32) -> MapDef {
        MapDef::host("m", kind, key, value, max)
    }

    fn k(i: u32) -> [u8; 4] {
        i.to_le_bytes()
    }

    #[test]
    fn array_semantics() {
        let m = Map::new(&def(MapKind::Array, 4, 3, 2), 0).unwrap();
        assert_eq!(m.lookup(&k(1)).unwrap(), Some(vec![0, 0, 0]));
        m.update(&k(1), &[1, 2, 3], 0).unwrap();
        assert_eq!(m.lookup(&k(1)).unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(m.lookup(&k(2)).unwrap(), None);
        assert_eq!(
            m.update(&k(2), &[0; 3], 0),
            Err(MapError::OutOfRange { index: 2, max: 2 })
        );
        assert_eq!(m.update(&k(0), &[0; 3], 1), Err(MapError::Exists));
        assert!(matches!(
            m.delete(&k(0)),
            Err(MapError::NotSupported { .. })
        ));
        assert!(matches!(
            m.update(&[0; 3], &[0; 3], 0),
            Err(MapError::KeySize { .. })
        ));
        let a0 = m.lookup_addr(&k(0)).unwrap().unwrap();
        let a1 = m.lookup_addr(&k(1)).unwrap().unwrap();
        assert_eq!(a1 - a0, 8, "values are 8-byte aligned");
        assert_eq!(m.entries().len(), 2);
        assert_eq!(m.region().unwrap().len, 16);
    }

    #[test]
    fn hash_semantics() {
        let m = Map::new(&def(MapKind::Hash, 2, 1, 2), 0).unwrap();
        m.update(b"aa", &[1], 1).unwrap();
        assert_eq!(m.update(b"aa", &[1], 1), Err(MapError::Exists));
        assert_eq!(m.update(b"bb", &[1], 2), Err(MapError::NotFound));
        m.update(b"bb", &[2], 0).unwrap();
        assert_eq!(m.update(b"cc", &[3], 0), Err(MapError::Full));
        let addr = m.lookup_addr(b"bb").unwrap().unwrap();
        m.delete(b"aa").unwrap();
        assert_eq!(m.delete(b"aa"), Err(MapError::NotFound));
        m.update(b"cc", &[3], 0).unwrap();
        assert_eq!(m.lookup_addr(b"bb").unwrap(), Some(addr), "stable address");
        assert_eq!(
            m.entries(),
            vec![(b"bb".to_vec(), vec![2]), (b"cc".to_vec(), vec![3])]
        );
        assert_eq!(m.update(b"dd", &[0], 3), Err(MapError::InvalidFlags(3)));
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let m = Map::new(&def(MapKind::LruHash, 1, 1, 2), 0).unwrap();
        m.update(b"a", &[1], 0).unwrap();
        m.update(b"b", &[2], 0).unwrap();
        m.lookup_addr(b"a").unwrap(); // a is now more recent than b
        m.update(b"c", &[3], 0).unwrap();
        let keys: Vec<_> = m.entries().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn prog_array_slots() {
        let m = Map::new(&def(MapKind::ProgArray, 4, 4, 3), 2).unwrap();
        assert_eq!(m.program_at(0), None);
        m.update(&k(1), &k(1), 0).unwrap();
        assert_eq!(m.program_at(1), Some(1));
        assert!(matches!(
            m.update(&k(0), &k(2), 0),
            Err(MapError::BadProgram(_))
        ));
        assert!(m.region().is_none());
        m.delete(&k(1)).unwrap();
        assert_eq!(m.program_at(1), None);
    }

    #[test]
    fn bad_definitions_are_errors() {
        for d in [
            def(MapKind::Array, 8, 4, 1),
            def(MapKind::Array, 4, 4, 0),
            def(MapKind::Hash, 0, 4, 1),
            def(MapKind::RingBuf, 0, 0, 100),
            def(MapKind::Other(12), 4, 4, 1),
        ] {
            assert!(Map::new(&d, 0).is_err(), "{d:?}");
        }
        for big in [
            def(MapKind::Array, 4, u32::MAX, u32::MAX),
            def(MapKind::Hash, 4, u32::MAX - 3, u32::MAX),
            def(MapKind::Hash, 4, 1, 1 << 24),
        ] {
            let e = MapSet::build(&[big], 0, &|_| None, DEFAULT_MAP_MEMORY).unwrap_err();
            assert!(matches!(e.1, MapError::TooLarge { .. }));
        }
    }
}
