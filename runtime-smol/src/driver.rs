//! The connection driver: one task owns the core [`Session`] of a connection; two pumps
//! only move bytes (style.md §3).
//!
//! The driver wakes on, in this order: a write acknowledged by the writer pump, a call
//! from an API handle, bytes from the reader pump (only while the session and the
//! application want more), room in the application's event queue, or the session's
//! timer. After each wake-up it checks the clock, runs due timers, and drains
//! `poll_output`, sending transmits to the writer pump and events to whoever waits.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::{FutureExt, SinkExt, StreamExt};
use msrp_core::outbox::OutgoingId;
use msrp_core::session::{Event, Input, MessageOutcome, Output, RequestId, Session, SessionError, Transmit};

use crate::runtime::{BoxStream, Runtime};

/// Bytes asked for per socket read.
const READ_SIZE: usize = 64 * 1024;
/// Application events held for a slow reader before the connection stops reading.
pub(crate) const EVENT_QUEUE: usize = 64;

/// Work for the driver, sent by an API handle: it runs with the driver's state.
pub(crate) type Call = Box<dyn FnOnce(&mut DriverState, Instant) + Send>;

/// What the driver keeps besides the session: who waits for what.
pub(crate) struct DriverState {
    pub(crate) session: Session,
    /// Responses to requests, by request.
    pub(crate) responses: HashMap<RequestId, oneshot::Sender<msrp_core::Chunk>>,
    /// Outcomes of outgoing messages.
    pub(crate) outcomes: HashMap<OutgoingId, oneshot::Sender<MessageOutcome>>,
    /// Streamed messages waiting for room.
    pub(crate) writable: HashMap<OutgoingId, oneshot::Sender<()>>,
    /// Waiting for the binding (or the end).
    pub(crate) bound: Vec<oneshot::Sender<Result<(), SessionError>>>,
    /// Waiting for the end.
    pub(crate) closed: Vec<oneshot::Sender<()>>,
    /// Events for the application, in order.
    events: VecDeque<Event>,
    /// Why the session ended, once it did.
    end: Option<SessionError>,
}

impl DriverState {
    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Bound => {
                for waiter in self.bound.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
            }
            Event::Response { request, response, .. } => {
                if let Some(waiter) = self.responses.remove(&request) {
                    let _ = waiter.send(response);
                }
            }
            Event::MessageDone { message, outcome, .. } => {
                if let Some(waiter) = self.outcomes.remove(&message) {
                    let _ = waiter.send(outcome);
                }
                // A writer waiting for room learns the message ended.
                self.writable.remove(&message);
            }
            Event::Writable { message } => {
                if let Some(waiter) = self.writable.remove(&message) {
                    let _ = waiter.send(());
                }
            }
            Event::Closed { reason } => {
                let end = reason.clone().unwrap_or(SessionError::ConnectionClosed);
                for waiter in self.bound.drain(..) {
                    let _ = waiter.send(Err(end.clone()));
                }
                self.end = Some(end);
                self.events.push_back(Event::Closed { reason });
            }
            other => self.events.push_back(other),
        }
    }
}

/// The handle side of a connection: calls into the driver, and the final reason once it
/// ended.
#[derive(Clone)]
pub(crate) struct Connection {
    calls: mpsc::UnboundedSender<Call>,
    ended: Arc<Mutex<Option<SessionError>>>,
}

impl Connection {
    /// Runs `work` on the driver and returns its result; fails once the session ended.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut DriverState, Instant) -> T + Send + 'static,
    ) -> Result<T, SessionError> {
        let (reply, result) = oneshot::channel();
        let call: Call = Box::new(move |state, now| {
            let _ = reply.send(work(state, now));
        });
        if self.calls.unbounded_send(call).is_err() {
            return Err(self.end_reason());
        }
        result.await.map_err(|_| self.end_reason())
    }

    /// Why the session ended (connection closed when it ended cleanly).
    pub(crate) fn end_reason(&self) -> SessionError {
        self.ended.lock().ok().and_then(|reason| reason.clone()).unwrap_or(SessionError::ConnectionClosed)
    }
}

/// Starts the driver and pumps of a connection on `runtime`. Returns the handle and the
/// application's event stream.
pub(crate) fn start<R: Runtime>(
    runtime: &R,
    session: Session,
    stream: BoxStream,
) -> (Connection, mpsc::Receiver<Event>) {
    let (calls, call_queue) = mpsc::unbounded();
    let (event_sender, event_receiver) = mpsc::channel(EVENT_QUEUE);
    let ended = Arc::new(Mutex::new(None));
    let connection = Connection { calls, ended: Arc::clone(&ended) };
    let state = DriverState {
        session,
        responses: HashMap::new(),
        outcomes: HashMap::new(),
        writable: HashMap::new(),
        bound: Vec::new(),
        closed: Vec::new(),
        events: VecDeque::new(),
        end: None,
    };
    runtime.spawn(Box::pin(drive(runtime.clone(), state, stream, call_queue, event_sender, ended)));
    (connection, event_receiver)
}

/// What woke the driver.
enum Wake {
    /// An acknowledgement, or `None` when the writer pump stopped.
    Written(Option<io::Result<usize>>),
    Call(Option<Call>),
    Read(Option<io::Result<Bytes>>),
    EventRoom(bool),
    Timer,
}

