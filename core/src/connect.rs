//! Binding incoming connections on a shared listening port to the sessions that expect
//! them (the decisions of msrplib's `MSRPServer`, RFC 4975 §5.4).
//!
//! Many sessions can listen on one port. The adapter accepts a connection and feeds what
//! it reads to a [`PendingConnection`] until the first request's head is known, then
//! asks the [`SessionRouter`] where it goes:
//!
//! - To-Path is a URI this side handed out and no other connection bound it: the
//!   connection binds that session. The adapter creates a passive
//!   [`Session`](crate::session::Session) and feeds it every byte received so far
//!   ([`PendingConnection::into_received`]), so a first SEND with a body is delivered.
//! - No such URI: **481**. Already bound to another connection: **506**. The adapter
//!   writes the response (if the request allows one) and closes the connection.
//!
//! A prepared URI that no connection binds within the bind timeout expires
//! ([`SessionRouter::handle_timeout`]), which is msrplib's `MSRPBindSessionTimeout`.
//! A bound URI lives as long as its connection: once the adapter reports the connection
//! closed ([`SessionRouter::release`]) the session is over and the URI forgotten, so a
//! later connection naming it gets 481, not 506.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::chunk::Chunk;
use crate::codec::{ChunkParseError, Decoded, Decoder, DecoderLimits};
use crate::transport::{MsrpError, response_to};
use crate::uri::{Uri, UriKey};

/// The adapter's name for an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Where a new connection's first request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The connection binds the session of this prepared URI.
    Bind {
        /// The session's own URI, as prepared.
        local_uri: Uri,
    },
    /// The request is refused: write `response` when there is one, then close.
    Reject {
        /// Why (481 or 506).
        error: MsrpError,
        /// The response to write; `None` when the request allows none (a REPORT,
        /// `Failure-Report: no`).
        response: Option<Chunk>,
    },
}

/// What the router knows of one prepared URI.
#[derive(Debug)]
struct Expected {
    uri: Uri,
    state: Binding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// No connection bound it yet; its entry in `SessionRouter::deadlines`.
    Waiting(Deadline),
    /// Bound to this connection, for as long as the connection lives.
    Bound(ConnectionId),
}

/// When a waiting URI expires, made unique by the order of the `prepare` calls (so
/// URIs with one deadline expire in the order they were prepared).
type Deadline = (Instant, u64);

/// The session URIs handed out on one listening port and the connections bound to
/// them. See the [module docs](self).
///
/// Every operation is O(1) on average, apart from the deadline index (O(log n)):
/// prepared URIs are indexed by their RFC 4975 §6.1 key ([`Uri::comparison_key`]) or,
/// with `use_sessmatch`, by session id; each connection knows the URIs it bound, and
/// waiting URIs sit in a map ordered by deadline.
#[derive(Debug)]
pub struct SessionRouter {
    /// Every prepared URI, waiting or bound.
    expected: HashMap<UriKey, Expected>,
    /// With `use_sessmatch`: the key of the prepared URI holding each session id.
    by_session: HashMap<String, UriKey>,
    /// The URIs each live connection bound (nearly always one).
    by_connection: HashMap<ConnectionId, Vec<UriKey>>,
    /// The URIs still waiting, by deadline.
    deadlines: BTreeMap<Deadline, UriKey>,
    /// Numbers `prepare` calls, to order equal deadlines.
    prepared_count: u64,
    use_sessmatch: bool,
    bind_timeout: Duration,
}

impl SessionRouter {
    /// A router comparing URIs by RFC 4975 §6.1, or by session id with `use_sessmatch`;
    /// a prepared URI waits `bind_timeout` for its connection.
    pub fn new(use_sessmatch: bool, bind_timeout: Duration) -> Self {
        Self {
            expected: HashMap::new(),
            by_session: HashMap::new(),
            by_connection: HashMap::new(),
            deadlines: BTreeMap::new(),
            prepared_count: 0,
            use_sessmatch,
            bind_timeout,
        }
    }

