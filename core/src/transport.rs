//! The protocol state of one bound MSRP session on a connection (msrplib's
//! `MSRPTransport`, minus the socket): the two paths, id generation, and the RFC 4975
//! rules for building requests, responses and REPORTs and for accepting a SEND.
//!
//! Nothing here does I/O: the adapters write what these functions build.

use bytes::Bytes;
use thiserror::Error;

use crate::chunk::{Chunk, ContinuationFlag, Method};
use crate::header::{ByteRange, FailureReport, FromPath, Header, HeaderName, MessageId, Status, SuccessReport, ToPath};
use crate::ids::IdGenerator;
use crate::uri::Uri;

/// Chunks whose body is larger than this must be interruptible: their Byte-Range end is `*`
/// (RFC 4975 §5.1).
pub const MAX_UNINTERRUPTIBLE_BODY: usize = 2048;

/// An MSRP status with its comment: the reason a request failed, as sent in a response or
/// a REPORT (msrplib's `MSRPError`).
#[doc(alias = "MSRPError")]
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code} {comment}")]
pub struct MsrpError {
    /// The status code (e.g. 481).
    pub code: u16,
    /// The reason phrase.
    pub comment: String,
}

impl MsrpError {
    /// An error with this code and comment.
    pub fn new(code: u16, comment: impl Into<String>) -> Self {
        Self { code, comment: comment.into() }
    }
}

/// What [`Transport::make_chunk`] builds; every field has msrplib's default.
#[derive(Debug, Clone)]
pub struct ChunkParams {
    /// The transaction id; a fresh random one when `None`.
    pub transaction_id: Option<String>,
    /// The request method (default SEND); `None` with a `code` for a response.
    pub method: Option<Method>,
    /// The status code of a response.
    pub code: Option<u16>,
    /// The comment of a response.
    pub comment: Option<String>,
    /// The body.
    pub data: Bytes,
    /// The continuation flag; when `None`, `$` if this chunk carries the end of the
    /// message (`end == length`), `+` otherwise.
    pub contflag: Option<ContinuationFlag>,
    /// Position of the first body byte in the message, from 1.
    pub start: u64,
    /// Position of the last body byte; by default `start - 1 + data.len()`, or `*` when the
    /// body is over 2048 bytes (such a chunk must be interruptible, RFC 4975 §5.1).
    pub end: Option<u64>,
    /// The size of the whole message; by default `start - 1 + data.len()` (this chunk
    /// ends the message).
    pub length: Option<u64>,
    /// The Message-ID; a fresh random one when `None`.
    pub message_id: Option<String>,
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self {
            transaction_id: None,
            method: Some(Method::Send),
            code: None,
            comment: None,
            data: Bytes::new(),
            contflag: None,
            start: 1,
            end: None,
            length: None,
            message_id: None,
        }
    }
}

/// One session bound on a connection: its full local path (own URI last), the peer's full
/// path (peer URI last), and the ids it makes.
#[doc(alias = "MSRPTransport")]
#[derive(Debug, Clone)]
pub struct Transport {
    local_path: Vec<Uri>,
    remote_path: Vec<Uri>,
    use_sessmatch: bool,
    ids: IdGenerator,
    /// The remote path as written in To-Path, formatted once rather than per chunk.
    to_path_text: String,
    /// This side's URI as written in From-Path.
    from_path_text: String,
}

impl Transport {
    /// A transport between `local_path` and `remote_path`; both must hold at least one URI
    /// (the last is the session's own URI on each side). With `use_sessmatch`, incoming
    /// paths are matched by session id only.
    pub fn new(
        local_path: Vec<Uri>,
        remote_path: Vec<Uri>,
        ids: IdGenerator,
        use_sessmatch: bool,
    ) -> Result<Self, MsrpError> {
        if local_path.is_empty() || remote_path.is_empty() {
            return Err(MsrpError::new(400, "a path holds at least one URI"));
        }
        let to_path_text = ToPath(remote_path.clone()).encode();
        let from_path_text = local_path[local_path.len() - 1].to_string();
        Ok(Self { local_path, remote_path, use_sessmatch, ids, to_path_text, from_path_text })
    }

