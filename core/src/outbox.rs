//! Outgoing messages of one session, cut into SEND chunks and interleaved.
//!
//! A message is added whole or streamed (`write` as data arrives, then `finish`). Each
//! call to [`Outbox::next_chunk`] takes the next message in round-robin order and cuts one
//! chunk of at most `max_chunk_size` bytes from it, so a chat message added during a
//! large transfer leaves after at most one chunk of the transfer (RFC 4975 §7.1.1: "SHOULD
//! be interleaved fairly"). The last chunk of a message ends with `$`, an aborted message
//! ends with `#`, and a message the peer refused with 413 sends nothing more.
//!
//! The outbox only builds chunks; the session engine decides when to send them.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::chunk::{Chunk, ContinuationFlag};
use crate::header::{ByteRange, HeaderName, Headers};
use crate::transport::{ChunkParams, Transport};

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
}

/// The outgoing messages of a session. See the [module docs](self).
#[derive(Debug)]
pub struct Outbox {
    max_chunk_size: usize,
    /// Round-robin order: the front message gives the next chunk.
    messages: VecDeque<Entry>,
    next_id: u64,
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
        Self { max_chunk_size: max_chunk_size.max(1), messages: VecDeque::new(), next_id: 0 }
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
    pub fn abort(&mut self, id: OutgoingId) -> Result<(), OutboxError> {
        let index = self.messages.iter().position(|m| m.id == id).ok_or(OutboxError::UnknownMessage(id))?;
        if !self.messages[index].sent_any {
            // Nothing went out: the peer never hears of it.
            self.messages.remove(index);
            return Ok(());
        }
        let message = &mut self.messages[index];
        message.pending.clear();
        message.pending_len = 0;
        message.aborted = true;
        Ok(())
    }

    /// The peer refused the message (413, RFC 4975 §10.5): nothing more is sent for it.
    /// Returns the message it was, if any.
    pub fn stop(&mut self, message_id: &str) -> Option<OutgoingId> {
        let index = self.messages.iter().position(|m| m.message_id == message_id)?;
        self.messages.remove(index).map(|m| m.id)
    }

    /// Streamed messages not finished (nor aborted), in the order they were started.
    pub fn unfinished(&self) -> Vec<OutgoingId> {
        let mut ids: Vec<_> = self.messages.iter().filter(|m| !m.finished && !m.aborted).map(|m| m.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Whether a message is still in the outbox.
    pub fn contains(&self, id: OutgoingId) -> bool {
        self.messages.iter().any(|m| m.id == id)
    }

    /// Bytes written to one message and not yet cut into chunks; `None` once it ended.
    pub fn pending_len(&self, id: OutgoingId) -> Option<usize> {
        self.messages.iter().find(|m| m.id == id).map(|m| m.pending_len)
    }

    /// The Message-ID of a message still in the outbox.
    pub fn message_id(&self, id: OutgoingId) -> Option<&str> {
        self.messages.iter().find(|m| m.id == id).map(|m| m.message_id.as_str())
    }

    /// Whether no message is left.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Bytes written and not yet cut into chunks, over all messages.
    pub fn pending_bytes(&self) -> usize {
        self.messages.iter().map(|m| m.pending_len).sum()
    }

    /// The next chunk to send, or `None` when no message has one ready. A streamed
    /// message gives a chunk once `max_chunk_size` bytes are pending or it is finished.
    pub fn next_chunk(&mut self, transport: &mut Transport) -> Option<OutgoingChunk> {
        for _ in 0..self.messages.len() {
            let mut message = self.messages.pop_front()?;
            if let Some(out) = self.cut(&mut message, transport) {
                if !out.last {
                    self.messages.push_back(message);
                }
                return Some(out);
            }
            self.messages.push_back(message);
        }
        None
    }

    fn cut(&self, message: &mut Entry, transport: &mut Transport) -> Option<OutgoingChunk> {
        // A finished message always has a chunk to give: at least the empty one that carries `$`.
        let ready = message.aborted || message.finished || message.pending_len >= self.max_chunk_size;
        if !ready {
            return None;
        }
        let take = message.pending_len.min(self.max_chunk_size);
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

    /// A message that still takes data: neither finished nor aborted.
    fn open_message_mut(&mut self, id: OutgoingId) -> Option<&mut Entry> {
        self.messages.iter_mut().find(|m| m.id == id && !m.finished && !m.aborted)
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
