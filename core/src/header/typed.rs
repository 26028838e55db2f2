//! One type per known header. Each is its own decoded value; [`Header::decode`]
//! builds it from the wire text and [`Header::encode`] writes it back.

use std::fmt::Write as _;

use super::params::{AuthParams, parse_quoted, write_quoted};
use super::{Header, HeaderError, HeaderName};
use crate::uri::{Uri, is_token};

macro_rules! path_header {
    ($(#[$doc:meta])* $ty:ident, $alias:literal) => {
        $(#[$doc])*
        #[doc(alias = $alias)]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty(pub Vec<Uri>);

        impl Header for $ty {
            const NAME: HeaderName = HeaderName::$ty;

            fn decode(value: &str) -> Result<Self, HeaderError> {
                let name = Self::NAME.static_name();
                let uris = Uri::parse_path(value).map_err(|source| HeaderError::Uri { name, source })?;
                Ok(Self(uris))
            }

            fn encode(&self) -> String {
                join_path(&self.0)
            }
        }
    };
}

/// Writes URIs separated by single spaces.
pub(crate) fn join_path(uris: &[Uri]) -> String {
    let mut out = String::new();
    for (index, uri) in uris.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{uri}");
    }
    out
}

path_header!(
    /// `To-Path`: the URIs towards the destination, first hop first.
    ToPath, "ToPathHeader"
);
path_header!(
    /// `From-Path`: the URIs back to the sender, previous hop first.
    FromPath, "FromPathHeader"
);
path_header!(
    /// `Use-Path` (RFC 4976): the path a relay tells its client to advertise.
    UsePath, "UsePathHeader"
);

macro_rules! text_header {
    ($(#[$doc:meta])* $ty:ident, $alias:literal, $check:expr, $reason:literal) => {
        $(#[$doc])*
        #[doc(alias = $alias)]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty(pub String);

        impl Header for $ty {
            const NAME: HeaderName = HeaderName::$ty;

            fn decode(value: &str) -> Result<Self, HeaderError> {
                let check: fn(&str) -> bool = $check;
                if check(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(HeaderError::invalid(Self::NAME.static_name(), value, $reason))
                }
            }

            fn encode(&self) -> String {
                self.0.clone()
            }
        }
    };
}

text_header!(
    /// `Message-ID`: the id shared by every chunk of a message (an `ident`).
    MessageId, "MessageIDHeader", |v| is_ident(v.as_bytes()), "not an ident of 4 to 32 characters"
);
text_header!(
    /// `Content-ID` (RFC 2045).
    ContentId, "ContentIDHeader", |v| !v.is_empty(), "empty"
);
text_header!(
    /// `Content-Description` (RFC 2045): free text.
    ContentDescription, "ContentDescriptionHeader", |_| true, "never rejected"
);

/// RFC 4975 `ident`: an alphanumeric character and 3 to 31 more of `ALPHANUM . - + % =`.
pub(crate) fn is_ident(bytes: &[u8]) -> bool {
    (4..=32).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..].iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'%' | b'='))
}

