//! Helpers written in C: function pointers wrapped as the engine's helper
//! closures.

use std::ffi::c_void;
use std::sync::Arc;

use bpfvm_engine::helpers::HelperClosure;
use bpfvm_engine::vmctx::VmCtx;

/// `uint64_t (*)(uint64_t r1, .., uint64_t r5)`.
pub type HelperFn = unsafe extern "C" fn(u64, u64, u64, u64, u64) -> u64;
/// `uint64_t (*)(void *user, uint64_t r1, .., uint64_t r5)`.
pub type HelperCtxFn = unsafe extern "C" fn(*mut c_void, u64, u64, u64, u64, u64) -> u64;

/// The host's context pointer, passed back to its helper as is.
#[derive(Clone, Copy)]
struct User(*mut c_void);

impl User {
    /// The pointer (a method, so that closures capture the whole `User`).
    fn get(self) -> *mut c_void {
        self.0
    }
}

// SAFETY: bpfvm never dereferences the pointer; the header requires the
// host to make whatever it points to safe to use from the threads that run
// programs (the same contract as the helper function itself).
unsafe impl Send for User {}
// SAFETY: as above.
unsafe impl Sync for User {}

/// A helper calling `f(r1, .., r5)`.
pub fn plain(f: HelperFn) -> Arc<HelperClosure> {
    Arc::new(move |_ctx: &mut VmCtx, a: [u64; 5]| {
        // SAFETY: the host registered `f` with this signature and the
        // header's contract: callable from any thread running programs.
        Ok(unsafe { f(a[0], a[1], a[2], a[3], a[4]) })
    })
}

/// A helper calling `f(user, r1, .., r5)`.
pub fn with_user(f: HelperCtxFn, user: *mut c_void) -> Arc<HelperClosure> {
    let user = User(user);
    Arc::new(move |_ctx: &mut VmCtx, a: [u64; 5]| {
        // SAFETY: as in `plain`; `user` is the host's own pointer, handed back.
        Ok(unsafe { f(user.get(), a[0], a[1], a[2], a[3], a[4]) })
    })
}
