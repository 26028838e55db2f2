//! # msrp-tests
//!
//! Test-only crate: conformance tests of the protocol layer against the RFC vectors
//! in `tests/vectors/` (see its README), the deterministic simulation of the whole stack ([`sim`]), a scripted
//! RFC 4976 relay for relay-client tests ([`relay`]), the cross-runtime scenario suite, and the start/stop
//! harness of Kamailio, the real third-party MSRP relay the interop suite (`tests/kamailio.rs`) runs against
//! ([`kamailio`]).
#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod kamailio;
pub mod relay;
pub mod scenario;
pub mod sim;

/// The RFC example messages, byte for byte, with their index (`tests/vectors/`).
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// The README's Rust example, compiled and run as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
