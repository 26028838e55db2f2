//! # msrp-blocking
//!
//! MSRP sessions for programs without an async runtime: `std::net` sockets and plain
//! threads, with the API of msrplib as blocking calls ([`ConnectorDirect`],
//! [`AcceptorDirect`], [`Transport`], [`Session`]).
//!
//! Underneath is the same connection driver as the async adapters (`msrp-smol`'s),
//! run by the [`Threads`] runtime: every connection has a driver task that owns the
//! [`msrp_core`] session, with a thread of its own, and a reader and a writer thread on
//! the socket that hand it whole buffers; a file being sent is fed from a thread of its
//! own; one timer thread serves every deadline. The driver is polled on the reader
//! thread when bytes arrive, so that they do not hop between threads. Each blocking call
//! here waits for its async counterpart with `futures::executor::block_on`.
//!
//! ## Run loop
//!
//! There is none to write: `complete` starts the driver thread.
//!
//! ```no_run
//! use bytes::Bytes;
//! use msrp_blocking::{AcceptTypes, ConnectorDirect, Session};
//!
//! # fn remote_path_from_sdp() -> Vec<msrp_blocking::core::Uri> { Vec::new() }
//! let mut connector = ConnectorDirect::new(None, false);
//! let local_path = connector.prepare(None); // goes into the SDP offer
//! let transport = connector.complete(remote_path_from_sdp())?;
//! let session = Session::new(transport, AcceptTypes::any(), None);
//! let message = session.send_message("text/plain", Bytes::from_static(b"Hello world!"))?;
//! println!("{:?}", message.outcome());
//! session.shutdown(true);
//! # Ok::<_, msrp_blocking::Error>(())
//! ```
#![forbid(unsafe_code)]

mod threads;

use std::io::Read;

use bytes::Bytes;
use futures::executor::block_on;
use futures::io::AllowStdIo;
use msrp_core::log::TrafficLogger;
use msrp_core::outbox::{MessageOptions, OutgoingId};
use msrp_core::session::{Event, MessageOutcome, SessionConfig};
use msrp_core::{Chunk, ChunkParams, MsrpError, Uri};

pub use msrp_core as core;
pub use msrp_core::AcceptTypes;
pub use msrp_smol::{
    CONNECT_TIMEOUT, ConnectError, DigestUri, DnsError, Error, FIRST_ACCEPT_PAUSE, MAX_ACCEPT_PAUSE, Mode, OnIncoming,
    OnListenError, OnRefused, RELAY_CHUNK_SIZE, RELAY_PORT, Refused, RelayError, RelayEvent, RelaySettings, TlsClient,
    TlsError, TlsServer, io_phrase, is_transient_accept_error,
};
pub use threads::Threads;

/// Outbound connections without a relay (msrplib `ConnectorDirect`).
pub struct ConnectorDirect(msrp_smol::ConnectorDirect<Threads>);

impl ConnectorDirect {
    /// A connector; `logger` sees the traffic; `use_sessmatch` matches paths by session id.
    pub fn new(logger: Option<Box<dyn TrafficLogger>>, use_sessmatch: bool) -> Self {
        Self(msrp_smol::ConnectorDirect::new(Threads, logger, use_sessmatch))
    }

    /// Replaces the session settings; role and paths are set by the connector.
    pub fn set_config(&mut self, config: SessionConfig) {
        self.0.set_config(config);
    }

    /// How to check the server when the first hop is an `msrps` URI.
    pub fn set_tls(&mut self, tls: TlsClient) {
        self.0.set_tls(tls);
    }

    /// How long connecting may take, the TLS handshake included
    /// ([`msrp_smol::CONNECT_TIMEOUT`] unless set).
    pub fn set_connect_timeout(&mut self, timeout: std::time::Duration) {
        self.0.set_connect_timeout(timeout);
    }

    /// The full local path to put in SDP (msrplib `prepare`).
    pub fn prepare(&mut self, local_uri: Option<Uri>) -> Vec<Uri> {
        self.0.prepare(local_uri)
    }

    /// Connects, binds and returns the transport (msrplib `complete`).
    pub fn complete(&mut self, full_remote_path: Vec<Uri>) -> Result<Transport, Error> {
        block_on(self.0.complete(full_remote_path)).map(Transport)
    }