/// What the writer pump is asked to do.
enum WriteOp {
    Write(Transmit),
    Close,
}

async fn drive<R: Runtime>(
    runtime: R,
    mut state: DriverState,
    stream: BoxStream,
    mut calls: mpsc::UnboundedReceiver<Call>,
    mut events: mpsc::Sender<Event>,
    ended: Arc<Mutex<Option<SessionError>>>,
) {
    let (reader, writer) = stream.split();
    let (read_sender, mut reads) = mpsc::channel(1);
    let (write_sender, write_queue) = mpsc::unbounded();
    let (ack_sender, mut acks) = mpsc::unbounded();
    runtime.spawn(Box::pin(read_pump(reader, read_sender)));
    runtime.spawn(Box::pin(write_pump(writer, write_queue, ack_sender)));
    state.session.handle_input(runtime.now(), Input::Connected);
    let mut calls_open = true;
    let mut events_open = true;
    let mut writer_open = true;
    loop {
        let now = runtime.now();
        // Check the clock before trusting a timer (style.md §6.1).
        if state.session.poll_timeout().is_some_and(|deadline| deadline <= now) {
            state.session.handle_timeout(now);
        }
        while let Some(output) = state.session.poll_output(now) {
            match output {
                Output::Transmit(transmit) => {
                    writer_open &= write_sender.unbounded_send(WriteOp::Write(transmit)).is_ok();
                }
                Output::Event(event) => state.dispatch(event),
                Output::Close => {
                    let _ = write_sender.unbounded_send(WriteOp::Close);
                }
            }
        }
        if !events_open {
            state.events.clear();
        }
        if state.session.is_closed() && state.events.is_empty() {
            break;
        }
        let mut timer = state.session.poll_timeout().map(|deadline| runtime.sleep_until(deadline));
        let reading = state.session.wants_read() && state.events.len() < EVENT_QUEUE;
        let wake = poll_fn(|cx| {
            if writer_open {
                if let Poll::Ready(ack) = acks.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Written(ack));
                }
            }
            if calls_open {
                if let Poll::Ready(call) = calls.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Call(call));
                }
            }
            if reading {
                if let Poll::Ready(data) = reads.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Read(data));
                }
            }
            if events_open && !state.events.is_empty() {
                if let Poll::Ready(ready) = events.poll_ready(cx) {
                    return Poll::Ready(Wake::EventRoom(ready.is_ok()));
                }
            }
            if let Some(timer) = &mut timer {
                if timer.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
            }
            Poll::Pending
        })
        .await;
        let now = runtime.now();
        match wake {
            Wake::Written(Some(Ok(n))) => state.session.handle_input(now, Input::Written(n)),
            Wake::Written(Some(Err(_)) | None) => {
                writer_open = false;
                state.session.handle_input(now, Input::Closed);
            }
            Wake::Call(Some(call)) => call(&mut state, now),
            Wake::Call(None) => {
                // Every handle is gone: end the session politely.
                calls_open = false;
                state.session.shutdown(now);
            }
            Wake::Read(Some(Ok(data))) => state.session.handle_input(now, Input::Received(data)),
            Wake::Read(Some(Err(_)) | None) => state.session.handle_input(now, Input::Closed),
            Wake::EventRoom(true) => {
                if let Some(event) = state.events.pop_front() {
                    events_open = events.start_send(event).is_ok();
                }
            }
            Wake::EventRoom(false) => events_open = false,
            Wake::Timer => {}
        }
    }
    if let Ok(mut reason) = ended.lock() {
        *reason = state.end.take();
    }
    for waiter in state.closed.drain(..) {
        let _ = waiter.send(());
    }
    let _ = events.close().await;
}

/// Reads from the socket and hands the bytes to the driver; an empty read or an error
/// ends it.
async fn read_pump(mut reader: futures::io::ReadHalf<BoxStream>, mut sender: mpsc::Sender<io::Result<Bytes>>) {
    let mut buffer = BytesMut::new();
    loop {
        buffer.resize(READ_SIZE, 0);
        match reader.read(&mut buffer).await {
            Ok(0) => {
                let _ = sender.send(Err(io::ErrorKind::UnexpectedEof.into())).await;
                return;
            }
            Ok(n) => {
                buffer.truncate(n);
                if sender.send(Ok(buffer.split().freeze())).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        }
    }
}

/// Writes what the driver transmits and says how much went out.
async fn write_pump(
    mut writer: futures::io::WriteHalf<BoxStream>,
    mut queue: mpsc::UnboundedReceiver<WriteOp>,
    acks: mpsc::UnboundedSender<io::Result<usize>>,
) {
    while let Some(op) = queue.next().await {
        match op {
            WriteOp::Write(transmit) => {
                let len = transmit.len();
                let mut result = Ok(len);
                for part in transmit.parts.iter().filter(|part| !part.is_empty()) {
                    if let Err(error) = writer.write_all(part).await {
                        result = Err(error);
                        break;
                    }
                }
                // A TLS stream holds records back until flushed.
                if result.is_ok() {
                    if let Err(error) = writer.flush().await {
                        result = Err(error);
                    }
                }
                let failed = result.is_err();
                if acks.unbounded_send(result).is_err() || failed {
                    return;
                }
            }
            WriteOp::Close => {
                let _ = writer.flush().await;
                let _ = writer.close().await;
                return;
            }
        }
    }
}
