//! Deterministic simulation of the whole stack: session engines (`msrp_core::session`)
//! and the shared-port router (`msrp_core::connect`) driven over a simulated TCP network
//! with a virtual clock, all from one seed.
//!
//! A run ([`run_seed`]) sets up one to three **pairs**: a client session (active) that
//! connects to a listener port shared by the server-side sessions (passive, created when
//! the [`SessionRouter`] routes the connection's first request to the URI prepared for
//! them), each pair on its own [`net::Link`] with its own latency and faults. Every
//! session runs an application [`script`] that sends random messages, streams and files,
//! aborts some, and shuts down or closes at a random moment.
//!
//! A **relayed** run ([`relay::run_relay_seed`]) puts a scripted RFC 4976 relay where the
//! listener was: each endpoint has its own link to it, logs in with the core's relay
//! client, and then runs the same sessions and scripts through it (see [`relay`]).
//!
//! **Step rule** ([`Sim::step`]): of everything due (a connect outcome, a read, an end of
//! stream, a write acknowledgement, a fault, a session or router timeout, a script
//! action) the earliest is taken (ties broken by the seeded RNG), the clock jumps to it,
//! it is fed to its engine, and then every engine is drained (`poll_output` until
//! `None`), which is the run loop the core documents. Reads are only scheduled for an
//! engine whose `wants_read()` is true (that is how the harness honours it, not a check).
//! After every step the invariants of [`invariants`] and those below are checked:
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than `now`, and the
//!   clock cannot stand still for long: at most [`MAX_TIMER_STEPS_PER_INSTANT`] timer
//!   steps at one instant (same-instant reads are legitimate: a 1-byte reader);
//! - no event after `Event::Closed`; no output at all after `Output::Close`; no transmit
//!   after `Event::Closed`, after the engine was told `Input::Closed`, or before it was
//!   told `Input::Connected`; a session that is closed said `Output::Close` unless it was
//!   told `Input::Closed`; `Event::Closed` comes only with `is_closed()`;
//! - `Event::Closed` has a reason the world justifies: `None` only after the
//!   application's `shutdown`/`close`; a connection closed or keepalive 408 only with a
//!   link fault or the other side ended; a truncated frame (`Parse(Truncated)`) only
//!   after a reset or half-close; bind timeout or refusal only with a connect fault; a
//!   write stall only with a link fault (a reader that stopped) or a slow link;
//!   never `Failed`, never another parse error;
//! - `unwritten()` equals the bytes the harness took in transmits minus those it reported
//!   written, and stays under `2 × write_high_watermark + min(max_slice_size,
//!   max_chunk_size) + 4 KiB + 4 × MAX_READ` (a watermark's worth of message data and one
//!   of replies, the chunk or slice of one handed out last, a head, and the replies to the
//!   reads of one step);
//! - `tracked_reports()` is at most `max_tracked_reports` messages and
//!   `MAX_REPORT_FRAGMENTS` pieces each; `pending_transactions()` is at most the
//!   requests the session transmitted and 0 once it is closed; a connection waiting for
//!   its first request holds at most one head line limit's worth of headers plus a read;
//! - strangers: now and then a connection whose first request names an unknown URI gets
//!   481 from the router, and one naming a URI bound to another connection gets 506;
//! - the run ends: within a step and virtual-time budget nothing is due any more, every
//!   session is closed, and every message got its outcome; on a pair with no fault that
//!   fired, no slow link, no abort, no receiver limits or type filters, and no
//!   application ending while a message of the pair was undecided, every message is
//!   `Delivered`.
//!
//! Each step writes a line to the [`Trace`]; its FNV-1a hash is compared across runs of
//! the same seed. On failure, the seed, the replay command and the last lines of the
//! trace are reported ([`SimFailure`]).

pub mod invariants;
pub mod net;
pub mod node;
pub mod relay;
pub mod rng;
pub mod script;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use msrp_core::codec::{Decoded, Decoder, DecoderLimits, ParseErrorKind};
use msrp_core::connect::{ConnectionId, PendingConnection, Route, SessionRouter};
use msrp_core::session::{Event, Input, MAX_REPORT_FRAGMENTS, MessageOutcome, Output, Session, SessionError, Transmit};
use msrp_core::{Chunk, ContinuationFlag, HeaderName, IdGenerator, Method, MsrpError, Uri};

use self::invariants::{Context, Oracle, SentMessage, Violation};
use self::net::{CLIENT, ConnectOutcome, Link, LinkPlan, LinkState, MAX_READ, SERVER, TimedFault, WriteResult};
use self::node::{Listener, Peer, ServerEnd};
use self::relay::{RelayNode, RelayPhase};
use self::rng::SimRng;
use self::script::Script;

/// Steps after which a run counts as stuck.
const MAX_STEPS: u64 = 5_000_000;
/// Virtual time after which a run counts as stuck (every script ends well before).
const MAX_VIRTUAL_TIME: Duration = Duration::from_secs(3_600);
/// Timer steps at one instant after which the clock counts as stuck (a busy loop: an
/// engine whose timeout is due again and again without time passing).
const MAX_TIMER_STEPS_PER_INSTANT: u64 = 1_000;
/// Outputs of one drain after which an engine counts as looping.
const MAX_OUTPUTS_PER_DRAIN: usize = 1_000_000;
/// Rounds over every engine in one step after which the engines count as ping-ponging
/// (a round only repeats when one engine's outputs gave another an input).
const MAX_DRAIN_ROUNDS: usize = 1_000;
/// Connection ids of strangers, apart from those of the pairs.
const STRANGER_CONNECTION: u64 = 1_000;
/// Trace lines kept for the failure report.
const RECENT_LINES: usize = 200;

/// The readable record of a run, hashed as it grows.
#[derive(Debug)]
pub struct Trace {
    hash: u64,
    lines: u64,
    recent: VecDeque<String>,
    /// Print every line to stderr (`MSRP_SIM_TRACE=1`).
    echo: bool,
}

impl Trace {
    fn new(echo: bool) -> Self {
        Self { hash: 0xcbf2_9ce4_8422_2325, lines: 0, recent: VecDeque::with_capacity(RECENT_LINES), echo }
    }

