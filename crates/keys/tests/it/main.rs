//! The primitives' integration tests, one binary: property tests against vectors.

mod proptest_keys;
