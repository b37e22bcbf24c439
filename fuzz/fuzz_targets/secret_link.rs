//! Fuzz target: see `peergos_testkit::fuzz::secret_link`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peergos_testkit::fuzz::secret_link(data);
});
