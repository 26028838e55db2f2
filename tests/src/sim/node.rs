//! The simulated nodes: endpoints that each drive one session engine (clients connect,
//! the server side is created when the listener routes a connection to it; through a
//! relay, both connect to it and log in first), and the listener that shares one port
//! between the server-side sessions through a [`SessionRouter`].

use std::time::Duration;

use bytes::Bytes;
use msrp_core::codec::{Decoded, Decoder, DecoderLimits};
use msrp_core::connect::{PendingConnection, SessionRouter};
use msrp_core::session::{ReassemblyLimits, Role, Session, SessionConfig, SessionError};
use msrp_core::{AcceptTypes, Method, Uri};

use super::relay::RelayPhase;
use super::rng::SimRng;
use super::script::Script;

/// One application endpoint and its session engine.
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)] // independent facts about one endpoint
pub struct Peer {
    /// `c<n>` for the client of pair `n`, `s<n>` for its server side.
    pub name: String,
    /// The pair it belongs to.
    pub pair: usize,
    /// Its connection: the pair's in a direct world, its own to the relay otherwise.
    pub link: usize,
    /// Its end of the connection ([`super::net::CLIENT`] or [`super::net::SERVER`]).
    pub end: usize,
    pub config: SessionConfig,
    pub local_uri: Uri,
    /// Seeds its id generator.
    pub id_seed: u64,
    /// `None` until created (a server side: when its connection is routed to it).
    pub session: Option<Session>,
    /// Whether its socket is open (the adapter drops it once the session closed).
    pub socket_open: bool,
    /// It said `Event::Closed`, `Output::Close`.
    pub saw_closed_event: bool,
    pub saw_close_output: bool,
    /// Its engine was told `Input::Connected`, `Input::Closed`.
    pub told_connected: bool,
    pub told_closed: bool,
    /// Its application called `shutdown` or `close`.
    pub app_ended: bool,
    /// Requests among its transmits.
    pub requests_transmitted: u64,
    /// The Message-ID of the SEND chunk whose head it transmitted and whose end-line not
    /// yet (a large chunk leaves in several transmits).
    pub open_send: Option<String>,
    /// Bytes its session transmitted, and those reported written to it.
    pub transmitted: u64,
    pub written: u64,
    pub script: Script,
    /// With reassembly: what its engine reads, decoded again to know which message bytes
    /// it holds (its REPORTs may cover them before they are delivered).
    pub wire: Option<WireReader>,
    /// Through a relay: its login, then what the login left for the session.
    pub relay: Option<RelayPhase>,
    /// Bytes of AUTHs its login wrote that were not acknowledged yet (acknowledgements
    /// count them first: they are not the session's).
    pub login_unacked: u64,
    /// Why its session closed, once it did.
    pub closed_with: Option<Option<SessionError>>,
}

/// Decodes the bytes a session reads to learn which message bytes reached it.
#[derive(Debug)]
pub struct WireReader {
    decoder: Decoder,
    /// The SEND being read: its Message-ID and the offset of its next body byte.
    current: Option<(String, u64)>,
}

impl WireReader {
    fn new() -> Self {
        Self { decoder: Decoder::new(DecoderLimits::default()), current: None }
    }

    /// Reads `data`; calls `seen(message_id, start, end)` for each body piece of a SEND.
    pub fn read(&mut self, data: Bytes, mut seen: impl FnMut(&str, u64, u64)) {
        self.decoder.feed(data);
        while let Some(item) = self.decoder.poll() {
            match item {
                Ok(Decoded::Head(head)) => {
                    self.current = (head.method() == Some(&Method::Send))
                        .then(|| {
                            head.message_id().map(|id| (id.to_owned(), head.byte_range().map_or(1, |r| r.start) - 1))
                        })
                        .flatten();
                }
                Ok(Decoded::Data(body)) => {
                    if let Some((message_id, offset)) = &mut self.current {
                        let end = *offset + body.len() as u64;
                        seen(message_id, *offset, end);
                        *offset = end;
                    }
                }
                Ok(Decoded::End(_)) | Err(_) => self.current = None,
            }
        }
    }
}

