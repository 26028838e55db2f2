//! Connections through an MSRP relay (RFC 4976), as msrplib's `msrplib.connect`:
//! [`RelaySettings`] say which relay and with which credentials, [`RelayConnection`]
//! authenticates to it and binds a session through it, and [`ConnectorRelay`] and
//! [`AcceptorRelay`] are its active and passive faces. [`get_connector`] and
//! [`get_acceptor`] pick a direct or a relayed connection.
//!
//! `prepare` connects to the relay and authenticates (AUTH, Digest), so the full local
//! path it returns (the relay's `Use-Path`, then the local URI) is what the peer must
//! reach; `complete` binds the session over that same connection. Until the session
//! ends, the core keeps the relay's grant alive by authenticating again before it expires.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use msrp_core::log::TrafficLogger;
use msrp_core::relay::{
    DigestUri, LoginOutput, RelayClient, RelayClientConfig, RelayCredentials, RelayHop, RelayLogin,
};
use msrp_core::session::{Input, Role, SessionConfig, SessionError};
use msrp_core::{IdGenerator, MsrpError, Uri};

use crate::connect::{AcceptorDirect, CONNECT_TIMEOUT, Common, ConnectError, ConnectorDirect, bind_engine, connect_to};
use crate::runtime::{BoxStream, Runtime};
use crate::session::{Error, Transport};
use crate::tls::TlsClient;

/// The port of a relay when neither the settings nor DNS name one (RFC 4975's default).
pub const RELAY_PORT: u16 = 2855;

/// The largest chunk body sent through a relay unless the settings say otherwise: 8 KiB.
/// Relays may cap the frames they pass (Kamailio relays at most 11238 bytes, headers
/// included); 8 KiB leaves room for the headers of a long path.
pub const RELAY_CHUNK_SIZE: usize = 8 * 1024;

/// Which relay to use and how to authenticate to it (msrplib's `MSRPRelaySettings`).
///
/// With `host` set, the relay is `host:port` (port [`RELAY_PORT`] unless set). Without
/// it, the relay of `domain` is looked up as RFC 4976 §8 says: DNS SRV records
/// `_msrps._tcp.<domain>` (with `use_tls`) or `_msrp._tcp.<domain>`, and, when the domain
/// has none, the domain's own addresses.
#[doc(alias = "MSRPRelaySettings")]
#[derive(Clone)]
pub struct RelaySettings {
    /// The DNS domain whose relay is looked up (SRV) when `host` is not set.
    pub domain: String,
    /// The user name to authenticate with.
    pub username: String,
    /// The password to authenticate with.
    pub password: String,
    /// The relay's host name or IP address, when known (no DNS SRV lookup then).
    pub host: Option<String>,
    /// Whether the relay is reached over TLS (`msrps`).
    pub use_tls: bool,
    /// The relay's port ([`RELAY_PORT`] unless set or found by SRV).
    pub port: Option<u16>,
    /// How to check the relay's certificate with `use_tls` (msrplib's `credentials`).
    pub tls: Option<TlsClient>,
    /// Whether the Digest answer carries `uri=`: relays disagree, and the default
    /// ([`DigestUri::Auto`]) tries the RFC's form first and then the other once.
    pub digest_uri: DigestUri,
    /// The grant asked for, in seconds (`Expires`); `None` (the default) asks for none
    /// and takes the relay's.
    pub expires: Option<u64>,
    /// The name servers asked for SRV records (the system's when `None`).
    pub nameservers: Option<Vec<SocketAddr>>,
    /// The largest chunk body sent through this relay ([`RELAY_CHUNK_SIZE`]).
    pub max_chunk_size: usize,
}

impl fmt::Debug for RelaySettings {
    // The password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelaySettings")
            .field("domain", &self.domain)
            .field("username", &self.username)
            .field("host", &self.host)
            .field("use_tls", &self.use_tls)
            .field("port", &self.port)
            .field("digest_uri", &self.digest_uri)
            .field("expires", &self.expires)
            .field("max_chunk_size", &self.max_chunk_size)
            .finish_non_exhaustive()
    }
}

