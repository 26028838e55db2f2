//! Fuzzes the session engine (`msrp_core::session::Session`) with a virtual clock: peer
//! bytes, socket events, timer ticks and application commands, for one engine fed by hand
//! or two engines back to back.
//!
//! Input layout: four header bytes, then operations until the input ends (a missing
//! argument byte reads as 0).
//!
//! - `h0`: bits 0-1 the topology: 0 one active engine, 1 one passive engine (the peer's
//!   bytes come from the input, raw or as MSRP built from templates with fuzzed fields),
//!   2 an active and a passive engine back to back, 3 two active engines back to back
//!   (bytes from one are fed to the other in pieces of fuzzed sizes); bit 2 reassembly;
//!   bit 3 small decoder limits; bit 4 sessmatch; bit 5 accept only `text/plain`; bit 6
//!   report every transmit written at once (an operation toggles it).
//! - `h1`: bits 0-2 `max_chunk_size`, bits 3-5 `segment_size`, bits 6-7 the finale.
//! - `h2`: bits 0-2 `write_high_watermark`, bits 3-5 `message_buffer`, bits 6-7
//!   `max_tracked_reports`.
//! - `h3`: two bits each for the response, bind and shutdown timeouts and the keepalive
//!   interval.
//!
//! Each setting is picked from a small table (zeros included; the engine raises them).
//! An operation is an opcode byte (`op & 0x7f` modulo [`OPERATIONS`]; in the
//! back-to-back topologies bit 7 picks the engine) and its arguments; see [`World::step`].
//! The engines' output is drained after every input, command or timeout, as the run loop
//! requires. After the last operation the finale runs the pair until it is quiet, then
//! ends the engines (`close`, the connection lost, `shutdown` and a minute, or a minute
//! and `close`) so that every engine ends closed.
//!
//! Checked for every input:
//! - no panic, and `poll_output` returns `None` after a bounded number of outputs;
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than `now`;
//! - nothing is output after `Output::Close`; nothing but `Output::Close` comes after
//!   `Event::Closed`, which comes at most once and exactly when `is_closed()`; an engine
//!   that closed by itself (not on `Input::Closed`) says `Output::Close`; a closed engine
//!   has no timeout and no pending transaction;
//! - every `Transmit` is exactly one well-formed chunk, or a piece of one (a chunk larger
//!   than `max_slice_size` leaves as head and first slice, more slices, the end-line);
//! - `unwritten()` equals the bytes transmitted minus those reported written; a chunk of a
//!   message is only cut while `unwritten()` is under `write_high_watermark`; once drained,
//!   `wants_read()` is true exactly when the engine is open and at most the watermark of
//!   its responses and REPORTs is unwritten;
//! - `pending_transactions()` never exceeds the requests transmitted and not answered by
//!   a response the engine read; events stay within a budget linear in the bytes read and
//!   the commands given;
//! - commands on a closed engine are refused with `SendError::Closed`, and only then;
//! - every message of `send_message`/`start_message`/`send_file` gets at most one
//!   `Event::MessageDone` (never `Delivered` after a successful `abort_message`), and
//!   exactly one once the engine is closed; `Writable` and `ReportMissing` name
//!   respectively live and delivered messages;
//! - every request of `send_chunk` (but a REPORT) or `deliver_chunk` (when it returns an
//!   id) gets exactly one `Event::Response` by the time the engine is closed; the others
//!   get none.
//!
//! `MSRP_FUZZ_KNOWN` (comma-separated names, see [`known`]) steps over core bugs already
//! diagnosed, so that a run can look for others; `MSRP_FUZZ_TRACE=1` prints every
//! operation, input and output to stderr, to follow a reproducer.

#![no_main]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use msrp_core::header::ByteRange;
use msrp_core::outbox::{MessageOptions, OutgoingId};
use msrp_core::session::{
    Event, Input, MessageOutcome, OutgoingFile, Output, ReassemblyLimits, RequestId, Role, SendError, Session,
    SessionConfig, Transmit,
};
use msrp_core::{
    AcceptTypes, Chunk, ChunkParams, Decoded, Decoder, DecoderLimits, HeaderName, Headers, IdGenerator, Method, Uri,
};

const ALICE: &str = "msrp://127.0.0.1:2855/alice1234;tcp";
const BOB: &str = "msrp://127.0.0.1:2856/bob5678;tcp";
/// A URI of this host with a session id neither engine has.
const STRANGER: &str = "msrp://127.0.0.1:2855/someone9;tcp";
const MALLORY: &str = "msrp://10.0.0.9:9/mallory;tcp";
/// Message-IDs of the messages the application sends start with this; the ids the engine
/// makes are base-62 and never hold a `-`, so its keepalive and binding SENDs never match.
const MESSAGE_PREFIX: &str = "fz-m";
/// Message-IDs that no other message of the engine shares.
const UNIQUE_PREFIX: &str = "fz-mu";

/// Opcodes `0..OPERATIONS` (see [`World::step`]).
const OPERATIONS: u8 = 21;
const MAX_OUTPUTS_PER_DRAIN: usize = 1_000_000;
const MAX_FIRES_PER_INSTANT: usize = 100_000;
const MAX_RUN_ROUNDS: usize = 1_000_000;
/// Messages and writes hold at most this many bytes, and at most `MAX_CHUNKS` chunks, so
/// that one input stays fast.
const MAX_MESSAGE: usize = 3200;
const MAX_CHUNKS: usize = 24;
/// How long the finale waits for timeouts and shutdowns: past twice the longest timeout.
const FINALE_SPAN: Duration = Duration::from_secs(65);

const CHUNK_SIZES: [usize; 8] = [1, 2, 5, 16, 64, 300, 1100, 2100];
const SEGMENT_SIZES: [usize; 8] = [1, 2, 7, 16, 64, 300, 4096, 64 * 1024];
const WATERMARKS: [usize; 8] = [0, 1, 64, 200, 512, 1024, 4096, 1 << 20];
const MESSAGE_BUFFERS: [usize; 8] = [0, 1, 8, 64, 256, 1024, 4096, 256 * 1024];
const TRACKED_REPORTS: [usize; 4] = [0, 1, 2, 1024];
const RESPONSE_TIMEOUTS_MS: [u64; 4] = [0, 100, 2_000, 30_000];
const BIND_TIMEOUTS_MS: [u64; 4] = [0, 500, 5_000, 30_000];
const SHUTDOWN_TIMEOUTS_MS: [u64; 4] = [0, 100, 3_000, 30_000];
const KEEPALIVES_MS: [Option<u64>; 4] = [None, Some(1_000), Some(7_000), Some(60_000)];
const SMALL_READ: usize = 64;
const MAX_SMALL_READS: usize = 20_000;
/// Largest reads of the pair's `run`: down to single bytes, mostly larger (each piece is
/// decoded twice, so tiny pieces are slow).
const RUN_SPLITS: [usize; 8] = [1, 3, 17, 64, 200, 1000, usize::MAX, usize::MAX];
const RESPONSE_CODES: [u16; 16] = [200, 200, 200, 200, 400, 403, 408, 413, 415, 423, 481, 501, 506, 0, 299, 999];
const REPORT_CODES: [u16; 7] = [200, 200, 413, 408, 400, 481, 415];
const REPLY_CODES: [u16; 8] = [200, 400, 403, 408, 413, 415, 481, 501];

