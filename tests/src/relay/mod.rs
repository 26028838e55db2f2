//! A small, scripted RFC 4976 relay for tests: [`ScriptedRelay`] is sans-IO (bytes in,
//! [`RelayOutput`]s out, time as `now` arguments), and [`net::TestRelay`] runs it over
//! real sockets on 127.0.0.1.
//!
//! It is test infrastructure, not the production relay: one relay, clients connected
//! directly to it, no relay-to-relay connections and no REPORTs of its own. Within that
//! it follows RFC 4976 §6, and a [`RelayScript`] switches on the deviations of real
//! relays (Kamailio, AG Projects' msrprelay) so that a client can be tested against them.
//!
//! # What it does
//!
//! - **AUTH** (To-Path: one URI naming the relay, with or without a session id): without
//!   [`RelayScript::auth`], `200` with `Use-Path: <relay>/<random session id>` and
//!   `Expires`. With it, `401` with a Digest challenge, then the `Authorization` is
//!   checked (RFC 2617 MD5, `qop=auth`, A2 = `AUTH:` + the rightmost To-Path URI as
//!   written, or the `uri=` value when the client sent one): `200`, `401` again (wrong
//!   password; `stale=true` when only the nonce was out of date), or `403` (a user not
//!   in [`Passwords::Users`]). An `Expires` outside `min_expires..=max_expires` gets `423`
//!   with `Min-Expires` or `Max-Expires`.
//! - **Refresh**: another successful AUTH on a connection whose grant is still live
//!   renews that grant and answers with the *same* Use-Path (a client can keep its SDP
//!   path). After a grant expired, a new AUTH gets a new session id.
//! - **Grants** belong to the connection that obtained them (RFC 4976 §6.3): they die
//!   with it, and after `Expires` seconds.
//! - **Forwarding** (§6.4): a request whose first To-Path URI is a live grant is
//!   forwarded. That URI is popped, and so is the next one when it is another grant of
//!   this relay (one relay serving both ends: `relay/sessA relay/sessB B`); the request
//!   goes to the connection owning the last popped grant. The relay's URI with the
//!   **sender's** grant (`msrp://relay/<sess-of-sender>;tcp`) is put in front of
//!   From-Path, so From-Path always leads back to the sender. The transaction id and
//!   everything else are kept; header order is To-Path, From-Path, then the rest.
//!   A SEND is answered hop by hop with the relay's own `200` (To-Path and From-Path
//!   only, RFC 4975 §7.2; none with `Failure-Report: no`, no 200 with `partial`); no
//!   other request is answered when forwarded, and a REPORT is never answered.
//! - **Errors**: no live grant for the target, or nothing after the relay in To-Path:
//!   `481`. A sender without a grant of its own: `403`. A frame over
//!   [`RelayScript::max_frame`]: `501`, not forwarded. A bad chunk: the decoder's
//!   `400`/`413`. A first To-Path URI that does not name this relay at all: the
//!   connection is closed (§6.2). Framing lost: the connection is closed.
//! - **Responses** arriving from a client: one whose To-Path goes on past the relay (the
//!   answer to a forwarded non-SEND request) is forwarded like a request; one that ends
//!   at the relay (the far end's 200 to a SEND it forwarded, which it already answered
//!   itself) is dropped, as Kamailio does.
//!
//! Each frame is buffered whole (its body as the decoder's zero-copy slices) before it
//! is forwarded, which is how the `max_frame` check can answer before anything is
//! sent; bytes may arrive in any pieces. [`RelayStats`] counts what happened.

pub mod net;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5::{Digest, Md5};
use msrp_core::codec::{ChunkParseError, Decoded, Decoder, DecoderLimits};
use msrp_core::connect::ConnectionId;
use msrp_core::header::{
    AuthParams, Authorization, Expires, FailureReport, HeaderName, HeaderValue, MaxExpires, MinExpires, UsePath,
    WwwAuthenticate,
};
use msrp_core::{Chunk, IdGenerator, Method, Uri};

/// The largest frame Kamailio's msrp module relays; a larger one gets `501`.
pub const KAMAILIO_MAX_FRAME: usize = 11238;

