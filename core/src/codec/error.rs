//! What the decoder reports when input breaks the rules.

use std::fmt;

use thiserror::Error;

use crate::chunk::Chunk;
use crate::header::HeaderError;
use crate::transport::response_to;

/// What was wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The first line is not `MSRP <transaction-id> <method or status>`.
    BadStartLine(&'static str),
    /// The start line is fine up to the method, which is not `1*UPALPHA` (e.g. `send`).
    BadMethod,
    /// A line is longer than the limit.
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A line ends in LF without CR.
    BareLineFeed,
    /// A header line is not `Name: value`, or its value is not UTF-8 text.
    BadHeaderLine,
    /// More header lines than the limit.
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// A path header holds more URIs than the limit.
    PathTooLong {
        /// The header's name.
        header: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A header is missing, misplaced or invalid.
    Header(HeaderError),
    /// Byte-Range announces a message larger than the configured maximum.
    MessageTooLarge {
        /// The announced size or position.
        announced: u64,
        /// The limit.
        limit: u64,
    },
    /// A request other than SEND carries a body larger than the limit.
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A response carries a body (RFC 4975 §7.2: responses have none).
    ResponseWithBody,
    /// A line of seven dashes in the header section does not name the chunk's transaction
    /// id and flag (RFC 4975 §7.1: the end-line repeats the start line's id). The chunk
    /// ends there.
    WrongEndLine,
    /// A start line came where the chunk's header section should go on: the chunk before
    /// it has no end-line.
    MissingEndLine,
    /// The connection ended in the middle of a chunk.
    Truncated,
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadStartLine(why) => write!(f, "bad start line: {why}"),
            Self::BadMethod => f.write_str("the method is not an upper-case word"),
            Self::LineTooLong { limit } => write!(f, "line longer than {limit} bytes"),
            Self::BareLineFeed => f.write_str("line ends in LF without CR"),
            Self::BadHeaderLine => f.write_str("header line is not 'Name: value' in UTF-8"),
            Self::TooManyHeaders { limit } => write!(f, "more than {limit} headers"),
            Self::PathTooLong { header, limit } => {
                write!(f, "{header} holds more than {limit} URIs")
            }
            Self::Header(error) => write!(f, "{error}"),
            Self::MessageTooLarge { announced, limit } => {
                write!(f, "Byte-Range announces {announced} bytes, over the {limit}-byte limit")
            }
            Self::BodyTooLarge { limit } => {
                write!(f, "body over the {limit}-byte limit for this method")
            }
            Self::ResponseWithBody => f.write_str("a response carries a body"),
            Self::WrongEndLine => f.write_str("the end-line does not name the chunk's transaction id"),
            Self::MissingEndLine => f.write_str("a new chunk began before the end-line of the last one"),
            Self::Truncated => f.write_str("the connection ended inside a chunk"),
        }
    }
}

/// A decoding error: what was wrong, where, and what a receiver should do about it.
///
/// Two kinds exist. When framing is lost ([`ChunkParseError::closes_connection`]) the
/// decoder stops and the connection must be closed. Otherwise only this chunk is
/// bad: the decoder skips the rest of it and goes on with the next one, and
/// [`ChunkParseError::status`] says which response to send (400 or 413), if any.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind} at byte {offset}{}", self.transaction_id.as_ref().map(|t| format!(" (transaction {t})")).unwrap_or_default())]
pub struct ChunkParseError {
    /// What was wrong.
    pub kind: ParseErrorKind,
    /// Where: the stream offset of the start of the offending line (or of the body byte
    /// that crossed a limit).
    pub offset: u64,
    /// The transaction id, when the start line was readable.
    pub transaction_id: Option<String>,
    /// The start line and the headers read before the error, for building a response.
    /// After [`ParseErrorKind::BadMethod`] its method is the invalid one as written (a
    /// [`Method::Other`](crate::Method::Other)), and there is none when that "method" was
    /// a malformed status code: a response is never answered.
    pub head: Option<Box<Chunk>>,
    pub(crate) fatal: bool,
}

impl ChunkParseError {
    /// Whether the decoder lost the framing: the connection must be closed.
    pub fn closes_connection(&self) -> bool {
        self.fatal
    }

    /// The MSRP status a receiver should answer the bad request with: 413 for
    /// size limits, 400 otherwise.
    ///
    /// `Some` exactly when that response can be sent: the error carries the
    /// [`head`](Self::head) of a request with a From-Path to address it to. So `None`
    /// when framing is lost, when the chunk is a response or a REPORT (neither is ever
    /// answered), when it asked for no response at all with `Failure-Report: no` (RFC
    /// 4975 §7.1.4), or when it has no From-Path. A status is never promised that no
    /// response could carry (issue 12 §2.7).
    pub fn status(&self) -> Option<u16> {
        if self.fatal {
            return None;
        }
        let code = match self.kind {
            ParseErrorKind::MessageTooLarge { .. } | ParseErrorKind::BodyTooLarge { .. } => 413,
            _ => 400,
        };
        let head = self.head.as_deref()?;
        response_to(head, code, None, "").map(|_| code)
    }
}
