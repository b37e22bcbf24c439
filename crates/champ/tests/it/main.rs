//! The CHAMP's integration tests, one binary: the model, proofs, diffs, and fuzz seeds.

mod champ;
mod write_fuzz_seeds;
