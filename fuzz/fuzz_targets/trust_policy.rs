//! See `crigate::fuzzing::trust_policy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::trust_policy(data);
});
