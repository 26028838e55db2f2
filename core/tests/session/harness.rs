//! Test harnesses with a virtual clock: two sessions back to back in memory ([`Pair`]),
//! and one session fed by hand ([`Solo`]). Both check after every `handle_timeout(now)`
//! that `poll_timeout()` is later than `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use msrp_core::codec::{Decoder, DecoderLimits};
use msrp_core::session::{Event, Input, Output, Role, Session, SessionConfig};
use msrp_core::{Chunk, IdGenerator, Uri};

pub(crate) const ALICE: &str = "msrp://127.0.0.1:2855/alice1234;tcp";
pub(crate) const BOB: &str = "msrp://127.0.0.1:2856/bob5678;tcp";

pub(crate) fn uri(text: &str) -> Uri {
    text.parse().expect("valid URI")
}

/// Alice's and Bob's configurations: Alice active, Bob passive.
pub(crate) fn configs() -> (SessionConfig, SessionConfig) {
    (
        SessionConfig::new(Role::Active, vec![uri(ALICE)], vec![uri(BOB)]),
        SessionConfig::new(Role::Passive, vec![uri(BOB)], vec![uri(ALICE)]),
    )
}

/// Runs `handle_timeout` and checks the contract that the next timeout is later.
fn fire(session: &mut Session, now: Instant) {
    session.handle_timeout(now);
    if let Some(next) = session.poll_timeout() {
        assert!(next > now, "poll_timeout() {next:?} is not after now {now:?} right after handle_timeout");
    }
}

/// One side of a [`Pair`].
pub(crate) struct Node {
    pub(crate) session: Session,
    pub(crate) events: Vec<Event>,
    /// Bytes on their way to this node.
    inbox: VecDeque<Bytes>,
    /// Every byte this node transmitted, in order.
    pub(crate) wire: Vec<u8>,
    /// Transmitted bytes not yet acknowledged with `Written` (when writes are held).
    unacked: usize,
    /// Drop everything sent to this node (a peer that swallows requests).
    pub(crate) deaf: bool,
    /// Do not acknowledge this node's writes (a socket that does not drain).
    pub(crate) hold_writes: bool,
    pub(crate) closed: bool,
}

impl Node {
    fn new(session: Session) -> Self {
        Self {
            session,
            events: Vec::new(),
            inbox: VecDeque::new(),
            wire: Vec::new(),
            unacked: 0,
            deaf: false,
            hold_writes: false,
            closed: false,
        }
    }

    /// Takes the events recorded so far.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The chunks this node wrote, decoded.
    pub(crate) fn sent_chunks(&self) -> Vec<Chunk> {
        decode_all(&self.wire)
    }

    /// Acknowledges writes that were held.
    pub(crate) fn release_writes(&mut self, now: Instant) {
        let n = std::mem::take(&mut self.unacked);
        self.session.handle_input(now, Input::Written(n));
    }

    /// Acknowledges at most `n` bytes of the writes that were held (a socket draining
    /// slowly); returns how many.
    pub(crate) fn release_some_writes(&mut self, now: Instant, n: usize) -> usize {
        let n = n.min(self.unacked);
        self.unacked -= n;
        self.session.handle_input(now, Input::Written(n));
        n
    }
}

/// Two sessions connected back to back; bytes arrive re-split into pieces of at most
/// `split` bytes.
pub(crate) struct Pair {
    pub(crate) now: Instant,
    pub(crate) alice: Node,
    pub(crate) bob: Node,
    pub(crate) split: usize,
}

impl Pair {
    /// Alice (active) and Bob (passive) with default configurations, connected and bound.
    pub(crate) fn bound() -> Self {
        let (alice, bob) = configs();
        Self::bound_with(alice, bob)
    }

    /// Alice and Bob with these configurations, connected and bound; the binding's events
    /// are taken.
    pub(crate) fn bound_with(alice: SessionConfig, bob: SessionConfig) -> Self {
        let mut pair = Self::new(alice, bob);
        pair.connect();
        pair.run();
        assert!(pair.alice.session.is_bound() && pair.bob.session.is_bound(), "binding failed");
        pair.alice.take_events();
        pair.bob.take_events();
        pair
    }

    pub(crate) fn new(alice: SessionConfig, bob: SessionConfig) -> Self {
        let start = Instant::now();
        let alice = Session::new(alice, IdGenerator::seed_from_u64(1), start).expect("valid config");
        let bob = Session::new(bob, IdGenerator::seed_from_u64(2), start).expect("valid config");
        Self { now: start, alice: Node::new(alice), bob: Node::new(bob), split: usize::MAX }
    }

    /// Both sides learn the connection is up.
    pub(crate) fn connect(&mut self) {
        self.alice.session.handle_input(self.now, Input::Connected);
        self.bob.session.handle_input(self.now, Input::Connected);
    }

