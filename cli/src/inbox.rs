//! Incoming messages, chunk by chunk: each chunk's data is written to its file (with an
//! output folder) at its place as it arrives, so no message is ever held whole in memory.
//!
//! A message is complete only when every byte from 1 to its length has arrived (RFC 4975
//! §7.3.1): the length is the `$` chunk's end, or the Byte-Range total announced before
//! it. Chunks may come in any order, also after the `$` chunk; where they overlap the last
//! one wins. The SHA-256 is computed as the bytes arrive in order; bytes that arrived out
//! of order are read back from the file once, from where the in-order part stopped.
//!
//! What a peer can make this hold is bounded (see [`Limits`]): a chunk that would place
//! bytes past the message's length or past `max_size`, a message scattered in more than
//! [`MAX_FRAGMENTS`] pieces, or a new message beyond `max_open` at once is *skipped*: its
//! partial file is removed, an [`Arrival::Skipped`] says why, and its later chunks are
//! ignored. The session engine has already answered those chunks with 200, so the
//! refusal reaches the sender as a failure REPORT with [`Arrival::Skipped`]'s status
//! (where its Failure-Report allows one).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use msrp_tokio::core::header::HeaderName;
use msrp_tokio::core::reassembly::{Coverage, MAX_FRAGMENTS};
use msrp_tokio::core::{Chunk, ContinuationFlag};
use sha2::{Digest, Sha256};

/// Text bodies up to this size are kept to be shown (and hashed from memory when there
/// is no file).
const HEAD: usize = 4096;

/// Message-IDs of finished (or skipped) messages remembered so that their stray late
/// chunks are ignored instead of starting a new message.
const REMEMBERED: usize = 256;

/// What one session may make the inbox hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The largest message, in bytes.
    pub(crate) max_size: u64,
    /// Messages being received at once.
    pub(crate) max_open: usize,
}

impl Limits {
    /// The default cap on incomplete messages at once.
    pub(crate) const MAX_OPEN: usize = 16;
    /// The default largest message: 4 GiB.
    pub(crate) const MAX_SIZE: u64 = 4 << 30;
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_size: Self::MAX_SIZE, max_open: Self::MAX_OPEN }
    }
}

/// A message received in full.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) message_id: String,
    pub(crate) content_type: String,
    /// Bytes in the message.
    pub(crate) size: u64,
    /// SHA-256 of the body; `None` when chunks came out of order and there is no file to
    /// read them back from.
    pub(crate) sha256: Option<[u8; 32]>,
    /// Where the body was saved.
    pub(crate) file: Option<PathBuf>,
    /// The body of a short `text/*` message.
    pub(crate) text: Option<String>,
}

/// What a chunk completed.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// A whole message.
    Complete(Received),
    /// The peer aborted a message (`#`); its partial file is removed. `size` counts the
    /// bytes that had arrived.
    Aborted { message_id: String, size: u64 },
    /// The message was given up locally (see the module docs); its partial file is
    /// removed and its later chunks are ignored. `status` is the MSRP status that tells
    /// the sender why (413 too large or too many at once, 400 a broken Byte-Range).
    Skipped { message_id: String, status: u16, reason: String },
}

/// A message being received.
struct Partial {
    content_type: Option<String>,
    file: Option<(PathBuf, File)>,
    /// Byte positions present, and the length once known.
    coverage: Coverage,
    /// The length the first Byte-Range total announced.
    announced: Option<u64>,
    /// The length the `$` chunk fixed.
    fixed: Option<u64>,
    /// SHA-256 of the message's first `hashed` bytes.
    hasher: Sha256,
    hashed: u64,
    /// The message's first bytes (up to [`HEAD`]), at their places.
    head: Vec<u8>,
    is_text: bool,
}

/// The messages being received on one session.
pub(crate) struct Inbox {
    out_dir: Option<PathBuf>,
    limits: Limits,
    open: HashMap<String, Partial>,
    /// Recently finished or skipped messages, oldest first.
    done: VecDeque<String>,
}

