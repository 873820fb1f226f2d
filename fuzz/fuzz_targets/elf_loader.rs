//! Fuzzes the ELF/BTF loader, map creation, the verifier on relocated
//! programs and the standard helpers: any input must give a value or an
//! error, never a panic, a crash or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bpfvm::object::load_and_exercise(data);
});