    /// Forgets what `prepare` set up.
    pub fn cleanup(&mut self) {
        self.0.cleanup();
    }
}

/// Inbound connections without a relay (msrplib `AcceptorDirect`).
pub struct AcceptorDirect(msrp_smol::AcceptorDirect<Threads>);

impl AcceptorDirect {
    /// An acceptor; `logger` sees the traffic; `use_sessmatch` matches paths by session id.
    pub fn new(logger: Option<Box<dyn TrafficLogger>>, use_sessmatch: bool) -> Self {
        Self(msrp_smol::AcceptorDirect::new(Threads, logger, use_sessmatch))
    }

    /// The certificate to show when the local URI is an `msrps` one.
    pub fn set_tls(&mut self, tls: TlsServer) {
        self.0.set_tls(tls);
    }

    /// Tells `callback` of every connection `complete` refuses, with the peer's address
    /// and why.
    pub fn set_on_refused(&mut self, callback: OnRefused) {
        self.0.set_on_refused(callback);
    }

    /// Replaces the session settings; role and paths are set by the acceptor.
    pub fn set_config(&mut self, config: SessionConfig) {
        self.0.set_config(config);
    }

    /// Listens and returns the full local path for SDP (msrplib `prepare`); port 0 is
    /// replaced by the one picked.
    pub fn prepare(&mut self, local_uri: Option<Uri>) -> Result<Vec<Uri>, Error> {
        block_on(self.0.prepare(local_uri))
    }

    /// Waits for the peer to connect and bind (msrplib `complete`); a stranger is
    /// answered 481 and the wait goes on.
    pub fn complete(&mut self, full_remote_path: Vec<Uri>) -> Result<Transport, Error> {
        block_on(self.0.complete(full_remote_path)).map(Transport)
    }

    /// Binds whichever peer comes first; its From-Path becomes the remote path.
    pub fn complete_any(&mut self) -> Result<Transport, Error> {
        block_on(self.0.complete_any()).map(Transport)
    }

    /// Stops listening.
    pub fn cleanup(&mut self) {
        self.0.cleanup();
    }
}

/// One listening socket shared by many sessions (msrplib `MSRPServer`). Clones are
/// handles on the same server, to share between threads.
#[derive(Clone)]
pub struct MsrpServer(msrp_smol::MsrpServer<Threads>);

impl MsrpServer {
    /// A server whose connections use `logger` unless `prepare` names another.
    pub fn new(logger: Option<Box<dyn TrafficLogger>>) -> Self {
        Self(msrp_smol::MsrpServer::new(Threads, logger))
    }

    /// Replaces the session settings of the connections to come; role and paths are set
    /// by the server, the bind timeout by [`MsrpServer::set_bind_timeout`].
    pub fn set_config(&mut self, config: SessionConfig) {
        self.0.set_config(config);
    }

    /// How long `complete` waits for its peer, and a prepared URI for its connection; set
    /// it before the first `prepare`.
    pub fn set_bind_timeout(&mut self, timeout: std::time::Duration) {
        self.0.set_bind_timeout(timeout);
    }

    /// Tells `callback` when a listener stops on a fatal accept error (transient ones are
    /// logged and waited out); with no listener left, `complete` fails with that error.
    pub fn set_on_listen_error(&mut self, callback: OnListenError) {
        self.0.set_on_listen_error(callback);
    }

    /// The addresses the server listens on, ports filled in.
    pub fn local_addresses(&self) -> Vec<std::net::SocketAddr> {
        self.0.local_addresses()
    }

    /// Listens (if needed) and expects a connection for `local_uri` (msrplib `prepare`);
    /// port 0 shares the port the server already listens on at that IP address.
    pub fn prepare(&self, local_uri: Uri, logger: Option<Box<dyn TrafficLogger>>) -> Result<Vec<Uri>, Error> {
        block_on(self.0.prepare(local_uri, logger))
    }

    /// Waits for the connection from `full_remote_path` (msrplib `complete`).
    pub fn complete(&self, full_remote_path: Vec<Uri>) -> Result<Transport, Error> {
        block_on(self.0.complete(full_remote_path)).map(Transport)
    }

