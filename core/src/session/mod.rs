//! The session engine: one MSRP session on one connection, as a pure state machine
//! (msrplib's `MSRPSession` together with its transport and the binding done by the
//! connectors).
//!
//! A [`Session`] takes **bytes received** and **timer ticks** (an explicit `now`) and
//! **application commands**, and emits **bytes to write**, **events** and its **next
//! timeout**. It never does I/O, never reads a clock and never panics on peer input.
//!
//! What it does:
//! - **Binding** (RFC 4975 §5.4): the [`Role::Active`] side sends an empty SEND as soon
//!   as it is [connected](Input::Connected) and is bound by its 200; the
//!   [`Role::Passive`] side sends nothing until a request whose To-Path and From-Path
//!   match the session arrives (a SEND with a body is delivered, not dropped). Both sides
//!   active works. No binding within [`SessionConfig::bind_timeout`] ends the session.
//! - **Transactions**: every request that expects a response is answered by the peer or
//!   locally after [`SessionConfig::response_timeout`] (counted from when its last byte
//!   was [written](Input::Written)): 408 when `Failure-Report` is yes or absent, 200 when
//!   it is `partial` or `no` (the spec's rule). With `partial` or `no` and
//!   `Success-Report: yes`, a success REPORT covering the request's bytes (or the whole
//!   message) gives that local 200 at once (RFC 4975 §7.1.2, §7.3). Closing answers
//!   every pending one.
//! - **Write stall**: bytes handed out in [`Output::Transmit`] that see no
//!   [`Input::Written`] progress for [`SessionConfig::write_stall_timeout`] mean the peer
//!   stopped reading (or the adapter forgets `Written`): pending transactions fail with a
//!   local 408 and the session ends with [`SessionError::WriteStalled`].
//! - **Receiving**: SENDs are checked (481 wrong session, 415 type not accepted, 501
//!   unknown method, 400 NICKNAME without Use-Nickname), answered by RFC 4975 §7.2, and
//!   delivered as [`Event::Incoming`] chunks (in segments of about
//!   [`SessionConfig::segment_size`]) or, with [`SessionConfig::reassembly`], as whole
//!   messages. `Success-Report: yes` gets a `000 200` REPORT once the message is complete
//!   (and, with [`SessionConfig::confirm_messages`], once the application confirmed it).
//!   A malformed chunk is answered with the status its error gives
//!   ([`ChunkParseError::status`]: 400, or 413 for size limits, when a response can be
//!   addressed and is allowed) and the session goes on: the decoder resynchronises on the
//!   next start line, also after an end-line naming another transaction id (see
//!   [`Decoder`]). Input that cannot be framed at all closes the session with
//!   [`SessionError::Parse`].
//! - **Sending**: messages, whole or streamed with backpressure, are cut into chunks of
//!   [`SessionConfig::max_chunk_size`] and interleaved; each ends in exactly one
//!   [`Event::MessageDone`]. A 413 stops a message; `abort` ends it with `#`. A chunk's
//!   body leaves in slices of [`SessionConfig::max_slice_size`], and a chunk in progress
//!   ends early with `+` when a response, REPORT or request waits (RFC 4975 §7.1.1).
//! - **Keepalive**: an empty SEND with `Keep-Alive: yes` after
//!   [`SessionConfig::keepalive_interval`] without outgoing requests; a 408 on it fails
//!   the session.
//! - **Shutdown**: streamed messages not finished are aborted with `#`; queued messages
//!   are sent and answered (up to [`SessionConfig::shutdown_timeout`]), then the session
//!   closes.
//!
//! # Run loop
//!
//! The contract, whatever drives the session:
//! 1. After **every** input, command or timeout, drain [`Session::poll_output`] until it
//!    returns `None`.
//! 2. Write every [`Transmit`] **whole and in order**: what the socket does not take now
//!    waits in a queue, ahead of later transmits. Report with [`Input::Written`] exactly
//!    the bytes the socket took, as it takes them. Response timers start only then, and
//!    bytes that stay unwritten end the session after
//!    [`SessionConfig::write_stall_timeout`].
//! 3. Wait for bytes to read (while [`Session::wants_read`]), for room to write, or for
//!    [`Session::poll_timeout`], whichever comes first; then hand over what happened, or
//!    call [`Session::handle_timeout`] with the current time. Never wait in a read that
//!    ignores the timeout (timers would stop) or in a write that stops reading (two
//!    peers writing to each other would deadlock).
//! 4. The session is over once [`Event::Closed`] came out of `poll_output`: nothing but
//!    [`Output::Close`] follows it, and every transmit came before it. `Output::Close`
//!    comes only when the session itself ends the connection (a close, shutdown or
//!    failure), not after [`Input::Closed`] (the connection is gone already). Write what
//!    is still queued (within a bound: the peer may not read it), then close the socket.
//!
//! Here over a `std` TCP socket: the example `core/examples/std_socket_loop.rs`, whose
//! loop `core/tests/run_loop.rs` runs on both ends of a loopback connection.
//!
//! ```no_run
#![doc = include_str!("../../examples/std_socket_loop.rs")]
//! ```
//!
//! [`crate`]'s docs show the same loop with two sessions back to back in memory.

mod receive;
mod transactions;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;

use crate::chunk::{Chunk, ChunkError, ContinuationFlag, Method};
use crate::codec::{ChunkParseError, Decoder, DecoderLimits};
use crate::header::{ContentType, Header, HeaderName, Headers, KeepAlive};
use crate::ids::IdGenerator;
use crate::log::{NullLogger, TrafficLogger};
use crate::outbox::{ChunkEnd, ChunkSlice, MessageOptions, Outbox, OutboxError, OutgoingId};
use crate::reassembly::{Coverage, Reassembler};
use crate::relay::{RelayClient, RelayEvent};
use crate::transport::{AcceptTypes, ChunkParams, MAX_UNINTERRUPTIBLE_BODY, MsrpError, Transport};
use crate::uri::Uri;

pub use self::receive::MAX_REPORT_FRAGMENTS;
use self::receive::{Incoming, Unconfirmed};
use self::transactions::{TransactionKind, Transactions};

/// Which side opens the connection and sends the first SEND (RFC 4975 §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connects and binds with an empty SEND (the offerer, or `a=setup:active`).
    Active,
    /// Accepts and waits for the peer's first request.
    Passive,
}

/// Limits of opt-in reassembly ([`SessionConfig::reassembly`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Largest message accepted whole; a larger one gets 413.
    pub max_message_size: u64,
    /// Most messages gathered at once.
    pub max_open_messages: usize,
}

