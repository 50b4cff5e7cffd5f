//! See `crigate::fuzzing::cosign_signature`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::cosign_signature(data);
});
