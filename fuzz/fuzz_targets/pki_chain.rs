//! Fuzz target: see `peergos_testkit::fuzz::pki_chain`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peergos_testkit::fuzz::pki_chain(data);
});
