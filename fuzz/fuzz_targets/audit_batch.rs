//! See `crigate::fuzzing::audit_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::audit_batch(data);
});
