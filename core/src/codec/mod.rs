//! The streaming decoder: bytes in, chunk heads, body slices and end-lines out.
//!
//! Feed the bytes of a connection in whatever pieces they arrive
//! ([`Decoder::feed`]); take decoded items with [`Decoder::poll`] (streaming: a
//! head, zero-copy body slices, the end) or whole chunks with
//! [`Decoder::poll_chunk`] (msrplib's `read_chunk(size)`, with virtual segments).
//! Any split of the input gives the same chunks.
//!
//! The end of a body is found by scanning for `\r\n-------<transaction-id>` with
//! `memchr::memmem`, then checking for a flag and CRLF; a body may contain such
//! text for another transaction id or without a flag. Only bytes that could still
//! begin the end-line are held back between reads, so a body of any size streams
//! through in slices of the caller's buffers.
//!
//! ```
//! use bytes::Bytes;
//! use msrp_core::codec::{Decoded, Decoder, DecoderLimits};
//!
//! let wire = b"MSRP a786hjs2 SEND\r\n\
//!     To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\r\n\
//!     From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n\
//!     Message-ID: 87652491\r\nByte-Range: 1-23/23\r\nContent-Type: text/plain\r\n\r\n\
//!     Hey Bob, are you there?\r\n-------a786hjs2$\r\n";
//! let mut decoder = Decoder::new(DecoderLimits::default());
//! // A read that ends in the middle of the end-line is fine.
//! decoder.feed(Bytes::from_static(&wire[..wire.len() - 7]));
//! decoder.feed(Bytes::from_static(&wire[wire.len() - 7..]));
//! let chunk = decoder.poll_chunk(None).unwrap().unwrap();
//! assert_eq!(chunk.message_id(), Some("87652491"));
//! assert_eq!(&chunk.data[..], b"Hey Bob, are you there?");
//! ```

mod error;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use memchr::memmem;

pub use error::{ChunkParseError, ParseErrorKind};

use crate::chunk::{Chunk, ContinuationFlag, END_LINE_PREFIX, MAX_NON_SEND_BODY, Method, StartLine, end_line_needle};
use crate::header::{
    ByteRange, ExtensionName, FailureReport, Header, HeaderError, HeaderField, HeaderName, HeaderValue, SuccessReport,
};

/// How every start line begins (RFC 4975 §9).
const START_LINE_PREFIX: &[u8] = b"MSRP ";

/// Limits checked before anything is allocated for a chunk. Defaults follow design.md §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Longest start or header line, CRLF excluded (16 KiB).
    pub max_header_line: usize,
    /// Most header lines in one chunk (64).
    pub max_headers: usize,
    /// Most URIs in To-Path, From-Path or Use-Path (32).
    pub max_path_uris: usize,
    /// Largest body of a request other than SEND (10240, RFC 4975 §7.1).
    pub max_non_send_body: usize,
    /// Largest message a Byte-Range may announce (1 TiB); beyond it the chunk gets a 413.
    pub max_message_size: u64,
    /// Largest body [`Decoder::poll_chunk`] returns in one piece when no size is given
    /// (16 MiB); a longer chunk comes as virtual segments so memory stays bounded.
    pub max_whole_chunk: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_header_line: 16 * 1024,
            max_headers: 64,
            max_path_uris: 32,
            max_non_send_body: MAX_NON_SEND_BODY,
            max_message_size: 1 << 40,
            max_whole_chunk: 16 * 1024 * 1024,
        }
    }
}

/// One item of decoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The start line and headers of a new chunk (its `data` is empty, and its
    /// `contflag` is only final for a bodiless chunk). Zero or more [`Decoded::Data`]
    /// follow, then [`Decoded::End`] with the real flag.
    Head(Chunk),
    /// The next piece of the current chunk's body: a slice of the fed buffers.
    Data(Bytes),
    /// The current chunk ended with this flag.
    End(ContinuationFlag),
}

/// The incremental MSRP decoder of one connection. See the [module docs](self).
///
/// # After a bad chunk
///
/// A chunk that breaks the rules but keeps its framing gives one non-fatal
/// [`ChunkParseError`] and decoding goes on with the next chunk. Its header section is
/// read line by line, and in it two kinds of line cannot be headers (a header name
/// begins with a letter and has no space): a line of seven dashes ends the chunk, and
/// a line beginning `MSRP ` starts the next one. So an end-line naming another
/// transaction id (a prefix, an extension or another case of it) ends its chunk with
/// [`ParseErrorKind::WrongEndLine`], a start line where a header was expected ends the
/// chunk before it with [`ParseErrorKind::MissingEndLine`], and a chunk skipped after a
/// bad header line ends at either as well: the decoder resynchronises on the next start
/// line and never waits for an end-line that will not come (issue 12 §2.2). A body, once
/// its blank line was read, is opaque (RFC 4975 §7.1) and ends only at its exact
/// end-line.
///
/// # Tolerated
///
/// A request without a body must not carry Content-Type (RFC 4975 §7.1), but the rule
/// binds the sender and a sloppy peer may put one on its empty binding or keepalive
/// SEND: answering that with 400 would fail a session that otherwise works. So the
/// stray Content-Type of a bodiless chunk is dropped: the chunk is what the frame is, a
/// bodiless request, is not refused for its type, and [encodes](Chunk::encode) back to
/// a bodiless frame rather than to one with an empty body (issue 12 §2.9).
#[derive(Debug)]
pub struct Decoder {
    limits: DecoderLimits,
    input: VecDeque<Bytes>,
    /// Stream offset of the first byte not yet taken from `input`.
    consumed: u64,
    /// Bytes of a line that began in an earlier buffer.
    line: BytesMut,
    state: State,
    ready: VecDeque<Result<Decoded, ChunkParseError>>,
    assembly: Option<Assembly>,
    /// Stream offset of each header line of the chunk being read, for error positions.
    field_offsets: Vec<u64>,
    /// The chunk being read has a bad method; reported when its head is complete.
    bad_method: Option<BadMethod>,
    /// Stream offset of the start line of the chunk begun last.
    chunk_offset: u64,
}

