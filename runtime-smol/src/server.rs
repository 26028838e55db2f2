//! [`MsrpServer`]: many sessions on one listening port (msrplib `MSRPServer`).
//!
//! The binding decisions are the core's ([`msrp_core::connect`]): the first request of a
//! connection is read, its To-Path must be a prepared URI (481 otherwise, 506 when another
//! connection bound it). The session is bound there and then (RFC 4975 §5.4 binds by
//! To-Path, so the peer's binding SEND is answered at once), and its transport goes to
//! the `complete` call whose remote path ends in the request's From-Path, now or when it
//! comes.
//!
//! The server forgets what it no longer needs: a prepared URI no connection bound within
//! the bind timeout expires (a timer task follows the router's deadlines), a session's
//! URI is released when its connection ends (a reconnect then gets 481: the session is
//! over), and `cleanup` drops all of it. Every lookup is a hash map's, keyed by the
//! RFC 4975 §6.1 form of the URI ([`UriKey`]).
//!
//! Accepting survives transient errors (out of file descriptors, a connection aborted
//! while queued, …: see [`crate::is_transient_accept_error`]): they are logged and waited
//! out with a short pause. A fatal error ends that listener; the application hears of it
//! through [`MsrpServer::set_on_listen_error`] and, once no listener is left, from
//! `complete` ([`Error::Listen`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::io::AsyncWriteExt;
use msrp_core::connect::{ConnectionId, Route, SessionRouter};
use msrp_core::log::TrafficLogger;
use msrp_core::session::{BIND_TIMEOUT, Input, Role, SessionConfig, SessionError};
use msrp_core::{IdGenerator, Uri, UriKey};

use crate::accept::{FIRST_ACCEPT_PAUSE, accept_next};
use crate::connect::{
    OnRefused, Refused, bind_engine, listen_address, local_uri_or_default, new_engine, os_ids, read_first_request,
    unreadable,
};
use crate::runtime::{BoxStream, Runtime};
use crate::session::{Error, Transport};
use crate::tls::TlsServer;

/// A `complete` call waiting: its ticket, and where to send the transport (or the error
/// that ended the last listener).
type Waiting<R> = (u64, oneshot::Sender<Result<Transport<R>, Error>>);

/// A port the server accepts on.
struct Listening {
    address: SocketAddr,
    /// Whether it speaks TLS (`msrps`): a port serves one scheme.
    tls: bool,
}

/// Called when one of the server's listeners stops for good on a fatal accept error,
/// with that error ([`Error::Listen`]: the address and the system's words). Runs on the
/// accepting task: keep it short.
pub type OnListenError = Box<dyn FnMut(Error) + Send>;

struct State<R: Runtime> {
    router: SessionRouter,
    /// Prepared URIs not bound yet, and the logger each asked for.
    prepared: HashMap<Uri, Option<Box<dyn TrafficLogger>>>,
    /// Sessions bound before their `complete` was called, by their peer's URI (nearly
    /// always one per peer).
    arrived: HashMap<UriKey, Vec<(ConnectionId, Transport<R>)>>,
    /// `complete` calls waiting, by the peer's URI (last of its path): a ticket and where
    /// to send the transport.
    waiting: HashMap<UriKey, Vec<Waiting<R>>>,
    /// The peer URI of every routed session whose connection is alive.
    routed: HashMap<ConnectionId, UriKey>,
    /// The deadline the expiry task sleeps until, while one runs.
    expiry_at: Option<Instant>,
    /// Numbers expiry tasks: only the latest one acts.
    expiry_task: u64,
    listening: Vec<Listening>,
    /// Why the last listener stopped, while none listens: `complete` fails with it.
    listen_failure: Option<Error>,
    bind_timeout: Duration,
    /// Numbers connections and waiting `complete` calls.
    next_connection: u64,
    ids: IdGenerator,
    config: SessionConfig,
    logger: Option<Box<dyn TrafficLogger>>,
    tls: Option<TlsServer>,
    on_refused: Option<OnRefused>,
    on_listen_error: Option<OnListenError>,
}