/// Everything a [`Session`] is configured with. Defaults follow the spec and design.md §5.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Whether this side connects and binds.
    pub role: Role,
    /// The full local path (own URI last), as put in SDP.
    pub local_path: Vec<Uri>,
    /// The full remote path from the peer's SDP (peer URI last).
    pub remote_path: Vec<Uri>,
    /// Match incoming paths by session id only (sessmatch) instead of RFC 4975 §6.1.
    pub use_sessmatch: bool,
    /// Media types accepted in incoming SENDs; others get 415.
    pub accept_types: AcceptTypes,
    /// Largest body of an outgoing SEND chunk (256 KiB).
    pub max_chunk_size: usize,
    /// Largest piece of a chunk's body in one [`Transmit`] (64 KiB; at least 2048). A
    /// larger chunk leaves slice by slice, each handed out while less than
    /// [`SessionConfig::write_high_watermark`] is unwritten. When a response, a REPORT or
    /// a request is due meanwhile, the chunk in progress ends early with `+` (its
    /// Byte-Range end is `*`), what is due goes out, and the rest of the message follows in
    /// a new chunk (RFC 4975 §7.1.1: a SEND larger than 2048 octets is interrupted for
    /// pending responses and REPORTs). Other messages still take turns chunk by chunk.
    pub max_slice_size: usize,
    /// Incoming chunks are delivered in segments of about this many bytes (64 KiB): a
    /// segment goes out once it holds this many, or earlier when the next piece read would
    /// take it past this size (so large reads pass as they are, without a copy).
    pub segment_size: usize,
    /// Deliver whole messages (with a size cap) instead of chunks; off by default.
    pub reassembly: Option<ReassemblyLimits>,
    /// Time a request waits for its response after being written (30 s).
    pub response_timeout: Duration,
    /// Time to get bound after the session is created (30 s).
    pub bind_timeout: Duration,
    /// Idle time after which an empty `Keep-Alive: yes` SEND goes out (60 s); `None` turns
    /// keepalive off.
    pub keepalive_interval: Option<Duration>,
    /// Longest a shutdown waits for queued messages and responses (30 s).
    pub shutdown_timeout: Duration,
    /// Longest bytes handed out in transmits may stay unwritten without any of them being
    /// [written](Input::Written) (30 s, the response timeout's default): then the peer
    /// stopped reading (or the adapter forgets to report writes), pending transactions
    /// fail with a local 408 and the session ends with [`SessionError::WriteStalled`].
    /// Response timers start only once a request is written, so without this deadline a
    /// peer that keeps the connection open but never reads would hold the session forever.
    pub write_stall_timeout: Duration,
    /// Output handed to the adapter and not yet [written](Input::Written) beyond which no
    /// more message data (a chunk's head or a slice of its body) is handed out (256 KiB:
    /// the socket's own buffer keeps the link busy, and the less waits here, the more of it
    /// is still in cache when written).
    pub write_high_watermark: usize,
    /// Bytes a streamed message may hold before `write_message` takes less (512 KiB).
    pub message_buffer: usize,
    /// Most incoming messages tracked at once for their success REPORT (1024); past it a
    /// REPORT is sent per chunk instead (RFC 4975 §7.1.3 allows both).
    pub max_tracked_reports: usize,
    /// Events queued inside the session beyond which [`Session::wants_read`] is false.
    pub max_queued_events: usize,
    /// Hold each incoming message's success REPORT until the application confirms the
    /// message with [`Session::confirm_message`] (or refuses it, which sends a failure
    /// REPORT where `Failure-Report` allows one); off by default. The 200 responses to
    /// the chunks go out as they arrive either way.
    pub confirm_messages: bool,
    /// Parser limits.
    pub decoder_limits: DecoderLimits,
}

impl SessionConfig {
    /// A configuration with the defaults.
    pub fn new(role: Role, local_path: Vec<Uri>, remote_path: Vec<Uri>) -> Self {
        Self {
            role,
            local_path,
            remote_path,
            use_sessmatch: false,
            accept_types: AcceptTypes::any(),
            max_chunk_size: 256 * 1024,
            max_slice_size: 64 * 1024,
            segment_size: 64 * 1024,
            reassembly: None,
            response_timeout: RESPONSE_TIMEOUT,
            bind_timeout: BIND_TIMEOUT,
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            shutdown_timeout: RESPONSE_TIMEOUT,
            write_stall_timeout: RESPONSE_TIMEOUT,
            write_high_watermark: 256 * 1024,
            message_buffer: 512 * 1024,
            max_tracked_reports: 1024,
            max_queued_events: 1024,
            confirm_messages: false,
            decoder_limits: DecoderLimits::default(),
        }
    }
}

/// msrplib's `RESPONSE_TIMEOUT`: 30 s.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// msrplib's `MSRPBindSessionTimeout.seconds`: 30 s.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(30);
/// Default keepalive interval: 60 s.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The connection is up (the active side binds now).
    Connected,
    /// Bytes read from the connection.
    Received(Bytes),
    /// This many bytes of earlier [`Output::Transmit`]s were written to the socket: report
    /// exactly what the socket took, as it takes it (a partial write reports its part; the
    /// rest stays queued). Response timers start only when a request's last byte is
    /// reported written, so a driver that forgets `Written` stalls the session: after
    /// [`SessionConfig::write_stall_timeout`] without progress it ends with
    /// [`SessionError::WriteStalled`].
    Written(usize),
    /// The connection is gone (peer closed, reset or I/O error).
    Closed,
}

/// What the session wants done. See the [module docs](self) for the drain contract.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Write these bytes, in order, after everything transmitted before, and report
    /// them with [`Input::Written`] as the socket takes them.
    Transmit(Transmit),
    /// Tell the application.
    Event(Event),
    /// Write what was transmitted, then close the connection. Nothing follows. It comes
    /// right after [`Event::Closed`] when the session ends the connection itself (close,
    /// shutdown, failure), never after [`Input::Closed`]: end a run loop on
    /// `Event::Closed`, which every end emits.
    Close,
}

/// Bytes to write: a chunk, or a piece of one, as head, body and end-line. The body is a
/// slice of the application's data (small bodies are copied into the head); a chunk larger
/// than [`SessionConfig::max_slice_size`] comes in several transmits (head and first slice,
/// further slices, the last with the end-line). Write with a vectored write or one after
/// the other.
///
/// Write all of it, in order; what the socket does not take at once waits, ahead of later
/// transmits. Report what was written with [`Input::Written`]: without it no response
/// timer starts and, after [`SessionConfig::write_stall_timeout`], the session ends with
/// [`SessionError::WriteStalled`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Head, body and end-line; any may be empty.
    pub parts: [Bytes; 3],
}

impl Transmit {
    /// Bytes in all parts.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Identifies a request sent with [`Session::send_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

/// How an outgoing message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Every chunk was answered with 200 (or, with `Failure-Report` partial/no, success
    /// REPORTs covered the whole message or the response timeout passed in silence).
    Delivered,
    /// A chunk failed (the first error; local 408 on timeout or closure), or a failure
    /// REPORT came while it was being sent.
    Failed(MsrpError),
    /// The application aborted it.
    Aborted,
}

