//! Fuzz target: see `peergos_testkit::fuzz::signed_pointer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peergos_testkit::fuzz::signed_pointer(data);
});
