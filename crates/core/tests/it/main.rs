//! The client's integration tests that need no server: TLS checks and the
//! bytes a put puts on the wire. The tests against a real server are in
//! `peergos-server`'s (`crates/server/tests/it/client`), so this crate
//! never depends on the server, not even for tests.

mod put_body;
mod tls;
