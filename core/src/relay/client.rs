//! [`RelayClient`]: the AUTH transactions with every relay of a path, as a pure state machine.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::chunk::{Chunk, Method};
use crate::header::{
    AuthenticationInfo, Expires, FromPath, Header, MaxExpires, MinExpires, ToPath, UsePath, WwwAuthenticate,
};
use crate::ids::IdGenerator;
use crate::transport::MsrpError;
use crate::uri::Uri;

use super::digest::{self, DigestChallenge};
use super::{DigestUri, RelayClientConfig, RelayError, RelayEvent, RelayHop};

/// How many `stale=true` challenges in a row one AUTH flow answers before giving up: a
/// relay whose nonces go stale faster than it can be answered will not let us in.
const MAX_STALE_ROUNDS: u32 = 3;

/// A refresh goes at least this long before the grant runs out.
const REFRESH_MARGIN: Duration = Duration::from_secs(5);

/// How many answered or abandoned AUTH transaction ids are remembered, so that a late
/// answer is still recognised as ours (and not handed to the application).
const RECENT_TRANSACTIONS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first AUTH flow runs, hop after hop.
    Authenticating,
    /// Every hop granted a path; refreshes keep it.
    Authorized,
    /// The first AUTH flow failed; nothing more happens.
    Failed,
    /// The connection closed; nothing more happens.
    Closed,
}

/// What one hop gave and what its next AUTH asks.
#[derive(Debug)]
struct Hop {
    relay: RelayHop,
    /// The Expires to ask for: the configured one, changed or dropped after a 423.
    expires: Option<u64>,
    /// Whether the Authorization that worked carried `uri=` (the next AUTH uses that form).
    with_uri: Option<bool>,
    /// The whole path after this hop's grant, nearest relay first.
    path: Vec<Uri>,
    /// The grant of its last 200.
    grant: Option<Duration>,
    refresh_at: Option<Instant>,
    /// The refresh time passed while another AUTH flow ran.
    refresh_due: bool,
    /// The relay's `nextnonce`, answered at once by the next AUTH.
    next_nonce: Option<DigestChallenge>,
    /// The nonce answered last and how often (for `nc`).
    nonce_count: Option<(String, u32)>,
}

/// An Authorization to put in an AUTH.
#[derive(Debug, Clone)]
struct Answer {
    challenge: DigestChallenge,
    with_uri: bool,
    /// Whether it answers a challenge of this flow. A nonce kept from before (`nextnonce`,
    /// or the nonce reused after a 423) may simply be refused with a new challenge, which
    /// says nothing about the credentials.
    fresh: bool,
}

/// Why an AUTH flow runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The first login, hop after hop.
    Login,
    /// A grant about to run out.
    Refresh,
}

/// What an answer leads to.
#[derive(Debug)]
enum Step {
    /// Another AUTH of the same flow is queued.
    Again,
    /// The hop granted a path: the flow is done.
    Granted,
    /// The flow failed.
    Fail(RelayError),
}

/// One AUTH flow with one hop: the first, or a refresh.
#[derive(Debug)]
struct Attempt {
    hop: usize,
    purpose: Purpose,
    /// An AUTH waits for `poll_request`.
    queued: bool,
    /// The AUTH handed out: its transaction id and answer deadline.
    outstanding: Option<(String, Instant)>,
    /// The Authorization of the next AUTH.
    answer: Option<Answer>,
    /// The Authorization of the AUTH handed out.
    sent: Option<Answer>,
    /// The other `uri=` form was tried after a 401 (`DigestUri::Auto`).
    other_form_tried: bool,
    stale_rounds: u32,
    /// A 423 was followed once already.
    interval_retried: bool,
    /// The Expires of the next AUTH.
    expires: Option<u64>,
}

