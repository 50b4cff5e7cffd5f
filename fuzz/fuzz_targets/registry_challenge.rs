//! See `crigate::fuzzing::registry_challenge`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::registry_challenge(data);
});