/// A start line whose method is not valid, held until the chunk's header section is read
/// so that the 400 it gets can be addressed to its From-Path (issue 12 §2.7).
#[derive(Debug, Clone, Copy)]
struct BadMethod {
    offset: u64,
    /// `false` when the "method" begins with a digit: a response with a bad status code,
    /// which is never answered.
    answerable: bool,
}

/// The longest end-line: CRLF, seven dashes, a 32-character transaction id, flag, CRLF.
const MAX_END_LINE: usize = 2 + 7 + 32 + 1 + 2;

/// How far into each input buffer the body scan checks CRs one by one before it builds
/// a memmem searcher for the end-line.
const QUICK_SCAN: usize = 512;

#[derive(Debug)]
enum State {
    StartLine,
    Headers(Chunk),
    /// The header section of a chunk already reported bad, skipped line by line;
    /// `mid_line` while the rest of an over-long line is being dropped.
    SkipHeaders {
        transaction_id: String,
        mid_line: bool,
    },
    Body(BodyScan),
    Failed,
}

impl Decoder {
    /// A decoder with the given limits.
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            limits,
            input: VecDeque::new(),
            consumed: 0,
            line: BytesMut::new(),
            state: State::StartLine,
            ready: VecDeque::new(),
            assembly: None,
            field_offsets: Vec::new(),
            bad_method: None,
            chunk_offset: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &DecoderLimits {
        &self.limits
    }

    /// Hands the decoder the next bytes of the stream; nothing is decoded until polled.
    /// Body slices returned later share these buffers.
    pub fn feed(&mut self, data: Bytes) {
        if !data.is_empty() && !matches!(self.state, State::Failed) {
            self.input.push_back(data);
        }
    }

    /// Bytes fed but not yet decoded (excluding the few held back at a body's end).
    pub fn buffered(&self) -> usize {
        self.input.iter().map(Bytes::len).sum::<usize>() + self.line.len()
    }

    /// Stream offset (bytes fed before it) of the start line of the chunk begun last: after
    /// a [`Decoded::Head`], where that chunk starts.
    pub(crate) fn chunk_offset(&self) -> u64 {
        self.chunk_offset
    }