    /// Stops expecting `local_uri` (msrplib `cleanup`).
    pub fn cleanup(&self, local_uri: &Uri) {
        self.0.cleanup(local_uri);
    }
}

/// A session through a relay, either side (msrplib `RelayConnection(relay, mode)`).
pub struct RelayConnection(msrp_smol::RelayConnection<Threads>);

impl RelayConnection {
    /// A connection through `relay` in `mode`; `logger` sees the traffic;
    /// `use_sessmatch` matches paths by session id.
    pub fn new(relay: RelaySettings, mode: Mode, logger: Option<Box<dyn TrafficLogger>>, use_sessmatch: bool) -> Self {
        Self(msrp_smol::RelayConnection::new(Threads, relay, mode, logger, use_sessmatch))
    }

    /// The relay settings.
    pub fn relay(&self) -> &RelaySettings {
        self.0.relay()
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.0.mode()
    }

    /// How long reaching the relay may take ([`CONNECT_TIMEOUT`] unless set).
    pub fn set_connect_timeout(&mut self, timeout: std::time::Duration) {
        self.0.set_connect_timeout(timeout);
    }

    /// Replaces the session settings; the chunk size is capped at the relay's.
    pub fn set_config(&mut self, config: SessionConfig) {
        self.0.set_config(config);
    }

    /// Connects to the relay, authenticates and returns the full local path for SDP
    /// (msrplib `prepare`).
    pub fn prepare(&mut self, local_uri: Option<Uri>) -> Result<Vec<Uri>, Error> {
        block_on(self.0.prepare(local_uri))
    }

    /// Binds the session through the relay (msrplib `complete`).
    pub fn complete(&mut self, full_remote_path: Vec<Uri>) -> Result<Transport, Error> {
        block_on(self.0.complete(full_remote_path)).map(Transport)
    }

    /// Passive only: binds whichever peer's request comes first through the relay; its
    /// From-Path becomes the remote path.
    pub fn complete_any(&mut self) -> Result<Transport, Error> {
        block_on(self.0.complete_any()).map(Transport)
    }

    /// Closes the relay connection `prepare` opened (msrplib `cleanup`).
    pub fn cleanup(&mut self) {
        self.0.cleanup();
    }
}

/// The active face of [`RelayConnection`] (msrplib `ConnectorRelay`).
pub struct ConnectorRelay(RelayConnection);

/// The passive face of [`RelayConnection`] (msrplib `AcceptorRelay`).
pub struct AcceptorRelay(RelayConnection);

macro_rules! relay_face {
    ($face:ident, $mode:expr) => {
        impl $face {
            /// A relayed connection in this face's mode; see [`RelayConnection::new`].
            pub fn new(relay: RelaySettings, logger: Option<Box<dyn TrafficLogger>>, use_sessmatch: bool) -> Self {
                Self(RelayConnection::new(relay, $mode, logger, use_sessmatch))
            }
        }

        impl std::ops::Deref for $face {
            type Target = RelayConnection;
            fn deref(&self) -> &RelayConnection {
                &self.0
            }
        }

        impl std::ops::DerefMut for $face {
            fn deref_mut(&mut self) -> &mut RelayConnection {
                &mut self.0
            }
        }
    };
}

relay_face!(ConnectorRelay, Mode::Active);
relay_face!(AcceptorRelay, Mode::Passive);

/// An outbound connection, direct or through a relay ([`get_connector`]).
pub struct Connector(msrp_smol::Connector<Threads>);

impl Connector {
    /// Whether it goes through a relay.
    pub fn is_relay(&self) -> bool {
        matches!(self.0, msrp_smol::Connector::Relay(_))
    }

    /// The full local path for SDP (msrplib `prepare`); through a relay this connects and
    /// authenticates first.
    pub fn prepare(&mut self, local_uri: Option<Uri>) -> Result<Vec<Uri>, Error> {
        block_on(self.0.prepare(local_uri))
    }

    /// Connects, binds and returns the transport (msrplib `complete`).
    pub fn complete(&mut self, full_remote_path: Vec<Uri>) -> Result<Transport, Error> {
        block_on(self.0.complete(full_remote_path)).map(Transport)
    }

    /// Replaces the session settings.
    pub fn set_config(&mut self, config: SessionConfig) {
        self.0.set_config(config);
    }

