//! Making bound transports: [`ConnectorDirect`] (outbound, active) and
//! [`AcceptorDirect`] (inbound, passive), as msrplib's `msrplib.connect`.

use std::net::{IpAddr, SocketAddr};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use msrp_core::connect::PendingConnection;
use msrp_core::log::TrafficLogger;
use msrp_core::session::{Input, Output, Role, Session as Engine, SessionConfig, SessionError};
use msrp_core::{Chunk, ChunkParseError, DecoderLimits, DisplayDuration, IdGenerator, MsrpError, Uri};
use rand_core::TryRngCore;

use crate::accept::{FIRST_ACCEPT_PAUSE, accept_next};
use crate::driver;
use crate::runtime::{BoxStream, Listener, Runtime, io_phrase};
use crate::session::{Error, Transport};
use crate::tls::{TlsClient, TlsError, TlsServer};

/// How long connecting may take by default, the TLS handshake included (msrplib's
/// `MSRPConnectTimeout`); see [`ConnectorDirect::set_connect_timeout`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why connecting to a peer failed ([`Error::Connect`]), for callers to match on: to
/// tell the user what to check, or to decide whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The peer's host refused the TCP connection: nothing listens on that port.
    #[error("{address} refused the connection")]
    Refused {
        /// The address tried last (a name may have several).
        address: SocketAddr,
    },
    /// Connecting (resolving the name, TCP, and the TLS handshake for `msrps`) took
    /// longer than the connect timeout.
    #[error("connecting to {address} took longer than {}", DisplayDuration(*.after))]
    TimedOut {
        /// `host:port` as the URI names it.
        address: String,
        /// The connect timeout.
        after: Duration,
    },
    /// The host name has no address (it does not resolve).
    #[error("{host} does not resolve to an address")]
    NoAddress {
        /// The host the URI names.
        host: String,
    },
    /// Looking up where a relay is (DNS SRV, RFC 4976 §8) failed: no name server
    /// answered, or it answered with an error.
    #[error("looking up the MSRP relay of {domain} failed: {reason}")]
    Dns {
        /// The domain looked up.
        domain: String,
        /// What went wrong.
        reason: String,
    },
    /// The TLS handshake of an `msrps` connection failed.
    #[error(transparent)]
    Tls(TlsError),
    /// Any other failure of the system's connect.
    #[error("connecting to {address} failed: {reason}")]
    Io {
        /// The address tried last.
        address: SocketAddr,
        /// What kind of failure the system reported.
        kind: std::io::ErrorKind,
        /// The system's words for it.
        reason: String,
    },
}

impl From<ConnectError> for Error {
    fn from(error: ConnectError) -> Self {
        Self::Connect(error)
    }
}

impl ConnectError {
    /// The failure of connecting to `address`.
    fn of_io(error: &std::io::Error, address: SocketAddr) -> Self {
        match error.kind() {
            std::io::ErrorKind::ConnectionRefused => Self::Refused { address },
            kind => Self::Io { address, kind, reason: io_phrase(error) },
        }
    }
}

/// `host:port` as a URI names them (`[v6]:port`).
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// An id generator seeded from the operating system (adapters may read OS randomness;
/// the core never does).
pub(crate) fn os_ids() -> IdGenerator {
    let mut seed = [0_u8; 32];
    // Without OS randomness a fixed seed would make guessable ids: better to fail loudly.
    rand_core::OsRng.try_fill_bytes(&mut seed).expect("the operating system provides randomness");
    IdGenerator::from_seed(seed)
}

/// The addresses `host` has with `port`: an IP address as it is, a name resolved
/// through the runtime (never blocking one of its threads). Empty when the name does
/// not resolve.
pub(crate) async fn addresses_of<R: Runtime>(runtime: &R, host: &str, port: u16) -> Vec<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    runtime.resolve(host.to_owned(), port).await.unwrap_or_default()
}

