//! [`Chunk`]: one MSRP request or response (msrplib's `MSRPData`), and its encoding.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{
    ByteRange, ExtensionName, FailureReport, FromPath, Header, HeaderError, HeaderName, HeaderValue, Headers,
    MessageId, Status, SuccessReport, ToPath,
};

/// The largest body RFC 4975 §7.1 allows in a request other than SEND.
pub const MAX_NON_SEND_BODY: usize = 10240;

/// How an end-line after a body starts: the CRLF that closes the body, then seven dashes.
/// Without a body the end-line starts at the dashes.
pub(crate) const END_LINE_PREFIX: &[u8] = b"\r\n-------";

/// `\r\n-------<tid>`: the end-line of a chunk with a body, up to its flag. The sender
/// keeps it out of the body and the decoder searches for it.
pub(crate) fn end_line_needle(transaction_id: &str) -> Vec<u8> {
    let mut needle = Vec::with_capacity(END_LINE_PREFIX.len() + transaction_id.len());
    needle.extend_from_slice(END_LINE_PREFIX);
    needle.extend_from_slice(transaction_id.as_bytes());
    needle
}

/// Why a chunk would not be a valid MSRP frame ([`Chunk::verify_headers`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// A header is missing, invalid or not allowed.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The transaction id is not an `ident` of 4 to 32 characters (RFC 4975 §9).
    #[error("transaction id {0:?} is not an ident of 4 to 32 characters")]
    TransactionId(String),
    /// A response status code is not three digits.
    #[error("status code {0} is not three digits")]
    StatusCode(u16),
    /// A response carries a body or a Content-Type (RFC 4975 §7.2).
    #[error("a response cannot carry a body or a Content-Type")]
    ResponseWithBody,
    /// The body contains this chunk's own end-line (RFC 4975 §7.1: the sender must pick
    /// another transaction id or cut the chunk there).
    #[error("the body contains the end-line of transaction {0}")]
    EndLineInBody(String),
}

/// The flag that ends a chunk's end-line.
#[doc(alias = "contflag")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContinuationFlag {
    /// `$`: the last chunk of a message.
    End,
    /// `+`: more chunks of this message follow.
    More,
    /// `#`: the message is aborted; no more chunks follow.
    Abort,
}

impl ContinuationFlag {
    /// The flag character.
    pub fn as_byte(self) -> u8 {
        match self {
            Self::End => b'$',
            Self::More => b'+',
            Self::Abort => b'#',
        }
    }

    /// Reads a flag character.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'$' => Some(Self::End),
            b'+' => Some(Self::More),
            b'#' => Some(Self::Abort),
            _ => None,
        }
    }
}

impl fmt::Display for ContinuationFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::End => "$",
            Self::More => "+",
            Self::Abort => "#",
        })
    }
}

/// A request method. Method names are case-sensitive upper-case words (RFC 4975 §9);
/// `_` is tolerated because real peers send `FILE_OFFSET`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `SEND`
    Send,
    /// `REPORT`
    Report,
    /// `AUTH` (RFC 4976)
    Auth,
    /// `NICKNAME` (RFC 7701)
    Nickname,
    /// Any other method, as written. In the head of a
    /// [`BadMethod`](crate::codec::ParseErrorKind::BadMethod) error, the invalid method
    /// as written (control characters replaced).
    Other(ExtensionName),
}