impl Inbox {
    /// Saves every message under `out_dir` when given.
    pub(crate) fn new(out_dir: Option<PathBuf>, limits: Limits) -> Self {
        Self { out_dir, limits, open: HashMap::new(), done: VecDeque::new() }
    }

    /// Takes an incoming SEND chunk (or segment of one); returns what it completed. An
    /// `Err` (the file could not be written) drops the message and removes its file.
    pub(crate) fn on_chunk(&mut self, chunk: &Chunk) -> io::Result<Option<Arrival>> {
        // Without a Message-ID nothing can join the chunk to others: the chunk (with its
        // segments, which share the transaction) is a message of its own.
        let message_id =
            chunk.message_id().map_or_else(|| format!("no-message-id-{}", chunk.transaction_id), str::to_owned);
        if self.done.contains(&message_id) {
            return Ok(None);
        }
        if chunk.data.is_empty() && !self.open.contains_key(&message_id) && chunk.contflag != ContinuationFlag::Abort {
            // An empty SEND (binding, keepalive) is no message.
            return Ok(None);
        }
        if chunk.contflag == ContinuationFlag::Abort {
            let Some(partial) = self.open.remove(&message_id) else { return Ok(None) };
            let size = partial.received();
            partial.discard();
            self.remember(&message_id);
            return Ok(Some(Arrival::Aborted { message_id, size }));
        }
        if !self.open.contains_key(&message_id) {
            if self.open.len() >= self.limits.max_open {
                self.remember(&message_id);
                let reason = format!("more than {} messages in progress at once", self.limits.max_open);
                return Ok(Some(Arrival::Skipped { message_id, status: 413, reason }));
            }
            let partial = self.start(&message_id, chunk)?;
            self.open.insert(message_id.clone(), partial);
        }
        let Some(partial) = self.open.get_mut(&message_id) else { return Ok(None) };
        let outcome = match partial.take(chunk, self.limits.max_size) {
            Ok(outcome) => outcome,
            Err(Refusal::Skip(status, reason)) => {
                self.drop_message(&message_id);
                return Ok(Some(Arrival::Skipped { message_id, status, reason }));
            }
            Err(Refusal::Io(error)) => {
                self.drop_message(&message_id);
                return Err(error);
            }
        };
        let Some(length) = outcome else { return Ok(None) };
        let Some(mut partial) = self.open.remove(&message_id) else { return Ok(None) };
        self.remember(&message_id);
        match partial.finish(&message_id, length) {
            Ok(received) => Ok(Some(Arrival::Complete(received))),
            Err(error) => {
                partial.discard();
                Err(error)
            }
        }
    }

    /// Gives up the messages still incomplete (the session ended): their partial files
    /// are removed. Returns their Message-IDs and bytes received.
    pub(crate) fn abandon(&mut self) -> Vec<(String, u64)> {
        let mut left: Vec<_> = self.open.drain().collect();
        left.sort_by(|a, b| a.0.cmp(&b.0));
        left.into_iter()
            .map(|(message_id, partial)| {
                let size = partial.received();
                partial.discard();
                (message_id, size)
            })
            .collect()
    }

    fn drop_message(&mut self, message_id: &str) {
        if let Some(partial) = self.open.remove(message_id) {
            partial.discard();
        }
        self.remember(message_id);
    }

    fn remember(&mut self, message_id: &str) {
        if self.done.len() >= REMEMBERED {
            self.done.pop_front();
        }
        self.done.push_back(message_id.to_owned());
    }