/// Who may authenticate, and with which password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passwords {
    /// Any user name, this password (Kamailio's test config).
    Any(String),
    /// Only these users, each with its password; anyone else gets `403`.
    Users(HashMap<String, String>),
}

/// Digest authentication of AUTH requests (RFC 4976 §5.1, RFC 2617).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestAuth {
    /// The realm put in challenges and expected in credentials.
    pub realm: String,
    /// The accepted credentials.
    pub passwords: Passwords,
}

impl DigestAuth {
    /// Any user name with `password`.
    pub fn any_user(realm: impl Into<String>, password: impl Into<String>) -> Self {
        Self { realm: realm.into(), passwords: Passwords::Any(password.into()) }
    }

    /// Only the given `(user, password)` pairs.
    pub fn users<U: Into<String>, P: Into<String>>(
        realm: impl Into<String>,
        users: impl IntoIterator<Item = (U, P)>,
    ) -> Self {
        let users = users.into_iter().map(|(user, password)| (user.into(), password.into())).collect();
        Self { realm: realm.into(), passwords: Passwords::Users(users) }
    }

    fn password(&self, user: &str) -> Option<&str> {
        match &self.passwords {
            Passwords::Any(password) => Some(password),
            Passwords::Users(users) => users.get(user).map(String::as_str),
        }
    }
}

/// How a [`ScriptedRelay`] behaves. [`RelayScript::default`] is an RFC-following relay
/// without authentication at `msrp://127.0.0.1:2855;tcp`.
// The quirk switches are independent of each other, as the relays they imitate.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone)]
pub struct RelayScript {
    /// The relay's own URI, without a session id; Use-Path URIs are this plus one.
    /// ([`net::TestRelay::start`] sets host and port to where it listens.)
    pub uri: Uri,
    /// Digest authentication; `None` grants every AUTH at once.
    pub auth: Option<DigestAuth>,
    /// Seconds granted when the AUTH asks for no `Expires` (3600).
    pub default_expires: u64,
    /// The shortest `Expires` accepted (60); less gets `423` with `Min-Expires`.
    pub min_expires: u64,
    /// The longest `Expires` accepted (3600); more gets `423` with `Max-Expires`.
    pub max_expires: u64,
    /// How long a nonce stays fresh (30 s); a correct answer to an older one gets
    /// `401` with `stale=true`.
    pub nonce_lifetime: Duration,
    /// Kamailio: an `Authorization` without `uri=` gets `401` again.
    pub require_digest_uri: bool,
    /// msrprelay: an `Authorization` with `uri=` gets no answer at all.
    pub reject_digest_uri: bool,
    /// Kamailio's bug: any `Expires` in an AUTH with `Authorization` gets `423` with
    /// `Min-Expires: <min_expires>`.
    pub reject_expires_with_authorization: bool,
    /// The largest frame (head, body and end-line as the relay's encoder writes them)
    /// it forwards; a larger request gets `501`. Kamailio: [`KAMAILIO_MAX_FRAME`].
    pub max_frame: Option<usize>,
    /// Close the connection right after answering an AUTH with `200`.
    pub drop_after_auth: bool,
    /// Never answer an AUTH (a client's AUTH timeout).
    pub ignore_auth: bool,
    /// Answer every AUTH with this status instead (e.g. 403, 500).
    pub refuse_auth_with: Option<u16>,
    /// Kamailio: answer every forwarded SEND with `200`, even with `Failure-Report: no`
    /// or `partial`.
    pub answer_every_send: bool,
    /// Seed of the relay's session ids and nonces.
    pub seed: u64,
}

impl Default for RelayScript {
    fn default() -> Self {
        Self {
            uri: Uri::new("127.0.0.1").with_port(2855),
            auth: None,
            default_expires: 3600,
            min_expires: 60,
            max_expires: 3600,
            nonce_lifetime: Duration::from_secs(30),
            require_digest_uri: false,
            reject_digest_uri: false,
            reject_expires_with_authorization: false,
            max_frame: None,
            drop_after_auth: false,
            ignore_auth: false,
            refuse_auth_with: None,
            answer_every_send: false,
            seed: 4976,
        }
    }
}

