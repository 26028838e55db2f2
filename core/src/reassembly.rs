//! Opt-in reassembly of incoming messages from their chunks, with a size cap.
//!
//! RFC 4975 §7.3.1: a chunk with no Byte-Range, or with range-start 1 and flag `$`, is a
//! whole message; otherwise chunks are gathered by Message-ID into a buffer that records
//! which bytes are present. Chunks may come in any order, and where they overlap the last
//! one received wins. The `$` chunk fixes the length; `#` aborts the message.
//!
//! Nothing is buffered past `max_size` bytes per message or `max_open` messages at once,
//! and a message may arrive in at most [`MAX_FRAGMENTS`] separate pieces: a chunk that
//! would go past any of these is refused with 413, which tells the sender to stop sending
//! that message (RFC 4975 §10.5).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use crate::chunk::{Chunk, ContinuationFlag};
use crate::transport::MsrpError;

/// Separate pieces one message may arrive in before it is refused with 413.
pub const MAX_FRAGMENTS: usize = 1024;

/// What adding a chunk gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reassembled {
    /// More chunks are needed.
    Incomplete,
    /// The whole message: its body, and its Message-ID (if it had one).
    Complete {
        /// The Message-ID.
        message_id: Option<String>,
        /// The whole body.
        data: Bytes,
    },
    /// The sender aborted the message (`#`); what was gathered is dropped.
    Aborted {
        /// The Message-ID.
        message_id: String,
    },
}

/// Gathers chunks into whole messages. See the [module docs](self).
#[derive(Debug)]
pub struct Reassembler {
    max_size: u64,
    max_open: usize,
    open: HashMap<String, Partial>,
    /// Messages refused lately, most recent last (at most [`REFUSED_KEPT`]): the chunks
    /// of theirs still on the way are refused too instead of opening them again.
    refused: VecDeque<String>,
}

/// Refused Message-IDs remembered.
const REFUSED_KEPT: usize = 16;

#[derive(Debug, Default)]
struct Partial {
    data: Vec<u8>,
    coverage: Coverage,
}

/// Which byte positions of one message have arrived, and its length once known. The
/// session engine keeps one per message it owes a success REPORT for.
#[derive(Debug, Default, Clone)]
pub struct Coverage {
    /// Byte positions present, as sorted, disjoint, non-adjacent `[first, last]` pairs (1-based).
    present: Vec<(u64, u64)>,
    /// The message length, once the `$` chunk (or a Byte-Range total) said it.
    length: Option<u64>,
}

impl Reassembler {
    /// A reassembler for messages of at most `max_size` bytes, at most `max_open` at once.
    pub fn new(max_size: u64, max_open: usize) -> Self {
        Self { max_size, max_open: max_open.max(1), open: HashMap::new(), refused: VecDeque::new() }
    }

    /// Forgets a message being gathered (it was refused); its later chunks are refused.
    pub fn forget(&mut self, message_id: &str) {
        self.open.remove(message_id);
        if !self.refused.iter().any(|refused| refused == message_id) {
            if self.refused.len() == REFUSED_KEPT {
                self.refused.pop_front();
            }
            self.refused.push_back(message_id.to_owned());
        }
    }

    /// Messages being gathered.
    pub fn open_messages(&self) -> usize {
        self.open.len()
    }

