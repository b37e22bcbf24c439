//! Fuzz target: see `peergos_testkit::fuzz::ciphertext_open`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peergos_testkit::fuzz::ciphertext_open(data);
});
