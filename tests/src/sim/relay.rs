//! Relayed worlds: every pair talks through one [`ScriptedRelay`] that holds the server
//! end of every simulated connection ([`ServerEnd::Relay`]), as RFC 4976 §5 sets it up.
//!
//! Each endpoint connects to the relay and first runs a [`RelayLogin`] over its
//! connection (AUTH, Digest challenges, 423 retries, timeouts from the virtual clock).
//! Once authorized it stops reading, as an adapter does between `prepare` and `complete`.
//! When both ends of a pair have their paths, each builds its session the way
//! `RelayConnection::bind` in `msrp-smol` does: local path the login's, remote path
//! [`RelayClient::to_path`] of the peer's, the chunk size capped at
//! [`RELAY_CHUNK_SIZE`], [`Session::set_relay`] with the client, `Connected`, then the
//! bytes the login read past the relay's last answer. From there the sessions run as in
//! a direct world, with the same scripts and invariants (the oracle in its hop-by-hop
//! form, [`Oracle::relayed`]).
//!
//! A [`RelayWorld`] chooses the relay's behaviour ([`RelayScript`]), what the clients ask
//! for, how long the applications keep their sessions, and whether the relay hangs up on
//! one client mid-session. Links are healthy (no refused connects, resets or half-closes:
//! the relay is the fault under test) but keep their random latency; in some runs they also
//! keep their small socket buffers and slow readers, or read a few bytes at a time (then
//! responses may come late, and failures by timeout are justified as in a direct world).

use std::time::{Duration, Instant};

use bytes::Bytes;
use msrp_core::connect::{ConnectionId, SessionRouter};
use msrp_core::relay::{
    DigestUri, LoginOutput, RelayClient, RelayClientConfig, RelayCredentials, RelayError, RelayEvent, RelayHop,
    RelayLogin,
};
use msrp_core::session::{BIND_TIMEOUT, Input, SessionError};
use msrp_core::{IdGenerator, Uri};
use msrp_smol::RELAY_CHUNK_SIZE;

use super::invariants::{Oracle, SentMessage, Violation};
use super::net::{CLIENT, Link, LinkPlan, SERVER, WriteResult};
use super::node::{Peer, ServerEnd};
use super::rng::SimRng;
use super::script::Script;
use super::{PairWorld, RunSummary, Sim, SimFailure, partner, run_world, slow_link};
use crate::relay::{RelayOutput, RelayScript, RelayStats, ScriptedRelay};

/// What a relayed endpoint has before and around its session.
#[derive(Debug)]
pub enum RelayPhase {
    /// Logging in: AUTH, challenges, the grant.
    Login(Box<RelayLogin>),
    /// Authorized; waits for the peer's path (what an adapter's `prepare` leaves).
    Prepared {
        /// The client, for the session.
        client: Box<RelayClient>,
        /// Bytes read past the relay's last answer, for the session.
        leftover: Vec<Bytes>,
        /// The path for SDP.
        local_path: Vec<Uri>,
    },
    /// The session has the client.
    Session,
    /// The login failed (`Some`), or the peer's did and the connection was closed
    /// unused (`None`, an adapter's `cleanup`).
    Ended(Option<RelayError>),
}

/// How a relayed world is set up; [`RelayWorld::new`] leaves the scripts' own choices.
#[derive(Debug, Clone)]
pub struct RelayWorld {
    /// How the relay behaves (its URI and seed are the simulation's).
    pub script: RelayScript,
    /// What every client answers a challenge with.
    pub credentials: Option<RelayCredentials>,
    /// The `Expires` every client asks for.
    pub expires: Option<u64>,
    /// The `uri=` policy of every client.
    pub digest_uri: DigestUri,
    /// The applications keep their sessions this long (drawn in the range) instead of
    /// the scripts' own lifetimes, with their actions spread over it.
    pub lifetime: Option<(Duration, Duration)>,
    /// Every session sends keepalives this often.
    pub keepalive: Option<Duration>,
    /// The relay hangs up on one client of the first pair this long (drawn in the
    /// range) after the sessions start.
    pub drop_after: Option<(Duration, Duration)>,
    /// Every link is steady: large socket buffers, no gaps between reads, full reads (so
    /// nothing but the relay can end a session early). Otherwise half the runs are.
    pub steady_links: bool,
}