/// One listening socket per address shared by many sessions (msrplib `MSRPServer`).
///
/// Clones are handles on the same server (same listeners, prepared URIs and settings),
/// cheap to give to other tasks.
pub struct MsrpServer<R: Runtime> {
    runtime: R,
    state: Arc<Mutex<State<R>>>,
}

impl<R: Runtime> Clone for MsrpServer<R> {
    fn clone(&self) -> Self {
        Self { runtime: self.runtime.clone(), state: Arc::clone(&self.state) }
    }
}

impl<R: Runtime> MsrpServer<R> {
    /// A server whose connections use `logger` unless `prepare` names another.
    pub fn new(runtime: R, logger: Option<Box<dyn TrafficLogger>>) -> Self {
        let state = State {
            router: SessionRouter::new(false, BIND_TIMEOUT),
            prepared: HashMap::new(),
            arrived: HashMap::new(),
            waiting: HashMap::new(),
            routed: HashMap::new(),
            expiry_at: None,
            expiry_task: 0,
            listening: Vec::new(),
            listen_failure: None,
            bind_timeout: BIND_TIMEOUT,
            next_connection: 0,
            ids: os_ids(),
            config: SessionConfig::new(Role::Passive, Vec::new(), Vec::new()),
            logger,
            tls: None,
            on_refused: None,
            on_listen_error: None,
        };
        Self { runtime, state: Arc::new(Mutex::new(state)) }
    }

    /// Replaces the session settings (chunk size, limits, …) of the connections to come.
    /// Only session settings: the role (passive) and the paths are set by the server, and
    /// its bind timeout is [`MsrpServer::set_bind_timeout`]'s.
    pub fn set_config(&mut self, config: SessionConfig) {
        lock(&self.state).config = config;
    }

    /// How long `complete` waits for its peer, and a prepared URI for its connection
    /// ([`BIND_TIMEOUT`] unless set). Set it before the first `prepare`: URIs prepared
    /// already keep the timeout they were prepared with; `complete` calls from now on use
    /// the new one.
    pub fn set_bind_timeout(&mut self, timeout: Duration) {
        let mut state = lock(&self.state);
        state.bind_timeout = timeout;
        if state.router.is_empty() {
            state.router = SessionRouter::new(false, timeout);
        }
    }

    /// Tells `callback` when a listener stops on a fatal accept error (transient ones are
    /// only logged). Once no listener is left, every waiting and later `complete` fails
    /// with that error until a `prepare` listens again.
    pub fn set_on_listen_error(&mut self, callback: OnListenError) {
        lock(&self.state).on_listen_error = Some(callback);
    }