    /// Replaces the relays at the front of both paths: `old` (nearest relay first) by
    /// `new`, where the remote path starts with `old` (RFC 4976 §5.1: To-Path is our
    /// relays' Use-Path, then the peer's path) and the local path ends its relays with
    /// `old` reversed (the SDP path). For a relay that grants another Use-Path on a
    /// refresh. Returns whether anything changed.
    pub fn replace_relay_path(&mut self, old: &[Uri], new: &[Uri]) -> bool {
        let own_relays = self.local_path.len() - 1;
        let reversed: Vec<Uri> = old.iter().rev().cloned().collect();
        if old == new || !self.remote_path.starts_with(old) || self.local_path[..own_relays] != reversed[..] {
            return false;
        }
        let peer = self.remote_path.split_off(old.len());
        self.remote_path = new.iter().cloned().chain(peer).collect();
        let own = self.local_path.split_off(own_relays);
        self.local_path = new.iter().rev().cloned().chain(own).collect();
        self.to_path_text = ToPath(self.remote_path.clone()).encode();
        true
    }

    /// This side's session URI (the last of the local path).
    pub fn local_uri(&self) -> &Uri {
        &self.local_path[self.local_path.len() - 1]
    }

    /// The peer's session URI (the last of the remote path).
    pub fn remote_uri(&self) -> &Uri {
        &self.remote_path[self.remote_path.len() - 1]
    }

    /// The full local path, as put in SDP.
    pub fn local_path(&self) -> &[Uri] {
        &self.local_path
    }

    /// The full remote path: the To-Path of every request (RFC 4975 §7.1).
    pub fn remote_path(&self) -> &[Uri] {
        &self.remote_path
    }

    /// The id generator, for callers that need more ids from the same seeded stream.
    pub fn ids(&mut self) -> &mut IdGenerator {
        &mut self.ids
    }

    /// Builds a request or response with To-Path, From-Path and, for SEND, Message-ID and
    /// Byte-Range, from the transport's state and `params` (msrplib `make_chunk`). The
    /// caller adds Content-Type and any other header.
    pub fn make_chunk(&mut self, params: ChunkParams) -> Chunk {
        let transaction_id = params.transaction_id.unwrap_or_else(|| self.ids.transaction_id());
        let mut chunk = match (params.method, params.code) {
            (_, Some(code)) => Chunk::response(transaction_id, code, params.comment),
            (Some(method), None) => Chunk::request(transaction_id, method),
            (None, None) => Chunk::request(transaction_id, Method::Send),
        };
        chunk.headers.set(HeaderName::ToPath, self.to_path_text.as_str());
        chunk.headers.set(HeaderName::FromPath, self.from_path_text.as_str());
        let len = params.data.len() as u64;
        let last = params.start.saturating_sub(1) + len;
        let end = params.end.or((params.data.len() <= MAX_UNINTERRUPTIBLE_BODY).then_some(last));
        let length = params.length.unwrap_or(last);
        if chunk.method() == Some(&Method::Send) {
            let message_id = params.message_id.unwrap_or_else(|| self.ids.message_id());
            chunk.add_header(&MessageId(message_id));
            chunk.add_header(&ByteRange::new(params.start.max(1), end, Some(length)));
        } else if let Some(message_id) = params.message_id {
            chunk.add_header(&MessageId(message_id));
        }
        let ends_message = end.unwrap_or(last) >= length;
        chunk.contflag =
            params.contflag.unwrap_or(if ends_message { ContinuationFlag::End } else { ContinuationFlag::More });
        chunk.data = params.data;
        chunk
    }

    /// The response to `request` with `code` and `comment`, built by RFC 4975 §7.2, or
    /// `None` when none may be sent: never to a REPORT or a response; never with
    /// `Failure-Report: no`; no 200 with `Failure-Report: partial`. To-Path is the
    /// previous hop (the first From-Path URI) for SEND, the whole From-Path otherwise.
    pub fn make_response(&self, request: &Chunk, code: u16, comment: Option<String>) -> Option<Chunk> {
        response_to(request, code, comment, &self.from_path_text)
    }