impl RelaySettings {
    /// The relay of `domain` (found by DNS SRV), with these credentials; plain TCP.
    pub fn new(domain: impl Into<String>, username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            username: username.into(),
            password: password.into(),
            host: None,
            use_tls: false,
            port: None,
            tls: None,
            digest_uri: DigestUri::default(),
            expires: None,
            nameservers: None,
            max_chunk_size: RELAY_CHUNK_SIZE,
        }
    }

    /// The relay a URI names (`msrp://host:port` or `msrps://host:port`): host, port and
    /// TLS from it, the host also as the domain.
    pub fn at(uri: &Uri, username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            host: Some(uri.host.clone()),
            use_tls: uri.use_tls,
            port: uri.port,
            ..Self::new(uri.host.clone(), username, password)
        }
    }

    /// Where to try the relay, in order: `host:port` when set, else the SRV targets of
    /// the domain, else the domain itself.
    async fn candidates(&self) -> Result<Vec<(String, u16)>, Error> {
        let port = self.port.unwrap_or(RELAY_PORT);
        if let Some(host) = &self.host {
            return Ok(vec![(host.clone(), port)]);
        }
        let found = crate::dns::lookup_relay(&self.domain, self.use_tls, self.nameservers.as_deref())
            .await
            .map_err(|error| ConnectError::Dns { domain: self.domain.clone(), reason: error.to_string() })?;
        Ok(if found.is_empty() { vec![(self.domain.clone(), port)] } else { found })
    }

    /// The relay as the core authenticates to it.
    fn hop(&self, uri: Uri) -> RelayHop {
        let credentials = RelayCredentials { username: self.username.clone(), password: self.password.clone() };
        let mut hop = RelayHop::new(uri, Some(credentials));
        hop.digest_uri = self.digest_uri;
        hop.expires = self.expires;
        hop
    }
}

/// Whether a relayed connection binds the session itself or waits for the peer to
/// (msrplib's `mode`, `'active'` or `'passive'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sends the binding SEND once `complete` is called.
    Active,
    /// Waits for the peer's first SEND.
    Passive,
}

/// The connection to the relay after `prepare`: authenticated, not yet a session.
struct Prepared {
    stream: BoxStream,
    client: RelayClient,
    /// Bytes read after the relay's last answer, for the session.
    leftover: Vec<Bytes>,
    local_path: Vec<Uri>,
}

/// A session through a relay, either side (msrplib's `RelayConnection(relay, mode)`).
pub struct RelayConnection<R: Runtime> {
    runtime: R,
    relay: RelaySettings,
    mode: Mode,
    common: Common,
    connect_timeout: Duration,
    prepared: Option<Prepared>,
}

impl<R: Runtime> RelayConnection<R> {
    /// A connection through `relay` in `mode`; `logger` sees the session's traffic;
    /// `use_sessmatch` matches incoming paths by session id only.
    pub fn new(
        runtime: R,
        relay: RelaySettings,
        mode: Mode,
        logger: Option<Box<dyn TrafficLogger>>,
        use_sessmatch: bool,
    ) -> Self {
        Self {
            runtime,
            relay,
            mode,
            common: Common::new(logger, use_sessmatch),
            connect_timeout: CONNECT_TIMEOUT,
            prepared: None,
        }
    }

