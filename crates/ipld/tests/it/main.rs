//! The codec's integration tests, one binary: property tests and the pinned vectors.

mod proptest_cbor;
mod vectors;
