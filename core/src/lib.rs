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
//!
//! ## Run loop
//!
//! A connection's read side is a loop of *feed, then drain*: hand every buffer
//! read from the socket to [`codec::Decoder::feed`], then call
//! [`codec::Decoder::poll`] until it returns `None`. Body bytes come out as
//! slices of the buffers that were fed, so a large message streams through
//! without being copied or held whole. The write side encodes chunks with
//! [`Chunk::encode`] or, for a vectored write that does not copy the body,
//! [`Chunk::encode_parts`].
//!
//! ```
//! use bytes::Bytes;
//! use msrp_core::codec::{Decoded, Decoder, DecoderLimits};
//! use msrp_core::header::{ByteRange, FromPath, MessageId, ToPath};
//! use msrp_core::{Chunk, IdGenerator, Method, Uri};
//!
//! let mut ids = IdGenerator::seed_from_u64(1);
//! let alice = Uri::new("127.0.0.1").with_port(2855).with_random_session_id(&mut ids);
//! let bob = Uri::new("127.0.0.1").with_port(2856).with_random_session_id(&mut ids);
//!
//! // Build a SEND and encode it.
//! let mut send = Chunk::request(ids.transaction_id(), Method::Send);
//! send.add_header(&ToPath(vec![bob.clone()]));
//! send.add_header(&FromPath(vec![alice]));
//! send.add_header(&MessageId(ids.message_id()));
//! send.add_header(&ByteRange::whole(12));
//! send.headers.set(msrp_core::header::HeaderName::ContentType, "text/plain");
//! send.data = Bytes::from_static(b"Hello world!");
//! let wire = send.encode();
//!
//! // Decode it, one byte per read.
//! let mut decoder = Decoder::new(DecoderLimits::default());
//! let mut body = Vec::new();
//! for i in 0..wire.len() {
//!     decoder.feed(wire.slice(i..i + 1));
//!     while let Some(item) = decoder.poll() {
//!         match item.expect("valid input") {
//!             Decoded::Head(head) => assert_eq!(head.to_path().unwrap().0, vec![bob.clone()]),
//!             Decoded::Data(data) => body.extend_from_slice(&data),
//!             Decoded::End(flag) => assert_eq!(flag, msrp_core::ContinuationFlag::End),
//!         }
//!     }
//! }
//! assert_eq!(body, b"Hello world!");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod chunk;
pub mod codec;
pub mod header;
pub mod ids;
pub mod log;
pub mod outbox;
pub mod reassembly;
pub mod session;
pub mod transport;
pub mod uri;

pub use chunk::{Chunk, ContinuationFlag, Method, StartLine};
pub use codec::{ChunkParseError, Decoded, Decoder, DecoderLimits};
pub use header::{Header, HeaderError, HeaderName, Headers};
pub use ids::IdGenerator;
pub use transport::{AcceptTypes, ChunkParams, MsrpError, Transport};
pub use uri::{Uri, UriError};
