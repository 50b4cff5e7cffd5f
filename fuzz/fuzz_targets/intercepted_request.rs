//! PullImage and CreateContainer request bodies, as any CRI client could send them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crigate::fuzzing::intercepted_request(data);
});
