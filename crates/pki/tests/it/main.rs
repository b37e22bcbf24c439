//! The PKI's integration tests, one binary.

mod pki;
