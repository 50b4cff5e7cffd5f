//! See `crigate::fuzzing::hosts_toml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::hosts_toml(data);
});