    /// The addresses the server listens on, ports filled in.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        lock(&self.state).listening.iter().map(|listening| listening.address).collect()
    }

    /// Tells `callback` of every connection the router refuses (481 for a URI not
    /// prepared, 506 for one bound to another connection), with the peer's address.
    pub fn set_on_refused(&mut self, callback: OnRefused) {
        lock(&self.state).on_refused = Some(callback);
    }

    /// The certificate shown on ports prepared with `msrps` URIs.
    pub fn set_tls(&mut self, tls: TlsServer) {
        lock(&self.state).tls = Some(tls);
    }

    /// Listens on `local_uri`'s address if nothing does yet, and expects connections for
    /// it (msrplib `prepare`); returns the full local path. A port of 0 means any port:
    /// the one the server already listens on at that IP address with that scheme (`msrp`
    /// or `msrps`), else a new one the system picks (see
    /// [`MsrpServer::local_addresses`]). A missing session id is made up.
    pub async fn prepare(&self, local_uri: Uri, logger: Option<Box<dyn TrafficLogger>>) -> Result<Vec<Uri>, Error> {
        let mut uri = local_uri;
        let (address, where_) = listen_address(&self.runtime, &uri).await?;
        let listening = {
            let state = lock(&self.state);
            let mut listening = state.listening.iter();
            if address.port() == 0 {
                listening
                    .find(|listening| listening.address.ip() == address.ip() && listening.tls == uri.use_tls)
                    .map(|listening| listening.address)
            } else {
                listening.find(|listening| listening.address == address).map(|listening| listening.address)
            }
        };
        if let Some(shared) = listening {
            uri.port = Some(shared.port());
        } else {
            let tls = if uri.use_tls {
                Some(
                    lock(&self.state)
                        .tls
                        .clone()
                        .ok_or_else(|| Error::Invalid("an msrps URI needs a TLS server setting (set_tls)".into()))?,
                )
            } else {
                None
            };
            let mut listener = self.runtime.listen(address).await.map_err(|error| Error::listen(&where_, &error))?;
            let actual = listener.local_addr().map_err(|error| Error::listen(&where_, &error))?;
            uri.port = Some(actual.port());
            {
                let mut state = lock(&self.state);
                state.listening.push(Listening { address: actual, tls: tls.is_some() });
                state.listen_failure = None;
            }
            let state = Arc::clone(&self.state);
            let runtime = self.runtime.clone();
            self.runtime.spawn(Box::pin(async move {
                let mut pause = FIRST_ACCEPT_PAUSE;
                let error = loop {
                    let (stream, peer) = match accept_next(&runtime, &mut *listener, &mut pause).await {
                        Ok(accepted) => accepted,
                        Err(error) => break error,
                    };
                    let tls = tls.clone();
                    let connection = {
                        let mut state = lock(&state);
                        state.next_connection += 1;
                        ConnectionId(state.next_connection)
                    };
                    let (runtime_for_route, state) = (runtime.clone(), Arc::clone(&state));
                    runtime.spawn(Box::pin(async move {
                        let stream = match tls {
                            Some(tls) => match tls.accept(stream).await {
                                Ok(stream) => stream,
                                // A failed handshake: the connection is gone before any MSRP.
                                Err(_) => return,
                            },
                            None => stream,
                        };
                        route(runtime_for_route, state, (connection, peer), stream).await;
                    }));
                };
                // The port picked, not the URI's 0.
                stopped_listening(&state, actual, Error::listen(&actual.to_string(), &error));
            }));
        }
        let mut state = lock(&self.state);
        let uri = local_uri_or_default(Some(uri), &mut state.ids);
        state.router.prepare(self.runtime.now(), uri.clone());
        state.prepared.insert(uri.clone(), logger);
        arm_expiry(&self.runtime, &self.state, &mut state);
        Ok(vec![uri])
    }

    /// Waits until a connection binds with a From-Path ending in `full_remote_path`'s
    /// last URI (msrplib `complete`); `BindSessionTimeout` after the bind timeout. A
    /// connection that arrived first was bound already (RFC 4975 §5.4 binds by To-Path)
    /// and waits here with its messages queued.
    pub async fn complete(&self, full_remote_path: Vec<Uri>) -> Result<Transport<R>, Error> {
        let peer = full_remote_path.last().cloned().ok_or_else(|| Error::Invalid("the remote path is empty".into()))?;
        let (sender, receiver) = oneshot::channel();
        let peer = peer.comparison_key();
        let (parked, ticket, bind_timeout) = {
            let mut state = lock(&self.state);
            let parked = take_first(&mut state.arrived, &peer).map(|(_, transport)| transport);
            if let (None, Some(error)) = (&parked, &state.listen_failure) {
                return Err(error.clone());
            }
            state.next_connection += 1;
            let ticket = state.next_connection;
            if parked.is_none() {
                state.waiting.entry(peer.clone()).or_default().push((ticket, sender));
            }
            (parked, ticket, state.bind_timeout)
        };
        if let Some(transport) = parked {
            return Ok(transport);
        }
        let timeout = self.runtime.sleep_until(self.runtime.now() + bind_timeout);
        if let futures::future::Either::Left((Ok(bound), _)) = futures::future::select(receiver, timeout).await {
            return bound;
        }
        let mut state = lock(&self.state);
        remove_where(&mut state.waiting, &peer, |(waiting, _)| *waiting == ticket);
        Err(SessionError::BindTimeout.into())
    }

    /// Forgets `local_uri` (msrplib `cleanup`): it is no longer expected (a connection
    /// for it gets 481), and a session bound to it that no `complete` took yet is
    /// dropped, which ends it. A session already handed to `complete` lives on. A
    /// `complete` waiting names its peer, not this URI: it goes on waiting until its
    /// bind timeout.
    pub fn cleanup(&self, local_uri: &Uri) {
        let parked = {
            let mut state = lock(&self.state);
            let connection = state.router.bound_to(local_uri);
            state.router.cleanup(local_uri);
            state.prepared.remove(local_uri);
            connection.and_then(|connection| {
                let peer = state.routed.get(&connection)?.clone();
                remove_where(&mut state.arrived, &peer, |(parked, _)| *parked == connection)
            })
        };
        // Dropped without the lock: the session ends on its own task.
        drop(parked);
    }

    /// How many URIs are prepared and not yet expired, cleaned up or ended with their
    /// session (waiting for a connection, or bound to a live one).
    pub fn prepared_count(&self) -> usize {
        lock(&self.state).router.len()
    }

    /// Whether the server holds no state for any session: nothing prepared or bound, no
    /// session waiting for its `complete`, no `complete` waiting. What a server whose
    /// sessions all ended comes back to.
    pub fn is_idle(&self) -> bool {
        let state = lock(&self.state);
        state.router.is_empty()
            && state.prepared.is_empty()
            && state.arrived.is_empty()
            && state.waiting.is_empty()
            && state.routed.is_empty()
    }
}