    fn push(&mut self, line: String) {
        // FNV-1a: simple, stable across platforms and releases.
        for &byte in line.as_bytes().iter().chain(b"\n") {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.lines += 1;
        if self.echo {
            eprintln!("{line}");
        }
        if self.recent.len() == RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }
}

/// What a run that passed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub seed: u64,
    /// Hash of the whole trace: the same seed must give the same hash.
    pub trace_hash: u64,
    pub trace_lines: u64,
    pub steps: u64,
    pub virtual_time: Duration,
    pub messages: usize,
    pub delivered: usize,
    pub failed: usize,
    pub aborted: usize,
    /// Message bytes the receivers got.
    pub bytes_received: u64,
    /// Pairs where no fault fired, no abort, no receiver limit, and no ending cut a
    /// message off: every message of theirs had to be delivered.
    pub clean_pairs: usize,
    /// Resets and half-closes that fired, and sessions that then found a frame cut off.
    pub truncations: u64,
    pub cut_frames: u64,
    /// Strangers the router refused.
    pub strangers: u64,
}

/// A run that broke an invariant, got stuck, or panicked.
#[derive(Debug, Clone)]
pub struct SimFailure {
    pub seed: u64,
    pub reason: String,
    /// The command that runs the seed again.
    pub replay: String,
    /// The last lines of the trace.
    pub recent: Vec<String>,
    pub trace_lines: u64,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation seed {} failed: {}", self.seed, self.reason)?;
        writeln!(f, "replay: {}", self.replay)?;
        writeln!(f, "(add MSRP_SIM_TRACE=1 to print the whole trace)")?;
        writeln!(f, "last {} of {} trace lines:", self.recent.len(), self.trace_lines)?;
        for line in &self.recent {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs the simulation of `seed`.
pub fn run_seed(seed: u64) -> Result<RunSummary, SimFailure> {
    run_seed_with(seed, false)
}

/// Runs the simulation of `seed`, printing the trace as it goes when `echo`.
pub fn run_seed_with(seed: u64, echo: bool) -> Result<RunSummary, SimFailure> {
    run_seed_full(seed, echo).map(|(summary, _)| summary)
}

/// Runs the simulation of `seed` and also returns what became of every message (for
/// the regression tests, which look for their bug's own symptom).
pub fn run_seed_messages(seed: u64) -> Result<(RunSummary, Vec<SentMessage>), SimFailure> {
    run_seed_full(seed, false)
}

fn run_seed_full(seed: u64, echo: bool) -> Result<(RunSummary, Vec<SentMessage>), SimFailure> {
    let replay = format!("MSRP_SIM_SEED={seed} cargo test -p msrp-tests --test simulation seeds -- --nocapture");
    let sim = run_world(seed, replay, || Sim::new(seed, echo))?;
    Ok((sim.summary(), sim.oracle.into_messages()))
}

/// Runs the world `make` draws for `seed`; `replay` says how to run it again.
fn run_world(seed: u64, replay: String, make: impl FnOnce() -> Sim) -> Result<Sim, SimFailure> {
    let mut sim: Option<Sim> = None;
    // The world is drawn inside the guard too, so a panic there reports its seed.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.insert(make()).run()));
    let reason = match result {
        Ok(Ok(())) => return Ok(sim.expect("the run made its world")),
        Ok(Err(violation)) => violation,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_default();
            format!("panic: {text}")
        }
    };
    let (recent, trace_lines) =
        sim.map_or((Vec::new(), 0), |sim| (sim.trace.recent.iter().cloned().collect(), sim.trace.lines));
    Err(SimFailure { seed, reason, replay, recent, trace_lines })
}

/// Something due at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// The connect outcome of a pair's link.
    Connect(usize),
    /// The end of the link reads.
    Read(usize, usize),
    /// The end of the link hears the end of stream.
    Eof(usize, usize),
    /// The end of the link gets its write acknowledgement.
    Ack(usize, usize),
    /// The link's timed fault.
    Fault(usize),
    /// A peer's session timeout.
    Timer(usize),
    /// The router's bind timeout.
    Router,
    /// A peer's script action.
    Script(usize),
    /// A stranger's connection sends its first request.
    Stranger(usize),
    /// The relay hangs up on a client.
    RelayDrop,
}

/// What happened to a pair that can justify a failure (see [`Context`]).
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::struct_excessive_bools)] // independent facts about one pair
struct PairWorld {
    /// A fault of the link fired (or its connect was refused, never answered, or late).
    link_fault: bool,
    /// The link is slow by plan (see [`Context::slow`]).
    slow: bool,
    /// A reset or half-close cut the byte stream.
    truncated: bool,
    /// An application of the pair called `shutdown` or `close`, or a session closed.
    ended: bool,
    /// That happened while a message of the pair was undecided, or a message started
    /// after it.
    cut: bool,
}

/// A connection that is not one of the pairs': its first request names a URI nobody
/// prepared (481) or the URI of a pair whose session is bound (506).
#[derive(Debug, Clone, Copy)]
struct Stranger {
    at: Instant,
    /// The pair whose server URI it names, or `None` for an unknown URI.
    target: Option<usize>,
    done: bool,
}

/// The simulated world. See the [module docs](self).
pub struct Sim {
    seed: u64,
    epoch: Instant,
    now: Instant,
    rng: SimRng,
    /// Peer `2n` is the client of pair `n`, peer `2n + 1` its server side.
    peers: Vec<Peer>,
    /// The connections: one per pair in a direct world, one per peer through a relay.
    links: Vec<Link>,
    /// The peer at the client end of each link.
    clients: Vec<usize>,
    /// The relay holding the server end of every link, in a relayed world.
    relay: Option<RelayNode>,
    listener: Listener,
    oracle: Oracle,
    trace: Trace,
    steps: u64,
    timer_steps_at_instant: u64,
    bytes_received: u64,
    worlds: Vec<PairWorld>,
    /// Whether the router has bound each pair's server URI (the harness's own account).
    bound: Vec<bool>,
    strangers: Vec<Stranger>,
    strangers_refused: u64,
    truncations: u64,
    cut_frames: u64,
}

