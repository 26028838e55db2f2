//! # msrp-tokio
//!
//! Drives msrp-core on tokio. This crate is the adapter layer of msrp; it
//! re-exports the protocol vocabulary of [`msrp_core`] that its API is built on.
#![forbid(unsafe_code)]

pub use msrp_core as core;