    /// Forgets what `prepare` set up (msrplib `cleanup`).
    pub fn cleanup(&mut self) {
        self.0.cleanup();
    }
}

/// An inbound connection, direct or through a relay ([`get_acceptor`]).
pub struct Acceptor(msrp_smol::Acceptor<Threads>);

impl Acceptor {
    /// Whether the peer reaches us through a relay.
    pub fn is_relay(&self) -> bool {
        matches!(self.0, msrp_smol::Acceptor::Relay(_))
    }

    /// The full local path for SDP (msrplib `prepare`).
    pub fn prepare(&mut self, local_uri: Option<Uri>) -> Result<Vec<Uri>, Error> {
        block_on(self.0.prepare(local_uri))
    }

    /// Waits for the peer to bind and returns the transport (msrplib `complete`).
    pub fn complete(&mut self, full_remote_path: Vec<Uri>) -> Result<Transport, Error> {
        block_on(self.0.complete(full_remote_path)).map(Transport)
    }

    /// Binds whichever peer comes first; its From-Path becomes the remote path.
    pub fn complete_any(&mut self) -> Result<Transport, Error> {
        block_on(self.0.complete_any()).map(Transport)
    }

    /// Replaces the session settings.
    pub fn set_config(&mut self, config: SessionConfig) {
        self.0.set_config(config);
    }

    /// Stops listening, or closes the relay connection (msrplib `cleanup`).
    pub fn cleanup(&mut self) {
        self.0.cleanup();
    }
}

/// An outbound connection (msrplib `get_connector(relay)`): through `relay` when given,
/// else direct.
pub fn get_connector(
    relay: Option<RelaySettings>,
    logger: Option<Box<dyn TrafficLogger>>,
    use_sessmatch: bool,
) -> Connector {
    Connector(msrp_smol::get_connector(Threads, relay, logger, use_sessmatch))
}

/// An inbound connection (msrplib `get_acceptor(relay)`): through `relay` when given,
/// else direct.
pub fn get_acceptor(
    relay: Option<RelaySettings>,
    logger: Option<Box<dyn TrafficLogger>>,
    use_sessmatch: bool,
) -> Acceptor {
    Acceptor(msrp_smol::get_acceptor(Threads, relay, logger, use_sessmatch))
}

/// A bound connection (msrplib `MSRPTransport`).
pub struct Transport(msrp_smol::Transport<Threads>);

impl Transport {
    /// The full local path.
    pub fn local_path(&self) -> &[Uri] {
        self.0.local_path()
    }

    /// The full remote path.
    pub fn remote_path(&self) -> &[Uri] {
        self.0.remote_path()
    }

    /// Builds a chunk from the paths (msrplib `make_chunk`).
    pub fn make_chunk(&mut self, params: ChunkParams) -> Chunk {
        self.0.make_chunk(params)
    }

    /// Queues a request (msrplib `write_chunk`); with `wait`, returns once it was written.
    pub fn write_chunk(&self, chunk: Chunk, wait: bool) -> Result<(), Error> {
        block_on(self.0.write_chunk(chunk, wait))
    }

    /// Writes the response to `chunk` (msrplib `write_response`); with `wait`, returns
    /// once it was written.
    pub fn write_response(&self, chunk: &Chunk, code: u16, comment: Option<String>, wait: bool) -> Result<bool, Error> {
        block_on(self.0.write_response(chunk, code, comment, wait))
    }

    /// Writes bytes as they are (msrplib `write`); with `sync`, returns once they were
    /// written.
    pub fn write(&self, data: Bytes, sync: bool) -> Result<(), Error> {
        block_on(self.0.write(data, sync))
    }

    /// The next chunk received (msrplib `read_chunk`).
    pub fn read_chunk(&mut self, size: Option<usize>) -> Result<Chunk, Error> {
        block_on(self.0.read_chunk(size))
    }

    /// Checks the paths of an incoming SEND (msrplib `check_incoming_SEND_chunk`).
    #[doc(alias = "check_incoming_SEND_chunk")]
    pub fn check_incoming_send_chunk(&self, chunk: &Chunk) -> Result<(), MsrpError> {
        self.0.check_incoming_send_chunk(chunk)
    }
}