impl Sim {
    /// Draws the world of `seed`: pairs, configurations, links, scripts.
    pub fn new(seed: u64, echo: bool) -> Self {
        let mut rng = SimRng::new(seed);
        let epoch = Instant::now();
        let pairs = 1 + rng.index(3);
        // Half the runs keep messages small: they are quick and so cheap to soak.
        let light = rng.chance(50);
        let max_message = if light { 16 * 1024 } else { 400 * 1024 };
        let bind_timeout = Duration::from_millis(rng.pick(&[2_000, 10_000, 30_000]));
        let mut router = SessionRouter::new(false, bind_timeout);
        let mut peers = Vec::new();
        let mut links = Vec::new();
        let mut ends = Vec::new();
        let mut worlds = Vec::new();
        // What a message weighs on average, to place resets within the traffic of the seed.
        let mean_message = if light { 3_000 } else { 40_000 };
        for pair in 0..pairs {
            let client_uri: Uri = format!("msrp://10.0.1.{pair}:50000/client{pair}x;tcp").parse().expect("valid URI");
            let server_uri: Uri = format!("msrp://10.0.0.1:2855/server{pair}x;tcp").parse().expect("valid URI");
            let script = Script::random(&mut rng, max_message);
            peers.push(Peer::new(&mut rng, pair, CLIENT, client_uri.clone(), server_uri.clone(), script));
            let script = Script::random(&mut rng, max_message);
            peers.push(Peer::new(&mut rng, pair, SERVER, server_uri.clone(), client_uri, script));
            router.prepare(epoch, server_uri);
            let traffic =
                [2 * pair, 2 * pair + 1].map(|p| 1_000 + u64::from(peers[p].script.actions_left + 1) * mean_message);
            let mut plan = LinkPlan::random(&mut rng, traffic);
            if light && rng.chance(20) {
                // Reads of a few bytes at most: every header and end-line arrives in pieces.
                plan.max_read = rng.pick(&[1, 7, 16]);
            }
            // A connect that fails or takes seconds (the plan's slow connects, which may
            // leave too little of a bind timeout) is a fault from the start.
            let link_fault = plan.connect != ConnectOutcome::Accept || plan.connect_delay >= Duration::from_secs(1);
            let slow = slow_link(&plan, [&peers[2 * pair], &peers[2 * pair + 1]]);
            worlds.push(PairWorld { link_fault, slow, ..PairWorld::default() });
            links.push(Link::new(plan, epoch));
            ends.push(ServerEnd::Nobody);
        }
        let mut strangers = Vec::new();
        for _ in 0..rng.below(3) {
            if rng.chance(30) {
                let target = rng.chance(60).then(|| rng.index(pairs));
                strangers.push(Stranger { at: epoch + rng.millis(0, 20_000), target, done: false });
            }
        }
        let mut sim = Self::blank(seed, echo, epoch, rng, router);
        sim.peers = peers;
        sim.links = links;
        sim.clients = (0..pairs).map(|pair| 2 * pair).collect();
        sim.listener.ends = ends;
        sim.worlds = worlds;
        sim.bound = vec![false; pairs];
        sim.strangers = strangers;
        sim.log(format!("seed {seed}: {pairs} pair(s), messages up to {max_message} B"));
        for pair in 0..pairs {
            sim.log_link(pair);
            for p in [2 * pair, 2 * pair + 1] {
                sim.log_peer(p);
            }
            // The client's session exists from the start and connects.
            sim.create_session(2 * pair);
        }
        sim
    }

    /// A world of `seed` with nothing in it yet.
    fn blank(seed: u64, echo: bool, epoch: Instant, rng: SimRng, router: SessionRouter) -> Self {
        Self {
            seed,
            epoch,
            now: epoch,
            rng,
            peers: Vec::new(),
            links: Vec::new(),
            clients: Vec::new(),
            relay: None,
            listener: Listener { router, ends: Vec::new() },
            oracle: Oracle::default(),
            trace: Trace::new(echo),
            steps: 0,
            timer_steps_at_instant: 0,
            bytes_received: 0,
            worlds: Vec::new(),
            bound: Vec::new(),
            strangers: Vec::new(),
            strangers_refused: 0,
            truncations: 0,
            cut_frames: 0,
        }
    }

    fn log_link(&mut self, link: usize) {
        let line = format!("link{link}: {:?}", self.links[link].plan);
        self.log(line);
    }

    fn log_peer(&mut self, p: usize) {
        let peer = &self.peers[p];
        let c = &peer.config;
        let line = format!(
            "{}: chunk {} segment {} watermark {} buffer {} response {:?} bind {:?} shutdown {:?} \
             keepalive {:?} reassembly {:?} accept {:?} script {} actions, ends by {:?} after {:?}",
            peer.name,
            c.max_chunk_size,
            c.segment_size,
            c.write_high_watermark,
            c.message_buffer,
            c.response_timeout,
            c.bind_timeout,
            c.shutdown_timeout,
            c.keepalive_interval,
            c.reassembly,
            c.accept_types,
            peer.script.actions_left,
            peer.script.ending,
            peer.script.lifetime,
        );
        self.log(line);
    }

    fn log(&mut self, text: impl fmt::Display) {
        let micros = (self.now - self.epoch).as_micros();
        self.trace.push(format!("{:>5}.{:06} {text}", micros / 1_000_000, micros % 1_000_000));
    }

    fn summary(&self) -> RunSummary {
        let count = |wanted: fn(&MessageOutcome) -> bool| {
            self.oracle.messages().iter().filter(|m| m.outcome.as_ref().is_some_and(wanted)).count()
        };
        RunSummary {
            seed: self.seed,
            trace_hash: self.trace.hash,
            trace_lines: self.trace.lines,
            steps: self.steps,
            virtual_time: self.now - self.epoch,
            messages: self.oracle.messages().len(),
            delivered: count(|outcome| *outcome == MessageOutcome::Delivered),
            failed: count(|outcome| matches!(outcome, MessageOutcome::Failed(_))),
            aborted: count(|outcome| *outcome == MessageOutcome::Aborted),
            bytes_received: self.bytes_received,
            clean_pairs: (0..self.worlds.len()).filter(|&pair| self.clean(pair)).count(),
            truncations: self.truncations,
            cut_frames: self.cut_frames,
            strangers: self.strangers_refused,
        }
    }

    /// Whether nothing in the world of `pair` excuses a message of it that was not
    /// delivered.
    fn clean(&self, pair: usize) -> bool {
        let world = &self.worlds[pair];
        let strict = |p: usize| {
            let config = &self.peers[p].config;
            config.reassembly.is_none() && script::CONTENT_TYPES.iter().all(|ty| config.accept_types.accepts(ty))
        };
        !world.link_fault
            && !world.slow
            && !world.cut
            && strict(2 * pair)
            && strict(2 * pair + 1)
            && self.oracle.messages().iter().all(|m| self.peers[m.sender].pair != pair || !m.abort_accepted)
    }

