//! Fuzz target: see `peergos_testkit::fuzz::follow_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peergos_testkit::fuzz::follow_request(data);
});
