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

use bpfvm::engine::helpers::Helpers;
use bpfvm::engine::vmctx::Region;

/// Helper id of the region helper: `r0 = address of region r1 & 1`.
pub const REGION_HELPER_ID: u32 = 2;
/// Bytes in each region.
pub const REGION_SIZE: usize = 64;
/// Where each region starts in the allocation; region 0 is writable,
/// region 1 read-only.
const REGION_OFFSETS: [usize; 2] = [64, 160];
const ALLOCATION: usize = 256;

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

    /// `helpers` with the region helper added, answering with these
    /// regions' addresses. The helper only returns numbers; it never
    /// touches the memory.
    pub fn with_helper(&self, helpers: &Helpers) -> Helpers {
        let mut h = Helpers::new();
        h.extend(helpers);
        let addrs = [self.address(0), self.address(1)];
        h.register(REGION_HELPER_ID, "region", move |_, a| {
            Ok(addrs[(a[0] & 1) as usize])
        });
        h
    }
}