    /// Steps until nothing is due, then checks the end state.
    pub fn run(&mut self) -> Result<(), Violation> {
        while self.step()? {
            if self.steps > MAX_STEPS || self.now - self.epoch > MAX_VIRTUAL_TIME {
                return Err(format!("stuck: still busy after {} steps and {:?}", self.steps, self.now - self.epoch));
            }
        }
        self.log("nothing is due any more".to_owned());
        for peer in &self.peers {
            if let Some(session) = &peer.session {
                if !session.is_closed() || !peer.saw_closed_event {
                    return Err(format!("stuck: {} is still open with nothing due", peer.name));
                }
            }
        }
        self.check_logins_ended()?;
        if let Some(stranger) = self.strangers.iter().find(|stranger| !stranger.done) {
            return Err(format!("the stranger due at {:?} never came", stranger.at - self.epoch));
        }
        self.oracle.check_end()?;
        let undelivered =
            self.oracle.messages().iter().find(|m| {
                m.outcome.as_ref() != Some(&MessageOutcome::Delivered) && self.clean(self.peers[m.sender].pair)
            });
        if let Some(message) = undelivered {
            return Err(format!(
                "{}: {:?} on a pair where nothing excuses it (no fault fired, no slow link, no abort, no \
                 receiver limits or type filter, no ending while a message was undecided)",
                message.message_id, message.outcome
            ));
        }
        Ok(())
    }

    /// Performs the earliest thing due, drains every engine and checks the invariants;
    /// `false` when nothing is due any more.
    pub fn step(&mut self) -> Result<bool, Violation> {
        let due = self.collect_due();
        let Some(at) = due.iter().map(|(at, _)| *at).min() else { return Ok(false) };
        let ties: Vec<Due> = due.into_iter().filter(|(time, _)| *time == at).map(|(_, due)| due).collect();
        let next = ties[self.rng.index(ties.len())];
        if at > self.now {
            self.now = at;
            self.timer_steps_at_instant = 0;
        }
        self.steps += 1;
        if matches!(next, Due::Timer(_) | Due::Router) {
            self.timer_steps_at_instant += 1;
            if self.timer_steps_at_instant > MAX_TIMER_STEPS_PER_INSTANT {
                return Err(format!("busy loop: {MAX_TIMER_STEPS_PER_INSTANT} timer steps without the clock moving"));
            }
        }
        self.perform(next)?;
        self.drain_all()?;
        self.after_step()?;
        Ok(true)
    }

    /// Whether the end `end` of link `link` would read now.
    fn reads(&self, link: usize, end: usize) -> bool {
        let wants = |p: usize| self.peers[p].wants_read();
        match (end, &self.listener.ends[link]) {
            (CLIENT, _) => wants(self.clients[link]),
            (_, ServerEnd::Pending(_) | ServerEnd::Relay) => true,
            (_, ServerEnd::Peer(p)) => wants(*p),
            _ => false,
        }
    }

    /// Everything due, with when. Not a pure query: asking a link when its write
    /// acknowledgement is due arms that acknowledgement once bytes fit in its buffer.
    fn collect_due(&mut self) -> Vec<(Instant, Due)> {
        let mut due = Vec::new();
        let now = self.now;
        for index in 0..self.links.len() {
            let reads = [self.reads(index, CLIENT), self.reads(index, SERVER)];
            let link = &mut self.links[index];
            match link.state {
                LinkState::Connecting(Some(at)) => due.push((at, Due::Connect(index))),
                LinkState::Open => {
                    for end in [CLIENT, SERVER] {
                        if reads[end] {
                            if let Some(at) = link.read_due(end) {
                                due.push((at, Due::Read(index, end)));
                            } else if let Some(at) = link.eof_due(end) {
                                due.push((at, Due::Eof(index, end)));
                            }
                        }
                        if let Some(at) = link.ack_due(now, end) {
                            due.push((at, Due::Ack(index, end)));
                        }
                    }
                    if let Some(at) = link.fault_at {
                        due.push((at, Due::Fault(index)));
                    }
                }
                LinkState::Connecting(None) | LinkState::Dead => {}
            }
        }
        for (p, peer) in self.peers.iter().enumerate() {
            if let Some(at) = peer.login_timeout() {
                due.push((at, Due::Timer(p)));
            }
            let Some(session) = &peer.session else { continue };
            if let Some(at) = session.poll_timeout() {
                due.push((at, Due::Timer(p)));
            }
            if let Some(at) = peer.script.next_at.filter(|_| !session.is_closed()) {
                due.push((at, Due::Script(p)));
            }
        }
        if let Some(at) = self.listener.router.poll_timeout() {
            due.push((at, Due::Router));
        }
        for (i, stranger) in self.strangers.iter().enumerate() {
            if !stranger.done {
                due.push((stranger.at, Due::Stranger(i)));
            }
        }
        if let Some((at, _)) = self.relay.as_ref().and_then(|relay| relay.drop_at) {
            due.push((at, Due::RelayDrop));
        }
        due
    }

    fn perform(&mut self, due: Due) -> Result<(), Violation> {
        let now = self.now;
        match due {
            Due::Connect(link) => self.connect(link),
            Due::Read(link, end) => {
                let max = read_size(&mut self.rng, self.links[link].plan.max_read);
                let (data, reset) = self.links[link].read(now, end, max);
                self.log(format!("link{link} {} reads {} B", end_name(end), data.len()));
                if !data.is_empty() {
                    self.deliver(link, end, data)?;
                }
                if reset {
                    let pair = self.pair_of_link(link);
                    let world = &mut self.worlds[pair];
                    world.link_fault = true;
                    world.truncated = true;
                    self.truncations += 1;
                    self.reset(link);
                }
                Ok(())
            }
            Due::Eof(link, end) => {
                self.links[link].eof_told(end);
                self.log(format!("link{link} {} reads the end of stream", end_name(end)));
                self.end_of_stream(link, end);
                Ok(())
            }
            Due::Ack(link, end) => {
                let n = self.links[link].take_ack(end);
                if let Some(p) = self.peer_at(link, end) {
                    let n = self.login_written(p, n);
                    if n > 0 {
                        self.log(format!("{} written {n} B", self.peers[p].name));
                        self.peers[p].written += n;
                        self.input(p, Input::Written(n as usize));
                    }
                }
                Ok(())
            }
            Due::Fault(index) => {
                let pair = self.pair_of_link(index);
                let link = &mut self.links[index];
                link.fault_at = None;
                // `fault_at` is only set from a planned fault.
                let Some((_, fault)) = link.plan.timed_fault else {
                    return Err(format!("link{index}: a fault fired that was not planned"));
                };
                self.worlds[pair].link_fault = true;
                match fault {
                    TimedFault::HalfClose(end) => {
                        link.shut_write(now, end);
                        self.worlds[pair].truncated = true;
                        self.truncations += 1;
                        self.log(format!("link{index} fault: {} half-closes", end_name(end)));
                    }
                    TimedFault::StopReading(end) => {
                        link.pipes[1 - end].reader_stopped = true;
                        self.log(format!("link{index} fault: {} stops reading", end_name(end)));
                    }
                }
                Ok(())
            }
            Due::Timer(p) if self.peers[p].session.is_none() => self.login_timeout(p),
            Due::Timer(p) => {
                self.log(format!("{} timeout", self.peers[p].name));
                let Some(session) = self.peers[p].session.as_mut() else { return Ok(()) };
                session.handle_timeout(now);
                match session.poll_timeout() {
                    Some(next) if next <= now => Err(format!(
                        "{}: poll_timeout() is {:?}, not after now ({:?}), right after handle_timeout",
                        self.peers[p].name,
                        next - self.epoch,
                        now - self.epoch
                    )),
                    _ => Ok(()),
                }
            }
            Due::Router => {
                for uri in self.listener.router.handle_timeout(now) {
                    let p = self.server_peer(&uri)?;
                    self.log(format!("router: {} expired without a connection", self.peers[p].name));
                }
                Ok(())
            }
            Due::Script(p) => self.script_action(p),
            Due::Stranger(i) => self.stranger(i),
            Due::RelayDrop => {
                self.relay_drop();
                Ok(())
            }
        }
    }

