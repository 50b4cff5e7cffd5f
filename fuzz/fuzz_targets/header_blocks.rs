//! See `crigate::fuzzing::header_blocks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::header_blocks(data);
});
