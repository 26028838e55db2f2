//! The application's handles on a connection: [`Transport`] (msrplib's `MSRPTransport`)
//! and [`Session`] (`MSRPSession` and `GreenMSRPSession`).

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncRead, AsyncReadExt};
use futures::lock::Mutex as AsyncMutex;
use msrp_core::header::HeaderName;
use msrp_core::outbox::{MessageOptions, OutgoingId};
use msrp_core::relay::RelayError;
use msrp_core::session::{Event, MessageOutcome, SendError, SessionError, TransactionError, transaction_result};
use msrp_core::{AcceptTypes, Chunk, ChunkParams, MsrpError, Uri};

use crate::connect::ConnectError;
use crate::driver::{Connection, DriverState};
use crate::runtime::{ReadBuffer, Runtime, io_phrase};

/// What went wrong in a call on a [`Transport`] or [`Session`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session ended (or never bound), and why.
    #[error("session ended: {0}")]
    Session(#[from] SessionError),
    /// The call was refused (misuse or a closed session).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The peer (or the local timeout) failed the transaction (msrplib's
    /// `MSRPTransactionError`).
    #[error("transaction failed: {0}")]
    Transaction(TransactionError),
    /// Connecting to the peer failed: refused, timed out, a name without an address,
    /// TLS, or another system error.
    #[error(transparent)]
    Connect(ConnectError),
    /// The relay did not let this side use it: wrong credentials, a refusal, no answer
    /// in time, or the relay closed the connection while authenticating.
    #[error(transparent)]
    Relay(RelayError),
    /// Listening for peers (or accepting one) failed.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// `host:port` as the local URI names them.
        address: String,
        /// What kind of failure the system reported (`AddrInUse`, …).
        kind: std::io::ErrorKind,
        /// The system's words for it.
        reason: String,
    },
    /// The call cannot work as made: an empty or port-less path, `prepare` not called, an
    /// `msrps` URI without a TLS setting, a TLS setting that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// A failure to listen on (or accept at) `address`.
    pub(crate) fn listen(address: &str, error: &std::io::Error) -> Self {
        Self::Listen { address: address.to_owned(), kind: error.kind(), reason: io_phrase(error) }
    }
}

/// A callback for incoming chunks (msrplib's `on_incoming_cb(chunk, error)`): a chunk, or
/// the error that ended the session (called once, last).
pub type OnIncoming = Box<dyn FnMut(Result<Chunk, SessionError>) + Send>;

/// A bound MSRP connection (msrplib's `MSRPTransport`), from a connector or acceptor.
pub struct Transport<R: Runtime> {
    pub(crate) runtime: R,
    pub(crate) connection: Connection,
    pub(crate) events: mpsc::Receiver<Event>,
    /// The session's paths with ids of their own, so `make_chunk` needs no round trip.
    pub(crate) paths: msrp_core::Transport,
}

impl<R: Runtime> Transport<R> {
    /// The full local path.
    pub fn local_path(&self) -> &[Uri] {
        self.paths.local_path()
    }

    /// The full remote path.
    pub fn remote_path(&self) -> &[Uri] {
        self.paths.remote_path()
    }

    /// Builds a chunk from the transport's paths (msrplib `make_chunk`).
    pub fn make_chunk(&mut self, params: ChunkParams) -> Chunk {
        self.paths.make_chunk(params)
    }

    /// Queues a request for writing (msrplib `write_chunk`); with `wait`, returns once it
    /// was written. Its response is not waited for (see [`Session::deliver_chunk`]).
    pub async fn write_chunk(&self, chunk: Chunk, wait: bool) -> Result<(), Error> {
        self.connection.call_then_written(wait, move |state, now| state.session.send_chunk(now, chunk)).await??;
        Ok(())
    }

    /// Writes the response to `chunk` (msrplib `write_response`); `false` when the rules
    /// allow none. With `wait`, returns once it was written.
    pub async fn write_response(
        &self,
        chunk: &Chunk,
        code: u16,
        comment: Option<String>,
        wait: bool,
    ) -> Result<bool, Error> {
        let request = chunk.clone();
        let work = move |state: &mut DriverState, now| state.session.send_response(now, &request, code, comment);
        Ok(self.connection.call_then_written(wait, work).await??)
    }

    /// Writes bytes as they are (msrplib `write`); with `sync`, returns once they were
    /// written.
    pub async fn write(&self, data: Bytes, sync: bool) -> Result<(), Error> {
        self.connection.call_then_written(sync, move |state, now| state.session.send_raw(now, data)).await??;
        Ok(())
    }

