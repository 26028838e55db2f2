//! The connection driver: one task owns the core [`Session`] of a connection and its
//! socket (style.md §3, with the socket polled in place of separate pumps: the bytes
//! never cross threads on their way).
//!
//! The driver wakes on, in this order: bytes written (it keeps writing what the session
//! transmitted whenever the socket takes more), a call from an API handle, bytes read
//! (only while the session and the application want more, so reads never wait on
//! writes nor writes on reads), room in the application's event queue, or the session's
//! timer. After each wake-up it checks the clock, runs due timers, and drains
//! `poll_output`, queueing transmits for the socket and events for whoever waits.
//!
//! Once the session closed, what it transmitted has a shutdown timeout
//! (`SessionConfig::shutdown_timeout`) to be written: a peer that stopped reading may
//! never take it. Then the driver ends and the connection is dropped. A session that
//! ended because nothing could be written for its write-stall timeout
//! (`SessionError::WriteStalled`) already waited for the peer: the driver gives up on its
//! bytes at once.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::io::AsyncWrite;
use futures::{FutureExt, SinkExt, StreamExt};
use msrp_core::outbox::OutgoingId;
use msrp_core::session::{Event, Input, MessageOutcome, Output, RequestId, Session, SessionError};

use crate::runtime::{BoxStream, ReadBuffer, Runtime};

/// Bytes asked for per socket read.
const READ_SIZE: usize = 120 * 1024;
/// Bytes asked for per socket read while the connection is not busy (a chat message
/// fits); a read that fills them asks for `READ_SIZE` next. A waiting connection holds
/// no read buffer at all.
const IDLE_READ_SIZE: usize = 8 * 1024;
/// Application events held for a slow reader before the connection stops reading.
pub const EVENT_QUEUE: usize = 64;

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
    bound: Vec<oneshot::Sender<Result<(), SessionError>>>,
    /// Waiting for the end.
    pub(crate) closed: Vec<oneshot::Sender<()>>,
    /// Waiting until what was queued is written: the session's written count to reach
    /// (set at the end of the turn that queued it).
    pub(crate) flushes: Vec<(Option<u64>, oneshot::Sender<()>)>,
    /// Events for the application, in order.
    events: VecDeque<Event>,
    /// Why the session ended, once it did.
    end: Option<SessionError>,
    /// Told when the driver ends: they run as the state is dropped.
    end_guards: Vec<EndGuard>,
}

/// Runs its callback when dropped. Kept in the driver's state, it tells of the driver's
/// end however that comes: the loop finished, or the runtime dropped the task.
struct EndGuard(Option<Box<dyn FnOnce() + Send>>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        if let Some(callback) = self.0.take() {
            callback();
        }
    }
}

impl DriverState {
    /// Runs due timers and drains the session: transmits for the socket, events for whoever
    /// waits.
    fn run_session(&mut self, socket: &mut Socket, now: Instant) {
        // Check the clock before trusting a timer (style.md §6.1).
        if self.session.poll_timeout().is_some_and(|deadline| deadline <= now) {
            self.session.handle_timeout(now);
        }
        while let Some(output) = self.session.poll_output(now) {
            match output {
                Output::Transmit(transmit) => {
                    socket.queue.extend(transmit.parts.into_iter().filter(|part| !part.is_empty()));
                }
                Output::Event(event) => self.dispatch(event),
                Output::Close => socket.closing = true,
            }
        }
        self.settle_flushes();
    }

    /// Gives waiters of this turn their target (everything transmitted so far) and lets
    /// go of those whose bytes are written.
    fn settle_flushes(&mut self) {
        let (transmitted, written) = (self.session.transmitted(), self.session.written());
        for (target, waiter) in std::mem::take(&mut self.flushes) {
            let target = target.unwrap_or(transmitted);
            if target > written {
                self.flushes.push((Some(target), waiter));
            } else {
                let _ = waiter.send(());
            }
        }
    }

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

