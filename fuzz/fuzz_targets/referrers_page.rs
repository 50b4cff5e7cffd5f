//! See `crigate::fuzzing::referrers_page`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::referrers_page(data);
});
