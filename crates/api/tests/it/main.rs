//! The wire API's integration tests: the streaming put reader against
//! the encoder, on every way a body can be split or damaged.

mod put_stream;
