//! # msrp-smol
//!
//! MSRP sessions on smol, or on any other async runtime: the [`msrp_core`] engine driven
//! over real sockets, with the API of msrplib ([`ConnectorDirect`], [`AcceptorDirect`],
//! [`MsrpServer`], [`Transport`], [`Session`]; through an RFC 4976 relay
//! [`RelaySettings`], [`RelayConnection`], [`ConnectorRelay`], [`AcceptorRelay`], and
//! [`get_connector`]/[`get_acceptor`] to pick either way).
//!
//! The crate is written against the `futures` traits and a small [`Runtime`] trait, so
//! one implementation serves every runtime: [`Smol`] is built in (it also runs inside
//! async-std, which shares smol's reactor), and `msrp-tokio` adds tokio. Each connection
//! is one driver task that owns the core session, plus two pumps that only move bytes.
//!
//! ## Run loop
//!
//! There is none to write: `complete` starts the driver, and the handles talk to it.
//!
//! ```no_run
//! use bytes::Bytes;
//! use msrp_smol::{AcceptTypes, ConnectorDirect, Session, Smol};
//!
//! # fn remote_path_from_sdp() -> Vec<msrp_smol::core::Uri> { Vec::new() }
//! smol::block_on(async {
//!     let mut connector = ConnectorDirect::new(Smol, None, false);
//!     let local_path = connector.prepare(None); // goes into the SDP offer
//!     let transport = connector.complete(remote_path_from_sdp()).await?;
//!     let session = Session::new(transport, AcceptTypes::any(), None);
//!     let message = session.send_message("text/plain", Bytes::from_static(b"Hello world!")).await?;
//!     println!("{:?}", message.outcome().await);
//!     session.shutdown(true).await;
//!     Ok::<_, msrp_smol::Error>(())
//! })?;
//! # Ok::<_, msrp_smol::Error>(())
//! ```
#![forbid(unsafe_code)]

mod accept;
mod connect;
mod dns;
mod driver;
mod relay;
pub mod runtime;
mod server;
mod session;
pub mod tls;

pub use msrp_core as core;
pub use msrp_core::AcceptTypes;
pub use msrp_core::relay::{DigestUri, RelayError, RelayEvent};

pub use accept::{FIRST_ACCEPT_PAUSE, MAX_ACCEPT_PAUSE, is_transient_accept_error};
pub use connect::{AcceptorDirect, CONNECT_TIMEOUT, ConnectError, ConnectorDirect, OnRefused, Refused};
pub use dns::{DnsError, lookup_relay};
pub use driver::EVENT_QUEUE;
pub use relay::{
    Acceptor, AcceptorRelay, Connector, ConnectorRelay, Mode, RELAY_CHUNK_SIZE, RELAY_PORT, RelayConnection,
    RelaySettings, get_acceptor, get_connector,
};
#[cfg(feature = "smol")]
pub use runtime::Smol;
pub use runtime::{BoxFuture, BoxStream, ByteStream, IoStream, Listener, ReadBuffer, Runtime, io_phrase};
pub use server::{MsrpServer, OnListenError};
pub use session::{Error, OnIncoming, OutgoingFile, OutgoingMessage, Session, Transport};
pub use tls::{TlsClient, TlsError, TlsServer};