/// The chunk-level relay client for one connection to the nearest relay (see the
/// [module docs](super)): AUTH to every hop in order, Digest answers, a 423 followed once,
/// refreshes before each grant runs out.
///
/// It never does I/O and never reads a clock. Its driver (a [`RelayLogin`](super::RelayLogin)
/// before the session exists, the [`Session`](crate::session::Session) afterwards):
/// 1. writes every chunk [`RelayClient::poll_request`] gives, in order;
/// 2. hands it every response read with [`RelayClient::handle_response`] (it says whether
///    the response was to one of its AUTHs);
/// 3. calls [`RelayClient::handle_timeout`] at [`RelayClient::poll_timeout`], and
///    [`RelayClient::handle_closed`] when the connection goes;
/// 4. after each of these, takes [`RelayClient::poll_request`] and
///    [`RelayClient::poll_event`] until `None`.
///
/// Choices where the RFC leaves room (all documented on the items):
/// - One AUTH flow at a time: the first login goes hop by hop, and a refresh due while
///   another flow runs waits for it.
/// - A refresh of a grant of `E` goes at `min(3/4 E, E − 5 s)` after it, but not before
///   `E / 2`; an `Expires: 0` grant is not refreshed.
/// - After a 423: the Expires is moved into `Min-Expires`/`Max-Expires` when that changes
///   it; otherwise (no bound given, or the bounds allow what was sent: Kamailio answers
///   423 to any Expires with an Authorization) the AUTH is sent again without Expires, and
///   later AUTHs to that hop leave it out too. A second 423 fails.
#[derive(Debug)]
pub struct RelayClient {
    local_uri: Uri,
    auth_timeout: Duration,
    ids: IdGenerator,
    hops: Vec<Hop>,
    state: State,
    attempt: Option<Attempt>,
    events: VecDeque<RelayEvent>,
    /// Transaction ids of our AUTHs no longer awaited, newest last.
    recent: VecDeque<String>,
    now: Instant,
}

impl RelayClient {
    /// A client that authenticates with `config.hops` in order; its first AUTH waits for
    /// [`RelayClient::poll_request`] (no timer runs before that). `ids` makes transaction
    /// ids and client nonces. Without hops it is authorized at once (an
    /// [`RelayEvent::Authorized`] with an empty path waits). An AUTH timeout of zero is
    /// raised to 1 ms.
    pub fn new(config: RelayClientConfig, ids: IdGenerator, now: Instant) -> Self {
        let hops: Vec<Hop> = config
            .hops
            .into_iter()
            .map(|relay| Hop {
                expires: relay.expires,
                relay,
                with_uri: None,
                path: Vec::new(),
                grant: None,
                refresh_at: None,
                refresh_due: false,
                next_nonce: None,
                nonce_count: None,
            })
            .collect();
        let mut client = Self {
            local_uri: config.local_uri,
            // A zero timeout would be due the instant the AUTH is handed out.
            auth_timeout: config.auth_timeout.max(Duration::from_millis(1)),
            ids,
            state: State::Authenticating,
            attempt: None,
            events: VecDeque::new(),
            recent: VecDeque::new(),
            now,
            hops,
        };
        if client.hops.is_empty() {
            client.state = State::Authorized;
            client.events.push_back(RelayEvent::Authorized { use_path: Vec::new(), expires: None });
        } else {
            client.start(0, Purpose::Login);
        }
        client
    }

    /// The next AUTH to write, in order, or `None`. The AUTH's answer timer
    /// ([`RelayClientConfig::auth_timeout`]) starts now: hand it to the connection at once.
    pub fn poll_request(&mut self, now: Instant) -> Option<Chunk> {
        self.advance(now);
        if !self.is_live() {
            return None;
        }
        let attempt = self.attempt.as_mut().filter(|attempt| attempt.queued)?;
        attempt.queued = false;
        let index = attempt.hop;
        let mut to_path = if index == 0 { Vec::new() } else { self.hops[index - 1].path.clone() };
        let hop = &mut self.hops[index];
        let digest_uri = hop.relay.uri.to_string();
        to_path.push(hop.relay.uri.clone());
        let transaction_id = self.ids.transaction_id();
        let mut chunk = Chunk::request(transaction_id.clone(), Method::Auth);
        // To-Path first, From-Path second, then Authorization, then Expires: strict relays
        // (Kamailio) close the connection on any other order.
        chunk.add_header(&ToPath(to_path));
        chunk.add_header(&FromPath(vec![self.local_uri.clone()]));
        if let (Some(answer), Some(credentials)) = (&attempt.answer, &hop.relay.credentials) {
            let nc = match &mut hop.nonce_count {
                Some((nonce, count)) if *nonce == answer.challenge.nonce => {
                    *count += 1;
                    *count
                }
                slot => {
                    *slot = Some((answer.challenge.nonce.clone(), 1));
                    1
                }
            };
            let cnonce = format!("{:016x}", self.ids.next_u64());
            let header =
                digest::authorization(&answer.challenge, credentials, &digest_uri, answer.with_uri, nc, &cnonce);
            chunk.add_header(&header);
        }
        if let Some(expires) = attempt.expires {
            chunk.add_header(&Expires(expires));
        }
        attempt.sent = attempt.answer.take();
        attempt.outstanding = Some((transaction_id, self.now + self.auth_timeout));
        Some(chunk)
    }

