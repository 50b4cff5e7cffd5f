//! See `crigate::fuzzing::relay`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::relay(data);
});
