//! A model of TCP connections, itself sans-IO: the simulation asks a [`Link`] when its
//! next read, end of stream or write acknowledgement is due and then performs it.
//!
//! What it keeps from TCP, and what the engines must cope with:
//! - **Order within a connection**: each direction ([`Pipe`]) is a FIFO of
//!   `(deliver_at, bytes)` with `deliver_at = max(now + latency + jitter, previous)`.
//! - **Any segmentation**: a read takes whatever has arrived up to a random size, from a
//!   single byte to 64 KiB, so writes are re-split and coalesced.
//! - **Latency per connection**, so traffic on different connections reorders.
//! - **Socket buffers**: the writer's `Written` acknowledgements only cover bytes that fit
//!   in `capacity` beyond what the reader consumed; a slow reader (reads spaced by a
//!   gap) or a reader that stopped reading therefore stalls the writer.
//! - **Faults**: connect refused, a connect that never completes or completes late, a
//!   reset after a given number of bytes of one direction (both ends see `Closed`, bytes
//!   in flight are lost, usually in the middle of a chunk), a half-close (one end's
//!   direction ends while that end's engine believes it is still open; its next write
//!   fails, as a write after `shutdown(SHUT_WR)` does), and a reader that stops reading
//!   for good.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::rng::SimRng;

/// The end that connected (the active session).
pub const CLIENT: usize = 0;
/// The end that accepted (the listener, then the passive session it routed to).
pub const SERVER: usize = 1;

/// Largest single read.
pub const MAX_READ: usize = 64 * 1024;

/// How a connection attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// Accepted after the connect delay.
    Accept,
    /// Refused after the connect delay: the client hears `Closed` before `Connected`.
    Refuse,
    /// Never answered: only the client's bind timeout ends the wait.
    Never,
}

/// A fault injected while the connection is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedFault {
    /// This end's sending direction ends (FIN) without its engine knowing; its next
    /// write fails.
    HalfClose(usize),
    /// This end stops reading for good.
    StopReading(usize),
}

/// What became of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// The bytes are on their way (or discarded because the reader closed its socket).
    Sent,
    /// No connection or no socket: the bytes went nowhere.
    Dead,
    /// This end's sending direction was shut: the write fails.
    Failed,
}

/// Everything random about one connection, drawn when the simulation is set up.
#[derive(Debug, Clone)]
pub struct LinkPlan {
    /// One-way delay of every byte.
    pub latency: Duration,
    /// Extra random delay per write, at most this.
    pub jitter: Duration,
    /// Socket buffer of each direction (indexed by the sending end).
    pub capacity: [u64; 2],
    /// Delay of a write acknowledgement.
    pub ack_delay: Duration,
    /// Least time between two reads of each receiving end (a slow reader when large).
    pub read_gap: [Duration; 2],
    /// Time from the client's start to the connect outcome.
    pub connect_delay: Duration,
    /// The connect outcome.
    pub connect: ConnectOutcome,
    /// Reset the connection once this many bytes of the direction sent by the end were read.
    pub reset_after: Option<(usize, u64)>,
    /// A fault, this long after the connection opened.
    pub timed_fault: Option<(Duration, TimedFault)>,
    /// Largest read at either end (tiny on some links, so headers and end-lines arrive
    /// in pieces).
    pub max_read: usize,
}

impl LinkPlan {
    /// A random plan: mostly healthy connections, with each fault in a few percent.
    /// `traffic` estimates the bytes each end will send, so that a reset falls within
    /// them (and mostly inside a chunk, as bodies are most of the bytes).
    pub fn random(rng: &mut SimRng, traffic: [u64; 2]) -> Self {
        let slow_reader = |rng: &mut SimRng| if rng.chance(10) { rng.millis(5, 200) } else { Duration::ZERO };
        let capacity = |rng: &mut SimRng| rng.pick(&[1024, 16 * 1024, 256 * 1024, 4 * 1024 * 1024]);
        let connect = match rng.below(100) {
            0..3 => ConnectOutcome::Refuse,
            3..5 => ConnectOutcome::Never,
            _ => ConnectOutcome::Accept,
        };
        // Mostly quick; sometimes slower than a bind timeout.
        let connect_delay = if rng.chance(5) { rng.millis(1_000, 40_000) } else { rng.millis(0, 30) };
        let reset_after = rng.chance(8).then(|| {
            let end = rng.index(2);
            (end, rng.below(traffic[end]))
        });
        let timed_fault = match rng.below(100) {
            0..5 => Some((rng.millis(0, 10_000), TimedFault::HalfClose(rng.index(2)))),
            5..10 => Some((rng.millis(0, 10_000), TimedFault::StopReading(rng.index(2)))),
            _ => None,
        };
        Self {
            latency: rng.millis(0, 40),
            jitter: rng.millis(0, 5),
            capacity: [capacity(rng), capacity(rng)],
            ack_delay: rng.millis(0, 2),
            read_gap: [slow_reader(rng), slow_reader(rng)],
            connect_delay,
            connect,
            reset_after,
            timed_fault,
            max_read: MAX_READ,
        }
    }
}

