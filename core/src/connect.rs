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

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::chunk::Chunk;
use crate::codec::{ChunkParseError, Decoded, Decoder, DecoderLimits};
use crate::transport::{MsrpError, response_to};
use crate::uri::Uri;

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

#[derive(Debug)]
struct Expected {
    uri: Uri,
    /// Until when a connection may bind it.
    deadline: Instant,
    bound_to: Option<ConnectionId>,
}

/// The session URIs handed out on one listening port and the connections bound to
/// them. See the [module docs](self).
#[derive(Debug)]
pub struct SessionRouter {
    expected: Vec<Expected>,
    use_sessmatch: bool,
    bind_timeout: Duration,
}

impl SessionRouter {
    /// A router comparing URIs by RFC 4975 §6.1, or by session id with `use_sessmatch`;
    /// a prepared URI waits `bind_timeout` for its connection.
    pub fn new(use_sessmatch: bool, bind_timeout: Duration) -> Self {
        Self { expected: Vec::new(), use_sessmatch, bind_timeout }
    }

    /// Expects a connection for `local_uri` from `now` on (msrplib `prepare`).
    pub fn prepare(&mut self, now: Instant, local_uri: Uri) {
        self.cleanup(&local_uri);
        self.expected.push(Expected { uri: local_uri, deadline: now + self.bind_timeout, bound_to: None });
    }

    /// Stops expecting `local_uri` (msrplib `cleanup`); `true` if it was expected.
    pub fn cleanup(&mut self, local_uri: &Uri) -> bool {
        let before = self.expected.len();
        self.expected.retain(|expected| expected.uri != *local_uri);
        self.expected.len() != before
    }

    /// Forgets a connection that closed: the session it bound is gone with it.
    pub fn release(&mut self, connection: ConnectionId) {
        self.expected.retain(|expected| expected.bound_to != Some(connection));
    }

    /// Routes the first request of `connection` (RFC 4975 §5.4: look the To-Path URI up
    /// among the URIs handed out; 481 if absent, 506 if bound to another connection).
    pub fn route(&mut self, connection: ConnectionId, request: &Chunk) -> Route {
        let to = request.to_path().ok().and_then(|path| match &path.0[..] {
            [only] => Some(only.clone()),
            _ => None,
        });
        let use_sessmatch = self.use_sessmatch;
        let found = to.as_ref().and_then(|to| {
            self.expected
                .iter_mut()
                .find(|expected| if use_sessmatch { expected.uri.matches_session(to) } else { expected.uri == *to })
        });
        let error = match found {
            Some(expected) if expected.bound_to.is_none_or(|bound| bound == connection) => {
                expected.bound_to = Some(connection);
                return Route::Bind { local_uri: expected.uri.clone() };
            }
            Some(_) => MsrpError::new(506, "Session already bound to another connection"),
            None => MsrpError::new(481, "No such session"),
        };
        // Answer as the URI the peer addressed (or, with a bad To-Path, say nothing about us).
        let from = to.map(|uri| uri.to_string()).unwrap_or_default();
        let response = response_to(request, error.code, Some(error.comment.clone()), &from);
        Route::Reject { error, response }
    }

    /// The earliest instant a prepared URI expires.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expected.iter().filter(|expected| expected.bound_to.is_none()).map(|expected| expected.deadline).min()
    }

    /// Removes and returns the prepared URIs no connection bound by `now` (each is a
    /// `BindSessionTimeout` for whoever waits in `complete`).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Uri> {
        let mut expired = Vec::new();
        self.expected.retain(|expected| {
            let gone = expected.bound_to.is_none() && expected.deadline <= now;
            if gone {
                expired.push(expected.uri.clone());
            }
            !gone
        });
        expired
    }

    /// Whether `local_uri` is prepared and not yet bound.
    pub fn is_waiting(&self, local_uri: &Uri) -> bool {
        self.expected.iter().any(|expected| expected.uri == *local_uri && expected.bound_to.is_none())
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