    /// The relay settings.
    pub fn relay(&self) -> &RelaySettings {
        &self.relay
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How long reaching the relay may take: DNS, TCP and, for `msrps`, the TLS
    /// handshake ([`CONNECT_TIMEOUT`] unless set). Authenticating has its own timeout
    /// (30 s per AUTH).
    pub fn set_connect_timeout(&mut self, timeout: Duration) {
        self.connect_timeout = timeout;
    }

    /// Replaces the session settings (timeouts, …); role and paths are set by the
    /// connection, and the chunk size is capped at the relay's
    /// ([`RelaySettings::max_chunk_size`]).
    pub fn set_config(&mut self, config: SessionConfig) {
        self.common.config = Some(config);
    }

    /// Connects to the relay, authenticates, and returns the full local path to put in
    /// SDP (msrplib `prepare`): the relay's URI, then `local_uri` (made up when `None`:
    /// `msrp[s]://127.0.0.1:2855/<random>;tcp`, as the relay's scheme; nothing listens
    /// there, the URI only names this side in paths).
    /// Errors: [`Error::Connect`] when no relay address could be reached,
    /// [`Error::Relay`] when the relay refused or did not answer.
    pub async fn prepare(&mut self, local_uri: Option<Uri>) -> Result<Vec<Uri>, Error> {
        self.prepared = None;
        // A made-up URI takes the relay's scheme: the session runs over that connection.
        let local_uri =
            local_uri.unwrap_or_else(|| Uri::new("127.0.0.1").with_port(RELAY_PORT).with_tls(self.relay.use_tls));
        let local_uri = crate::connect::local_uri_or_default(Some(local_uri), &mut self.common.ids);
        let mut failure = None;
        for (host, port) in self.relay.candidates().await? {
            let uri = Uri::new(host).with_port(port).with_tls(self.relay.use_tls);
            let stream = match connect_to(&self.runtime, &uri, self.relay.tls.as_ref(), self.connect_timeout).await {
                Ok(stream) => stream,
                Err(error) => {
                    // The next target of the SRV list may answer.
                    failure = Some(error);
                    continue;
                }
            };
            let config = RelayClientConfig::new(vec![self.relay.hop(uri)], local_uri.clone());
            let client =
                RelayClient::new(config, IdGenerator::seed_from_u64(self.common.ids.next_u64()), self.runtime.now());
            let prepared = log_in(&self.runtime, stream, RelayLogin::new(client)).await?;
            let path = prepared.local_path.clone();
            self.prepared = Some(prepared);
            return Ok(path);
        }
        Err(failure.unwrap_or_else(|| Error::Invalid(format!("no relay found for {}", self.relay.domain))))
    }

    /// Binds the session with the peer of `full_remote_path` (its SDP path) through the
    /// relay and returns the transport (msrplib `complete`): in [`Mode::Active`] it sends
    /// the binding SEND, in [`Mode::Passive`] it waits for the peer's (bind timeout).
    pub async fn complete(&mut self, full_remote_path: Vec<Uri>) -> Result<Transport<R>, Error> {
        if full_remote_path.is_empty() {
            return Err(Error::Invalid("the remote path is empty".into()));
        }
        let Some(prepared) = self.prepared.take() else {
            return Err(Error::Invalid("prepare was not called".into()));
        };
        let remote_path = prepared.client.to_path(&full_remote_path);
        self.bind(prepared, remote_path).await
    }

    /// Runs the session over the authenticated relay connection, To-Path `remote_path`.
    async fn bind(&mut self, prepared: Prepared, remote_path: Vec<Uri>) -> Result<Transport<R>, Error> {
        let Prepared { stream, client, leftover, local_path } = prepared;
        let role = match self.mode {
            Mode::Active => Role::Active,
            Mode::Passive => Role::Passive,
        };
        let now = self.runtime.now();
        let mut config = self.common.config.clone().unwrap_or_else(|| SessionConfig::new(role, Vec::new(), Vec::new()));
        config.max_chunk_size = config.max_chunk_size.min(self.relay.max_chunk_size);
        config.use_sessmatch = self.common.use_sessmatch;
        let logger = self.common.logger.take();
        let mut engine =
            crate::connect::new_engine(config, role, (local_path, remote_path), &mut self.common.ids, logger, now)?;
        engine.set_relay(client);
        engine.handle_input(now, Input::Connected);
        for data in leftover {
            engine.handle_input(now, Input::Received(data));
        }
        bind_engine(&self.runtime, engine, stream).await
    }

    /// In [`Mode::Passive`], binds whichever peer's request comes first through the
    /// relay: the From-Path of its first request (the relays it came through, then the
    /// peer) becomes the remote path. For a side that prints its path and waits, without
    /// an SDP answer to learn the peer's from. Gives up after the bind timeout.
    pub async fn complete_any(&mut self) -> Result<Transport<R>, Error> {
        if self.mode != Mode::Passive {
            return Err(Error::Invalid("only a passive relay connection waits for any peer".into()));
        }
        let Some(Prepared { stream, client, leftover, local_path }) = self.prepared.take() else {
            return Err(Error::Invalid("prepare was not called".into()));
        };
        let bind_timeout = self.common.config.as_ref().map_or(msrp_core::session::BIND_TIMEOUT, |c| c.bind_timeout);
        let first = Box::pin(crate::connect::read_first_request_after(stream, leftover));
        let deadline = self.runtime.sleep_until(self.runtime.now() + bind_timeout);
        let (stream, head, received) = match futures::future::select(first, deadline).await {
            futures::future::Either::Left((Ok(first), _)) => first,
            futures::future::Either::Left((Err(None), _)) => return Err(SessionError::ConnectionClosed.into()),
            futures::future::Either::Left((Err(Some(error)), _)) => return Err(SessionError::Parse(error).into()),
            futures::future::Either::Right(_) => return Err(SessionError::BindTimeout.into()),
        };
        let remote_path = match head.from_path() {
            Ok(path) if !path.0.is_empty() => path.0,
            _ => {
                return Err(SessionError::BindRefused(MsrpError::new(400, "The first request has no From-Path")).into());
            }
        };
        self.bind(Prepared { stream, client, leftover: received, local_path }, remote_path).await
    }

    /// Closes the connection to the relay that `prepare` opened (msrplib `cleanup`).
    pub fn cleanup(&mut self) {
        self.prepared = None;
    }
}

/// Authenticates over `stream` and keeps it for the session.
async fn log_in<R: Runtime>(runtime: &R, mut stream: BoxStream, mut login: RelayLogin) -> Result<Prepared, Error> {
    let mut buffer = vec![0_u8; 16 * 1024];
    login.handle_input(runtime.now(), Input::Connected);
    loop {
        let now = runtime.now();
        if login.poll_timeout().is_some_and(|deadline| deadline <= now) {
            login.handle_timeout(now);
        }
        while let Some(output) = login.poll_output(now) {
            match output {
                LoginOutput::Transmit(bytes) => {
                    if stream.write_all(&bytes).await.and(stream.flush().await).is_err() {
                        login.handle_input(now, Input::Closed);
                    } else {
                        login.handle_input(now, Input::Written(bytes.len()));
                    }
                }
                LoginOutput::Authorized { local_path } => {
                    let (client, leftover) = login.into_parts();
                    return Ok(Prepared { stream, client, leftover, local_path });
                }
                LoginOutput::Failed(error) => return Err(Error::Relay(error)),
            }
        }
        let deadline = login.poll_timeout();
        let read = Box::pin(stream.read(&mut buffer));
        let input = match deadline {
            Some(deadline) => match futures::future::select(read, runtime.sleep_until(deadline)).await {
                futures::future::Either::Left((read, _)) => Some(read),
                futures::future::Either::Right(_) => None,
            },
            None => Some(read.await),
        };
        let now = runtime.now();
        match input {
            Some(Ok(0) | Err(_)) => login.handle_input(now, Input::Closed),
            Some(Ok(n)) => login.handle_input(now, Input::Received(Bytes::copy_from_slice(&buffer[..n]))),
            None => login.handle_timeout(now),
        }
    }
}

/// The active face of [`RelayConnection`] (msrplib's `ConnectorRelay`).
pub struct ConnectorRelay<R: Runtime>(RelayConnection<R>);

/// The passive face of [`RelayConnection`] (msrplib's `AcceptorRelay`).
pub struct AcceptorRelay<R: Runtime>(RelayConnection<R>);

macro_rules! relay_face {
    ($face:ident, $mode:expr) => {
        impl<R: Runtime> $face<R> {
            /// A relayed connection in this face's mode; see [`RelayConnection::new`].
            pub fn new(
                runtime: R,
                relay: RelaySettings,
                logger: Option<Box<dyn TrafficLogger>>,
                use_sessmatch: bool,
            ) -> Self {
                Self(RelayConnection::new(runtime, relay, $mode, logger, use_sessmatch))
            }
        }

        impl<R: Runtime> std::ops::Deref for $face<R> {
            type Target = RelayConnection<R>;
            fn deref(&self) -> &RelayConnection<R> {
                &self.0
            }
        }

        impl<R: Runtime> std::ops::DerefMut for $face<R> {
            fn deref_mut(&mut self) -> &mut RelayConnection<R> {
                &mut self.0
            }
        }
    };
}

relay_face!(ConnectorRelay, Mode::Active);
relay_face!(AcceptorRelay, Mode::Passive);

/// An outbound connection, direct or through a relay (what [`get_connector`] returns).
// One per connection being set up: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Connector<R: Runtime> {
    /// Straight to the peer.
    Direct(ConnectorDirect<R>),
    /// Through a relay.
    Relay(ConnectorRelay<R>),
}