impl RelayWorld {
    /// A world through a relay following `script`, clients without credentials.
    pub fn new(script: RelayScript) -> Self {
        Self {
            script,
            credentials: None,
            expires: None,
            digest_uri: DigestUri::Auto,
            lifetime: None,
            keepalive: None,
            drop_after: None,
            steady_links: false,
        }
    }
}

/// How an endpoint's login ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    /// The endpoint (`c<n>` or `s<n>`).
    pub peer: String,
    /// Its SDP path, or why the relay would not give one.
    pub outcome: Result<Vec<Uri>, RelayError>,
    /// Virtual time from the start of the run.
    pub at: Duration,
}

/// What a relayed run did, for the scenarios to assert.
#[derive(Debug, Clone)]
pub struct RelayRun {
    pub summary: RunSummary,
    /// Every message and what became of it.
    pub messages: Vec<SentMessage>,
    pub stats: RelayStats,
    pub logins: Vec<LoginRecord>,
    /// Every `Event::Relay` of a session, with the endpoint's name.
    pub relay_events: Vec<(String, RelayEvent)>,
    /// Endpoints whose session said `Event::Bound`.
    pub bound: Vec<String>,
    /// Every endpoint with why its session closed (`None`: it never had one).
    pub closed: Vec<(String, Option<Option<SessionError>>)>,
    /// The endpoint the relay hung up on, if it did.
    pub dropped: Option<String>,
}

/// The relay of a relayed world and what the harness records about it.
#[derive(Debug)]
pub(super) struct RelayNode {
    pub(super) relay: ScriptedRelay,
    world: RelayWorld,
    /// When the relay hangs up on the client of which link.
    pub(super) drop_at: Option<(Instant, usize)>,
    dropped: Option<usize>,
    logins: Vec<LoginRecord>,
    events: Vec<(String, RelayEvent)>,
    bound: Vec<String>,
}

/// The relay's URI in every relayed world.
fn relay_uri() -> Uri {
    Uri::new("10.0.9.1").with_port(2855)
}

/// Runs the relayed world `world` of `seed` (`echo` prints the trace as it goes).
pub fn run_relay_seed(seed: u64, world: &RelayWorld, echo: bool) -> Result<RelayRun, SimFailure> {
    let replay = format!("MSRP_SIM_SEED={seed} cargo test -p msrp-tests --test relay_simulation -- --nocapture");
    let sim = run_world(seed, replay, || Sim::relayed(seed, echo, world))?;
    let relay = sim.relay.as_ref().expect("a relayed world has its relay");
    Ok(RelayRun {
        summary: sim.summary(),
        messages: sim.oracle.messages().to_vec(),
        stats: relay.relay.stats().clone(),
        logins: relay.logins.clone(),
        relay_events: relay.events.clone(),
        bound: relay.bound.clone(),
        closed: sim.peers.iter().map(|peer| (peer.name.clone(), peer.closed_with.clone())).collect(),
        dropped: relay.dropped.map(|link| sim.peers[sim.clients[link]].name.clone()),
    })
}

