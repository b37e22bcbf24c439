//! Fuzz target: see `peergos_testkit::fuzz::cid_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peergos_testkit::fuzz::cid_parse(data);
});