    fn start(&self, message_id: &str, chunk: &Chunk) -> io::Result<Partial> {
        let content_type = chunk.content_type().map(str::to_owned);
        let is_text = content_type.as_deref().is_some_and(|kind| kind.trim().to_ascii_lowercase().starts_with("text/"));
        let file = match &self.out_dir {
            Some(dir) => {
                let suggested = chunk
                    .headers
                    .get(&HeaderName::ContentDisposition)
                    .and_then(|value| disposition_filename(value.as_str()));
                let extension = if is_text { "txt" } else { "bin" };
                let fallback = format!("msrp-{}.{extension}", sanitize(message_id));
                let name = suggested.map(|name| sanitize(&name)).filter(|name| !name.is_empty()).unwrap_or(fallback);
                Some(create_unique(dir, &name)?)
            }
            None => None,
        };
        Ok(Partial {
            content_type,
            file,
            coverage: Coverage::default(),
            announced: None,
            fixed: None,
            hasher: Sha256::new(),
            hashed: 0,
            head: Vec::new(),
            is_text,
        })
    }
}

/// Why a chunk was not taken.
enum Refusal {
    /// The message is given up: the MSRP status for the sender, and the reason.
    Skip(u16, String),
    /// Writing failed.
    Io(io::Error),
}

impl From<io::Error> for Refusal {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

impl Partial {
    /// Writes and hashes `chunk`'s data at its place. Returns the message length once
    /// every byte of it is present.
    fn take(&mut self, chunk: &Chunk, max_size: u64) -> Result<Option<u64>, Refusal> {
        if self.content_type.is_none() {
            self.content_type = chunk.content_type().map(str::to_owned);
        }
        let range = chunk.byte_range();
        if range.is_none() && chunk.headers.get(&HeaderName::ByteRange).is_some() {
            return Err(Refusal::Skip(400, "a chunk has an invalid Byte-Range".to_owned()));
        }
        let first = range.map_or(1, |range| range.start);
        if first == 0 {
            return Err(Refusal::Skip(400, "a chunk starts at byte 0".to_owned()));
        }
        let data = &chunk.data[..];
        let len = data.len() as u64;
        // Positions come from the bytes received (RFC 4975 §7.3.1).
        let end = (first - 1).saturating_add(len);
        let last = (len > 0).then_some(end);
        let total = range.and_then(|range| range.total);
        if self.announced.is_none() && self.fixed.is_none() {
            self.announced = total;
        }
        // Every chunk, the `$` one too, stays within the length known before it (the
        // first total announced, or the `$` chunk's end) and within its own total. Only
        // the `$` chunk may end before bytes already present (they are cut off).
        let known = self.fixed.or(self.announced);
        if let Some(last) = last {
            let past = [known, total].into_iter().flatten().find(|&length| last > length);
            if let Some(length) = past.filter(|_| last <= max_size) {
                return Err(Refusal::Skip(400, format!("a chunk reaches byte {last} of a {length}-byte message")));
            }
        }
        if chunk.contflag == ContinuationFlag::End {
            self.fixed = Some(end);
        }
        let length = self.fixed.or(self.announced);
        if length.is_some_and(|length| length > max_size) || last.is_some_and(|last| last > max_size) {
            return Err(Refusal::Skip(413, format!("larger than the limit of {max_size} bytes")));
        }
        if let Some((_, file)) = &mut self.file {
            file.seek(SeekFrom::Start(first - 1))?;
            file.write_all(data)?;
        }
        self.hash(first - 1, data);
        self.keep_head(first - 1, data);
        let complete = self.coverage.record_range(first, last, length, self.fixed.is_some());
        if self.coverage.fragments() > MAX_FRAGMENTS {
            return Err(Refusal::Skip(413, format!("scattered in more than {MAX_FRAGMENTS} pieces")));
        }
        Ok(complete)
    }

    /// Feeds the hasher the bytes that continue what it has; bytes rewriting what it has
    /// already seen make it start over (from the file, at the end).
    fn hash(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if offset < self.hashed {
            self.hasher = Sha256::new();
            self.hashed = 0;
        } else if offset == self.hashed {
            self.hasher.update(data);
            self.hashed += data.len() as u64;
        }
    }

