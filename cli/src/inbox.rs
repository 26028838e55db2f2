//! Incoming messages, chunk by chunk: each chunk's data is hashed (SHA-256) and, with an
//! output folder, written to its file as it arrives, so no message is ever held whole in
//! memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use msrp_core::header::HeaderName;
use msrp_core::{Chunk, ContinuationFlag};
use sha2::{Digest, Sha256};

/// Text bodies up to this size are kept to be shown.
const TEXT_SHOWN: usize = 4096;

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
    /// The peer aborted a message (`#`); its partial file is removed.
    Aborted { message_id: String, size: u64 },
}

/// A message being received.
struct Partial {
    content_type: Option<String>,
    file: Option<(PathBuf, File)>,
    /// Where the file's cursor is.
    file_position: u64,
    hasher: Sha256,
    /// Bytes fed to the hasher: the message's first `hashed` bytes, in order.
    hashed: u64,
    /// Whether every chunk so far started where the previous one ended.
    in_order: bool,
    /// The end of the furthest chunk.
    end: u64,
    text: Option<Vec<u8>>,
}

/// The messages being received on one session.
pub(crate) struct Inbox {
    out_dir: Option<PathBuf>,
    open: HashMap<String, Partial>,
}

impl Inbox {
    /// Saves every message under `out_dir` when given.
    pub(crate) fn new(out_dir: Option<PathBuf>) -> Self {
        Self { out_dir, open: HashMap::new() }
    }

    /// Takes an incoming SEND chunk (or segment of one); returns what it completed.
    pub(crate) fn on_chunk(&mut self, chunk: &Chunk) -> io::Result<Option<Arrival>> {
        let Some(message_id) = chunk.message_id() else { return Ok(None) };
        if chunk.data.is_empty() && !self.open.contains_key(message_id) {
            // An empty SEND (binding, keepalive) is no message.
            return Ok(None);
        }
        if !self.open.contains_key(message_id) {
            let partial = self.start(message_id, chunk)?;
            self.open.insert(message_id.to_owned(), partial);
        }
        let Some(partial) = self.open.get_mut(message_id) else { return Ok(None) };
        if partial.content_type.is_none() {
            partial.content_type = chunk.content_type().map(str::to_owned);
        }
        let position = chunk.byte_range().map_or(partial.end, |range| range.start.saturating_sub(1));
        partial.take(position, &chunk.data)?;
        match chunk.contflag {
            ContinuationFlag::More => Ok(None),
            ContinuationFlag::End => {
                let partial = self.open.remove(message_id).ok_or_else(|| io::Error::other("message vanished"))?;
                Ok(Some(Arrival::Complete(partial.finish(message_id)?)))
            }
            ContinuationFlag::Abort => {
                let partial = self.open.remove(message_id).ok_or_else(|| io::Error::other("message vanished"))?;
                let size = partial.end;
                partial.discard();
                Ok(Some(Arrival::Aborted { message_id: message_id.to_owned(), size }))
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
                let size = partial.end;
                partial.discard();
                (message_id, size)
            })
            .collect()
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
            file_position: 0,
            hasher: Sha256::new(),
            hashed: 0,
            in_order: true,
            end: 0,
            text: is_text.then(Vec::new),
        })
    }
}

impl Partial {
    /// Writes and hashes `data`, which starts at `position` in the message.
    fn take(&mut self, position: u64, data: &[u8]) -> io::Result<()> {
        let len = data.len() as u64;
        if let Some((_, file)) = &mut self.file {
            if position != self.file_position {
                file.seek(SeekFrom::Start(position))?;
            }
            file.write_all(data)?;
            self.file_position = position + len;
        }
        if self.in_order && position == self.hashed {
            self.hasher.update(data);
            self.hashed += len;
            if let Some(text) = &mut self.text {
                let room = TEXT_SHOWN.saturating_sub(text.len());
                if room >= data.len() {
                    text.extend_from_slice(data);
                } else {
                    // Too long to show.
                    self.text = None;
                }
            }
        } else if !data.is_empty() {
            self.in_order = false;
            self.text = None;
        }
        self.end = self.end.max(position + len);
        Ok(())
    }

    fn finish(self, message_id: &str) -> io::Result<Received> {
        let size = self.end;
        let mut file_path = None;
        let sha256 = match self.file {
            Some((path, mut file)) => {
                file.flush()?;
                let digest = if self.in_order { self.hasher.finalize().into() } else { hash_file(&mut file)? };
                file_path = Some(path);
                Some(digest)
            }
            None => self.in_order.then(|| self.hasher.finalize().into()),
        };
        Ok(Received {
            message_id: message_id.to_owned(),
            content_type: self.content_type.unwrap_or_default(),
            size,
            sha256,
            file: file_path,
            text: self.text.map(|text| String::from_utf8_lossy(&text).into_owned()),
        })
    }

    fn discard(self) {
        if let Some((path, file)) = self.file {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The SHA-256 of a whole file, read from its start.
fn hash_file(file: &mut File) -> io::Result<[u8; 32]> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buffer[..n]);
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
    use msrp_core::Method;
    use msrp_core::header::{ByteRange, MessageId};

    fn chunk(message_id: &str, data: &'static [u8], start: u64, total: u64, flag: ContinuationFlag) -> Chunk {
        let mut chunk = Chunk::request("t1", Method::Send);
        chunk.add_header(&MessageId(message_id.to_owned()));
        chunk.add_header(&ByteRange::new(start, Some(start + data.len() as u64 - 1), Some(total)));
        chunk.headers.set(HeaderName::ContentType, "text/plain");
        chunk.data = Bytes::from_static(data);
        chunk.contflag = flag;
        chunk
    }

    #[test]
    fn chunks_in_order_make_a_message_with_its_hash() {
        let mut inbox = Inbox::new(None);
        assert!(inbox.on_chunk(&chunk("m", b"Hello ", 1, 12, ContinuationFlag::More)).unwrap().is_none());
        let Some(Arrival::Complete(message)) =
            inbox.on_chunk(&chunk("m", b"world!", 7, 12, ContinuationFlag::End)).unwrap()
        else {
            panic!("expected a whole message");
        };
        assert_eq!(message.size, 12);
        assert_eq!(message.text.as_deref(), Some("Hello world!"));
        assert_eq!(message.sha256, Some(Sha256::digest(b"Hello world!").into()));
    }

    #[test]
    fn chunks_out_of_order_are_written_in_place_and_hashed_from_the_file() {
        let dir = std::env::temp_dir().join(format!("msrp-inbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut inbox = Inbox::new(Some(dir.clone()));
        assert!(inbox.on_chunk(&chunk("m2", b"world!", 7, 12, ContinuationFlag::More)).unwrap().is_none());
        let Some(Arrival::Complete(message)) =
            inbox.on_chunk(&chunk("m2", b"Hello ", 1, 12, ContinuationFlag::End)).unwrap()
        else {
            panic!("expected a whole message");
        };
        let path = message.file.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"Hello world!");
        assert_eq!(message.sha256, Some(Sha256::digest(b"Hello world!").into()));
        assert_eq!(message.text, None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_aborted_message_leaves_no_file() {
        let dir = std::env::temp_dir().join(format!("msrp-inbox-abort-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut inbox = Inbox::new(Some(dir.clone()));
        inbox.on_chunk(&chunk("m3", b"part", 1, 100, ContinuationFlag::More)).unwrap();
        let arrival = inbox.on_chunk(&chunk("m3", b"more", 5, 100, ContinuationFlag::Abort)).unwrap();
        assert!(matches!(arrival, Some(Arrival::Aborted { size: 8, .. })), "{arrival:?}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
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