    /// Adds one received SEND chunk (whole, or a segment from `Decoder::poll_chunk`).
    /// An `Err` is the 413 to send back; the message is then forgotten.
    pub fn add(&mut self, chunk: &Chunk) -> Result<Reassembled, MsrpError> {
        let too_large = || MsrpError::new(413, "Message too large");
        let range = chunk.byte_range();
        let start = range.map_or(1, |range| range.start);
        let len = chunk.data.len() as u64;
        // Positions come from the bytes received, not from range-end (RFC 4975 §7.3.1).
        let last = start.saturating_add(len).saturating_sub(1);
        let Some(message_id) = chunk.message_id() else {
            // Without a Message-ID nothing can be joined: the chunk is the message.
            return Ok(Reassembled::Complete { message_id: None, data: chunk.data.clone() });
        };
        if chunk.contflag == ContinuationFlag::Abort {
            self.open.remove(message_id);
            return Ok(Reassembled::Aborted { message_id: message_id.to_owned() });
        }
        if self.refused.iter().any(|refused| refused == message_id) {
            // The sender stops after a 413, but chunks already sent still come: gathering
            // them would hold a message that never completes (and take an open slot).
            return Err(MsrpError::new(413, "Message refused"));
        }
        let whole = range.is_none() || start == 1;
        if whole && chunk.contflag == ContinuationFlag::End && !self.open.contains_key(message_id) {
            if len > self.max_size {
                return Err(too_large());
            }
            return Ok(Reassembled::Complete { message_id: Some(message_id.to_owned()), data: chunk.data.clone() });
        }
        if len == 0 && !whole && !self.open.contains_key(message_id) {
            // A bodiless chunk past byte 1 of a message not being gathered adds nothing:
            // typically the `$` of a streamed message that was complete (and delivered)
            // as soon as its announced bytes came. Opening an entry for it would hold a
            // message that is over open for good, and count it against `max_open`.
            return Ok(Reassembled::Incomplete);
        }
        let announced = range.and_then(|range| range.total);
        if last > self.max_size || announced.is_some_and(|total| total > self.max_size) {
            self.open.remove(message_id);
            return Err(too_large());
        }
        if !self.open.contains_key(message_id) && self.open.len() >= self.max_open {
            return Err(MsrpError::new(413, "Too many messages in progress"));
        }
        let partial = self.open.entry(message_id.to_owned()).or_default();
        if partial.data.len() < last as usize {
            partial.data.resize(last as usize, 0);
        }
        partial.data[(start - 1) as usize..last as usize].copy_from_slice(&chunk.data);
        let length = partial.coverage.record(chunk);
        if partial.coverage.fragments() > MAX_FRAGMENTS {
            // A peer scattering a message in tiny pieces would make every chunk cost more.
            self.open.remove(message_id);
            return Err(MsrpError::new(413, "Message too fragmented"));
        }
        let Some(length) = length else { return Ok(Reassembled::Incomplete) };
        let mut partial = self.open.remove(message_id).unwrap_or_default();
        partial.data.truncate(length as usize);
        Ok(Reassembled::Complete { message_id: Some(message_id.to_owned()), data: Bytes::from(partial.data) })
    }
}

impl Coverage {
    /// Records the body of a received SEND chunk (its positions come from the bytes
    /// received, RFC 4975 §7.3.1) and returns the message length once every byte of it
    /// has arrived.
    pub fn record(&mut self, chunk: &Chunk) -> Option<u64> {
        let range = chunk.byte_range();
        let start = range.map_or(1, |range| range.start);
        let len = chunk.data.len() as u64;
        let last = start.saturating_add(len).saturating_sub(1);
        let length = if chunk.contflag == ContinuationFlag::End { Some(last) } else { range.and_then(|r| r.total) };
        self.record_range(start, (len > 0).then_some(last), length, chunk.contflag == ContinuationFlag::End)
    }

    /// Records positions `first..=last` (none when `last` is `None`) of a message whose
    /// length is `length` when known; `is_final` says that length is certain (the `$`
    /// chunk) rather than announced. Returns the length once every byte is present.
    pub fn record_range(&mut self, first: u64, last: Option<u64>, length: Option<u64>, is_final: bool) -> Option<u64> {
        if let Some(last) = last.filter(|&last| last >= first) {
            self.mark(first, last);
        }
        if is_final || self.length.is_none() {
            self.length = length.or(self.length);
        }
        self.is_complete().then_some(self.length?)
    }

    /// Whether every byte of a message of known length is present.
    pub fn is_complete(&self) -> bool {
        self.length.is_some_and(|length| {
            length == 0 || self.present.first().is_some_and(|&(first, last)| first == 1 && last >= length)
        })
    }

    /// How many separate pieces have arrived.
    pub fn fragments(&self) -> usize {
        self.present.len()
    }