/// Removes and returns the first value under `key`, dropping the key once it has none.
fn take_first<T>(map: &mut HashMap<UriKey, Vec<T>>, key: &UriKey) -> Option<T> {
    remove_where(map, key, |_| true)
}

/// Removes and returns the first value under `key` that `matches`, dropping the key once
/// it has none.
fn remove_where<T>(map: &mut HashMap<UriKey, Vec<T>>, key: &UriKey, matches: impl Fn(&T) -> bool) -> Option<T> {
    let values = map.get_mut(key)?;
    let found = values.iter().position(matches).map(|at| values.remove(at));
    if values.is_empty() {
        map.remove(key);
    }
    found
}

/// Makes sure a task wakes at the router's next deadline to forget the URIs that expired
/// (with their logger). One task runs at a time; a deadline earlier than the one it
/// sleeps until (a shorter bind timeout) replaces it.
fn arm_expiry<R: Runtime>(runtime: &R, shared: &Arc<Mutex<State<R>>>, state: &mut State<R>) {
    let Some(next) = state.router.poll_timeout() else { return };
    if state.expiry_at.is_some_and(|at| at <= next) {
        return;
    }
    state.expiry_at = Some(next);
    state.expiry_task += 1;
    let task = state.expiry_task;
    let (runtime_for_task, shared) = (runtime.clone(), Arc::downgrade(shared));
    runtime.spawn(Box::pin(async move {
        let runtime = runtime_for_task;
        let mut at = next;
        loop {
            runtime.sleep_until(at).await;
            // A server dropped meanwhile needs no expiry.
            let Some(shared) = shared.upgrade() else { return };
            let mut state = lock(&shared);
            if state.expiry_task != task {
                return;
            }
            for uri in state.router.handle_timeout(runtime.now()) {
                state.prepared.remove(&uri);
            }
            state.expiry_at = state.router.poll_timeout();
            let Some(next) = state.expiry_at else { return };
            at = next;
        }
    }));
}

/// A routed session ended (its driver did): its URI is released and, if no `complete`
/// took it, it leaves the sessions waiting for one.
fn session_ended<R: Runtime>(state: &Mutex<State<R>>, connection: ConnectionId) {
    let parked = {
        let mut state = lock(state);
        state.router.release(connection);
        let peer = state.routed.remove(&connection);
        peer.and_then(|peer| remove_where(&mut state.arrived, &peer, |(parked, _)| *parked == connection))
    };
    drop(parked);
}

