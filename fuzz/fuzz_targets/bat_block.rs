//! Fuzz target: see `peergos_testkit::fuzz::bat_block`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peergos_testkit::fuzz::bat_block(data);
});
