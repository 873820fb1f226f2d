//! Two host memory regions that generated programs reach through a helper,
//! so that differential runs exercise the checked-memory path for extra
//! regions (map values, global data, host buffers), which on tier 0 and 1
//! goes through the out-of-line check and its remembered region: loads and
//! stores inside a region, a store to the read-only one (a trap), and
//! accesses just outside either end (traps).
//!
//! Both regions lie inside one 256-byte allocation with 32 bytes or more
//! around each, so an access a little outside a region never reaches other
//! memory, which would be allowed or not depending on where it lies.
//!
//! Each region is also the values of an array map ([`HostRegions::array_maps`],
//! given to the tiers as inlinable maps): `map_lookup_elem` (helper 1, when
//! r1 is one of [`MAP_HANDLES`]) returns a value's address, or 0 for a key
//! out of range, as the runtime's helper does; so generated programs also
//! exercise inline lookups and accesses through their results.

use bpfvm::engine::backend::ArrayMapLayout;
use bpfvm::engine::helpers::{HelperError, Helpers};
use bpfvm::engine::program::MAP_LOOKUP_ELEM;
use bpfvm::engine::vmctx::Region;

/// Helper id of the region helper: `r0 = address of region r1 & 1`.
pub const REGION_HELPER_ID: u32 = 2;
/// Bytes in each region.
pub const REGION_SIZE: usize = 64;
/// Where each region starts in the allocation; region 0 is writable,
/// region 1 read-only.
const REGION_OFFSETS: [usize; 2] = [64, 160];
const ALLOCATION: usize = 256;
/// The handles of the array maps over regions 0 and 1: values no generated
/// constant comes close to, so that `call 1` with any other r1 stays the
/// caller's helper 1.
pub const MAP_HANDLES: [u64; 2] = [0xb9f0_4d41_5030_0000, 0xb9f0_4d41_5031_0000];
/// Per map, `(stride, max_entries)`: 4 values of 16 bytes over the
/// writable region, 8 of 8 bytes over the read-only one.
pub const MAP_SHAPES: [(u64, u32); 2] = [(16, 4), (8, 8)];

/// The allocation holding both regions; its contents start from a fixed
/// pattern on every [`HostRegions::reset`].
pub struct HostRegions {
    bytes: Box<[u8; ALLOCATION]>,
}

impl Default for HostRegions {
    fn default() -> Self {
        let mut h = HostRegions {
            bytes: Box::new([0; ALLOCATION]),
        };
        h.reset();
        h
    }
}

impl HostRegions {
    /// Puts back the initial contents.
    pub fn reset(&mut self) {
        for (k, b) in self.bytes.iter_mut().enumerate() {
            *b = (k as u8).wrapping_mul(0x9d) ^ 0x5a;
        }
    }

    /// The address of region `k` (0 or 1).
    pub fn address(&self, k: usize) -> u64 {
        self.bytes.as_ptr() as u64 + REGION_OFFSETS[k] as u64
    }

    /// The regions, to register for a run.
    pub fn regions(&self) -> [Region; 2] {
        [0, 1].map(|k| Region {
            start: self.address(k),
            len: REGION_SIZE as u64,
            writable: (k == 0) as u64,
        })
    }

    /// The contents of the whole allocation (both regions and what lies
    /// around them), to compare after runs.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes.to_vec()
    }

    /// The array maps over the two regions, for
    /// [`bpfvm::engine::backend::CompileOptions::array_maps`].
    pub fn array_maps(&self) -> Vec<ArrayMapLayout> {
        (0..2)
            .map(|k| ArrayMapLayout {
                handle: MAP_HANDLES[k],
                values: self.address(k),
                stride: MAP_SHAPES[k].0,
                max_entries: MAP_SHAPES[k].1,
                writable: k == 0,
            })
            .collect()
    }

    /// `helpers` with the region helper added, answering with these
    /// regions' addresses, and helper 1 a lookup in their array maps when
    /// r1 is one of [`MAP_HANDLES`] (else `helpers`' own helper 1). The
    /// region helper only returns numbers; the lookup reads its key as
    /// the runtime's does, after checking it.
    pub fn with_helper(&self, helpers: &Helpers) -> Helpers {
        let mut h = Helpers::new();
        h.extend(helpers);
        let addrs = [self.address(0), self.address(1)];
        h.register(REGION_HELPER_ID, "region", move |_, a| {
            Ok(addrs[(a[0] & 1) as usize])
        });
        let maps = self.array_maps();
        let (name, other) = match helpers.iter().find(|(id, ..)| *id == MAP_LOOKUP_ELEM) {
            Some((_, name, f)) => (format!("map_lookup_elem or {name}"), Some(f)),
            None => ("map_lookup_elem".to_string(), None),
        };
        h.register(MAP_LOOKUP_ELEM, &name, move |ctx, a| {
            let Some(map) = maps.iter().find(|m| m.handle == a[0]) else {
                return match &other {
                    Some(f) => f(ctx, a),
                    None => Err(HelperError::Failed(22)),
                };
            };
            let key_at = a[1];
            if !ctx.allows(key_at, 4, false, ctx.stack_bottom) {
                return Err(HelperError::Fault {
                    addr: key_at,
                    size: 4,
                    write: false,
                });
            }
            // SAFETY: the four bytes lie in memory the run may read.
            let key =
                u32::from_le_bytes(unsafe { std::ptr::read_unaligned(key_at as *const [u8; 4]) });
            Ok(if key < map.max_entries {
                map.values + key as u64 * map.stride
            } else {
                0
            })
        });
        h
    }
}
