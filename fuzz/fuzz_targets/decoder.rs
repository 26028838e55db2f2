//! Fuzzes `msrp_core::codec::Decoder` for split-independence, not just for panics.
//!
//! Input layout: `[mode, hint, len_1 .. len_n, stream ..]`
//!
//! - `mode & 0x0f` = `n`, the number of piece-length bytes that follow `hint`.
//!   `n == 0` feeds the stream one byte at a time.
//! - `mode & 0x10` selects small [`DecoderLimits`] so that every limit is reachable
//!   with short inputs; otherwise the defaults are used.
//! - `hint` is the size given to `poll_chunk`: `0xff` means `None`, else `Some(hint)`.
//! - `len_i` are piece lengths, used in turn until the stream is exhausted;
//!   a `0` feeds an empty buffer and then one byte.
//! - The rest is the byte stream.
//!
//! Checked for every input:
//! (a) the stream fed whole and fed in the chosen pieces decodes to the same items
//!     (heads, body bytes per chunk, flags, errors) and the same `finish()` result;
//! (b) after an error that closes the connection, `poll()` returns `None` (even
//!     after more input is fed) and the decoder reports `is_failed()`;
//! (c) `buffered()` never exceeds the bytes fed so far;
//! (d) a second decoder read with `poll_chunk(hint)` returns the same chunks, whole
//!     or as virtual segments whose bodies concatenate to the body from `poll()`,
//!     with consistent segment numbers, flags and Byte-Ranges;
//! plus the item grammar of `poll()` (`Head Data* (End | Err)`).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use msrp_core::codec::{ChunkParseError, Decoded, Decoder, DecoderLimits};
use msrp_core::header::{ByteRange, HeaderValue};
use msrp_core::{Chunk, ContinuationFlag, Header, HeaderName};

/// One decoded item, with the body slices of a chunk joined.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Head(Box<Chunk>),
    Body(Vec<u8>),
    End(ContinuationFlag),
    Error(Box<ChunkParseError>),
}

/// Everything one decoder produced for the stream.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    items: Vec<Item>,
    finish: Option<ChunkParseError>,
}

struct Plan {
    limits: DecoderLimits,
    hint: Option<usize>,
    whole: Bytes,
    pieces: Vec<Bytes>,
}

fn small_limits() -> DecoderLimits {
    DecoderLimits {
        max_header_line: 96,
        max_headers: 6,
        max_path_uris: 2,
        max_non_send_body: 24,
        max_message_size: 1000,
        max_whole_chunk: 40,
    }
}

fn plan(data: &[u8]) -> Option<Plan> {
    let (&mode, rest) = data.split_first()?;
    let (&hint, rest) = rest.split_first()?;
    let n = usize::from(mode & 0x0f);
    if rest.len() < n {
        return None;
    }
    let (lens, stream) = rest.split_at(n);
    let limits = if mode & 0x10 != 0 { small_limits() } else { DecoderLimits::default() };
    let hint = (hint != 0xff).then_some(usize::from(hint));
    let whole = Bytes::copy_from_slice(stream);
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut next = 0;
    while at < whole.len() {
        let len = match lens.get(next % n.max(1)) {
            None => 1,
            Some(0) => {
                pieces.push(Bytes::new());
                1
            }
            Some(&len) => usize::from(len),
        };
        next += 1;
        let end = (at + len).min(whole.len());
        pieces.push(whole.slice(at..end));
        at = end;
    }
    Some(Plan { limits, hint, whole, pieces })
}

fn check_buffered(decoder: &Decoder, fed: usize, what: &str) {
    let buffered = decoder.buffered();
    assert!(buffered <= fed, "{what}: buffered() = {buffered} exceeds the {fed} bytes fed");
}

/// An error that ends a chunk whose head was delivered names that transaction and,
/// as `ChunkParseError::head` promises, carries "the start line and the headers read
/// before the error".
fn check_error_in_body(error: &ChunkParseError, head: &Chunk) {
    assert!(!error.closes_connection(), "fatal error inside a body: {error:?}");
    assert_eq!(error.transaction_id.as_deref(), Some(head.transaction_id.as_str()), "error {error:?}");
    let Some(got) = error.head.as_deref() else { return };
    assert_eq!(got.start_line, head.start_line, "error head start line: {error:?}");
    assert_eq!(got.headers, head.headers, "error head lacks the headers of the delivered head: {error:?}");
}