    /// Runs `work` on the driver; with `wait`, returns only once everything queued until
    /// then (what `work` queued included) was written to the connection.
    pub(crate) async fn call_then_written<T: Send + 'static, E: Send + 'static>(
        &self,
        wait: bool,
        work: impl FnOnce(&mut DriverState, Instant) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, SessionError> {
        let (done, written) = oneshot::channel();
        let result = self
            .call(move |state, now| {
                let result = work(state, now);
                if wait && result.is_ok() {
                    state.flushes.push((None, done));
                }
                result
            })
            .await?;
        if wait && result.is_ok() {
            written.await.map_err(|_| self.end_reason())?;
        }
        Ok(result)
    }

    /// Runs `callback` on the driver's task once it ended (at once if it has), without
    /// keeping the session alive the way a handle does.
    pub(crate) fn on_end(&self, callback: impl FnOnce() + Send + 'static) {
        let guard = EndGuard(Some(Box::new(callback)));
        let call: Call = Box::new(move |state, _| state.end_guards.push(guard));
        // A call the driver never runs (it ended) is dropped, and the guard runs then.
        let _ = self.calls.unbounded_send(call);
    }

    /// Why the session ended (connection closed when it ended cleanly).
    pub(crate) fn end_reason(&self) -> SessionError {
        self.ended.lock().ok().and_then(|reason| reason.clone()).unwrap_or(SessionError::ConnectionClosed)
    }
}

/// Starts the driver of a connection on `runtime`; `bound` is told when the session is
/// bound, or why it ended first. Returns the handle and the application's event stream.
pub(crate) fn start<R: Runtime>(
    runtime: &R,
    session: Session,
    stream: BoxStream,
    bound: oneshot::Sender<Result<(), SessionError>>,
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
        bound: vec![bound],
        closed: Vec::new(),
        flushes: Vec::new(),
        events: VecDeque::new(),
        end: None,
        end_guards: Vec::new(),
    };
    // The state is boxed apart: an async fn's state machine keeps room for its arguments
    // and, separately, for what they are moved into, so a session passed by value would
    // take its size twice in every idle connection's task (8 KiB instead of 4).
    let state = Box::new(state);
    runtime.spawn_driver(Box::pin(drive(runtime.clone(), state, stream, call_queue, event_sender, ended)));
    (connection, event_receiver)
}

/// What woke the driver.
enum Wake {
    /// This many bytes were written.
    Written(usize),
    /// Writing failed: the connection is gone.
    WriteFailed,
    /// The write side closed as the session asked.
    WriteClosed,
    Call(Option<Call>),
    /// Bytes read; empty at the end of the stream or after an error.
    Read(Bytes),
    EventRoom(bool),
    Timer,
}

/// The connection's socket, written and read from the driver task itself: no pump tasks,
/// no hops between threads for the bytes.
#[allow(clippy::struct_excessive_bools)] // the read and write sides' independent states
struct Socket {
    stream: BoxStream,
    /// Bytes to write, in order.
    queue: VecDeque<Bytes>,
    /// Bytes written and not yet reported to the session.
    written: usize,
    needs_flush: bool,
    /// Close once the queue is written (the session asked to).
    closing: bool,
    /// The write side is finished: closed as asked, or failed.
    write_done: bool,
    /// The read side ended.
    read_done: bool,
    buffer: ReadBuffer,
}

/// Read buffers kept for reuse during a transfer.
const READ_BUFFERS_KEPT: usize = 16;

impl Socket {
    fn new(stream: BoxStream) -> Self {
        Self {
            stream,
            queue: VecDeque::new(),
            written: 0,
            needs_flush: false,
            closing: false,
            write_done: false,
            read_done: false,
            buffer: ReadBuffer::new(READ_SIZE, READ_BUFFERS_KEPT).with_idle_size(IDLE_READ_SIZE),
        }
    }

