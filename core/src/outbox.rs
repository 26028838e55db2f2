//! Outgoing messages of one session, cut into SEND chunks and interleaved.
//!
//! A message is added whole or streamed (`write` as data arrives, then `finish`). Each
//! call to [`Outbox::next_chunk`] takes the next message in round-robin order and cuts one
//! chunk of at most `max_chunk_size` bytes from it, so a chat message added during a
//! large transfer leaves after at most one chunk of the transfer (RFC 4975 §7.1.1: "SHOULD
//! be interleaved fairly"). The last chunk of a message ends with `$`, an aborted message
//! ends with `#`, and a message the peer refused with 413 sends nothing more.
//!
//! A chunk's body leaves in slices ([`Outbox::open_chunk`], then [`Outbox::next_slice`]),
//! so that a chunk in progress can be ended early with `+` when other traffic waits
//! ([`Outbox::interrupt`], RFC 4975 §7.1.1); the rest of its body goes back to its
//! message and leaves in a later chunk. An abort or a 413 ends a chunk in progress with `#`.
//!
//! The outbox only builds chunks; the session engine decides when to send them.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::chunk::{Chunk, ContinuationFlag, end_line_needle, put_end_line};
use crate::header::{ByteRange, HeaderName, Headers};
use crate::transport::{ChunkParams, MAX_UNINTERRUPTIBLE_BODY, Transport};

/// Identifies a message in an [`Outbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutgoingId(u64);

/// What the application says about a message it is about to send.
#[derive(Debug, Clone, Default)]
pub struct MessageOptions {
    /// The Entry-ID; a fresh random one when `None` (keep the original when resending).
    pub message_id: Option<String>,
    /// Headers for every chunk of the message (Content-Type, Success-Report, …).
    pub headers: Headers,
    /// The size of the whole message, when known (it goes into Byte-Range).
    pub total: Option<u64>,
    /// Bytes of the message already delivered (resume from this position; RFC 4975
    /// Byte-Range starts at `position + 1`).
    pub position: u64,
}

/// Why the outbox refused a call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// No such message, or it already ended.
    #[error("no open outgoing message {0:?}")]
    UnknownMessage(OutgoingId),
    /// More data than the announced total.
    #[error("message {id:?}: {written} bytes written, more than the announced total of {total}")]
    TooLarge {
        /// The message.
        id: OutgoingId,
        /// Bytes written.
        written: u64,
        /// The announced total.
        total: u64,
    },
    /// `finish` before the announced total was written.
    #[error("message {id:?} finished after {written} of {total} bytes")]
    Incomplete {
        /// The message.
        id: OutgoingId,
        /// Bytes written.
        written: u64,
        /// The announced total.
        total: u64,
    },
}

/// A message in the outbox.
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)] // independent facts, not a hidden state machine
struct Entry {
    id: OutgoingId,
    message_id: String,
    headers: Headers,
    total: Option<u64>,
    /// Bytes already put into chunks (from the start of the message).
    chunked: u64,
    /// Data written but not yet put into a chunk.
    pending: VecDeque<Bytes>,
    pending_len: usize,
    finished: bool,
    aborted: bool,
    /// Whether a chunk of this message went out (an abort must then be said with `#`).
    sent_any: bool,
    /// The front of `pending` is the rest of an interrupted chunk: it goes next as a chunk
    /// of its own, not joined (copied) with what follows.
    resumed: bool,
}

/// The outgoing messages of a session. See the [module docs](self).
#[derive(Debug)]
pub struct Outbox {
    max_chunk_size: usize,
    /// Round-robin order: the front message gives the next chunk.
    messages: VecDeque<Entry>,
    /// The chunk whose body is being handed out; its message is out of `messages` until
    /// the chunk ends.
    open: Option<OpenChunk>,
    next_id: u64,
}

/// A chunk whose head went out and whose body is handed out in slices.
#[derive(Debug)]
struct OpenChunk {
    message: Entry,
    transaction_id: String,
    /// Byte-Range start of the chunk.
    start: u64,
    /// The chunk's body as planned; an interruption or an abort shortens it.
    body: Bytes,
    /// Body bytes handed out.
    sent: usize,
    /// The end-line's flag and whether it ends the message, as things stand.
    flag: ContinuationFlag,
    last: bool,
    /// Whether its Byte-Range end is `*`, so that it may end before `body` does.
    interruptible: bool,
    /// Whether the encoding has a body section (the end-line then starts with a CRLF).
    body_section: bool,
}