impl Sim {
    /// Draws the relayed world of `seed`: one or two pairs, each endpoint on its own
    /// connection to the relay, logging in from the start.
    pub fn relayed(seed: u64, echo: bool, world: &RelayWorld) -> Self {
        let mut rng = SimRng::new(seed);
        let epoch = Instant::now();
        let pairs = 1 + rng.index(2);
        let steady = world.steady_links || rng.chance(50);
        // A reader of a few bytes takes a step per few bytes: small messages then.
        let tiny_reads = !steady && rng.chance(50);
        let max_message = if tiny_reads { 16 * 1024 } else { 200 * 1024 };
        let mut script = world.script.clone();
        script.uri = relay_uri();
        script.seed = rng.next_u64();
        let mut sim = Self::blank(seed, echo, epoch, rng, SessionRouter::new(false, BIND_TIMEOUT));
        sim.oracle = Oracle::relayed();
        for pair in 0..pairs {
            let uris: [Uri; 2] = [
                format!("msrp://10.0.1.{pair}:50000/client{pair}x;tcp").parse().expect("valid URI"),
                format!("msrp://10.0.2.{pair}:50000/server{pair}x;tcp").parse().expect("valid URI"),
            ];
            for end in [CLIENT, SERVER] {
                let p = 2 * pair + end;
                let script = sim.relayed_script(world, max_message);
                let mut peer = Peer::new(&mut sim.rng, pair, end, uris[end].clone(), uris[1 - end].clone(), script);
                // The adapter's cap (Kamailio relays frames of at most 11238 bytes).
                peer.config.max_chunk_size = peer.config.max_chunk_size.min(RELAY_CHUNK_SIZE);
                if world.keepalive.is_some() {
                    peer.config.keepalive_interval = world.keepalive;
                }
                let mut hop = RelayHop::new(relay_uri(), world.credentials.clone());
                hop.expires = world.expires;
                hop.digest_uri = world.digest_uri;
                let config = RelayClientConfig::new(vec![hop], uris[end].clone());
                let client = RelayClient::new(config, IdGenerator::seed_from_u64(sim.rng.next_u64()), epoch);
                let mut peer = peer.relayed(p, RelayPhase::Login(Box::new(RelayLogin::new(client))));
                peer.socket_open = true;
                sim.peers.push(peer);
            }
            let mut slow = false;
            for p in [2 * pair, 2 * pair + 1] {
                let mut plan = LinkPlan::random(&mut sim.rng, [1 << 20; 2]).without_faults();
                if steady {
                    plan.capacity = plan.capacity.map(|capacity| capacity.max(256 * 1024));
                    plan.read_gap = [Duration::ZERO; 2];
                } else if tiny_reads {
                    // Not with a gap between reads as well: 30 s would not carry two AUTHs.
                    plan.max_read = sim.rng.pick(&[1, 7, 16]);
                    plan.read_gap = [Duration::ZERO; 2];
                }
                slow |= slow_link(&plan, [&sim.peers[2 * pair], &sim.peers[2 * pair + 1]]);
                sim.links.push(Link::new(plan, epoch));
                sim.clients.push(p);
                sim.listener.ends.push(ServerEnd::Relay);
            }
            sim.worlds.push(PairWorld { slow, ..PairWorld::default() });
        }
        sim.relay = Some(RelayNode {
            relay: ScriptedRelay::new(script),
            world: world.clone(),
            drop_at: None,
            dropped: None,
            logins: Vec::new(),
            events: Vec::new(),
            bound: Vec::new(),
        });
        sim.log(format!(
            "seed {seed}: {pairs} pair(s) through a relay, messages up to {max_message} B, {} links",
            if steady {
                "steady"
            } else if tiny_reads {
                "tiny-read"
            } else {
                "random"
            }
        ));
        let script = sim.relay.as_ref().map(|relay| relay.relay.script().clone());
        sim.log(format!("relay: {script:?}"));
        sim.log(format!(
            "clients: credentials {} expires {:?} digest uri {:?} lifetime {:?} keepalive {:?} drop after {:?}",
            world.credentials.is_some(),
            world.expires,
            world.digest_uri,
            world.lifetime,
            world.keepalive,
            world.drop_after
        ));
        for p in 0..sim.peers.len() {
            sim.log_link(p);
            sim.log_peer(p);
        }
        sim
    }

    /// A random script, living as long as `world` says.
    fn relayed_script(&mut self, world: &RelayWorld, max_message: usize) -> Script {
        let mut script = Script::random(&mut self.rng, max_message);
        if let Some((shortest, longest)) = world.lifetime {
            script.lifetime = self.rng.millis(shortest.as_millis() as u64, longest.as_millis() as u64);
            script.max_gap = script.lifetime / (script.actions_left + 1);
        }
        script
    }