impl Method {
    /// The method name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Send => "SEND",
            Self::Report => "REPORT",
            Self::Auth => "AUTH",
            Self::Nickname => "NICKNAME",
            Self::Other(name) => name.as_str(),
        }
    }

    /// Reads a method name: `1*UPALPHA`, plus `_` after the first letter.
    pub fn from_bytes(name: &[u8]) -> Option<Self> {
        match name {
            b"SEND" => Some(Self::Send),
            b"REPORT" => Some(Self::Report),
            b"AUTH" => Some(Self::Auth),
            b"NICKNAME" => Some(Self::Nickname),
            _ => {
                let valid = name.first().is_some_and(u8::is_ascii_uppercase)
                    && name.iter().all(|&b| b.is_ascii_uppercase() || b == b'_');
                let text = std::str::from_utf8(name).ok().filter(|_| valid)?;
                Some(Self::Other(ExtensionName(text.into())))
            }
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a chunk is a request or a response, with what the start line carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `MSRP <tid> <METHOD>`
    Request(Method),
    /// `MSRP <tid> <code> [comment]`
    Response {
        /// The three-digit status code.
        code: u16,
        /// The reason phrase, if any.
        comment: Option<String>,
    },
}

/// One MSRP chunk: a request (SEND, REPORT, AUTH, …) or a response.
///
/// A chunk decoded from the wire holds its header values and body as slices of the
/// read buffer. A chunk delivered in segments (see
/// [`Decoder::poll_chunk`](crate::codec::Decoder::poll_chunk)) carries `segment`.
#[doc(alias = "MSRPData")]
#[doc(alias = "copy")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The transaction id.
    pub transaction_id: String,
    /// Request method or response status.
    pub start_line: StartLine,
    /// The headers, in order.
    pub headers: Headers,
    /// The body (empty for responses and bodiless requests).
    pub data: Bytes,
    /// The continuation flag of the end-line.
    pub contflag: ContinuationFlag,
    /// For a virtual chunk cut from a longer one: the segment number, from 1.
    pub segment: Option<u32>,
}

impl Chunk {
    /// A request with no headers and no body.
    pub fn request(transaction_id: impl Into<String>, method: Method) -> Self {
        Self {
            transaction_id: transaction_id.into(),
            start_line: StartLine::Request(method),
            headers: Headers::new(),
            data: Bytes::new(),
            contflag: ContinuationFlag::End,
            segment: None,
        }
    }

    /// A response with no headers.
    pub fn response(transaction_id: impl Into<String>, code: u16, comment: Option<String>) -> Self {
        Self {
            transaction_id: transaction_id.into(),
            start_line: StartLine::Response { code, comment },
            headers: Headers::new(),
            data: Bytes::new(),
            contflag: ContinuationFlag::End,
            segment: None,
        }
    }

    /// The method of a request; `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start_line {
            StartLine::Request(method) => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response; `None` for a request.
    pub fn code(&self) -> Option<u16> {
        match &self.start_line {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request(_) => None,
        }
    }

    /// The reason phrase of a response.
    pub fn comment(&self) -> Option<&str> {
        match &self.start_line {
            StartLine::Response { comment, .. } => comment.as_deref(),
            StartLine::Request(_) => None,
        }
    }