    /// Whether the decoder stopped after losing the framing.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// Whether the stream is at a chunk boundary (nothing partial held).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::StartLine) && self.line.is_empty() && self.input.is_empty()
    }

    /// The next decoded item, or `None` when more input is needed.
    ///
    /// Call after every [`Decoder::feed`] until it returns `None`. An `Err` that
    /// [closes the connection](ChunkParseError::closes_connection) is the last item;
    /// any other `Err` ends the chunk in progress (no [`Decoded::End`] follows for it)
    /// and decoding goes on with the next chunk.
    #[must_use]
    pub fn poll(&mut self) -> Option<Result<Decoded, ChunkParseError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            match &mut self.state {
                State::Failed => return None,
                State::StartLine | State::Headers(_) | State::SkipHeaders { .. } => self.step_line()?,
                State::Body(_) => self.step_body()?,
            }
        }
    }

    /// The next whole chunk, msrplib's `read_chunk(size)`.
    ///
    /// With `size` given, a chunk whose body grows past `size` bytes is returned in
    /// "virtual" segments: each carries `segment` (1, 2, …), a Byte-Range adjusted to
    /// the bytes it holds, and `+` except the last, which keeps the real flag. `size`
    /// is only a hint: a segment holds whatever had arrived when it crossed `size`
    /// (and `Some(0)` returns as soon as any body bytes arrive). Without `size`,
    /// chunks come whole up to [`DecoderLimits::max_whole_chunk`] and in segments beyond.
    ///
    /// Do not mix with [`Decoder::poll`] on the same decoder.
    #[must_use]
    #[doc(alias = "read_chunk")]
    pub fn poll_chunk(&mut self, size: Option<usize>) -> Option<Result<Chunk, ChunkParseError>> {
        let cap = size.unwrap_or(self.limits.max_whole_chunk);
        loop {
            match self.poll()? {
                Err(error) => {
                    self.assembly = None;
                    return Some(Err(error));
                }
                Ok(Decoded::Head(chunk)) => self.assembly = Some(Assembly::new(chunk)),
                Ok(Decoded::Data(data)) => {
                    let Some(assembly) = &mut self.assembly else { continue };
                    assembly.push(data);
                    if assembly.len() > cap {
                        // When the end-line came in the same read, this is the last segment.
                        if let Some(Ok(Decoded::End(flag))) = self.ready.front() {
                            let flag = *flag;
                            self.ready.pop_front();
                            return self.assembly.take().map(|mut assembly| Ok(assembly.take_segment(Some(flag))));
                        }
                        return Some(Ok(assembly.take_segment(None)));
                    }
                }
                Ok(Decoded::End(flag)) => {
                    if let Some(mut assembly) = self.assembly.take() {
                        return Some(Ok(assembly.take_segment(Some(flag))));
                    }
                }
            }
        }
    }

    /// Tells the decoder the stream has ended. Returns an error when it ended inside
    /// a chunk; the decoder is failed afterwards either way.
    #[must_use]
    pub fn finish(&mut self) -> Option<ChunkParseError> {
        let mid_chunk = !matches!(self.state, State::StartLine | State::Failed) || !self.line.is_empty();
        let transaction_id = self.current_transaction_id();
        self.state = State::Failed;
        self.input.clear();
        self.ready.clear();
        self.assembly = None;
        mid_chunk.then(|| ChunkParseError {
            kind: ParseErrorKind::Truncated,
            offset: self.consumed,
            transaction_id,
            head: None,
            fatal: true,
        })
    }

    fn current_transaction_id(&self) -> Option<String> {
        match &self.state {
            State::Headers(chunk) => Some(chunk.transaction_id.clone()),
            State::SkipHeaders { transaction_id, .. } => Some(transaction_id.clone()),
            State::Body(scan) => Some(scan.transaction_id().to_owned()),
            State::StartLine | State::Failed => None,
        }
    }

    /// Reads one line and acts on it. `None` when no complete line is buffered.
    fn step_line(&mut self) -> Option<()> {
        if let State::SkipHeaders { mid_line: mid_line @ true, .. } = &mut self.state {
            Self::drop_through_newline(&mut self.input, &mut self.consumed)?;
            *mid_line = false;
            return Some(());
        }
        let line_start = self.consumed - self.line.len() as u64;
        let line = match self.next_line() {
            Some(Ok(line)) => line,
            Some(Err((kind, line_taken))) => {
                self.line_error(kind, line_start, line_taken);
                return Some(());
            }
            None => return None,
        };
        match std::mem::replace(&mut self.state, State::StartLine) {
            State::StartLine => self.on_start_line(&line[..line.len() - 2], line_start),
            State::Headers(chunk) => self.on_header_line(chunk, &line, line_start),
            State::SkipHeaders { transaction_id, .. } => self.on_skipped_line(transaction_id, &line, line_start),
            other => self.state = other,
        }
        Some(())
    }

    /// Drops input up to and including the next LF; `None` when the input ran out first.
    fn drop_through_newline(input: &mut VecDeque<Bytes>, consumed: &mut u64) -> Option<()> {
        loop {
            let front = input.front_mut()?;
            let Some(newline) = memchr::memchr(b'\n', front) else {
                *consumed += front.len() as u64;
                input.pop_front();
                continue;
            };
            *consumed += newline as u64 + 1;
            bytes::Buf::advance(front, newline + 1);
            if front.is_empty() {
                input.pop_front();
            }
            return Some(());
        }
    }

    /// The next line, CRLF included (slicing it off would cost a reference count), taken
    /// from the input queue.
    /// `Err((kind, line_taken))` for a line that is too long or ends in a bare LF;
    /// `line_taken` is false when the rest of a too-long line is still to come.
    fn next_line(&mut self) -> Option<Result<Bytes, (ParseErrorKind, bool)>> {
        let max = self.limits.max_header_line + 2;
        loop {
            let front = self.input.front_mut()?;
            let Some(newline) = memchr::memchr(b'\n', front) else {
                if self.line.len() + front.len() > max {
                    self.line.clear();
                    return Some(Err((ParseErrorKind::LineTooLong { limit: self.limits.max_header_line }, false)));
                }
                self.consumed += front.len() as u64;
                self.line.extend_from_slice(front);
                self.input.pop_front();
                continue;
            };
            let piece = front.split_to(newline + 1);
            if front.is_empty() {
                self.input.pop_front();
            }
            self.consumed += piece.len() as u64;
            if self.line.len() + piece.len() > max {
                // Skipping resumes after this line.
                self.line.clear();
                return Some(Err((ParseErrorKind::LineTooLong { limit: self.limits.max_header_line }, true)));
            }
            let whole = if self.line.is_empty() {
                piece
            } else {
                self.line.extend_from_slice(&piece);
                self.line.split().freeze()
            };
            if whole.len() < 2 || whole[whole.len() - 2] != b'\r' {
                return Some(Err((ParseErrorKind::BareLineFeed, true)));
            }
            return Some(Ok(whole));
        }
    }

    /// A line could not be read: fatal before the transaction id is known, otherwise
    /// the rest of the chunk's header section is skipped.
    fn line_error(&mut self, kind: ParseErrorKind, offset: u64, line_taken: bool) {
        match std::mem::replace(&mut self.state, State::StartLine) {
            State::Headers(chunk) => self.skip_header_section(chunk, kind, offset, !line_taken),
            State::SkipHeaders { transaction_id, .. } => {
                self.state = State::SkipHeaders { transaction_id, mid_line: !line_taken };
            }
            _ => self.fail(kind, offset, None),
        }
    }

    fn fail(&mut self, kind: ParseErrorKind, offset: u64, transaction_id: Option<String>) {
        self.state = State::Failed;
        self.input.clear();
        self.line.clear();
        self.ready.push_back(Err(ChunkParseError { kind, offset, transaction_id, head: None, fatal: true }));
    }

    /// Reports what is wrong with the chunk whose head was read so far; a bad method,
    /// found first, is reported in place of anything found after it.
    fn chunk_error(&mut self, kind: ParseErrorKind, offset: u64, head: Chunk) {
        let transaction_id = Some(head.transaction_id.clone());
        let (kind, offset, head) = match self.bad_method.take() {
            Some(bad) => (ParseErrorKind::BadMethod, bad.offset, bad.answerable.then(|| Box::new(head))),
            None => (kind, offset, Some(Box::new(head))),
        };
        self.ready.push_back(Err(ChunkParseError { kind, offset, transaction_id, head, fatal: false }));
    }

    fn on_start_line(&mut self, line: &[u8], offset: u64) {
        self.bad_method = None;
        self.chunk_offset = offset;
        let Some(rest) = line.strip_prefix(START_LINE_PREFIX) else {
            return self.fail(ParseErrorKind::BadStartLine("does not begin with 'MSRP '"), offset, None);
        };
        let (tid, rest) = match memchr::memchr(b' ', rest) {
            Some(space) => (&rest[..space], &rest[space + 1..]),
            None => (rest, &b""[..]),
        };
        let Some(tid) = std::str::from_utf8(tid).ok().filter(|tid| crate::header::is_ident(tid.as_bytes())) else {
            return self.fail(ParseErrorKind::BadStartLine("the transaction id is not an ident"), offset, None);
        };
        let start_line = if let Some(code) = parse_status_code(rest) {
            let comment = rest.get(4..).filter(|text| !text.is_empty());
            StartLine::Response { code, comment: comment.map(|text| String::from_utf8_lossy(text).into_owned()) }
        } else if let Some(method) = Method::from_bytes(rest) {
            StartLine::Request(method)
        } else {
            // The transaction id is known, so the chunk can be answered with 400 (R4975-9-1);
            // its header section is read first for the From-Path the 400 goes to.
            let answerable = !rest.first().is_some_and(u8::is_ascii_digit);
            self.bad_method = Some(BadMethod { offset, answerable });
            StartLine::Request(Method::Other(ExtensionName(as_written(rest).into())))
        };
        let mut chunk = Chunk::request(tid, Method::Send);
        chunk.start_line = start_line;
        self.field_offsets.clear();
        chunk.headers.reserve(8);
        self.state = State::Headers(chunk);
    }

    /// `line` still ends in its CRLF.
    fn on_header_line(&mut self, mut chunk: Chunk, line: &Bytes, offset: u64) {
        let text = &line[..line.len() - 2];
        if text.is_empty() {
            return self.on_head_complete(chunk, true, offset);
        }
        if let Some(end) = text.strip_prefix(&END_LINE_PREFIX[2..]) {
            let tid = chunk.transaction_id.as_bytes();
            if end.len() == tid.len() + 1 && end.starts_with(tid) {
                if let Some(flag) = ContinuationFlag::from_byte(end[tid.len()]) {
                    chunk.contflag = flag;
                    return self.on_head_complete(chunk, false, offset);
                }
            }
            // Issue 12 §2.2: no header begins with a dash, so this is the chunk's end-line
            // with the wrong transaction id. Waiting for the right one would swallow the
            // stream; the chunk ends here.
            return self.chunk_error(ParseErrorKind::WrongEndLine, offset, chunk);
        }
        if text.starts_with(START_LINE_PREFIX) {
            // Issue 12 §2.2: the chunk lost its end-line; this line starts the next one.
            self.chunk_error(ParseErrorKind::MissingEndLine, offset, chunk);
            return self.on_start_line(text, offset);
        }
        let field = parse_header_line(line);
        if field.is_some() && chunk.headers.len() >= self.limits.max_headers {
            let kind = ParseErrorKind::TooManyHeaders { limit: self.limits.max_headers };
            return self.skip_header_section(chunk, kind, offset, false);
        }
        match field {
            Some(field) => {
                chunk.headers.push_field(field);
                self.field_offsets.push(offset);
                self.state = State::Headers(chunk);
            }
            None => self.skip_header_section(chunk, ParseErrorKind::BadHeaderLine, offset, false),
        }
    }

    /// Reports a bad chunk and skips the rest of its header section (`mid_line`: from
    /// the middle of a line).
    fn skip_header_section(&mut self, chunk: Chunk, kind: ParseErrorKind, offset: u64, mid_line: bool) {
        let transaction_id = chunk.transaction_id.clone();
        self.chunk_error(kind, offset, chunk);
        self.state = State::SkipHeaders { transaction_id, mid_line };
    }

    /// A line of the header section of a chunk being skipped: the blank line, after
    /// which its body is skipped; a line of dashes, its end-line whatever id it names;
    /// or the start line of the next chunk. Anything else is passed over.
    fn on_skipped_line(&mut self, transaction_id: String, line: &Bytes, offset: u64) {
        let text = &line[..line.len() - 2];
        if text.is_empty() {
            self.skip_body(&transaction_id);
        } else if text.starts_with(&END_LINE_PREFIX[2..]) {
            self.state = State::StartLine;
        } else if text.starts_with(START_LINE_PREFIX) {
            self.on_start_line(text, offset);
        } else {
            self.state = State::SkipHeaders { transaction_id, mid_line: false };
        }
    }

    /// Skips a body up to its end-line, which may follow the blank line at once.
    fn skip_body(&mut self, transaction_id: &str) {
        let mut scan = BodyScan::new(transaction_id, true, None);
        scan.seed_line_start();
        self.state = State::Body(scan);
    }

    /// The blank line (`has_body`) or the end-line of a bodiless chunk was read.
    fn on_head_complete(&mut self, mut chunk: Chunk, has_body: bool, offset: u64) {
        let checked = if self.bad_method.is_some() {
            Err((ParseErrorKind::BadMethod, None))
        } else {
            self.check_head(&chunk, has_body)
        };
        if let Err((kind, field)) = checked {
            let offset = field.and_then(|index| self.field_offsets.get(index)).copied().unwrap_or(offset);
            let transaction_id = chunk.transaction_id.clone();
            self.chunk_error(kind, offset, chunk);
            if has_body {
                self.skip_body(&transaction_id);
            }
            return;
        }
        if has_body {
            let limit = match chunk.method() {
                Some(Method::Send) | None => None,
                Some(_) => Some(self.limits.max_non_send_body),
            };
            let mut scan = BodyScan::new(&chunk.transaction_id, false, limit);
            scan.body_start = self.consumed;
            // Tolerance: an empty body whose end-line lacks the CRLF that closes the body
            // (`Content-Type: …\r\n\r\n-------tid$`) ends the chunk instead of swallowing
            // the stream. A body cannot start with its own end-line (RFC 4975 §7.1).
            scan.seed_line_start();
            // Requests other than SEND are rare and small; keep their head for a 413.
            scan.limited_head = limit.map(|_| Box::new(chunk.clone()));
            self.state = State::Body(scan);
            let mut head = chunk;
            head.contflag = ContinuationFlag::End;
            self.ready.push_back(Ok(Decoded::Head(head)));
        } else {
            // Tolerance (issue 12 §2.9, see `Decoder`): a stray Content-Type of a bodiless
            // chunk is dropped, so that it stays bodiless.
            chunk.headers.remove(&HeaderName::ContentType);
            let flag = chunk.contflag;
            self.ready.push_back(Ok(Decoded::Head(chunk)));
            self.ready.push_back(Ok(Decoded::End(flag)));
            self.state = State::StartLine;
        }
    }

    /// The checks every chunk gets before its head is delivered. Cheap ones only:
    /// URIs are counted here, not parsed. A failing header is named by its index.
    fn check_head(&self, chunk: &Chunk, has_body: bool) -> Result<(), (ParseErrorKind, Option<usize>)> {
        let fields = chunk.headers.fields();
        let missing = |name| Err((ParseErrorKind::Header(HeaderError::Missing(name)), None));
        match (fields.first().map(|f| &f.name), fields.get(1).map(|f| &f.name)) {
            (Some(HeaderName::ToPath), Some(HeaderName::FromPath)) => {}
            _ if chunk.headers.get(&HeaderName::ToPath).is_none() => return missing("To-Path"),
            _ if chunk.headers.get(&HeaderName::FromPath).is_none() => return missing("From-Path"),
            _ => return Err((ParseErrorKind::Header(HeaderError::WrongOrder), None)),
        }
        for (index, field) in fields.iter().enumerate() {
            self.check_field(field).map_err(|kind| (kind, Some(index)))?;
        }
        if has_body {
            if !chunk.is_request() {
                return Err((ParseErrorKind::ResponseWithBody, None));
            }
            if chunk.headers.get(&HeaderName::ContentType).is_none() {
                return Err((ParseErrorKind::Header(HeaderError::MissingContentType), None));
            }
        }
        Ok(())
    }

    fn check_field(&self, field: &HeaderField) -> Result<(), ParseErrorKind> {
        let header_error = ParseErrorKind::Header;
        let bytes = field.value.as_bytes();
        match &field.name {
            // URIs are separated by SP; HTAB is counted too, as `Uri::parse_path` accepts it.
            name @ (HeaderName::ToPath | HeaderName::FromPath | HeaderName::UsePath)
                if memchr::memchr2_iter(b' ', b'\t', bytes).count() >= self.limits.max_path_uris
                    && bytes.split(|&b| b == b' ' || b == b'\t').filter(|uri| !uri.is_empty()).count()
                        > self.limits.max_path_uris =>
            {
                let limit = self.limits.max_path_uris;
                Err(ParseErrorKind::PathTooLong { header: name.static_name(), limit })
            }
            HeaderName::ByteRange => {
                let range = ByteRange::decode(field.value.as_str()).map_err(header_error)?;
                let announced = range.total.unwrap_or(0).max(range.end.unwrap_or(0)).max(range.start);
                if announced > self.limits.max_message_size {
                    return Err(ParseErrorKind::MessageTooLarge { announced, limit: self.limits.max_message_size });
                }
                Ok(())
            }
            HeaderName::MessageId if !crate::header::is_ident(bytes) => {
                let reason = "not an ident of 4 to 32 characters";
                Err(header_error(HeaderError::invalid("Message-ID", field.value.as_str(), reason)))
            }
            HeaderName::FailureReport => FailureReport::decode(field.value.as_str()).map(drop).map_err(header_error),
            HeaderName::SuccessReport => SuccessReport::decode(field.value.as_str()).map(drop).map_err(header_error),
            _ => Ok(()),
        }
    }

    /// Scans the next input buffer for the end of the current body.
    fn step_body(&mut self) -> Option<()> {
        let State::Body(scan) = &mut self.state else {
            return None;
        };
        let input = self.input.pop_front()?;
        let outcome = scan.scan(&input);
        self.consumed += outcome.consumed as u64;
        if let Some(rest) = outcome.rest.filter(|rest| !rest.is_empty()) {
            self.input.push_front(rest);
        }
        let discard = scan.discard;
        let mut over_limit = false;
        for data in outcome.data.into_iter().flatten().filter(|data| !data.is_empty()) {
            if discard {
                continue;
            }
            // Deliver up to the limit, whatever the reads were, then report the byte past it.
            let room = scan.limit.map_or(usize::MAX, |limit| limit - scan.emitted);
            if data.len() > room {
                if room > 0 {
                    self.ready.push_back(Ok(Decoded::Data(data.slice(..room))));
                }
                scan.emitted += room;
                over_limit = true;
                break;
            }
            scan.emitted += data.len();
            self.ready.push_back(Ok(Decoded::Data(data)));
        }
        if over_limit {
            let limit = scan.limit.unwrap_or_default();
            scan.discard = true;
            let transaction_id = Some(scan.transaction_id().to_owned());
            let head = scan.limited_head.take();
            self.ready.push_back(Err(ChunkParseError {
                kind: ParseErrorKind::BodyTooLarge { limit },
                offset: scan.body_start + limit as u64,
                transaction_id,
                head,
                fatal: false,
            }));
        }
        if let Some(flag) = outcome.end {
            if !discard && !over_limit {
                self.ready.push_back(Ok(Decoded::End(flag)));
            }
            self.state = State::StartLine;
        }
        Some(())
    }
}

