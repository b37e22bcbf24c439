//! Fuzz target: see `peergos_testkit::fuzz::api_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peergos_testkit::fuzz::api_request(data);
});
