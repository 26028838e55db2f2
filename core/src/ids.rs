//! Random identifiers from a caller-seeded generator.
//!
//! The core never touches OS randomness: the caller seeds an [`IdGenerator`]
//! (adapters from the operating system, simulations from a test seed), so the
//! same seed gives the same transaction, message and session ids.

use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of a transaction id: 12 base-62 characters carry 71 bits (RFC 4975 §7.1 asks ≥ 64).
pub const TRANSACTION_ID_LEN: usize = 12;
/// Length of a message id: 16 base-62 characters carry 95 bits.
pub const MESSAGE_ID_LEN: usize = 16;
/// Length of a session id: 16 base-62 characters carry 95 bits (RFC 4975 §14.1 asks ≥ 80).
pub const SESSION_ID_LEN: usize = 16;

/// Makes transaction, message and session ids from a seeded `ChaCha12` stream.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    rng: ChaCha12Rng,
}

impl IdGenerator {
    /// A generator from 32 bytes of seed; adapters pass OS randomness here.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self { rng: ChaCha12Rng::from_seed(seed) }
    }

    /// A generator from a small seed, for tests and simulations.
    pub fn seed_from_u64(seed: u64) -> Self {
        Self { rng: ChaCha12Rng::seed_from_u64(seed) }
    }

    /// A new transaction id (≥ 64 bits of randomness).
    pub fn transaction_id(&mut self) -> String {
        self.base62(TRANSACTION_ID_LEN)
    }

    /// A new Message-ID value.
    pub fn message_id(&mut self) -> String {
        self.base62(MESSAGE_ID_LEN)
    }

    /// A new session id for an MSRP URI (≥ 80 bits of randomness).
    pub fn session_id(&mut self) -> String {
        self.base62(SESSION_ID_LEN)
    }

    /// A random `u64`, for callers that need one more decision from the same stream.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// `len` characters drawn uniformly from `[0-9A-Za-z]`: bytes ≥ 248 are
    /// rejected so that every character carries log2(62) bits.
    fn base62(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len);
        let mut pool = [0u8; 32];
        while out.len() < len {
            self.rng.fill_bytes(&mut pool);
            for &byte in &pool {
                if byte < 248 && out.len() < len {
                    out.push(char::from(ALPHABET[usize::from(byte % 62)]));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    // R4975-7.1-1, R4975-7.1.1-1, R4975-14.1-1: 10^5 ids without a duplicate, each long enough.
    #[test]
    fn ids_are_unique_and_long_enough() {
        let mut ids = IdGenerator::seed_from_u64(7);
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let tid = ids.transaction_id();
            assert!(tid.len() >= 11 && tid.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(seen.insert(tid));
        }
        let session = ids.session_id();
        assert!(session.len() >= 14, "80 bits need ≥ 14 base-62 characters");
        assert!(seen.insert(ids.message_id()));
    }

    #[test]
    fn same_seed_same_ids() {
        let mut a = IdGenerator::seed_from_u64(42);
        let mut b = IdGenerator::seed_from_u64(42);
        assert_eq!(a.transaction_id(), b.transaction_id());
        assert_eq!(a.session_id(), b.session_id());
        assert_ne!(IdGenerator::seed_from_u64(43).session_id(), IdGenerator::seed_from_u64(42).session_id());
    }
}