impl LinkPlan {
    /// The same plan with a quick, accepted connect and no reset or timed fault (its
    /// latency, buffers, read gaps and read sizes stay).
    #[must_use]
    pub fn without_faults(self) -> Self {
        Self {
            connect: ConnectOutcome::Accept,
            connect_delay: self.connect_delay.min(Duration::from_millis(30)),
            reset_after: None,
            timed_fault: None,
            ..self
        }
    }
}

/// One direction of a connection.
#[derive(Debug)]
pub struct Pipe {
    /// Bytes on their way, with the instant they can be read.
    queue: VecDeque<(Instant, Bytes)>,
    /// `deliver_at` of the last write (order is kept).
    last_deliver: Instant,
    /// Bytes handed over by the writer, acknowledged to it, and consumed by the reader
    /// (or discarded).
    handed: u64,
    acked: u64,
    consumed: u64,
    capacity: u64,
    /// When the pending acknowledgement is due.
    ack_due: Option<Instant>,
    /// Earliest next read.
    next_read: Instant,
    /// The writer ended this direction: the reader sees the end after the queue, not
    /// before this instant.
    fin_at: Option<Instant>,
    /// The reader was told the direction ended.
    eof_told: bool,
    /// The reader stopped reading (a fault).
    pub reader_stopped: bool,
    /// The reader closed its socket: what arrives is discarded.
    reader_gone: bool,
    /// Reset the connection once this many bytes were read.
    reset_after: Option<u64>,
}

impl Pipe {
    fn new(now: Instant, capacity: u64) -> Self {
        Self {
            queue: VecDeque::new(),
            last_deliver: now,
            handed: 0,
            acked: 0,
            consumed: 0,
            capacity,
            ack_due: None,
            next_read: now,
            fin_at: None,
            eof_told: false,
            reader_stopped: false,
            reader_gone: false,
            reset_after: None,
        }
    }

    /// Bytes the writer's socket took that were not yet acknowledged.
    fn ackable(&self) -> u64 {
        self.handed.min(self.consumed + self.capacity).saturating_sub(self.acked)
    }
}

/// Whether the connection is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// The client is connecting; the outcome is due then (never for `Never`).
    Connecting(Option<Instant>),
    /// Connected.
    Open,
    /// Reset, refused, or closed at both ends.
    Dead,
}

/// One TCP connection between a client and the listener.
#[derive(Debug)]
pub struct Link {
    /// Its random plan.
    pub plan: LinkPlan,
    /// Up or not.
    pub state: LinkState,
    /// The directions, indexed by the sending end.
    pub pipes: [Pipe; 2],
    /// Whether each end still has its socket.
    pub end_open: [bool; 2],
    /// When the timed fault strikes.
    pub fault_at: Option<Instant>,
}

impl Link {
    /// A connection the client starts at `now`.
    pub fn new(plan: LinkPlan, now: Instant) -> Self {
        let due = (plan.connect != ConnectOutcome::Never).then(|| now + plan.connect_delay);
        let mut pipes = [Pipe::new(now, plan.capacity[0]), Pipe::new(now, plan.capacity[1])];
        if let Some((end, bytes)) = plan.reset_after {
            pipes[end].reset_after = Some(bytes);
        }
        Self { plan, state: LinkState::Connecting(due), pipes, end_open: [true, true], fault_at: None }
    }

    /// The connection is established at `now`.
    pub fn open(&mut self, now: Instant) {
        self.state = LinkState::Open;
        self.fault_at = self.plan.timed_fault.map(|(after, _)| now + after);
        for pipe in &mut self.pipes {
            pipe.last_deliver = now;
            pipe.next_read = now;
        }
    }

    /// The end `from` writes `parts`.
    pub fn write(&mut self, now: Instant, from: usize, parts: &[Bytes], rng: &mut SimRng) -> WriteResult {
        if self.state != LinkState::Open || !self.end_open[from] {
            return WriteResult::Dead;
        }
        let latency = self.plan.latency;
        let jitter = self.plan.jitter;
        let pipe = &mut self.pipes[from];
        if pipe.fin_at.is_some() {
            // Only a half-close shuts the direction of an end that still has its socket.
            return WriteResult::Failed;
        }
        let len: u64 = parts.iter().map(|part| part.len() as u64).sum();
        pipe.handed += len;
        if pipe.reader_gone {
            // Nobody will read them: they are gone, and free the buffer at once.
            pipe.consumed += len;
            return WriteResult::Sent;
        }
        let extra = Duration::from_micros(rng.below(jitter.as_micros() as u64 + 1));
        let at = (now + latency + extra).max(pipe.last_deliver);
        pipe.last_deliver = at;
        for part in parts.iter().filter(|part| !part.is_empty()) {
            pipe.queue.push_back((at, part.clone()));
        }
        WriteResult::Sent
    }