    /// The server-side peer whose URI is `uri`.
    fn server_peer(&self, uri: &Uri) -> Result<usize, Violation> {
        self.peers
            .iter()
            .position(|peer| peer.end == SERVER && peer.local_uri == *uri)
            .ok_or_else(|| format!("the router named {uri}, which nobody prepared"))
    }

    /// A stranger's first request reaches the router, which must refuse it.
    fn stranger(&mut self, i: usize) -> Result<(), Violation> {
        let Stranger { target, .. } = self.strangers[i];
        self.strangers[i].done = true;
        let uri = match target {
            Some(pair) => self.peers[2 * pair + 1].local_uri.clone(),
            None => format!("msrp://10.0.0.1:2855/nobody{i}x;tcp").parse().expect("valid URI"),
        };
        let expected = match target {
            Some(pair) if self.bound[pair] => 506,
            // Not bound yet: the stranger would take it; it comes another time.
            Some(_) if self.listener.router.is_waiting(&uri) => {
                self.log(format!("stranger{i}: {uri} is not bound yet; stays away"));
                return Ok(());
            }
            _ => 481,
        };
        let mut request = Chunk::request(format!("stranger{i}"), Method::Send);
        request.headers.set(HeaderName::ToPath, uri.to_string());
        request.headers.set(HeaderName::FromPath, format!("msrp://192.0.2.{i}:4000/stranger{i}x;tcp"));
        request.headers.set(HeaderName::MessageId, format!("stranger{i}"));
        request.headers.set(HeaderName::ByteRange, "1-0/0");
        let connection = ConnectionId(STRANGER_CONNECTION + i as u64);
        let route = self.listener.router.route(connection, &request);
        self.listener.router.release(connection);
        self.log(format!("stranger{i} to {uri}: {route:?}"));
        match route {
            Route::Reject { error, response: Some(response) }
                if error.code == expected && response.code() == Some(expected) =>
            {
                self.strangers_refused += 1;
                Ok(())
            }
            other => Err(format!("stranger{i} naming {uri} should get {expected}, got {other:?}")),
        }
    }

    /// The pair whose peer is at the client end of `link`.
    fn pair_of_link(&self, link: usize) -> usize {
        self.peers[self.clients[link]].pair
    }

    /// The peer at `end` of link `link`, once it has a session (or, at a client end, a
    /// relay login).
    fn peer_at(&self, link: usize, end: usize) -> Option<usize> {
        match (end, &self.listener.ends[link]) {
            (CLIENT, _) => Some(self.clients[link]),
            (_, ServerEnd::Peer(p)) => Some(*p),
            _ => None,
        }
    }

    /// Hands `input` to the peer's session if it is open (a closed one ignores inputs).
    fn input(&mut self, p: usize, input: Input) {
        let now = self.now;
        match input {
            Input::Connected => self.peers[p].told_connected = true,
            Input::Closed => self.peers[p].told_closed = true,
            _ => {}
        }
        let peer = &mut self.peers[p];
        if let Some(session) = peer.session.as_mut() {
            session.handle_input(now, input);
        } else if let Some(RelayPhase::Login(login)) = peer.relay.as_mut() {
            login.handle_input(now, input);
        }
    }

    /// Hands bytes read to the peer's session (and to its wire reader, if it has one).
    fn receive(&mut self, p: usize, data: Bytes) {
        if let Some(wire) = self.peers[p].wire.as_mut() {
            let oracle = &mut self.oracle;
            wire.read(data.clone(), |message_id, start, end| oracle.read_off_wire(message_id, start, end));
        }
        self.input(p, Input::Received(data));
    }

    fn create_session(&mut self, p: usize) {
        let now = self.now;
        let peer = &mut self.peers[p];
        let session =
            Session::new(peer.config.clone(), IdGenerator::seed_from_u64(peer.id_seed), now).expect("valid config");
        peer.session = Some(session);
        peer.socket_open = true;
        peer.script.start(now, &mut self.rng);
        let line = format!("{} session created", self.peers[p].name);
        self.log(line);
    }

    fn connect(&mut self, link: usize) -> Result<(), Violation> {
        let now = self.now;
        let client = self.clients[link];
        // A client that closed dropped its socket, which ended the attempt.
        if !self.peers[client].live() {
            return Err(format!("link{link}: a connect outcome for {}, which closed", self.peers[client].name));
        }
        // A connection that is `Never` answered has no outcome due.
        if self.links[link].plan.connect == ConnectOutcome::Accept {
            self.links[link].open(now);
            if let Some(relay) = &mut self.relay {
                relay.relay.handle_connected(ConnectionId(link as u64));
            } else {
                self.listener.ends[link] =
                    ServerEnd::Pending(Box::new(PendingConnection::new(DecoderLimits::default())));
            }
            self.log(format!("link{link} connected"));
            self.input(client, Input::Connected);
        } else {
            self.links[link].state = LinkState::Dead;
            self.peers[client].socket_open = false;
            self.log(format!("link{link} connect refused"));
            self.input(client, Input::Closed);
        }
        Ok(())
    }

    /// Bytes read at `end` of link `link` go to its session, to the listener, or to
    /// the relay.
    fn deliver(&mut self, link: usize, end: usize, data: Bytes) -> Result<(), Violation> {
        if end == CLIENT {
            self.receive(self.clients[link], data);
            return Ok(());
        }
        match &mut self.listener.ends[link] {
            ServerEnd::Pending(pending) => match pending.handle_received(data) {
                None => Ok(()),
                Some(Ok(head)) => self.route(link, &head),
                Some(Err(error)) => {
                    self.log(format!("listener: link{link} sent an unreadable first request: {error}"));
                    self.reject(link, None);
                    Ok(())
                }
            },
            ServerEnd::Peer(p) => {
                let p = *p;
                self.receive(p, data);
                Ok(())
            }
            ServerEnd::Relay => {
                if let Some(relay) = &mut self.relay {
                    relay.relay.handle_received(self.now, ConnectionId(link as u64), data);
                }
                Ok(())
            }
            ServerEnd::Nobody | ServerEnd::Rejected => Ok(()),
        }
    }

