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
//! **Step rule** ([`Sim::step`]): of everything due (a connect outcome, a read, an end of
//! stream, a write acknowledgement, a fault, a session or router timeout, a script
//! action) the earliest is taken (ties broken by the seeded RNG), the clock jumps to it,
//! it is fed to its engine, and then every engine is drained (`poll_output` until
//! `None`), which is the run loop the core documents. After every step the invariants of
//! [`invariants`] and those below are checked:
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than `now`, and the
//!   clock cannot stand still for long (no busy loop);
//! - no event after `Event::Closed`, no output after `Output::Close`;
//! - `unwritten()` stays under twice the write high watermark plus one chunk and the
//!   replies to one read (what `wants_read` and the watermark promise);
//! - bytes are only read for an engine whose `wants_read()` is true;
//! - the run ends: within a step and virtual-time budget nothing is due any more, every
//!   session is closed, and every message got its outcome.
//!
//! Each step writes a line to the [`Trace`]; its FNV-1a hash is compared across runs of
//! the same seed. On failure, the seed, the replay command and the last lines of the
//! trace are reported ([`SimFailure`]).

pub mod invariants;
pub mod net;
pub mod node;
pub mod rng;
pub mod script;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use msrp_core::codec::DecoderLimits;
use msrp_core::connect::{ConnectionId, PendingConnection, Route, SessionRouter};
use msrp_core::outbox::{MessageOptions, OutboxError, OutgoingId};
use msrp_core::session::{Event, Input, MessageOutcome, OutgoingFile, Output, SendError, Session, Transmit};
use msrp_core::{Chunk, ContinuationFlag, IdGenerator, Uri};

use self::invariants::{Oracle, SentMessage, Violation};
use self::net::{CLIENT, ConnectOutcome, Link, LinkPlan, LinkState, MAX_READ, SERVER, TimedFault};
use self::node::{Listener, Peer, ServerEnd};
use self::rng::SimRng;
use self::script::{Ending, Script, Stream, piece_len, plan_message};

/// Steps after which a run counts as stuck.
const MAX_STEPS: u64 = 5_000_000;
/// Virtual time after which a run counts as stuck (every script ends well before).
const MAX_VIRTUAL_TIME: Duration = Duration::from_secs(3_600);
/// Steps at one instant after which the clock counts as stuck (a busy loop).
const MAX_STEPS_PER_INSTANT: u64 = 200_000;
/// Outputs of one drain after which an engine counts as looping.
const MAX_OUTPUTS_PER_DRAIN: usize = 1_000_000;
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
}