/// `host:port` of a URI (the host alone without a port).
pub(crate) fn address_of_uri(uri: &Uri) -> String {
    match uri.port {
        Some(port) => host_port(&uri.host, port),
        None => uri.host.clone(),
    }
}

/// The port of a URI to connect to or listen on.
fn port_of(uri: &Uri) -> Result<u16, Error> {
    uri.port.ok_or_else(|| Error::Invalid(format!("{uri} has no port")))
}

/// Where to listen for `uri`: the first address of its host (resolved through the
/// runtime), and `host:port` as the URI names them, for errors.
pub(crate) async fn listen_address<R: Runtime>(runtime: &R, uri: &Uri) -> Result<(SocketAddr, String), Error> {
    let port = port_of(uri)?;
    let where_ = host_port(&uri.host, port);
    if let Some(&address) = addresses_of(runtime, &uri.host, port).await.first() {
        return Ok((address, where_));
    }
    let reason = format!("{} does not resolve to an address", uri.host);
    Err(Error::Listen { address: where_, kind: std::io::ErrorKind::NotFound, reason })
}

/// Listens where `uri` says (its host resolved through the runtime).
async fn listen_on<R: Runtime>(runtime: &R, uri: &Uri) -> Result<Box<dyn Listener>, Error> {
    let (address, where_) = listen_address(runtime, uri).await?;
    runtime.listen(address).await.map_err(|error| Error::listen(&where_, &error))
}

/// Opens a connection to `uri`: its host resolved through the runtime (each of its
/// addresses tried in turn), TCP, then the TLS handshake with `tls` for an `msrps` URI;
/// all of it within `timeout`.
pub(crate) async fn connect_to<R: Runtime>(
    runtime: &R,
    uri: &Uri,
    tls: Option<&TlsClient>,
    timeout: Duration,
) -> Result<BoxStream, Error> {
    let port = port_of(uri)?;
    let tls = match (uri.use_tls, tls) {
        (false, _) => None,
        (true, Some(tls)) => Some(tls),
        (true, None) => return Err(Error::Invalid("an msrps URI needs a TLS client setting (set_tls)".to_owned())),
    };
    let connecting = async {
        let addresses = addresses_of(runtime, &uri.host, port).await;
        let mut failure = ConnectError::NoAddress { host: uri.host.clone() };
        for address in addresses {
            match runtime.connect(address, timeout).await {
                Ok(stream) => {
                    return match tls {
                        Some(tls) => tls.connect(&uri.host, stream).await.map_err(ConnectError::Tls),
                        None => Ok(stream),
                    };
                }
                Err(error) => failure = ConnectError::of_io(&error, address),
            }
        }
        Err(failure)
    };
    let deadline = runtime.sleep_until(runtime.now() + timeout);
    match futures::future::select(Box::pin(connecting), deadline).await {
        futures::future::Either::Left((connected, _)) => Ok(connected?),
        futures::future::Either::Right(_) => {
            Err(ConnectError::TimedOut { address: host_port(&uri.host, port), after: timeout }.into())
        }
    }
}

/// A local URI for `prepare`: the given one, or `msrp://127.0.0.1:2855/<random>;tcp`
/// (msrplib's default port); a missing session id is made up.
pub(crate) fn local_uri_or_default(uri: Option<Uri>, ids: &mut IdGenerator) -> Uri {
    let uri = uri.unwrap_or_else(|| Uri::new("127.0.0.1").with_port(2855));
    if uri.session_id.is_some() { uri } else { uri.with_random_session_id(ids) }
}

/// Runs `session` over `stream` and waits until it is bound. The wait is registered
/// before the driver starts, so a binding is seen even when the peer leaves right after
/// it; what the peer sent is then still read from the transport before the end.
pub(crate) async fn bind_engine<R: Runtime>(
    runtime: &R,
    engine: Engine,
    stream: BoxStream,
) -> Result<Transport<R>, Error> {
    let mut paths = engine.transport().clone();
    *paths.ids() = IdGenerator::seed_from_u64(paths.ids().next_u64());
    let (waiter, bound) = oneshot::channel();
    let (connection, events) = driver::start(runtime, engine, stream, waiter);
    bound.await.map_err(|_| connection.end_reason())??;
    Ok(Transport { runtime: runtime.clone(), connection, events, paths })
}

