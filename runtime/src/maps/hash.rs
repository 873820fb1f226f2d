//! Hash maps (also per-CPU and LRU): a fixed slab of `max_entries` value
//! slots, preallocated like the kernel's, so that a value's address never
//! changes while it is in the map; a key index and a free list under a lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::slab::Slab;
use super::{MapError, UpdateFlag};

pub(crate) struct HashMapImpl {
    slab: Slab,
    stride: usize,
    key_size: usize,
    value_size: usize,
    /// Evict the least recently used entry when full.
    lru: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    index: HashMap<Box<[u8]>, u32>,
    /// The key in each slot.
    keys: Vec<Option<Box<[u8]>>>,
    free: Vec<u32>,
    /// LRU: last use of each slot and slots by last use.
    clock: u64,
    stamps: Vec<u64>,
    order: BTreeMap<u64, u32>,
}

impl State {
    fn touch(&mut self, slot: u32) {
        self.clock += 1;
        let s = slot as usize;
        if let Some(old) = self.stamps.get(s).copied() {
            self.order.remove(&old);
        }
        if let Some(st) = self.stamps.get_mut(s) {
            *st = self.clock;
        }
        self.order.insert(self.clock, slot);
    }

    fn forget(&mut self, slot: u32) {
        if let Some(&old) = self.stamps.get(slot as usize) {
            self.order.remove(&old);
        }
    }
}

impl HashMapImpl {
    pub fn new(
        slab: Slab,
        stride: usize,
        key_size: usize,
        value_size: usize,
        max_entries: u32,
        lru: bool,
    ) -> HashMapImpl {
        let state = State {
            keys: vec![None; max_entries as usize],
            free: (0..max_entries).rev().collect(),
            stamps: vec![0; max_entries as usize],
            ..State::default()
        };
        HashMapImpl {
            slab,
            stride,
            key_size,
            value_size,
            lru,
            state: Mutex::new(state),
        }
    }

    pub fn slab(&self) -> &Slab {
        &self.slab
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the index
        // inconsistent in a way that matters more than losing the map.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() != self.key_size {
            return Err(MapError::KeySize {
                got: key.len(),
                want: self.key_size,
            });
        }
        Ok(())
    }

    /// The address of `key`'s value (and, for LRU maps, marks it used).
    pub fn lookup_addr(&self, key: &[u8]) -> Result<Option<u64>, MapError> {
        self.check_key(key)?;
        let mut st = self.lock();
        let Some(&slot) = st.index.get(key) else {
            return Ok(None);
        };
        if self.lru {
            st.touch(slot);
        }
        Ok(Some(
            self.slab.addr() + (slot as usize * self.stride) as u64,
        ))
    }

    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.check_key(key)?;
        let st = self.lock();
        Ok(st
            .index
            .get(key)
            .and_then(|&slot| self.slab.read(slot as usize * self.stride, self.value_size)))
    }

    pub fn update(&self, key: &[u8], value: &[u8], flag: UpdateFlag) -> Result<(), MapError> {
        self.check_key(key)?;
        if value.len() != self.value_size {
            return Err(MapError::ValueSize {
                got: value.len(),
                want: self.value_size,
            });
        }
        let mut st = self.lock();
        let slot = match (st.index.get(key).copied(), flag) {
            (Some(_), UpdateFlag::NoExist) => return Err(MapError::Exists),
            (None, UpdateFlag::Exist) => return Err(MapError::NotFound),
            (Some(slot), _) => slot,
            (None, _) => {
                let slot = match st.free.pop() {
                    Some(s) => s,
                    None if self.lru => {
                        let Some((_, victim)) = st.order.pop_first() else {
                            return Err(MapError::Full);
                        };
                        if let Some(k) = st.keys.get_mut(victim as usize).and_then(Option::take) {
                            st.index.remove(&k);
                        }
                        victim
                    }
                    None => return Err(MapError::Full),
                };
                let k: Box<[u8]> = key.into();
                st.index.insert(k.clone(), slot);
                if let Some(s) = st.keys.get_mut(slot as usize) {
                    *s = Some(k);
                }
                slot
            }
        };
        self.slab.write(slot as usize * self.stride, value);
        if self.lru {
            st.touch(slot);
        }
        Ok(())
    }

    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        let mut st = self.lock();
        let Some(slot) = st.index.remove(key) else {
            return Err(MapError::NotFound);
        };
        if let Some(k) = st.keys.get_mut(slot as usize) {
            *k = None;
        }
        st.forget(slot);
        st.free.push(slot);
        Ok(())
    }

    /// Every entry, sorted by key.
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let st = self.lock();
        let mut v: Vec<_> = st
            .index
            .iter()
            .filter_map(|(k, &slot)| {
                let value = self
                    .slab
                    .read(slot as usize * self.stride, self.value_size)?;
                Some((k.to_vec(), value))
            })
            .collect();
        v.sort();
        v
    }

    pub fn len(&self) -> usize {
        self.lock().index.len()
    }
}