/// What the application hears from a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The session is bound: messages flow from now on.
    Bound,
    /// An incoming SEND chunk (msrplib's `on_incoming(chunk)`): a whole chunk or a virtual
    /// segment of one (`segment` set, Byte-Range adjusted). With reassembly, the whole
    /// message (Byte-Range `1-N/N`, flag `$`).
    Incoming(Chunk),
    /// With reassembly: the peer aborted a message (`#`); nothing of it is delivered.
    IncomingAborted {
        /// Its Message-ID.
        message_id: String,
    },
    /// A REPORT arrived (never answered). `message` is the outgoing message it is about,
    /// when it is one of this session's. Only a Status in namespace `000` counts towards
    /// that message's outcome; a REPORT in another namespace is only shown here.
    Report {
        /// The message it reports on.
        message: Option<OutgoingId>,
        /// The REPORT.
        report: Chunk,
    },
    /// A request the application answers with [`Session::send_response`] (NICKNAME).
    Request(Chunk),
    /// The response to a request of [`Session::send_chunk`], from the peer or made
    /// locally (`local`) on timeout or closure, or (a 200) when a success REPORT covers a
    /// request that succeeds silently (`Failure-Report` partial or no).
    Response {
        /// The request.
        request: RequestId,
        /// The response.
        response: Chunk,
        /// Whether it was made locally.
        local: bool,
    },
    /// An outgoing message ended; each message gets exactly one.
    MessageDone {
        /// The message.
        message: OutgoingId,
        /// Its Message-ID.
        message_id: String,
        /// How it ended.
        outcome: MessageOutcome,
    },
    /// A streamed message has room again after `write_message` took less than offered.
    Writable {
        /// The message.
        message: OutgoingId,
    },
    /// The session closed without a success REPORT for a message that asked for one
    /// (RFC 4975 §7.1.1: tell the user).
    ReportMissing {
        /// The message.
        message: OutgoingId,
        /// Its Message-ID.
        message_id: String,
    },
    /// The relay client set with [`Session::set_relay`] refreshed its grant or failed to
    /// (the session goes on either way: a failed refresh leaves the path usable until the
    /// grant runs out).
    Relay(RelayEvent),
    /// The session ended; nothing follows. `None` after a shutdown or close by the
    /// application.
    Closed {
        /// Why, when it was not the application's doing.
        reason: Option<SessionError>,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Not bound within the bind timeout (msrplib's `MSRPBindSessionTimeout`); on the
    /// active side also when the binding SEND got no response within the response
    /// timeout (its local 408): the peer did not answer, it refused nothing.
    #[doc(alias = "MSRPBindSessionTimeout")]
    #[error("the session was not bound in time")]
    BindTimeout,
    /// The peer refused the binding SEND.
    #[error("binding refused: {0}")]
    BindRefused(MsrpError),
    /// The connection closed.
    #[error("connection closed")]
    ConnectionClosed,
    /// The peer's bytes lost the MSRP framing.
    #[error("unintelligible input: {0}")]
    Parse(ChunkParseError),
    /// The keepalive got 408 or 481.
    #[error("keepalive failed: {0}")]
    KeepaliveFailed(MsrpError),
    /// Bytes waited to be written and none could be for
    /// [`SessionConfig::write_stall_timeout`]: the peer stopped reading (or the adapter
    /// never reported [`Input::Written`]).
    #[error("the peer stopped reading: nothing could be written for {}", DisplayDuration(*timeout))]
    WriteStalled {
        /// The write-stall timeout that ran out.
        timeout: Duration,
    },
    /// The peer says the session does not exist (481) or reported bytes lost
    /// (RFC 4975 §7.3.2: the session is then failed).
    #[error("session failed: {0}")]
    Failed(MsrpError),
}

/// The error of a failed transaction (msrplib's `MSRPTransactionError`): the code and
/// comment of the response, made locally on timeout or closure.
#[doc(alias = "MSRPTransactionError")]
pub type TransactionError = MsrpError;

/// Why a command was refused (misuse or backpressure; peer errors are events).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
    /// The session is shutting down and takes nothing new.
    #[error("the session is shutting down")]
    ShuttingDown,
    /// A request was expected.
    #[error("not a request")]
    NotARequest,
    /// The chunk is not a valid frame.
    #[error("invalid chunk: {0}")]
    Invalid(#[from] ChunkError),
    /// A live transaction already uses this transaction id.
    #[error("transaction id {0} is in use")]
    DuplicateTransaction(String),
    /// The message's buffer is full; wait for [`Event::Writable`].
    #[error("the message buffer is full")]
    Blocked,
    /// The outbox refused the call.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// A message with a body needs a Content-Type (RFC 4975 §7.1).
    #[error("a message with a body needs a Content-Type header")]
    MissingContentType,
    /// A message cannot start past its own end (`position` > `total`).
    #[error("position {position} is past the message's total of {total} bytes")]
    PositionPastTotal {
        /// Where sending was to start.
        position: u64,
        /// The announced size.
        total: u64,
    },
    /// A Byte-Range that no receiver could read (start 0, end before start, or past the
    /// total).
    #[error("invalid Byte-Range {0}")]
    InvalidRange(String),
}

/// What an outgoing file is (msrplib's `OutgoingFile` without the file object: the
/// adapter reads the file and feeds [`Session::write_message`]).
#[derive(Debug, Clone, Default)]
pub struct OutgoingFile {
    /// The size of the whole file.
    pub size: u64,
    /// Its media type (a Content-Type header).
    pub content_type: Option<String>,
    /// Where sending starts (bytes already delivered, for resume).
    pub position: u64,
    /// The Message-ID; a fresh one when `None`.
    pub message_id: Option<String>,
    /// Extra headers for every chunk.
    pub headers: Headers,
}

/// Timers of the session itself (transactions have their own), in the order they fire
/// when due at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Bind = 0,
    Keepalive = 1,
    /// Unwritten bytes made no progress for the write-stall timeout.
    WriteStall = 2,
    Shutdown = 3,
}

const TIMERS: [Timer; 4] = [Timer::Bind, Timer::Keepalive, Timer::WriteStall, Timer::Shutdown];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not bound yet.
    Binding,
    /// Bound; messages flow.
    Bound,
    /// Done; only the last outputs remain.
    Closed,
}

/// An outgoing message the session is responsible for until its [`Event::MessageDone`].
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)] // independent facts, not a hidden state machine
struct Outgoing {
    message_id: String,
    /// Chunk transactions not yet answered.
    open_transactions: usize,
    /// The outbox has cut its last chunk (or dropped it).
    all_sent: bool,
    /// Whether `write_message` took less than offered (a `Writable` is owed).
    blocked: bool,
    aborted: bool,
    /// The first failure.
    failed: Option<MsrpError>,
    /// Whether the message asked for a success REPORT.
    wants_report: bool,
    /// What success REPORTs covered so far.
    reported: Coverage,
    /// A success REPORT came (an empty message's coverage is complete without one).
    report_seen: bool,
}

/// A delivered message still waiting for its success REPORT.
#[derive(Debug)]
struct AwaitedReport {
    message_id: String,
    id: OutgoingId,
    reported: Coverage,
}

