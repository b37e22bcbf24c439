//! The test kit's own tests, one binary: fuzz corpora replay and seeds.

mod fuzz_corpora;
mod seed_signed_pointer;