/// Body bytes of the chunk in progress, and its end-line when the chunk ends with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSlice {
    /// The message the chunk belongs to.
    pub id: OutgoingId,
    /// The chunk's transaction id.
    pub transaction_id: String,
    /// The next body bytes (a slice of the message's data, not a copy); may be empty.
    pub data: Bytes,
    /// Set when the chunk ends after `data`.
    pub end: Option<ChunkEnd>,
}

/// How a chunk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkEnd {
    /// The end-line, with the CRLF that closes the body when there is one.
    pub line: Bytes,
    /// Its flag: `+` also when the chunk was interrupted.
    pub flag: ContinuationFlag,
    /// Whether the message ends with this chunk (`$` or `#`).
    pub last: bool,
    /// The chunk's Byte-Range start.
    pub start: u64,
    /// Body bytes the chunk carried.
    pub len: u64,
}

/// One chunk cut from a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingChunk {
    /// The message it belongs to.
    pub id: OutgoingId,
    /// The SEND chunk, ready to encode.
    pub chunk: Chunk,
    /// Whether this chunk ends the message (`$` or `#`).
    pub last: bool,
}

impl Outbox {
    /// An empty outbox cutting chunks of at most `max_chunk_size` body bytes (at least 1).
    pub fn new(max_chunk_size: usize) -> Self {
        Self { max_chunk_size: max_chunk_size.max(1), messages: VecDeque::new(), open: None, next_id: 0 }
    }

    /// Starts a message; data follows with [`Outbox::write`], then [`Outbox::finish`].
    pub fn start(&mut self, transport: &mut Transport, options: MessageOptions) -> OutgoingId {
        let id = OutgoingId(self.next_id);
        self.next_id += 1;
        let message_id = options.message_id.unwrap_or_else(|| transport.ids().message_id());
        self.messages.push_back(Entry {
            id,
            message_id,
            headers: options.headers,
            total: options.total,
            chunked: options.position,
            pending: VecDeque::new(),
            pending_len: 0,
            finished: false,
            aborted: false,
            sent_any: false,
            resumed: false,
        });
        id
    }

    /// Adds a whole message: `start`, one `write` and `finish`.
    pub fn send(&mut self, transport: &mut Transport, mut options: MessageOptions, data: Bytes) -> OutgoingId {
        options.total = Some(options.position + data.len() as u64);
        let id = self.start(transport, options);
        // `start` pushed the entry just now; it is the last one.
        let message = self.messages.back_mut().expect("start added an entry");
        message.pending_len = data.len();
        message.pending.push_back(data);
        message.finished = true;
        id
    }

    /// Appends data to a started message (not once it is finished or aborted).
    pub fn write(&mut self, id: OutgoingId, data: Bytes) -> Result<(), OutboxError> {
        let message = self.open_message_mut(id).ok_or(OutboxError::UnknownMessage(id))?;
        let written = message.chunked + (message.pending_len + data.len()) as u64;
        if let Some(total) = message.total.filter(|&total| written > total) {
            return Err(OutboxError::TooLarge { id, written, total });
        }
        message.pending_len += data.len();
        message.pending.push_back(data);
        Ok(())
    }

    /// Says all data of the message was written.
    pub fn finish(&mut self, id: OutgoingId) -> Result<(), OutboxError> {
        let message = self.open_message_mut(id).ok_or(OutboxError::UnknownMessage(id))?;
        let written = message.chunked + message.pending_len as u64;
        if let Some(total) = message.total.filter(|&total| written < total) {
            return Err(OutboxError::Incomplete { id, written, total });
        }
        message.finished = true;
        Ok(())
    }

    /// Aborts a message: unsent data is dropped; if part of it was already sent, its
    /// next chunk ends it with `#` (RFC 4975 §7.1).
    /// A chunk of the message in progress ends at once with `#` when it may be
    /// interrupted, after the rest of its body when not.
    pub fn abort(&mut self, id: OutgoingId) -> Result<(), OutboxError> {
        if let Some(open) = self.open.as_mut().filter(|open| open.message.id == id) {
            open.end_with_abort();
            return Ok(());
        }
        let index = self.messages.iter().position(|m| m.id == id).ok_or(OutboxError::UnknownMessage(id))?;
        if !self.messages[index].sent_any {
            // Nothing went out: the peer never hears of it.
            self.messages.remove(index);
            return Ok(());
        }
        self.messages[index].drop_rest();
        Ok(())
    }