/// Whether the core bug `name` was diagnosed already and its checks are to be skipped
/// (`MSRP_FUZZ_KNOWN=name,name`).
fn known(name: &str) -> bool {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("MSRP_FUZZ_KNOWN")
                .map(|list| list.split(',').map(|item| item.trim().to_owned()).collect())
                .unwrap_or_default()
        })
        .iter()
        .any(|item| item == name)
}

/// Whether to print every operation and output to stderr (`MSRP_FUZZ_TRACE=1`), to follow
/// a reproducer.
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("MSRP_FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

macro_rules! violated {
    ($($arg:tt)*) => {
        panic!("invariant violated: {}", format_args!($($arg)*))
    };
}

/// Reads the fuzz input front to back; past its end every byte is 0.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&byte, rest)) => {
                self.data = rest;
                byte
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    fn pick<T: Copy>(&mut self, table: &[T]) -> T {
        table[usize::from(self.byte()) % table.len()]
    }
}

/// How the engines end after the last operation.
#[derive(Debug, Clone, Copy)]
enum Finale {
    Close,
    ConnectionLost,
    Shutdown,
    Wait,
}

struct Plan {
    paired: bool,
    /// The roles of the first (Alice) and, when paired, the second engine (Bob).
    roles: [Role; 2],
    config: SessionConfig,
    auto_written: bool,
    finale: Finale,
}

impl Plan {
    fn read(r: &mut Reader) -> Self {
        let [h0, h1, h2, h3] = [r.byte(), r.byte(), r.byte(), r.byte()];
        let bits = |byte: u8, shift: u32, mask: u8| usize::from((byte >> shift) & mask);
        let (paired, roles) = match h0 & 3 {
            0 => (false, [Role::Active, Role::Passive]),
            1 => (false, [Role::Passive, Role::Passive]),
            2 => (true, [Role::Active, Role::Passive]),
            _ => (true, [Role::Active, Role::Active]),
        };
        let mut config = SessionConfig::new(roles[0], vec![uri(ALICE)], vec![uri(BOB)]);
        if h0 & 0x04 != 0 {
            config.reassembly = Some(ReassemblyLimits { max_message_size: 1000, max_open_messages: 2 });
        }
        if h0 & 0x08 != 0 {
            config.decoder_limits = DecoderLimits {
                max_header_line: 96,
                max_headers: 6,
                max_path_uris: 2,
                max_non_send_body: 24,
                max_message_size: 1000,
                max_whole_chunk: 40,
            };
        }
        config.use_sessmatch = h0 & 0x10 != 0;
        if h0 & 0x20 != 0 {
            config.accept_types = AcceptTypes::new(["text/plain"]);
        }
        config.max_chunk_size = CHUNK_SIZES[bits(h1, 0, 7)];
        // The least slice the engine takes: a 2100-byte chunk leaves in two slices and can
        // be interrupted after the first.
        config.max_slice_size = 2048;
        config.segment_size = SEGMENT_SIZES[bits(h1, 3, 7)];
        config.write_high_watermark = WATERMARKS[bits(h2, 0, 7)];
        config.message_buffer = MESSAGE_BUFFERS[bits(h2, 3, 7)];
        config.max_tracked_reports = TRACKED_REPORTS[bits(h2, 6, 3)];
        config.response_timeout = Duration::from_millis(RESPONSE_TIMEOUTS_MS[bits(h3, 0, 3)]);
        config.bind_timeout = Duration::from_millis(BIND_TIMEOUTS_MS[bits(h3, 2, 3)]);
        config.shutdown_timeout = Duration::from_millis(SHUTDOWN_TIMEOUTS_MS[bits(h3, 4, 3)]);
        config.keepalive_interval = KEEPALIVES_MS[bits(h3, 6, 3)].map(Duration::from_millis);
        let finale = [Finale::Close, Finale::ConnectionLost, Finale::Shutdown, Finale::Wait][bits(h1, 6, 3)];
        Self { paired, roles, config, auto_written: h0 & 0x40 != 0, finale }
    }
}

fn uri(text: &str) -> Uri {
    text.parse().expect("valid URI")
}

/// An extension header on the requests of `send_chunk`, to tell an application's REPORT
/// from the engine's own (which count as replies).
fn app_marker() -> HeaderName {
    HeaderName::from_bytes(b"X-Fuzz-App").expect("a valid header name")
}

/// A body of `len` bytes: letters, or (odd `seed`) a mix of CR, LF, dashes and the
/// end-line of the peer transaction `peer0`, so that bodies can look like framing.
fn body(len: usize, seed: u8) -> Bytes {
    const MIX: &[u8] = b"hi \r\n-------peer0$\r\n+#";
    if seed & 1 == 0 {
        (0..len).map(|i| b'a' + (i % 26) as u8).collect()
    } else {
        (0..len).map(|i| MIX[(i * usize::from(seed)) % MIX.len()]).collect()
    }
}

/// Decodes the transmits of one chunk so far: at most one valid chunk, `None` while it is
/// not complete.
fn decode_transmit(bytes: &Bytes) -> Result<Option<Chunk>, String> {
    let mut decoder = Decoder::new(DecoderLimits { max_whole_chunk: usize::MAX, ..DecoderLimits::default() });
    decoder.feed(bytes.clone());
    let chunk = match decoder.poll_chunk(None) {
        Some(Ok(chunk)) => chunk,
        Some(Err(error)) => return Err(format!("does not decode: {error}")),
        None => return Ok(None),
    };
    if !decoder.is_idle() {
        return Err("holds more than one chunk".to_owned());
    }
    Ok(Some(chunk))
}

/// The head of the first transmit of a chunk that leaves in several.
fn decode_head(bytes: &Bytes) -> Option<Chunk> {
    let mut decoder = Decoder::new(DecoderLimits { max_whole_chunk: usize::MAX, ..DecoderLimits::default() });
    decoder.feed(bytes.clone());
    match decoder.poll() {
        Some(Ok(Decoded::Head(head))) => Some(head),
        _ => None,
    }
}

/// A message the application started.
struct Sent {
    id: OutgoingId,
    message_id: String,
    /// The bytes given to the engine (after `position`).
    data: BytesMut,
    /// Whether `Delivered` means the peer got every byte: its Message-ID is its own, it
    /// starts at byte 1 and has `Failure-Report: yes` (so no 200 is made locally).
    checked_delivery: bool,
    /// Its size when known (for REPORTs about it).
    size: Option<u64>,
    wants_report: bool,
    /// `abort_message` succeeded before it ended.
    aborted: bool,
    outcome: Option<MessageOutcome>,
    report_missing: bool,
}

/// A request of `send_chunk` or `deliver_chunk`.
struct Asked {
    /// Not a REPORT, and not a `deliver_chunk` that said none will come.
    expects_response: bool,
    responses: u32,
}