    /// Drains outputs and delivers bytes until nothing moves (time stands still).
    pub(crate) fn run(&mut self) {
        for _ in 0..1_000_000 {
            let moved = Self::drain(self.now, &mut self.alice, &mut self.bob)
                | Self::drain(self.now, &mut self.bob, &mut self.alice)
                | Self::deliver(self.now, &mut self.alice, self.split)
                | Self::deliver(self.now, &mut self.bob, self.split);
            if !moved {
                return;
            }
        }
        panic!("the pair never went quiet");
    }

    /// Moves the clock forward by `duration`, firing every timeout on the way.
    pub(crate) fn advance(&mut self, duration: Duration) {
        let until = self.now + duration;
        loop {
            self.run();
            let next = [self.alice.session.poll_timeout(), self.bob.session.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .filter(|&next| next <= until);
            let Some(next) = next else { break };
            self.now = next;
            fire(&mut self.alice.session, next);
            fire(&mut self.bob.session, next);
        }
        self.now = until;
        self.run();
    }

    fn drain(now: Instant, from: &mut Node, to: &mut Node) -> bool {
        let mut moved = false;
        while let Some(output) = from.session.poll_output(now) {
            moved = true;
            match output {
                Output::Transmit(transmit) => {
                    let len = transmit.len();
                    for part in transmit.parts {
                        from.wire.extend_from_slice(&part);
                        if !to.deaf && !to.closed && !part.is_empty() {
                            to.inbox.push_back(part);
                        }
                    }
                    if from.hold_writes {
                        from.unacked += len;
                    } else {
                        from.session.handle_input(now, Input::Written(len));
                    }
                }
                Output::Event(event) => from.events.push(event),
                Output::Close => {
                    from.closed = true;
                    if !to.closed {
                        to.session.handle_input(now, Input::Closed);
                    }
                }
            }
        }
        moved
    }

    fn deliver(now: Instant, to: &mut Node, split: usize) -> bool {
        let Some(mut data) = to.inbox.pop_front() else { return false };
        if data.len() > split {
            let rest = data.split_off(split);
            to.inbox.push_front(rest);
        }
        if to.session.wants_read() {
            to.session.handle_input(now, Input::Received(data));
        } else {
            to.inbox.push_front(data);
            return false;
        }
        true
    }
}

/// One session fed by hand, its output decoded.
pub(crate) struct Solo {
    pub(crate) session: Session,
    pub(crate) now: Instant,
    pub(crate) events: Vec<Event>,
    pub(crate) wire: BytesMut,
    pub(crate) closed: bool,
}

impl Solo {
    /// Bob's passive session, connected, not bound.
    pub(crate) fn passive() -> Self {
        Self::with_config(configs().1)
    }

    pub(crate) fn with_config(config: SessionConfig) -> Self {
        let now = Instant::now();
        let mut session = Session::new(config, IdGenerator::seed_from_u64(3), now).expect("valid config");
        session.handle_input(now, Input::Connected);
        let mut solo = Self { session, now, events: Vec::new(), wire: BytesMut::new(), closed: false };
        solo.drain();
        solo
    }

    /// Feeds bytes (given with `\n` line ends, sent as CRLF) and drains.
    pub(crate) fn feed(&mut self, text: &str) {
        let data = Bytes::from(text.replace('\n', "\r\n"));
        self.session.handle_input(self.now, Input::Received(data));
        self.drain();
    }

    /// Feeds bytes as they are and drains.
    pub(crate) fn feed_bytes(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.session.handle_input(self.now, Input::Received(Bytes::copy_from_slice(data)));
        }
        self.drain();
    }

    pub(crate) fn drain(&mut self) {
        while let Some(output) = self.session.poll_output(self.now) {
            match output {
                Output::Transmit(transmit) => {
                    for part in &transmit.parts {
                        self.wire.extend_from_slice(part);
                    }
                    self.session.handle_input(self.now, Input::Written(transmit.len()));
                }
                Output::Event(event) => self.events.push(event),
                Output::Close => self.closed = true,
            }
        }
    }

    pub(crate) fn advance(&mut self, duration: Duration) {
        let until = self.now + duration;
        while let Some(next) = self.session.poll_timeout().filter(|&next| next <= until) {
            self.now = next;
            fire(&mut self.session, next);
            self.drain();
        }
        self.now = until;
    }

    /// The chunks written since the last call.
    pub(crate) fn take_sent(&mut self) -> Vec<Chunk> {
        decode_all(&self.wire.split())
    }
}

/// Decodes a complete stream of chunks.
pub(crate) fn decode_all(wire: &[u8]) -> Vec<Chunk> {
    let mut decoder = Decoder::new(DecoderLimits::default());
    decoder.feed(Bytes::copy_from_slice(wire));
    let mut chunks = Vec::new();
    while let Some(chunk) = decoder.poll_chunk(Some(usize::MAX)) {
        chunks.push(chunk.expect("the session wrote valid MSRP"));
    }
    chunks
}
