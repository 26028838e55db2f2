//! # msrp-core
//!
//! The sans-IO core of msrp, an MSRP stack (RFC 4975, relays from RFC 4976):
//! every protocol decision lives here, and nothing here does I/O, reads a clock
//! or touches OS randomness. Adapters (`msrp-tokio`, `msrp-smol`,
//! `msrp-blocking`) move bytes between sockets and this crate.
//!
//! This layer is the protocol vocabulary:
//!
//! - [`Uri`]: `msrp://` and `msrps://` URIs with RFC 4975 §6.1 comparison and
//!   session-id-only matching ([`Uri::matches_session`]).
//! - [`header`]: the raw header list of a chunk and one typed header per header
//!   of the spec (To-Path … Content-Disposition, plus Keep-Alive and Use-Nickname).
//! - [`Chunk`]: a request or response (msrplib's `MSRPData`) and its encoding.
//! - [`codec::Decoder`]: the streaming decoder, zero-copy for bodies.
//! - [`IdGenerator`]: transaction, message and session ids from a caller-seeded RNG.
//! - [`Transport`]: one bound session's paths and the RFC 4975 rules for building
//!   requests (`make_chunk`), responses, REPORTs, and for accepting a SEND; [`AcceptTypes`].
//! - [`outbox::Outbox`]: outgoing messages cut into chunks and interleaved fairly.
//! - [`reassembly::Reassembler`]: opt-in reassembly of incoming messages with a size cap.
//! - [`session::Session`]: **the engine**, one MSRP session on one connection as a pure
//!   state machine: binding, transactions and their timeouts, responses and REPORTs,
//!   interleaved sending with backpressure, keepalive, shutdown. Its docs give the run
//!   loop every adapter follows.
//! - [`connect`]: which session a connection on a shared port binds (481, 506).
//! - [`relay`]: the relay client (RFC 4976): AUTH with Digest answers to each relay of a
//!   path ([`relay::RelayClient`]), its byte-level login before the session exists
//!   ([`relay::RelayLogin`]), and the refreshes a session keeps doing
//!   ([`Session::set_relay`](session::Session::set_relay)).
//! - [`log`]: the traffic logger interface ([`log::TrafficLogger`]).
//!
//! ## Run loop
//!
//! Every driver of a [`session::Session`] (the tokio, smol and blocking adapters, the
//! simulation, your own event loop) does the same thing:
//!
//! 1. hand the session what happened with `handle_input(now, Input::…)` (connected,
//!    bytes read, bytes written, closed), or call a command (`send_message`, …);
//! 2. drain `poll_output(now)` until `None`: write each `Transmit` whole and in order
//!    (what the socket does not take yet waits in a queue) and report what it took with
//!    `Input::Written`; give each `Event` to the application; the session is over at
//!    `Event::Closed`;
//! 3. sleep until the next input or `poll_timeout()`, then `handle_timeout(now)`.
//!
//! The [`session`] module docs show that loop over a socket, partial writes included.
//!
//! Here two sessions run back to back in memory, with a clock that never moves:
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use msrp_core::header::{HeaderName, Headers};
//! use msrp_core::outbox::MessageOptions;
//! use msrp_core::session::{Event, Input, Output, Role, Session, SessionConfig};
//! use msrp_core::{IdGenerator, Uri};
//!
//! let now = Instant::now();
//! let alice: Uri = "msrp://127.0.0.1:2855/alice1234;tcp".parse()?;
//! let bob: Uri = "msrp://127.0.0.1:2856/bob5678;tcp".parse()?;
//! let mut sessions = [
//!     Session::new(SessionConfig::new(Role::Active, vec![alice.clone()], vec![bob.clone()]), IdGenerator::seed_from_u64(1), now)?,
//!     Session::new(SessionConfig::new(Role::Passive, vec![bob], vec![alice]), IdGenerator::seed_from_u64(2), now)?,
//! ];
//! let mut headers = Headers::new();
//! headers.set(HeaderName::ContentType, "text/plain");
//! let options = MessageOptions { headers, ..MessageOptions::default() };
//! sessions[0].send_message(now, options, Bytes::from_static(b"Hello world!"))?;
//! for session in &mut sessions {
//!     session.handle_input(now, Input::Connected);
//! }
//! let mut received = Vec::new();
//! // Drain both sides until nothing moves; each side's writes are the other's reads.
//! loop {
//!     let mut moved = false;
//!     for side in 0..2 {
//!         while let Some(output) = sessions[side].poll_output(now) {
//!             moved = true;
//!             match output {
//!                 Output::Transmit(transmit) => {
//!                     let len = transmit.len();
//!                     for part in transmit.parts {
//!                         sessions[1 - side].handle_input(now, Input::Received(part));
//!                     }
//!                     sessions[side].handle_input(now, Input::Written(len));
//!                 }
//!                 Output::Event(Event::Incoming(chunk)) => received.push(chunk.data),
//!                 Output::Event(_) | Output::Close => {}
//!             }
//!         }
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! assert_eq!(received, [Bytes::from_static(b"Hello world!")]);
//! // Nothing is due until the keepalive, 60 s from now.
//! assert!(sessions[0].poll_timeout().is_some_and(|deadline| deadline > now));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The protocol layer underneath can also be used alone: [`codec::Decoder`] turns bytes
//! into chunks (its module docs show how) and [`Chunk::encode_parts`] writes them.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod chunk;
pub mod codec;
pub mod connect;
pub mod header;
pub mod ids;
pub mod log;
pub mod outbox;
pub mod reassembly;
pub mod relay;
pub mod session;
pub mod transport;
pub mod uri;

pub use chunk::{Chunk, ContinuationFlag, Method, StartLine};
pub use codec::{ChunkParseError, Decoded, Decoder, DecoderLimits};
pub use header::{Header, HeaderError, HeaderName, Headers};
pub use ids::IdGenerator;
pub use session::DisplayDuration;
pub use transport::{AcceptTypes, ChunkParams, MsrpError, Transport};
pub use uri::{Uri, UriError, UriKey};
