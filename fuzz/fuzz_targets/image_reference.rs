//! See `crigate::fuzzing::image_reference`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::image_reference(data);
});
