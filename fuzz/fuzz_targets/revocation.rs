//! See `crigate::fuzzing::revocation`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::revocation(data);
});