    /// The next chunk received (msrplib `read_chunk`): a SEND chunk (or a virtual segment
    /// of one, as the session cut it), a REPORT, or a request to answer. `size` is a hint,
    /// as in msrplib; segments come at the session's `segment_size`. When the session
    /// ends, its reason.
    pub async fn read_chunk(&mut self, size: Option<usize>) -> Result<Chunk, Error> {
        let _ = size;
        next_chunk(&mut self.events, &self.connection).await
    }

    /// Checks To-Path and From-Path of an incoming SEND (msrplib
    /// `check_incoming_SEND_chunk`); the session does this itself for every request.
    #[doc(alias = "check_incoming_SEND_chunk")]
    pub fn check_incoming_send_chunk(&self, chunk: &Chunk) -> Result<(), MsrpError> {
        self.paths.check_incoming_send_chunk(chunk)
    }
}

/// The next chunk among the application's events; the session's end as an error.
async fn next_chunk(events: &mut mpsc::Receiver<Event>, connection: &Connection) -> Result<Chunk, Error> {
    while let Some(event) = events.next().await {
        match event {
            Event::Incoming(chunk) | Event::Request(chunk) | Event::Report { report: chunk, .. } => return Ok(chunk),
            Event::Closed { reason } => return Err(reason.unwrap_or(SessionError::ConnectionClosed).into()),
            _ => {}
        }
    }
    Err(connection.end_reason().into())
}

/// A file to send (msrplib's `OutgoingFile`): its reader is already at `position`.
pub struct OutgoingFile {
    /// Where the data comes from.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// The description: size, content type, position, message id, extra headers.
    pub file: msrp_core::session::OutgoingFile,
}

/// A message on its way: its ids and, later, its outcome.
#[derive(Debug)]
pub struct OutgoingMessage {
    /// The session's id for it.
    pub id: OutgoingId,
    /// Its Message-ID.
    pub message_id: String,
    outcome: oneshot::Receiver<MessageOutcome>,
}

impl OutgoingMessage {
    /// Waits until the message was delivered, failed or aborted.
    pub async fn outcome(self) -> MessageOutcome {
        self.outcome
            .await
            .unwrap_or_else(|_| MessageOutcome::Failed(MsrpError::new(408, "Session ended before the message did")))
    }
}

/// An MSRP session over a bound [`Transport`] (msrplib's `MSRPSession`; without a
/// callback, its incoming chunks are read with [`Session::receive_chunk`] as in
/// `GreenMSRPSession`).
pub struct Session<R: Runtime> {
    runtime: R,
    connection: Connection,
    events: Option<AsyncMutex<mpsc::Receiver<Event>>>,
    paths: Mutex<msrp_core::Transport>,
}

impl<R: Runtime> Session<R> {
    /// A session over `transport` accepting `accept_types` (others get 415). With
    /// `on_incoming`, every incoming chunk is handed to it (in a task of its own);
    /// without, read them with [`Session::receive_chunk`] or [`Session::next_event`].
    pub fn new(transport: Transport<R>, accept_types: AcceptTypes, on_incoming: Option<OnIncoming>) -> Self {
        let Transport { runtime, connection, mut events, paths } = transport;
        let setter = connection.clone();
        runtime.spawn(Box::pin(async move {
            let _ = setter.call(move |state, _| state.session.set_accept_types(accept_types)).await;
        }));
        let events = match on_incoming {
            Some(mut callback) => {
                let reader = connection.clone();
                runtime.spawn(Box::pin(async move {
                    loop {
                        match next_chunk(&mut events, &reader).await {
                            Ok(chunk) => callback(Ok(chunk)),
                            Err(Error::Session(error)) => return callback(Err(error)),
                            Err(_) => return callback(Err(SessionError::ConnectionClosed)),
                        }
                    }
                }));
                None
            }
            None => Some(AsyncMutex::new(events)),
        };
        Self { runtime, connection, events, paths: Mutex::new(paths) }
    }

    /// Builds a chunk from the session's paths (msrplib `make_chunk`).
    pub fn make_chunk(&self, params: ChunkParams) -> Chunk {
        match self.paths.lock() {
            Ok(mut paths) => paths.make_chunk(params),
            Err(poisoned) => poisoned.into_inner().make_chunk(params),
        }
    }

