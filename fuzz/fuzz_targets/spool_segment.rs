//! See `crigate::fuzzing::spool_segment`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::spool_segment(data);
});