/// The method of a bad start line as written, with control characters replaced so that
/// it can still be written into a frame.
fn as_written(method: &[u8]) -> String {
    String::from_utf8_lossy(method)
        .chars()
        .map(|c| if c.is_control() { char::REPLACEMENT_CHARACTER } else { c })
        .collect()
}

/// `NNN` followed by the end of the line or a space.
fn parse_status_code(rest: &[u8]) -> Option<u16> {
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    Some(digits.iter().fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0')))
}

/// `Name: value` followed by CRLF. Extra spaces after the colon are tolerated (RFC 7977
/// examples), as is a missing one; trailing blanks are dropped.
fn parse_header_line(line: &Bytes) -> Option<HeaderField> {
    let colon = memchr::memchr(b':', line)?;
    let name = HeaderName::from_bytes(&line[..colon])?;
    let mut start = colon + 1;
    while line.get(start).is_some_and(|&b| b == b' ' || b == b'\t') {
        start += 1;
    }
    let mut end = line.len() - 2;
    while end > start && matches!(line[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    let value = HeaderValue::from_bytes(line.slice(start..end))?;
    Some(HeaderField { name, value })
}

/// Looks for `\r\n-------<tid><flag>\r\n` across reads, holding back only a
/// suffix that could still be the start of it.
#[derive(Debug)]
struct BodyScan {
    /// `\r\n-------<tid>`: the end-line up to its flag.
    needle: Vec<u8>,
    /// A searcher for `needle`, built once a body outgrows [`QUICK_SCAN`].
    finder: Option<Box<memmem::Finder<'static>>>,
    held: BytesMut,
    /// How many bytes at the front of `held` are a CRLF put there by the decoder, not body.
    synthetic: usize,
    /// Whether a CRLF put there by the decoder comes before the next input (see `seed_line_start`).
    seeded: bool,
    /// The head of a request whose body has a size limit, kept to build the 413.
    limited_head: Option<Box<Chunk>>,
    /// Skip the body instead of delivering it (the chunk was reported bad).
    discard: bool,
    limit: Option<usize>,
    emitted: usize,
    /// Stream offset of the first body byte (for error positions).
    body_start: u64,
}

/// What one scan step found.
struct ScanOutcome {
    /// Body bytes in order: the released held-back bytes, then a slice of the input.
    data: [Option<Bytes>; 2],
    /// The flag, when the end-line was found.
    end: Option<ContinuationFlag>,
    /// Input after the end-line, to decode next.
    rest: Option<Bytes>,
    /// Input bytes used (body, held back or end-line).
    consumed: usize,
}

enum EndMatch {
    Full(ContinuationFlag),
    Partial,
    No,
}

impl BodyScan {
    fn new(transaction_id: &str, discard: bool, limit: Option<usize>) -> Self {
        Self {
            needle: end_line_needle(transaction_id),
            finder: None,
            held: BytesMut::new(),
            synthetic: 0,
            seeded: false,
            limited_head: None,
            discard,
            limit,
            emitted: 0,
            body_start: 0,
        }
    }

    /// When the scan starts right after a line's CRLF (a blank line, or a header line
    /// of a chunk being skipped), the end-line can come next without a CRLF of its own:
    /// put that CRLF back in front of the scan, marked as not being body.
    fn seed_line_start(&mut self) {
        debug_assert!(self.held.is_empty(), "a scan is seeded before it holds anything");
        self.seeded = true;
    }

    /// Takes the first `len` held bytes as body, leaving out the decoder's own CRLF.
    fn release_held(&mut self, len: usize) -> Bytes {
        let skip = self.synthetic.min(len);
        bytes::Buf::advance(&mut self.held, skip);
        self.synthetic -= skip;
        if len == skip {
            return Bytes::new();
        }
        self.held.split_to(len - skip).freeze()
    }

    fn needle(&self) -> &[u8] {
        &self.needle
    }

    fn transaction_id(&self) -> &str {
        // The needle is END_LINE_PREFIX followed by an ident, which is ASCII.
        std::str::from_utf8(&self.needle[END_LINE_PREFIX.len()..]).unwrap_or_default()
    }

    /// Takes the next input buffer of the body: returns the body bytes it holds, and
    /// the flag and the rest of the input when the end-line is in it.
    fn scan(&mut self, input: &Bytes) -> ScanOutcome {
        let end_len = self.needle().len() + 3;
        let mut outcome = ScanOutcome { data: [None, None], end: None, rest: None, consumed: 0 };
        // The bytes before this input that may begin the end-line: held-back body bytes,
        // or the CRLF the decoder puts in front of a scan that starts at a line start
        // (`seeded`; kept out of `held` so that the common case allocates nothing).
        let seeded = std::mem::take(&mut self.seeded);
        let prefix_len = if seeded { 2 } else { self.held.len() };
        if prefix_len > 0 {
            // The prefix is shorter than an end-line, so it and the next end-line's worth of
            // input fit on the stack.
            let mut buffer = [0u8; 2 * MAX_END_LINE];
            let taken = input.len().min(end_len);
            buffer[..prefix_len].copy_from_slice(if seeded { b"\r\n" } else { &self.held });
            buffer[prefix_len..prefix_len + taken].copy_from_slice(&input[..taken]);
            let window = &buffer[..prefix_len + taken];
            for at in 0..prefix_len {
                match match_end(&self.needle, window, at) {
                    EndMatch::No => {}
                    EndMatch::Full(flag) => {
                        let used = at + end_len - prefix_len;
                        outcome.data[0] = (!seeded).then(|| self.release_held(at));
                        self.held.clear();
                        self.synthetic = 0;
                        outcome.end = Some(flag);
                        outcome.rest = Some(input.slice(used..));
                        outcome.consumed = used;
                        return outcome;
                    }
                    EndMatch::Partial => {
                        // The whole input fit in the window and still may be the end-line.
                        if seeded {
                            self.held.extend_from_slice(&b"\r\n"[at..]);
                            self.synthetic = 2 - at;
                        } else {
                            outcome.data[0] = Some(self.release_held(at));
                        }
                        self.held.extend_from_slice(input);
                        outcome.consumed = input.len();
                        return outcome;
                    }
                }
            }
            outcome.data[0] = (!seeded).then(|| self.release_held(prefix_len));
        }
        outcome.consumed = input.len();
        let end_at = |outcome: &mut ScanOutcome, at: usize, flag| {
            outcome.data[1] = Some(input.slice(..at));
            outcome.end = Some(flag);
            outcome.rest = Some(input.slice(at + end_len..));
            outcome.consumed = at + end_len;
        };
        // Where the bytes that may still begin the end-line start (the input's length if none).
        let hold_from = 'search: {
            // Short bodies (chat messages) end within a few hundred bytes: look at every CR
            // there before paying for a memmem searcher. Once a body has needed the
            // searcher, it is long, and the searcher alone is faster.
            let quick_end = if self.finder.is_some() { 0 } else { input.len().min(QUICK_SCAN) };
            for at in memchr::memchr_iter(b'\r', &input[..quick_end]) {
                match match_end(&self.needle, input, at) {
                    EndMatch::No => {}
                    EndMatch::Full(flag) => {
                        end_at(&mut outcome, at, flag);
                        return outcome;
                    }
                    EndMatch::Partial => break 'search at,
                }
            }
            if quick_end == input.len() {
                break 'search input.len();
            }
            let needle = &self.needle;
            let finder = self.finder.get_or_insert_with(|| Box::new(memmem::Finder::new(needle).into_owned()));
            let mut from = quick_end;
            while let Some(found) = finder.find(&input[from..]) {
                let at = from + found;
                match match_end(&self.needle, input, at) {
                    EndMatch::No => from = at + 1,
                    EndMatch::Full(flag) => {
                        end_at(&mut outcome, at, flag);
                        return outcome;
                    }
                    EndMatch::Partial => break 'search at,
                }
            }
            // No whole needle left: a suffix shorter than it may still begin the end-line.
            let tail_from = input.len().saturating_sub(self.needle.len() - 1).max(from);
            memchr::memchr_iter(b'\r', &input[tail_from..])
                .map(|i| tail_from + i)
                .find(|&at| matches!(match_end(&self.needle, input, at), EndMatch::Partial))
                .unwrap_or(input.len())
        };
        outcome.data[1] = Some(input.slice(..hold_from));
        self.held.extend_from_slice(&input[hold_from..]);
        outcome
    }
}

/// Whether the end-line `needle` + flag + CRLF starts at `at` in `window`.
fn match_end(needle: &[u8], window: &[u8], at: usize) -> EndMatch {
    let avail = &window[at..];
    let compared = avail.len().min(needle.len());
    if avail[..compared] != needle[..compared] {
        return EndMatch::No;
    }
    let tail = &avail[compared..];
    let Some(&flag) = tail.first() else {
        return EndMatch::Partial;
    };
    let Some(flag) = ContinuationFlag::from_byte(flag) else {
        return EndMatch::No;
    };
    match tail.get(1..3) {
        Some(b"\r\n") => EndMatch::Full(flag),
        Some(_) => EndMatch::No,
        None if tail.get(1).is_some_and(|&b| b != b'\r') => EndMatch::No,
        None => EndMatch::Partial,
    }
}

/// A chunk being gathered from its [`Decoded`] pieces and handed out whole or as virtual
/// segments ([`Decoder::poll_chunk`] and the session engine share it).
#[derive(Debug)]
pub(crate) struct Assembly {
    head: Chunk,
    parts: Vec<Bytes>,
    len: usize,
    /// Body bytes already returned in earlier segments.
    delivered: u64,
    segments: u32,
}

impl Assembly {
    pub(crate) fn new(head: Chunk) -> Self {
        Self { head, parts: Vec::new(), len: 0, delivered: 0, segments: 0 }
    }

    /// The head the chunk started with.
    pub(crate) fn head(&self) -> &Chunk {
        &self.head
    }

    /// Adds the next body piece.
    pub(crate) fn push(&mut self, data: Bytes) {
        self.len += data.len();
        self.parts.push(data);
    }

    /// Body bytes gathered and not yet handed out.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Returns what has been gathered: a virtual segment (`end` is `None`) or the
    /// rest of the chunk.
    pub(crate) fn take_segment(&mut self, end: Option<ContinuationFlag>) -> Chunk {
        let data = match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts.pop().unwrap_or_default(),
            _ => {
                let mut joined = BytesMut::with_capacity(self.len);
                for part in self.parts.drain(..) {
                    joined.extend_from_slice(&part);
                }
                joined.freeze()
            }
        };
        self.parts.clear();
        let mut chunk = self.head.clone();
        let len = data.len() as u64;
        chunk.data = data;
        if end.is_none() || self.segments > 0 {
            self.segments = self.segments.saturating_add(1);
            chunk.segment = Some(self.segments);
            let base = self.head.byte_range().unwrap_or(ByteRange::new(1, None, None));
            let start = base.start + self.delivered;
            let end = start + len - 1;
            // Positions come from the bytes received (RFC 4975 §7.3.1); a total they
            // overrun was wrong, so it becomes unknown rather than an invalid range.
            chunk.add_header(&ByteRange::new(start, Some(end), base.total.filter(|&total| total >= end)));
        }
        chunk.contflag = end.unwrap_or(ContinuationFlag::More);
        self.delivered += len;
        self.len = 0;
        chunk
    }
}