    /// The peer refused the message (413, RFC 4975 §10.5): nothing more is sent for it.
    /// Returns the message it was, if any.
    /// A chunk of it in progress ends at once with `#` when it may be interrupted (after
    /// the rest of its body when not), as RFC 4975 §10.5 asks.
    pub fn stop(&mut self, message_id: &str) -> Option<OutgoingId> {
        if let Some(open) = self.open.as_mut().filter(|open| open.message.message_id == message_id) {
            open.end_with_abort();
            return Some(open.message.id);
        }
        let index = self.messages.iter().position(|m| m.message_id == message_id)?;
        self.messages.remove(index).map(|m| m.id)
    }

    /// Streamed messages not finished (nor aborted), in the order they were started.
    pub fn unfinished(&self) -> Vec<OutgoingId> {
        let mut ids: Vec<_> = self.entries().filter(|m| !m.finished && !m.aborted).map(|m| m.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Whether a message is still in the outbox.
    pub fn contains(&self, id: OutgoingId) -> bool {
        self.entries().any(|m| m.id == id)
    }

    /// Bytes written to one message and not yet cut into chunks; `None` once it ended.
    pub fn pending_len(&self, id: OutgoingId) -> Option<usize> {
        self.entries().find(|m| m.id == id).map(|m| m.pending_len)
    }

    /// The Message-ID of a message still in the outbox.
    pub fn message_id(&self, id: OutgoingId) -> Option<&str> {
        self.entries().find(|m| m.id == id).map(|m| m.message_id.as_str())
    }

    /// Whether no message is left (and no chunk is in progress).
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.open.is_none()
    }

    /// Bytes written and not yet cut into chunks, over all messages.
    pub fn pending_bytes(&self) -> usize {
        self.entries().map(|m| m.pending_len).sum()
    }

    /// Whether a chunk is in progress: its head went out, its end-line not yet.
    pub fn has_open_chunk(&self) -> bool {
        self.open.is_some()
    }

    /// Drops every message. A chunk in progress still ends, with `#` (at once when it may
    /// be interrupted), so that what went out of it is a whole frame: take its last slice
    /// with [`Outbox::next_slice`].
    pub fn clear(&mut self) {
        self.messages.clear();
        if let Some(open) = &mut self.open {
            open.end_with_abort();
        }
    }

    /// The next chunk to send whole, or `None` when no message has one ready (or a chunk
    /// is in progress): [`Outbox::open_chunk`] with all of its body at once.
    pub fn next_chunk(&mut self, transport: &mut Transport) -> Option<OutgoingChunk> {
        let out = self.open_chunk(transport)?;
        // An unlimited slice ends the chunk as planned.
        self.next_slice(usize::MAX);
        Some(out)
    }

    /// Starts the next chunk, or `None` when no message has one ready or a chunk is in
    /// progress. A streamed message gives a chunk once `max_chunk_size` bytes are pending
    /// or it is finished. The chunk comes whole, as planned (its `data` is all its body and
    /// `last` whether it ends the message); its body is then handed out with
    /// [`Outbox::next_slice`], and it may end early ([`Outbox::interrupt`], an abort).
    pub fn open_chunk(&mut self, transport: &mut Transport) -> Option<OutgoingChunk> {
        if self.open.is_some() {
            return None;
        }
        for _ in 0..self.messages.len() {
            let mut message = self.messages.pop_front()?;
            if let Some(out) = self.cut(&mut message, transport) {
                let start = out.chunk.byte_range().map_or(1, |range| range.start);
                self.open = Some(OpenChunk {
                    message,
                    transaction_id: out.chunk.transaction_id.clone(),
                    start,
                    body: out.chunk.data.clone(),
                    sent: 0,
                    flag: out.chunk.contflag,
                    last: out.last,
                    interruptible: out.chunk.byte_range().is_some_and(|range| range.end.is_none()),
                    body_section: out.chunk.has_body_section(),
                });
                return Some(out);
            }
            self.messages.push_back(message);
        }
        None
    }

    /// The next body bytes of the chunk in progress, at most `max_len` of them (no copy),
    /// with its end-line when they end it; `None` when no chunk is in progress. Once the
    /// end-line is handed out the chunk is over and its message takes its turn again.
    pub fn next_slice(&mut self, max_len: usize) -> Option<ChunkSlice> {
        let open = self.open.as_mut()?;
        let len = (open.body.len() - open.sent).min(max_len);
        let data = open.body.slice(open.sent..open.sent + len);
        open.sent += len;
        let end = (open.sent == open.body.len()).then(|| open.end());
        let slice = ChunkSlice { id: open.message.id, transaction_id: open.transaction_id.clone(), data, end };
        if slice.end.is_some() {
            self.close_open();
        }
        Some(slice)
    }

    /// Ends the chunk in progress early with `+` (RFC 4975 §7.1.1: a SEND larger than 2048
    /// octets is interrupted for pending responses and REPORTs), and gives back the rest
    /// of its body to its message, which sends it in a later chunk. Returns the chunk's
    /// last slice (its end-line, after a few more body bytes in the rare case that ending
    /// the body right here would put this chunk's end-line in it, R4975-7.1-8), or `None`
    /// when the chunk may not be interrupted: its Byte-Range end is not `*`, fewer than
    /// 2048 bytes of it went out (no chunk is made smaller, R4975-7.1.1-10), or it ends
    /// with `#` anyway.
    pub fn interrupt(&mut self) -> Option<ChunkSlice> {
        let open = self.open.as_mut()?;
        if !open.interruptible || open.sent < MAX_UNINTERRUPTIBLE_BODY || open.flag == ContinuationFlag::Abort {
            return None;
        }
        let cut = open.safe_cut();
        if cut == open.body.len() {
            // The body ends here anyway.
            return self.next_slice(usize::MAX);
        }
        let rest = open.body.split_off(cut);
        let message = &mut open.message;
        message.chunked -= rest.len() as u64;
        message.pending_len += rest.len();
        message.pending.push_front(rest);
        message.resumed = true;
        open.flag = ContinuationFlag::More;
        open.last = false;
        self.next_slice(usize::MAX)
    }

    /// The chunk in progress ended: its message takes its turn again (last in the
    /// round-robin order, so that an interrupted message does not keep the others waiting).
    fn close_open(&mut self) {
        if let Some(open) = self.open.take() {
            if !open.last {
                self.messages.push_back(open.message);
            }
        }
    }

    /// Every message, the one of the chunk in progress too.
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.messages.iter().chain(self.open.as_ref().map(|open| &open.message))
    }