    /// The listener routes a connection by its first request.
    fn route(&mut self, pair: usize, head: &Chunk) -> Result<(), Violation> {
        let ServerEnd::Pending(pending) = std::mem::replace(&mut self.listener.ends[pair], ServerEnd::Nobody) else {
            return Err("routed a connection that was not pending".to_owned());
        };
        match self.listener.router.route(ConnectionId(pair as u64), head) {
            Route::Bind { local_uri } => {
                let p = self.server_peer(&local_uri)?;
                if self.peers[p].pair != pair || self.peers[p].session.is_some() {
                    return Err(format!("link{pair} routed to {local_uri}, which is not its own or already exists"));
                }
                self.listener.ends[pair] = ServerEnd::Peer(p);
                self.bound[pair] = true;
                self.log(format!("listener: link{pair} routed to {}", self.peers[p].name));
                self.create_session(p);
                self.input(p, Input::Connected);
                self.drain_peer(p)?;
                for piece in pending.into_received() {
                    self.receive(p, piece);
                    self.drain_peer(p)?;
                }
            }
            Route::Reject { error, response } => {
                self.log(format!("listener: link{pair} rejected: {error}"));
                self.reject(pair, response);
            }
        }
        Ok(())
    }

    fn reject(&mut self, pair: usize, response: Option<Chunk>) {
        let now = self.now;
        if let Some(response) = response {
            self.links[pair].write(now, SERVER, &response.encode_parts(), &mut self.rng);
        }
        self.links[pair].close_end(now, SERVER);
        self.listener.ends[pair] = ServerEnd::Rejected;
        self.release(pair);
    }

    /// The listener forgets the connection of `pair`.
    fn release(&mut self, pair: usize) {
        self.listener.router.release(ConnectionId(pair as u64));
        self.bound[pair] = false;
    }

    fn end_of_stream(&mut self, link: usize, end: usize) {
        if end == SERVER {
            match self.listener.ends[link] {
                ServerEnd::Pending(_) => return self.reject(link, None),
                // The relay's socket reads the end: it closes it and forgets the grant.
                ServerEnd::Relay => return self.relay_closed(link),
                _ => {}
            }
        }
        if let Some(p) = self.peer_at(link, end) {
            self.input(p, Input::Closed);
        }
    }

    fn reset(&mut self, link: usize) {
        let ends = self.links[link].reset();
        self.log(format!("link{link} reset; bytes in flight lost"));
        for end in ends {
            match (end, &self.listener.ends[link]) {
                (SERVER, ServerEnd::Pending(_)) => self.listener.ends[link] = ServerEnd::Rejected,
                (SERVER, ServerEnd::Relay) => self.relay_closed(link),
                _ => {}
            }
            if let Some(p) = self.peer_at(link, end) {
                self.peers[p].socket_open = false;
                self.input(p, Input::Closed);
            }
        }
        if self.relay.is_none() {
            self.release(link);
        }
    }

    /// The adapter closes the socket of a peer (after `Output::Close`, or once its
    /// session closed on its own).
    fn close_socket(&mut self, p: usize) {
        let now = self.now;
        let peer = &mut self.peers[p];
        if !peer.socket_open {
            return;
        }
        peer.socket_open = false;
        let (link, end) = (peer.link, peer.end);
        self.links[link].close_end(now, end);
        if end == SERVER {
            self.release(link);
        }
        let line = format!("{} closes its socket", self.peers[p].name);
        self.log(line);
    }

    fn drain_all(&mut self) -> Result<(), Violation> {
        for _ in 0..MAX_DRAIN_ROUNDS {
            let mut moved = self.drain_relay();
            for p in 0..self.peers.len() {
                moved |= self.drain_peer(p)?;
            }
            if !moved {
                return Ok(());
            }
        }
        Err(format!("the engines still had outputs after {MAX_DRAIN_ROUNDS} rounds of draining"))
    }

    /// Drains one engine: `poll_output` until `None`.
    fn drain_peer(&mut self, p: usize) -> Result<bool, Violation> {
        let now = self.now;
        let mut outputs = 0;
        if self.peers[p].session.is_none() {
            return self.drain_login(p);
        }
        loop {
            let Some(session) = self.peers[p].session.as_mut() else { return Ok(outputs > 0) };
            let Some(output) = session.poll_output(now) else { return Ok(outputs > 0) };
            outputs += 1;
            if outputs > MAX_OUTPUTS_PER_DRAIN {
                return Err(format!("{}: poll_output never returns None", self.peers[p].name));
            }
            if self.peers[p].saw_close_output {
                return Err(format!("{}: {output:?} after Output::Close", self.peers[p].name));
            }
            match output {
                Output::Transmit(transmit) => self.transmit(p, &transmit)?,
                Output::Event(event) => self.on_event(p, event)?,
                Output::Close => {
                    self.peers[p].saw_close_output = true;
                    let line = format!("{} Close", self.peers[p].name);
                    self.log(line);
                    self.close_socket(p);
                }
            }
        }
    }

    fn transmit(&mut self, p: usize, transmit: &Transmit) -> Result<(), Violation> {
        let now = self.now;
        let peer = &mut self.peers[p];
        let when = if peer.saw_closed_event {
            Some("after Event::Closed")
        } else if peer.told_closed {
            Some("after it was told Input::Closed")
        } else if !peer.told_connected {
            Some("before it was told Input::Connected")
        } else {
            None
        };
        if let Some(when) = when {
            return Err(format!("{}: a transmit of {} B {when}", peer.name, transmit.len()));
        }
        peer.transmitted += transmit.len() as u64;
        let head = head_of(transmit);
        if head.as_ref().is_some_and(|(head, _)| head.method().is_some()) {
            peer.requests_transmitted += 1;
        }
        // A chunk may start in one transmit and end in a later one.
        let flag = match &head {
            Some((chunk, flag)) => {
                peer.open_send =
                    (chunk.method() == Some(&Method::Send)).then(|| chunk.message_id().map(str::to_owned)).flatten();
                *flag
            }
            None => end_flag(&transmit.parts[2]),
        };
        if flag.is_some() {
            if let Some(message_id) = peer.open_send.take().filter(|_| flag == Some(ContinuationFlag::End)) {
                self.oracle.last_chunk_sent(&message_id, peer.transmitted);
            }
        }
        let (link, end) = (peer.link, peer.end);
        let result = if peer.socket_open {
            self.links[link].write(now, end, &transmit.parts, &mut self.rng)
        } else {
            WriteResult::Dead
        };
        let outcome = match result {
            WriteResult::Sent => "",
            WriteResult::Dead => " into a dead socket",
            WriteResult::Failed => ": the write fails (this end half-closed)",
        };
        let line = format!("{} transmits {} B{outcome}", self.peers[p].name, transmit.len());
        self.log(line);
        if result == WriteResult::Failed {
            // What an adapter sees: a write error, so the connection is gone.
            self.close_socket(p);
            self.input(p, Input::Closed);
        }
        Ok(())
    }