    /// Sends a request (msrplib `send_chunk`); `response_cb` gets its response, from
    /// the peer or made locally after 30 s (408, or 200 with `Failure-Report`
    /// partial/no).
    pub async fn send_chunk(
        &self,
        chunk: Chunk,
        response_cb: Option<Box<dyn FnOnce(Chunk) + Send>>,
    ) -> Result<(), Error> {
        let (waiter, response) = oneshot::channel();
        self.connection
            .call(move |state, now| {
                let id = state.session.send_chunk(now, chunk)?;
                state.responses.insert(id, waiter);
                Ok::<_, SendError>(())
            })
            .await??;
        if let Some(callback) = response_cb {
            self.runtime.spawn(Box::pin(async move {
                if let Ok(response) = response.await {
                    callback(response);
                }
            }));
        }
        Ok(())
    }

    /// Sends a request and waits for its outcome (msrplib `deliver_chunk`): the 200
    /// response, or [`Error::Transaction`]; `None` at once with `Failure-Report: no`.
    pub async fn deliver_chunk(&self, chunk: Chunk) -> Result<Option<Chunk>, Error> {
        let (waiter, response) = oneshot::channel();
        let expected = self
            .connection
            .call(move |state, now| {
                let id = state.session.deliver_chunk(now, chunk)?;
                if let Some(id) = id {
                    state.responses.insert(id, waiter);
                }
                Ok::<_, SendError>(id.is_some())
            })
            .await??;
        if !expected {
            return Ok(None);
        }
        let response = response.await.map_err(|_| self.connection.end_reason())?;
        transaction_result(response).map(Some).map_err(Error::Transaction)
    }

    /// Sends a whole message of `content_type`; it is cut into chunks and interleaved
    /// with other messages. Wait for [`OutgoingMessage::outcome`] to know it arrived.
    pub async fn send_message(&self, content_type: &str, data: Bytes) -> Result<OutgoingMessage, Error> {
        let mut options = MessageOptions::default();
        options.headers.set(HeaderName::ContentType, content_type);
        self.send_message_with(options, data).await
    }

    /// [`Session::send_message`] with every option (Message-ID, headers, position).
    pub async fn send_message_with(&self, options: MessageOptions, data: Bytes) -> Result<OutgoingMessage, Error> {
        self.start(move |state, now| state.session.send_message(now, options, data)).await
    }

    /// Starts sending a file (msrplib `send_file`) and returns at once; the file is read
    /// in the background as the connection takes it, so memory stays bounded whatever
    /// its size.
    pub async fn send_file(&self, file: OutgoingFile) -> Result<OutgoingMessage, Error> {
        let OutgoingFile { mut reader, file } = file;
        let remaining = file.size - file.position.min(file.size);
        let message = self.start(move |state, now| state.session.send_file(now, &file)).await?;
        let connection = self.connection.clone();
        let id = message.id;
        self.runtime.spawn(Box::pin(async move {
            if stream_file(&connection, id, &mut reader, remaining).await.is_err() {
                let _ = connection.call(move |state, now| state.session.abort_message(now, id)).await;
            }
        }));
        Ok(message)
    }

    /// Aborts an outgoing message: the rest of it is not sent, and if part of it went
    /// out it ends with `#`.
    pub async fn abort(&self, id: OutgoingId) -> Result<(), Error> {
        self.connection.call(move |state, now| state.session.abort_message(now, id)).await??;
        Ok(())
    }

    /// The application's word on a complete incoming message, when the session's
    /// `SessionConfig::confirm_messages` is on (see the core's `Session::confirm_message`):
    /// `Ok(())` once it is safe (say, written and flushed to disk) sends its success
    /// REPORT; `Err(status)` sends a failure REPORT with that status (e.g. 413) where the
    /// message's `Failure-Report` allows one. Returns whether a REPORT went out.
    pub async fn confirm_message(&self, message_id: &str, outcome: Result<(), MsrpError>) -> Result<bool, Error> {
        let message_id = message_id.to_owned();
        Ok(self.connection.call(move |state, now| state.session.confirm_message(now, &message_id, outcome)).await??)
    }

    async fn start(
        &self,
        start: impl FnOnce(&mut crate::driver::DriverState, std::time::Instant) -> Result<OutgoingId, SendError>
        + Send
        + 'static,
    ) -> Result<OutgoingMessage, Error> {
        let (waiter, outcome) = oneshot::channel();
        let (id, message_id) = self
            .connection
            .call(move |state, now| {
                let id = start(state, now)?;
                state.outcomes.insert(id, waiter);
                Ok::<_, SendError>((id, state.session.outgoing_message_id(id).unwrap_or_default()))
            })
            .await??;
        Ok(OutgoingMessage { id, message_id, outcome })
    }