/// A connection an acceptor or server turned away, as told to an [`OnRefused`]
/// callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Where the connection came from.
    pub peer: SocketAddr,
    /// Why: the status the peer was answered with (481 not this session, 506 bound to
    /// another connection), or would have been, had its request allowed a response; 400
    /// (not sent: the connection is just closed) when its first bytes are not MSRP.
    pub error: MsrpError,
    /// The head of the request refused (its paths say whom the peer was looking for);
    /// `None` when its first bytes are not MSRP.
    pub request: Option<Chunk>,
}

/// Called with each connection an acceptor or server refuses (the decision is the
/// session's or the `SessionRouter`'s; this only tells). Runs on the accepting task:
/// keep it short.
pub type OnRefused = Box<dyn FnMut(Refused) + Send>;

/// What an acceptor waits for.
enum Arrival {
    /// A new connection and where it came from.
    Connection(std::io::Result<(BoxStream, SocketAddr)>),
    /// A connection's first request, or why there is none (`None`: the peer left).
    FirstRequest(Result<FirstRequest, Option<ChunkParseError>>, SocketAddr),
    Timeout,
}

/// The first request of a new connection: its head and every byte read (for the session
/// to be fed).
pub(crate) type FirstRequest = (BoxStream, Chunk, Vec<Bytes>);

/// Reads a new connection up to its first request's head. `Err(None)` when the peer left
/// first, `Err(Some(error))` when its bytes are not MSRP.
pub(crate) async fn read_first_request(stream: BoxStream) -> Result<FirstRequest, Option<ChunkParseError>> {
    read_first_request_after(stream, Vec::new()).await
}

/// Like [`read_first_request`], on a stream of which `received` was already read.
pub(crate) async fn read_first_request_after(
    mut stream: BoxStream,
    received: Vec<Bytes>,
) -> Result<FirstRequest, Option<ChunkParseError>> {
    let mut pending = PendingConnection::new(DecoderLimits::default());
    for data in received {
        match pending.handle_received(data) {
            None => {}
            Some(Ok(head)) => return Ok((stream, head, pending.into_received())),
            Some(Err(error)) => return Err(Some(error)),
        }
    }
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => n,
        };
        match pending.handle_received(Bytes::copy_from_slice(&buffer[..n])) {
            None => {}
            Some(Ok(head)) => return Ok((stream, head, pending.into_received())),
            Some(Err(error)) => return Err(Some(error)),
        }
    }
}

/// The refusal of a connection whose first bytes are not MSRP.
pub(crate) fn unreadable(peer: SocketAddr, error: &ChunkParseError) -> Refused {
    Refused { peer, error: MsrpError::new(400, format!("not MSRP: {error}")), request: None }
}