    fn on_event(&mut self, p: usize, event: Event) -> Result<(), Violation> {
        let name = self.peers[p].name.clone();
        if self.peers[p].saw_closed_event {
            return Err(format!("{name}: {event:?} after Event::Closed"));
        }
        self.log(format!("{name} {}", describe(&event)));
        match event {
            Event::Bound => {
                self.on_bound(p);
                Ok(())
            }
            Event::Incoming(chunk) => {
                self.bytes_received += chunk.data.len() as u64;
                self.oracle.incoming(p, &chunk).map_err(|v| format!("{name}: {v}"))
            }
            Event::IncomingAborted { message_id } => {
                self.oracle.incoming_aborted(p, &message_id).map_err(|v| format!("{name}: {v}"))
            }
            Event::Report { message, report } => {
                self.oracle.report(p, message, &report).map_err(|v| format!("{name}: {v}"))
            }
            Event::MessageDone { message, message_id, outcome } => {
                self.peers[p].script.streams.retain(|stream| stream.id != message);
                let written = self.peers[p].written;
                let context = self.context(p, &message_id);
                self.oracle
                    .done(p, message, &message_id, &outcome, written, &context)
                    .map_err(|v| format!("{name}: {v}"))
            }
            Event::Writable { message } => {
                if self.oracle.find(p, message).is_none_or(|m| m.outcome.is_some()) {
                    return Err(format!("{name}: Writable for {message:?}, which is not a live message"));
                }
                let script = &mut self.peers[p].script;
                let Some(stream) = script.streams.iter_mut().find(|stream| stream.id == message) else {
                    return Ok(());
                };
                stream.blocked = false;
                let eager = stream.eager;
                self.write_stream(p, message, eager)
            }
            Event::ReportMissing { message, .. } => {
                self.oracle.report_missing(p, message).map_err(|v| format!("{name}: {v}"))
            }
            Event::Closed { reason } => {
                self.peers[p].saw_closed_event = true;
                if !self.peers[p].session.as_ref().is_some_and(Session::is_closed) {
                    return Err(format!("{name}: Event::Closed while is_closed() is false"));
                }
                self.closed_reason(p, reason.as_ref()).map_err(|v| format!("{name}: {v}"))?;
                if matches!(reason, Some(SessionError::Parse(_))) {
                    self.cut_frames += 1;
                }
                if self.relay.is_some() {
                    self.oracle.receiver_gone(p);
                }
                self.peers[p].closed_with = Some(reason);
                self.pair_ended(self.peers[p].pair);
                Ok(())
            }
            Event::Relay(event) => self.on_relay_event(p, event),
            other => Err(format!("{name}: unexpected event {other:?}")),
        }
    }

    /// What the world says about the message `message_id` of `p` as it ends.
    fn context(&self, p: usize, message_id: &str) -> Context {
        let world = &self.worlds[self.peers[p].pair];
        let receiver = &self.peers[partner(p)];
        let closed = |peer: &Peer| peer.session.as_ref().is_some_and(Session::is_closed);
        let content_type = self.oracle.content_type(message_id).unwrap_or("");
        Context {
            link_fault: world.link_fault,
            slow: world.slow,
            ended: world.ended || closed(&self.peers[p]) || closed(receiver),
            receiver_reassembly: receiver.config.reassembly,
            receiver_accepts: receiver.config.accept_types.accepts(content_type),
            relayed: self.relay.is_some(),
        }
    }

    /// Checks why a session closed against what happened to its pair.
    fn closed_reason(&self, p: usize, reason: Option<&SessionError>) -> Result<(), Violation> {
        let peer = &self.peers[p];
        let world = &self.worlds[peer.pair];
        let other = &self.peers[partner(p)];
        let other_ended = other.script.end_at.is_some_and(|end_at| self.now >= end_at)
            || other.session.as_ref().is_some_and(Session::is_closed)
            || other.saw_close_output;
        // Through a relay, 481 says the other end's connection (and grant) is gone.
        let gone = |error: &MsrpError| error.code == 481 && self.relay.is_some() && (world.link_fault || other_ended);
        let justified = match reason {
            // Only the application ends a session without a reason.
            None => peer.app_ended,
            Some(SessionError::ConnectionClosed) => world.link_fault || other_ended,
            Some(SessionError::KeepaliveFailed(error)) => {
                (error.code == 408 && (world.link_fault || world.slow || other_ended)) || gone(error)
            }
            Some(SessionError::Failed(error) | SessionError::BindRefused(error)) if gone(error) => true,
            Some(SessionError::Parse(error)) => error.kind == ParseErrorKind::Truncated && world.truncated,
            // A write stall: a reader that stopped (a link fault) stalls its writer for good.
            // So can a slow link: with 1 KiB socket buffers and a write high watermark of 1
            // byte, both ends pause reading while their responses wait behind their own
            // data, and neither writes again (seed 750 with a 3 s write-stall timeout).
            Some(SessionError::BindTimeout | SessionError::BindRefused(_) | SessionError::WriteStalled { .. }) => {
                world.link_fault || world.slow
            }
            Some(_) => false,
        };
        if justified {
            Ok(())
        } else {
            Err(format!("closed with {reason:?}, which nothing in the world of the seed explains ({world:?})"))
        }
    }

    /// An application of `pair` ended its session, or a session of the pair closed.
    fn pair_ended(&mut self, pair: usize) {
        let undecided = self.oracle.messages().iter().any(|m| self.peers[m.sender].pair == pair && m.outcome.is_none());
        let world = &mut self.worlds[pair];
        world.ended = true;
        world.cut |= undecided;
    }

    /// The application of `p` calls `shutdown` or `close`.
    fn app_ended(&mut self, p: usize) {
        self.peers[p].app_ended = true;
        self.pair_ended(self.peers[p].pair);
    }

