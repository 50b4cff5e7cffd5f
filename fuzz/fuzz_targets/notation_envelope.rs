//! See `crigate::fuzzing::notation_envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::notation_envelope(data);
});