/// One engine with everything the harness observed of it.
struct Endpoint {
    name: &'static str,
    session: Session,
    /// This engine's URI (To-Path of what it receives) and its peer's.
    local: &'static str,
    remote: &'static str,
    watermark: u64,
    /// Report every transmit written as soon as it comes.
    auto_written: bool,
    /// Transmitted bytes the adapter has not written yet.
    send_buffer: VecDeque<Bytes>,
    /// The transmits of a chunk whose end-line has not come yet, and `unwritten()` before
    /// the first of them.
    chunk_so_far: BytesMut,
    unwritten_before_chunk: u64,
    transmitted: u64,
    written: u64,
    /// Responses and REPORTs of the engine handed out and not yet all written: (stream
    /// offset of their end, length).
    reply_marks: VecDeque<(u64, u64)>,
    unwritten_replies: u64,
    received: u64,
    commands: u64,
    events: u64,
    bound_events: u32,
    saw_closed: bool,
    saw_close_output: bool,
    /// The engine got `Input::Closed`.
    connection_gone: bool,
    /// `Input::Closed` closed the engine (so it owes no `Output::Close`).
    closed_by_input: bool,
    /// Reads the bytes the engine reads, to see which responses it got.
    reader: Decoder,
    /// Requests transmitted (not REPORTs) and not answered by a response read since.
    unanswered: BTreeSet<String>,
    /// Transaction ids of the latest requests transmitted, newest first.
    recent_requests: VecDeque<String>,
    messages: Vec<Sent>,
    requests: BTreeMap<RequestId, Asked>,
    last_request: Option<Chunk>,
    last_incoming: Option<Chunk>,
    /// Incoming chunks of the peer's messages with unique Message-IDs: (first byte, body).
    incoming: BTreeMap<String, Vec<(u64, Bytes)>>,
    /// Counter for unique ids made by the harness.
    unique: u32,
}

impl Endpoint {
    fn new(name: &'static str, config: SessionConfig, seed: u64, now: Instant, auto_written: bool) -> Self {
        let local = if config.local_path[0] == uri(ALICE) { ALICE } else { BOB };
        let remote = if local == ALICE { BOB } else { ALICE };
        let reader = Decoder::new(config.decoder_limits);
        let session = Session::new(config, IdGenerator::seed_from_u64(seed), now).expect("valid configuration");
        // The engine raises settings that would stall it; what it uses is what counts.
        let watermark = session.config().write_high_watermark as u64;
        Self {
            name,
            session,
            local,
            remote,
            watermark,
            auto_written,
            send_buffer: VecDeque::new(),
            chunk_so_far: BytesMut::new(),
            unwritten_before_chunk: 0,
            transmitted: 0,
            written: 0,
            reply_marks: VecDeque::new(),
            unwritten_replies: 0,
            received: 0,
            commands: 0,
            events: 0,
            bound_events: 0,
            saw_closed: false,
            saw_close_output: false,
            connection_gone: false,
            closed_by_input: false,
            reader,
            unanswered: BTreeSet::new(),
            recent_requests: VecDeque::new(),
            messages: Vec::new(),
            requests: BTreeMap::new(),
            last_request: None,
            last_incoming: None,
            incoming: BTreeMap::new(),
            unique: 0,
        }
    }

    fn input(&mut self, now: Instant, input: Input) {
        if !self.session.is_closed() {
            match &input {
                Input::Received(data) => {
                    self.received += data.len() as u64;
                    self.read_along(data.clone());
                }
                Input::Written(n) => {
                    self.written = self.written.saturating_add(*n as u64).min(self.transmitted);
                    while let Some(&(end, len)) = self.reply_marks.front() {
                        if end > self.written {
                            break;
                        }
                        self.reply_marks.pop_front();
                        self.unwritten_replies -= len;
                    }
                }
                Input::Connected | Input::Closed => {}
            }
        }
        if input == Input::Closed {
            self.connection_gone = true;
            self.closed_by_input |= !self.session.is_closed();
        }
        match &input {
            Input::Received(data) => trace!("{} <- {:?}", self.name, String::from_utf8_lossy(data)),
            other => trace!("{} <- {other:?}", self.name),
        }
        self.session.handle_input(now, input);
    }

    /// Decodes what the engine reads, as the engine does, and notes the responses.
    fn read_along(&mut self, data: Bytes) {
        self.reader.feed(data);
        while let Some(item) = self.reader.poll() {
            if let Ok(Decoded::Head(head)) = item
                && !head.is_request()
            {
                self.unanswered.remove(&head.transaction_id);
            }
        }
    }

    fn buffered(&self) -> usize {
        self.send_buffer.iter().map(Bytes::len).sum()
    }

    /// The adapter wrote up to `n` buffered bytes (they go to `wire`) and says so with
    /// `Written(reported)`.
    fn write(&mut self, now: Instant, n: usize, reported: usize, wire: &mut VecDeque<Bytes>) {
        let mut left = n;
        while left > 0 {
            let Some(front) = self.send_buffer.front_mut() else { break };
            let take = left.min(front.len());
            wire.push_back(front.split_to(take));
            if front.is_empty() {
                self.send_buffer.pop_front();
            }
            left -= take;
        }
        self.input(now, Input::Written(reported));
    }

    /// `handle_timeout`, then the contract that the next timeout is later.
    fn fire(&mut self, now: Instant) {
        trace!("{} handle_timeout", self.name);
        self.session.handle_timeout(now);
        if let Some(next) = self.session.poll_timeout().filter(|&next| next <= now) {
            let behind = now.duration_since(next);
            violated!("{}: right after handle_timeout(now), poll_timeout() is {behind:?} before or at now", self.name);
        }
    }

    /// Drains `poll_output` and checks what comes; written bytes go to `wire`.
    fn drain(&mut self, now: Instant, wire: &mut VecDeque<Bytes>) {
        for _ in 0..MAX_OUTPUTS_PER_DRAIN {
            let unwritten = self.session.unwritten();
            let Some(output) = self.session.poll_output(now) else {
                self.check_quiet();
                return;
            };
            if self.saw_close_output {
                violated!("{}: {output:?} after Output::Close", self.name);
            }
            match &output {
                Output::Transmit(transmit) => {
                    let head = String::from_utf8_lossy(&transmit.parts[0]);
                    trace!("{} -> transmit {} bytes: {:?}", self.name, transmit.len(), head.lines().next());
                }
                other => trace!("{} -> {other:?}", self.name),
            }
            match output {
                Output::Transmit(transmit) => self.on_transmit(now, transmit, unwritten, wire),
                Output::Event(event) => self.on_event(event),
                Output::Close => {
                    if !self.saw_closed {
                        violated!("{}: Output::Close before Event::Closed", self.name);
                    }
                    self.saw_close_output = true;
                    // "Write what was transmitted, then close the connection."
                    wire.extend(self.send_buffer.drain(..));
                }
            }
        }
        violated!("{}: poll_output did not return None after {MAX_OUTPUTS_PER_DRAIN} outputs", self.name);
    }