    /// Drains the relay login of `p` (before its session exists).
    pub(super) fn drain_login(&mut self, p: usize) -> Result<bool, Violation> {
        let now = self.now;
        let mut moved = false;
        loop {
            let Some(RelayPhase::Login(login)) = self.peers[p].relay.as_mut() else { return Ok(moved) };
            let Some(output) = login.poll_output(now) else { return Ok(moved) };
            moved = true;
            match output {
                LoginOutput::Transmit(bytes) => {
                    let (len, link) = (bytes.len(), self.peers[p].link);
                    let result = if self.peers[p].socket_open {
                        self.links[link].write(now, CLIENT, &[bytes], &mut self.rng)
                    } else {
                        WriteResult::Dead
                    };
                    if result == WriteResult::Sent {
                        self.peers[p].login_unacked += len as u64;
                    }
                    self.log(format!("{} login transmits {len} B: {result:?}", self.peers[p].name));
                }
                LoginOutput::Authorized { local_path } => {
                    let Some(RelayPhase::Login(login)) = self.peers[p].relay.take() else { return Ok(moved) };
                    let (client, leftover) = login.into_parts();
                    self.login_ended(p, Ok(local_path.clone()));
                    self.peers[p].relay = Some(RelayPhase::Prepared { client: Box::new(client), leftover, local_path });
                    self.start_sessions(self.peers[p].pair)?;
                }
                LoginOutput::Failed(error) => {
                    self.login_ended(p, Err(error.clone()));
                    self.peers[p].relay = Some(RelayPhase::Ended(Some(error)));
                    self.close_socket(p);
                    self.start_sessions(self.peers[p].pair)?;
                }
            }
        }
    }

    fn login_ended(&mut self, p: usize, outcome: Result<Vec<Uri>, RelayError>) {
        let name = self.peers[p].name.clone();
        let at = self.now - self.epoch;
        match &outcome {
            Ok(path) => {
                let path: Vec<String> = path.iter().map(Uri::to_string).collect();
                self.log(format!("{name} login authorized: {}", path.join(" ")));
            }
            Err(error) => self.log(format!("{name} login failed: {error}")),
        }
        if let Some(relay) = &mut self.relay {
            relay.logins.push(LoginRecord { peer: name, outcome, at });
        }
    }

    /// Once both ends of `pair` logged in, builds their sessions (as
    /// `RelayConnection::bind` does); once one failed, closes the other's connection
    /// unused (as `cleanup` does).
    fn start_sessions(&mut self, pair: usize) -> Result<(), Violation> {
        let ends = [2 * pair, 2 * pair + 1];
        let paths = ends.map(|p| match &self.peers[p].relay {
            Some(RelayPhase::Prepared { local_path, .. }) => Some(local_path.clone()),
            _ => None,
        });
        if ends.iter().any(|&p| matches!(self.peers[p].relay, Some(RelayPhase::Ended(Some(_))))) {
            for (p, path) in ends.into_iter().zip(&paths) {
                if path.is_some() {
                    self.peers[p].relay = Some(RelayPhase::Ended(None));
                    self.close_socket(p);
                }
            }
            return Ok(());
        }
        let [Some(first), Some(second)] = paths else { return Ok(()) };
        let now = self.now;
        for (p, peer_path) in ends.into_iter().zip([second, first]) {
            let Some(RelayPhase::Prepared { client, leftover, local_path }) =
                self.peers[p].relay.replace(RelayPhase::Session)
            else {
                return Err(format!("{}: no login to build a session on", self.peers[p].name));
            };
            let config = &mut self.peers[p].config;
            config.remote_path = client.to_path(&peer_path);
            config.local_path = local_path;
            self.create_session(p);
            if let Some(session) = self.peers[p].session.as_mut() {
                session.set_relay(*client);
            }
            self.input(p, Input::Connected);
            for data in leftover {
                self.input(p, Input::Received(data));
            }
        }
        if pair == 0 {
            let drop_after = self.relay.as_ref().and_then(|relay| relay.world.drop_after);
            if let Some((soonest, latest)) = drop_after {
                let delay = self.rng.millis(soonest.as_millis() as u64, latest.as_millis() as u64);
                let link = self.peers[ends[self.rng.index(2)]].link;
                if let Some(relay) = &mut self.relay {
                    relay.drop_at = Some((now + delay, link));
                }
            }
        }
        Ok(())
    }