    /// Whether this chunk is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start_line, StartLine::Request(_))
    }

    /// The Content-Type value, as written.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get(&HeaderName::ContentType).map(HeaderValue::as_str)
    }

    /// The Message-ID value.
    pub fn message_id(&self) -> Option<&str> {
        self.headers.get(&HeaderName::MessageId).map(HeaderValue::as_str)
    }

    /// The Byte-Range, if present and valid.
    pub fn byte_range(&self) -> Option<ByteRange> {
        self.headers.typed::<ByteRange>().and_then(Result::ok)
    }

    /// The Status header of a REPORT, if present and valid.
    pub fn status(&self) -> Option<Status> {
        self.headers.typed::<Status>().and_then(Result::ok)
    }

    /// Failure-Report, with the implied `yes` when absent or invalid (RFC 4975 §7.1.1).
    pub fn failure_report(&self) -> FailureReport {
        self.headers.typed::<FailureReport>().and_then(Result::ok).unwrap_or(FailureReport::Yes)
    }

    /// Success-Report, with the implied `no` when absent or invalid (RFC 4975 §7.1.1).
    pub fn success_report(&self) -> SuccessReport {
        self.headers.typed::<SuccessReport>().and_then(Result::ok).unwrap_or(SuccessReport::No)
    }

    /// The size of this chunk's body in bytes.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// The To-Path URIs.
    pub fn to_path(&self) -> Result<ToPath, HeaderError> {
        self.headers.typed::<ToPath>().unwrap_or(Err(HeaderError::Missing("To-Path")))
    }

    /// The From-Path URIs.
    pub fn from_path(&self) -> Result<FromPath, HeaderError> {
        self.headers.typed::<FromPath>().unwrap_or(Err(HeaderError::Missing("From-Path")))
    }

    /// Adds a typed header, replacing one of the same name (msrplib `add_header`).
    pub fn add_header<H: Header>(&mut self, header: &H) {
        self.headers.set_typed(header);
    }

    /// Checks that the chunk is a valid frame and what a receiver would check: a
    /// transaction id that is an `ident`, a three-digit status, To-Path and From-Path
    /// present and valid, every known header valid, a Content-Type when there is a body
    /// and none on a response, REPORT rules (Status and Message-ID present, no report
    /// headers), the 10240-octet cap on non-SEND bodies, and no copy of the chunk's own
    /// end-line inside its body.
    ///
    /// [`Chunk::encode`] writes what the chunk holds; a chunk that passes this check
    /// encodes to exactly one frame that decodes back to it.
    pub fn verify_headers(&self) -> Result<(), ChunkError> {
        if !crate::header::is_ident(self.transaction_id.as_bytes()) {
            return Err(ChunkError::TransactionId(self.transaction_id.clone()));
        }
        if let Some(code) = self.code().filter(|&code| code > 999) {
            return Err(ChunkError::StatusCode(code));
        }
        self.to_path()?;
        self.from_path()?;
        for field in &self.headers {
            verify_field(&field.name, field.value.as_str())?;
        }
        if !self.is_request() && self.has_body_section() {
            return Err(ChunkError::ResponseWithBody);
        }
        if !self.data.is_empty() && self.content_type().is_none() {
            return Err(HeaderError::MissingContentType.into());
        }
        if self.body_contains_end_line() {
            return Err(ChunkError::EndLineInBody(self.transaction_id.clone()));
        }
        if let Some(method) = self.method() {
            if *method == Method::Report {
                if self.headers.get(&HeaderName::Status).is_none() {
                    return Err(HeaderError::Missing("Status").into());
                }
                if self.headers.get(&HeaderName::MessageId).is_none() {
                    return Err(HeaderError::Missing("Message-ID").into());
                }
                for name in [HeaderName::SuccessReport, HeaderName::FailureReport] {
                    if self.headers.get(&name).is_some() {
                        let reason = "a REPORT never asks for reports (RFC 4975 §7.1.2)";
                        return Err(HeaderError::NotAllowed { name: name.static_name(), reason }.into());
                    }
                }
            }
            if *method != Method::Send && self.data.len() > MAX_NON_SEND_BODY {
                return Err(HeaderError::BodyTooLarge {
                    method: method.to_string(),
                    size: self.data.len(),
                    limit: MAX_NON_SEND_BODY,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Whether the body holds `\r\n-------<tid>` followed by a flag and CRLF (counting the
    /// CRLF that closes the body), which a receiver would take for the end of the chunk.
    /// A sender that finds it picks another transaction id (RFC 4975 §7.1).
    pub fn body_contains_end_line(&self) -> bool {
        let needle = end_line_needle(&self.transaction_id);
        // What follows `-------<tid>` in the body, before the CRLF that closes the body.
        let ends_line = |rest: &[u8]| match rest {
            [flag] | [flag, b'\r', b'\n', ..] => ContinuationFlag::from_byte(*flag).is_some(),
            _ => false,
        };
        let data = &self.data[..];
        // At the very start, the blank line's CRLF may stand in for the end-line's own.
        data.strip_prefix(&needle[2..]).is_some_and(ends_line)
            || memchr::memmem::find_iter(data, &needle).any(|at| ends_line(&data[at + needle.len()..]))
    }

    /// Whether the encoding has a body section (blank line, body, CRLF before the end-line):
    /// a chunk with data, or with a Content-Type and empty data (an empty body, RFC 4975 §7.1).
    pub fn has_body_section(&self) -> bool {
        !self.data.is_empty() || self.content_type().is_some()
    }

    /// The start line and headers, in RFC order (To-Path, From-Path, other headers in
    /// their order, MIME headers, Content-Type last), and the blank line that opens the
    /// body when there is one.
    pub fn encode_start(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_head_len());
        self.write_start(&mut out);
        out.freeze()
    }

    /// The end-line with the given flag: `-------<tid><flag>\r\n`, preceded by the CRLF
    /// that closes the body when the chunk has a body section.
    pub fn encode_end(&self, continuation: ContinuationFlag) -> Bytes {
        let mut out = BytesMut::with_capacity(self.transaction_id.len() + 12);
        self.write_end(&mut out, continuation);
        out.freeze()
    }

    /// The whole chunk, ending with its own `contflag`.
    pub fn encode(&self) -> Bytes {
        let mut out =
            BytesMut::with_capacity(self.encoded_head_len() + self.data.len() + self.transaction_id.len() + 12);
        self.write_start(&mut out);
        out.put_slice(&self.data);
        self.write_end(&mut out, self.contflag);
        out.freeze()
    }

    /// The chunk as three buffers for a vectored write: head, body (shared, not
    /// copied) and end-line. Small bodies are copied into the head so that a short
    /// message costs one buffer.
    pub fn encode_parts(&self) -> [Bytes; 3] {
        const COPY_BELOW: usize = 1024;
        if self.data.len() < COPY_BELOW {
            return [self.encode(), Bytes::new(), Bytes::new()];
        }
        [self.encode_start(), self.data.clone(), self.encode_end(self.contflag)]
    }

    fn encoded_head_len(&self) -> usize {
        let fields: usize = self.headers.iter().map(|f| f.name.as_str().len() + f.value.as_bytes().len() + 4).sum();
        fields + self.transaction_id.len() + 32
    }

    fn write_start(&self, out: &mut BytesMut) {
        out.put_slice(b"MSRP ");
        out.put_slice(self.transaction_id.as_bytes());
        out.put_u8(b' ');
        match &self.start_line {
            StartLine::Request(method) => out.put_slice(method.as_str().as_bytes()),
            StartLine::Response { code, comment } => {
                // Codes are three digits on the wire; clamp so a bad value cannot break the frame.
                let code = (*code).min(999);
                out.put_slice(&[b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8]);
                if let Some(comment) = comment {
                    out.put_u8(b' ');
                    put_single_line(out, comment);
                }
            }
        }
        out.put_slice(b"\r\n");
        let fields = self.headers.fields();
        for rank in 0..=4 {
            for field in fields.iter().filter(|field| field.name.rank() == rank) {
                out.put_slice(field.name.as_str().as_bytes());
                out.put_slice(b": ");
                out.put_slice(field.value.as_bytes());
                out.put_slice(b"\r\n");
            }
        }
        if self.has_body_section() {
            out.put_slice(b"\r\n");
        }
    }

    fn write_end(&self, out: &mut BytesMut, continuation: ContinuationFlag) {
        put_end_line(out, &self.transaction_id, self.has_body_section(), continuation);
    }
}

/// Writes a chunk's end-line, with the CRLF that closes its body when it has a body
/// section (`body_section`).
pub(crate) fn put_end_line(out: &mut BytesMut, transaction_id: &str, body_section: bool, flag: ContinuationFlag) {
    let prefix = if body_section { END_LINE_PREFIX } else { &END_LINE_PREFIX[2..] };
    out.put_slice(prefix);
    out.put_slice(transaction_id.as_bytes());
    out.put_u8(flag.as_byte());
    out.put_slice(b"\r\n");
}

/// Writes text that must stay on one line: CR and LF become spaces.
fn put_single_line(out: &mut BytesMut, text: &str) {
    for &byte in text.as_bytes() {
        out.put_u8(if byte == b'\r' || byte == b'\n' { b' ' } else { byte });
    }
}

fn verify_field(name: &HeaderName, value: &str) -> Result<(), HeaderError> {
    use crate::header::{
        AuthenticationInfo, Authorization, ContentDisposition, ContentId, ContentType, Expires, KeepAlive, MaxExpires,
        MinExpires, UseNickname, UsePath, WwwAuthenticate,
    };
    fn check<H: Header>(value: &str) -> Result<(), HeaderError> {
        H::decode(value).map(drop)
    }
    match name {
        HeaderName::ToPath => check::<ToPath>(value),
        HeaderName::FromPath => check::<FromPath>(value),
        HeaderName::MessageId => check::<MessageId>(value),
        HeaderName::SuccessReport => check::<SuccessReport>(value),
        HeaderName::FailureReport => check::<FailureReport>(value),
        HeaderName::ByteRange => check::<ByteRange>(value),
        HeaderName::Status => check::<Status>(value),
        HeaderName::Expires => check::<Expires>(value),
        HeaderName::MinExpires => check::<MinExpires>(value),
        HeaderName::MaxExpires => check::<MaxExpires>(value),
        HeaderName::UsePath => check::<UsePath>(value),
        HeaderName::WwwAuthenticate => check::<WwwAuthenticate>(value),
        HeaderName::Authorization => check::<Authorization>(value),
        HeaderName::AuthenticationInfo => check::<AuthenticationInfo>(value),
        HeaderName::KeepAlive => check::<KeepAlive>(value),
        HeaderName::UseNickname => check::<UseNickname>(value),
        HeaderName::ContentId => check::<ContentId>(value),
        HeaderName::ContentDisposition => check::<ContentDisposition>(value),
        HeaderName::ContentType => check::<ContentType>(value),
        HeaderName::ContentDescription | HeaderName::Other(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoded, Decoder, DecoderLimits};
    use crate::header::{ContentDisposition, ContentId};
    use crate::uri::Uri;

    fn paths(chunk: &mut Chunk) {
        chunk.add_header(&ToPath(vec!["msrp://b.example.com:8888/9di4eae923wzd;tcp".parse::<Uri>().expect("uri")]));
        chunk.add_header(&FromPath(vec!["msrp://a.example.com:7777/iau39soe2843z;tcp".parse::<Uri>().expect("uri")]));
    }

    // R4975-9-4, R4975-7.1-3: To-Path, From-Path, MSRP headers, MIME headers, Content-Type last,
    // whatever order they were added in.
    #[test]
    fn encoder_writes_headers_in_rfc_order() {
        let mut chunk = Chunk::request("a1b2c3d4", Method::Send);
        chunk.headers.set(HeaderName::ContentType, "text/plain");
        chunk.add_header(&ContentDisposition { disposition: "inline".into(), params: vec![] });
        chunk.headers.append(HeaderName::from_bytes(b"Content-X").expect("name"), "1");
        chunk.add_header(&MessageId("m1x2y3z4".into()));
        chunk.headers.append(HeaderName::from_bytes(b"X-Ext").expect("name"), "e");
        chunk.add_header(&ContentId("<c@x>".into()));
        paths(&mut chunk);
        chunk.add_header(&ByteRange::whole(2));
        chunk.data = Bytes::from_static(b"hi");
        let text = String::from_utf8(chunk.encode().to_vec()).expect("utf8");
        let names: Vec<&str> =
            text.lines().skip(1).take_while(|l| !l.is_empty()).map(|l| l.split(':').next().unwrap_or("")).collect();
        assert_eq!(
            names,
            [
                "To-Path",
                "From-Path",
                "Message-ID",
                "X-Ext",
                "Byte-Range",
                "Content-Disposition",
                "Content-X",
                "Content-ID",
                "Content-Type"
            ]
        );
        assert!(text.ends_with("\r\n\r\nhi\r\n-------a1b2c3d4$\r\n"), "{text:?}");
        chunk.verify_headers().expect("valid");
    }

    // R4975-7.1-4, R4975-7.1-5, R4975-7.1.1-9: bodiless vs empty body, byte-exact.
    #[test]
    fn bodiless_and_empty_bodies() {
        let mut chunk = Chunk::request("a1b2c3d4e5f6", Method::Send);
        paths(&mut chunk);
        chunk.add_header(&MessageId("m1x2y3z4".into()));
        chunk.add_header(&ByteRange::whole(0));
        let bodiless = "MSRP a1b2c3d4e5f6 SEND\r\nTo-Path: msrp://b.example.com:8888/9di4eae923wzd;tcp\r\n\
            From-Path: msrp://a.example.com:7777/iau39soe2843z;tcp\r\nMessage-ID: m1x2y3z4\r\nByte-Range: 1-0/0\r\n-------a1b2c3d4e5f6$\r\n";
        assert_eq!(chunk.encode(), bodiless.as_bytes());
        chunk.headers.set(HeaderName::ContentType, "text/plain");
        let empty = bodiless.replace("-------", "Content-Type: text/plain\r\n\r\n\r\n-------");
        assert_eq!(chunk.encode(), empty.as_bytes());
    }

    // A body without Content-Type is still framed so the receiver finds its end;
    // verify_headers reports the missing header.
    #[test]
    fn body_without_content_type_is_framed() {
        let mut chunk = Chunk::request("abcd", Method::Send);
        paths(&mut chunk);
        chunk.data = Bytes::from_static(b"raw");
        assert_eq!(chunk.verify_headers(), Err(ChunkError::Header(HeaderError::MissingContentType)));
        let mut decoder = Decoder::new(DecoderLimits::default());
        decoder.feed(chunk.encode());
        let error = decoder.poll().expect("item").expect_err("400");
        assert_eq!(error.status(), Some(400));
        assert_eq!(decoder.poll(), None);
        assert!(decoder.is_idle(), "the frame was skipped whole");
    }

    // R4975-7.1.2-1, R4975-7.1-9
    #[test]
    fn verify_headers_rules() {
        let mut report = Chunk::request("abcd", Method::Report);
        paths(&mut report);
        assert_eq!(report.verify_headers(), Err(ChunkError::Header(HeaderError::Missing("Status"))));
        report.add_header(&Status::new(200, Some("OK".into())));
        assert_eq!(report.verify_headers(), Err(ChunkError::Header(HeaderError::Missing("Message-ID"))));
        report.add_header(&MessageId("m1x2y3z4".into()));
        report.verify_headers().expect("valid REPORT");
        report.add_header(&FailureReport::Yes);
        assert!(matches!(
            report.verify_headers(),
            Err(ChunkError::Header(HeaderError::NotAllowed { name: "Failure-Report", .. }))
        ));
        report.headers.remove(&HeaderName::FailureReport);
        report.headers.set(HeaderName::ContentType, "text/plain");
        report.data = Bytes::from(vec![b'x'; MAX_NON_SEND_BODY + 1]);
        assert!(matches!(
            report.verify_headers(),
            Err(ChunkError::Header(HeaderError::BodyTooLarge { size: 10241, .. }))
        ));

        let mut send = Chunk::request("abcd", Method::Send);
        assert_eq!(send.verify_headers(), Err(ChunkError::Header(HeaderError::Missing("To-Path"))));
        paths(&mut send);
        send.headers.set(HeaderName::ByteRange, "0-1/1");
        assert!(matches!(
            send.verify_headers(),
            Err(ChunkError::Header(HeaderError::Invalid { name: "Byte-Range", .. }))
        ));
    }

    // R4975-7.1-8, R4975-9-3, R4975-7.2-2: what would not make exactly one valid frame.
    #[test]
    fn verify_rejects_what_would_break_the_frame() {
        let mut chunk = Chunk::request("abcd\r\nX-Injected: 1", Method::Send);
        paths(&mut chunk);
        assert!(matches!(chunk.verify_headers(), Err(ChunkError::TransactionId(_))));
        chunk.transaction_id = "abcd".into();
        chunk.headers.set(HeaderName::ContentType, "text/plain");
        for body in [&b"hello\r\n-------abcd$\r\nMSRP zzzz SEND\r\n"[..], b"x\r\n-------abcd+", b"-------abcd#\r\nrest"]
        {
            chunk.data = Bytes::copy_from_slice(body);
            assert_eq!(chunk.verify_headers(), Err(ChunkError::EndLineInBody("abcd".into())), "{body:?}");
        }
        for body in [&b"x\r\n-------abcdX\r\n"[..], b"\r\n-------abcd", b"x\r\n-------abcd$\r", b"-------abcde$\r\n"] {
            chunk.data = Bytes::copy_from_slice(body);
            assert_eq!(chunk.verify_headers(), Ok(()), "{body:?}");
        }

        let mut response = Chunk::response("abcd", 200, None);
        paths(&mut response);
        response.verify_headers().expect("valid response");
        response.headers.set(HeaderName::ContentType, "text/plain");
        assert_eq!(response.verify_headers(), Err(ChunkError::ResponseWithBody));
        let mut response = Chunk::response("abcd", 2000, None);
        paths(&mut response);
        assert_eq!(response.verify_headers(), Err(ChunkError::StatusCode(2000)));

        // Extension names can only be made from valid text, and values lose control characters.
        assert!(Method::from_bytes(b"SEND\r\nX-Evil: 1").is_none());
        assert!(HeaderName::from_bytes(b"X-A: 1\r\nTo-Path").is_none());
        assert_eq!(HeaderName::from_bytes(b"to-path"), Some(HeaderName::ToPath));
        chunk.data = Bytes::new();
        chunk.headers.set(HeaderName::ContentDescription, "a\0b\x1bc\td");
        assert_eq!(chunk.headers.get(&HeaderName::ContentDescription).map(HeaderValue::as_str), Some("a b c\td"));
        assert!(HeaderValue::from_bytes(Bytes::from_static(b"a\0b")).is_none());
    }

    // R4975-7.1.1-3: implied report values.
    #[test]
    fn implied_report_values_and_accessors() {
        let mut chunk = Chunk::request("abcd", Method::Send);
        assert_eq!((chunk.failure_report(), chunk.success_report()), (FailureReport::Yes, SuccessReport::No));
        chunk.add_header(&FailureReport::Partial);
        chunk.add_header(&SuccessReport::Yes);
        assert_eq!((chunk.failure_report(), chunk.success_report()), (FailureReport::Partial, SuccessReport::Yes));
        let response = Chunk::response("abcd", 200, Some("OK\r\nInjected: 1".into()));
        assert_eq!((response.code(), response.method(), response.is_request()), (Some(200), None, false));
        assert!(response.encode().starts_with(b"MSRP abcd 200 OK  Injected: 1\r\n"), "no header injection");
        assert_eq!(chunk.clone(), chunk, "copy");
    }

    #[test]
    fn encode_parts_share_large_bodies() {
        let mut chunk = Chunk::request("abcd", Method::Send);
        paths(&mut chunk);
        chunk.headers.set(HeaderName::ContentType, "application/octet-stream");
        chunk.data = Bytes::from(vec![7u8; 4096]);
        let [head, body, end] = chunk.encode_parts();
        assert_eq!(body.as_ptr(), chunk.data.as_ptr());
        assert_eq!([&head[..], &body[..], &end[..]].concat(), chunk.encode());
        assert_eq!(end, chunk.encode_end(ContinuationFlag::End));
        assert_eq!(head, chunk.encode_start());
        chunk.data = Bytes::from_static(b"small");
        let [whole, none, nothing] = chunk.encode_parts();
        assert_eq!((whole, none.is_empty(), nothing.is_empty()), (chunk.encode(), true, true));
        let mut decoder = Decoder::new(DecoderLimits::default());
        decoder.feed(chunk.encode());
        assert!(matches!(decoder.poll(), Some(Ok(Decoded::Head(_)))));
    }
}