    /// A REPORT about `request` (a SEND) covering `range` with status `code`, built by
    /// RFC 4975 §7.1.3–7.1.4, or `None` when none may be sent: a success REPORT (200)
    /// only with `Success-Report: yes`, a failure REPORT only with `Failure-Report` yes or
    /// partial, and never about anything but a SEND.
    pub fn make_report(
        &mut self,
        request: &Chunk,
        code: u16,
        comment: Option<String>,
        range: ByteRange,
    ) -> Option<Chunk> {
        if request.method() != Some(&Method::Send) {
            return None;
        }
        let wanted = if code == 200 {
            request.success_report() == SuccessReport::Yes
        } else {
            request.failure_report() != FailureReport::No
        };
        if !wanted {
            return None;
        }
        let from = request.headers.get(&HeaderName::FromPath)?.clone();
        let mut report = Chunk::request(self.ids.transaction_id(), Method::Report);
        report.headers.set(HeaderName::ToPath, from);
        report.headers.set(HeaderName::FromPath, self.from_path_text.as_str());
        if let Some(message_id) = request.message_id() {
            report.headers.set(HeaderName::MessageId, message_id);
        }
        report.add_header(&range);
        report.add_header(&Status::new(code, comment));
        Some(report)
    }

    /// Checks the paths of an incoming SEND (msrplib `check_incoming_SEND_chunk`): To-Path
    /// must be exactly this session's URI (RFC 4975 §7.3), and the last From-Path URI the
    /// peer's; compared by RFC 4975 §6.1, or by session id with `use_sessmatch`. A
    /// mismatch is `481`.
    #[doc(alias = "check_incoming_SEND_chunk")]
    pub fn check_incoming_send_chunk(&self, chunk: &Chunk) -> Result<(), MsrpError> {
        let same = |a: &Uri, b: &Uri| if self.use_sessmatch { a.matches_session(b) } else { a == b };
        let no_session = |why: &str| Err(MsrpError::new(481, why));
        let Ok(ToPath(to)) = chunk.to_path() else { return no_session("Invalid To-Path") };
        let [to] = &to[..] else { return no_session("To-Path must hold exactly one URI") };
        if !same(to, self.local_uri()) {
            return no_session("Invalid To-Path");
        }
        let Ok(FromPath(from)) = chunk.from_path() else { return no_session("Invalid From-Path") };
        match from.last() {
            Some(last) if same(last, self.remote_uri()) => Ok(()),
            _ => no_session("Invalid From-Path"),
        }
    }
}

/// The response to `request` from the URI `from_path` (see [`Transport::make_response`]);
/// also used where no session exists yet to answer for (a 481 or 506 at binding).
pub(crate) fn response_to(request: &Chunk, code: u16, comment: Option<String>, from_path: &str) -> Option<Chunk> {
    let method = request.method()?;
    if *method == Method::Report {
        return None;
    }
    match request.failure_report() {
        FailureReport::No => return None,
        FailureReport::Partial if code == 200 => return None,
        FailureReport::Partial | FailureReport::Yes => {}
    }
    // The path is copied as written: a response costs no URI parsing.
    let from = request.headers.get(&HeaderName::FromPath)?.as_str();
    let to = if *method == Method::Send { from.split([' ', '\t']).find(|uri| !uri.is_empty())? } else { from };
    let mut response = Chunk::response(request.transaction_id.clone(), code, comment);
    response.headers.set(HeaderName::ToPath, to);
    response.headers.set(HeaderName::FromPath, from_path);
    Some(response)
}

/// The media types a session accepts (msrplib `accept_types`): exact types, `type/*` and
/// `*`, compared case-insensitively without parameters (RFC 4975 §8.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptTypes(Vec<String>);

impl AcceptTypes {
    /// From a list such as `["text/plain", "message/*"]`.
    pub fn new<S: AsRef<str>>(types: impl IntoIterator<Item = S>) -> Self {
        Self(types.into_iter().map(|t| essence(t.as_ref())).collect())
    }

    /// Everything (`*`), msrplib's default.
    pub fn any() -> Self {
        Self(vec!["*".to_owned()])
    }

    /// Whether a body of this Content-Type is accepted; a mismatch is answered with 415.
    pub fn accepts(&self, content_type: &str) -> bool {
        let wanted = essence(content_type);
        let kind = wanted.split('/').next().unwrap_or_default();
        self.0.iter().any(|accepted| {
            accepted == "*"
                || *accepted == wanted
                || accepted.strip_suffix("/*").is_some_and(|accepted_kind| accepted_kind == kind)
        })
    }
}

impl Default for AcceptTypes {
    fn default() -> Self {
        Self::any()
    }
}