    fn on_transmit(&mut self, now: Instant, transmit: Transmit, unwritten_before: u64, wire: &mut VecDeque<Bytes>) {
        if self.saw_closed {
            violated!("{}: transmit after Event::Closed: {transmit:?}", self.name);
        }
        let len = transmit.len();
        self.transmitted += len as u64;
        let unwritten = self.session.unwritten();
        if unwritten != unwritten_before + len as u64 {
            violated!(
                "{}: unwritten() went from {unwritten_before} to {unwritten} with a {len}-byte transmit",
                self.name
            );
        }
        let mut joined = BytesMut::with_capacity(len);
        for part in &transmit.parts {
            joined.extend_from_slice(part);
        }
        let bytes = joined.freeze();
        let first = self.chunk_so_far.is_empty();
        if first {
            self.unwritten_before_chunk = unwritten_before;
        }
        self.chunk_so_far.extend_from_slice(&bytes);
        let so_far = self.chunk_so_far.clone().freeze();
        let decoded = decode_transmit(&so_far).unwrap_or_else(|problem| {
            violated!("{}: a transmit {problem}: {:?}", self.name, String::from_utf8_lossy(&so_far))
        });
        let Some(chunk) = decoded else {
            // A piece of a large chunk (a SEND); the rest follows in the next transmits. Its
            // transaction is open from its head on.
            if first {
                match decode_head(&so_far) {
                    Some(head) if head.method() == Some(&Method::Send) => self.note_request(&head),
                    _ => violated!("{}: a transmit starts no SEND and ends no chunk", self.name),
                }
            }
            self.send_buffer.push_back(bytes);
            if self.auto_written {
                self.write(now, len, len, wire);
            }
            return;
        };
        self.chunk_so_far.clear();
        let unwritten_before = self.unwritten_before_chunk;
        let is_reply = !chunk.is_request()
            || (chunk.method() == Some(&Method::Report) && chunk.headers.get(&app_marker()).is_none());
        if is_reply {
            self.reply_marks.push_back((self.transmitted, len as u64));
            self.unwritten_replies += len as u64;
        }
        if first && chunk.is_request() && chunk.method() != Some(&Method::Report) {
            self.note_request(&chunk);
        }
        let is_message_chunk = chunk.method() == Some(&Method::Send)
            && chunk.message_id().is_some_and(|id| id.starts_with(MESSAGE_PREFIX));
        if is_message_chunk && unwritten_before >= self.watermark {
            violated!(
                "{}: a message chunk was cut with {unwritten_before} bytes unwritten, at or over the write high watermark {}",
                self.name,
                self.watermark
            );
        }
        self.send_buffer.push_back(bytes);
        if self.auto_written {
            self.write(now, len, len, wire);
        }
    }

    /// A request that expects a response went out (its head).
    fn note_request(&mut self, request: &Chunk) {
        self.unanswered.insert(request.transaction_id.clone());
        self.recent_requests.push_front(request.transaction_id.clone());
        self.recent_requests.truncate(8);
    }

    fn sent_mut(&mut self, id: OutgoingId) -> &mut Sent {
        let name = self.name;
        self.messages
            .iter_mut()
            .find(|sent| sent.id == id)
            .unwrap_or_else(|| violated!("{name}: an event names message {id:?}, which the application never started"))
    }

    fn on_event(&mut self, event: Event) {
        if self.saw_closed {
            violated!("{}: {event:?} after Event::Closed", self.name);
        }
        self.events += 1;
        let name = self.name;
        match event {
            Event::Bound => {
                self.bound_events += 1;
                if self.bound_events > 1 {
                    violated!("{name}: a second Event::Bound");
                }
            }
            Event::Incoming(chunk) => {
                if let Some(message_id) = chunk.message_id().filter(|id| id.starts_with(UNIQUE_PREFIX)) {
                    let start = chunk.byte_range().map_or(1, |range| range.start);
                    self.incoming.entry(message_id.to_owned()).or_default().push((start, chunk.data.clone()));
                }
                self.last_incoming = Some(chunk);
            }
            Event::Request(chunk) => self.last_request = Some(chunk),
            Event::Response { request, response, local } => {
                let asked = self
                    .requests
                    .get_mut(&request)
                    .unwrap_or_else(|| violated!("{name}: Event::Response for unknown request {request:?}"));
                if !asked.expects_response {
                    violated!("{name}: request {request:?} expects no response but got {response:?} (local {local})");
                }
                asked.responses += 1;
                if asked.responses > 1 {
                    violated!("{name}: request {request:?} got a second response: {response:?} (local {local})");
                }
            }
            Event::MessageDone { message, message_id, outcome } => {
                let sent = self.sent_mut(message);
                if let Some(first) = &sent.outcome {
                    violated!("{name}: a second MessageDone for {message:?}: {first:?}, then {outcome:?}");
                }
                if sent.message_id != message_id {
                    violated!(
                        "{name}: MessageDone for {message:?} says Message-ID {message_id}, not {}",
                        sent.message_id
                    );
                }
                if sent.aborted && outcome == MessageOutcome::Delivered {
                    violated!("{name}: message {message:?} was aborted but ended Delivered");
                }
                sent.outcome = Some(outcome);
            }
            Event::Writable { message } => {
                if let Some(outcome) = &self.sent_mut(message).outcome {
                    violated!("{name}: Writable for message {message:?}, which ended {outcome:?}");
                }
            }
            Event::ReportMissing { message, .. } => {
                let sent = self.sent_mut(message);
                if sent.outcome != Some(MessageOutcome::Delivered) || !sent.wants_report || sent.report_missing {
                    violated!(
                        "{name}: ReportMissing for message {message:?} (ended {:?}, wants a report: {}, said before: {})",
                        sent.outcome,
                        sent.wants_report,
                        sent.report_missing
                    );
                }
                sent.report_missing = true;
            }
            Event::Report { message: Some(message), .. } => {
                self.sent_mut(message);
            }
            Event::Closed { .. } => {
                self.saw_closed = true;
                if !self.session.is_closed() {
                    violated!("{name}: Event::Closed but is_closed() is false");
                }
            }
            _ => {}
        }
    }

    /// What must hold whenever the output is drained.
    fn check_quiet(&self) {
        let name = self.name;
        let session = &self.session;
        if session.is_closed() {
            if !self.saw_closed {
                violated!("{name}: closed, drained, and no Event::Closed");
            }
            if let Some(deadline) = session.poll_timeout() {
                violated!("{name}: closed with a timeout {deadline:?}");
            }
            if session.pending_transactions() != 0 {
                violated!("{name}: closed with {} pending transactions", session.pending_transactions());
            }
            if !self.closed_by_input && !self.saw_close_output {
                violated!("{name}: closed by itself, drained, and no Output::Close");
            }
        }
        // Drained, so no event waits: only closing and unwritten replies stop reading.
        let wants_read = !session.is_closed() && self.unwritten_replies <= self.watermark;
        if session.wants_read() != wants_read {
            violated!(
                "{name}: wants_read() is {} with {} reply bytes unwritten (watermark {}, closed {})",
                session.wants_read(),
                self.unwritten_replies,
                self.watermark,
                session.is_closed()
            );
        }
        let expected = self.transmitted - self.written;
        if session.unwritten() != expected {
            violated!("{name}: unwritten() is {}, expected {expected}", session.unwritten());
        }
        if session.pending_transactions() > self.unanswered.len() {
            violated!(
                "{name}: {} pending transactions, but only {} requests were transmitted and not answered",
                session.pending_transactions(),
                self.unanswered.len()
            );
        }
        let budget = 2 * self.received + 3 * self.commands + 8;
        if self.events > budget {
            violated!("{name}: {} events for {} bytes read and {} commands", self.events, self.received, self.commands);
        }
    }