    fn cut(&self, message: &mut Entry, transport: &mut Transport) -> Option<OutgoingChunk> {
        // The rest of an interrupted chunk goes as a chunk of its own (no copy), unless it
        // is too short for one (R4975-7.1.1-10); then it waits to be joined like any data.
        let resumed = std::mem::take(&mut message.resumed)
            .then(|| message.pending.front().map_or(0, Bytes::len))
            .filter(|&rest| rest >= MAX_UNINTERRUPTIBLE_BODY);
        // A finished message always has a chunk to give: at least the empty one that carries `$`.
        let ready =
            message.aborted || message.finished || resumed.is_some() || message.pending_len >= self.max_chunk_size;
        if !ready {
            return None;
        }
        let take = message.pending_len.min(self.max_chunk_size).min(resumed.unwrap_or(usize::MAX));
        let data = take_bytes(&mut message.pending, take);
        message.pending_len -= take;
        let last = message.aborted || (message.finished && message.pending_len == 0);
        let flag = if message.aborted {
            ContinuationFlag::Abort
        } else if last {
            ContinuationFlag::End
        } else {
            ContinuationFlag::More
        };
        let start = message.chunked + 1;
        message.chunked += take as u64;
        message.sent_any = true;
        // A message streamed without a total knows it at its `$` chunk, which says it
        // (RFC 4975 §7.1.1: the total SHOULD be given when known).
        let total = message.total.or((flag == ContinuationFlag::End).then_some(message.chunked));
        let mut chunk = transport.make_chunk(ChunkParams {
            data,
            start,
            contflag: Some(flag),
            message_id: Some(message.message_id.clone()),
            length: total,
            ..ChunkParams::default()
        });
        if total.is_none() {
            // make_chunk takes an unknown length to mean "ends here"; the total is `*`.
            if let Some(range) = chunk.byte_range() {
                chunk.add_header(&ByteRange { total: None, ..range });
            }
        }
        for field in &message.headers {
            if !matches!(
                field.name,
                HeaderName::ToPath | HeaderName::FromPath | HeaderName::MessageId | HeaderName::ByteRange
            ) {
                chunk.headers.set(field.name.clone(), field.value.clone());
            }
        }
        // RFC 4975 §7.1: the body must not contain this chunk's end-line.
        while chunk.body_contains_end_line() {
            chunk.transaction_id = transport.ids().transaction_id();
        }
        Some(OutgoingChunk { id: message.id, chunk, last })
    }