/// `type/subtype` in lower case, without parameters.
fn essence(media_type: &str) -> String {
    media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::{Decoder, DecoderLimits};

    fn uri(text: &str) -> Uri {
        text.parse().expect("valid URI")
    }

    /// Bob's side of the RFC 4975 §11.6 example (also used by other modules' tests).
    pub(crate) fn transport() -> Transport {
        Transport::new(
            vec![uri("msrp://bob.example.com:8888/9di4eae923wzd;tcp")],
            vec![uri("msrp://alicepc.example.com:7777/iau39soe2843z;tcp")],
            IdGenerator::seed_from_u64(1),
            false,
        )
        .expect("paths")
    }

    fn vector(id: &str) -> Chunk {
        // The RFC example messages live in the repository, beside the test crate.
        let path = format!("{}/../tests/vectors/{id}.txt", env!("CARGO_MANIFEST_DIR"));
        let wire = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut decoder = Decoder::new(DecoderLimits::default());
        decoder.feed(wire.into());
        decoder.poll_chunk(None).expect("a chunk").expect("decodes")
    }

    // R4975-7.1-2, R4975-7.1.1-9, R4975-5.1-1: To-Path is the remote path, From-Path our URI;
    // an empty SEND is 1-0/0; a body over 2048 bytes is interruptible.
    #[test]
    fn make_chunk_defaults() {
        let mut transport = Transport::new(
            vec![uri("msrp://a.example.com:1/own;tcp")],
            vec![
                uri("msrp://r1.example.com:2/r;tcp"),
                uri("msrp://r2.example.com:3/r;tcp"),
                uri("msrp://b.example.com:4/b;tcp"),
            ],
            IdGenerator::seed_from_u64(2),
            false,
        )
        .expect("paths");
        let empty = transport.make_chunk(ChunkParams::default());
        assert_eq!(empty.to_path().expect("To-Path").0.len(), 3);
        assert_eq!(empty.from_path().expect("From-Path").0, vec![uri("msrp://a.example.com:1/own;tcp")]);
        assert_eq!(empty.byte_range(), Some(ByteRange::new(1, Some(0), Some(0))));
        assert_eq!(empty.contflag, ContinuationFlag::End);
        assert!(empty.message_id().is_some_and(|id| id.len() >= 11));
        empty.verify_headers().expect("valid");

        let big = transport.make_chunk(ChunkParams { data: Bytes::from(vec![b'x'; 5000]), ..ChunkParams::default() });
        assert_eq!(big.byte_range(), Some(ByteRange::new(1, None, Some(5000))));
        assert_eq!(big.contflag, ContinuationFlag::End);

        let first = transport.make_chunk(ChunkParams {
            data: Bytes::from_static(b"abcd"),
            length: Some(8),
            message_id: Some("4564dpWd".into()),
            ..ChunkParams::default()
        });
        assert_eq!(
            (first.byte_range(), first.contflag),
            (Some(ByteRange::new(1, Some(4), Some(8))), ContinuationFlag::More)
        );
        let second = transport.make_chunk(ChunkParams {
            data: Bytes::from_static(b"EFGH"),
            start: 5,
            message_id: Some("4564dpWd".into()),
            ..ChunkParams::default()
        });
        assert_eq!(
            (second.byte_range(), second.contflag),
            (Some(ByteRange::new(5, Some(8), Some(8))), ContinuationFlag::End)
        );
        assert_ne!(first.transaction_id, second.transaction_id);

        let response =
            transport.make_chunk(ChunkParams { code: Some(200), comment: Some("OK".into()), ..ChunkParams::default() });
        assert_eq!((response.code(), response.message_id(), response.byte_range()), (Some(200), None, None));
    }

    // R4975-7.2-2, R4975-7.2-3, R4975-7.1.4-2, R4975-7.1.4-3, R4975-7.1.2-2
    #[test]
    fn responses_follow_the_routing_and_report_rules() {
        let transport = transport();
        let send = vector("4975-F2-SEND");
        let ok = transport.make_response(&send, 200, Some("OK".into())).expect("a 200");
        assert_eq!(ok.transaction_id, send.transaction_id);
        assert_eq!(ok.to_path().expect("To-Path").0, send.from_path().expect("From-Path").0);
        assert_eq!(ok.from_path().expect("From-Path").0, vec![transport.local_uri().clone()]);
        ok.verify_headers().expect("valid response");

        let mut relayed = send.clone();
        relayed
            .headers
            .set(HeaderName::FromPath, "msrps://r1.example.com:9000/aa;tcp msrps://alice.example.com:7777/bb;tcp");
        let hop = transport.make_response(&relayed, 200, None).expect("a 200");
        assert_eq!(hop.to_path().expect("To-Path").0, vec![uri("msrps://r1.example.com:9000/aa;tcp")]);
        let mut nickname = relayed.clone();
        nickname.start_line = crate::chunk::StartLine::Request(Method::Nickname);
        assert_eq!(transport.make_response(&nickname, 200, None).expect("a 200").to_path().expect("path").0.len(), 2);

        let mut partial = send.clone();
        partial.add_header(&FailureReport::Partial);
        assert!(transport.make_response(&partial, 200, None).is_none());
        assert!(transport.make_response(&partial, 415, None).is_some());
        let mut silent = send.clone();
        silent.add_header(&FailureReport::No);
        assert!(transport.make_response(&silent, 481, None).is_none());
        assert!(transport.make_response(&vector("4975-11.6-REPORT"), 200, None).is_none());
        assert!(transport.make_response(&ok, 200, None).is_none(), "responses are not answered");
    }

    // R4975-7.1.3-2: the success REPORT for the §11.6 SEND equals the RFC's apart from the tid.
    #[test]
    fn success_report_matches_the_rfc_example() {
        let mut transport = transport();
        let send = vector("4975-11.6-SEND");
        let expected = vector("4975-11.6-REPORT");
        let mut report = transport
            .make_report(&send, 200, Some("OK".into()), ByteRange::new(1, Some(106), Some(106)))
            .expect("Success-Report: yes");
        report.transaction_id = expected.transaction_id.clone();
        assert_eq!(report.encode(), expected.encode());
        report.verify_headers().expect("valid REPORT");
        // R4975-7.1.3-3, R4975-7.1.4-2: no success REPORT without Success-Report yes, no
        // failure REPORT with Failure-Report no.
        assert!(transport.make_report(&vector("4975-F2-SEND"), 200, None, ByteRange::whole(23)).is_none());
        assert!(transport.make_report(&send, 413, None, ByteRange::whole(106)).is_none());
        let failure = transport.make_report(&vector("4975-F2-SEND"), 413, None, ByteRange::new(1, Some(10), Some(23)));
        assert_eq!(failure.and_then(|r| r.status()), Some(Status::new(413, None)));
    }

    // R4975-7.3-1: To-Path must be exactly this session's URI; msrplib also checks From-Path.
    #[test]
    fn incoming_send_paths() {
        let transport = transport();
        let mut send = vector("4975-11.6-SEND");
        assert_eq!(transport.check_incoming_send_chunk(&send), Ok(()));
        send.headers.set(HeaderName::ToPath, "msrp://bob.example.com:8888/other;tcp");
        assert_eq!(transport.check_incoming_send_chunk(&send).map_err(|e| e.code), Err(481));
        send.headers.set(
            HeaderName::ToPath,
            "msrp://bob.example.com:8888/9di4eae923wzd;tcp msrp://bob.example.com:8888/9di4eae923wzd;tcp",
        );
        assert_eq!(transport.check_incoming_send_chunk(&send).map_err(|e| e.code), Err(481));
        send.headers.set(HeaderName::ToPath, "MSRP://BOB.example.com:8888/9di4eae923wzd;TCP");
        assert_eq!(transport.check_incoming_send_chunk(&send), Ok(()), "§6.1: scheme, host, transport ignore case");
        send.headers.set(HeaderName::FromPath, "msrp://mallory.example.com:7777/iau39soe2843z;tcp");
        assert!(transport.check_incoming_send_chunk(&send).is_err());

        // use_sessmatch: session ids only.
        let sessmatch = Transport::new(
            transport.local_path().to_vec(),
            transport.remote_path().to_vec(),
            IdGenerator::seed_from_u64(1),
            true,
        )
        .expect("paths");
        send.headers.set(HeaderName::ToPath, "msrps://relay.example.net:2855/9di4eae923wzd;ws");
        assert_eq!(sessmatch.check_incoming_send_chunk(&send), Ok(()));
    }

    // R4975-8.6-1, R4975-7.3.1-4
    #[test]
    fn accept_types_match_wildcards_without_parameters() {
        let types = AcceptTypes::new(["text/plain", "Message/*"]);
        assert!(types.accepts("text/plain; charset=utf-8"));
        assert!(types.accepts("TEXT/PLAIN"));
        assert!(types.accepts("message/cpim"));
        assert!(!types.accepts("text/html"));
        assert!(!types.accepts("messages/x"));
        assert!(AcceptTypes::default().accepts("application/octet-stream"));
    }
}