    /// Handles a response read from the connection at `now`; `true` when it answers one of
    /// this client's AUTHs (also a late answer to one given up: it is dropped), and then
    /// it is this client's, not the application's. Take requests and events afterwards.
    pub fn handle_response(&mut self, now: Instant, response: &Chunk) -> bool {
        self.advance(now);
        let Some(code) = response.code() else { return false };
        let ours = self
            .attempt
            .as_ref()
            .and_then(|attempt| attempt.outstanding.as_ref())
            .is_some_and(|(transaction_id, _)| *transaction_id == response.transaction_id);
        if !ours {
            return self.recent.contains(&response.transaction_id);
        }
        let Some(mut attempt) = self.attempt.take() else { return false };
        if let Some((transaction_id, _)) = attempt.outstanding.take() {
            self.remember(transaction_id);
        }
        let relay = self.hops[attempt.hop].relay.uri.clone();
        let step = match code {
            200 => self.on_granted(&attempt, response),
            401 => self.on_challenge(&mut attempt, response),
            403 => Step::Fail(RelayError::WrongCredentials { relay: Box::new(relay) }),
            423 => Self::on_interval(&mut attempt, response, &relay),
            _ => {
                let status = MsrpError::new(code, response.comment().unwrap_or_default());
                Step::Fail(RelayError::Refused { relay: Box::new(relay), status })
            }
        };
        match step {
            Step::Granted => self.finish(&attempt),
            Step::Again => self.attempt = Some(attempt),
            Step::Fail(error) => self.fail(&attempt, error),
        }
        true
    }

    /// The connection closed at `now`: a [`RelayEvent::Failed`] with [`RelayError::Closed`]
    /// follows (unless the client had failed already), and the client does nothing more.
    pub fn handle_closed(&mut self, now: Instant) {
        self.advance(now);
        if self.is_live() {
            self.state = State::Closed;
            self.attempt = None;
            self.events.push_back(RelayEvent::Failed(RelayError::Closed));
        }
    }

    /// The relay's bytes lost the MSRP framing (`reason`): the connection is unusable, so
    /// the client fails with [`RelayError::Malformed`] and does nothing more.
    pub(crate) fn handle_unintelligible(&mut self, now: Instant, reason: String) {
        self.advance(now);
        if self.is_live() {
            let hop = self.attempt.as_ref().map_or(0, |attempt| attempt.hop);
            let relay = self.hops.get(hop).map_or_else(|| self.local_uri.clone(), |hop| hop.relay.uri.clone());
            self.state = State::Failed;
            self.attempt = None;
            self.events.push_back(RelayEvent::Failed(RelayError::Malformed { relay: Box::new(relay), reason }));
        }
    }

