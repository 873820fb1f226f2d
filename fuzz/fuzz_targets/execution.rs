//! The `execution` fuzz target: `bpfvm_conformance::fuzz_targets::execution` on every
//! input (see there for what it checks); a panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bpfvm_conformance::fuzz_targets::execution(data);
});