/// An inbound connection, direct or through a relay (what [`get_acceptor`] returns).
// One per connection being set up: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Acceptor<R: Runtime> {
    /// The peer connects to us.
    Direct(AcceptorDirect<R>),
    /// The peer reaches us through a relay.
    Relay(AcceptorRelay<R>),
}

/// What a direct and a relayed connection share, passed to whichever it is.
macro_rules! either_way {
    ($either:ident) => {
        impl<R: Runtime> $either<R> {
            /// Binds the session with the peer of `full_remote_path` and returns the
            /// transport (msrplib `complete`).
            pub async fn complete(&mut self, full_remote_path: Vec<Uri>) -> Result<Transport<R>, Error> {
                match self {
                    Self::Direct(direct) => direct.complete(full_remote_path).await,
                    Self::Relay(relay) => relay.complete(full_remote_path).await,
                }
            }

            /// Replaces the session settings.
            pub fn set_config(&mut self, config: SessionConfig) {
                match self {
                    Self::Direct(direct) => direct.set_config(config),
                    Self::Relay(relay) => relay.set_config(config),
                }
            }

            /// Forgets what `prepare` set up: stops listening, or closes the relay
            /// connection (msrplib `cleanup`).
            pub fn cleanup(&mut self) {
                match self {
                    Self::Direct(direct) => direct.cleanup(),
                    Self::Relay(relay) => relay.cleanup(),
                }
            }
        }
    };
}