    /// Expects a connection for `local_uri` from `now` on (msrplib `prepare`): the URI
    /// waits until `now` plus the bind timeout.
    ///
    /// Preparing a URI again starts afresh: whatever the router knew of an equal URI
    /// (§6.1) is forgotten first, as by [`SessionRouter::cleanup`], a binding included.
    /// With `use_sessmatch` the session id alone names a session, so a prepared URI with
    /// the same session id is forgotten too. A URI without a session id can never be
    /// routed to with `use_sessmatch` (`Uri::matches_session`), but it still waits and
    /// expires.
    pub fn prepare(&mut self, now: Instant, local_uri: Uri) {
        self.cleanup(&local_uri);
        let same_session = local_uri.session_id.as_ref().and_then(|id| self.by_session.get(id)).cloned();
        if let Some(same_session) = same_session {
            self.forget(&same_session);
        }
        let key = local_uri.comparison_key();
        self.prepared_count += 1;
        let deadline = (now + self.bind_timeout, self.prepared_count);
        self.deadlines.insert(deadline, key.clone());
        if let (true, Some(id)) = (self.use_sessmatch, &local_uri.session_id) {
            self.by_session.insert(id.clone(), key.clone());
        }
        self.expected.insert(key, Expected { uri: local_uri, state: Binding::Waiting(deadline) });
    }

    /// Forgets everything about `local_uri` (msrplib `cleanup`), waiting or bound:
    /// a later request for it gets 481. Returns `true` if it was prepared. Compares by
    /// RFC 4975 §6.1 (also with `use_sessmatch`: this is the URI as prepared).
    pub fn cleanup(&mut self, local_uri: &Uri) -> bool {
        self.forget(&local_uri.comparison_key())
    }

    /// Forgets a connection that closed, and every URI it bound with it: RFC 4975 ends a
    /// session with its connection, so a later connection naming one of them is not a
    /// reconnect but a request for a session that no longer exists, and gets 481. A
    /// connection that bound nothing (refused, or closed before its first request was
    /// routed) is unknown here: releasing it does nothing. O(the URIs it bound).
    pub fn release(&mut self, connection: ConnectionId) {
        for key in self.by_connection.remove(&connection).unwrap_or_default() {
            if let Some(expected) = self.expected.remove(&key) {
                self.unindex_session(&expected.uri, &key);
            }
        }
    }

    /// Routes a request of `connection` (RFC 4975 §5.4): its To-Path must hold exactly
    /// one URI, looked up among the prepared ones (§6.1 equality, or the session id with
    /// `use_sessmatch`).
    ///
    /// - Waiting: `connection` binds it, for as long as it lives ([`Route::Bind`]); the
    ///   URI no longer expires.
    /// - Bound to `connection` itself: [`Route::Bind`] again.
    /// - Bound to another connection, which is alive until [`SessionRouter::release`]d:
    ///   **506**.
    /// - Not prepared, expired, cleaned up or released: **481**.
    ///
    /// A refused connection binds nothing and needs no `release`.
    pub fn route(&mut self, connection: ConnectionId, request: &Chunk) -> Route {
        let to = request.to_path().ok().and_then(|path| match &path.0[..] {
            [only] => Some(only.clone()),
            _ => None,
        });
        let key = to.as_ref().and_then(|to| {
            if self.use_sessmatch {
                to.session_id.as_ref().and_then(|id| self.by_session.get(id)).cloned()
            } else {
                Some(to.comparison_key())
            }
        });
        let found = key.as_ref().and_then(|key| self.expected.get_mut(key).map(|expected| (key, expected)));
        let error = match found {
            Some((key, expected)) => match expected.state {
                Binding::Waiting(deadline) => {
                    expected.state = Binding::Bound(connection);
                    let local_uri = expected.uri.clone();
                    self.deadlines.remove(&deadline);
                    self.by_connection.entry(connection).or_default().push(key.clone());
                    return Route::Bind { local_uri };
                }
                Binding::Bound(bound) if bound == connection => {
                    return Route::Bind { local_uri: expected.uri.clone() };
                }
                Binding::Bound(_) => MsrpError::new(506, "Session already bound to another connection"),
            },
            None => MsrpError::new(481, "No such session"),
        };
        // Answer as the URI the peer addressed (or, with a bad To-Path, say nothing about us).
        let from = to.map(|uri| uri.to_string()).unwrap_or_default();
        let response = response_to(request, error.code, Some(error.comment.clone()), &from);
        Route::Reject { error, response }
    }

