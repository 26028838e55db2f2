//! # msrp-tests
//!
//! Test-only crate: conformance tests of the protocol layer against the RFC vectors
//! in `shared/vectors/`, the deterministic simulation of the whole stack ([`sim`]), and
//! (as the stack grows) the cross-runtime scenario suite.
#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod sim;

/// The `shared/` folder that sits beside the project checkout, or `MSRP_SHARED` when set.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MSRP_SHARED") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// The README's Rust example, compiled and run as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