    /// When the end `to` can next read, if bytes are on their way to it.
    pub fn read_due(&self, to: usize) -> Option<Instant> {
        let pipe = &self.pipes[1 - to];
        if self.state != LinkState::Open || !self.end_open[to] || pipe.reader_stopped {
            return None;
        }
        pipe.queue.front().map(|(at, _)| (*at).max(pipe.next_read))
    }

    /// When the end `to` learns that the other end finished sending.
    pub fn eof_due(&self, to: usize) -> Option<Instant> {
        let pipe = &self.pipes[1 - to];
        if self.state != LinkState::Open || !self.end_open[to] || pipe.reader_stopped || pipe.eof_told {
            return None;
        }
        let fin = pipe.fin_at?;
        pipe.queue.is_empty().then(|| fin.max(pipe.last_deliver).max(pipe.next_read))
    }

    /// The end `to` reads up to `max` bytes of what has arrived. Also says whether the
    /// connection must now be reset (the planned reset point was reached).
    pub fn read(&mut self, now: Instant, to: usize, max: usize) -> (Bytes, bool) {
        let gap = self.plan.read_gap[to];
        let pipe = &mut self.pipes[1 - to];
        let mut limit = max as u64;
        if let Some(reset_after) = pipe.reset_after {
            limit = limit.min(reset_after.saturating_sub(pipe.consumed));
        }
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut taken = 0u64;
        while taken < limit {
            let Some((at, front)) = pipe.queue.front_mut() else { break };
            if *at > now {
                break;
            }
            let want = (limit - taken) as usize;
            if front.len() <= want {
                taken += front.len() as u64;
                pieces.push(front.clone());
                pipe.queue.pop_front();
            } else {
                taken += want as u64;
                pieces.push(front.split_to(want));
            }
        }
        pipe.consumed += taken;
        pipe.next_read = now + gap;
        let reset = pipe.reset_after.is_some_and(|reset_after| pipe.consumed >= reset_after);
        let data = match pieces.len() {
            0 => Bytes::new(),
            1 => pieces.pop().unwrap_or_default(),
            _ => {
                let mut joined = BytesMut::with_capacity(taken as usize);
                for piece in &pieces {
                    joined.extend_from_slice(piece);
                }
                joined.freeze()
            }
        };
        (data, reset)
    }

    /// The end `to` was told of the end of stream.
    pub fn eof_told(&mut self, to: usize) {
        self.pipes[1 - to].eof_told = true;
    }

    /// When the acknowledgement of the end `from`'s writes is due, arming it when bytes
    /// fit in the socket buffer.
    pub fn ack_due(&mut self, now: Instant, from: usize) -> Option<Instant> {
        if self.state != LinkState::Open || !self.end_open[from] {
            return None;
        }
        let ack_delay = self.plan.ack_delay;
        let pipe = &mut self.pipes[from];
        if pipe.ack_due.is_none() && pipe.ackable() > 0 {
            pipe.ack_due = Some(now + ack_delay);
        }
        pipe.ack_due
    }

    /// Takes the acknowledgement due to the end `from`: the bytes its socket took.
    pub fn take_ack(&mut self, from: usize) -> u64 {
        let pipe = &mut self.pipes[from];
        pipe.ack_due = None;
        let n = pipe.ackable();
        pipe.acked += n;
        n
    }

    /// The end `from` stops sending: the other end sees the end of stream after what is
    /// on its way.
    pub fn shut_write(&mut self, now: Instant, from: usize) {
        let latency = self.plan.latency;
        let pipe = &mut self.pipes[from];
        if pipe.fin_at.is_none() {
            pipe.fin_at = Some(now + latency);
        }
    }

    /// The end closes its socket: it sends FIN, and what reaches it is discarded.
    pub fn close_end(&mut self, now: Instant, end: usize) {
        if !self.end_open[end] {
            return;
        }
        self.end_open[end] = false;
        match self.state {
            LinkState::Connecting(_) if end == CLIENT => self.state = LinkState::Dead,
            LinkState::Open => {
                self.shut_write(now, end);
                let incoming = &mut self.pipes[1 - end];
                incoming.reader_gone = true;
                let dropped: u64 = incoming.queue.drain(..).map(|(_, data)| data.len() as u64).sum();
                incoming.consumed += dropped;
                if !self.end_open[1 - end] {
                    self.state = LinkState::Dead;
                }
            }
            _ => {}
        }
    }

    /// A reset: everything in flight is lost. Returns the ends that still had their
    /// socket (each hears `Closed`).
    pub fn reset(&mut self) -> Vec<usize> {
        let open: Vec<usize> = (0..2).filter(|&end| self.end_open[end]).collect();
        self.state = LinkState::Dead;
        self.end_open = [false, false];
        for pipe in &mut self.pipes {
            pipe.queue.clear();
            pipe.ack_due = None;
        }
        open
    }
}
