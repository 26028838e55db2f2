//! MSRP header fields: the raw, ordered list a chunk carries and the typed view of each known header.
//!
//! A [`Chunk`](crate::Chunk) stores its headers as [`HeaderField`]s: a [`HeaderName`]
//! and the value exactly as received, as a zero-copy [`Bytes`] slice. Nothing is
//! decoded until asked: a relay that only forwards a chunk never parses its URIs.
//! Typed access goes through the [`Header`] trait, one type per header of the spec
//! (`ToPathHeader` … `ContentDispositionHeader` in msrplib), each built from its
//! encoded text ([`Header::decode`]) or from its decoded value (the type's own fields).

mod params;
mod typed;

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

pub use params::{AuthParam, AuthParams};
pub use typed::{
    AuthenticationInfo, Authorization, ByteRange, ContentDescription, ContentDisposition, ContentId, ContentType,
    Expires, FailureReport, FromPath, KeepAlive, MaxExpires, MessageId, MinExpires, Status, SuccessReport, ToPath,
    UseNickname, UsePath, WwwAuthenticate,
};

pub(crate) use typed::is_ident;

use crate::uri::UriError;

/// A typed MSRP header.
///
/// The value type is the header type itself: build it from its decoded form with
/// the type's constructor or fields, or from the wire text with [`Header::decode`].
pub trait Header: Sized {
    /// The header's name, as it appears in chunks.
    const NAME: HeaderName;

    /// Parses the header value (the text after `Name: `).
    fn decode(value: &str) -> Result<Self, HeaderError>;

    /// The header value as it is written in a chunk (without the name).
    fn encode(&self) -> String;
}

/// A problem with one header, or with the set of headers a chunk carries.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A header the chunk must carry is absent.
    #[error("the {0} header is missing")]
    Missing(&'static str),
    /// A header value does not follow its grammar.
    #[error("invalid {name} header value {value:?}: {reason}")]
    Invalid {
        /// The header's name.
        name: &'static str,
        /// The value as received (cut to 200 bytes).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A URI in a path header is not a valid MSRP URI.
    #[error("invalid URI in {name}: {source}")]
    Uri {
        /// The header's name.
        name: &'static str,
        /// Why the URI was rejected.
        source: UriError,
    },
    /// A header the chunk must not carry (e.g. Failure-Report in a REPORT).
    #[error("the {name} header is not allowed here: {reason}")]
    NotAllowed {
        /// The header's name.
        name: &'static str,
        /// Why it is not allowed.
        reason: &'static str,
    },
    /// To-Path and From-Path must be the first and second header (RFC 4975 §9).
    #[error("To-Path must be the first header and From-Path the second")]
    WrongOrder,
    /// A chunk carries a body but no Content-Type (RFC 4975 §7.1).
    #[error("the chunk has a body but no Content-Type header")]
    MissingContentType,
    /// A non-SEND request body is over the limit (10240 octets in RFC 4975 §7.1).
    #[error("a {method} body of {size} octets is over the {limit}-octet limit")]
    BodyTooLarge {
        /// The request method.
        method: String,
        /// The body size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl HeaderError {
    pub(crate) fn invalid(name: &'static str, value: &str, reason: &'static str) -> Self {
        let mut cut = value.len().min(200);
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        Self::Invalid { name, value: value[..cut].to_owned(), reason }
    }
}

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $text:literal, $rank:expr; )*) => {
        /// The name of a header field: one of the known headers, or any other name as written.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any other header, with its name as written (compared case-insensitively).
            Other(ExtensionName),
        }

        impl HeaderName {
            /// The canonical spelling of the name.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )*
                    Self::Other(name) => name.as_str(),
                }
            }

            /// Looks up a known name case-insensitively (RFC 4975 §9: header names are
            /// case-insensitive); any other valid name becomes [`HeaderName::Other`].
            pub fn from_bytes(name: &[u8]) -> Option<Self> {
                $( if name.eq_ignore_ascii_case($text.as_bytes()) { return Some(Self::$variant); } )*
                let valid = name.first().is_some_and(u8::is_ascii_alphabetic)
                    && name.iter().all(|&b| crate::uri::is_token_char(b));
                let text = std::str::from_utf8(name).ok().filter(|_| valid)?;
                Some(Self::Other(ExtensionName(text.into())))
            }

            /// The name of a known header as a `&'static str` (for error messages).
            pub(crate) fn static_name(&self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )*
                    Self::Other(_) => "extension",
                }
            }

            /// Where the encoder puts this header: To-Path, From-Path, other MSRP
            /// headers, MIME headers, Content-Type (RFC 4975 §7.1, §9).
            pub(crate) fn rank(&self) -> u8 {
                match self {
                    $( Self::$variant => $rank, )*
                    Self::Other(name) => {
                        let name = name.as_str();
                        let is_mime = name.len() > 8 && name.as_bytes()[..8].eq_ignore_ascii_case(b"content-");
                        if is_mime { 3 } else { 2 }
                    }
                }
            }
        }
    };
}

