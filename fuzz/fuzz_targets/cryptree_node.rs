//! Fuzz target: see `peergos_testkit::fuzz::cryptree_node`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peergos_testkit::fuzz::cryptree_node(data);
});