either_way!(Connector);
either_way!(Acceptor);

impl<R: Runtime> Connector<R> {
    /// The full local path for SDP (msrplib `prepare`); through a relay this connects
    /// and authenticates first.
    pub async fn prepare(&mut self, local_uri: Option<Uri>) -> Result<Vec<Uri>, Error> {
        match self {
            Self::Direct(direct) => Ok(direct.prepare(local_uri)),
            Self::Relay(relay) => relay.prepare(local_uri).await,
        }
    }
}

impl<R: Runtime> Acceptor<R> {
    /// The full local path for SDP (msrplib `prepare`): listening directly, or
    /// connected and authenticated to the relay.
    pub async fn prepare(&mut self, local_uri: Option<Uri>) -> Result<Vec<Uri>, Error> {
        match self {
            Self::Direct(direct) => direct.prepare(local_uri).await,
            Self::Relay(relay) => relay.prepare(local_uri).await,
        }
    }

    /// Binds whichever peer comes first; the From-Path of its first request becomes the
    /// remote path (see [`AcceptorDirect::complete_any`], [`RelayConnection::complete_any`]).
    pub async fn complete_any(&mut self) -> Result<Transport<R>, Error> {
        match self {
            Self::Direct(direct) => direct.complete_any().await,
            Self::Relay(relay) => relay.complete_any().await,
        }
    }
}

/// An outbound connection (msrplib `get_connector(relay)`): through `relay` when given
/// ([`ConnectorRelay`]), else direct ([`ConnectorDirect`]).
pub fn get_connector<R: Runtime>(
    runtime: R,
    relay: Option<RelaySettings>,
    logger: Option<Box<dyn TrafficLogger>>,
    use_sessmatch: bool,
) -> Connector<R> {
    match relay {
        Some(relay) => Connector::Relay(ConnectorRelay::new(runtime, relay, logger, use_sessmatch)),
        None => Connector::Direct(ConnectorDirect::new(runtime, logger, use_sessmatch)),
    }
}

/// An inbound connection (msrplib `get_acceptor(relay)`): through `relay` when given
/// ([`AcceptorRelay`]), else direct ([`AcceptorDirect`]).
pub fn get_acceptor<R: Runtime>(
    runtime: R,
    relay: Option<RelaySettings>,
    logger: Option<Box<dyn TrafficLogger>>,
    use_sessmatch: bool,
) -> Acceptor<R> {
    match relay {
        Some(relay) => Acceptor::Relay(AcceptorRelay::new(runtime, relay, logger, use_sessmatch)),
        None => Acceptor::Direct(AcceptorDirect::new(runtime, logger, use_sessmatch)),
    }
}
