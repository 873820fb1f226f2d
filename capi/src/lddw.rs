//! The host's `lddw` hooks, as llvmbpf's `set_lddw_helpers` takes them,
//! resolving pseudo `lddw`s at load time (an [`LddwResolver`]) and the
//! `__lddw_helper_*` symbols of AOT objects loaded back.

use bpfvm_engine::instr::LddwPseudo;
use bpfvm_engine::isa::{
    PSEUDO_BTF_ID, PSEUDO_FUNC, PSEUDO_MAP_FD, PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE,
    PSEUDO_MAP_VALUE,
};
use bpfvm_engine::verifier::LddwResolver;

/// `uint64_t (*)(uint32_t)`: map by fd, map by index, variable and code address.
pub type Hook32 = unsafe extern "C" fn(u32) -> u64;
/// `uint64_t (*)(uint64_t)`: a map's first value.
pub type Hook64 = unsafe extern "C" fn(u64) -> u64;

/// The five hooks; each may be absent (NULL).
#[derive(Clone, Copy, Debug, Default)]
pub struct LddwHooks {
    pub map_by_fd: Option<Hook32>,
    pub map_by_idx: Option<Hook32>,
    pub map_val: Option<Hook64>,
    pub var_addr: Option<Hook32>,
    pub code_addr: Option<Hook32>,
}

/// Calls a 32-bit hook.
fn call32(hook: Hook32, imm: i32) -> u64 {
    // SAFETY: the host registered `hook` through bpfvm_engine_set_lddw_helpers,
    // whose contract is a function of this signature, callable from any
    // thread while the engine's programs load.
    unsafe { hook(imm as u32) }
}

impl LddwHooks {
    /// A map: the hook's answer, or the immediate itself when the hook is
    /// absent (llvmbpf's default, and what AOT objects do).
    fn map(hook: Option<Hook32>, imm: i32) -> u64 {
        match hook {
            Some(h) => call32(h, imm),
            None => imm as i64 as u64,
        }
    }

    fn map_val(&self, map: u64, next_imm: i32) -> Result<u64, String> {
        let hook = self
            .map_val
            .ok_or("it needs the map_val hook, which is not set")?;
        // SAFETY: as in `call32`: a host-registered function of this signature.
        let base = unsafe { hook(map) };
        Ok(base.wrapping_add(next_imm as i64 as u64))
    }

    /// The address an AOT object's `__lddw_helper_*` symbol binds to;
    /// `None` when that hook is not set (the weak `map_by_fd`/`map_by_idx`
    /// then give the immediate, the others fail to load).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        let addr = match name {
            "__lddw_helper_map_by_fd" => self.map_by_fd.map(|f| f as usize),
            "__lddw_helper_map_by_idx" => self.map_by_idx.map(|f| f as usize),
            "__lddw_helper_map_val" => self.map_val.map(|f| f as usize),
            "__lddw_helper_var_addr" => self.var_addr.map(|f| f as usize),
            "__lddw_helper_code_addr" => self.code_addr.map(|f| f as usize),
            _ => None,
        };
        addr.map(|a| a as u64)
    }
}

impl LddwResolver for LddwHooks {
    /// RFC 9669's table: src 1 `map_by_fd(imm)`, src 2
    /// `map_val(map_by_fd(imm)) + next_imm`, src 3 `var_addr(imm)`, src 4
    /// `code_addr(imm)`, src 5 `map_by_idx(imm)`, src 6
    /// `map_val(map_by_idx(imm)) + next_imm`.
    fn resolve(&self, p: &LddwPseudo) -> Result<u64, String> {
        match p.kind {
            PSEUDO_MAP_FD => Ok(Self::map(self.map_by_fd, p.imm)),
            PSEUDO_MAP_VALUE => self.map_val(Self::map(self.map_by_fd, p.imm), p.next_imm),
            PSEUDO_MAP_IDX => Ok(Self::map(self.map_by_idx, p.imm)),
            PSEUDO_MAP_IDX_VALUE => self.map_val(Self::map(self.map_by_idx, p.imm), p.next_imm),
            PSEUDO_BTF_ID => self
                .var_addr
                .map(|h| call32(h, p.imm))
                .ok_or_else(|| "it needs the var_addr hook, which is not set".into()),
            PSEUDO_FUNC => self
                .code_addr
                .map(|h| call32(h, p.imm))
                .ok_or_else(|| "it needs the code_addr hook, which is not set".into()),
            other => Err(format!("unknown pseudo source {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn fd(x: u32) -> u64 {
        0x1000 + x as u64
    }
    unsafe extern "C" fn val(m: u64) -> u64 {
        m * 0x10
    }
    unsafe extern "C" fn var(x: u32) -> u64 {
        0x5000 + x as u64
    }

    fn p(kind: u8, imm: i32, next_imm: i32) -> LddwPseudo {
        LddwPseudo {
            kind,
            imm,
            next_imm,
        }
    }

    #[test]
    fn resolves_each_source() {
        let h = LddwHooks {
            map_by_fd: Some(fd),
            map_val: Some(val),
            var_addr: Some(var),
            ..Default::default()
        };
        assert_eq!(h.resolve(&p(PSEUDO_MAP_FD, 5, 0)), Ok(0x1005));
        assert_eq!(h.resolve(&p(PSEUDO_MAP_VALUE, 5, 8)), Ok(0x10058));
        // No map_by_idx hook: the immediate is the map.
        assert_eq!(h.resolve(&p(PSEUDO_MAP_IDX, 3, 0)), Ok(3));
        assert_eq!(h.resolve(&p(PSEUDO_MAP_IDX_VALUE, 3, 1)), Ok(0x31));
        assert_eq!(h.resolve(&p(PSEUDO_BTF_ID, 2, 0)), Ok(0x5002));
        assert!(h
            .resolve(&p(PSEUDO_FUNC, 2, 0))
            .unwrap_err()
            .contains("code_addr"));
        assert!(LddwHooks::default()
            .resolve(&p(PSEUDO_MAP_VALUE, 1, 0))
            .unwrap_err()
            .contains("map_val"));
    }

    #[test]
    fn symbols_name_the_hooks() {
        let h = LddwHooks {
            map_val: Some(val),
            ..Default::default()
        };
        assert_eq!(
            h.symbol("__lddw_helper_map_val"),
            Some(val as *const () as usize as u64)
        );
        assert_eq!(h.symbol("__lddw_helper_map_by_fd"), None);
        assert_eq!(h.symbol("memcpy"), None);
    }
}
