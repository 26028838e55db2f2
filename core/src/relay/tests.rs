//! Relay client tests (filled below).