impl RelayScript {
    /// The default relay with Digest authentication.
    pub fn with_auth(auth: DigestAuth) -> Self {
        Self { auth: Some(auth), ..Self::default() }
    }

    /// Kamailio's msrp module as observed (tests/kamailio/README.md): needs `uri=`,
    /// 423 to any `Expires` with `Authorization`, 11238-byte frames, 200 to every SEND.
    pub fn kamailio_like(auth: Option<DigestAuth>) -> Self {
        Self {
            auth,
            require_digest_uri: true,
            reject_expires_with_authorization: true,
            max_frame: Some(KAMAILIO_MAX_FRAME),
            answer_every_send: true,
            ..Self::default()
        }
    }

    /// AG Projects' msrprelay: silent on `uri=`, `Expires` checked against 60–3600 s.
    pub fn msrprelay_like(auth: Option<DigestAuth>) -> Self {
        Self { auth, reject_digest_uri: true, min_expires: 60, max_expires: 3600, ..Self::default() }
    }
}

/// What the relay asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayOutput {
    /// Write these bytes to the connection, after everything written to it before.
    Write {
        /// The connection.
        connection: ConnectionId,
        /// The bytes.
        bytes: Bytes,
    },
    /// Close the connection once what was written before is sent; then report
    /// [`ScriptedRelay::handle_closed`].
    Close {
        /// The connection.
        connection: ConnectionId,
    },
}

/// What the relay did, for tests to assert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Connections it was told about.
    pub connections: u64,
    /// AUTH requests addressed to the relay.
    pub auth_requests: u64,
    /// `401` challenges sent (stale ones included).
    pub challenges: u64,
    /// `401` challenges with `stale=true`.
    pub stale_challenges: u64,
    /// AUTHs answered with `403`.
    pub forbidden: u64,
    /// AUTHs answered with `423`.
    pub interval_refused: u64,
    /// AUTHs left without an answer (`ignore_auth`, `reject_digest_uri`).
    pub auth_ignored: u64,
    /// AUTHs that created a new grant.
    pub authorized: u64,
    /// AUTHs that renewed a live grant.
    pub refreshed: u64,
    /// Requests forwarded.
    pub forwarded_requests: u64,
    /// Responses forwarded (answers to forwarded non-SEND requests).
    pub forwarded_responses: u64,
    /// Body bytes of forwarded requests.
    pub forwarded_body_bytes: u64,
    /// The relay's own hop-by-hop `200`s to SENDs.
    pub hop_responses: u64,
    /// Requests refused with `481` (or dropped for it when no answer is allowed).
    pub no_route: u64,
    /// Requests refused with `501` (or dropped for it) for being over `max_frame`.
    pub too_large: u64,
    /// Responses that ended at the relay or could not be routed, dropped.
    pub dropped_responses: u64,
    /// Chunks the decoder refused (answered 400/413 when allowed).
    pub bad_chunks: u64,
    /// Connections the relay closed.
    pub closed_by_relay: u64,
}

/// One frame being read: its head and body slices.
#[derive(Debug)]
struct Frame {
    head: Chunk,
    body: Vec<Bytes>,
    /// Bytes of the frame so far, as encoded (head + body).
    size: usize,
    /// Over `max_frame`: the body is no longer kept.
    oversize: bool,
}

#[derive(Debug)]
struct Connection {
    decoder: Decoder,
    frame: Option<Frame>,
    /// Session id of the grant this connection obtained (maybe expired).
    grant: Option<String>,
    /// Close was asked for: nothing more is read or written.
    closing: bool,
}

#[derive(Debug, Clone, Copy)]
struct Grant {
    connection: ConnectionId,
    expires_at: Instant,
}

/// Where a routed request goes.
struct Route {
    destination: ConnectionId,
    /// The rest of To-Path, as written.
    to_path: String,
    /// The new From-Path.
    from_path: String,
}