macro_rules! keyword_header {
    ($(#[$doc:meta])* $ty:ident, $alias:literal, { $( $(#[$vdoc:meta])* $variant:ident => $text:literal ),* }) => {
        $(#[$doc])*
        #[doc(alias = $alias)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty {
            $( $(#[$vdoc])* $variant, )*
        }

        impl $ty {
            /// The value as written on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $text, )* }
            }
        }

        impl Header for $ty {
            const NAME: HeaderName = HeaderName::$ty;

            /// Values are case-insensitive (RFC 4975 §9 uses quoted ABNF strings).
            fn decode(value: &str) -> Result<Self, HeaderError> {
                $( if value.trim_end().eq_ignore_ascii_case($text) { return Ok(Self::$variant); } )*
                Err(HeaderError::invalid(Self::NAME.static_name(), value, concat!("not one of" $(, " ", $text)*)))
            }

            fn encode(&self) -> String {
                self.as_str().to_owned()
            }
        }
    };
}

keyword_header!(
    /// `Success-Report`: whether the sender wants success REPORTs. Absent means `no`.
    SuccessReport, "SuccessReportHeader", {
        /// `yes`
        Yes => "yes",
        /// `no`
        No => "no"
    }
);
keyword_header!(
    /// `Failure-Report`: which failures the sender wants to hear of. Absent means `yes`.
    FailureReport, "FailureReportHeader", {
        /// `yes`: a response to every chunk, failure REPORTs.
        Yes => "yes",
        /// `no`: no response and no failure REPORT at all.
        No => "no",
        /// `partial`: responses only on failure.
        Partial => "partial"
    }
);
keyword_header!(
    /// `Keep-Alive`: marks msrplib's keepalive SEND.
    KeepAlive, "KeepAliveHeader", {
        /// `yes`
        Yes => "yes",
        /// `no`
        No => "no"
    }
);

/// `Byte-Range: start-end/total`, 1-based and inclusive; `None` stands for `*`.
#[doc(alias = "ByteRangeHeader")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// Position of the chunk's first byte in the message, from 1 (msrplib's `fro`).
    #[doc(alias = "fro")]
    pub start: u64,
    /// Position of the chunk's last byte, inclusive; `None` for `*` (an interruptible chunk).
    pub end: Option<u64>,
    /// The size of the whole message; `None` for `*` (unknown) (msrplib's `length`).
    #[doc(alias = "length")]
    pub total: Option<u64>,
}

impl ByteRange {
    /// A range from its three parts.
    pub fn new(start: u64, end: Option<u64>, total: Option<u64>) -> Self {
        Self { start, end, total }
    }

    /// The range of a whole message of `len` bytes in one chunk: `1-len/len`.
    pub fn whole(len: u64) -> Self {
        Self { start: 1, end: Some(len), total: Some(len) }
    }
}

impl Header for ByteRange {
    const NAME: HeaderName = HeaderName::ByteRange;

    fn decode(value: &str) -> Result<Self, HeaderError> {
        let bad = |reason| HeaderError::invalid("Byte-Range", value, reason);
        let (start, rest) = value.trim_end().split_once('-').ok_or_else(|| bad("missing '-'"))?;
        let (end, total) = rest.split_once('/').ok_or_else(|| bad("missing '/'"))?;
        let start = parse_number(start).ok_or_else(|| bad("range-start is not a number"))?;
        if start == 0 {
            return Err(bad("positions start at 1"));
        }
        let end = parse_star_or_number(end).map_err(|()| bad("range-end is not a number or '*'"))?;
        let total = parse_star_or_number(total).map_err(|()| bad("total is not a number or '*'"))?;
        if end.is_some_and(|end| end < start - 1) {
            return Err(bad("range-end is before range-start"));
        }
        if let (Some(end), Some(total)) = (end, total) {
            if end > total {
                return Err(bad("range-end is past the total"));
            }
        }
        if total.is_some_and(|total| start > total + 1) {
            return Err(bad("range-start is past the total"));
        }
        Ok(Self { start, end, total })
    }

    fn encode(&self) -> String {
        let mut out = format!("{}-", self.start);
        push_star_or_number(&mut out, self.end);
        out.push('/');
        push_star_or_number(&mut out, self.total);
        out
    }
}

fn push_star_or_number(out: &mut String, value: Option<u64>) {
    match value {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push('*'),
    }
}

/// `1*DIGIT` into a `u64`; more than 19 digits is refused before any arithmetic.
pub(crate) fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `*` (unknown, `Ok(None)`) or a number.
fn parse_star_or_number(text: &str) -> Result<Option<u64>, ()> {
    if text == "*" { Ok(None) } else { parse_number(text).map(Some).ok_or(()) }
}

/// `Status: namespace code [comment]`, as carried by REPORTs (`000 200 OK`).
///
/// Only namespace `000` carries the status codes of RFC 4975 (§7.3.2: such a code is
/// read exactly as a transaction response); a code in any other namespace means what
/// that namespace says, so [`Status::msrp_code`] reads it as no MSRP code at all.
#[doc(alias = "StatusHeader")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The namespace; `000` for the codes of RFC 4975.
    pub namespace: u16,
    /// The status code.
    pub code: u16,
    /// The reason phrase, if any.
    pub comment: Option<String>,
}

impl Status {
    /// A status in namespace `000`.
    pub fn new(code: u16, comment: Option<String>) -> Self {
        Self { namespace: 0, code, comment }
    }

    /// The MSRP status code: `code` in namespace `000`, `None` in any other namespace
    /// (RFC 4975 §7.3.2, issue 12 §2.3).
    pub fn msrp_code(&self) -> Option<u16> {
        (self.namespace == 0).then_some(self.code)
    }
}