impl Peer {
    /// A peer of pair `pair` at `end`, configured at random.
    pub fn new(rng: &mut SimRng, pair: usize, end: usize, local_uri: Uri, remote_uri: Uri, script: Script) -> Self {
        let role = if end == super::net::CLIENT { Role::Active } else { Role::Passive };
        let name = format!("{}{pair}", if role == Role::Active { 'c' } else { 's' });
        let config = random_config(rng, role, local_uri.clone(), remote_uri);
        let wire = config.reassembly.map(|_| WireReader::new());
        Self {
            wire,
            name,
            pair,
            link: pair,
            end,
            config,
            local_uri,
            id_seed: rng.next_u64(),
            session: None,
            socket_open: false,
            saw_closed_event: false,
            saw_close_output: false,
            told_connected: false,
            told_closed: false,
            app_ended: false,
            requests_transmitted: 0,
            open_send: None,
            transmitted: 0,
            written: 0,
            script,
            relay: None,
            login_unacked: 0,
            closed_with: None,
        }
    }

    /// The same peer on the client end of its own connection `link` (to a relay), logging
    /// in with `login` first.
    #[must_use]
    pub fn relayed(self, link: usize, login: RelayPhase) -> Self {
        Self { link, end: super::net::CLIENT, relay: Some(login), ..self }
    }

    /// The open session, if it exists and has not closed, or a relay login that runs.
    pub fn live(&self) -> bool {
        self.session.as_ref().map_or(matches!(self.relay, Some(RelayPhase::Login(_))), |session| !session.is_closed())
    }

    /// Whether its engine reads now: the session's `wants_read`, or a login that runs
    /// (an adapter stops reading between the login and the session).
    pub fn wants_read(&self) -> bool {
        self.session.as_ref().map_or(matches!(self.relay, Some(RelayPhase::Login(_))), Session::wants_read)
    }

    /// When its relay login's timer is due, while there is no session yet.
    pub fn login_timeout(&self) -> Option<std::time::Instant> {
        match (&self.session, &self.relay) {
            (None, Some(RelayPhase::Login(login))) => login.poll_timeout(),
            _ => None,
        }
    }
}

/// A session configuration with random sizes, timeouts and options; the engine raises
/// values it cannot work with, so the small ones are fair game.
fn random_config(rng: &mut SimRng, role: Role, local: Uri, remote: Uri) -> SessionConfig {
    let mut config = SessionConfig::new(role, vec![local], vec![remote]);
    config.max_chunk_size = rng.pick(&[64, 1000, 4096, 16 * 1024, 64 * 1024, 256 * 1024]);
    // Chunks over 2048 bytes leave in slices, so that they are interrupted for replies
    // (derived, not drawn, so that the seeds keep their random choices).
    config.max_slice_size = config.max_chunk_size / 4;
    config.segment_size = rng.pick(&[100, 4096, 64 * 1024]);
    config.write_high_watermark = rng.pick(&[1, 2048, 64 * 1024, 1 << 20]);
    config.message_buffer = rng.pick(&[1, 4096, 64 * 1024, 1 << 20]);
    config.max_tracked_reports = rng.pick(&[1, 2, 1024]);
    config.response_timeout = Duration::from_millis(rng.pick(&[500, 3_000, 30_000]));
    config.bind_timeout = Duration::from_millis(rng.pick(&[2_000, 10_000, 30_000]));
    config.shutdown_timeout = Duration::from_millis(rng.pick(&[1_000, 5_000, 30_000]));
    config.keepalive_interval = rng.pick(&[None, Some(700), Some(5_000), Some(60_000)]).map(Duration::from_millis);
    if rng.chance(15) {
        config.reassembly = Some(ReassemblyLimits {
            max_message_size: rng.pick(&[1024, 64 * 1024, 1 << 20]),
            max_open_messages: rng.pick(&[1, 16]),
        });
    }
    if rng.chance(10) {
        config.accept_types = AcceptTypes::new(["text/*"]);
    }
    config
}

/// What holds the server end of a connection.
#[derive(Debug)]
pub enum ServerEnd {
    /// Not accepted yet.
    Nobody,
    /// Accepted; the first request's head is being read.
    Pending(Box<PendingConnection>),
    /// Routed to this peer.
    Peer(usize),
    /// Refused with 481 or 506 (the listener answered and closed it).
    Rejected,
    /// The relay's.
    Relay,
}

/// The listening port all server-side sessions share.
#[derive(Debug)]
pub struct Listener {
    pub router: SessionRouter,
    /// The server end of each connection, by pair.
    pub ends: Vec<ServerEnd>,
}