    /// Runs what is due at `now`: an AUTH unanswered for the AUTH timeout fails
    /// ([`RelayError::TimedOut`]), refresh times start a new AUTH flow. A call with nothing
    /// due does nothing. Afterwards [`RelayClient::poll_timeout`] is later than `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if !self.is_live() {
            return;
        }
        let expired = self
            .attempt
            .as_ref()
            .and_then(|attempt| attempt.outstanding.as_ref())
            .is_some_and(|(_, deadline)| *deadline <= self.now);
        if expired {
            if let Some(mut attempt) = self.attempt.take() {
                if let Some((transaction_id, _)) = attempt.outstanding.take() {
                    self.remember(transaction_id);
                }
                let relay = self.hops[attempt.hop].relay.uri.clone();
                self.fail(&attempt, RelayError::TimedOut { relay: Box::new(relay), after: self.auth_timeout });
            }
        }
        for hop in &mut self.hops {
            if hop.refresh_at.is_some_and(|at| at <= self.now) {
                hop.refresh_at = None;
                hop.refresh_due = true;
            }
        }
        self.start_due_refresh();
    }

    /// The earliest instant [`RelayClient::handle_timeout`] has work: an AUTH's answer
    /// deadline or a refresh time. An AUTH not yet taken with
    /// [`RelayClient::poll_request`] has no deadline. `None` once failed or closed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.is_live() {
            return None;
        }
        let deadline = self.attempt.as_ref().and_then(|attempt| attempt.outstanding.as_ref()).map(|(_, at)| *at);
        self.hops.iter().filter_map(|hop| hop.refresh_at).chain(deadline).min()
    }

    /// The next event, or `None`.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// Whether every hop granted a path (it stays so after a failed refresh: the grant
    /// runs until it expires; it ends when the connection closes).
    pub fn is_authorized(&self) -> bool {
        self.state == State::Authorized
    }

    /// The granted path, nearest relay first; empty before authorized.
    pub fn use_path(&self) -> &[Uri] {
        match (self.state, self.hops.last()) {
            (State::Authorized, Some(hop)) => &hop.path,
            _ => &[],
        }
    }

    /// The path to put in SDP (RFC 4976 §5.1): the Use-Path reversed, then our own URI;
    /// `None` before authorized.
    pub fn local_path(&self) -> Option<Vec<Uri>> {
        if !self.is_authorized() {
            return None;
        }
        let mut path: Vec<Uri> = self.use_path().iter().rev().cloned().collect();
        path.push(self.local_uri.clone());
        Some(path)
    }

    /// The To-Path of every request to the peer (RFC 4976 §5.1): the Use-Path, then the
    /// peer's SDP path.
    pub fn to_path(&self, remote_path: &[Uri]) -> Vec<Uri> {
        self.use_path().iter().chain(remote_path).cloned().collect()
    }

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn is_live(&self) -> bool {
        matches!(self.state, State::Authenticating | State::Authorized)
    }

    fn remember(&mut self, transaction_id: String) {
        if self.recent.len() >= RECENT_TRANSACTIONS {
            self.recent.pop_front();
        }
        self.recent.push_back(transaction_id);
    }

    /// Starts an AUTH flow with hop `index`. A refresh answers the relay's `nextnonce` at
    /// once, in the form that worked.
    fn start(&mut self, index: usize, purpose: Purpose) {
        let hop = &mut self.hops[index];
        let answer = if purpose == Purpose::Refresh && hop.relay.credentials.is_some() {
            let with_uri = hop.with_uri.unwrap_or_else(|| first_form(hop.relay.digest_uri));
            hop.next_nonce.take().map(|challenge| Answer { challenge, with_uri, fresh: false })
        } else {
            None
        };
        self.attempt = Some(Attempt {
            hop: index,
            purpose,
            queued: true,
            outstanding: None,
            answer,
            sent: None,
            other_form_tried: false,
            stale_rounds: 0,
            interval_retried: false,
            expires: hop.expires,
        });
    }

    fn start_due_refresh(&mut self) {
        if self.attempt.is_some() || self.state != State::Authorized {
            return;
        }
        if let Some(index) = self.hops.iter().position(|hop| hop.refresh_due) {
            self.hops[index].refresh_due = false;
            self.start(index, Purpose::Refresh);
        }
    }

    /// A 401: answer the challenge, or fail.
    fn on_challenge(&mut self, attempt: &mut Attempt, response: &Chunk) -> Step {
        let hop = &self.hops[attempt.hop];
        let relay = hop.relay.uri.clone();
        if hop.relay.credentials.is_none() {
            return Step::Fail(RelayError::CredentialsNeeded { relay: Box::new(relay) });
        }
        let challenge = match read_challenge(response) {
            Ok(challenge) => challenge,
            Err(reason) => return Step::Fail(RelayError::Malformed { relay: Box::new(relay), reason }),
        };
        let with_uri = match &attempt.sent {
            // The first challenge of the flow: the form that worked last (a refresh without
            // a `nextnonce`, as Kamailio's), else the policy's first form.
            None => hop.with_uri.unwrap_or_else(|| first_form(hop.relay.digest_uri)),
            // A challenge to a nonce kept from before.
            Some(sent) if !sent.fresh => sent.with_uri,
            Some(sent) if challenge.stale => {
                // RFC 2617 §3.2.1: the credentials were right, only the nonce expired.
                attempt.stale_rounds += 1;
                if attempt.stale_rounds > MAX_STALE_ROUNDS {
                    let status = MsrpError::new(401, "the nonce went stale too often");
                    return Step::Fail(RelayError::Refused { relay: Box::new(relay), status });
                }
                sent.with_uri
            }
            Some(sent) => {
                // A complete Authorization was refused: the other `uri=` form once, when
                // the relay's taste is unknown (issue 18: msrprelay and Kamailio disagree).
                if hop.relay.digest_uri != DigestUri::Auto || attempt.other_form_tried {
                    return Step::Fail(RelayError::WrongCredentials { relay: Box::new(relay) });
                }
                attempt.other_form_tried = true;
                !sent.with_uri
            }
        };
        attempt.answer = Some(Answer { challenge, with_uri, fresh: true });
        attempt.queued = true;
        Step::Again
    }

    /// A 423: once, with the Expires moved into the relay's bounds, or without Expires.
    fn on_interval(attempt: &mut Attempt, response: &Chunk, relay: &Uri) -> Step {
        let refused = || {
            let status = MsrpError::new(423, response.comment().unwrap_or_default());
            Step::Fail(RelayError::Refused { relay: Box::new(relay.clone()), status })
        };
        if attempt.interval_retried {
            return refused();
        }
        let min = response.headers.typed::<MinExpires>().and_then(Result::ok).map(|MinExpires(value)| value);
        let max = response.headers.typed::<MaxExpires>().and_then(Result::ok).map(|MaxExpires(value)| value);
        attempt.expires = match attempt.expires {
            Some(sent) => {
                let bounded = sent.max(min.unwrap_or(0)).min(max.unwrap_or(u64::MAX));
                // Bounds that allow what was sent do not explain the 423 (Kamailio's):
                // leave Expires out, and take the relay's grant.
                (bounded != sent).then_some(bounded)
            }
            None => match min.or(max) {
                Some(bound) => Some(bound),
                None => return refused(),
            },
        };
        attempt.interval_retried = true;
        // The nonce was accepted: answer it again (nc goes up); a relay that wants a new
        // one challenges, which is then no verdict on the credentials.
        attempt.answer = attempt.sent.take().map(|answer| Answer { fresh: false, ..answer });
        attempt.queued = true;
        Step::Again
    }

    /// A 200: the hop's grant.
    fn on_granted(&mut self, attempt: &Attempt, response: &Chunk) -> Step {
        let index = attempt.hop;
        let relay = self.hops[index].relay.uri.clone();
        let malformed = |reason: String| RelayError::Malformed { relay: Box::new(relay.clone()), reason };
        let use_path = match response.headers.typed::<UsePath>() {
            None => return Step::Fail(malformed("the 200 has no Use-Path".to_owned())),
            Some(Err(error)) => return Step::Fail(malformed(error.to_string())),
            Some(Ok(UsePath(path))) => path,
        };
        // An Expires that does not parse is taken as none: the grant is the relay's affair.
        let grant =
            response.headers.typed::<Expires>().and_then(Result::ok).map(|Expires(secs)| Duration::from_secs(secs));
        let next_nonce = response
            .headers
            .typed::<AuthenticationInfo>()
            .and_then(Result::ok)
            .and_then(|AuthenticationInfo(info)| info.get("nextnonce").map(str::to_owned));
        let prefix: &[Uri] = if index == 0 { &[] } else { &self.hops[index - 1].path };
        // A later relay may give the whole path so far (RFC 4976 §5.1's example) or only
        // its own URIs.
        let path =
            if use_path.starts_with(prefix) { use_path } else { prefix.iter().cloned().chain(use_path).collect() };
        let before: Vec<String> = self.use_path().iter().map(Uri::to_string).collect();
        let hop = &mut self.hops[index];
        let old_path = std::mem::replace(&mut hop.path, path);
        hop.grant = grant;
        hop.expires = attempt.expires;
        if let Some(sent) = &attempt.sent {
            hop.with_uri = Some(sent.with_uri);
        }
        hop.next_nonce = match (next_nonce, &attempt.sent) {
            (Some(nonce), Some(sent)) => Some(DigestChallenge { nonce, stale: false, ..sent.challenge.clone() }),
            _ => None,
        };
        hop.refresh_at = grant.and_then(refresh_delay).map(|delay| self.now + delay);
        if attempt.purpose == Purpose::Refresh {
            let new_path = self.hops[index].path.clone();
            for later in &mut self.hops[index + 1..] {
                if later.path.starts_with(&old_path) {
                    later.path = new_path.iter().chain(&later.path[old_path.len()..]).cloned().collect();
                }
            }
            let use_path = self.use_path().to_vec();
            let path_changed = use_path.iter().map(Uri::to_string).ne(before);
            self.events.push_back(RelayEvent::Refreshed { use_path, expires: grant, path_changed });
        }
        Step::Granted
    }

    /// The flow of `attempt` succeeded: the next hop, or authorized, or the next refresh.
    fn finish(&mut self, attempt: &Attempt) {
        self.attempt = None;
        if attempt.purpose == Purpose::Login {
            if attempt.hop + 1 < self.hops.len() {
                self.start(attempt.hop + 1, Purpose::Login);
                return;
            }
            self.state = State::Authorized;
            let expires = self.hops.iter().filter_map(|hop| hop.grant).min();
            self.events.push_back(RelayEvent::Authorized { use_path: self.use_path().to_vec(), expires });
        }
        self.start_due_refresh();
    }

    /// The flow of `attempt` failed: the first login ends the client; a refresh only ends
    /// that hop's refreshes.
    fn fail(&mut self, attempt: &Attempt, error: RelayError) {
        self.attempt = None;
        self.events.push_back(RelayEvent::Failed(error));
        if attempt.purpose == Purpose::Refresh {
            self.start_due_refresh();
        } else {
            self.state = State::Failed;
        }
    }
}

/// The form of the first Authorization to a hop: with `uri=` only when forced.
fn first_form(policy: DigestUri) -> bool {
    policy == DigestUri::Always
}

/// When to refresh a grant: `min(3/4 E, E − 5 s)`, not before `E / 2`; never for a zero
/// grant (it is over already, and refreshing it at once would loop).
fn refresh_delay(grant: Duration) -> Option<Duration> {
    if grant.is_zero() {
        return None;
    }
    let three_quarters = grant * 3 / 4;
    Some(three_quarters.min(grant.saturating_sub(REFRESH_MARGIN)).max(grant / 2))
}

/// The first Digest challenge of a 401, or why there is none to answer.
fn read_challenge(response: &Chunk) -> Result<DigestChallenge, String> {
    let mut problem = "the 401 has no WWW-Authenticate header".to_owned();
    for field in response.headers.iter().filter(|field| field.name.matches(&WwwAuthenticate::NAME)) {
        match WwwAuthenticate::decode(field.value.as_str()) {
            Ok(header) => match DigestChallenge::from_header(&header) {
                Ok(challenge) => return Ok(challenge),
                Err(error) => problem = error.to_string(),
            },
            Err(error) => problem = error.to_string(),
        }
    }
    Err(problem)
}