    /// What must hold at the end: the engine closed and everything it owed was said.
    fn check_final(&self) {
        let name = self.name;
        if !self.session.is_closed() || !self.saw_closed {
            violated!("{name}: still open after the finale");
        }
        for sent in &self.messages {
            if sent.outcome.is_none() {
                violated!("{name}: message {:?} ({}) never got MessageDone", sent.id, sent.message_id);
            }
        }
        for (request, asked) in &self.requests {
            if asked.expects_response && asked.responses != 1 {
                violated!("{name}: request {request:?} got {} responses by the close", asked.responses);
            }
        }
    }

    /// A command's result against the state: refused with `Closed` exactly when closed.
    fn check_refusal(&self, was_closed: bool, error: Option<&SendError>, command: &str) {
        let refused_closed = matches!(error, Some(SendError::Closed));
        if was_closed != refused_closed {
            violated!("{}: {command} on a session closed={was_closed} gave {error:?}", self.name);
        }
    }

    fn message_options(&mut self, r: &mut Reader) -> (MessageOptions, bool) {
        let flags = r.byte();
        let position = r.byte();
        let mut headers = Headers::new();
        // Without one, a message with a body is refused (`SendError::MissingContentType`).
        if position & 0x40 == 0 {
            let content_type =
                ["text/plain", "message/cpim", "application/octet-stream", "image/png"][usize::from(flags & 3)];
            headers.set(HeaderName::ContentType, content_type);
        }
        let success = [None, Some("yes"), Some("no"), Some("yes")][usize::from((flags >> 2) & 3)];
        if let Some(value) = success {
            headers.set(HeaderName::SuccessReport, value);
        }
        if let Some(value) = [None, Some("yes"), Some("no"), Some("partial")][usize::from((flags >> 4) & 3)] {
            headers.set(HeaderName::FailureReport, value);
        }
        // Two shared Message-IDs (a resend keeps its id) or a fresh one.
        let message_id = if flags & 0x80 == 0 {
            format!("{MESSAGE_PREFIX}{}", (flags >> 6) & 1)
        } else {
            self.unique += 1;
            format!("{UNIQUE_PREFIX}{}", self.unique)
        };
        let position = if position & 0x80 != 0 { u64::from(position & 0x0f) } else { 0 };
        let options = MessageOptions { message_id: Some(message_id), headers, total: None, position };
        (options, success == Some("yes"))
    }

    fn track(&mut self, id: OutgoingId, options: &MessageOptions, size: Option<u64>, wants_report: bool, data: &[u8]) {
        if self.messages.iter().any(|sent| sent.id == id) {
            violated!("{}: the engine gave out message id {id:?} twice", self.name);
        }
        let message_id = options.message_id.clone().unwrap_or_default();
        let failure_report = options.headers.get(&HeaderName::FailureReport);
        self.messages.push(Sent {
            id,
            checked_delivery: message_id.starts_with(UNIQUE_PREFIX)
                && options.position == 0
                && failure_report.is_none_or(|value| value.as_str() == "yes"),
            message_id,
            data: BytesMut::from(data),
            size,
            wants_report,
            aborted: false,
            outcome: None,
            report_missing: false,
        });
    }

    fn message_size(&self, value: u16) -> usize {
        let largest = MAX_MESSAGE.min(MAX_CHUNKS * self.session.config().max_chunk_size);
        usize::from(value) % (largest + 1)
    }

    fn pick_message(&self, r: &mut Reader) -> Option<OutgoingId> {
        let index = usize::from(r.byte());
        (!self.messages.is_empty()).then(|| self.messages[index % self.messages.len()].id)
    }

    fn send_message(&mut self, now: Instant, r: &mut Reader) {
        let (options, wants_report) = self.message_options(r);
        let size = self.message_size(r.u16());
        let data = body(size, r.byte());
        self.commands += 1;
        let was_closed = self.session.is_closed();
        let total = options.position + data.len() as u64;
        match self.session.send_message(now, options.clone(), data.clone()) {
            Ok(id) => self.track(id, &options, Some(total), wants_report, &data),
            Err(error) => self.check_refusal(was_closed, Some(&error), "send_message"),
        }
    }

    fn start_message(&mut self, now: Instant, r: &mut Reader) {
        let as_file = r.byte() & 1 != 0;
        let (options, wants_report) = self.message_options(r);
        let total = r.u16();
        let total = (total & 0x8000 != 0).then(|| self.message_size(total & 0x7fff) as u64);
        self.commands += 1;
        let was_closed = self.session.is_closed();
        let result = if as_file {
            let file = OutgoingFile {
                size: total.unwrap_or(0),
                content_type: Some("application/octet-stream".to_owned()),
                position: options.position,
                message_id: options.message_id.clone(),
                headers: options.headers.clone(),
            };
            self.session.send_file(now, &file).map(|id| (id, Some(file.size)))
        } else {
            let mut options = MessageOptions { total, ..options.clone() };
            if known("start-position-past-total") {
                // `start-position-past-total`: `start_message` takes a `position` past `total`
                // (`send_file` clamps it) and cuts a chunk with an invalid Byte-Range.
                options.position = options.position.min(total.unwrap_or(u64::MAX));
            }
            self.session.start_message(now, options).map(|id| (id, total))
        };
        match result {
            Ok((id, size)) => self.track(id, &options, size, wants_report, &[]),
            Err(error) => self.check_refusal(was_closed, Some(&error), "start_message"),
        }
    }

    fn write_message(&mut self, now: Instant, r: &mut Reader) {
        let id = self.pick_message(r);
        let size = self.message_size(r.u16());
        let data = body(size, r.byte());
        let Some(id) = id else { return };
        self.commands += 1;
        let was_closed = self.session.is_closed();
        match self.session.write_message(now, id, data.clone()) {
            Ok(taken) if taken > size => violated!("{}: write_message took {taken} of {size} bytes", self.name),
            Ok(taken) => {
                self.check_refusal(was_closed, None, "write_message");
                self.sent_mut(id).data.extend_from_slice(&data[..taken]);
            }
            Err(error) => self.check_refusal(was_closed, Some(&error), "write_message"),
        }
    }

    fn finish_message(&mut self, now: Instant, r: &mut Reader) {
        let Some(id) = self.pick_message(r) else { return };
        self.commands += 1;
        let was_closed = self.session.is_closed();
        let result = self.session.finish_message(now, id);
        self.check_refusal(was_closed, result.as_ref().err(), "finish_message");
    }

    fn abort_message(&mut self, now: Instant, r: &mut Reader) {
        let Some(id) = self.pick_message(r) else { return };
        self.commands += 1;
        let was_closed = self.session.is_closed();
        let result = self.session.abort_message(now, id);
        self.check_refusal(was_closed, result.as_ref().err(), "abort_message");
        if result.is_ok() {
            let sent = self.sent_mut(id);
            if sent.outcome.is_none() {
                sent.aborted = true;
            }
        }
    }

