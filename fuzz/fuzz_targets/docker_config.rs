//! See `crigate::fuzzing::docker_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::docker_config(data);
});