    /// Keeps the bytes within the message's first [`HEAD`].
    fn keep_head(&mut self, offset: u64, data: &[u8]) {
        let Ok(offset) = usize::try_from(offset) else { return };
        if offset >= HEAD {
            return;
        }
        let take = data.len().min(HEAD - offset);
        if self.head.len() < offset + take {
            self.head.resize(offset + take, 0);
        }
        self.head[offset..offset + take].copy_from_slice(&data[..take]);
    }

    /// Bytes that have arrived.
    fn received(&self) -> u64 {
        self.coverage.ranges().map(|(first, last)| last - first + 1).sum()
    }

    /// The whole message of `length` bytes: its file cut to `length`, its hash finished.
    /// On failure the file is still there, to be discarded.
    fn finish(&mut self, message_id: &str, length: u64) -> io::Result<Received> {
        self.finish_file(length)?;
        let head = usize::try_from(length).ok().filter(|&length| length <= HEAD).map(|length| &self.head[..length]);
        // With a file, `finish_file` hashed the rest: `hashed == length`.
        let sha256 = if self.hashed == length {
            Some(self.hasher.clone().finalize().into())
        } else {
            head.map(|head| Sha256::digest(head).into())
        };
        let text = head.filter(|_| self.is_text).map(|head| String::from_utf8_lossy(head).into_owned());
        let file = self.file.take().map(|(path, _)| path);
        Ok(Received {
            message_id: message_id.to_owned(),
            content_type: self.content_type.take().unwrap_or_default(),
            size: length,
            sha256,
            file,
            text,
        })
    }

    /// Cuts the file to `length` (an earlier chunk may have run past the `$` chunk's end),
    /// flushes it and hashes what the hasher has not seen, read back from the file.
    fn finish_file(&mut self, length: u64) -> io::Result<()> {
        let Some((_, file)) = &mut self.file else { return Ok(()) };
        file.set_len(length)?;
        file.flush()?;
        // On disk, not only in the OS's cache: its success REPORT follows.
        file.sync_data()?;
        if self.hashed > length {
            self.hasher = Sha256::new();
            self.hashed = 0;
        }
        if self.hashed < length {
            file.seek(SeekFrom::Start(self.hashed))?;
            let mut buffer = vec![0_u8; 256 * 1024];
            let mut reader = file.take(length - self.hashed);
            loop {
                let n = reader.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                self.hasher.update(&buffer[..n]);
                self.hashed += n as u64;
            }
            if self.hashed != length {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the saved file is shorter than the message"));
            }
        }
        Ok(())
    }