/// Feeds `pieces`, draining `poll()` after each; checks (b), (c) and the item grammar.
fn decode_with_poll(limits: DecoderLimits, pieces: &[Bytes]) -> Run {
    let mut decoder = Decoder::new(limits);
    let mut items: Vec<Item> = Vec::new();
    let mut fed = 0;
    let mut fatal = false;
    let mut open: Option<Chunk> = None;
    for piece in pieces {
        decoder.feed(piece.clone());
        fed += piece.len();
        check_buffered(&decoder, fed, "poll");
        while let Some(item) = decoder.poll() {
            assert!(!fatal, "poll() returned {item:?} after an error that closes the connection");
            check_buffered(&decoder, fed, "poll");
            match item {
                Ok(Decoded::Head(head)) => {
                    assert!(open.is_none(), "Head {head:?} while the previous chunk is still open");
                    assert!(head.data.is_empty(), "Head carries body bytes: {head:?}");
                    open = Some(head.clone());
                    items.push(Item::Head(Box::new(head)));
                }
                Ok(Decoded::Data(data)) => {
                    assert!(open.is_some(), "Data {data:?} outside a chunk");
                    match items.last_mut() {
                        Some(Item::Body(body)) => body.extend_from_slice(&data),
                        _ => items.push(Item::Body(data.to_vec())),
                    }
                }
                Ok(Decoded::End(flag)) => {
                    assert!(open.take().is_some(), "End({flag}) outside a chunk");
                    items.push(Item::End(flag));
                }
                Err(error) => {
                    if let Some(head) = open.take() {
                        check_error_in_body(&error, &head);
                    }
                    if error.closes_connection() {
                        fatal = true;
                        assert!(decoder.is_failed(), "fatal {error:?} but is_failed() is false");
                    }
                    items.push(Item::Error(Box::new(error)));
                }
            }
        }
        if fatal {
            assert!(decoder.poll().is_none(), "poll() after a fatal error is not None");
        }
    }
    let finish = decoder.finish();
    if open.is_some() {
        assert!(finish.is_some(), "stream ended inside an open chunk but finish() returned None");
    }
    if let Some(error) = &finish {
        assert!(error.closes_connection(), "finish() error does not close the connection: {error:?}");
    }
    assert!(decoder.is_failed(), "decoder not failed after finish()");
    assert!(decoder.poll().is_none(), "poll() after finish() is not None");
    Run { items, finish }
}

/// Feeds `pieces`, draining `poll_chunk(hint)` after each.
fn decode_with_poll_chunk(
    limits: DecoderLimits,
    pieces: &[Bytes],
    hint: Option<usize>,
) -> (Vec<Result<Chunk, ChunkParseError>>, Option<ChunkParseError>) {
    let mut decoder = Decoder::new(limits);
    let mut out = Vec::new();
    let mut fed = 0;
    for piece in pieces {
        decoder.feed(piece.clone());
        fed += piece.len();
        check_buffered(&decoder, fed, "poll_chunk");
        while let Some(item) = decoder.poll_chunk(hint) {
            check_buffered(&decoder, fed, "poll_chunk");
            out.push(item);
        }
    }
    let finish = decoder.finish();
    (out, finish)
}

fn without_byte_range(chunk: &Chunk) -> Chunk {
    let mut chunk = chunk.clone();
    chunk.headers.remove(&HeaderName::ByteRange);
    chunk.data = Bytes::new();
    chunk.contflag = ContinuationFlag::End;
    chunk.segment = None;
    chunk
}

