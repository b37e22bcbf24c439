//! The encrypted filesystem's integration tests, one binary: capabilities, node codecs, the filesystem against a model, keys, security, streaming, resumable uploads, and blocks of earlier releases.

mod capability;
mod fs;
mod fs_keys;
mod fs_model;
mod fs_resume;
mod fs_security;
mod fs_stream;
mod fuzz_seeds;
mod node_codec;
mod node_fuzz_seeds;
mod release_vectors;
mod writer_data;