    fn send_chunk(&mut self, now: Instant, r: &mut Reader) {
        let [kind, tid, len, flags] = [r.byte(), r.byte(), r.byte(), r.byte()];
        let method = match kind % 5 {
            0 => Method::Send,
            1 => Method::Report,
            2 => Method::Nickname,
            3 => Method::Auth,
            _ => Method::from_bytes(b"FUZZ").expect("a valid method name"),
        };
        let expects_response = method != Method::Report;
        let data = body(usize::from(len), flags);
        // Four transaction ids the application reuses, or a fresh one.
        let transaction_id = (tid < 0xc0).then(|| format!("fzq{}", tid % 4));
        let message_id = match method {
            Method::Send => {
                self.unique += 1;
                Some(format!("fz-q{}", self.unique))
            }
            Method::Report => Some(
                self.last_incoming
                    .as_ref()
                    .and_then(|chunk| chunk.message_id().map(str::to_owned))
                    .unwrap_or_else(|| "pmsg0".to_owned()),
            ),
            _ => None,
        };
        let has_data = !data.is_empty();
        let params =
            ChunkParams { transaction_id, method: Some(method.clone()), data, message_id, ..ChunkParams::default() };
        let mut chunk = self.session.transport_mut().make_chunk(params);
        if has_data && flags & 0x02 == 0 {
            chunk.headers.set(HeaderName::ContentType, "text/plain");
        }
        if let Some(value) = [None, Some("yes"), Some("no"), Some("partial")][usize::from((flags >> 2) & 3)] {
            chunk.headers.set(HeaderName::FailureReport, value);
        }
        chunk.headers.set(app_marker(), "yes");
        match method {
            Method::Report if flags & 0x10 == 0 => {
                chunk.headers.set(HeaderName::Status, "000 200 OK");
                chunk.headers.set(HeaderName::ByteRange, format!("1-{len}/{len}"));
            }
            Method::Nickname if flags & 0x10 == 0 => chunk.headers.set(HeaderName::UseNickname, "\"fuzzer\""),
            _ => {}
        }
        self.commands += 1;
        let was_closed = self.session.is_closed();
        let result = if flags & 0x20 == 0 {
            self.session.send_chunk(now, chunk).map(|request| Some((request, expects_response)))
        } else {
            // `None`: no response will come (a REPORT, or `Failure-Report: no`).
            self.session.deliver_chunk(now, chunk).map(|request| request.map(|request| (request, true)))
        };
        match result {
            Ok(Some((request, expects_response))) => {
                if self.requests.insert(request, Asked { expects_response, responses: 0 }).is_some() {
                    violated!("{}: send_chunk gave out {request:?} twice", self.name);
                }
            }
            Ok(None) => self.check_refusal(was_closed, None, "deliver_chunk"),
            Err(error) => self.check_refusal(was_closed, Some(&error), "send_chunk"),
        }
    }

    /// Answers the last NICKNAME, or answers or reports on the last incoming SEND.
    fn respond(&mut self, now: Instant, r: &mut Reader) {
        let which = r.byte();
        let code = r.pick(&REPLY_CODES);
        let comment = (which & 4 != 0).then(|| "Fuzzed".to_owned());
        let target = if which & 1 == 0 { self.last_request.clone() } else { self.last_incoming.clone() };
        let Some(chunk) = target else { return };
        self.commands += 1;
        let was_closed = self.session.is_closed();
        let result = if which & 3 == 3 && !chunk.data.is_empty() {
            // The bytes of this chunk; `send_report` writes the range it is given as it is.
            let start = chunk.byte_range().map_or(1, |range| range.start);
            let end = start + chunk.data.len() as u64 - 1;
            let total = chunk.byte_range().and_then(|range| range.total).filter(|&total| total >= end);
            self.session.send_report(now, &chunk, code, comment, ByteRange::new(start, Some(end), total))
        } else {
            self.session.send_response(now, &chunk, code, comment)
        };
        self.check_refusal(was_closed, result.as_ref().err(), "send_response/send_report");
    }
}