/// A run that broke an invariant, got stuck, or panicked.
#[derive(Debug, Clone)]
pub struct SimFailure {
    pub seed: u64,
    pub reason: String,
    /// The last lines of the trace.
    pub recent: Vec<String>,
    pub trace_lines: u64,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation seed {} failed: {}", self.seed, self.reason)?;
        writeln!(f, "replay: MSRP_SIM_SEED={} cargo test -p msrp-tests --test simulation", self.seed)?;
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
    let mut sim = Sim::new(seed, echo);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
    let reason = match result {
        Ok(Ok(())) => return Ok(sim.summary()),
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
    Err(SimFailure { seed, reason, recent: sim.trace.recent.iter().cloned().collect(), trace_lines: sim.trace.lines })
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
}

/// The simulated world. See the [module docs](self).
pub struct Sim {
    seed: u64,
    epoch: Instant,
    now: Instant,
    rng: SimRng,
    /// Peer `2n` is the client of pair `n`, peer `2n + 1` its server side.
    peers: Vec<Peer>,
    /// The connection of each pair.
    links: Vec<Link>,
    listener: Listener,
    oracle: Oracle,
    trace: Trace,
    steps: u64,
    steps_at_instant: u64,
    bytes_received: u64,
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
        for pair in 0..pairs {
            let client_uri: Uri = format!("msrp://10.0.1.{pair}:50000/client{pair}x;tcp").parse().expect("valid URI");
            let server_uri: Uri = format!("msrp://10.0.0.1:2855/server{pair}x;tcp").parse().expect("valid URI");
            let script = Script::random(&mut rng, max_message);
            peers.push(Peer::new(&mut rng, pair, CLIENT, client_uri.clone(), server_uri.clone(), script));
            let script = Script::random(&mut rng, max_message);
            peers.push(Peer::new(&mut rng, pair, SERVER, server_uri.clone(), client_uri, script));
            router.prepare(epoch, server_uri);
            let mut plan = LinkPlan::random(&mut rng);
            if light && rng.chance(20) {
                // Reads of a few bytes at most: every header and end-line arrives in pieces.
                plan.max_read = rng.pick(&[1, 7, 16]);
            }
            links.push(Link::new(plan, epoch));
            ends.push(ServerEnd::Nobody);
        }
        let mut sim = Self {
            seed,
            epoch,
            now: epoch,
            rng,
            peers,
            links,
            listener: Listener { router, ends },
            oracle: Oracle::default(),
            trace: Trace::new(echo),
            steps: 0,
            steps_at_instant: 0,
            bytes_received: 0,
        };
        sim.log(format!("seed {seed}: {pairs} pair(s), messages up to {max_message} B"));
        for pair in 0..pairs {
            let plan = &sim.links[pair].plan;
            let line = format!("link{pair}: {plan:?}");
            sim.log(line);
            for p in [2 * pair, 2 * pair + 1] {
                let peer = &sim.peers[p];
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
                sim.log(line);
            }
            // The client's session exists from the start and connects.
            sim.create_session(2 * pair);
        }
        sim
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
        }
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
        self.oracle.check_end()
    }

    /// Performs the earliest thing due, drains every engine and checks the invariants;
    /// `false` when nothing is due any more.
    pub fn step(&mut self) -> Result<bool, Violation> {
        let due = self.due();
        let Some(at) = due.iter().map(|(at, _)| *at).min() else { return Ok(false) };
        let ties: Vec<Due> = due.into_iter().filter(|(time, _)| *time == at).map(|(_, due)| due).collect();
        let next = ties[self.rng.index(ties.len())];
        if at > self.now {
            self.now = at;
            self.steps_at_instant = 0;
        }
        self.steps += 1;
        self.steps_at_instant += 1;
        if self.steps_at_instant > MAX_STEPS_PER_INSTANT {
            return Err(format!("busy loop: {MAX_STEPS_PER_INSTANT} steps without the clock moving"));
        }
        self.perform(next)?;
        self.drain_all()?;
        self.after_step()?;
        Ok(true)
    }

    /// Whether the end `end` of link `pair` would read now.
    fn reads(&self, pair: usize, end: usize) -> bool {
        let wants = |p: usize| self.peers[p].session.as_ref().is_some_and(Session::wants_read);
        match (end, &self.listener.ends[pair]) {
            (CLIENT, _) => wants(2 * pair),
            (_, ServerEnd::Pending(_)) => true,
            (_, ServerEnd::Peer(p)) => wants(*p),
            _ => false,
        }
    }

    fn due(&mut self) -> Vec<(Instant, Due)> {
        let mut due = Vec::new();
        let now = self.now;
        for pair in 0..self.links.len() {
            let reads = [self.reads(pair, CLIENT), self.reads(pair, SERVER)];
            let link = &mut self.links[pair];
            match link.state {
                LinkState::Connecting(Some(at)) => due.push((at, Due::Connect(pair))),
                LinkState::Open => {
                    for end in [CLIENT, SERVER] {
                        if reads[end] {
                            if let Some(at) = link.read_due(end) {
                                due.push((at, Due::Read(pair, end)));
                            } else if let Some(at) = link.eof_due(end) {
                                due.push((at, Due::Eof(pair, end)));
                            }
                        }
                        if let Some(at) = link.ack_due(now, end) {
                            due.push((at, Due::Ack(pair, end)));
                        }
                    }
                    if let Some(at) = link.fault_at {
                        due.push((at, Due::Fault(pair)));
                    }
                }
                LinkState::Connecting(None) | LinkState::Dead => {}
            }
        }
        for (p, peer) in self.peers.iter().enumerate() {
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
        due
    }

    fn perform(&mut self, due: Due) -> Result<(), Violation> {
        let now = self.now;
        match due {
            Due::Connect(pair) => {
                self.connect(pair);
                Ok(())
            }
            Due::Read(pair, end) => {
                let max = read_size(&mut self.rng, self.links[pair].plan.max_read);
                let (data, reset) = self.links[pair].read(now, end, max);
                self.log(format!("link{pair} {} reads {} B", end_name(end), data.len()));
                if !data.is_empty() {
                    self.deliver(pair, end, data)?;
                }
                if reset {
                    self.reset(pair);
                }
                Ok(())
            }
            Due::Eof(pair, end) => {
                self.links[pair].eof_told(end);
                self.log(format!("link{pair} {} reads the end of stream", end_name(end)));
                self.end_of_stream(pair, end);
                Ok(())
            }
            Due::Ack(pair, end) => {
                let n = self.links[pair].take_ack(end);
                if let Some(p) = self.peer_at(pair, end) {
                    self.log(format!("{} written {n} B", self.peers[p].name));
                    self.peers[p].written += n;
                    self.input(p, Input::Written(n as usize));
                }
                Ok(())
            }
            Due::Fault(pair) => {
                let link = &mut self.links[pair];
                link.fault_at = None;
                match link.plan.timed_fault {
                    Some((_, TimedFault::HalfClose(end))) => {
                        link.shut_write(now, end);
                        self.log(format!("link{pair} fault: {} half-closes", end_name(end)));
                    }
                    Some((_, TimedFault::StopReading(end))) => {
                        link.pipes[1 - end].reader_stopped = true;
                        self.log(format!("link{pair} fault: {} stops reading", end_name(end)));
                    }
                    None => {}
                }
                Ok(())
            }
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
                    let found = self.peers.iter().position(|peer| peer.end == SERVER && peer.local_uri == uri);
                    let p = found.ok_or_else(|| format!("the router expired {uri}, which nobody prepared"))?;
                    self.peers[p].expired = true;
                    self.log(format!("router: {} expired without a connection", self.peers[p].name));
                }
                Ok(())
            }
            Due::Script(p) => self.script_action(p),
        }
    }

    /// The peer at `end` of link `pair`, once it has a session.
    fn peer_at(&self, pair: usize, end: usize) -> Option<usize> {
        match (end, &self.listener.ends[pair]) {
            (CLIENT, _) => Some(2 * pair),
            (_, ServerEnd::Peer(p)) => Some(*p),
            _ => None,
        }
    }

    /// Hands `input` to the peer's session if it is open (a closed one ignores inputs).
    fn input(&mut self, p: usize, input: Input) {
        let now = self.now;
        if let Some(session) = self.peers[p].session.as_mut() {
            session.handle_input(now, input);
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

    fn connect(&mut self, pair: usize) {
        let now = self.now;
        let client = 2 * pair;
        if !self.peers[client].live() {
            self.links[pair].state = LinkState::Dead;
            self.log(format!("link{pair}: connect outcome after the client closed; dropped"));
            return;
        }
        match self.links[pair].plan.connect {
            ConnectOutcome::Accept => {
                self.links[pair].open(now);
                self.listener.ends[pair] =
                    ServerEnd::Pending(Box::new(PendingConnection::new(DecoderLimits::default())));
                self.log(format!("link{pair} connected"));
                self.input(client, Input::Connected);
            }
            ConnectOutcome::Refuse | ConnectOutcome::Never => {
                self.links[pair].state = LinkState::Dead;
                self.peers[client].socket_open = false;
                self.log(format!("link{pair} connect refused"));
                self.input(client, Input::Closed);
            }
        }
    }

    /// Bytes read at `end` of link `pair` go to its session or to the listener.
    fn deliver(&mut self, pair: usize, end: usize, data: Bytes) -> Result<(), Violation> {
        if end == CLIENT {
            self.receive(2 * pair, data);
            return Ok(());
        }
        match &mut self.listener.ends[pair] {
            ServerEnd::Pending(pending) => match pending.handle_received(data) {
                None => Ok(()),
                Some(Ok(head)) => self.route(pair, &head),
                Some(Err(error)) => {
                    self.log(format!("listener: link{pair} sent an unreadable first request: {error}"));
                    self.reject(pair, None);
                    Ok(())
                }
            },
            ServerEnd::Peer(p) => {
                let p = *p;
                self.receive(p, data);
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
                let found = self.peers.iter().position(|peer| peer.end == SERVER && peer.local_uri == local_uri);
                let p = found.ok_or_else(|| format!("routed to {local_uri}, which nobody prepared"))?;
                if self.peers[p].pair != pair || self.peers[p].session.is_some() {
                    return Err(format!("link{pair} routed to {local_uri}, which is not its own or already exists"));
                }
                self.listener.ends[pair] = ServerEnd::Peer(p);
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
        self.listener.router.release(ConnectionId(pair as u64));
    }

    fn end_of_stream(&mut self, pair: usize, end: usize) {
        if end == SERVER && matches!(self.listener.ends[pair], ServerEnd::Pending(_)) {
            self.reject(pair, None);
            return;
        }
        if let Some(p) = self.peer_at(pair, end) {
            self.input(p, Input::Closed);
        }
    }

    fn reset(&mut self, pair: usize) {
        let ends = self.links[pair].reset();
        self.log(format!("link{pair} reset; bytes in flight lost"));
        for end in ends {
            if end == SERVER && matches!(self.listener.ends[pair], ServerEnd::Pending(_)) {
                self.listener.ends[pair] = ServerEnd::Rejected;
            }
            if let Some(p) = self.peer_at(pair, end) {
                self.peers[p].socket_open = false;
                self.input(p, Input::Closed);
            }
        }
        self.listener.router.release(ConnectionId(pair as u64));
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
        let (pair, end) = (peer.pair, peer.end);
        self.links[pair].close_end(now, end);
        if end == SERVER {
            self.listener.router.release(ConnectionId(pair as u64));
        }
        let line = format!("{} closes its socket", self.peers[p].name);
        self.log(line);
    }

    fn drain_all(&mut self) -> Result<(), Violation> {
        loop {
            let mut moved = false;
            for p in 0..self.peers.len() {
                moved |= self.drain_peer(p)?;
            }
            if !moved {
                return Ok(());
            }
        }
    }

    /// Drains one engine: `poll_output` until `None`.
    fn drain_peer(&mut self, p: usize) -> Result<bool, Violation> {
        let now = self.now;
        let mut outputs = 0;
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
                Output::Transmit(transmit) => self.transmit(p, &transmit),
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

    fn transmit(&mut self, p: usize, transmit: &Transmit) {
        let now = self.now;
        let peer = &mut self.peers[p];
        peer.transmitted += transmit.len() as u64;
        if let Some(message_id) = last_chunk_of(transmit) {
            self.oracle.last_chunk_sent(&message_id, peer.transmitted);
        }
        let (pair, end) = (peer.pair, peer.end);
        let sent = peer.socket_open && self.links[pair].write(now, end, &transmit.parts, &mut self.rng);
        let line =
            format!("{} transmits {} B{}", peer.name, transmit.len(), if sent { "" } else { " into a dead socket" });
        self.log(line);
    }

    fn on_event(&mut self, p: usize, event: Event) -> Result<(), Violation> {
        let name = self.peers[p].name.clone();
        if self.peers[p].saw_closed_event {
            return Err(format!("{name}: {event:?} after Event::Closed"));
        }
        self.log(format!("{name} {}", describe(&event)));
        match event {
            Event::Bound => Ok(()),
            Event::Incoming(chunk) => {
                self.bytes_received += chunk.data.len() as u64;
                self.oracle.incoming(p, &chunk).map_err(|v| format!("{name}: {v}"))
            }
            Event::IncomingAborted { message_id } => {
                self.oracle.incoming_aborted(p, &message_id).map_err(|v| format!("{name}: {v}"))
            }
            Event::Report { report, .. } => self.oracle.report(p, &report).map_err(|v| format!("{name}: {v}")),
            Event::MessageDone { message, message_id, outcome } => {
                self.peers[p].script.streams.retain(|stream| stream.id != message);
                let written = self.peers[p].written;
                self.oracle.done(p, message, &message_id, &outcome, written).map_err(|v| format!("{name}: {v}"))
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
            Event::Closed { .. } => {
                self.peers[p].saw_closed_event = true;
                if self.peers[p].session.as_ref().is_some_and(Session::is_closed) {
                    Ok(())
                } else {
                    Err(format!("{name}: Event::Closed while is_closed() is false"))
                }
            }
            other => Err(format!("{name}: unexpected event {other:?}")),
        }
    }

    /// Closes the sockets of sessions that ended and checks the queues.
    fn after_step(&mut self) -> Result<(), Violation> {
        for p in 0..self.peers.len() {
            let closed = self.peers[p].session.as_ref().is_some_and(Session::is_closed);
            if closed && self.peers[p].socket_open {
                self.close_socket(p);
            }
        }
        for peer in &self.peers {
            let Some(session) = peer.session.as_ref().filter(|session| !session.is_closed()) else { continue };
            let config = session.config();
            let bound =
                2 * config.write_high_watermark as u64 + config.max_chunk_size as u64 + 4096 + 4 * MAX_READ as u64;
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

    fn script_action(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        let script = &mut self.peers[p].script;
        script.next_at = None;
        if script.end_at.is_some_and(|end_at| now >= end_at) {
            return self.end_script(p);
        }
        script.actions_left = script.actions_left.saturating_sub(1);
        match self.rng.below(100) {
            0..45 => self.send_whole(p)?,
            45..65 => self.start_stream(p)?,
            65..80 => {
                let open: Vec<OutgoingId> =
                    self.peers[p].script.streams.iter().filter(|s| !s.blocked).map(|s| s.id).collect();
                if !open.is_empty() {
                    let id = open[self.rng.index(open.len())];
                    self.write_stream(p, id, false)?;
                }
            }
            80..92 => self.abort_one(p)?,
            _ => {}
        }
        let script = &mut self.peers[p].script;
        script.schedule_next(now, &mut self.rng);
        Ok(())
    }

    fn end_script(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        self.peers[p].script.ended = true;
        if self.rng.chance(50) {
            // The application writes what its streams still have before it ends.
            let ids: Vec<OutgoingId> = self.peers[p].script.streams.iter().map(|s| s.id).collect();
            for id in ids {
                self.write_stream(p, id, true)?;
            }
        }
        let ending = self.peers[p].script.ending;
        let name = self.peers[p].name.clone();
        self.log(format!("{name} script: {ending:?}"));
        let Some(session) = self.peers[p].session.as_mut() else { return Ok(()) };
        match ending {
            Ending::Shutdown => session.shutdown(now),
            Ending::Close => session.close(now),
        }
        Ok(())
    }

    fn partner(p: usize) -> usize {
        p ^ 1
    }

    fn send_whole(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        let peer = &mut self.peers[p];
        peer.script.made += 1;
        let plan = plan_message(&mut self.rng, &peer.name, peer.script.made, peer.script.max_message);
        let options = MessageOptions {
            message_id: Some(plan.message_id.clone()),
            headers: plan.headers.clone(),
            ..MessageOptions::default()
        };
        let Some(session) = peer.session.as_mut() else { return Ok(()) };
        let result = session.send_message(now, options, plan.body.clone());
        let line = format!(
            "{} send_message {} {} B {} (failure reports {:?}, success report {}): {result:?}",
            peer.name,
            plan.message_id,
            plan.body.len(),
            plan.content_type,
            plan.failure_report,
            plan.success_report,
        );
        self.log(line);
        match result {
            Ok(id) => {
                self.register(p, id, &plan);
                Ok(())
            }
            Err(SendError::Closed | SendError::ShuttingDown) => Ok(()),
            Err(error) => Err(format!("{}: send_message refused: {error}", self.peers[p].name)),
        }
    }

    fn register(&mut self, p: usize, outgoing: OutgoingId, plan: &script::MessagePlan) {
        self.oracle.register(SentMessage {
            sender: p,
            outgoing,
            receiver: Self::partner(p),
            message_id: plan.message_id.clone(),
            body: plan.body.clone(),
            success_report: plan.success_report,
            failure_report: plan.failure_report,
            abort_accepted: false,
            outcome: None,
            received: invariants::Ranges::default(),
            receiver_saw_end: false,
            receiver_saw_abort: false,
            reported: invariants::Ranges::default(),
            report_missing: false,
            read_off_wire: invariants::Ranges::default(),
            last_chunk_end: None,
        });
    }

    fn start_stream(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        let kind = self.rng.below(3);
        let eager = self.rng.chance(70);
        let peer = &mut self.peers[p];
        peer.script.made += 1;
        let plan = plan_message(&mut self.rng, &peer.name, peer.script.made, peer.script.max_message);
        let len = plan.body.len() as u64;
        let Some(session) = peer.session.as_mut() else { return Ok(()) };
        let (what, result) = match kind {
            0 | 1 => {
                let total = (kind == 0).then_some(len);
                let options = MessageOptions {
                    message_id: Some(plan.message_id.clone()),
                    headers: plan.headers.clone(),
                    total,
                    position: 0,
                };
                (
                    if kind == 0 { "start_message" } else { "start_message (size unknown)" },
                    session.start_message(now, options),
                )
            }
            _ => {
                let file = OutgoingFile {
                    size: len,
                    content_type: Some(plan.content_type.to_owned()),
                    position: 0,
                    message_id: Some(plan.message_id.clone()),
                    headers: plan.headers.clone(),
                };
                ("send_file", session.send_file(now, &file))
            }
        };
        let line = format!(
            "{} {what} {} {len} B {} (failure reports {:?}, success report {}): {result:?}",
            peer.name, plan.message_id, plan.content_type, plan.failure_report, plan.success_report
        );
        self.log(line);
        match result {
            Ok(id) => {
                self.register(p, id, &plan);
                self.peers[p].script.streams.push(Stream { id, body: plan.body, written: 0, blocked: false, eager });
                self.write_stream(p, id, eager)
            }
            Err(SendError::Closed | SendError::ShuttingDown) => Ok(()),
            Err(error) => Err(format!("{}: {what} refused: {error}", self.peers[p].name)),
        }
    }

    /// Writes the next piece of a stream (every piece the engine takes when `eager`),
    /// and finishes it once all is written.
    fn write_stream(&mut self, p: usize, id: OutgoingId, eager: bool) -> Result<(), Violation> {
        let now = self.now;
        loop {
            let peer = &mut self.peers[p];
            let Some(index) = peer.script.streams.iter().position(|stream| stream.id == id) else { return Ok(()) };
            let Some(session) = peer.session.as_mut() else { return Ok(()) };
            let stream = &mut peer.script.streams[index];
            let remaining = stream.body.len() - stream.written;
            if remaining == 0 {
                let result = session.finish_message(now, id);
                let line = format!("{} finish_message {id:?}: {result:?}", peer.name);
                peer.script.streams.remove(index);
                self.log(line);
                return match result {
                    Ok(()) | Err(SendError::Closed | SendError::Outbox(OutboxError::UnknownMessage(_))) => Ok(()),
                    Err(error) => Err(format!("{}: finish_message refused: {error}", self.peers[p].name)),
                };
            }
            let len = piece_len(&mut self.rng, remaining);
            let piece = stream.body.slice(stream.written..stream.written + len);
            let result = session.write_message(now, id, piece);
            let line = format!("{} write_message {id:?} {len} B: {result:?}", peer.name);
            match result {
                Ok(taken) => {
                    stream.written += taken;
                    if taken < len {
                        stream.blocked = true;
                    }
                }
                Err(SendError::Blocked) => stream.blocked = true,
                Err(SendError::Closed | SendError::Outbox(OutboxError::UnknownMessage(_))) => {
                    peer.script.streams.remove(index);
                }
                Err(error) => return Err(format!("{}: write_message refused: {error}", peer.name)),
            }
            let blocked = peer.script.streams.get(index).is_none_or(|stream| stream.id != id || stream.blocked);
            let done = peer.script.streams.get(index).is_some_and(|stream| stream.written == stream.body.len());
            self.log(line);
            if blocked || (!eager && !done) {
                return Ok(());
            }
        }
    }

    fn abort_one(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        let open: Vec<OutgoingId> = self
            .oracle
            .messages()
            .iter()
            .filter(|m| m.sender == p && m.outcome.is_none())
            .map(|m| m.outgoing)
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let id = open[self.rng.index(open.len())];
        let peer = &mut self.peers[p];
        let Some(session) = peer.session.as_mut() else { return Ok(()) };
        let result = session.abort_message(now, id);
        let line = format!("{} abort_message {id:?}: {result:?}", peer.name);
        self.log(line);
        match result {
            Ok(()) => {
                self.oracle.abort_accepted(p, id);
                self.peers[p].script.streams.retain(|stream| stream.id != id);
                Ok(())
            }
            Err(SendError::Closed | SendError::Outbox(OutboxError::UnknownMessage(_))) => Ok(()),
            Err(error) => Err(format!("{}: abort_message refused: {error}", self.peers[p].name)),
        }
    }
}

/// The Message-ID of the SEND in `transmit` when it is a message's last chunk (`$`).
fn last_chunk_of(transmit: &Transmit) -> Option<String> {
    const FIELD: &[u8] = b"\r\nMessage-ID: ";
    let head = &transmit.parts[0];
    let first_line = &head[..find(head, b"\r\n")?];
    if !first_line.ends_with(b" SEND") {
        return None;
    }
    let last = transmit.parts.iter().rev().find(|part| !part.is_empty())?;
    if last.len() < 3 || last[last.len() - 3] != b'$' {
        return None;
    }
    let headers = &head[..find(head, b"\r\n\r\n").unwrap_or(head.len())];
    let value = &headers[find(headers, FIELD)? + FIELD.len()..];
    let value = &value[..find(value, b"\r\n").unwrap_or(value.len())];
    String::from_utf8(value.to_vec()).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
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