    /// Closes the sockets of sessions that ended and checks the queues.
    fn after_step(&mut self) -> Result<(), Violation> {
        for p in 0..self.peers.len() {
            let peer = &self.peers[p];
            let closed = peer.session.as_ref().is_some_and(Session::is_closed);
            if closed && !peer.saw_close_output && !peer.told_closed {
                return Err(format!("{}: closed without Output::Close, and it was not told Input::Closed", peer.name));
            }
            if closed && peer.socket_open {
                self.close_socket(p);
            }
        }
        for (pair, end) in self.listener.ends.iter().enumerate() {
            if let ServerEnd::Pending(pending) = end {
                // The head is read line by line: at most every header line of it, and
                // what came with its last read.
                let limits = DecoderLimits::default();
                let bound = (limits.max_headers + 2) * (limits.max_header_line + 2) + MAX_READ;
                if pending.buffered() > bound {
                    return Err(format!("link{pair}: the listener holds {} B of a first request", pending.buffered()));
                }
            }
        }
        for peer in &self.peers {
            let Some(session) = peer.session.as_ref() else { continue };
            if session.unwritten() != peer.transmitted - peer.written {
                return Err(format!(
                    "{}: unwritten() is {} B, but {} B were transmitted and {} B reported written",
                    peer.name,
                    session.unwritten(),
                    peer.transmitted,
                    peer.written
                ));
            }
            let (messages, pieces) = session.tracked_reports();
            let max = session.config().max_tracked_reports;
            if messages > max || pieces > messages * MAX_REPORT_FRAGMENTS {
                return Err(format!(
                    "{}: tracks {messages} message(s) in {pieces} piece(s) for REPORTs (at most {max} of {} each)",
                    peer.name, MAX_REPORT_FRAGMENTS
                ));
            }
            let pending = session.pending_transactions();
            if pending > peer.requests_transmitted as usize || (session.is_closed() && pending > 0) {
                return Err(format!(
                    "{}: {pending} transaction(s) pending with {} request(s) transmitted{}",
                    peer.name,
                    peer.requests_transmitted,
                    if session.is_closed() { " and the session closed" } else { "" }
                ));
            }
            if session.is_closed() {
                continue;
            }
            let config = session.config();
            // A chunk larger than a slice leaves slice by slice (issue 12 §2.5).
            let last_handed_out = config.max_slice_size.min(config.max_chunk_size) as u64;
            let bound = 2 * config.write_high_watermark as u64 + last_handed_out + 4096 + 4 * MAX_READ as u64;
            if session.unwritten() > bound {
                return Err(format!(
                    "{}: {} B unwritten, over the bound of {bound} B (watermark {})",
                    peer.name,
                    session.unwritten(),
                    config.write_high_watermark
                ));
            }
        }
        Ok(())
    }
}

/// Whether `plan` is slow for the pair `peers`. A gap between reads, tiny reads, or a
/// 1 KiB socket buffer (its writer goes at the pace of the reader's round trips, and
/// responses queue behind data) can delay a response past a short response timeout. So
/// can a 16 KiB buffer when a response timeout is short: hundreds of KiB of 64-byte
/// chunks, each with its own head and 200, take longer than 3 s through it (soak seeds
/// 33348, 37158, 39098, 71118, 82517, 97745 and 99050 traced: every 408 there came from
/// responses queued behind that traffic, none was lost).
fn slow_link(plan: &LinkPlan, peers: [&Peer; 2]) -> bool {
    let short_response_timeout = peers.iter().any(|peer| peer.config.response_timeout <= Duration::from_secs(3));
    plan.read_gap.iter().any(|gap| !gap.is_zero())
        || plan.max_read < MAX_READ
        || plan.capacity.iter().any(|&capacity| capacity <= 1024)
        || (short_response_timeout && plan.capacity.iter().any(|&capacity| capacity <= 16 * 1024))
}

/// The partner of peer `p` (the other end of its pair).
fn partner(p: usize) -> usize {
    p ^ 1
}

/// The head and the continuation flag of the chunk in `transmit`, read by the core's
/// decoder from the head and end-line parts (the body is not needed for either).
fn head_of(transmit: &Transmit) -> Option<(Chunk, Option<ContinuationFlag>)> {
    let mut decoder = Decoder::new(DecoderLimits::default());
    decoder.feed(transmit.parts[0].clone());
    decoder.feed(transmit.parts[2].clone());
    let (mut head, mut flag) = (None, None);
    while let Some(item) = decoder.poll() {
        match item {
            Ok(Decoded::Head(chunk)) => head = Some(chunk),
            Ok(Decoded::End(end)) => flag = Some(end),
            Ok(Decoded::Data(_)) | Err(_) => {}
        }
    }
    Some((head?, flag))
}

/// The flag of an end-line that ends a transmit without a head (the last slice of a chunk).
fn end_flag(end_line: &[u8]) -> Option<ContinuationFlag> {
    let flag = end_line.strip_suffix(b"\r\n")?.last()?;
    ContinuationFlag::from_byte(*flag)
}

/// How much one read takes: often a lot, sometimes a little, now and then one byte.
fn read_size(rng: &mut SimRng, max_read: usize) -> usize {
    let size = match rng.below(100) {
        0..10 => 1,
        10..30 => 1 + rng.index(64),
        30..70 => 1 + rng.index(4096),
        _ => 1 + rng.index(MAX_READ),
    };
    size.min(max_read)
}

fn end_name(end: usize) -> &'static str {
    if end == CLIENT { "client" } else { "server" }
}

/// A short, readable form of an event for the trace.
fn describe(event: &Event) -> String {
    match event {
        Event::Incoming(chunk) => {
            let range = chunk.byte_range().map_or(1, |range| range.start);
            let flag = match chunk.contflag {
                ContinuationFlag::End => '$',
                ContinuationFlag::More => '+',
                ContinuationFlag::Abort => '#',
            };
            format!(
                "Incoming {} from byte {range}, {} B, {flag}{}",
                chunk.message_id().unwrap_or("?"),
                chunk.data.len(),
                chunk.segment.map(|segment| format!(" segment {segment}")).unwrap_or_default()
            )
        }
        Event::Report { report, .. } => format!(
            "Report {} status {:?} range {:?}",
            report.message_id().unwrap_or("?"),
            report.status().map(|status| status.code),
            report.byte_range()
        ),
        Event::MessageDone { message, message_id, outcome } => {
            format!("MessageDone {message:?} {message_id} {outcome:?}")
        }
        other => format!("{other:?}"),
    }
}