    /// A message that still takes data: neither finished nor aborted (its chunk may be
    /// in progress).
    fn open_message_mut(&mut self, id: OutgoingId) -> Option<&mut Entry> {
        self.messages
            .iter_mut()
            .chain(self.open.as_mut().map(|open| &mut open.message))
            .find(|m| m.id == id && !m.finished && !m.aborted)
    }
}

impl Entry {
    /// Aborted: what was not cut into chunks is dropped, and its next chunk ends it with `#`.
    fn drop_rest(&mut self) {
        self.pending.clear();
        self.pending_len = 0;
        self.aborted = true;
    }
}

impl OpenChunk {
    /// The end-line as things stand.
    fn end(&self) -> ChunkEnd {
        let mut line = BytesMut::with_capacity(self.transaction_id.len() + 12);
        put_end_line(&mut line, &self.transaction_id, self.body_section, self.flag);
        ChunkEnd { line: line.freeze(), flag: self.flag, last: self.last, start: self.start, len: self.sent as u64 }
    }

    /// The message is aborted or stopped: the chunk ends with `#`, at once when it may be
    /// interrupted (what was not sent is dropped), after the rest of its body when not.
    fn end_with_abort(&mut self) {
        self.message.drop_rest();
        if self.interruptible {
            let cut = self.safe_cut();
            self.body.truncate(cut);
        }
        self.flag = ContinuationFlag::Abort;
        self.last = true;
    }

    /// The first length, from the bytes sent on, at which the body may end: a body that
    /// ends with this chunk's end-line but the CRLF would end the chunk there on the
    /// receiver's side (the end-line that follows supplies the CRLF).
    fn safe_cut(&self) -> usize {
        let needle = end_line_needle(&self.transaction_id);
        let ends_with_end_line = |body: &[u8]| match body.split_last() {
            Some((&flag, before)) => {
                ContinuationFlag::from_byte(flag).is_some() && (before.ends_with(&needle) || before == &needle[2..])
            }
            None => false,
        };
        (self.sent..self.body.len()).find(|&cut| !ends_with_end_line(&self.body[..cut])).unwrap_or(self.body.len())
    }
}