    /// Sends what is queued, waits for the responses, then closes (msrplib `shutdown`);
    /// with `sync`, returns once the session ended, else once the shutdown began. A file
    /// or streamed message still being written is aborted (`#`, outcome `Aborted`).
    pub async fn shutdown(&self, sync: bool) {
        let (waiter, closed) = oneshot::channel();
        let asked = self
            .connection
            .call(move |state, now| {
                state.closed.push(waiter);
                state.session.shutdown(now);
            })
            .await;
        if sync && asked.is_ok() {
            let _ = closed.await;
        }
    }

    /// The next incoming chunk (`GreenMSRPSession.receive_chunk`): a SEND chunk or
    /// segment, a REPORT or a request; the session's end as an error. Not available
    /// when the session was made with a callback.
    pub async fn receive_chunk(&self) -> Result<Chunk, Error> {
        let Some(events) = &self.events else { return Err(SendError::Closed.into()) };
        let mut events = events.lock().await;
        next_chunk(&mut events, &self.connection).await
    }

    /// The next event for the application (incoming chunks, REPORTs, aborted or
    /// unreported messages, the end); `None` after the end.
    pub async fn next_event(&self) -> Option<Event> {
        let events = self.events.as_ref()?;
        events.lock().await.next().await
    }
}

/// Pieces whose memory is kept for reuse: about as many as can be on their way out at
/// once (read ahead, in the session's message buffer, queued for the socket).
const FILE_PIECES_KEPT: usize = 8;

/// Why feeding a file stopped before its end.
enum FeedStopped {
    /// The file could not be read to its announced size.
    Unreadable,
    /// The session took no more.
    Session,
}

impl From<SessionError> for FeedStopped {
    fn from(_: SessionError) -> Self {
        Self::Session
    }
}

impl From<SendError> for FeedStopped {
    fn from(_: SendError) -> Self {
        Self::Session
    }
}

/// Feeds `remaining` bytes of `reader` into the streamed message `id`, waiting for room
/// whenever the session takes less than offered.
async fn stream_file(
    connection: &Connection,
    id: OutgoingId,
    reader: &mut (dyn AsyncRead + Send + Unpin),
    mut remaining: u64,
) -> Result<(), FeedStopped> {
    // Pieces of one chunk's size are cut into chunks without being joined or copied, and
    // a message buffer's worth goes in each call, as every call is a round trip to the
    // driver. A small file gets a piece of its own size.
    let (chunk_size, message_buffer) = connection
        .call(|state, _| (state.session.config().max_chunk_size, state.session.config().message_buffer))
        .await?;
    let piece = chunk_size.min(usize::try_from(remaining).unwrap_or(usize::MAX)).max(1);
    let pieces_per_call = (message_buffer / piece).max(1);
    let mut buffer = ReadBuffer::new(piece, FILE_PIECES_KEPT);
    let mut unsent: VecDeque<Bytes> = VecDeque::new();
    loop {
        while remaining > 0 && unsent.len() < pieces_per_call {
            let room = buffer.room();
            let want = room.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
            // Whole pieces, even from a reader that returns less than asked.
            let mut filled = 0;
            while filled < want {
                match reader.read(&mut room[filled..want]).await.map_err(|_| FeedStopped::Unreadable)? {
                    // The file ended before its announced size.
                    0 => return Err(FeedStopped::Unreadable),
                    n => filled += n,
                }
            }
            unsent.push_back(buffer.take(want));
            remaining -= want as u64;
        }
        let (room, wait) = oneshot::channel();
        let offered: Vec<Bytes> = unsent.iter().cloned().collect();
        let last = remaining == 0;
        let taken = connection
            .call(move |state, now| {
                let mut taken = 0;
                for data in offered {
                    let took = match state.session.write_message(now, id, data.clone()) {
                        Ok(took) => took,
                        Err(SendError::Blocked) => 0,
                        Err(error) => return Err(error),
                    };
                    taken += took;
                    if took < data.len() {
                        // Registered in the same step as the short write: no wake-up is missed.
                        state.writable.insert(id, room);
                        return Ok(taken);
                    }
                }
                if last {
                    state.session.finish_message(now, id)?;
                }
                Ok(taken)
            })
            .await??;
        let mut taken = taken;
        while let Some(front) = unsent.front_mut() {
            let took = taken.min(front.len());
            let _ = front.split_to(took);
            taken -= took;
            if !front.is_empty() {
                break;
            }
            unsent.pop_front();
        }
        if unsent.is_empty() && last {
            return Ok(());
        }
        if !unsent.is_empty() && wait.await.is_err() {
            // The message ended (failed or aborted) while waiting.
            return Ok(());
        }
    }
}