/// One MSRP session on one connection. See the [module docs](self).
#[allow(clippy::struct_excessive_bools)] // independent facts beside `state`
pub struct Session {
    config: SessionConfig,
    transport: Transport,
    logger: Box<dyn TrafficLogger>,
    state: State,
    /// `shutdown` was called: nothing new is taken, and the session closes once what is
    /// queued went out and was answered.
    draining: bool,
    connected: bool,
    now: Instant,
    decoder: Decoder,
    /// The chunk being received.
    incoming: Option<Incoming>,
    reassembler: Option<Reassembler>,
    /// Incoming messages owed a success REPORT, by Message-ID.
    owed_reports: HashMap<String, Coverage>,
    /// Success REPORTs ready, sent once the chunk that completed them is answered.
    pending_reports: Vec<Chunk>,
    /// Incoming messages waiting for [`Session::confirm_message`].
    unconfirmed: Unconfirmed,
    outbox: Outbox,
    messages: BTreeMap<OutgoingId, Outgoing>,
    /// Messages delivered that still wait for their success REPORT, oldest first, at most
    /// `max_tracked_reports`.
    awaiting_reports: VecDeque<AwaitedReport>,
    /// Incoming messages whose success REPORTs cover each piece as it comes (see
    /// `owe_report`), most recent last, at most `max_tracked_reports`.
    report_per_piece: VecDeque<String>,
    transactions: Transactions,
    /// Responses and REPORTs: they go out before anything else and are never held back.
    replies: VecDeque<Chunk>,
    /// Bytes of `send_raw`, written as they are.
    raw: VecDeque<Bytes>,
    /// Requests of the application (and the keepalive), in order; held until bound.
    requests: VecDeque<(Chunk, Option<TransactionKind>)>,
    /// The active side's binding SEND, which goes before binding.
    bind_request: Option<Chunk>,
    events: VecDeque<Event>,
    /// Bytes handed out in transmits, and bytes the adapter reported written.
    transmitted: u64,
    written: u64,
    /// Replies handed out and not yet written: (stream offset of their end, length).
    reply_marks: VecDeque<(u64, u64)>,
    unwritten_replies: u64,
    timers: [Option<Instant>; TIMERS.len()],
    keepalive_outstanding: bool,
    next_request: u64,
    close_pending: bool,
    /// The relay client of this connection ([`Session::set_relay`]).
    relay: Option<RelayClient>,
    /// Its AUTHs waiting to be written: they go between chunks, like replies.
    relay_requests: VecDeque<Chunk>,
    /// The relays' Use-Path the transport's paths were made with.
    relay_path: Vec<Uri>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local", self.transport.local_uri())
            .field("remote", self.transport.remote_uri())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session created at `now` (the bind timer starts here). `ids` makes every
    /// transaction and message id, so a seeded generator makes a run replayable.
    ///
    /// Values that would stop the engine are raised to the least that works: timeouts
    /// and the keepalive interval to 1 ms, sizes and counts to 1, `max_slice_size` to 2048
    /// (a smaller slice would make an interrupted chunk smaller than RFC 4975 §7.1.1
    /// wants), and `message_buffer` to at least `max_chunk_size` (a streamed message is
    /// cut once a chunk's worth waits).
    pub fn new(mut config: SessionConfig, ids: IdGenerator, now: Instant) -> Result<Self, MsrpError> {
        let least = Duration::from_millis(1);
        for duration in [
            &mut config.response_timeout,
            &mut config.bind_timeout,
            &mut config.shutdown_timeout,
            &mut config.write_stall_timeout,
        ] {
            *duration = (*duration).max(least);
        }
        config.keepalive_interval = config.keepalive_interval.map(|interval| interval.max(least));
        for size in [
            &mut config.max_chunk_size,
            &mut config.segment_size,
            &mut config.write_high_watermark,
            &mut config.max_tracked_reports,
            &mut config.max_queued_events,
        ] {
            *size = (*size).max(1);
        }
        config.max_slice_size = config.max_slice_size.max(MAX_UNINTERRUPTIBLE_BODY);
        config.message_buffer = config.message_buffer.max(config.max_chunk_size);
        let transport =
            Transport::new(config.local_path.clone(), config.remote_path.clone(), ids, config.use_sessmatch)?;
        let reassembler =
            config.reassembly.map(|limits| Reassembler::new(limits.max_message_size, limits.max_open_messages));
        let mut timers = [None; TIMERS.len()];
        timers[Timer::Bind as usize] = Some(now + config.bind_timeout);
        Ok(Self {
            decoder: Decoder::new(config.decoder_limits),
            outbox: Outbox::new(config.max_chunk_size),
            transport,
            logger: Box::new(NullLogger),
            state: State::Binding,
            draining: false,
            connected: false,
            now,
            incoming: None,
            reassembler,
            owed_reports: HashMap::new(),
            pending_reports: Vec::new(),
            unconfirmed: Unconfirmed::default(),
            messages: BTreeMap::new(),
            awaiting_reports: VecDeque::new(),
            report_per_piece: VecDeque::new(),
            transactions: Transactions::default(),
            replies: VecDeque::new(),
            raw: VecDeque::new(),
            requests: VecDeque::new(),
            bind_request: None,
            events: VecDeque::new(),
            transmitted: 0,
            written: 0,
            reply_marks: VecDeque::new(),
            unwritten_replies: 0,
            timers,
            keepalive_outstanding: false,
            next_request: 0,
            close_pending: false,
            relay: None,
            relay_requests: VecDeque::new(),
            relay_path: Vec::new(),
            config,
        })
    }

    /// Replaces the traffic logger (a [`NullLogger`] by default).
    pub fn set_logger(&mut self, logger: Box<dyn TrafficLogger>) {
        self.logger = logger;
    }

    /// Takes the traffic logger back, leaving a [`NullLogger`] (to hand it to another
    /// session, as an acceptor does after refusing a stranger).
    pub fn take_logger(&mut self) -> Box<dyn TrafficLogger> {
        std::mem::replace(&mut self.logger, Box::new(NullLogger))
    }

    /// Hands the session the relay client of its connection (from
    /// [`RelayLogin::into_parts`](crate::relay::RelayLogin::into_parts)), so that it keeps
    /// the relays' grants alive: the client's AUTHs go out between chunks (a chunk in
    /// progress is interrupted for them as for a REPORT), responses to them go to the
    /// client and never to the application, its timers count in
    /// [`Session::poll_timeout`], and what it reports comes as [`Event::Relay`]. A refresh
    /// that brings another Use-Path ([`RelayEvent::Refreshed`] with `path_changed`; Kamailio
    /// does this) moves the session's own requests to the new path; the peer's SDP still
    /// names the old one, which works until its grant ends: offer the new path to the peer
    /// (a SIP re-INVITE) before then. Closing the session drops the client. Replaces a
    /// client set before; ignored once closed.
    pub fn set_relay(&mut self, client: RelayClient) {
        if self.state != State::Closed {
            self.relay_path = client.use_path().to_vec();
            self.relay = Some(client);
            self.pull_relay();
        }
    }

    /// Takes the relay client's AUTHs into the write queue and its events into the
    /// session's events.
    fn pull_relay(&mut self) {
        let Some(relay) = &mut self.relay else { return };
        while let Some(request) = relay.poll_request(self.now) {
            self.relay_requests.push_back(request);
        }
        while let Some(event) = relay.poll_event() {
            if let RelayEvent::Refreshed { use_path, path_changed: true, .. } = &event {
                // Our own requests go through the new grant from now on; the peer's SDP
                // still names the old one, valid until it expires.
                self.transport.replace_relay_path(&self.relay_path, use_path);
                self.relay_path.clone_from(use_path);
            }
            self.events.push_back(Event::Relay(event));
        }
    }

    /// The session's transport: paths, ids and `make_chunk`.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The transport, to build chunks with [`Transport::make_chunk`].
    pub fn transport_mut(&mut self) -> &mut Transport {
        &mut self.transport
    }

    /// The configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Changes the media types accepted from now on (msrplib sets them when the session
    /// is made over an already bound transport).
    pub fn set_accept_types(&mut self, accept_types: AcceptTypes) {
        self.config.accept_types = accept_types;
    }

    /// Whether the session is bound.
    pub fn is_bound(&self) -> bool {
        self.state == State::Bound
    }

    /// Whether the session has closed (its last outputs may still be queued).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the adapter should read from the connection now. False once closed, while
    /// more than [`SessionConfig::max_queued_events`] events wait to be polled (only a
    /// driver that polls lazily gets there; one that drains after every input keeps the
    /// application's own backlog and pauses reading for it), or while
    /// more than the write high watermark of our responses and REPORTs is unwritten (the
    /// peer is not reading them; not reading its requests stops the flood). Unwritten
    /// message data never pauses reading, so two peers sending to each other cannot
    /// deadlock.
    pub fn wants_read(&self) -> bool {
        self.state != State::Closed
            && self.events.len() < self.config.max_queued_events
            && self.unwritten_replies <= self.config.write_high_watermark as u64
    }

    /// Bytes handed out in transmits and not yet reported written.
    pub fn unwritten(&self) -> u64 {
        self.transmitted - self.written
    }

    /// Bytes handed out in transmits since the session was made.
    pub fn transmitted(&self) -> u64 {
        self.transmitted
    }

    /// Of the bytes transmitted, those reported [written](Input::Written).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The Message-ID of an outgoing message not yet done.
    pub fn outgoing_message_id(&self, id: OutgoingId) -> Option<String> {
        self.messages.get(&id).map(|message| message.message_id.clone())
    }

    /// Incoming messages tracked for their success REPORT, and the separate pieces
    /// tracked for them in all (each message holds at most [`MAX_REPORT_FRAGMENTS`]).
    pub fn tracked_reports(&self) -> (usize, usize) {
        (self.owed_reports.len(), self.owed_reports.values().map(Coverage::fragments).sum())
    }

    /// Requests waiting for a response.
    pub fn pending_transactions(&self) -> usize {
        self.transactions.len()
    }