/// A file to send (msrplib's `OutgoingFile`): its reader is already at `position`.
pub struct OutgoingFile {
    /// Where the data comes from (read on a thread of its own).
    pub reader: Box<dyn Read + Send>,
    /// Size, content type, position, message id and extra headers.
    pub file: msrp_core::session::OutgoingFile,
}

/// A message on its way.
#[derive(Debug)]
pub struct OutgoingMessage(msrp_smol::OutgoingMessage);

impl OutgoingMessage {
    /// The session's id for it.
    pub fn id(&self) -> OutgoingId {
        self.0.id
    }

    /// Its Message-ID.
    pub fn message_id(&self) -> &str {
        &self.0.message_id
    }

    /// Waits until it was delivered, failed or aborted.
    pub fn outcome(self) -> MessageOutcome {
        block_on(self.0.outcome())
    }
}

/// An MSRP session (msrplib `MSRPSession`, and `GreenMSRPSession`'s `receive_chunk`).
pub struct Session(msrp_smol::Session<Threads>);

impl Session {
    /// A session over `transport`; with `on_incoming`, incoming chunks go to it (on a
    /// thread of its own), otherwise read them with [`Session::receive_chunk`].
    pub fn new(transport: Transport, accept_types: AcceptTypes, on_incoming: Option<OnIncoming>) -> Self {
        Self(msrp_smol::Session::new(transport.0, accept_types, on_incoming))
    }

    /// Builds a chunk from the session's paths (msrplib `make_chunk`).
    pub fn make_chunk(&self, params: ChunkParams) -> Chunk {
        self.0.make_chunk(params)
    }

    /// Sends a request; `response_cb` gets its response (msrplib `send_chunk`).
    pub fn send_chunk(&self, chunk: Chunk, response_cb: Option<Box<dyn FnOnce(Chunk) + Send>>) -> Result<(), Error> {
        block_on(self.0.send_chunk(chunk, response_cb))
    }

    /// Sends a request and waits for its outcome (msrplib `deliver_chunk`).
    pub fn deliver_chunk(&self, chunk: Chunk) -> Result<Option<Chunk>, Error> {
        block_on(self.0.deliver_chunk(chunk))
    }

    /// Sends a whole message of `content_type`.
    pub fn send_message(&self, content_type: &str, data: Bytes) -> Result<OutgoingMessage, Error> {
        block_on(self.0.send_message(content_type, data)).map(OutgoingMessage)
    }

    /// Sends a whole message with every option.
    pub fn send_message_with(&self, options: MessageOptions, data: Bytes) -> Result<OutgoingMessage, Error> {
        block_on(self.0.send_message_with(options, data)).map(OutgoingMessage)
    }

    /// Starts sending a file and returns at once (msrplib `send_file`).
    pub fn send_file(&self, file: OutgoingFile) -> Result<OutgoingMessage, Error> {
        let file = msrp_smol::OutgoingFile { reader: Box::new(AllowStdIo::new(file.reader)), file: file.file };
        block_on(self.0.send_file(file)).map(OutgoingMessage)
    }

    /// Aborts an outgoing message (it ends with `#` if part of it went out).
    pub fn abort(&self, id: OutgoingId) -> Result<(), Error> {
        block_on(self.0.abort(id))
    }

    /// The application's word on a complete incoming message with
    /// `SessionConfig::confirm_messages` on: `Ok(())` sends its success REPORT, a status
    /// sends a failure REPORT where allowed. Returns whether a REPORT went out.
    pub fn confirm_message(&self, message_id: &str, outcome: Result<(), MsrpError>) -> Result<bool, Error> {
        block_on(self.0.confirm_message(message_id, outcome))
    }

    /// Sends what is queued, waits for the responses, then closes (msrplib `shutdown`);
    /// with `sync`, returns once the session ended, else once the shutdown began. A file
    /// or streamed message still being written is aborted (`#`, outcome `Aborted`).
    pub fn shutdown(&self, sync: bool) {
        block_on(self.0.shutdown(sync));
    }

    /// The next incoming chunk; the session's end as an error.
    pub fn receive_chunk(&self) -> Result<Chunk, Error> {
        block_on(self.0.receive_chunk())
    }

    /// The next event for the application; `None` after the end.
    pub fn next_event(&self) -> Option<Event> {
        block_on(self.0.next_event())
    }
}