    fn discard(self) {
        if let Some((path, file)) = self.file {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The `filename` parameter of a Content-Disposition value.
pub(crate) fn disposition_filename(value: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim().eq_ignore_ascii_case("filename").then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// A name safe to create in the output folder: no folders, no leading dots, no odd
/// characters.
fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+') { c } else { '_' })
        .collect();
    cleaned.trim_start_matches('.').chars().take(200).collect()
}

/// Creates `name` in `dir`, or `stem-1.ext`, `stem-2.ext`, … when it exists.
fn create_unique(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => (stem, Some(extension)),
        _ => (name, None),
    };
    for attempt in 0..10_000_u32 {
        let candidate = match (attempt, extension) {
            (0, _) => name.to_owned(),
            (n, Some(extension)) => format!("{stem}-{n}.{extension}"),
            (n, None) => format!("{stem}-{n}"),
        };
        let path = dir.join(candidate);
        match File::options().read(true).write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => {
                return Err(io::Error::new(error.kind(), format!("cannot create {}: {error}", path.display())));
            }
        }
    }
    Err(io::Error::other(format!("no free name for {name} in {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use msrp_tokio::core::Method;
    use msrp_tokio::core::header::{ByteRange, MessageId};

    use ContinuationFlag::{Abort, End, More};

    fn chunk(message_id: &str, data: &[u8], start: u64, total: Option<u64>, flag: ContinuationFlag) -> Chunk {
        let mut chunk = Chunk::request("t1", Method::Send);
        chunk.add_header(&MessageId(message_id.to_owned()));
        let end = (!data.is_empty()).then(|| start + data.len() as u64 - 1);
        chunk.add_header(&ByteRange::new(start, end, total));
        chunk.headers.set(HeaderName::ContentType, "text/plain");
        chunk.data = Bytes::copy_from_slice(data);
        chunk.contflag = flag;
        chunk
    }

    /// A fresh folder for one test.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("msrp-inbox-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn files(&self) -> usize {
            std::fs::read_dir(&self.0).unwrap().count()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn complete(arrival: Option<Arrival>) -> Received {
        match arrival {
            Some(Arrival::Complete(message)) => message,
            other => panic!("expected a whole message, got {other:?}"),
        }
    }

    #[test]
    fn chunks_in_order_make_a_message_with_its_hash() {
        let mut inbox = Inbox::new(None, Limits::default());
        assert!(inbox.on_chunk(&chunk("m", b"Hello ", 1, Some(12), More)).unwrap().is_none());
        let message = complete(inbox.on_chunk(&chunk("m", b"world!", 7, Some(12), End)).unwrap());
        assert_eq!(message.size, 12);
        assert_eq!(message.text.as_deref(), Some("Hello world!"));
        assert_eq!(message.sha256, Some(Sha256::digest(b"Hello world!").into()));
    }

    #[test]
    fn chunks_out_of_order_are_written_in_place_and_hashed() {
        let dir = Dir::new("order");
        let mut inbox = Inbox::new(Some(dir.0.clone()), Limits::default());
        assert!(inbox.on_chunk(&chunk("m2", b"world!", 7, Some(12), End)).unwrap().is_none(), "bytes 1-6 missing");
        let message = complete(inbox.on_chunk(&chunk("m2", b"Hello ", 1, Some(12), More)).unwrap());
        let path = message.file.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"Hello world!");
        assert_eq!(message.sha256, Some(Sha256::digest(b"Hello world!").into()));
        assert_eq!(message.text.as_deref(), Some("Hello world!"));
        // Without a file the first bytes are kept, so a short message is hashed too.
        let mut inbox = Inbox::new(None, Limits::default());
        assert!(inbox.on_chunk(&chunk("m3", b"world!", 7, None, End)).unwrap().is_none());
        let message = complete(inbox.on_chunk(&chunk("m3", b"Hello ", 1, None, More)).unwrap());
        assert_eq!(message.sha256, Some(Sha256::digest(b"Hello world!").into()));
    }

    #[test]
    fn a_gap_keeps_the_message_open_and_the_session_end_removes_it() {
        let dir = Dir::new("gap");
        let mut inbox = Inbox::new(Some(dir.0.clone()), Limits::default());
        assert!(inbox.on_chunk(&chunk("gap1", b"abc", 1, None, More)).unwrap().is_none());
        // The `$` chunk comes with bytes 4-6 missing: not complete.
        assert!(inbox.on_chunk(&chunk("gap1", b"ghi", 7, None, End)).unwrap().is_none());
        assert_eq!(inbox.abandon(), [("gap1".to_owned(), 6)]);
        assert_eq!(dir.files(), 0, "the partial file is removed");
    }

    #[test]
    fn a_chunk_after_the_end_chunk_completes_the_same_message() {
        let dir = Dir::new("late");
        let mut inbox = Inbox::new(Some(dir.0.clone()), Limits::default());
        assert!(inbox.on_chunk(&chunk("late", b"abc", 1, None, More)).unwrap().is_none());
        assert!(inbox.on_chunk(&chunk("late", b"ghi", 7, None, End)).unwrap().is_none());
        let message = complete(inbox.on_chunk(&chunk("late", b"def", 4, None, More)).unwrap());
        assert_eq!(message.size, 9);
        assert_eq!(std::fs::read(message.file.unwrap()).unwrap(), b"abcdefghi");
        assert_eq!(message.sha256, Some(Sha256::digest(b"abcdefghi").into()));
        assert_eq!(dir.files(), 1, "one file, no second partial one");
        // A stray copy of a chunk of the finished message starts nothing.
        assert!(inbox.on_chunk(&chunk("late", b"def", 4, None, More)).unwrap().is_none());
        assert!(inbox.abandon().is_empty());
    }

    #[test]
    fn an_earlier_chunk_past_the_end_is_cut_off() {
        let dir = Dir::new("cut");
        let mut inbox = Inbox::new(Some(dir.0.clone()), Limits::default());
        assert!(inbox.on_chunk(&chunk("cut1", b"abcdefXYZ", 1, None, More)).unwrap().is_none());
        let message = complete(inbox.on_chunk(&chunk("cut1", b"DEF", 4, None, End)).unwrap());
        assert_eq!(message.size, 6);
        assert_eq!(std::fs::read(message.file.unwrap()).unwrap(), b"abcDEF");
        assert_eq!(message.sha256, Some(Sha256::digest(b"abcDEF").into()));
    }

    #[test]
    fn an_empty_end_chunk_far_out_does_not_complete_a_short_message() {
        let mut inbox = Inbox::new(None, Limits::default());
        assert!(inbox.on_chunk(&chunk("far1", b"abc", 1, None, More)).unwrap().is_none());
        // `$` with no body at byte 101: the message is 100 bytes, 97 of them missing.
        assert!(inbox.on_chunk(&chunk("far1", b"", 101, None, End)).unwrap().is_none());
        assert_eq!(inbox.abandon(), [("far1".to_owned(), 3)]);
    }

    #[test]
    fn the_announced_total_alone_completes_a_message() {
        let mut inbox = Inbox::new(None, Limits::default());
        assert!(inbox.on_chunk(&chunk("tot1", b"def", 4, Some(6), More)).unwrap().is_none());
        let message = complete(inbox.on_chunk(&chunk("tot1", b"abc", 1, Some(6), More)).unwrap());
        assert_eq!((message.size, message.text.as_deref()), (6, Some("abcdef")));
    }

    #[test]
    fn positions_past_the_total_or_the_limit_skip_the_message() {
        let dir = Dir::new("limits");
        let limits = Limits { max_size: 1000, max_open: 2 };
        let mut inbox = Inbox::new(Some(dir.0.clone()), limits);
        inbox.on_chunk(&chunk("over1", b"abc", 1, Some(10), More)).unwrap();
        // The first chunk announced 10 bytes; this one has no total, and goes past 10.
        let arrival = inbox.on_chunk(&chunk("over1", b"abc", 9, None, More)).unwrap();
        assert!(matches!(&arrival, Some(Arrival::Skipped { reason, .. }) if reason.contains("byte 11")), "{arrival:?}");
        assert_eq!(dir.files(), 0);
        assert!(inbox.on_chunk(&chunk("over1", b"d", 4, Some(10), More)).unwrap().is_none(), "ignored from now on");
        // A total, or a position, past --max-size: no 1 TB sparse file.
        let arrival = inbox.on_chunk(&chunk("huge1", b"x", 1, Some(1 << 40), More)).unwrap();
        assert!(matches!(arrival, Some(Arrival::Skipped { .. })), "{arrival:?}");
        let arrival = inbox.on_chunk(&chunk("huge2", b"x", 1 << 40, None, More)).unwrap();
        assert!(matches!(arrival, Some(Arrival::Skipped { .. })), "{arrival:?}");
        assert_eq!(dir.files(), 0);
        assert!(inbox.abandon().is_empty());
    }

    /// Issue 12 §3 "a `$` chunk past the announced total": the length the first chunk
    /// announced binds every later chunk, the `$` one too (R4975-7.3.1: a Byte-Range
    /// total is the message's length), and each chunk's own total binds it.
    #[test]
    fn issue12_a_final_chunk_past_the_announced_total_skips_the_message() {
        let dir = Dir::new("past-total");
        let mut inbox = Inbox::new(Some(dir.0.clone()), Limits::default());
        assert!(inbox.on_chunk(&chunk("end1", b"abc", 1, Some(5), More)).unwrap().is_none());
        let arrival = inbox.on_chunk(&chunk("end1", b"defgh", 4, None, End)).unwrap();
        assert!(
            matches!(&arrival, Some(Arrival::Skipped { status: 400, reason, .. }) if reason == "a chunk reaches byte 8 of a 5-byte message"),
            "{arrival:?}"
        );
        assert_eq!(dir.files(), 0, "the partial file is removed");
        // A `$` chunk (`4-*/6`) whose bytes run past its own total, on a message with no
        // total before it.
        assert!(inbox.on_chunk(&chunk("end2", b"abc", 1, None, More)).unwrap().is_none());
        let mut past_own_total = chunk("end2", b"defgh", 4, None, End);
        past_own_total.headers.set(HeaderName::ByteRange, "4-*/6");
        let arrival = inbox.on_chunk(&past_own_total).unwrap();
        assert!(matches!(&arrival, Some(Arrival::Skipped { reason, .. }) if reason.contains("byte 8 of a 6-byte")));
        // A `$` chunk that ends exactly at the total is the message.
        inbox.on_chunk(&chunk("end3", b"abc", 1, Some(5), More)).unwrap();
        let message = complete(inbox.on_chunk(&chunk("end3", b"de", 4, None, End)).unwrap());
        assert_eq!(message.size, 5);
        assert!(inbox.abandon().is_empty());
    }

    #[test]
    fn messages_beyond_the_open_limit_are_skipped() {
        let mut inbox = Inbox::new(None, Limits { max_size: 1000, max_open: 2 });
        inbox.on_chunk(&chunk("open1", b"a", 1, None, More)).unwrap();
        inbox.on_chunk(&chunk("open2", b"a", 1, None, More)).unwrap();
        let arrival = inbox.on_chunk(&chunk("open3", b"a", 1, None, More)).unwrap();
        assert!(matches!(&arrival, Some(Arrival::Skipped { message_id, .. }) if message_id == "open3"), "{arrival:?}");
        // Once one ends, there is room again.
        complete(inbox.on_chunk(&chunk("open1", b"b", 2, None, End)).unwrap());
        assert!(inbox.on_chunk(&chunk("open4", b"a", 1, None, More)).unwrap().is_none());
        assert_eq!(inbox.abandon().len(), 2);
    }

    #[test]
    fn a_send_without_message_id_is_a_message_of_its_own() {
        let mut inbox = Inbox::new(None, Limits::default());
        let mut lone = Chunk::request("tx9", Method::Send);
        lone.headers.set(HeaderName::ContentType, "text/plain");
        lone.data = Bytes::from_static(b"hi");
        let message = complete(inbox.on_chunk(&lone).unwrap());
        assert_eq!(message.message_id, "no-message-id-tx9");
        assert_eq!(message.text.as_deref(), Some("hi"));
    }

    #[test]
    fn an_aborted_message_leaves_no_file() {
        let dir = Dir::new("abort");
        let mut inbox = Inbox::new(Some(dir.0.clone()), Limits::default());
        inbox.on_chunk(&chunk("m3", b"part", 1, Some(100), More)).unwrap();
        let arrival = inbox.on_chunk(&chunk("m3", b"more", 5, Some(100), Abort)).unwrap();
        assert!(matches!(arrival, Some(Arrival::Aborted { size: 4, .. })), "{arrival:?}");
        assert_eq!(dir.files(), 0);
    }

    #[test]
    fn file_names_from_the_peer_stay_inside_the_folder() {
        assert_eq!(
            disposition_filename("attachment; filename=\"../../etc/passwd\"").as_deref(),
            Some("../../etc/passwd")
        );
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize("..hidden"), "hidden");
        assert_eq!(sanitize("a b\u{e9}.txt"), "a_b_.txt");
        assert_eq!(disposition_filename("inline"), None);
    }
}