    /// Handles an input at `now`. Drain [`Session::poll_output`] afterwards.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.advance(now);
        if self.state == State::Closed {
            return;
        }
        match input {
            Input::Connected => self.on_connected(),
            Input::Received(data) => {
                // Bytes prove the connection is up, even if `Connected` was not said.
                self.on_connected();
                self.on_received(data);
            }
            Input::Written(n) => self.on_written(n),
            Input::Closed => self.on_closed(),
        }
    }

    /// Runs the timers due at `now`; a call with nothing due does nothing. Afterwards
    /// [`Session::poll_timeout`] is later than `now`. Drain [`Session::poll_output`]
    /// afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let now = self.now;
        if self.state != State::Closed {
            if let Some(relay) = &mut self.relay {
                relay.handle_timeout(now);
                self.pull_relay();
            }
        }
        // Transactions first: a response timeout and the shutdown timeout that fall on the
        // same instant end the transaction by its own rule, not as "closed".
        while self.state != State::Closed {
            let Some((transaction_id, transaction)) = self.transactions.pop_expired(now) else { break };
            let response = transaction.local_timeout_response(&transaction_id);
            self.complete_transaction(transaction.kind, response, true);
        }
        for timer in TIMERS {
            if self.state == State::Closed {
                return;
            }
            if self.timers[timer as usize].is_some_and(|deadline| deadline <= now) {
                self.timers[timer as usize] = None;
                self.on_timer(timer);
            }
        }
    }

    /// The earliest instant [`Session::handle_timeout`] has work (a response timeout, the
    /// binding, keepalive, write-stall or shutdown deadline, the relay client's AUTH timeout
    /// or refresh time); `None` when no timer runs.
    /// Read it after draining [`Session::poll_output`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let relay = self.relay.as_ref().and_then(RelayClient::poll_timeout);
        self.timers.iter().flatten().copied().chain(self.transactions.next_deadline()).chain(relay).min()
    }

    /// The next output, or `None` when there is nothing to do until the next input,
    /// command or timeout. Call until `None` after every input, command or timeout.
    #[must_use]
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        self.advance(now);
        if self.draining {
            // A write acknowledged or a chunk cut may have been the last thing to wait for.
            self.check_shutdown_done();
        }
        if self.state != State::Closed {
            self.pull_relay();
        }
        if let Some(transmit) = self.next_transmit() {
            self.arm_write_stall(false);
            return Some(Output::Transmit(transmit));
        }
        if let Some(event) = self.events.pop_front() {
            return Some(Output::Event(event));
        }
        if self.close_pending {
            self.close_pending = false;
            return Some(Output::Close);
        }
        None
    }

    /// Sends a request (msrplib `send_chunk`). Its response comes as [`Event::Response`]
    /// with the returned id, from the peer or made locally on timeout (408 when
    /// `Failure-Report` is yes or absent, 200 when partial or no) or closure; with partial
    /// or no and `Success-Report: yes`, the local 200 comes as soon as a success REPORT
    /// covers the request's bytes (RFC 4975 §7.1.2, §7.3). A REPORT
    /// gets no response. Requests wait until the session is bound, and go out ahead of
    /// message chunks without regard to the write high watermark: bound them yourself,
    /// or send data as messages.
    pub fn send_chunk(&mut self, now: Instant, chunk: Chunk) -> Result<RequestId, SendError> {
        self.queue_request(now, chunk, true)
    }

    /// Sends a request whose outcome the caller waits for (msrplib `deliver_chunk`):
    /// `Some(id)` names the [`Event::Response`] to wait for (turn it into a result with
    /// [`transaction_result`]); `None` means `Failure-Report: no`, so no response will
    /// come and the caller returns at once.
    pub fn deliver_chunk(&mut self, now: Instant, chunk: Chunk) -> Result<Option<RequestId>, SendError> {
        let wants_response =
            chunk.failure_report() != crate::header::FailureReport::No && chunk.method() != Some(&Method::Report);
        let id = self.queue_request(now, chunk, wants_response)?;
        Ok(wants_response.then_some(id))
    }

    fn queue_request(&mut self, now: Instant, chunk: Chunk, wants_response: bool) -> Result<RequestId, SendError> {
        self.advance(now);
        self.check_open()?;
        if !chunk.is_request() {
            return Err(SendError::NotARequest);
        }
        chunk.verify_headers()?;
        if self.transactions.contains(&chunk.transaction_id)
            || self.requests.iter().any(|(queued, _)| queued.transaction_id == chunk.transaction_id)
        {
            return Err(SendError::DuplicateTransaction(chunk.transaction_id));
        }
        let id = RequestId(self.next_request);
        self.next_request += 1;
        // A REPORT is never answered, so it opens no transaction.
        let answered = wants_response && chunk.method() != Some(&Method::Report);
        self.requests.push_back((chunk, answered.then_some(TransactionKind::Request(id))));
        Ok(id)
    }

    /// Writes bytes as they are, after what is queued for writing (msrplib `write`): for
    /// callers that build their own frames. Nothing checks them.
    pub fn send_raw(&mut self, now: Instant, data: Bytes) -> Result<(), SendError> {
        self.advance(now);
        self.check_open_or_draining()?;
        self.raw.push_back(data);
        Ok(())
    }

    /// Sends the response to a received request (msrplib `write_response`); `false` when
    /// the rules allow none (a REPORT, `Failure-Report: no`, a 200 with `partial`).
    pub fn send_response(
        &mut self,
        now: Instant,
        request: &Chunk,
        code: u16,
        comment: Option<String>,
    ) -> Result<bool, SendError> {
        self.advance(now);
        if self.state == State::Closed {
            return Err(SendError::Closed);
        }
        Ok(self.reply(request, code, comment))
    }

    /// Sends a REPORT about a received SEND, e.g. a failure found after it was accepted;
    /// `false` when the request's report headers allow none (RFC 4975 §7.1.2–7.1.4).
    pub fn send_report(
        &mut self,
        now: Instant,
        request: &Chunk,
        code: u16,
        comment: Option<String>,
        range: crate::header::ByteRange,
    ) -> Result<bool, SendError> {
        self.advance(now);
        if self.state == State::Closed {
            return Err(SendError::Closed);
        }
        let last = range.end.unwrap_or(range.start);
        let valid = range.start >= 1
            && range.end.is_none_or(|end| end + 1 >= range.start)
            && range.total.is_none_or(|total| last <= total || range.end == Some(range.start - 1));
        if !valid {
            return Err(SendError::InvalidRange(range.encode()));
        }
        let Some(report) = self.transport.make_report(request, code, comment, range) else { return Ok(false) };
        self.replies.push_back(report);
        Ok(true)
    }

    /// Sends a whole message. `options.headers` should carry its Content-Type.
    pub fn send_message(
        &mut self,
        now: Instant,
        options: MessageOptions,
        data: Bytes,
    ) -> Result<OutgoingId, SendError> {
        self.advance(now);
        self.check_open()?;
        if !data.is_empty() && options.headers.get(&HeaderName::ContentType).is_none() {
            return Err(SendError::MissingContentType);
        }
        let wants_report = wants_success_report(&options.headers);
        let id = self.outbox.send(&mut self.transport, options, data);
        self.track_message(id, wants_report);
        Ok(id)
    }

    /// Starts a streamed message: data follows with [`Session::write_message`], then
    /// [`Session::finish_message`]. Set `options.total` when the size is known.
    pub fn start_message(&mut self, now: Instant, options: MessageOptions) -> Result<OutgoingId, SendError> {
        self.advance(now);
        self.check_open()?;
        if options.total != Some(0) && options.headers.get(&HeaderName::ContentType).is_none() {
            return Err(SendError::MissingContentType);
        }
        if let Some(total) = options.total.filter(|&total| options.position > total) {
            return Err(SendError::PositionPastTotal { position: options.position, total });
        }
        let wants_report = wants_success_report(&options.headers);
        let id = self.outbox.start(&mut self.transport, options);
        self.track_message(id, wants_report);
        Ok(id)
    }

    /// Starts sending a file (msrplib `send_file`): a streamed message of `file.size`
    /// bytes from `file.position`. The adapter reads the file and writes its bytes with
    /// [`Session::write_message`] as [`Event::Writable`] asks for more. Without a content
    /// type (and no Content-Type among its headers) the file goes as
    /// `application/octet-stream`, since a body must have one.
    pub fn send_file(&mut self, now: Instant, file: &OutgoingFile) -> Result<OutgoingId, SendError> {
        let mut headers = file.headers.clone();
        if let Some(content_type) = &file.content_type {
            headers.set(ContentType::NAME, ContentType(content_type.clone()).encode());
        } else if headers.get(&ContentType::NAME).is_none() {
            headers.set(ContentType::NAME, "application/octet-stream");
        }
        let options = MessageOptions {
            message_id: file.message_id.clone(),
            headers,
            total: Some(file.size),
            position: file.position.min(file.size),
        };
        self.start_message(now, options)
    }

    /// Appends data to a streamed message and returns how many bytes were taken: less
    /// than offered when its buffer ([`SessionConfig::message_buffer`]) is full, and then
    /// an [`Event::Writable`] follows once there is room. Nothing taken is
    /// [`SendError::Blocked`].
    pub fn write_message(&mut self, now: Instant, id: OutgoingId, mut data: Bytes) -> Result<usize, SendError> {
        self.advance(now);
        self.check_open_or_draining()?;
        let pending = self.outbox.pending_len(id).ok_or(OutboxError::UnknownMessage(id))?;
        let room = self.config.message_buffer.saturating_sub(pending);
        let take = room.min(data.len());
        if take < data.len() {
            if let Some(message) = self.messages.get_mut(&id) {
                message.blocked = true;
            }
        }
        if take == 0 && !data.is_empty() {
            return Err(SendError::Blocked);
        }
        data.truncate(take);
        self.outbox.write(id, data)?;
        Ok(take)
    }

    /// Says all data of a streamed message was written. After [`Session::shutdown`] the
    /// message was aborted, and this (like [`Session::write_message`]) is refused with
    /// [`OutboxError::UnknownMessage`].
    pub fn finish_message(&mut self, now: Instant, id: OutgoingId) -> Result<(), SendError> {
        self.advance(now);
        self.check_open_or_draining()?;
        self.outbox.finish(id)?;
        Ok(())
    }

    /// Aborts an outgoing message: if part of it went out, its next chunk ends it with
    /// `#`. It ends with [`MessageOutcome::Aborted`].
    pub fn abort_message(&mut self, now: Instant, id: OutgoingId) -> Result<(), SendError> {
        self.advance(now);
        self.check_open_or_draining()?;
        self.abort_outgoing(id)?;
        Ok(())
    }

    fn abort_outgoing(&mut self, id: OutgoingId) -> Result<(), OutboxError> {
        self.outbox.abort(id)?;
        if let Some(message) = self.messages.get_mut(&id) {
            message.aborted = true;
            if !self.outbox.contains(id) {
                message.all_sent = true;
            }
        }
        self.settle_message(id);
        Ok(())
    }

    /// Sends what is queued (binding first, if need be), waits for the responses that
    /// will come (`Failure-Report: yes`; up to [`SessionConfig::shutdown_timeout`]), then
    /// closes (msrplib `shutdown`). Requests sent with `partial` or `no` end with the
    /// spec's local 200. New messages are refused from now on.
    ///
    /// A streamed message not yet [finished](Session::finish_message) cannot be completed
    /// any more: it is aborted at once, as by [`Session::abort_message`] (a `#` chunk ends
    /// it when part of it went out, RFC 4975 §7.1), and ends with
    /// [`MessageOutcome::Aborted`], so the session does not wait for data that will not come.
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        if self.state == State::Closed || self.draining {
            return;
        }
        for id in self.outbox.unfinished() {
            // Every id `unfinished` gives is in the outbox: the abort cannot fail.
            let _ = self.abort_outgoing(id);
        }
        self.draining = true;
        self.timers[Timer::Shutdown as usize] = Some(self.now + self.config.shutdown_timeout);
        self.timers[Timer::Keepalive as usize] = None;
        self.logger.info("shutting down");
        self.check_shutdown_done();
    }

    /// Closes at once: every pending transaction and message fails locally.
    pub fn close(&mut self, now: Instant) {
        self.advance(now);
        self.end(None, true);
    }

    fn advance(&mut self, now: Instant) {
        // Time only moves forward, whatever the caller passes.
        self.now = self.now.max(now);
    }

    fn check_open(&self) -> Result<(), SendError> {
        self.check_open_or_draining()?;
        if self.draining { Err(SendError::ShuttingDown) } else { Ok(()) }
    }

    /// Messages already started may still be aborted while shutting down (`shutdown`
    /// aborted the unfinished ones, so the outbox refuses more data for them).
    fn check_open_or_draining(&self) -> Result<(), SendError> {
        if self.state == State::Closed { Err(SendError::Closed) } else { Ok(()) }
    }

    fn track_message(&mut self, id: OutgoingId, wants_report: bool) {
        let message_id = self.outbox_message_id(id);
        self.messages.insert(
            id,
            Outgoing {
                message_id,
                open_transactions: 0,
                all_sent: false,
                blocked: false,
                aborted: false,
                failed: None,
                wants_report,
                reported: Coverage::default(),
                report_seen: false,
            },
        );
    }

    fn outbox_message_id(&self, id: OutgoingId) -> String {
        self.outbox.message_id(id).unwrap_or_default().to_owned()
    }

    fn on_connected(&mut self) {
        if self.connected {
            return;
        }
        self.connected = true;
        if self.config.role == Role::Active && self.state == State::Binding {
            // RFC 4975 §5.4: the active side sends a SEND right away; an empty one binds.
            let chunk = self.transport.make_chunk(ChunkParams::default());
            self.bind_request = Some(chunk);
        }
    }

    fn on_written(&mut self, n: usize) {
        let before = self.written;
        self.written = self.written.saturating_add(n as u64).min(self.transmitted);
        if self.written > before {
            self.arm_write_stall(true);
        }
        while let Some(&(end, len)) = self.reply_marks.front() {
            if end > self.written {
                break;
            }
            self.reply_marks.pop_front();
            self.unwritten_replies -= len;
        }
        let deadline = self.now + self.config.response_timeout;
        self.transactions.arm_written(self.written, deadline);
    }

    fn on_closed(&mut self) {
        // Nothing can be written any more.
        self.replies.clear();
        self.raw.clear();
        self.pending_reports.clear();
        let reason = match self.decoder.finish() {
            Some(error) if !self.draining => SessionError::Parse(error),
            _ => SessionError::ConnectionClosed,
        };
        // A shutdown that had nothing left to wait for is a clean end.
        let clean = self.draining && self.nothing_to_wait_for();
        self.end(if clean { None } else { Some(reason) }, false);
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Bind => {
                if self.state == State::Binding {
                    self.logger.fatal("not bound within the bind timeout");
                    self.end(Some(SessionError::BindTimeout), true);
                }
            }
            Timer::Keepalive => {
                if self.state == State::Bound && !self.draining && !self.keepalive_outstanding {
                    let mut chunk = self.transport.make_chunk(ChunkParams::default());
                    chunk.add_header(&KeepAlive::Yes);
                    self.keepalive_outstanding = true;
                    self.requests.push_back((chunk, Some(TransactionKind::Keepalive)));
                }
                self.arm_keepalive();
            }
            Timer::WriteStall => {
                if self.unwritten() > 0 {
                    self.fail(SessionError::WriteStalled { timeout: self.config.write_stall_timeout });
                }
            }
            Timer::Shutdown => {
                if self.draining {
                    self.logger.warn("shutdown timed out; closing with transactions pending");
                    self.end(None, true);
                }
            }
        }
    }

    /// Keeps the write-stall deadline: it runs while bytes handed out are unwritten, from
    /// when they were handed out or, with `progress`, from now (a write just advanced).
    fn arm_write_stall(&mut self, progress: bool) {
        let timer = &mut self.timers[Timer::WriteStall as usize];
        if self.state == State::Closed || self.transmitted == self.written {
            *timer = None;
        } else if progress || timer.is_none() {
            *timer = Some(self.now + self.config.write_stall_timeout);
        }
    }

    fn arm_keepalive(&mut self) {
        if self.state == State::Bound && !self.draining {
            self.timers[Timer::Keepalive as usize] = self.config.keepalive_interval.map(|interval| self.now + interval);
        }
    }

    fn set_bound(&mut self) {
        if self.state != State::Binding {
            return;
        }
        self.state = State::Bound;
        self.timers[Timer::Bind as usize] = None;
        self.arm_keepalive();
        self.logger.info("session bound");
        self.events.push_back(Event::Bound);
    }

    /// The next bytes to write: replies first, then the binding SEND, the application's
    /// requests, and chunks of messages while under the write high watermark. A chunk in
    /// progress is never broken into: what waits ends it early with `+` (or, when it may
    /// not be interrupted yet, waits for its next slice), and once the session closed it
    /// ends with `#`.
    fn next_transmit(&mut self) -> Option<Transmit> {
        if self.outbox.has_open_chunk() && (self.other_output_waits() || self.state == State::Closed) {
            // R4975-7.1.1-12: responses and REPORTs do not wait behind the rest of a chunk.
            let slice = match self.outbox.interrupt() {
                Some(slice) => slice,
                None => self.outbox.next_slice(self.config.max_slice_size)?,
            };
            return Some(self.transmit_slice(slice));
        }
        if let Some(reply) = self.replies.pop_front() {
            let transmit = self.transmit(&reply, None);
            let len = transmit.len() as u64;
            self.reply_marks.push_back((self.transmitted, len));
            self.unwritten_replies += len;
            return Some(transmit);
        }
        if let Some(data) = self.raw.pop_front() {
            self.transmitted += data.len() as u64;
            return Some(Transmit { parts: [data, Bytes::new(), Bytes::new()] });
        }
        if let Some(auth) = self.relay_requests.pop_front() {
            // The relay client times its AUTH itself: no session transaction.
            return Some(self.transmit(&auth, None));
        }
        if let Some(bind) = self.bind_request.take() {
            return Some(self.transmit(&bind, Some(TransactionKind::Bind)));
        }
        if !self.is_bound() {
            return None;
        }
        if let Some((chunk, kind)) = self.requests.pop_front() {
            return Some(self.transmit(&chunk, kind));
        }
        if self.unwritten() >= self.config.write_high_watermark as u64 {
            return None;
        }
        if let Some(slice) = self.outbox.next_slice(self.config.max_slice_size) {
            return Some(self.transmit_slice(slice));
        }
        let out = self.outbox.open_chunk(&mut self.transport)?;
        if let Some(message) = self.messages.get_mut(&out.id) {
            message.open_transactions += 1;
        }
        let kind = TransactionKind::Message(out.id);
        let transmit = if out.chunk.data.len() <= self.config.max_slice_size {
            // The whole chunk at once, as it was cut.
            let transmit = self.transmit(&out.chunk, Some(kind));
            if let Some(end) = self.outbox.next_slice(usize::MAX).and_then(|slice| slice.end) {
                self.chunk_ended(out.id, &end);
            }
            transmit
        } else {
            // The head and a first slice; the chunk's end (and so where its transaction's
            // last byte is) comes with its last slice.
            let head = out.chunk.encode_start();
            if self.logger.logs_traffic() {
                self.logger.sent_new_chunk(&head, &self.transport, &out.chunk);
            }
            self.transmitted += head.len() as u64;
            self.transactions.open(&out.chunk, kind, u64::MAX);
            self.arm_keepalive();
            let slice = self.outbox.next_slice(self.config.max_slice_size)?;
            let mut transmit = self.transmit_slice(slice);
            transmit.parts[0] = head;
            transmit
        };
        self.note_writable(out.id);
        Some(transmit)
    }

    /// Whether something other than message data waits to be written.
    fn other_output_waits(&self) -> bool {
        !self.replies.is_empty() || !self.raw.is_empty() || !self.requests.is_empty() || !self.relay_requests.is_empty()
    }

    /// Logs and accounts for a slice of the chunk in progress (its head went out before).
    /// At the chunk's end, its transaction learns where its last byte is.
    fn transmit_slice(&mut self, slice: ChunkSlice) -> Transmit {
        if self.logger.logs_traffic() {
            if !slice.data.is_empty() {
                self.logger.sent_chunk_data(&slice.data, &self.transport, &slice.transaction_id);
            }
            if let Some(end) = &slice.end {
                self.logger.sent_chunk_end(&end.line, &self.transport, &slice.transaction_id);
            }
        }
        let line = slice.end.as_ref().map_or_else(Bytes::new, |end| end.line.clone());
        let transmit = Transmit { parts: [Bytes::new(), slice.data, line] };
        self.transmitted += transmit.len() as u64;
        if let Some(end) = slice.end {
            self.transactions.set_end(&slice.transaction_id, self.transmitted);
            self.chunk_ended(slice.id, &end);
        }
        transmit
    }

    /// A chunk of an outgoing message ended (its end-line was handed out).
    fn chunk_ended(&mut self, id: OutgoingId, end: &ChunkEnd) {
        let Some(message) = self.messages.get_mut(&id) else { return };
        message.all_sent |= end.last;
        if end.flag == ContinuationFlag::End {
            // The length is known now, also for a message streamed without a total,
            // whose success REPORTs (per piece) may all say `*` for it.
            let length = (end.start + end.len).saturating_sub(1);
            message.reported.record_range(end.start, None, Some(length), true);
        }
        // A response that came before the end-line may have been all it waited for.
        self.settle_message(id);
    }

    /// Encodes, logs and accounts for one chunk; a request with `kind` opens a transaction.
    fn transmit(&mut self, chunk: &Chunk, kind: Option<TransactionKind>) -> Transmit {
        let parts = chunk.encode_parts();
        if self.logger.logs_traffic() {
            self.logger.sent_new_chunk(&parts[0], &self.transport, chunk);
            if !parts[1].is_empty() {
                self.logger.sent_chunk_data(&parts[1], &self.transport, &chunk.transaction_id);
            }
            self.logger.sent_chunk_end(&parts[2], &self.transport, &chunk.transaction_id);
        }
        let transmit = Transmit { parts };
        self.transmitted += transmit.len() as u64;
        if let Some(kind) = kind {
            self.transactions.open(chunk, kind, self.transmitted);
            // Outgoing requests keep the connection alive; the keepalive waits for idleness.
            self.arm_keepalive();
        }
        transmit
    }

    /// After a chunk of a streamed message left: owe it a `Writable` once its buffer is
    /// half empty.
    fn note_writable(&mut self, id: OutgoingId) {
        let Some(message) = self.messages.get_mut(&id) else { return };
        let pending = self.outbox.pending_len(id).unwrap_or(0);
        if message.blocked && pending <= self.config.message_buffer / 2 {
            message.blocked = false;
            self.events.push_back(Event::Writable { message: id });
        }
    }

    /// Queues the response to `request`, if the rules allow one.
    fn reply(&mut self, request: &Chunk, code: u16, comment: Option<String>) -> bool {
        let Some(response) = self.transport.make_response(request, code, comment) else { return false };
        self.replies.push_back(response);
        true
    }

    /// A transaction ended with `response` (from the peer, or made locally).
    fn complete_transaction(&mut self, kind: TransactionKind, response: Chunk, local: bool) {
        let code = response.code().unwrap_or(0);
        let error = MsrpError::new(code, response.comment().unwrap_or_default());
        match kind {
            TransactionKind::Request(request) => {
                let gone = code == 481 && !local;
                self.events.push_back(Event::Response { request, response, local });
                if gone {
                    // R4975-10.8: the peer says the session does not exist.
                    self.fail(SessionError::Failed(error));
                    return;
                }
            }
            TransactionKind::Bind => {
                if code == 200 {
                    self.set_bound();
                } else if local {
                    // R4975-7.1.1-4: no response in time is a timeout, not a refusal.
                    self.logger.fatal("the binding SEND got no response in time");
                    self.end(Some(SessionError::BindTimeout), true);
                } else {
                    self.logger.fatal(&format!("binding refused: {code}"));
                    self.end(Some(SessionError::BindRefused(error)), true);
                }
            }
            TransactionKind::Keepalive => {
                self.keepalive_outstanding = false;
                if matches!(code, 408 | 481) {
                    self.logger.fatal(&format!("keepalive failed: {code}"));
                    self.end(Some(SessionError::KeepaliveFailed(error)), true);
                }
            }
            TransactionKind::Message(id) => {
                if let Some(message) = self.messages.get_mut(&id) {
                    message.open_transactions = message.open_transactions.saturating_sub(1);
                    if code != 200 {
                        message.failed.get_or_insert_with(|| error.clone());
                    }
                }
                if code != 200 {
                    self.stop_message(id, code);
                }
                self.settle_message(id);
                if code == 481 && !local {
                    self.fail(SessionError::Failed(error));
                    return;
                }
            }
        }
        self.check_shutdown_done();
    }

    /// Sends nothing more of a message the peer failed with `code`: after a 413 not a
    /// single chunk more (RFC 4975 §10.5); after another failure its remaining chunks are
    /// replaced by a `#` (R4975-7.3.2-3) when part of it went out.
    fn stop_message(&mut self, id: OutgoingId, code: u16) {
        let Some(message) = self.messages.get_mut(&id) else { return };
        if message.all_sent {
            return;
        }
        message.all_sent = true;
        if code == 413 {
            self.outbox.stop(&message.message_id);
        } else {
            // An `#` chunk may still go out; it belongs to no message any more.
            let _ = self.outbox.abort(id);
        }
    }

    /// Emits the message's `MessageDone` once it is decided.
    fn settle_message(&mut self, id: OutgoingId) {
        let Some(message) = self.messages.get(&id) else { return };
        let outcome = if let Some(error) = &message.failed {
            MessageOutcome::Failed(error.clone())
        } else if message.all_sent && message.open_transactions == 0 {
            if message.aborted { MessageOutcome::Aborted } else { MessageOutcome::Delivered }
        } else {
            return;
        };
        let Some(message) = self.messages.remove(&id) else { return };
        let reported = message.report_seen && message.reported.is_complete();
        if message.wants_report && outcome == MessageOutcome::Delivered && !reported {
            self.await_report(AwaitedReport { message_id: message.message_id.clone(), id, reported: message.reported });
        }
        self.events.push_back(Event::MessageDone { message: id, message_id: message.message_id, outcome });
    }

    /// Remembers a delivered message whose success REPORT has not come (bounded: the
    /// oldest is given up with `ReportMissing`).
    fn await_report(&mut self, awaited: AwaitedReport) {
        self.awaiting_reports.retain(|other| other.message_id != awaited.message_id);
        if self.awaiting_reports.len() >= self.config.max_tracked_reports {
            if let Some(oldest) = self.awaiting_reports.pop_front() {
                self.events.push_back(Event::ReportMissing { message: oldest.id, message_id: oldest.message_id });
            }
        }
        self.awaiting_reports.push_back(awaited);
    }

    /// Whether a shutdown has nothing left to send or wait for.
    fn nothing_to_wait_for(&self) -> bool {
        self.outbox.is_empty()
            && self.requests.is_empty()
            && self.raw.is_empty()
            && self.bind_request.is_none()
            && !self.transactions.awaits_response()
    }

    fn check_shutdown_done(&mut self) {
        // Unbound, queued messages wait for the binding (the bind timer still runs).
        let can_end = self.state == State::Bound || (self.outbox.is_empty() && self.requests.is_empty());
        if self.draining && self.state != State::Closed && can_end && self.nothing_to_wait_for() {
            self.logger.info("shutdown complete");
            self.end(None, true);
        }
    }

    /// The session failed because of the peer.
    fn fail(&mut self, reason: SessionError) {
        self.logger.fatal(&reason.to_string());
        self.end(Some(reason), true);
    }

    /// Ends the session: every pending transaction and message ends locally, then
    /// `Closed`; `tell_adapter` asks the adapter to close the connection.
    fn end(&mut self, reason: Option<SessionError>, tell_adapter: bool) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.timers = [None; TIMERS.len()];
        self.bind_request = None;
        // The relay grant belongs to this connection, which is ending.
        self.relay = None;
        self.relay_requests.clear();
        if let Some(incoming) = self.incoming.take() {
            if let Some(rest) = incoming.cut_off() {
                self.events.push_back(Event::Incoming(rest));
            }
        }
        // An orderly end answers written requests by the timeout rule (200 for
        // `partial`/`no`, which expect no response); a request not written whole never
        // reached the peer, and after a failure every outcome is unknown: 408.
        let orderly = reason.is_none();
        let stalled = matches!(reason, Some(SessionError::WriteStalled { .. }));
        let why = if stalled { "The peer stopped reading" } else { "Connection closed before a response" };
        let closed = |transaction_id: String| Chunk::response(transaction_id, 408, Some(why.to_owned()));
        for (transaction_id, transaction) in self.transactions.drain() {
            let response = if orderly && transaction.is_written() {
                transaction.local_timeout_response(&transaction_id)
            } else {
                closed(transaction_id)
            };
            self.complete_transaction(transaction.kind, response, true);
        }
        for (chunk, kind) in std::mem::take(&mut self.requests) {
            if let Some(kind) = kind {
                self.complete_transaction(kind, closed(chunk.transaction_id), true);
            }
        }
        let open: Vec<_> = self.messages.keys().copied().collect();
        for id in open {
            if let Some(message) = self.messages.get_mut(&id) {
                if message.failed.is_none() && !(message.aborted && message.all_sent) {
                    let why =
                        if stalled { "The peer stopped reading" } else { "Session closed before the message was sent" };
                    message.failed = Some(MsrpError::new(408, why));
                }
                message.all_sent = true;
                message.open_transactions = 0;
            }
            self.settle_message(id);
        }
        for awaited in std::mem::take(&mut self.awaiting_reports) {
            self.events.push_back(Event::ReportMissing { message: awaited.id, message_id: awaited.message_id });
        }
        if tell_adapter {
            // A chunk in progress still ends (with `#`) before the connection closes.
            self.outbox.clear();
        } else {
            self.outbox = Outbox::new(self.config.max_chunk_size);
        }
        self.events.push_back(Event::Closed { reason });
        self.close_pending = tell_adapter;
    }
}

/// The outcome of a transaction as msrplib's `deliver_chunk` gives it: the response when
/// it is a 200, a [`TransactionError`] with its code and comment otherwise.
pub fn transaction_result(response: Chunk) -> Result<Chunk, TransactionError> {
    match response.code() {
        Some(200) => Ok(response),
        code => Err(MsrpError::new(code.unwrap_or(0), response.comment().unwrap_or_default())),
    }
}

/// Whether a message's headers ask for a success REPORT.
fn wants_success_report(headers: &Headers) -> bool {
    headers.get(&HeaderName::SuccessReport).is_some_and(|value| value.as_str().trim().eq_ignore_ascii_case("yes"))
}

/// A duration as people read it in a message: `30 s`, `1.5 s`, `250 ms`. The errors of
/// every msrp crate word their timeouts with it, so that they read alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayDuration(pub Duration);

impl std::fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let millis = self.0.as_millis();
        if millis < 1000 {
            write!(f, "{millis} ms")
        } else if millis % 1000 == 0 {
            write!(f, "{} s", millis / 1000)
        } else {
            write!(f, "{} s", self.0.as_secs_f64())
        }
    }
}
