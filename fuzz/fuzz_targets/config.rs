//! See `crigate::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::config(data);
});