/// Bytes a peer could send to the solo engine, from a template with fuzzed fields.
fn peer_bytes(r: &mut Reader, endpoint: &Endpoint) -> Vec<u8> {
    let kind = r.byte() % 9;
    let route = r.byte();
    let (to, from) = match route % 8 {
        5 => (STRANGER.to_owned(), endpoint.remote.to_owned()),
        6 => (format!("{} {}", endpoint.remote, endpoint.local), endpoint.remote.to_owned()),
        7 => (endpoint.local.to_owned(), MALLORY.to_owned()),
        _ => (endpoint.local.to_owned(), endpoint.remote.to_owned()),
    };
    let tid_choice = r.byte();
    let recent = &endpoint.recent_requests;
    let own_tid = (!recent.is_empty()).then(|| recent[usize::from(tid_choice) % recent.len()].clone());
    let peer_tid = format!("peer{}", tid_choice % 8);
    let mut text = String::new();
    let mut body_bytes = Bytes::new();
    let tid;
    let flag;
    match kind {
        // A SEND, with or without a body.
        0..=2 => {
            tid = if tid_choice >= 0xf0 { own_tid.unwrap_or(peer_tid) } else { peer_tid };
            let [shape, len, range, seed, ids] = [r.byte(), r.byte(), r.byte(), r.byte(), r.byte()];
            let len = if shape & 0x80 != 0 { u64::from(len) * 16 } else { u64::from(len) };
            flag = ['$', '+', '#', '$'][usize::from(shape & 3)];
            let content_type =
                [Some("text/plain"), Some("image/png"), None, Some("text/plain")][usize::from((shape >> 2) & 3)];
            let start = match range & 3 {
                0 => 1,
                1 => 1 + len,
                2 => 1 + u64::from(seed) * 7,
                _ => 0,
            };
            let last = (start + len).saturating_sub(1);
            let end = match (range >> 2) & 3 {
                1 => "*".to_owned(),
                2 => (last + 1).to_string(),
                _ => last.to_string(),
            };
            let total = match (range >> 4) & 3 {
                0 => last.to_string(),
                1 => "*".to_owned(),
                2 => (last + 100).to_string(),
                _ => (len / 2).to_string(),
            };
            let _ = write!(
                text,
                "MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: pmsg{}\r\n",
                ids % 4
            );
            if range & 0x40 == 0 {
                let _ = write!(text, "Byte-Range: {start}-{end}/{total}\r\n");
            }
            if range & 0x80 != 0 {
                text.push_str("Keep-Alive: yes\r\n");
            }
            if let Some(value) = [None, Some("yes"), Some("no"), Some("yes")][usize::from((ids >> 2) & 3)] {
                let _ = write!(text, "Success-Report: {value}\r\n");
            }
            if let Some(value) = [None, Some("yes"), Some("no"), Some("partial")][usize::from((ids >> 4) & 3)] {
                let _ = write!(text, "Failure-Report: {value}\r\n");
            }
            if let Some(content_type) = content_type {
                let _ = write!(text, "Content-Type: {content_type}\r\n");
            }
            if content_type.is_some() || len > 0 {
                text.push_str("\r\n");
                body_bytes = body(len as usize, seed);
            }
        }
        // A response to one of the engine's requests (or to a transaction id it never used).
        3..=5 => {
            tid = if tid_choice >= 0xf8 { peer_tid } else { own_tid.unwrap_or(peer_tid) };
            flag = '$';
            let code = r.pick(&RESPONSE_CODES);
            let comment = if r.byte() & 1 == 0 { " Fuzzed" } else { "" };
            let _ = write!(text, "MSRP {tid} {code:03}{comment}\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\n");
        }
        // A REPORT about one of the engine's messages or a stranger's.
        6 => {
            tid = peer_tid;
            flag = '$';
            let [about, status, range] = [r.byte(), r.byte(), r.byte()];
            let ours = (about & 1 != 0 && !endpoint.messages.is_empty())
                .then(|| &endpoint.messages[usize::from(about >> 1) % endpoint.messages.len()]);
            let message_id = ours.map_or_else(|| format!("pmsg{}", about % 4), |sent| sent.message_id.clone());
            let size = ours.and_then(|sent| sent.size).unwrap_or(u64::from(range));
            let code = REPORT_CODES[usize::from(status) % REPORT_CODES.len()];
            let _ =
                write!(text, "MSRP {tid} REPORT\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: {message_id}\r\n");
            match range % 4 {
                0 => {
                    let _ = write!(text, "Byte-Range: 1-{size}/{size}\r\n");
                }
                1 => {}
                2 => {
                    let _ = write!(text, "Byte-Range: 1-{}/{size}\r\n", size / 2);
                }
                _ => text.push_str("Byte-Range: 1-*/*\r\n"),
            }
            let _ = write!(text, "Status: 000 {code} Fuzzed\r\n");
        }
        // A NICKNAME, with or without Use-Nickname.
        7 => {
            tid = peer_tid;
            flag = '$';
            let _ = write!(text, "MSRP {tid} NICKNAME\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\n");
            if r.byte() & 1 == 0 {
                text.push_str("Use-Nickname: \"bob\"\r\n");
            }
        }
        // A method the engine does not implement.
        _ => {
            tid = peer_tid;
            flag = '$';
            let method = if r.byte() & 1 == 0 { "AUTH" } else { "FROB" };
            let _ = write!(text, "MSRP {tid} {method}\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\n");
        }
    }
    let mut out = text.into_bytes();
    if !body_bytes.is_empty() || out.ends_with(b"\r\n\r\n") {
        out.extend_from_slice(&body_bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("-------{tid}{flag}\r\n").as_bytes());
    out
}

/// The engines, the clock and the bytes between the engines.
struct World {
    now: Instant,
    paired: bool,
    endpoints: Vec<Endpoint>,
    /// `links[i]` holds bytes written by the other engine and not yet read by engine `i`
    /// (without a second engine, `links[1]` takes what the solo engine writes).
    links: [VecDeque<Bytes>; 2],
    /// Largest read of `run`.
    split: usize,
    /// Reads of `run` smaller than a chunk head that this input may still make; past
    /// them `run` reads whole buffers, so that one input stays fast.
    small_reads_left: usize,
}

impl World {
    fn new(plan: &Plan) -> Self {
        let now = Instant::now();
        let mut endpoints = vec![Endpoint::new("alice", plan.config.clone(), 1, now, plan.auto_written)];
        if plan.paired {
            let mut config = plan.config.clone();
            config.role = plan.roles[1];
            config.local_path = vec![uri(BOB)];
            config.remote_path = vec![uri(ALICE)];
            endpoints.push(Endpoint::new("bob", config, 2, now, plan.auto_written));
        }
        let mut world = Self {
            now,
            paired: plan.paired,
            endpoints,
            links: Default::default(),
            split: usize::MAX,
            small_reads_left: MAX_SMALL_READS,
        };
        if plan.paired {
            for endpoint in &mut world.endpoints {
                endpoint.input(now, Input::Connected);
            }
        }
        world.settle();
        world
    }

    /// Drains every engine; an engine that closed the connection has written what it
    /// had, and its peer sees the connection close once it has read that.
    fn settle(&mut self) {
        loop {
            for (i, endpoint) in self.endpoints.iter_mut().enumerate() {
                endpoint.drain(self.now, &mut self.links[1 - i]);
            }
            if !self.paired {
                self.links[1].clear();
                return;
            }
            let mut changed = false;
            for i in 0..2 {
                let peer = 1 - i;
                if self.endpoints[i].saw_close_output
                    && self.links[peer].is_empty()
                    && !self.endpoints[peer].connection_gone
                {
                    self.endpoints[peer].input(self.now, Input::Closed);
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// Engine `side` reads up to `n` bytes of what the other wrote.
    fn deliver(&mut self, side: usize, n: usize) -> bool {
        let link = &mut self.links[side];
        if link.is_empty() {
            return false;
        }
        let mut data = BytesMut::new();
        while data.len() < n {
            let Some(front) = link.front_mut() else { break };
            let take = (n - data.len()).min(front.len());
            data.extend_from_slice(&front.split_to(take));
            if front.is_empty() {
                link.pop_front();
            }
        }
        self.endpoints[side].input(self.now, Input::Received(data.freeze()));
        true
    }

    /// Solo: the engine reads `data` in pieces of `split` bytes (0: at once).
    fn feed(&mut self, data: &[u8], split: u8) {
        let data = Bytes::copy_from_slice(data);
        let piece = if split == 0 { data.len().max(1) } else { usize::from(split) };
        for start in (0..data.len()).step_by(piece) {
            let end = (start + piece).min(data.len());
            self.endpoints[0].input(self.now, Input::Received(data.slice(start..end)));
            self.settle();
        }
    }

    /// Pair: writes and reads (reads of at most `split` bytes, while the reader wants to
    /// read) until nothing moves; time stands still.
    fn run(&mut self) {
        if !self.paired {
            return;
        }
        for _ in 0..MAX_RUN_ROUNDS {
            let mut moved = false;
            for (i, endpoint) in self.endpoints.iter_mut().enumerate() {
                let buffered = endpoint.buffered();
                if buffered > 0 && !endpoint.session.is_closed() {
                    endpoint.write(self.now, buffered, buffered, &mut self.links[1 - i]);
                    moved = true;
                }
            }
            for side in 0..2 {
                let mut split = self.split;
                if split < SMALL_READ {
                    if self.small_reads_left == 0 {
                        split = usize::MAX;
                    } else {
                        self.small_reads_left -= 1;
                    }
                }
                if self.endpoints[side].session.wants_read() && self.deliver(side, split) {
                    moved = true;
                }
            }
            self.settle();
            if !moved {
                return;
            }
        }
        violated!("the pair did not go quiet after {MAX_RUN_ROUNDS} rounds");
    }

    /// Moves the clock forward, firing every timeout on the way in order (running the
    /// pair between them, with whole reads, when `with_run`).
    fn advance(&mut self, duration: Duration, with_run: bool) {
        let until = self.now + duration;
        let split = std::mem::replace(&mut self.split, usize::MAX);
        let mut fires_now = 0;
        loop {
            if with_run {
                self.run();
            }
            let next = self.endpoints.iter().filter_map(|e| e.session.poll_timeout()).min().filter(|&t| t <= until);
            let Some(next) = next else { break };
            if next <= self.now {
                fires_now += 1;
                if fires_now > MAX_FIRES_PER_INSTANT {
                    violated!("timeouts keep falling due at the same instant");
                }
            } else {
                self.now = next;
                fires_now = 0;
            }
            for endpoint in &mut self.endpoints {
                endpoint.fire(self.now);
            }
            self.settle();
        }
        self.now = until;
        if with_run {
            self.run();
        }
        self.split = split;
    }

    /// Jumps the clock and calls `handle_timeout` once.
    fn jump(&mut self, duration: Duration) {
        self.now += duration;
        for endpoint in &mut self.endpoints {
            endpoint.fire(self.now);
        }
        self.settle();
    }

    fn connection_lost(&mut self) {
        for link in &mut self.links {
            link.clear();
        }
        for endpoint in &mut self.endpoints {
            endpoint.input(self.now, Input::Closed);
        }
    }

    /// Reads and runs one operation (arguments in brackets):
    ///
    /// | op | one engine | back to back |
    /// |----|------------|--------------|
    /// | 0 | `Connected` | `Connected` |
    /// | 1 | read raw bytes [len, bytes] | read [n] bytes of what the peer wrote |
    /// | 2, 18 | read a peer template ([`peer_bytes`]) [.., piece size] | `run` [read size] |
    /// | 3 | `Written(n)` [n, 255: all] (may claim more than transmitted) | write [n, 255: all] |
    /// | 19 | write all | write all |
    /// | 4 | `Closed` | the connection is lost on both sides |
    /// | 5 | advance the clock, firing timers in order [ms u16, bit 15: run between] | same |
    /// | 6 | jump the clock, then one `handle_timeout` [ms u16] | same |
    /// | 7 | `send_message` [flags, position, size u16, body] | same |
    /// | 8 | `start_message` or `send_file` [kind, flags, position, total u16] | same |
    /// | 9, 10, 11 | `write_message` [message, size u16, body], `finish_message`, `abort_message` [message] | same |
    /// | 12 | `send_chunk` or `deliver_chunk` [method, tid, body len, flags] | same |
    /// | 13, 14 | `shutdown`, `close` | same |
    /// | 15 | answer the last request or incoming chunk, or `send_report` on it [which, code] | same |
    /// | 16 | toggle writing every transmit at once | same |
    /// | 17 | `handle_timeout` now | same |
    /// | 20 | `set_accept_types` [which] | same |
    fn step(&mut self, r: &mut Reader) {
        let code = r.byte();
        let side = if self.paired { usize::from(code >> 7) } else { 0 };
        let now = self.now;
        trace!("op {} on {}", (code & 0x7f) % OPERATIONS, self.endpoints[side].name);
        match (code & 0x7f) % OPERATIONS {
            0 => self.endpoints[side].input(now, Input::Connected),
            1 if self.paired => {
                let n = usize::from(r.byte()).max(1);
                self.deliver(side, n);
            }
            1 => {
                let len = usize::from(r.byte());
                let data = r.bytes(len);
                self.feed(data, 0);
            }
            2 | 18 if self.paired => {
                self.split = r.pick(&RUN_SPLITS);
                self.run();
            }
            2 | 18 => {
                let data = peer_bytes(r, &self.endpoints[0]);
                let split = r.byte();
                self.feed(&data, split);
            }
            3 | 19 => {
                let n = if (code & 0x7f) % OPERATIONS == 19 { 255 } else { r.byte() };
                let endpoint = &mut self.endpoints[side];
                let buffered = endpoint.buffered();
                let wire = &mut self.links[1 - side];
                match n {
                    255 => endpoint.write(now, buffered, buffered, wire),
                    // An adapter may claim more than it was given; the engine caps it.
                    n if !self.paired => endpoint.write(now, usize::from(n), usize::from(n), wire),
                    n => {
                        let n = usize::from(n).min(buffered);
                        endpoint.write(now, n, n, wire);
                    }
                }
            }
            4 if self.paired => self.connection_lost(),
            4 => self.endpoints[0].input(now, Input::Closed),
            5 => {
                let value = r.u16();
                self.advance(Duration::from_millis(u64::from(value & 0x7fff)), value & 0x8000 != 0);
            }
            6 => {
                let ms = r.u16();
                self.jump(Duration::from_millis(u64::from(ms)));
            }
            7 => self.endpoints[side].send_message(now, r),
            8 => self.endpoints[side].start_message(now, r),
            9 => self.endpoints[side].write_message(now, r),
            10 => self.endpoints[side].finish_message(now, r),
            11 => self.endpoints[side].abort_message(now, r),
            12 => self.endpoints[side].send_chunk(now, r),
            13 => {
                self.endpoints[side].commands += 1;
                self.endpoints[side].session.shutdown(now);
            }
            14 => {
                self.endpoints[side].commands += 1;
                self.endpoints[side].session.close(now);
            }
            15 => self.endpoints[side].respond(now, r),
            16 => self.endpoints[side].auto_written ^= true,
            20 => {
                let accept = ["*", "text/plain", "image/*"][usize::from(r.byte() % 3)];
                self.endpoints[side].session.set_accept_types(AcceptTypes::new([accept]));
            }
            _ => self.endpoints[side].fire(now),
        }
        self.settle();
    }

    /// Ends every engine and checks what each owed.
    fn finish(&mut self, finale: Finale) {
        trace!("finale {finale:?}");
        self.split = usize::MAX;
        self.run();
        match finale {
            Finale::Close => {
                for side in 0..self.endpoints.len() {
                    self.endpoints[side].session.close(self.now);
                    self.settle();
                    self.run();
                }
            }
            Finale::ConnectionLost => self.connection_lost(),
            Finale::Shutdown => {
                for endpoint in &mut self.endpoints {
                    endpoint.session.shutdown(self.now);
                }
                self.settle();
                self.advance(FINALE_SPAN, true);
            }
            Finale::Wait => self.advance(FINALE_SPAN, true),
        }
        for endpoint in &mut self.endpoints {
            endpoint.session.close(self.now);
        }
        self.settle();
        self.run();
        for endpoint in &self.endpoints {
            endpoint.check_final();
        }
        if let [alice, bob] = self.endpoints.as_slice() {
            check_delivered(alice, bob);
            check_delivered(bob, alice);
        }
    }
}

/// Every message `sender` saw `Delivered` whose delivery it could not assume (see
/// [`Sent::checked_delivery`]) reached the application of `receiver` byte for byte.
fn check_delivered(sender: &Endpoint, receiver: &Endpoint) {
    for sent in &sender.messages {
        if !sent.checked_delivery || sent.outcome != Some(MessageOutcome::Delivered) {
            continue;
        }
        let mut got: Vec<Option<u8>> = vec![None; sent.data.len()];
        for (start, data) in receiver.incoming.get(&sent.message_id).map_or(&[][..], Vec::as_slice) {
            for (i, &byte) in data.iter().enumerate() {
                let at = start.saturating_sub(1) as usize + i;
                match got.get_mut(at) {
                    Some(slot) => *slot = Some(byte),
                    None => violated!(
                        "{}: {} got byte {} of {}, which has {} bytes",
                        receiver.name,
                        sender.name,
                        at + 1,
                        sent.message_id,
                        sent.data.len()
                    ),
                }
            }
        }
        if let Some(at) = (0..got.len()).find(|&at| got[at] != Some(sent.data[at])) {
            violated!(
                "{}: message {} ({} bytes) was Delivered, but {} has {:?} at byte {}, not {:?}",
                sender.name,
                sent.message_id,
                sent.data.len(),
                receiver.name,
                got[at].map(char::from),
                at + 1,
                char::from(sent.data[at])
            );
        }
        trace!("{}: {} reached {} whole", sender.name, sent.message_id, receiver.name);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader { data };
    let plan = Plan::read(&mut r);
    let mut world = World::new(&plan);
    while !r.is_empty() {
        world.step(&mut r);
    }
    world.finish(plan.finale);
});