    /// The earliest instant a waiting URI expires; `None` when none waits. O(log n).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first_key_value().map(|((at, _), _)| *at)
    }

    /// Forgets the URIs no connection bound by `now` and returns them, earliest deadline
    /// first (each is a `BindSessionTimeout` for whoever waits in `complete`). Bound URIs
    /// never expire. O(expired × log n).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Uri> {
        let mut expired = Vec::new();
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(expected) = self.expected.remove(&key) {
                self.unindex_session(&expected.uri, &key);
                expired.push(expected.uri);
            }
        }
        expired
    }

    /// Whether `local_uri` (§6.1) is prepared and not yet bound.
    pub fn is_waiting(&self, local_uri: &Uri) -> bool {
        self.expected
            .get(&local_uri.comparison_key())
            .is_some_and(|expected| matches!(expected.state, Binding::Waiting(_)))
    }

    /// The connection bound to `local_uri` (§6.1), if one is.
    pub fn bound_to(&self, local_uri: &Uri) -> Option<ConnectionId> {
        match self.expected.get(&local_uri.comparison_key())?.state {
            Binding::Bound(connection) => Some(connection),
            Binding::Waiting(_) => None,
        }
    }

    /// How many URIs are prepared, waiting or bound.
    pub fn len(&self) -> usize {
        self.expected.len()
    }

    /// Whether the router holds nothing at all: no URI, no connection, no deadline
    /// (what a server that ended all its sessions must come back to).
    pub fn is_empty(&self) -> bool {
        self.expected.is_empty()
            && self.by_session.is_empty()
            && self.by_connection.is_empty()
            && self.deadlines.is_empty()
    }

    /// Removes the URI of `key` from every index; `true` if it was there.
    fn forget(&mut self, key: &UriKey) -> bool {
        let Some(expected) = self.expected.remove(key) else { return false };
        match expected.state {
            Binding::Waiting(deadline) => {
                self.deadlines.remove(&deadline);
            }
            Binding::Bound(connection) => {
                if let Entry::Occupied(mut bound) = self.by_connection.entry(connection) {
                    bound.get_mut().retain(|bound_key| bound_key != key);
                    if bound.get().is_empty() {
                        bound.remove();
                    }
                }
            }
        }
        self.unindex_session(&expected.uri, key);
        true
    }

    /// Drops the session-id index entry of `uri` if it still names `key`.
    fn unindex_session(&mut self, uri: &Uri, key: &UriKey) {
        if let Some(id) = &uri.session_id {
            if self.by_session.get(id) == Some(key) {
                self.by_session.remove(id);
            }
        }
    }
}

/// A connection accepted on a shared port whose first request is not read yet.
#[derive(Debug)]
pub struct PendingConnection {
    decoder: Decoder,
    received: Vec<Bytes>,
}

impl PendingConnection {
    /// A new connection, decoded with `limits` (the session's own).
    pub fn new(limits: DecoderLimits) -> Self {
        Self { decoder: Decoder::new(limits), received: Vec::new() }
    }

    /// Takes bytes read from the connection; returns the first request's head once it
    /// is complete (or the error that makes it unreadable). Nothing received is lost:
    /// [`PendingConnection::into_received`] gives it all back.
    pub fn handle_received(&mut self, data: Bytes) -> Option<Result<Chunk, ChunkParseError>> {
        self.received.push(data.clone());
        self.decoder.feed(data);
        loop {
            match self.decoder.poll()? {
                Ok(Decoded::Head(head)) => return Some(Ok(head)),
                Ok(Decoded::Data(_) | Decoded::End(_)) => {}
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// Bytes held until the connection is routed (at most about one head: the decoder's
    /// limits bound it).
    pub fn buffered(&self) -> usize {
        self.received.iter().map(Bytes::len).sum()
    }

    /// Every byte received, in order, to feed the session that takes the connection.
    pub fn into_received(self) -> Vec<Bytes> {
        self.received
    }
}