/// Why a request was not routed: the status and comment of the refusal.
type Refusal = (u16, &'static str);

enum DigestVerdict {
    Valid,
    Stale,
    Wrong,
    UnknownUser,
}

/// The sans-IO relay. See the [module docs](self).
///
/// Drive it with `handle_connected`, `handle_received` and `handle_closed` (and
/// `drop_connection` to make it hang up), and after each call drain
/// [`ScriptedRelay::poll_output`] until `None`.
#[derive(Debug)]
pub struct ScriptedRelay {
    script: RelayScript,
    ids: IdGenerator,
    connections: HashMap<ConnectionId, Connection>,
    grants: HashMap<String, Grant>,
    /// Nonces handed out, with when.
    nonces: HashMap<String, Instant>,
    output: VecDeque<RelayOutput>,
    stats: RelayStats,
}

impl ScriptedRelay {
    /// A relay behaving as `script` says, with no connections.
    pub fn new(script: RelayScript) -> Self {
        let mut script = script;
        script.uri.session_id = None;
        let ids = IdGenerator::seed_from_u64(script.seed);
        Self {
            script,
            ids,
            connections: HashMap::new(),
            grants: HashMap::new(),
            nonces: HashMap::new(),
            output: VecDeque::new(),
            stats: RelayStats::default(),
        }
    }

    /// The relay's own URI (no session id).
    pub fn uri(&self) -> &Uri {
        &self.script.uri
    }

    /// The script it follows.
    pub fn script(&self) -> &RelayScript {
        &self.script
    }

    /// What it did so far.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// The connections it knows, in id order.
    pub fn connection_ids(&self) -> Vec<ConnectionId> {
        let mut ids: Vec<_> = self.connections.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The Use-Path URI granted to a connection, if its grant is live at `now`.
    pub fn grant(&self, connection: ConnectionId, now: Instant) -> Option<Uri> {
        let session = self.connections.get(&connection)?.grant.as_ref()?;
        self.live_grant(session, now).map(|_| self.grant_uri(session))
    }

    /// A new connection. Drain `poll_output` after (nothing is written yet, but keep the rule).
    pub fn handle_connected(&mut self, connection: ConnectionId) {
        self.stats.connections += 1;
        self.connections.insert(
            connection,
            Connection { decoder: Decoder::new(DecoderLimits::default()), frame: None, grant: None, closing: false },
        );
    }

    /// Bytes read from `connection`, in any pieces. Drain `poll_output` after.
    pub fn handle_received(&mut self, now: Instant, connection: ConnectionId, bytes: Bytes) {
        let Some(state) = self.connections.get_mut(&connection) else { return };
        if state.closing {
            return;
        }
        state.decoder.feed(bytes);
        let items: Vec<_> = std::iter::from_fn(|| state.decoder.poll()).collect();
        for item in items {
            if self.connections.get(&connection).is_none_or(|state| state.closing) {
                return;
            }
            match item {
                Ok(decoded) => self.on_decoded(now, connection, decoded),
                Err(error) => self.on_parse_error(connection, &error),
            }
        }
    }

    /// The connection is gone (closed by the peer, or after a [`RelayOutput::Close`]);
    /// its grant dies with it.
    pub fn handle_closed(&mut self, connection: ConnectionId) {
        if let Some(state) = self.connections.remove(&connection) {
            if let Some(session) = state.grant {
                self.grants.remove(&session);
            }
        }
    }

    /// Makes the relay hang up on a client (a relay restart, an idle timeout): a
    /// [`RelayOutput::Close`] follows. Drain `poll_output` after.
    pub fn drop_connection(&mut self, connection: ConnectionId) {
        self.close(connection);
    }

    /// The next thing to do; call after every `handle_*` until `None`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<RelayOutput> {
        self.output.pop_front()
    }

    fn on_decoded(&mut self, now: Instant, connection: ConnectionId, decoded: Decoded) {
        let max_frame = self.script.max_frame;
        let Some(state) = self.connections.get_mut(&connection) else { return };
        match decoded {
            Decoded::Head(head) => {
                let size = head.encode_start().len();
                state.frame = Some(Frame { head, body: Vec::new(), size, oversize: false });
            }
            Decoded::Data(data) => {
                let Some(frame) = &mut state.frame else { return };
                frame.size += data.len();
                if max_frame.is_some_and(|max| frame.size > max) {
                    // Nothing of it will be forwarded: stop keeping it.
                    frame.oversize = true;
                    frame.body.clear();
                } else {
                    frame.body.push(data);
                }
            }
            Decoded::End(flag) => {
                let Some(mut frame) = state.frame.take() else { return };
                frame.head.contflag = flag;
                frame.size += frame.head.encode_end(flag).len();
                frame.oversize |= max_frame.is_some_and(|max| frame.size > max);
                self.on_frame(now, connection, &frame);
            }
        }
    }

    fn on_parse_error(&mut self, connection: ConnectionId, error: &ChunkParseError) {
        self.stats.bad_chunks += 1;
        if let Some(state) = self.connections.get_mut(&connection) {
            state.frame = None;
        }
        if error.closes_connection() {
            self.close(connection);
            return;
        }
        if let (Some(code), Some(head)) = (error.status(), error.head.as_deref()) {
            let from = first_to_path_uri(head).unwrap_or_else(|| self.script.uri.to_string());
            let response = response_to(head, code, &from, false);
            self.write_chunk(connection, response);
        }
    }

    fn on_frame(&mut self, now: Instant, connection: ConnectionId, frame: &Frame) {
        let head = &frame.head;
        let to_path: Vec<String> = match head.headers.get(&HeaderName::ToPath) {
            Some(value) => value.as_str().split_ascii_whitespace().map(str::to_owned).collect(),
            None => Vec::new(),
        };
        let Some(first) = to_path.first().and_then(|text| text.parse::<Uri>().ok()) else {
            self.refuse(connection, head, (400, "Bad Request"));
            return;
        };
        if !self.is_ours(&first) {
            if head.is_request() {
                // RFC 4976 §6.2: not addressed to this relay.
                self.close(connection);
            } else {
                self.stats.dropped_responses += 1;
            }
            return;
        }
        if !head.is_request() {
            self.on_response(now, connection, frame, &to_path);
            return;
        }
        if frame.oversize {
            self.stats.too_large += 1;
            self.refuse(connection, head, (501, "Not Implemented"));
            return;
        }
        if head.method() == Some(&Method::Auth) && to_path.len() == 1 {
            self.on_auth(now, connection, head, &to_path[0]);
            return;
        }
        match self.route(now, connection, head, &to_path) {
            Ok(route) => {
                if head.method() == Some(&Method::Send) {
                    let answer_anyway = self.script.answer_every_send;
                    if let Some(ok) = response_for(head, 200, "OK", &to_path[0], answer_anyway) {
                        self.stats.hop_responses += 1;
                        self.write_chunk(connection, Some(ok));
                    }
                }
                self.stats.forwarded_requests += 1;
                self.forward(frame, route);
            }
            Err(refusal) => {
                if refusal.0 == 481 {
                    self.stats.no_route += 1;
                }
                self.refuse(connection, head, refusal);
            }
        }
    }

    fn on_response(&mut self, now: Instant, connection: ConnectionId, frame: &Frame, to_path: &[String]) {
        // One URI: the response ends here (the far end's 200 to a SEND the relay already
        // answered hop by hop).
        if to_path.len() < 2 {
            self.stats.dropped_responses += 1;
            return;
        }
        match self.route(now, connection, &frame.head, to_path) {
            Ok(route) => {
                self.stats.forwarded_responses += 1;
                self.forward(frame, route);
            }
            Err(_) => self.stats.dropped_responses += 1,
        }
    }

    fn on_auth(&mut self, now: Instant, connection: ConnectionId, head: &Chunk, relay_uri: &str) {
        self.stats.auth_requests += 1;
        if self.script.ignore_auth {
            self.stats.auth_ignored += 1;
            return;
        }
        if let Some(code) = self.script.refuse_auth_with {
            if code == 403 {
                self.stats.forbidden += 1;
            }
            self.respond(connection, head, code, reason(code), relay_uri, |_| {});
            return;
        }
        let requested = match head.headers.typed::<Expires>() {
            None => None,
            Some(Ok(Expires(seconds))) => Some(seconds),
            Some(Err(_)) => return self.respond(connection, head, 400, "Bad Request", relay_uri, |_| {}),
        };
        if let Some(auth) = self.script.auth.clone() {
            // No credentials, or none that parse: challenge.
            let Some(Ok(credentials)) = head.headers.typed::<Authorization>() else {
                return self.challenge(now, connection, head, relay_uri, &auth, false);
            };
            let digest_uri = credentials.params.get("uri");
            if self.script.reject_digest_uri && digest_uri.is_some() {
                self.stats.auth_ignored += 1;
                return;
            }
            if self.script.require_digest_uri && digest_uri.is_none() {
                return self.challenge(now, connection, head, relay_uri, &auth, false);
            }
            let target = head.headers.get(&HeaderName::ToPath).and_then(|path| path.as_str().split_whitespace().last());
            match self.verify(now, &auth, &credentials, target.unwrap_or(relay_uri)) {
                DigestVerdict::Valid => {}
                DigestVerdict::Stale => return self.challenge(now, connection, head, relay_uri, &auth, true),
                DigestVerdict::Wrong => return self.challenge(now, connection, head, relay_uri, &auth, false),
                DigestVerdict::UnknownUser => {
                    self.stats.forbidden += 1;
                    return self.respond(connection, head, 403, "Forbidden", relay_uri, |_| {});
                }
            }
            if self.script.reject_expires_with_authorization && requested.is_some() {
                let min = self.script.min_expires;
                self.stats.interval_refused += 1;
                return self.respond(connection, head, 423, reason(423), relay_uri, |r| {
                    r.add_header(&MinExpires(min));
                });
            }
        }
        if let Some(seconds) = requested {
            let (min, max) = (self.script.min_expires, self.script.max_expires);
            if seconds < min || seconds > max {
                self.stats.interval_refused += 1;
                return self.respond(connection, head, 423, reason(423), relay_uri, |r| {
                    if seconds < min {
                        r.add_header(&MinExpires(min));
                    } else {
                        r.add_header(&MaxExpires(max));
                    }
                });
            }
        }
        let seconds = requested.unwrap_or(self.script.default_expires);
        let session = self.grant_session(now, connection, Duration::from_secs(seconds));
        let use_path = self.grant_uri(&session);
        self.respond(connection, head, 200, "OK", relay_uri, |r| {
            r.add_header(&UsePath(vec![use_path]));
            r.add_header(&Expires(seconds));
        });
        if self.script.drop_after_auth {
            self.close(connection);
        }
    }

    /// Creates or renews the connection's grant; returns its session id.
    fn grant_session(&mut self, now: Instant, connection: ConnectionId, lifetime: Duration) -> String {
        let current = self.connections.get(&connection).and_then(|state| state.grant.clone());
        let session = match current {
            Some(session) if self.live_grant(&session, now).is_some() => {
                self.stats.refreshed += 1;
                session
            }
            expired => {
                if let Some(old) = expired {
                    self.grants.remove(&old);
                }
                self.stats.authorized += 1;
                self.ids.session_id()
            }
        };
        self.grants.insert(session.clone(), Grant { connection, expires_at: now + lifetime });
        if let Some(state) = self.connections.get_mut(&connection) {
            state.grant = Some(session.clone());
        }
        session
    }

    fn challenge(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        head: &Chunk,
        relay_uri: &str,
        auth: &DigestAuth,
        stale: bool,
    ) {
        let lifetime = self.script.nonce_lifetime;
        self.nonces.retain(|_, issued| now.saturating_duration_since(*issued) < lifetime);
        let nonce = format!("{:016x}{:016x}", self.ids.next_u64(), self.ids.next_u64());
        self.nonces.insert(nonce.clone(), now);
        let mut params = AuthParams::default();
        params.push("realm", auth.realm.as_str(), true);
        params.push("nonce", nonce, true);
        params.push("qop", "auth", true);
        if stale {
            params.push("stale", "true", false);
            self.stats.stale_challenges += 1;
        }
        self.stats.challenges += 1;
        let challenge = WwwAuthenticate { scheme: "Digest".into(), params };
        self.respond(connection, head, 401, "Unauthorized", relay_uri, |r| r.add_header(&challenge));
    }

    /// Checks Digest credentials (RFC 2617 with `qop=auth`; A2 is `AUTH:` + `target`, the
    /// rightmost To-Path URI as written, or the `uri=` value when the client gave one).
    fn verify(&self, now: Instant, auth: &DigestAuth, credentials: &Authorization, target: &str) -> DigestVerdict {
        let params = &credentials.params;
        let field = |name| params.get(name).unwrap_or_default();
        if !credentials.scheme.eq_ignore_ascii_case("Digest")
            || field("realm") != auth.realm
            || !field("qop").eq_ignore_ascii_case("auth")
            || field("nc").is_empty()
            || field("cnonce").is_empty()
        {
            return DigestVerdict::Wrong;
        }
        let user = field("username");
        let Some(password) = auth.password(user) else { return DigestVerdict::UnknownUser };
        let nonce = field("nonce");
        let matches = |uri: &str| {
            digest_response(user, &auth.realm, password, nonce, field("nc"), field("cnonce"), uri)
                .eq_ignore_ascii_case(field("response"))
        };
        if !(matches(target) || params.get("uri").is_some_and(matches)) {
            return DigestVerdict::Wrong;
        }
        let fresh = self
            .nonces
            .get(nonce)
            .is_some_and(|issued| now.saturating_duration_since(*issued) < self.script.nonce_lifetime);
        if fresh { DigestVerdict::Valid } else { DigestVerdict::Stale }
    }

    /// RFC 4976 §6.4: pops this relay's URIs from the front of To-Path and finds the
    /// connection the request goes to.
    fn route(&self, now: Instant, sender: ConnectionId, head: &Chunk, to_path: &[String]) -> Result<Route, Refusal> {
        const NO_SESSION: Refusal = (481, "No Such Session");
        let first: Uri = to_path[0].parse().map_err(|_| (400, "Bad Request"))?;
        let first_grant = first.session_id.as_deref().and_then(|session| self.live_grant(session, now));
        let first_grant = first_grant.ok_or(NO_SESSION)?;
        let (destination, rest) = match to_path.get(1).map(|text| text.parse::<Uri>()) {
            None => return Err(NO_SESSION),
            Some(Err(_)) => return Err((400, "Bad Request")),
            Some(Ok(second)) if self.is_ours(&second) => {
                let grant = second.session_id.as_deref().and_then(|session| self.live_grant(session, now));
                (grant.ok_or(NO_SESSION)?.connection, &to_path[2..])
            }
            Some(Ok(_)) => (first_grant.connection, &to_path[1..]),
        };
        if rest.is_empty() {
            return Err(NO_SESSION);
        }
        // §6.4: the grant must lead to or come from its owner.
        if first_grant.connection != sender && first_grant.connection != destination {
            return Err((403, "Forbidden"));
        }
        let sender_session = self
            .connections
            .get(&sender)
            .and_then(|state| state.grant.as_deref())
            .filter(|session| self.live_grant(session, now).is_some())
            .ok_or((403, "Forbidden"))?;
        let from_path = head.headers.get(&HeaderName::FromPath).map(HeaderValue::as_str).unwrap_or_default();
        Ok(Route {
            destination,
            to_path: rest.join(" "),
            from_path: format!("{} {from_path}", self.grant_uri(sender_session)),
        })
    }

    fn forward(&mut self, frame: &Frame, route: Route) {
        let mut head = frame.head.clone();
        head.headers.set(HeaderName::ToPath, route.to_path);
        head.headers.set(HeaderName::FromPath, route.from_path);
        let body_len: usize = frame.body.iter().map(Bytes::len).sum();
        self.stats.forwarded_body_bytes += body_len as u64;
        self.write(route.destination, head.encode_start());
        for piece in &frame.body {
            self.write(route.destination, piece.clone());
        }
        self.write(route.destination, head.encode_end(head.contflag));
    }

    /// Answers a request the relay refuses, when a response is allowed.
    fn refuse(&mut self, connection: ConnectionId, head: &Chunk, (code, comment): Refusal) {
        let from = first_to_path_uri(head).unwrap_or_else(|| self.script.uri.to_string());
        let response = response_for(head, code, comment, &from, false);
        self.write_chunk(connection, response);
    }

    fn respond(
        &mut self,
        connection: ConnectionId,
        head: &Chunk,
        code: u16,
        comment: &str,
        relay_uri: &str,
        extra: impl FnOnce(&mut Chunk),
    ) {
        let mut response = response_for(head, code, comment, relay_uri, false);
        if let Some(response) = &mut response {
            extra(response);
        }
        self.write_chunk(connection, response);
    }

    fn write_chunk(&mut self, connection: ConnectionId, chunk: Option<Chunk>) {
        if let Some(chunk) = chunk {
            self.write(connection, chunk.encode());
        }
    }

    fn write(&mut self, connection: ConnectionId, bytes: Bytes) {
        if self.connections.get(&connection).is_some_and(|state| !state.closing) && !bytes.is_empty() {
            self.output.push_back(RelayOutput::Write { connection, bytes });
        }
    }

    fn close(&mut self, connection: ConnectionId) {
        let Some(state) = self.connections.get_mut(&connection) else { return };
        if state.closing {
            return;
        }
        state.closing = true;
        if let Some(session) = state.grant.take() {
            self.grants.remove(&session);
        }
        self.stats.closed_by_relay += 1;
        self.output.push_back(RelayOutput::Close { connection });
    }

    /// Whether `uri` names this relay (scheme, host, port; a missing port counts as ours).
    fn is_ours(&self, uri: &Uri) -> bool {
        let mut probe = uri.clone();
        probe.session_id = None;
        if probe.port.is_none() {
            probe.port = self.script.uri.port;
        }
        probe == self.script.uri
    }

    fn live_grant(&self, session: &str, now: Instant) -> Option<Grant> {
        self.grants.get(session).copied().filter(|grant| now < grant.expires_at)
    }

    fn grant_uri(&self, session: &str) -> Uri {
        self.script.uri.clone().with_session_id(session)
    }
}

/// The first To-Path URI, as written: the relay's name for itself in its answers.
fn first_to_path_uri(chunk: &Chunk) -> Option<String> {
    chunk.headers.get(&HeaderName::ToPath)?.as_str().split_whitespace().next().map(str::to_owned)
}

/// The response to `request` from `from_path`, or `None` where RFC 4975 §7.2 allows
/// none (a REPORT; `Failure-Report: no`; a 200 with `partial`), unless
/// `ignore_failure_report` (Kamailio's 200 to every SEND). To-Path is the previous
/// hop for a SEND, the whole From-Path otherwise; nothing else is copied.
fn response_for(
    request: &Chunk,
    code: u16,
    comment: &str,
    from_path: &str,
    ignore_failure_report: bool,
) -> Option<Chunk> {
    let method = request.method()?;
    if *method == Method::Report {
        return None;
    }
    if !ignore_failure_report {
        match request.failure_report() {
            FailureReport::No => return None,
            FailureReport::Partial if code == 200 => return None,
            FailureReport::Partial | FailureReport::Yes => {}
        }
    }
    let from = request.headers.get(&HeaderName::FromPath)?.as_str();
    let to = if *method == Method::Send { from.split_whitespace().next()? } else { from };
    let mut response = Chunk::response(request.transaction_id.clone(), code, Some(comment.to_owned()));
    response.headers.set(HeaderName::ToPath, to);
    response.headers.set(HeaderName::FromPath, from_path);
    Some(response)
}

/// [`response_for`] with the usual rules.
fn response_to(request: &Chunk, code: u16, from_path: &str, ignore_failure_report: bool) -> Option<Chunk> {
    response_for(request, code, reason(code), from_path, ignore_failure_report)
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        413 => "Request Entity Too Large",
        423 => "Interval Out-of-Bounds",
        481 => "No Such Session",
        501 => "Not Implemented",
        _ => "Error",
    }
}

/// Lower-case hex MD5 of `text`, as RFC 2617 writes digests.
pub fn md5_hex(text: &str) -> String {
    format!("{:x}", Md5::digest(text.as_bytes()))
}

/// The RFC 2617 `response` value for an AUTH (`qop=auth`), as a client computes it:
/// `MD5(MD5(user:realm:password):nonce:nc:cnonce:auth:MD5(AUTH:digest_uri))`.
pub fn digest_response(
    user: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    digest_uri: &str,
) -> String {
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("AUTH:{digest_uri}"));
    md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
}
