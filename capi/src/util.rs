//! Reading arguments from C and writing results back, with the NULL
//! checks in one place.

use std::ffi::{c_char, CStr};

use crate::error::{Error, Result};

/// `len` bytes at `ptr` (empty when `len` is 0, whatever `ptr` is).
///
/// # Safety
/// When `len > 0` and `ptr` is not NULL, `ptr` must point to `len`
/// readable bytes that stay unchanged for `'a`.
pub unsafe fn bytes<'a>(ptr: *const std::ffi::c_void, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: non-NULL with `len` readable bytes, by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
}

/// `len` writable bytes at `ptr` (empty when `len` is 0).
///
/// # Safety
/// When `len > 0` and `ptr` is not NULL, `ptr` must point to `len`
/// writable bytes that nothing else accesses during `'a`.
pub unsafe fn bytes_mut<'a>(
    ptr: *mut std::ffi::c_void,
    len: usize,
    what: &str,
) -> Result<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: non-NULL with `len` writable bytes, by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, len) })
}

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for `'a`.
pub unsafe fn text<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated, by the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map_err(|_| Error::invalid(format!("`{what}` is not UTF-8")))
}

/// An optional NUL-terminated UTF-8 string (NULL: `None`).
///
/// # Safety
/// As [`text`].
pub unsafe fn opt_text<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { text(ptr, what) }.map(Some)
}

/// Checks that an output pointer is not NULL.
pub fn out<T>(ptr: *mut T, what: &str) -> Result<*mut T> {
    if ptr.is_null() {
        Err(Error::null(what))
    } else {
        Ok(ptr)
    }
}

/// Copies `s` into a fixed C array, truncated on a character boundary so
/// that it is valid UTF-8, and NUL-terminated.
pub fn fill_text(dst: &mut [c_char], s: &str) {
    let Some(room) = dst.len().checked_sub(1) else {
        return;
    };
    let mut n = s.len().min(room);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    for (d, b) in dst.iter_mut().zip(&s.as_bytes()[..n]) {
        *d = *b as c_char;
    }
    for d in &mut dst[n..] {
        *d = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(a: &[c_char]) -> String {
        let end = a.iter().position(|&c| c == 0).unwrap();
        String::from_utf8(a[..end].iter().map(|&c| c as u8).collect()).unwrap()
    }

    #[test]
    fn fill_text_truncates_on_char_boundaries() {
        let mut a = [1 as c_char; 5];
        fill_text(&mut a, "héllo");
        // "hé" is 3 bytes; the next char would overflow the 4 bytes of room.
        assert_eq!(read(&a), "hél");
        fill_text(&mut a, "ab");
        assert_eq!(read(&a), "ab");
        assert!(a[2..].iter().all(|&c| c == 0));
        fill_text(&mut [], "x");
    }

    #[test]
    fn null_with_length_is_an_error() {
        // SAFETY: NULL is checked before any read.
        let e = unsafe { bytes(std::ptr::null(), 4, "code") }.unwrap_err();
        assert_eq!(e.message, "`code` is NULL");
        // SAFETY: an empty slice reads nothing.
        assert_eq!(
            unsafe { bytes(std::ptr::null(), 0, "code") }.unwrap(),
            &[] as &[u8]
        );
    }
}