    /// Writes what it can without waiting; an error ends the write side.
    fn poll_write_queue(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while !self.queue.is_empty() {
            match self.stream.poll_write_bytes(cx, self.queue.make_contiguous()) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    let mut left = n;
                    while let Some(front) = self.queue.front_mut() {
                        let taken = left.min(front.len());
                        let _ = front.split_to(taken);
                        left -= taken;
                        if !front.is_empty() {
                            break;
                        }
                        self.queue.pop_front();
                    }
                    self.written += n;
                    self.needs_flush = true;
                }
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Ok(()),
            }
        }
        // A TLS stream holds records back until flushed.
        if self.needs_flush {
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Ok(()),
            }
        }
        if self.closing && !self.write_done {
            match Pin::new(&mut self.stream).poll_close(cx) {
                Poll::Ready(_) => self.write_done = true,
                Poll::Pending => return Ok(()),
            }
        }
        Ok(())
    }

    fn has_writing_to_do(&self) -> bool {
        !self.write_done && (!self.queue.is_empty() || self.needs_flush || self.closing)
    }

    /// Once the session closed, gives what is left to write until `linger` (set on the
    /// first call, a shutdown timeout from `now`, or `now` after a write stall: the peer
    /// is known not to read), as the peer may never read it; then gives up on it (the
    /// bytes go with the stream).
    fn linger(&mut self, session: &Session, end: Option<&SessionError>, linger: &mut Option<Instant>, now: Instant) {
        if session.is_closed() && self.has_writing_to_do() {
            let wait = match end {
                Some(SessionError::WriteStalled { .. }) => std::time::Duration::ZERO,
                _ => session.config().shutdown_timeout,
            };
            let deadline = *linger.get_or_insert(now + wait);
            if now >= deadline {
                self.queue.clear();
                self.needs_flush = false;
                self.write_done = true;
            }
        }
    }

    /// Reads what has arrived; empty bytes when the stream ended or failed.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Bytes> {
        match self.stream.poll_read_bytes(cx, &mut self.buffer) {
            Poll::Ready(Ok(data)) if !data.is_empty() => Poll::Ready(data),
            Poll::Ready(_) => {
                self.read_done = true;
                Poll::Ready(Bytes::new())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

async fn drive<R: Runtime>(
    runtime: R,
    mut state: Box<DriverState>,
    stream: BoxStream,
    mut calls: mpsc::UnboundedReceiver<Call>,
    mut events: mpsc::Sender<Event>,
    ended: Arc<Mutex<Option<SessionError>>>,
) {
    let mut socket = Socket::new(stream);
    state.session.handle_input(runtime.now(), Input::Connected);
    let mut calls_open = true;
    let mut events_open = true;
    let mut timer: Option<(Instant, crate::runtime::BoxFuture<'static, ()>)> = None;
    // Once the session closed, how long what it transmitted may wait for a peer that
    // does not read (it may never).
    let mut linger: Option<Instant> = None;
    loop {
        let now = runtime.now();
        state.run_session(&mut socket, now);
        if !events_open {
            state.events.clear();
        }
        socket.linger(&state.session, state.end.as_ref(), &mut linger, now);
        let flushed = !socket.has_writing_to_do();
        if state.session.is_closed() && state.events.is_empty() && (flushed || socket.read_done) {
            break;
        }
        // A timer is made anew only when the deadline comes earlier: runtimes register
        // timers in shared structures, which costs more than a loop turn, and deadlines
        // move later with every request sent. A timer left early only wakes the loop once.
        match ([state.session.poll_timeout(), linger].into_iter().flatten().min(), &timer) {
            (Some(deadline), Some((at, _))) if *at <= deadline => {}
            (Some(deadline), _) => timer = Some((deadline, runtime.sleep_until(deadline))),
            (None, _) => timer = None,
        }
        let reading = !socket.read_done && state.session.wants_read() && state.events.len() < EVENT_QUEUE;
        let wake = poll_fn(|cx| {
            if socket.has_writing_to_do() {
                if socket.poll_write_queue(cx).is_err() {
                    socket.write_done = true;
                    return Poll::Ready(Wake::WriteFailed);
                }
                if socket.write_done {
                    return Poll::Ready(Wake::WriteClosed);
                }
            }
            if socket.written > 0 {
                return Poll::Ready(Wake::Written(std::mem::take(&mut socket.written)));
            }
            if calls_open {
                if let Poll::Ready(call) = calls.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Call(call));
                }
            }
            if reading {
                if let Poll::Ready(data) = socket.poll_read(cx) {
                    return Poll::Ready(Wake::Read(data));
                }
            }
            if events_open && !state.events.is_empty() {
                if let Poll::Ready(ready) = events.poll_ready(cx) {
                    return Poll::Ready(Wake::EventRoom(ready.is_ok()));
                }
            }
            if let Some((_, sleep)) = &mut timer {
                if sleep.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
            }
            Poll::Pending
        })
        .await;
        let now = runtime.now();
        match wake {
            Wake::Written(n) => state.session.handle_input(now, Input::Written(n)),
            Wake::WriteFailed => state.session.handle_input(now, Input::Closed),
            // The loop ends once the events are handed over.
            Wake::WriteClosed => {}
            Wake::Call(Some(call)) => call(&mut state, now),
            Wake::Call(None) => {
                // Every handle is gone: end the session politely.
                calls_open = false;
                state.session.shutdown(now);
            }
            Wake::Read(data) if data.is_empty() => state.session.handle_input(now, Input::Closed),
            Wake::Read(data) => state.session.handle_input(now, Input::Received(data)),
            Wake::EventRoom(true) => {
                // Hand over as many events as there is room for in one turn.
                while let Some(event) = state.events.pop_front() {
                    if events.start_send(event).is_err() {
                        events_open = false;
                        break;
                    }
                    let room = poll_fn(|cx| Poll::Ready(events.poll_ready(cx))).await;
                    if !matches!(room, Poll::Ready(Ok(()))) {
                        break;
                    }
                }
            }
            Wake::EventRoom(false) => events_open = false,
            // A fired timer is not polled again (some runtimes' never wake a second time).
            Wake::Timer => timer = None,
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