header_names! {
    /// `To-Path`.
    ToPath => "To-Path", 0;
    /// `From-Path`.
    FromPath => "From-Path", 1;
    /// `Message-ID`.
    MessageId => "Message-ID", 2;
    /// `Success-Report`.
    SuccessReport => "Success-Report", 2;
    /// `Failure-Report`.
    FailureReport => "Failure-Report", 2;
    /// `Byte-Range`.
    ByteRange => "Byte-Range", 2;
    /// `Content-Type`: always the last header.
    ContentType => "Content-Type", 4;
    /// `Status`.
    Status => "Status", 2;
    /// `Expires` (RFC 4976).
    Expires => "Expires", 2;
    /// `Min-Expires` (RFC 4976).
    MinExpires => "Min-Expires", 2;
    /// `Max-Expires` (RFC 4976).
    MaxExpires => "Max-Expires", 2;
    /// `Use-Path` (RFC 4976).
    UsePath => "Use-Path", 2;
    /// `WWW-Authenticate` (RFC 4976).
    WwwAuthenticate => "WWW-Authenticate", 2;
    /// `Authorization` (RFC 4976).
    Authorization => "Authorization", 2;
    /// `Authentication-Info` (RFC 4976).
    AuthenticationInfo => "Authentication-Info", 2;
    /// `Keep-Alive` (msrplib keepalive SEND).
    KeepAlive => "Keep-Alive", 2;
    /// `Use-Nickname` (RFC 7701).
    UseNickname => "Use-Nickname", 2;
    /// `Content-ID`.
    ContentId => "Content-ID", 3;
    /// `Content-Description`.
    ContentDescription => "Content-Description", 3;
    /// `Content-Disposition`.
    ContentDisposition => "Content-Disposition", 3;
}

impl HeaderName {
    /// Case-insensitive comparison, so `X-Foo` and `x-foo` are the same header.
    pub fn matches(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Other(a), Self::Other(b)) => a.as_str().eq_ignore_ascii_case(b.as_str()),
            _ => self == other,
        }
    }
}

/// The name of an extension header or method, checked against its grammar when it was
/// made ([`HeaderName::from_bytes`], [`Method::from_bytes`](crate::Method::from_bytes)), so
/// it can always be written into a frame. The one name made otherwise, the invalid method
/// kept in the head of a [`BadMethod`](crate::codec::ParseErrorKind::BadMethod) error,
/// holds no control characters, so it too can be written into a frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtensionName(pub(crate) Box<str>);

impl ExtensionName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header value as received or set: UTF-8 text held in [`Bytes`] (a slice of the
/// read buffer when decoded, so keeping it costs no copy).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HeaderValue(Bytes);

impl HeaderValue {
    /// Wraps bytes that are RFC 4975 `utf8text`: UTF-8 without control characters other
    /// than HTAB (so without CR or LF). One pass over ASCII, the usual case.
    pub fn from_bytes(bytes: Bytes) -> Option<Self> {
        // A branch-free OR over all bytes, which the compiler turns into vector code.
        let controls = bytes.iter().fold(0u8, |found, &b| found | u8::from((b < 0x20 && b != b'\t') || b == 0x7f));
        if controls != 0 || (!bytes.is_ascii() && std::str::from_utf8(&bytes).is_err()) {
            return None;
        }
        Some(Self(bytes))
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        // Every constructor checked UTF-8; a failure here is a broken invariant of this type.
        std::str::from_utf8(&self.0).expect("HeaderValue holds UTF-8 by construction")
    }

    /// The raw bytes of the value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for HeaderValue {
    /// Control characters (CR and LF would break the frame) become spaces; HTAB stays.
    fn from(text: String) -> Self {
        if text.chars().any(is_forbidden_in_value) {
            return Self(Bytes::from(text.replace(is_forbidden_in_value, " ")));
        }
        Self(Bytes::from(text))
    }
}

fn is_forbidden_in_value(c: char) -> bool {
    c != '\t' && c.is_ascii_control()
}

impl From<&str> for HeaderValue {
    fn from(text: &str) -> Self {
        Self::from(text.to_owned())
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header line: name and raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// The header name.
    pub name: HeaderName,
    /// The value as written on the wire.
    pub value: HeaderValue,
}

/// The headers of a chunk, in the order they were received or added.
/// Unknown headers are kept; lookups are case-insensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<HeaderField>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of header fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no header fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// All fields in order.
    pub fn iter(&self) -> std::slice::Iter<'_, HeaderField> {
        self.fields.iter()
    }

    /// The raw value of the first header with this name.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.fields.iter().find(|field| field.name.matches(name)).map(|field| &field.value)
    }

    /// The typed value of a header: `None` when absent, `Some(Err)` when it does not parse.
    pub fn typed<H: Header>(&self) -> Option<Result<H, HeaderError>> {
        self.get(&H::NAME).map(|value| H::decode(value.as_str()))
    }

    /// Appends a field, keeping any earlier one of the same name.
    pub fn append(&mut self, name: HeaderName, value: impl Into<HeaderValue>) {
        self.fields.push(HeaderField { name, value: value.into() });
    }

    /// Sets a header: replaces the first field of that name (dropping later ones) or appends.
    pub fn set(&mut self, name: HeaderName, value: impl Into<HeaderValue>) {
        let value = value.into();
        match self.fields.iter().position(|field| field.name.matches(&name)) {
            Some(index) => {
                self.fields[index].value = value;
                let mut seen = 0usize;
                self.fields.retain(|field| {
                    if field.name.matches(&name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.fields.push(HeaderField { name, value }),
        }
    }

    /// Sets a typed header (see [`Headers::set`]).
    pub fn set_typed<H: Header>(&mut self, header: &H) {
        self.set(H::NAME, header.encode());
    }

    /// Removes every field of that name; returns whether one was there.
    pub fn remove(&mut self, name: &HeaderName) -> bool {
        let before = self.fields.len();
        self.fields.retain(|field| !field.name.matches(name));
        before != self.fields.len()
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.fields.reserve(additional);
    }

    pub(crate) fn push_field(&mut self, field: HeaderField) {
        self.fields.push(field);
    }

    pub(crate) fn fields(&self) -> &[HeaderField] {
        &self.fields
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a HeaderField;
    type IntoIter = std::slice::Iter<'a, HeaderField>;

    fn into_iter(self) -> Self::IntoIter {
        self.fields.iter()
    }
}