    /// The pieces present, as `(first, last)` positions (1-based, inclusive).
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.present.iter().copied()
    }

    /// Records that positions `first..=last` are present, merging neighbours.
    fn mark(&mut self, first: u64, last: u64) {
        let (mut first, mut last) = (first, last);
        self.present.retain(|&(a, b)| {
            let touches = a <= last.saturating_add(1) && first <= b.saturating_add(1);
            if touches {
                first = first.min(a);
                last = last.max(b);
            }
            !touches
        });
        let at = self.present.partition_point(|&(a, _)| a < first);
        self.present.insert(at, (first, last));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{ByteRange, HeaderName, MessageId};
    use crate::{Chunk, Method};

    fn chunk(message_id: &str, start: u64, total: Option<u64>, data: &[u8], flag: ContinuationFlag) -> Chunk {
        let mut chunk = Chunk::request("abcd", Method::Send);
        chunk.add_header(&MessageId(message_id.into()));
        chunk.add_header(&ByteRange::new(start, None, total));
        chunk.headers.set(HeaderName::ContentType, "text/plain");
        chunk.data = Bytes::copy_from_slice(data);
        chunk.contflag = flag;
        chunk
    }

    use ContinuationFlag::{Abort, End, More};

    // R4975-7.3.1-1: a lone `$` chunk from position 1 is the message, not copied.
    // (Overlaps: R4975-7.3.1-3, the last chunk received wins, in `overlap_and_abort_and_limits`.)
    #[test]
    fn a_whole_chunk_is_the_message() {
        let mut reassembler = Reassembler::new(100, 4);
        let single = chunk("m1x2y3z4", 1, Some(5), b"hello", End);
        let Ok(Reassembled::Complete { data, .. }) = reassembler.add(&single) else { panic!("complete") };
        assert_eq!(data.as_ptr(), single.data.as_ptr());
        assert_eq!(reassembler.open_messages(), 0);
    }

    // R4975-7.3.1-2, R4975-7.3.1-3: out of order; lengths come from the bytes received.
    #[test]
    fn chunks_in_any_order() {
        let mut reassembler = Reassembler::new(100, 4);
        assert_eq!(reassembler.add(&chunk("m1x2y3z4", 9, Some(12), b"IJKL", End)), Ok(Reassembled::Incomplete));
        assert_eq!(
            reassembler.add(&chunk("m1x2y3z4", 1, Some(12), b"abcdefgh", More)),
            Ok(Reassembled::Complete {
                message_id: Some("m1x2y3z4".into()),
                data: Bytes::from_static(b"abcdefghIJKL")
            })
        );
    }

    #[test]
    fn an_empty_last_chunk_after_the_message_completed_opens_nothing() {
        // A streamed message with a known total is complete once its bytes are in; its
        // bodiless `$` chunk comes after and must not reopen it (found by simulation).
        let mut reassembler = Reassembler::new(100, 1);
        let done = reassembler.add(&chunk("m1x2y3z4", 1, Some(5), b"hello", More));
        assert!(matches!(done, Ok(Reassembled::Complete { .. })));
        assert_eq!(reassembler.add(&chunk("m1x2y3z4", 6, Some(5), b"", End)), Ok(Reassembled::Incomplete));
        assert_eq!(reassembler.open_messages(), 0);
        let next = reassembler.add(&chunk("n1x2y3z4", 1, Some(4), b"abcd", More));
        assert!(matches!(next, Ok(Reassembled::Complete { .. })), "the slot is free: {next:?}");
    }

    #[test]
    fn overlap_and_abort_and_limits() {
        let mut reassembler = Reassembler::new(20, 1);
        assert_eq!(reassembler.add(&chunk("aaaa1111", 1, None, b"0123456789", More)), Ok(Reassembled::Incomplete));
        let done = reassembler.add(&chunk("aaaa1111", 6, None, b"FGHIJKL", End));
        assert_eq!(
            done,
            Ok(Reassembled::Complete {
                message_id: Some("aaaa1111".into()),
                data: Bytes::from_static(b"01234FGHIJKL")
            })
        );

        assert_eq!(reassembler.add(&chunk("bbbb2222", 1, None, b"0123", More)), Ok(Reassembled::Incomplete));
        // R4975-10.5 side: a second open message is over `max_open`.
        assert_eq!(reassembler.add(&chunk("cccc3333", 1, None, b"x", More)).map_err(|e| e.code), Err(413));
        assert_eq!(
            reassembler.add(&chunk("bbbb2222", 5, None, b"", Abort)),
            Ok(Reassembled::Aborted { message_id: "bbbb2222".into() })
        );
        assert_eq!(reassembler.open_messages(), 0);

        // R4975-14.5-1: a total over the cap is refused before anything is buffered.
        assert_eq!(
            reassembler.add(&chunk("dddd4444", 1, Some(99_999_999_999), b"x", More)).map_err(|e| e.code),
            Err(413)
        );
        assert_eq!(reassembler.add(&chunk("dddd4444", 15, None, b"0123456789", More)).map_err(|e| e.code), Err(413));
        assert_eq!(reassembler.open_messages(), 0);
        // An empty message.
        assert_eq!(
            reassembler.add(&chunk("eeee5555", 1, Some(0), b"", End)),
            Ok(Reassembled::Complete { message_id: Some("eeee5555".into()), data: Bytes::new() })
        );
    }

    #[test]
    fn a_message_scattered_in_too_many_pieces_gets_413() {
        let mut reassembler = Reassembler::new(1 << 20, 4);
        for i in 0..MAX_FRAGMENTS as u64 {
            assert_eq!(reassembler.add(&chunk("scattered", 1 + 2 * i, None, b"x", More)), Ok(Reassembled::Incomplete));
        }
        let refused = reassembler.add(&chunk("scattered", 1 + 2 * MAX_FRAGMENTS as u64, None, b"x", More));
        assert_eq!(refused, Err(MsrpError::new(413, "Message too fragmented")));
        assert_eq!(reassembler.open_messages(), 0, "the refused message is forgotten");
    }

    #[test]
    fn present_ranges_merge() {
        let mut coverage = Coverage::default();
        coverage.mark(5, 8);
        coverage.mark(1, 2);
        coverage.mark(10, 12);
        assert_eq!(coverage.present, [(1, 2), (5, 8), (10, 12)]);
        coverage.mark(3, 4);
        coverage.mark(9, 9);
        assert_eq!(coverage.present, [(1, 12)]);
    }
}