/// Writes what `engine` has to transmit (an answer to a refused request).
async fn write_transmits(engine: &mut Engine, stream: &mut BoxStream, now: Instant) {
    while let Some(output) = engine.poll_output(now) {
        if let Output::Transmit(transmit) = output {
            for part in &transmit.parts {
                if stream.write_all(part).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.flush().await;
}

/// Settings shared by connectors and acceptors.
pub(crate) struct Common {
    pub(crate) logger: Option<Box<dyn TrafficLogger>>,
    tls_client: Option<TlsClient>,
    tls_server: Option<TlsServer>,
    pub(crate) use_sessmatch: bool,
    pub(crate) ids: IdGenerator,
    local_path: Option<Vec<Uri>>,
    pub(crate) config: Option<SessionConfig>,
}

impl Common {
    pub(crate) fn new(logger: Option<Box<dyn TrafficLogger>>, use_sessmatch: bool) -> Self {
        Self {
            logger,
            tls_client: None,
            tls_server: None,
            use_sessmatch,
            ids: os_ids(),
            local_path: None,
            config: None,
        }
    }

    fn engine(
        &mut self,
        role: Role,
        remote_path: Vec<Uri>,
        local_path: Vec<Uri>,
        now: Instant,
    ) -> Result<Engine, Error> {
        let mut config = self.config.clone().unwrap_or_else(|| SessionConfig::new(role, Vec::new(), Vec::new()));
        config.use_sessmatch = self.use_sessmatch;
        new_engine(config, role, (local_path, remote_path), &mut self.ids, self.logger.take(), now)
    }
}

/// A core session with `config` for these paths (local, remote) and role, its ids drawn
/// from `ids`, logging to `logger`.
pub(crate) fn new_engine(
    mut config: SessionConfig,
    role: Role,
    (local_path, remote_path): (Vec<Uri>, Vec<Uri>),
    ids: &mut IdGenerator,
    logger: Option<Box<dyn TrafficLogger>>,
    now: Instant,
) -> Result<Engine, Error> {
    config.role = role;
    config.local_path = local_path;
    config.remote_path = remote_path;
    let ids = IdGenerator::seed_from_u64(ids.next_u64());
    let mut engine = Engine::new(config, ids, now).map_err(|error| Error::Invalid(error.to_string()))?;
    if let Some(logger) = logger {
        engine.set_logger(logger);
    }
    Ok(engine)
}

/// Outbound connections without a relay (msrplib `ConnectorDirect`): the active side.
pub struct ConnectorDirect<R: Runtime> {
    runtime: R,
    common: Common,
    connect_timeout: Duration,
}

impl<R: Runtime> ConnectorDirect<R> {
    /// A connector; `logger` sees the connection's traffic; `use_sessmatch` matches
    /// incoming paths by session id only.
    pub fn new(runtime: R, logger: Option<Box<dyn TrafficLogger>>, use_sessmatch: bool) -> Self {
        Self { runtime, common: Common::new(logger, use_sessmatch), connect_timeout: CONNECT_TIMEOUT }
    }

    /// How long connecting may take: resolving the host, TCP and, for `msrps`, the TLS
    /// handshake ([`CONNECT_TIMEOUT`] unless set). Past it, `complete` fails with
    /// [`ConnectError::TimedOut`]. Binding afterwards has timeouts of its own (the
    /// session's `bind_timeout` and `response_timeout`).
    pub fn set_connect_timeout(&mut self, timeout: Duration) {
        self.connect_timeout = timeout;
    }

    /// Replaces the session settings (chunk size, timeouts, …); role and paths are set
    /// by the connector.
    pub fn set_config(&mut self, config: SessionConfig) {
        self.common.config = Some(config);
    }

    /// How to check the server when the first hop is an `msrps` URI.
    pub fn set_tls(&mut self, tls: TlsClient) {
        self.common.tls_client = Some(tls);
    }

    /// The full local path to put in SDP (msrplib `prepare`); a URI is made up when none
    /// is given.
    pub fn prepare(&mut self, local_uri: Option<Uri>) -> Vec<Uri> {
        let uri = local_uri_or_default(local_uri, &mut self.common.ids);
        let path = vec![uri];
        self.common.local_path = Some(path.clone());
        path
    }

    /// Connects to the first hop of `full_remote_path`, sends the binding SEND and
    /// returns the bound transport (msrplib `complete`).
    pub async fn complete(&mut self, full_remote_path: Vec<Uri>) -> Result<Transport<R>, Error> {
        let local_path = match self.common.local_path.clone() {
            Some(path) => path,
            None => self.prepare(None),
        };
        let first = full_remote_path.first().ok_or_else(|| Error::Invalid("the remote path is empty".into()))?;
        let stream = connect_to(&self.runtime, first, self.common.tls_client.as_ref(), self.connect_timeout).await?;
        let engine = self.common.engine(Role::Active, full_remote_path, local_path, self.runtime.now())?;
        bind_engine(&self.runtime, engine, stream).await
    }

    /// Forgets what `prepare` set up.
    pub fn cleanup(&mut self) {
        self.common.local_path = None;
    }
}

/// Inbound connections without a relay (msrplib `AcceptorDirect`): the passive side.
pub struct AcceptorDirect<R: Runtime> {
    runtime: R,
    common: Common,
    listener: Option<Box<dyn Listener>>,
    on_refused: Option<OnRefused>,
}

impl<R: Runtime> AcceptorDirect<R> {
    /// An acceptor; `logger` sees the connection's traffic; `use_sessmatch` matches
    /// incoming paths by session id only.
    pub fn new(runtime: R, logger: Option<Box<dyn TrafficLogger>>, use_sessmatch: bool) -> Self {
        Self { runtime, common: Common::new(logger, use_sessmatch), listener: None, on_refused: None }
    }

    /// Tells `callback` of every connection `complete` refuses (a stranger's 481), with
    /// the peer's address and why.
    pub fn set_on_refused(&mut self, callback: OnRefused) {
        self.on_refused = Some(callback);
    }

    /// Replaces the session settings (chunk size, timeouts, …); role and paths are set
    /// by the acceptor.
    pub fn set_config(&mut self, config: SessionConfig) {
        self.common.config = Some(config);
    }

    /// The certificate to show when the local URI is an `msrps` one.
    pub fn set_tls(&mut self, tls: TlsServer) {
        self.common.tls_server = Some(tls);
    }

    /// Listens where `local_uri` says and returns the full local path to put in SDP
    /// (msrplib `prepare`); a port of 0 is replaced by the one the system picked.
    pub async fn prepare(&mut self, local_uri: Option<Uri>) -> Result<Vec<Uri>, Error> {
        let mut uri = local_uri_or_default(local_uri, &mut self.common.ids);
        let listener = listen_on(&self.runtime, &uri).await?;
        let port = listener.local_addr().map_err(|error| Error::listen(&address_of_uri(&uri), &error))?.port();
        uri.port = Some(port);
        self.listener = Some(listener);
        let path = vec![uri];
        self.common.local_path = Some(path.clone());
        Ok(path)
    }

    /// Waits for the peer to connect and bind with a SEND from `full_remote_path`
    /// (msrplib `complete`); gives up after the bind timeout. A connection whose first
    /// request comes from another path is answered 481 and closed, and the acceptor goes
    /// on listening for the right peer; connections are read side by side, so one that
    /// stays silent does not keep the peer out. The listener is used up: `prepare` again
    /// for another session. Transient accept errors (out of file descriptors, a
    /// connection aborted while queued, …; see [`crate::is_transient_accept_error`]) are
    /// logged and waited out; a fatal one ends the wait with [`Error::Listen`].
    pub async fn complete(&mut self, full_remote_path: Vec<Uri>) -> Result<Transport<R>, Error> {
        if full_remote_path.is_empty() {
            return Err(Error::Invalid("the remote path is empty".into()));
        }
        self.accept_bound(Some(full_remote_path)).await
    }

    /// Like [`AcceptorDirect::complete`], binding whichever peer comes first: the From-Path
    /// of its first request becomes the remote path (see `Transport::remote_path`).
    pub async fn complete_any(&mut self) -> Result<Transport<R>, Error> {
        self.accept_bound(None).await
    }

    async fn accept_bound(&mut self, remote_path: Option<Vec<Uri>>) -> Result<Transport<R>, Error> {
        let Some(local_path) = self.common.local_path.clone() else {
            return Err(Error::Invalid("prepare was not called".into()));
        };
        let Some(listener) = self.listener.take() else {
            return Err(Error::Invalid("prepare was not called".into()));
        };
        let bind_timeout = self.common.config.as_ref().map_or(msrp_core::session::BIND_TIMEOUT, |c| c.bind_timeout);
        let mut timeout = self.runtime.sleep_until(self.runtime.now() + bind_timeout);
        let tls = match (local_path.last().is_some_and(|uri| uri.use_tls), &self.common.tls_server) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls.clone()),
            (true, None) => {
                return Err(Error::Invalid("an msrps URI needs a TLS server setting (set_tls)".to_owned()));
            }
        };
        // Transient accept errors are waited out there; a fatal one ends `complete`.
        let runtime = self.runtime.clone();
        let mut accepted =
            Box::pin(futures::stream::unfold((listener, FIRST_ACCEPT_PAUSE), move |(mut listener, mut pause)| {
                let runtime = runtime.clone();
                async move {
                    let accepted = accept_next(&runtime, &mut *listener, &mut pause).await;
                    Some((accepted, (listener, pause)))
                }
            }));
        // Connections on their way to a first request, side by side: one that stays
        // silent does not keep the peer out.
        let mut arrivals = FuturesUnordered::new();
        loop {
            let next = std::future::poll_fn(|cx| {
                if let Poll::Ready(Some((first, peer))) = arrivals.poll_next_unpin(cx) {
                    return Poll::Ready(Arrival::FirstRequest(first, peer));
                }
                if let Poll::Ready(Some(stream)) = accepted.poll_next_unpin(cx) {
                    return Poll::Ready(Arrival::Connection(stream));
                }
                timeout.poll_unpin(cx).map(|()| Arrival::Timeout)
            })
            .await;
            let (mut stream, head, received, peer) = match next {
                Arrival::Connection(Ok((stream, peer))) => {
                    let tls = tls.clone();
                    arrivals.push(async move {
                        // A peer that fails its handshake or leaves before its first request is let go.
                        let stream = match tls {
                            Some(tls) => match tls.accept(stream).await {
                                Ok(stream) => stream,
                                Err(_) => return (Err(None), peer),
                            },
                            None => stream,
                        };
                        (read_first_request(stream).await, peer)
                    });
                    continue;
                }
                Arrival::Connection(Err(error)) => {
                    let where_ = local_path.last().map(address_of_uri).unwrap_or_default();
                    return Err(Error::listen(&where_, &error));
                }
                Arrival::FirstRequest(Ok((stream, head, received)), peer) => (stream, head, received, peer),
                Arrival::FirstRequest(Err(Some(error)), peer) => {
                    if let Some(on_refused) = &mut self.on_refused {
                        on_refused(unreadable(peer, &error));
                    }
                    continue;
                }
                Arrival::FirstRequest(Err(None), _) => continue,
                Arrival::Timeout => return Err(SessionError::BindTimeout.into()),
            };
            let remote_path = match &remote_path {
                Some(path) => path.clone(),
                None => match head.from_path() {
                    Ok(path) if !path.0.is_empty() => path.0,
                    _ => continue,
                },
            };
            let now = self.runtime.now();
            let mut engine = self.common.engine(Role::Passive, remote_path, local_path.clone(), now)?;
            engine.handle_input(now, Input::Connected);
            for data in received {
                engine.handle_input(now, Input::Received(data));
            }
            if !engine.is_bound() {
                // A stranger: it gets the session's answer (481) and the connection ends.
                self.common.logger = self.common.logger.take().or(Some(engine.take_logger()));
                write_transmits(&mut engine, &mut stream, now).await;
                let _ = stream.close().await;
                if let Some(on_refused) = &mut self.on_refused {
                    // The session's own check decided; a first request that passes it
                    // and still binds nothing is no SEND (a REPORT or a response).
                    let error = engine
                        .transport()
                        .check_incoming_send_chunk(&head)
                        .err()
                        .unwrap_or_else(|| MsrpError::new(400, "The first request is not a SEND"));
                    on_refused(Refused { peer, error, request: Some(head) });
                }
                continue;
            }
            return bind_engine(&self.runtime, engine, stream).await;
        }
    }

    /// Stops listening.
    pub fn cleanup(&mut self) {
        self.listener = None;
        self.common.local_path = None;
    }
}