/// Takes from `got` the chunk or segments of one transaction whose head is `head`.
/// `complete` is the end flag when the chunk ended, `None` when it was cut by an
/// error or by the end of the stream. Checks (d) for it.
fn expect_chunk<'a>(
    got: &mut impl Iterator<Item = &'a Result<Chunk, ChunkParseError>>,
    peek: &mut Option<&'a Result<Chunk, ChunkParseError>>,
    head: &Chunk,
    body: &[u8],
    complete: Option<ContinuationFlag>,
    cap: usize,
) {
    let mut joined: Vec<u8> = Vec::new();
    let mut segments = 0u32;
    let base = head.byte_range().unwrap_or(ByteRange::new(1, None, None));
    while let Some(Ok(chunk)) = *peek {
        // A chunk's own segments continue it; anything else belongs to the next item.
        if segments > 0 && chunk.segment != Some(segments + 1) {
            break;
        }
        if segments == 0 && complete.is_none() && chunk.segment != Some(1) {
            break;
        }
        *peek = got.next();
        match chunk.segment {
            None => {
                let flag = complete.unwrap_or_else(|| panic!("whole chunk {chunk:?} for a chunk that did not end"));
                let mut expected = head.clone();
                expected.data = Bytes::copy_from_slice(body);
                expected.contflag = flag;
                // It may be over the cap: the read that crossed it also held the end-line.
                assert_eq!(chunk, &expected, "poll_chunk whole chunk differs from poll()");
                return;
            }
            Some(number) => {
                assert_eq!(number, segments + 1, "segment numbers out of order: {chunk:?}");
                assert_eq!(
                    without_byte_range(chunk),
                    without_byte_range(head),
                    "segment head differs from poll() head"
                );
                let start = base.start + joined.len() as u64;
                let len = chunk.data.len() as u64;
                let last = start + len - 1;
                // A total that the positions overrun (the body is longer than announced)
                // becomes `*`, so that every segment's range parses.
                let range = ByteRange::new(start, Some(last), base.total.filter(|&total| total >= last));
                let written = chunk.headers.get(&HeaderName::ByteRange).map(HeaderValue::as_str);
                assert_eq!(written, Some(range.encode().as_str()), "segment {number} Byte-Range: {chunk:?}");
                assert_eq!(chunk.byte_range(), Some(range), "segment {number} Byte-Range does not parse: {chunk:?}");
                segments = number;
                joined.extend_from_slice(&chunk.data);
                assert!(body.starts_with(&joined), "segments {joined:?} are not a prefix of the poll() body {body:?}");
                if joined.len() == body.len() && complete.is_some() {
                    // Could be the last one (of any size: the read that crossed the cap may
                    // also have held the end-line); a virtual segment must be over the cap.
                    let is_last = !matches!(*peek, Some(Ok(next)) if next.segment == Some(number + 1));
                    if is_last {
                        assert_eq!(Some(chunk.contflag), complete, "last segment flag");
                        assert!(segments >= 2, "a segmented chunk has at least two segments");
                        return;
                    }
                }
                assert_eq!(chunk.contflag, ContinuationFlag::More, "virtual segment flag: {chunk:?}");
                assert!(chunk.data.len() > cap, "virtual segment of {len} bytes not over the cap {cap}");
            }
        }
    }
    if let Some(flag) = complete {
        panic!(
            "poll_chunk lacks the end of chunk {} (flag {flag}): got {} of {} body bytes in {segments} segments, next {peek:?}",
            head.transaction_id,
            joined.len(),
            body.len()
        );
    }
}

/// (d): the `poll_chunk` results against the `poll` items of the same pieces.
fn compare_poll_chunk(
    run: &Run,
    got: &[Result<Chunk, ChunkParseError>],
    got_finish: &Option<ChunkParseError>,
    cap: usize,
) {
    let mut iter = got.iter();
    let mut peek = iter.next();
    let mut items = run.items.iter().peekable();
    while let Some(item) = items.next() {
        match item {
            Item::Head(head) => {
                let body = match items.peek() {
                    Some(Item::Body(body)) => {
                        items.next();
                        body.as_slice()
                    }
                    _ => &[],
                };
                let complete = match items.peek() {
                    Some(Item::End(flag)) => {
                        items.next();
                        Some(*flag)
                    }
                    _ => None,
                };
                expect_chunk(&mut iter, &mut peek, head, body, complete, cap);
            }
            Item::Error(error) => {
                match peek {
                    Some(Err(got)) => assert_eq!(got, error.as_ref(), "poll_chunk error differs from poll()"),
                    other => panic!("poll() gave {error:?}, poll_chunk gave {other:?}"),
                }
                peek = iter.next();
            }
            Item::Body(_) | Item::End(_) => panic!("poll() item {item:?} outside a chunk"),
        }
    }
    assert!(peek.is_none(), "poll_chunk returned more than poll(): {peek:?}");
    assert_eq!(got_finish, &run.finish, "finish() differs between poll and poll_chunk");
}

fn first_difference(left: &Run, right: &Run) -> String {
    let index = left.items.iter().zip(&right.items).position(|(a, b)| a != b);
    match index {
        Some(i) => format!("item {i}: whole {:?}\n  split {:?}", left.items[i], right.items[i]),
        None if left.items.len() != right.items.len() => format!(
            "whole has {} items, split has {}; extra: {:?}",
            left.items.len(),
            right.items.len(),
            if left.items.len() > right.items.len() {
                &left.items[right.items.len()..]
            } else {
                &right.items[left.items.len()..]
            }
        ),
        None => format!("finish(): whole {:?}, split {:?}", left.finish, right.finish),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(plan) = plan(data) else { return };
    let whole = decode_with_poll(plan.limits, std::slice::from_ref(&plan.whole));
    let split = decode_with_poll(plan.limits, &plan.pieces);
    assert!(whole == split, "split changes the decoding: {}", first_difference(&whole, &split));

    let (chunks, finish) = decode_with_poll_chunk(plan.limits, &plan.pieces, plan.hint);
    let cap = plan.hint.unwrap_or(plan.limits.max_whole_chunk);
    compare_poll_chunk(&split, &chunks, &finish, cap);
});