impl Header for Status {
    const NAME: HeaderName = HeaderName::Status;

    fn decode(value: &str) -> Result<Self, HeaderError> {
        let bad = |reason| HeaderError::invalid("Status", value, reason);
        let three_digits = |text: &str| {
            (text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse::<u16>().ok()).flatten()
        };
        let namespace = value.get(..3).and_then(three_digits).ok_or_else(|| bad("namespace is not 3 digits"))?;
        let rest = value[3..].strip_prefix(' ').ok_or_else(|| bad("missing status code"))?;
        let code = rest.get(..3).and_then(three_digits).ok_or_else(|| bad("status code is not 3 digits"))?;
        let comment = match &rest[3..] {
            "" => None,
            more => Some(more.strip_prefix(' ').ok_or_else(|| bad("junk after the status code"))?.to_owned()),
        };
        Ok(Self { namespace, code, comment })
    }

    fn encode(&self) -> String {
        match &self.comment {
            Some(comment) => format!("{:03} {:03} {comment}", self.namespace, self.code),
            None => format!("{:03} {:03}", self.namespace, self.code),
        }
    }
}

macro_rules! seconds_header {
    ($(#[$doc:meta])* $ty:ident, $alias:literal) => {
        $(#[$doc])*
        #[doc(alias = $alias)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $ty(pub u64);

        impl Header for $ty {
            const NAME: HeaderName = HeaderName::$ty;

            fn decode(value: &str) -> Result<Self, HeaderError> {
                parse_number(value.trim_end())
                    .map(Self)
                    .ok_or_else(|| HeaderError::invalid(Self::NAME.static_name(), value, "not a number of seconds"))
            }

            fn encode(&self) -> String {
                self.0.to_string()
            }
        }
    };
}

seconds_header!(
    /// `Expires` (RFC 4976): seconds an AUTH grant is asked or given for.
    Expires, "ExpiresHeader"
);
seconds_header!(
    /// `Min-Expires` (RFC 4976): the shortest grant a relay accepts.
    MinExpires, "MinExpiresHeader"
);
seconds_header!(
    /// `Max-Expires` (RFC 4976): the longest grant a relay accepts.
    MaxExpires, "MaxExpiresHeader"
);

macro_rules! challenge_header {
    ($(#[$doc:meta])* $ty:ident, $alias:literal) => {
        $(#[$doc])*
        #[doc(alias = $alias)]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty {
            /// The authentication scheme, `Digest` for MSRP relays.
            pub scheme: String,
            /// The parameters, in order.
            pub params: AuthParams,
        }

        impl Header for $ty {
            const NAME: HeaderName = HeaderName::$ty;

            fn decode(value: &str) -> Result<Self, HeaderError> {
                let bad = |reason| HeaderError::invalid(Self::NAME.static_name(), value, reason);
                let (scheme, params) = value.split_once(' ').ok_or_else(|| bad("missing scheme or parameters"))?;
                if !is_token(scheme) {
                    return Err(bad("the scheme is not a token"));
                }
                let params = AuthParams::parse(params).ok_or_else(|| bad("malformed parameter list"))?;
                Ok(Self { scheme: scheme.to_owned(), params })
            }

            fn encode(&self) -> String {
                format!("{} {}", self.scheme, self.params)
            }
        }
    };
}

challenge_header!(
    /// `WWW-Authenticate` (RFC 4976): a relay's Digest challenge.
    WwwAuthenticate, "WWWAuthenticateHeader"
);
challenge_header!(
    /// `Authorization` (RFC 4976): a client's Digest credentials.
    Authorization, "AuthorizationHeader"
);

/// `Authentication-Info` (RFC 4976): `nextnonce`, `rspauth` and friends, without a scheme.
#[doc(alias = "AuthenticationInfoHeader")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationInfo(pub AuthParams);

impl Header for AuthenticationInfo {
    const NAME: HeaderName = HeaderName::AuthenticationInfo;

    fn decode(value: &str) -> Result<Self, HeaderError> {
        AuthParams::parse(value)
            .map(Self)
            .ok_or_else(|| HeaderError::invalid("Authentication-Info", value, "malformed parameter list"))
    }

    fn encode(&self) -> String {
        self.0.to_string()
    }
}

/// `Content-Type`: the media type of the body, with any parameters, as written.
#[doc(alias = "ContentTypeHeader")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType(pub String);

impl ContentType {
    /// `type/subtype` in lower case, without parameters: what accept-types match against.
    pub fn essence(&self) -> String {
        let end = self.0.find(';').unwrap_or(self.0.len());
        self.0[..end].trim().to_ascii_lowercase()
    }
}

impl Header for ContentType {
    const NAME: HeaderName = HeaderName::ContentType;

    fn decode(value: &str) -> Result<Self, HeaderError> {
        let essence = value.split(';').next().unwrap_or_default().trim();
        let valid = essence.split_once('/').is_some_and(|(kind, subtype)| is_token(kind) && is_token(subtype));
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(HeaderError::invalid("Content-Type", value, "not a type/subtype media type"))
        }
    }

    fn encode(&self) -> String {
        self.0.clone()
    }
}

/// `Content-Disposition` (RFC 2183): the disposition and its parameters.
#[doc(alias = "ContentDispositionHeader")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDisposition {
    /// `inline`, `attachment`, `render`, …
    pub disposition: String,
    /// The parameters (`filename="a.txt"`), unquoted, in order.
    pub params: Vec<(String, String)>,
}

impl Header for ContentDisposition {
    const NAME: HeaderName = HeaderName::ContentDisposition;

    fn decode(value: &str) -> Result<Self, HeaderError> {
        let bad = |reason| HeaderError::invalid("Content-Disposition", value, reason);
        let (disposition, mut rest) = match value.find(';') {
            Some(i) => (value[..i].trim(), &value[i..]),
            None => (value.trim(), ""),
        };
        if !is_token(disposition) {
            return Err(bad("the disposition is not a token"));
        }
        let mut params = Vec::new();
        while let Some(after) = rest.strip_prefix(';') {
            let after = after.trim_start();
            let (name, tail) = after.split_once('=').ok_or_else(|| bad("parameter without '='"))?;
            let name = name.trim();
            let tail = tail.trim_start();
            let (param_value, used) = if tail.starts_with('"') {
                parse_quoted(tail).ok_or_else(|| bad("unterminated quoted string"))?
            } else {
                let end = tail.find(';').unwrap_or(tail.len());
                (tail[..end].trim_end().to_owned(), end)
            };
            if !is_token(name) {
                return Err(bad("a parameter name is not a token"));
            }
            params.push((name.to_owned(), param_value));
            rest = tail[used..].trim_start();
        }
        if !rest.is_empty() {
            return Err(bad("junk after the parameters"));
        }
        Ok(Self { disposition: disposition.to_owned(), params })
    }

    fn encode(&self) -> String {
        let mut out = self.disposition.clone();
        for (name, value) in &self.params {
            let _ = write!(out, "; {name}=");
            if is_token(value) {
                out.push_str(value);
            } else {
                let _ = write_quoted(&mut out, value);
            }
        }
        out
    }
}

/// `Use-Nickname` (RFC 7701): the nickname asked for, a quoted string on the wire.
#[doc(alias = "UseNicknameHeader")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseNickname(pub String);

impl Header for UseNickname {
    const NAME: HeaderName = HeaderName::UseNickname;

    fn decode(value: &str) -> Result<Self, HeaderError> {
        let bad = |reason| HeaderError::invalid("Use-Nickname", value, reason);
        let (nickname, used) = parse_quoted(value).ok_or_else(|| bad("not a quoted string"))?;
        if !value[used..].trim().is_empty() {
            return Err(bad("junk after the nickname"));
        }
        if nickname.is_empty() || nickname.chars().count() > 1023 {
            return Err(bad("a nickname has 1 to 1023 characters"));
        }
        Ok(Self(nickname))
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        let _ = write_quoted(&mut out, &self.0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // R4975-9-9 and the derived Byte-Range table of conformance.md §5.2.
    #[test]
    fn byte_range_table() {
        let ok = |text: &str| ByteRange::decode(text).expect(text);
        assert_eq!(ok("1-*/*"), ByteRange::new(1, None, None));
        assert_eq!(ok("1-0/0"), ByteRange::new(1, Some(0), Some(0)));
        assert_eq!(ok("5-8/8"), ByteRange::new(5, Some(8), Some(8)));
        assert_eq!(ok("1-*/174"), ByteRange::new(1, None, Some(174)));
        assert_eq!(ok("138-148/148"), ByteRange::new(138, Some(148), Some(148)));
        for bad in ["0-1/1", "*-1/1", "1-2", "1-99999999999999999999/*", "3-1/5", "1-9/5", "x-1/1", "1-/1"] {
            assert!(ByteRange::decode(bad).is_err(), "{bad} must be rejected");
        }
        assert_eq!(ByteRange::new(1, None, Some(5000)).encode(), "1-*/5000");
    }

    // R4975-9-8, R4975-9-12: every report value, case-insensitively; anything else is malformed.
    #[test]
    fn report_values() {
        assert_eq!(SuccessReport::decode("yes"), Ok(SuccessReport::Yes));
        assert_eq!(SuccessReport::decode("No"), Ok(SuccessReport::No));
        assert_eq!(FailureReport::decode("yes"), Ok(FailureReport::Yes));
        assert_eq!(FailureReport::decode("no"), Ok(FailureReport::No));
        assert_eq!(FailureReport::decode("PARTIAL"), Ok(FailureReport::Partial));
        assert!(FailureReport::decode("maybe").is_err());
        assert!(SuccessReport::decode("partial").is_err());
    }

    // R4975-9-10
    #[test]
    fn status_parses_namespace_code_comment() {
        assert_eq!(Status::decode("000 200 OK"), Ok(Status { namespace: 0, code: 200, comment: Some("OK".into()) }));
        assert_eq!(Status::decode("000 413"), Ok(Status::new(413, None)));
        assert!(Status::decode("00 200 OK").is_err());
        assert!(Status::decode("000 2000").is_err());
        assert_eq!(Status::new(200, Some("OK".into())).encode(), "000 200 OK");
    }

    // Issue 12 §2.3, R4975-7.3.2-2: only namespace 000 carries MSRP codes.
    #[test]
    fn only_namespace_000_carries_an_msrp_code() {
        assert_eq!(Status::decode("000 500 Whatever").map(|s| s.msrp_code()), Ok(Some(500)));
        assert_eq!(Status::decode("999 500 Whatever").map(|s| s.msrp_code()), Ok(None));
    }

    // R4975-9-3
    #[test]
    fn message_id_is_an_ident() {
        assert!(MessageId::decode("6aef").is_ok());
        assert!(MessageId::decode(&"a".repeat(32)).is_ok());
        assert!(MessageId::decode("a.b-c+d%e=f").is_ok());
        for bad in ["abc", &"a".repeat(33), "-abc", "ab cd"] {
            assert!(MessageId::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_headers_round_trip() {
        let text = r#"Digest realm="intra.example.com", qop="auth", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#;
        let challenge = WwwAuthenticate::decode(text).expect("parses");
        assert_eq!(challenge.scheme, "Digest");
        assert_eq!(challenge.params.get("nonce"), Some("dcd98b7102dd2f0e8b11d0f600bfb0c093"));
        assert_eq!(challenge.encode(), text);
        let info = AuthenticationInfo::decode(r#"nextnonce="x1", rspauth="ab""#).expect("parses");
        assert_eq!(info.0.get("rspauth"), Some("ab"));
    }

    #[test]
    fn mime_headers() {
        let disposition = ContentDisposition::decode(r#"attachment; filename="my file.txt"; size=12"#).expect("parses");
        assert_eq!(disposition.disposition, "attachment");
        assert_eq!(disposition.params, vec![("filename".into(), "my file.txt".into()), ("size".into(), "12".into())]);
        assert_eq!(disposition.encode(), r#"attachment; filename="my file.txt"; size=12"#);
        assert_eq!(ContentType::decode("Text/Plain; charset=utf-8").expect("parses").essence(), "text/plain");
        assert!(ContentType::decode("textplain").is_err());
        assert_eq!(UseNickname::decode(r#""Alice the great""#), Ok(UseNickname("Alice the great".into())));
        assert_eq!(UseNickname("a\"b".into()).encode(), r#""a\"b""#);
        assert_eq!(Expires::decode("600"), Ok(Expires(600)));
        assert!(MinExpires::decode("-1").is_err());
    }

    #[test]
    fn path_headers_decode_every_uri() {
        let path = ToPath::decode("msrp://a.example.com:1/x;tcp  msrps://b.example.com:2/y;ws").expect("parses");
        assert_eq!(path.0.len(), 2);
        assert_eq!(path.encode(), "msrp://a.example.com:1/x;tcp msrps://b.example.com:2/y;ws");
        assert!(matches!(FromPath::decode("msrp://h:1/s"), Err(HeaderError::Uri { name: "From-Path", .. })));
    }
}