/// Takes `len` bytes from the front of `pending`: a slice when one buffer holds them
/// (no copy), joined otherwise.
fn take_bytes(pending: &mut VecDeque<Bytes>, len: usize) -> Bytes {
    if len == 0 {
        return Bytes::new();
    }
    if let Some(front) = pending.front_mut() {
        if front.len() >= len {
            let taken = front.split_to(len);
            if front.is_empty() {
                pending.pop_front();
            }
            return taken;
        }
    }
    let mut joined = BytesMut::with_capacity(len);
    while joined.len() < len {
        let Some(front) = pending.front_mut() else { break };
        let wanted = (len - joined.len()).min(front.len());
        joined.extend_from_slice(&front.split_to(wanted));
        if front.is_empty() {
            pending.pop_front();
        }
    }
    joined.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tests::transport;

    fn text(content_type: &str) -> MessageOptions {
        let mut headers = Headers::new();
        headers.set(HeaderName::ContentType, content_type);
        MessageOptions { headers, ..MessageOptions::default() }
    }

    fn drain(outbox: &mut Outbox, transport: &mut Transport) -> Vec<OutgoingChunk> {
        std::iter::from_fn(|| outbox.next_chunk(transport)).collect()
    }

    // R4975-7.1-7, R4975-7.1.1-1, R4975-7.1.1-7, R4975-7.1.1-8, R4975-5.1-1: `+ + $`, one
    // Entry-ID, Byte-Ranges in order, `*` for chunks over 2048 bytes.
    #[test]
    fn a_message_is_cut_in_order() {
        let (mut transport, mut outbox) = (transport(), Outbox::new(4096));
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        outbox.send(&mut transport, text("application/octet-stream"), Bytes::from(body.clone()));
        let chunks = drain(&mut outbox, &mut transport);
        let flags: Vec<_> = chunks.iter().map(|c| c.chunk.contflag).collect();
        assert_eq!(flags, [ContinuationFlag::More, ContinuationFlag::More, ContinuationFlag::End]);
        let ranges: Vec<_> = chunks.iter().map(|c| c.chunk.byte_range().expect("range")).collect();
        assert_eq!(
            ranges,
            [
                ByteRange::new(1, None, Some(10_000)),
                ByteRange::new(4097, None, Some(10_000)),
                ByteRange::new(8193, Some(10_000), Some(10_000))
            ]
        );
        let ids: Vec<_> = chunks.iter().map(|c| c.chunk.message_id().expect("id").to_owned()).collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]));
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.chunk.data.to_vec()).collect();
        assert_eq!(joined, body);
        assert!(chunks.iter().all(|c| c.chunk.verify_headers().is_ok()));
        assert!(chunks[2].last && !chunks[0].last);
    }

    // R4975-7.1.1-12: a chat message added during a transfer leaves after one chunk of it.
    #[test]
    fn a_chat_message_overtakes_a_transfer() {
        let (mut transport, mut outbox) = (transport(), Outbox::new(1024));
        let file = outbox.send(&mut transport, text("application/octet-stream"), Bytes::from(vec![0u8; 10 * 1024]));
        let first = outbox.next_chunk(&mut transport).expect("a chunk");
        assert_eq!(first.id, file);
        let chat = outbox.send(&mut transport, text("text/plain"), Bytes::from_static(b"hi"));
        let order: Vec<_> = drain(&mut outbox, &mut transport).iter().map(|c| c.id).collect();
        assert_eq!(order[..2], [file, chat]);
        assert_eq!(order.len(), 10);
    }

    // R4975-7.1-7 (`#`), R4975-10.5 (413 stops the message), R4975-7.1.1-9 (empty SEND).
    #[test]
    fn abort_stop_and_empty_messages() {
        let (mut transport, mut outbox) = (transport(), Outbox::new(4));
        let id = outbox.start(&mut transport, text("text/plain"));
        outbox.write(id, Bytes::from_static(b"abcdefgh")).expect("open");
        assert_eq!(outbox.next_chunk(&mut transport).expect("chunk").chunk.contflag, ContinuationFlag::More);
        outbox.abort(id).expect("open");
        let last = outbox.next_chunk(&mut transport).expect("the # chunk");
        assert_eq!((last.chunk.contflag, last.chunk.data.len(), last.last), (ContinuationFlag::Abort, 0, true));
        assert_eq!(last.chunk.byte_range(), Some(ByteRange::new(5, Some(4), None)));
        assert!(outbox.next_chunk(&mut transport).is_none());

        let unsent = outbox.start(&mut transport, text("text/plain"));
        outbox.abort(unsent).expect("open");
        assert!(
            !outbox.contains(unsent) && outbox.next_chunk(&mut transport).is_none(),
            "nothing went out: nothing to say"
        );

        let big = outbox.send(&mut transport, text("text/plain"), Bytes::from_static(b"0123456789"));
        let first = outbox.next_chunk(&mut transport).expect("chunk");
        assert_eq!(outbox.stop(first.chunk.message_id().expect("id")), Some(big));
        assert!(outbox.next_chunk(&mut transport).is_none());

        outbox.send(&mut transport, MessageOptions::default(), Bytes::new());
        let empty = outbox.next_chunk(&mut transport).expect("an empty SEND");
        assert_eq!(empty.chunk.byte_range(), Some(ByteRange::new(1, Some(0), Some(0))));
        assert_eq!(empty.chunk.encode().windows(7).filter(|w| w == b"-------").count(), 1);
    }

    #[test]
    fn streamed_messages_resume_and_check_their_size() {
        let (mut transport, mut outbox) = (transport(), Outbox::new(4));
        let options =
            MessageOptions { total: Some(10), position: 4, message_id: Some("resume01".into()), ..text("text/plain") };
        let id = outbox.start(&mut transport, options);
        outbox.write(id, Bytes::from_static(b"ef")).expect("open");
        assert!(outbox.next_chunk(&mut transport).is_none(), "waits for a full chunk or the end");
        outbox.write(id, Bytes::from_static(b"gh")).expect("open");
        let chunk = outbox.next_chunk(&mut transport).expect("4 bytes pending");
        assert_eq!(
            (&chunk.chunk.data[..], chunk.chunk.byte_range()),
            (&b"efgh"[..], Some(ByteRange::new(5, Some(8), Some(10))))
        );
        assert_eq!(chunk.chunk.message_id(), Some("resume01"));
        assert_eq!(
            outbox.write(id, Bytes::from_static(b"ijk")),
            Err(OutboxError::TooLarge { id, written: 11, total: 10 })
        );
        assert_eq!(outbox.finish(id), Err(OutboxError::Incomplete { id, written: 8, total: 10 }));
        outbox.write(id, Bytes::from_static(b"ij")).expect("open");
        outbox.finish(id).expect("complete");
        let last = outbox.next_chunk(&mut transport).expect("last");
        assert_eq!(
            (last.chunk.contflag, last.chunk.byte_range()),
            (ContinuationFlag::End, Some(ByteRange::new(9, Some(10), Some(10))))
        );
    }

    /// The bytes of one chunk as its slices give them: head, then every slice until the end.
    fn write_open_chunk(outbox: &mut Outbox, head: &OutgoingChunk, slice: usize) -> (Vec<u8>, ChunkEnd) {
        let mut wire = head.chunk.encode_start().to_vec();
        loop {
            let piece = outbox.next_slice(slice).expect("the chunk is open");
            assert!(piece.data.len() <= slice);
            wire.extend_from_slice(&piece.data);
            if let Some(end) = piece.end {
                wire.extend_from_slice(&end.line);
                return (wire, end);
            }
        }
    }

    fn decode(wire: &[u8]) -> Chunk {
        let mut decoder = crate::codec::Decoder::new(crate::codec::DecoderLimits::default());
        decoder.feed(Bytes::copy_from_slice(wire));
        decoder.poll_chunk(Some(usize::MAX)).expect("a whole chunk").expect("a valid chunk")
    }

    // Issue 12 §2.5, R4975-7.1.1-12: a chunk in progress ends early with `+` after the
    // bytes handed out, and the rest of the message follows in a new chunk from the next
    // byte; slices share the message's buffer (no copy).
    #[test]
    fn issue_12_2_5_a_chunk_in_progress_is_interrupted_and_resumed() {
        let (mut transport, mut outbox) = (transport(), Outbox::new(16_384));
        let body = Bytes::from((0..20_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        let id = outbox.send(&mut transport, text("application/octet-stream"), body.clone());
        let head = outbox.open_chunk(&mut transport).expect("a chunk");
        assert!(outbox.open_chunk(&mut transport).is_none(), "one chunk at a time");
        let first = outbox.next_slice(4096).expect("open");
        assert_eq!((first.data.len(), first.end.is_none()), (4096, true));
        assert_eq!(first.data.as_ptr(), body.as_ptr(), "a slice is not a copy");
        let last = outbox.interrupt().expect("an interruptible chunk");
        let end = last.end.expect("the end-line");
        assert!(last.data.is_empty());
        assert_eq!((end.flag, end.last, end.start, end.len), (ContinuationFlag::More, false, 1, 4096));
        assert!(!outbox.has_open_chunk() && outbox.contains(id));
        let mut wire = head.chunk.encode_start().to_vec();
        wire.extend_from_slice(&first.data);
        wire.extend_from_slice(&end.line);
        let interrupted = decode(&wire);
        assert_eq!(interrupted.byte_range(), Some(ByteRange::new(1, None, Some(20_000))));
        assert_eq!((interrupted.contflag, &interrupted.data[..]), (ContinuationFlag::More, &body[..4096]));
        // The rest of the chunk goes as a chunk of its own (not joined with what follows:
        // no copy), then the rest of the message.
        let rest = drain(&mut outbox, &mut transport);
        let ranges: Vec<_> = rest.iter().map(|c| c.chunk.byte_range().expect("range")).collect();
        assert_eq!(ranges, [ByteRange::new(4097, None, Some(20_000)), ByteRange::new(16_385, None, Some(20_000))]);
        assert_eq!(rest[0].chunk.data.as_ptr(), body[4096..].as_ptr());
        let joined: Vec<u8> = rest.iter().flat_map(|c| c.chunk.data.to_vec()).collect();
        assert_eq!(joined, body[4096..]);
        assert_eq!(rest[1].chunk.contflag, ContinuationFlag::End);
    }

    // Issue 12 §2.5, R4975-5.1-1, R4975-7.1.1-10: a chunk whose Byte-Range names its end
    // (2048 bytes or less), or of which fewer than 2048 bytes went out, is not interrupted.
    #[test]
    fn issue_12_2_5_short_chunks_are_not_interrupted() {
        let (mut transport, mut outbox) = (transport(), Outbox::new(2048));
        outbox.send(&mut transport, text("text/plain"), Bytes::from(vec![b'a'; 3000]));
        let head = outbox.open_chunk(&mut transport).expect("a chunk");
        assert_eq!(head.chunk.byte_range(), Some(ByteRange::new(1, Some(2048), Some(3000))));
        outbox.next_slice(1000).expect("open");
        assert!(outbox.interrupt().is_none(), "its end is in its Byte-Range");
        let (_, end) = write_open_chunk(&mut outbox, &head, 1000);
        assert_eq!((end.flag, end.len), (ContinuationFlag::More, 2048));

        let mut outbox = Outbox::new(8192);
        outbox.send(&mut transport, text("text/plain"), Bytes::from(vec![b'b'; 8192]));
        outbox.open_chunk(&mut transport).expect("a chunk");
        outbox.next_slice(1000).expect("open");
        assert!(outbox.interrupt().is_none(), "only 1000 bytes went out");
        outbox.next_slice(1048).expect("open");
        assert_eq!(outbox.interrupt().and_then(|slice| slice.end).map(|end| end.len), Some(2048));
    }

    // Issue 12 §2.5, R4975-7.1-8: an interruption never ends the body on the chunk's own
    // end-line (`-------tid+` right before the cut would end the chunk there): the body
    // goes on past it.
    #[test]
    fn issue_12_2_5_an_interruption_never_ends_the_body_on_its_end_line() {
        let (mut transport, mut outbox) = (transport(), Outbox::new(8192));
        let mut peek = transport.clone();
        let tid = peek.ids().transaction_id();
        let mut body = vec![b'x'; 4096 - tid.len() - 10];
        body.extend_from_slice(format!("\r\n-------{tid}+").as_bytes());
        assert_eq!(body.len(), 4096);
        body.extend_from_slice(b"yz and more");
        body.resize(8192, b'w');
        let options = MessageOptions { message_id: Some("cut-here".into()), ..text("text/plain") };
        outbox.send(&mut transport, options, Bytes::from(body.clone()));
        let head = outbox.open_chunk(&mut transport).expect("a chunk");
        assert_eq!(head.chunk.transaction_id, tid, "the whole body does not hold the end-line");
        outbox.next_slice(4096).expect("open");
        let last = outbox.interrupt().expect("interruptible");
        assert_eq!(&last.data[..], b"y");
        let end = last.end.expect("the end-line");
        let mut wire = head.chunk.encode_start().to_vec();
        wire.extend_from_slice(&body[..4096]);
        wire.extend_from_slice(&last.data);
        wire.extend_from_slice(&end.line);
        let chunk = decode(&wire);
        assert_eq!((&chunk.data[..], chunk.contflag), (&body[..4097], ContinuationFlag::More));
    }

    // Issue 12 §2.5, R4975-7.1-7, R4975-10.5: an abort or a 413 while a chunk is in
    // progress ends it at once with `#`; nothing more of the message follows.
    #[test]
    fn issue_12_2_5_abort_and_413_end_the_chunk_in_progress_with_a_hash() {
        for stop in [false, true] {
            let (mut transport, mut outbox) = (transport(), Outbox::new(65_536));
            let id = outbox.send(&mut transport, text("text/plain"), Bytes::from(vec![b'c'; 100_000]));
            let head = outbox.open_chunk(&mut transport).expect("a chunk");
            outbox.next_slice(8192).expect("open");
            if stop {
                assert_eq!(outbox.stop(head.chunk.message_id().expect("id")), Some(id));
            } else {
                outbox.abort(id).expect("open");
            }
            let last = outbox.next_slice(8192).expect("still open");
            let end = last.end.expect("it ends now");
            assert!(last.data.is_empty());
            assert_eq!((end.flag, end.last, end.len), (ContinuationFlag::Abort, true, 8192));
            assert!(outbox.is_empty() && outbox.next_chunk(&mut transport).is_none());
        }
    }

    // R4975-7.1-8: a body holding the chunk's end-line gets another transaction id.
    #[test]
    fn a_body_never_holds_its_own_end_line() {
        let (mut transport, mut outbox) = (transport(), Outbox::new(4096));
        // The transaction id the next chunk would get, from a generator in the same state.
        let mut peek = transport.clone();
        let tid = peek.ids().transaction_id();
        let body = format!("x\r\n-------{tid}$\r\ny");
        outbox.send(&mut transport, text("text/plain"), Bytes::from(body.clone()));
        let chunk = outbox.next_chunk(&mut transport).expect("chunk").chunk;
        assert_ne!(chunk.transaction_id, tid);
        assert!(!chunk.body_contains_end_line());
        assert_eq!(chunk.data, body.as_bytes());
    }
}
