//! See `crigate::fuzzing::trusted_root`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::trusted_root(data);
});