    /// The login timer of `p` is due.
    pub(super) fn login_timeout(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        self.log(format!("{} login timeout", self.peers[p].name));
        let Some(RelayPhase::Login(login)) = self.peers[p].relay.as_mut() else { return Ok(()) };
        login.handle_timeout(now);
        match login.poll_timeout() {
            Some(next) if next <= now => Err(format!(
                "{}: the login's poll_timeout() is not after now right after handle_timeout",
                self.peers[p].name
            )),
            _ => Ok(()),
        }
    }

    /// Of `n` bytes acknowledged to `p`, those that are its session's (its login's AUTHs
    /// went first).
    pub(super) fn login_written(&mut self, p: usize, n: u64) -> u64 {
        let peer = &mut self.peers[p];
        let login = n.min(peer.login_unacked);
        peer.login_unacked -= login;
        n - login
    }

    /// Carries out what the relay asked for; `true` when it asked for anything. Writes
    /// in a row to one connection go as one write (a frame is forwarded piece by piece).
    pub(super) fn drain_relay(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        let mut pending: Option<(usize, Vec<Bytes>)> = None;
        loop {
            let output = self.relay.as_mut().and_then(|relay| relay.relay.poll_output());
            let next_link = match &output {
                Some(RelayOutput::Write { connection, .. }) => Some(connection.0 as usize),
                _ => None,
            };
            if let Some((link, parts)) = pending.take_if(|(link, _)| Some(*link) != next_link) {
                let len: usize = parts.iter().map(Bytes::len).sum();
                self.log(format!("relay writes {len} B to link{link}"));
                self.links[link].write(now, SERVER, &parts, &mut self.rng);
            }
            let Some(output) = output else { return moved };
            moved = true;
            match output {
                RelayOutput::Write { connection, bytes } => {
                    pending.get_or_insert_with(|| (connection.0 as usize, Vec::new())).1.push(bytes);
                }
                RelayOutput::Close { connection } => {
                    let link = connection.0 as usize;
                    self.log(format!("relay hangs up link{link}"));
                    let pair = self.pair_of_link(link);
                    self.worlds[pair].link_fault = true;
                    self.relay_closed(link);
                }
            }
        }
    }

    /// The relay's socket of `link` closes: the client reads the end after what is on
    /// its way, and the grant dies.
    pub(super) fn relay_closed(&mut self, link: usize) {
        self.links[link].close_end(self.now, SERVER);
        if let Some(relay) = &mut self.relay {
            relay.relay.handle_closed(ConnectionId(link as u64));
        }
    }

    /// The relay hangs up on the client it was planned to.
    pub(super) fn relay_drop(&mut self) {
        let Some(relay) = &mut self.relay else { return };
        let Some((_, link)) = relay.drop_at.take() else { return };
        relay.dropped = Some(link);
        relay.relay.drop_connection(ConnectionId(link as u64));
        let line = format!("relay drops {} (link{link})", self.peers[self.clients[link]].name);
        self.log(line);
    }

    /// A session's relay client refreshed its grant (recorded), or failed (which nothing
    /// in a relayed world explains: the links are healthy and grants are refreshed).
    pub(super) fn on_relay_event(&mut self, p: usize, event: RelayEvent) -> Result<(), Violation> {
        let name = self.peers[p].name.clone();
        if let RelayEvent::Failed(error) = &event {
            return Err(format!("{name}: the relay client failed during the session: {error}"));
        }
        if let Some(relay) = &mut self.relay {
            relay.events.push((name, event));
        }
        Ok(())
    }

    /// `p` said `Event::Bound`.
    pub(super) fn on_bound(&mut self, p: usize) {
        let name = self.peers[p].name.clone();
        if let Some(relay) = &mut self.relay {
            relay.bound.push(name);
        }
    }

    /// At the end of a relayed run: every login ended, in a session or a failure.
    pub(super) fn check_logins_ended(&self) -> Result<(), Violation> {
        for (p, peer) in self.peers.iter().enumerate() {
            if matches!(peer.relay, Some(RelayPhase::Login(_) | RelayPhase::Prepared { .. })) {
                let partner = &self.peers[partner(p)];
                return Err(format!(
                    "stuck: {} never got past its relay login (its peer {}: {:?})",
                    peer.name, partner.name, partner.relay
                ));
            }
        }
        Ok(())
    }
}
