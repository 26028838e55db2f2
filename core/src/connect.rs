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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdGenerator;
    use crate::session::{Event, Input, Output, Role, Session, SessionConfig};

    const ALICE: &str = "msrp://127.0.0.1:2855/alice1234;tcp";
    const BOB: &str = "msrp://127.0.0.1:2856/bob5678;tcp";
    const CAROL: &str = "msrp://127.0.0.1:2856/carol999;tcp";

    fn uri(text: &str) -> Uri {
        text.parse().expect("valid URI")
    }

    fn send(tid: &str, to: &str, extra: &str, body: &str) -> Bytes {
        let range = format!("1-{0}/{0}", body.len());
        let body_part =
            if body.is_empty() { String::new() } else { format!("Content-Type: text/plain\r\n\r\n{body}\r\n") };
        Bytes::from(format!(
            "MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {ALICE}\r\nMessage-ID: m{tid}\r\nByte-Range: {range}\r\n{extra}{body_part}-------{tid}$\r\n"
        ))
    }

    fn head_of(data: Bytes) -> Chunk {
        let mut pending = PendingConnection::new(DecoderLimits::default());
        pending.handle_received(data).expect("a head").expect("valid")
    }

    #[test]
    fn first_request_binds_the_prepared_session_and_a_second_connection_gets_506() {
        // R4975-5.4-5: no match → 481; bound to another connection → 506 (R4975-10.10).
        let now = Instant::now();
        let mut router = SessionRouter::new(false, Duration::from_secs(30));
        router.prepare(now, uri(BOB));
        router.prepare(now, uri(CAROL));
        let first = head_of(send("first001", BOB, "", ""));
        assert_eq!(router.route(ConnectionId(1), &first), Route::Bind { local_uri: uri(BOB) });
        assert!(!router.is_waiting(&uri(BOB)) && router.is_waiting(&uri(CAROL)));
        let Route::Reject { error, response } = router.route(ConnectionId(2), &first) else { panic!("not refused") };
        assert_eq!(error.code, 506);
        let response = response.expect("a response");
        assert_eq!(response.code(), Some(506));
        assert_eq!(response.transaction_id, "first001");
        assert_eq!(response.to_path().unwrap().0, vec![uri(ALICE)]);
        assert_eq!(response.from_path().unwrap().0, vec![uri(BOB)]);
        // The same connection may send more requests for its own session.
        assert_eq!(router.route(ConnectionId(1), &first), Route::Bind { local_uri: uri(BOB) });
        // Once the connection is gone the session is gone too.
        router.release(ConnectionId(1));
        assert!(matches!(router.route(ConnectionId(3), &first), Route::Reject { error, .. } if error.code == 481));
    }

    #[test]
    fn unknown_sessions_get_481_unless_failure_report_is_no() {
        // R4975-7.3-1, R4975-7.1.4-2.
        let mut router = SessionRouter::new(false, Duration::from_secs(30));
        router.prepare(Instant::now(), uri(BOB));
        let unknown = head_of(send("unkn0001", CAROL, "", "hi"));
        let Route::Reject { error, response } = router.route(ConnectionId(1), &unknown) else { panic!() };
        assert_eq!((error.code, response.and_then(|r| r.code())), (481, Some(481)));
        let silent = head_of(send("unkn0002", CAROL, "Failure-Report: no\r\n", ""));
        assert!(matches!(router.route(ConnectionId(1), &silent), Route::Reject { response: None, .. }));
        let two_hops = head_of(send("unkn0003", &format!("{ALICE} {BOB}"), "", ""));
        assert!(matches!(router.route(ConnectionId(1), &two_hops), Route::Reject { error, .. } if error.code == 481));
    }

    #[test]
    fn prepared_uris_expire_after_the_bind_timeout() {
        let start = Instant::now();
        let mut router = SessionRouter::new(true, Duration::from_secs(30));
        router.prepare(start, uri(BOB));
        router.prepare(start + Duration::from_secs(10), uri(CAROL));
        assert_eq!(router.poll_timeout(), Some(start + Duration::from_secs(30)));
        assert!(router.handle_timeout(start + Duration::from_secs(29)).is_empty());
        assert_eq!(router.handle_timeout(start + Duration::from_secs(30)), vec![uri(BOB)]);
        assert_eq!(router.poll_timeout(), Some(start + Duration::from_secs(40)));
        // sessmatch: a rewritten authority still finds the session by its id.
        let rewritten = head_of(send("sbc00001", "msrp://10.9.9.9:1/carol999;tcp", "", ""));
        assert_eq!(router.route(ConnectionId(7), &rewritten), Route::Bind { local_uri: uri(CAROL) });
        assert_eq!(router.poll_timeout(), None, "a bound URI does not expire");
        assert!(router.cleanup(&uri(CAROL)));
    }

    #[test]
    fn a_first_send_with_a_body_reaches_the_session_that_takes_the_connection() {
        let now = Instant::now();
        let mut router = SessionRouter::new(false, Duration::from_secs(30));
        router.prepare(now, uri(BOB));
        let wire = send("body0001", BOB, "", "hello over a shared port");
        let mut pending = PendingConnection::new(DecoderLimits::default());
        // The head arrives in two reads; the body has not all arrived yet.
        assert!(pending.handle_received(wire.slice(..20)).is_none());
        let head = pending.handle_received(wire.slice(20..wire.len() - 30)).expect("head").expect("valid");
        let Route::Bind { local_uri } = router.route(ConnectionId(1), &head) else { panic!("not bound") };
        let config = SessionConfig::new(Role::Passive, vec![local_uri], vec![uri(ALICE)]);
        let mut session = Session::new(config, IdGenerator::seed_from_u64(1), now).unwrap();
        session.handle_input(now, Input::Connected);
        for data in pending.into_received() {
            session.handle_input(now, Input::Received(data));
        }
        session.handle_input(now, Input::Received(wire.slice(wire.len() - 30..)));
        let mut events = Vec::new();
        while let Some(output) = session.poll_output(now) {
            if let Output::Event(event) = output {
                events.push(event);
            }
        }
        assert_eq!(events[0], Event::Bound);
        let Event::Incoming(chunk) = &events[1] else { panic!("no message: {events:?}") };
        assert_eq!(&chunk.data[..], b"hello over a shared port");
    }
}