/// A listener stopped on `error`: it is no longer one to prepare on, and the application
/// is told; with none left, `complete` calls fail with `error`.
fn stopped_listening<R: Runtime>(shared: &Mutex<State<R>>, address: SocketAddr, error: Error) {
    let mut state = lock(shared);
    state.listening.retain(|listening| listening.address != address);
    if state.listening.is_empty() {
        for (_, sender) in state.waiting.drain().flat_map(|(_, waiting)| waiting) {
            let _ = sender.send(Err(error.clone()));
        }
        state.listen_failure = Some(error.clone());
    }
    // Called unlocked, so that the callback may use the server (prepare again).
    let callback = state.on_listen_error.take();
    drop(state);
    if let Some(mut on_listen_error) = callback {
        on_listen_error(error);
        lock(shared).on_listen_error.get_or_insert(on_listen_error);
    }
}

fn lock<R: Runtime>(state: &Mutex<State<R>>) -> std::sync::MutexGuard<'_, State<R>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads a new connection's first request and routes it: a session for a prepared URI
/// is bound at once, with the request's From-Path as its peer.
async fn route<R: Runtime>(
    runtime: R,
    state: Arc<Mutex<State<R>>>,
    (connection, peer_address): (ConnectionId, SocketAddr),
    stream: BoxStream,
) {
    let (mut stream, first, received) = match read_first_request(stream).await {
        Ok(first) => first,
        Err(error) => {
            if let (Some(error), Some(on_refused)) = (error, &mut lock(&state).on_refused) {
                on_refused(unreadable(peer_address, &error));
            }
            return;
        }
    };
    let route = lock(&state).router.route(connection, &first);
    let local_uri = match route {
        Route::Bind { local_uri } => local_uri,
        Route::Reject { error, response } => {
            if let Some(on_refused) = &mut lock(&state).on_refused {
                on_refused(Refused { peer: peer_address, error, request: Some(first.clone()) });
            }
            if let Some(response) = response {
                let _ = stream.write_all(&response.encode()).await;
            }
            let _ = stream.close().await;
            return;
        }
    };
    let now = runtime.now();
    let engine = {
        let mut state = lock(&state);
        // Bound: the URI waits no more, and its logger goes to the session.
        let logger = state.prepared.remove(&local_uri).flatten().or_else(|| state.logger.take());
        match first.from_path().ok().map(|path| path.0).filter(|path| !path.is_empty()) {
            Some(remote_path) => {
                let config = state.config.clone();
                let peer = remote_path[remote_path.len() - 1].comparison_key();
                new_engine(config, Role::Passive, (vec![local_uri], remote_path), &mut state.ids, logger, now)
                    .ok()
                    .map(|engine| (engine, peer))
            }
            None => None,
        }
    };
    let transport = match engine {
        Some((mut engine, peer)) => {
            engine.handle_input(now, Input::Connected);
            for data in received {
                engine.handle_input(now, Input::Received(data));
            }
            bind_engine(&runtime, engine, stream).await.ok().map(|transport| (transport, peer))
        }
        None => None,
    };
    let Some((transport, peer)) = transport else {
        // The connection ends here, and the session it bound with it.
        lock(&state).router.release(connection);
        return;
    };
    let ends = transport.connection.clone();
    {
        let mut state = lock(&state);
        state.routed.insert(connection, peer.clone());
        match take_first(&mut state.waiting, &peer) {
            Some((_, sender)) => {
                if let Err(Ok(transport)) = sender.send(Ok(transport)) {
                    // That `complete` gave up just now: keep the session for another.
                    state.arrived.entry(peer).or_default().push((connection, transport));
                }
            }
            None => state.arrived.entry(peer).or_default().push((connection, transport)),
        }
    }
    // Without the lock: a session that ended already is told at once. Weak: a parked
    // session must not keep a dropped server's state alive.
    let state = Arc::downgrade(&state);
    ends.on_end(move || {
        if let Some(state) = state.upgrade() {
            session_ended(&state, connection);
        }
    });
}
