//! Property tests of the chunk codec (RFC 4975 §7, §9) and of MSRP URIs (§6).
//!
//! 1. `encode_then_decode_is_identity`: one generated chunk, encoded, split at
//!    random and decoded with `poll()`, comes back equal.
//! 2. `concatenated_chunks_decode_in_order`: the same for several chunks in one stream.
//! 3. `poll_chunk_segments_reassemble`: `poll_chunk(Some(hint))` cuts long bodies
//!    into virtual segments that concatenate back, with contiguous Byte-Ranges.
//! 4. `decoding_is_split_independent_and_never_panics`: garbage, truncated and
//!    mutated streams decode the same in one piece and in many, and nothing comes
//!    after an error that closes the connection.
//! 5. `uri_display_parse_round_trip` and `uri_parse_arbitrary_text`.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{Bytes, BytesMut};
use msrp_core::codec::{ChunkParseError, Decoded, Decoder, DecoderLimits};
use msrp_core::header::{
    AuthParams, AuthenticationInfo, Authorization, ByteRange, ContentDisposition, Expires, FromPath, MaxExpires,
    MinExpires, Status, ToPath, UseNickname, UsePath, WwwAuthenticate,
};
use msrp_core::{Chunk, ContinuationFlag, Header, HeaderName, Headers, Method, StartLine, Uri};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{RngAlgorithm, RngSeed, TestCaseError};

// ---------------------------------------------------------------------------
// Generators: identifiers, header values, URIs
// ---------------------------------------------------------------------------

/// RFC 4975 `ident` (R4975-9-3, transaction ids and Message-IDs): 4 to 32 characters,
/// the first alphanumeric, then `ALPHANUM . - + % =`.
fn ident() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.+%=-]{3,31}"
}

fn flag() -> impl Strategy<Value = ContinuationFlag> {
    prop_oneof![Just(ContinuationFlag::End), Just(ContinuationFlag::More), Just(ContinuationFlag::Abort)]
}

/// RFC 4975 `token`.
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}"
}

/// Free header text as a sender writes it: no control characters but tab, and no
/// blanks at either end (a receiver drops those, RFC 4975 §9 `hval`).
fn text(max: usize) -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            8 => (0x20u8..0x7f).prop_map(char::from),
            1 => Just('\t'),
            1 => any::<char>().prop_filter("control character", |c| !c.is_control()),
        ],
        0..=max,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>().trim_matches([' ', '\t']).to_owned())
}

/// The contents of a quoted string: any character but controls other than tab.
fn quoted_text(min: usize, max: usize) -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            6 => (0x20u8..0x7f).prop_map(char::from),
            1 => prop_oneof![Just('"'), Just('\\'), Just('\t')],
            1 => any::<char>().prop_filter("control character", |c| !c.is_control()),
        ],
        min..=max,
    )
    .prop_map(String::from_iter)
}

/// A host name (RFC 3986 reg-name: unreserved, pct-encoded, sub-delims but `;`).
fn host_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9-]{0,10}(\\.[A-Za-z][A-Za-z0-9-]{0,10}){0,3}",
        1 => "([A-Za-z0-9._~!$&'()*+,=-]|%[0-9A-Fa-f]{2}){1,20}"
            .prop_filter("an IPv4 address needs a port", |host| host.parse::<Ipv4Addr>().is_err()),
    ]
}

/// A valid MSRP URI (RFC 4975 §6, R4975-6-1): name, IPv4 or IPv6 host (IP addresses
/// always with a port, R4975-6-2), optional user, session id, transport and parameters.
fn uri() -> BoxedStrategy<Uri> {
    let host = prop_oneof![
        3 => (host_name(), option::of(any::<u16>())),
        1 => (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(octets, port)| (Ipv4Addr::from(octets).to_string(), Some(port))),
        1 => (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(segments, port)| (Ipv6Addr::from(segments).to_string(), Some(port))),
    ];
    let user = "([A-Za-z0-9._~!$&'()*+,=-]|%[0-9A-Fa-f]{2}){1,12}";
    let session_id = "[A-Za-z0-9._~+=/-]{1,24}";
    let transport = prop_oneof![Just("tcp".to_owned()), Just("ws".to_owned()), "[A-Za-z0-9]{1,8}"];
    let parameters = vec((token(), option::of(token())), 0..3);
    (any::<bool>(), option::of(user), host, option::of(session_id), transport, parameters)
        .prop_map(|(use_tls, user, (host, port), session_id, transport, parameters)| {
            let mut uri = Uri::new(host).with_tls(use_tls);
            uri.port = port;
            uri.user = user;
            uri.session_id = session_id;
            uri.transport = transport;
            uri.parameters = parameters;
            uri
        })
        .boxed()
}

/// Every field of a URI (`PartialEq` ignores user and parameters, RFC 4975 §6.1).
#[allow(clippy::type_complexity)]
fn uri_fields(
    uri: &Uri,
) -> (String, bool, Option<String>, Option<u16>, Option<String>, String, Vec<(String, Option<String>)>) {
    (
        uri.host.clone(),
        uri.use_tls,
        uri.user.clone(),
        uri.port,
        uri.session_id.clone(),
        uri.transport.clone(),
        uri.parameters.clone(),
    )
}

fn path() -> impl Strategy<Value = Vec<Uri>> {
    vec(uri(), 1..=3)
}

fn byte_range() -> impl Strategy<Value = ByteRange> {
    // R4975-9-9: start >= 1, start - 1 <= end <= total, start <= total + 1.
    (1u64..=1_000_000, option::of(0u64..=100_000), option::of(0u64..=100_000)).prop_map(|(start, len, extra)| {
        let end = len.map(|len| start - 1 + len);
        let total = extra.map(|extra| end.unwrap_or(start - 1) + extra);
        ByteRange::new(start, end, total)
    })
}

fn content_type() -> impl Strategy<Value = String> {
    "[A-Za-z]{1,8}/[A-Za-z0-9.+-]{1,12}(; ?[a-z]{1,8}=[A-Za-z0-9-]{1,8}){0,2}"
}

fn auth_params() -> impl Strategy<Value = AuthParams> {
    let value = prop_oneof![token().prop_map(|v| (v, false)), quoted_text(0, 24).prop_map(|v| (v, true))];
    vec((token(), value), 1..=4).prop_map(|params| {
        let mut out = AuthParams::default();
        for (name, (value, quoted)) in params {
            out.push(name, value, quoted);
        }
        out
    })
}

fn status() -> impl Strategy<Value = Status> {
    (0u16..=999, 100u16..=999, text(30)).prop_map(|(namespace, code, comment)| {
        let mut status = Status::new(code, (!comment.is_empty()).then_some(comment));
        status.namespace = namespace;
        status
    })
}

// ---------------------------------------------------------------------------
// Generators: chunks
// ---------------------------------------------------------------------------

type Field = (HeaderName, String);

/// Where the encoder puts a header (RFC 4975 §7.1, §9: To-Path, From-Path, other
/// headers, MIME headers, Content-Type last). Mirrors `HeaderName::rank`.
fn rank(name: &HeaderName) -> u8 {
    match name {
        HeaderName::ToPath => 0,
        HeaderName::FromPath => 1,
        HeaderName::ContentId | HeaderName::ContentDescription | HeaderName::ContentDisposition => 3,
        HeaderName::ContentType => 4,
        HeaderName::Other(name)
            if name.as_str().len() > 8 && name.as_str().as_bytes()[..8].eq_ignore_ascii_case(b"content-") =>
        {
            3
        }
        _ => 2,
    }
}

/// An extension header name that is not one of the known ones (R4975-12-1: ignored, so kept as is).
fn extension_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        3 => "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,15}",
        1 => "[Cc]ontent-[A-Za-z0-9-]{0,10}",
    ]
    .prop_filter_map("a known header name", |name| match HeaderName::from_bytes(name.as_bytes()) {
        Some(name @ HeaderName::Other(_)) => Some(name),
        _ => None,
    })
}

/// What every kind of chunk may carry besides its own headers.
#[derive(Debug, Clone)]
struct Common {
    transaction_id: String,
    to: Vec<Uri>,
    from: Vec<Uri>,
    extra: Vec<Field>,
    order: [u8; 32],
    flag: ContinuationFlag,
}

fn common() -> BoxedStrategy<Common> {
    let msrp = (
        option::of(ident()),
        option::of(select(vec!["yes", "no", "Yes"])),
        option::of(select(vec!["yes", "no", "partial", "PARTIAL"])),
        option::of(byte_range()),
        option::of(select(vec!["yes", "no"])),
    )
        .prop_map(|(message_id, success, failure, range, keep_alive)| {
            let mut fields = Vec::new();
            fields.extend(message_id.map(|id| (HeaderName::MessageId, id)));
            fields.extend(success.map(|v| (HeaderName::SuccessReport, v.to_owned())));
            fields.extend(failure.map(|v| (HeaderName::FailureReport, v.to_owned())));
            fields.extend(range.map(|range| (HeaderName::ByteRange, range.encode())));
            fields.extend(keep_alive.map(|v| (HeaderName::KeepAlive, v.to_owned())));
            fields
        });
    let disposition = (token(), vec((token(), quoted_text(0, 12)), 0..3))
        .prop_map(|(disposition, params)| ContentDisposition { disposition, params }.encode());
    let mime = (
        option::of((ident(), host_name()).prop_map(|(id, host)| format!("<{id}@{host}>"))),
        option::of(text(40)),
        option::of(disposition),
    )
        .prop_map(|(id, description, disposition)| {
            let mut fields = Vec::new();
            fields.extend(id.map(|v| (HeaderName::ContentId, v)));
            fields.extend(description.map(|v| (HeaderName::ContentDescription, v)));
            fields.extend(disposition.map(|v| (HeaderName::ContentDisposition, v)));
            fields
        });
    let extensions = vec((extension_name(), text(30)), 0..4);
    (ident(), path(), path(), msrp, mime, extensions, any::<[u8; 32]>(), flag())
        .prop_map(|(transaction_id, to, from, msrp, mime, extensions, order, flag)| {
            let mut extra = msrp;
            extra.extend(mime);
            extra.extend(extensions);
            Common { transaction_id, to, from, extra, order, flag }
        })
        .boxed()
}

/// Text a body may hold that looks like an end-line without being this chunk's one.
#[derive(Debug, Clone)]
enum Trap {
    /// `\r\n-------<other tid><flag>\r\n`: another transaction's end-line.
    OtherEndLine(String, ContinuationFlag),
    /// `\r\n-------<tid>` and a byte that is not a flag.
    NoFlag(u8),
    /// `\r\n-------<tid><flag>` and a byte that is not CR.
    FlagWithoutCrlf(ContinuationFlag, u8),
    /// `\r\n-------<tid><flag>\r` and a byte that is not LF.
    FlagWithoutLf(ContinuationFlag, u8),
    /// `\r\n-------` and a prefix of the tid.
    TidPrefix(Index),
    /// `-------<tid><flag>\r\n` without the CRLF in front.
    WithoutLeadingCrlf(ContinuationFlag),
}

impl Trap {
    fn bytes(&self, transaction_id: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if !matches!(self, Self::WithoutLeadingCrlf(_)) {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"-------");
        match self {
            Self::OtherEndLine(other, flag) => {
                out.extend_from_slice(other.as_bytes());
                out.push(flag.as_byte());
                out.extend_from_slice(b"\r\n");
            }
            Self::NoFlag(byte) => {
                out.extend_from_slice(transaction_id.as_bytes());
                out.push(*byte);
            }
            Self::FlagWithoutCrlf(flag, byte) => {
                out.extend_from_slice(transaction_id.as_bytes());
                out.push(flag.as_byte());
                out.push(*byte);
            }
            Self::FlagWithoutLf(flag, byte) => {
                out.extend_from_slice(transaction_id.as_bytes());
                out.push(flag.as_byte());
                out.push(b'\r');
                out.push(*byte);
            }
            Self::TidPrefix(len) => {
                let len = len.index(transaction_id.len());
                out.extend_from_slice(&transaction_id.as_bytes()[..len]);
            }
            Self::WithoutLeadingCrlf(flag) => {
                out.extend_from_slice(transaction_id.as_bytes());
                out.push(flag.as_byte());
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }
}

fn trap() -> impl Strategy<Value = Trap> {
    let not_flag = any::<u8>().prop_filter("a flag", |b| ContinuationFlag::from_byte(*b).is_none());
    prop_oneof![
        (ident(), flag()).prop_map(|(tid, flag)| Trap::OtherEndLine(tid, flag)),
        not_flag.prop_map(Trap::NoFlag),
        (flag(), any::<u8>().prop_filter("CR", |b| *b != b'\r')).prop_map(|(f, b)| Trap::FlagWithoutCrlf(f, b)),
        (flag(), any::<u8>().prop_filter("LF", |b| *b != b'\n')).prop_map(|(f, b)| Trap::FlagWithoutLf(f, b)),
        any::<Index>().prop_map(Trap::TidPrefix),
        flag().prop_map(Trap::WithoutLeadingCrlf),
    ]
}

/// A body: bytes weighted towards CR, LF, `-` and NUL, or a large pseudo-random one,
/// with traps inserted at random places.
#[derive(Debug, Clone)]
struct BodySpec {
    base: BaseBody,
    traps: Vec<(Index, Trap)>,
}

#[derive(Debug, Clone)]
enum BaseBody {
    Bytes(Vec<u8>),
    /// Generated from a seed so that a 64 KiB body stays cheap to generate and shrink.
    Large {
        seed: u64,
        len: usize,
    },
}

fn body_byte() -> impl Strategy<Value = u8> {
    prop_oneof![6 => any::<u8>(), 1 => Just(b'\r'), 1 => Just(b'\n'), 1 => Just(b'-'), 1 => Just(0u8)]
}

fn body(max: usize, large: bool) -> BoxedStrategy<BodySpec> {
    let small = vec(body_byte(), 0..=max.min(512)).prop_map(BaseBody::Bytes);
    let medium = vec(body_byte(), 0..=max).prop_map(BaseBody::Bytes);
    let base = if large {
        let big = (any::<u64>(), (max + 1)..=65536).prop_map(|(seed, len)| BaseBody::Large { seed, len });
        prop_oneof![8 => small, 3 => medium, 1 => big].boxed()
    } else {
        prop_oneof![3 => small, 1 => medium].boxed()
    };
    let traps = prop_oneof![1 => Just(Vec::new()), 2 => vec((any::<Index>(), trap()), 1..=4)];
    (base, traps).prop_map(|(base, traps)| BodySpec { base, traps }).boxed()
}

fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            match z as u8 {
                0..=7 => b'\r',
                8..=15 => b'\n',
                16..=23 => b'-',
                _ => (z >> 8) as u8,
            }
        })
        .collect()
}

impl BodySpec {
    fn realize(&self, transaction_id: &str) -> Vec<u8> {
        let mut out = match &self.base {
            BaseBody::Bytes(bytes) => bytes.clone(),
            BaseBody::Large { seed, len } => pseudo_random_bytes(*seed, *len),
        };
        for (at, trap) in &self.traps {
            let at = at.index(out.len() + 1);
            out.splice(at..at, trap.bytes(transaction_id));
        }
        out
    }
}

/// Whether the encoded chunk can be framed (R4975-7.1-8: the sender must make sure the
/// end-line does not occur in the body), as the library's sender-side check says.
fn body_is_framable(chunk: &Chunk) -> bool {
    !chunk.body_contains_end_line()
}

fn assemble(
    common: Common,
    start_line: StartLine,
    own: Vec<Field>,
    content_type: Option<String>,
    body: &[u8],
) -> Chunk {
    let mut chunk = Chunk::request(common.transaction_id, Method::Send);
    chunk.start_line = start_line;
    let mut fields: Vec<(u8, u8, usize, Field)> = own
        .into_iter()
        .chain(common.extra)
        .enumerate()
        .map(|(i, field)| (rank(&field.0), common.order[i % 32], i, field))
        .collect();
    fields.sort_by_key(|(rank, key, i, _)| (*rank, *key, *i));
    chunk.headers.append(HeaderName::ToPath, ToPath(common.to).encode());
    chunk.headers.append(HeaderName::FromPath, FromPath(common.from).encode());
    for (_, _, _, (name, value)) in fields {
        chunk.headers.append(name, value);
    }
    if let Some(content_type) = content_type {
        chunk.headers.append(HeaderName::ContentType, content_type);
    }
    chunk.data = Bytes::copy_from_slice(body);
    chunk.contflag = common.flag;
    chunk
}

/// A chunk of any kind the codec handles; `large` allows bodies up to 64 KiB.
fn chunk_with(large: bool) -> BoxedStrategy<Chunk> {
    // SEND with a binary body (R4975-9-14: bodies are opaque octets; R4975-7.1-3, R4975-7.1-6).
    let send_body = (common(), content_type(), body(4096, large)).prop_map(|(common, content_type, body)| {
        let body = body.realize(&common.transaction_id);
        assemble(common, StartLine::Request(Method::Send), Vec::new(), Some(content_type), &body)
    });
    // SEND with an empty body: Content-Type, blank line, CRLF, end-line (R4975-7.1-5).
    let send_empty = (common(), content_type()).prop_map(|(common, content_type)| {
        assemble(common, StartLine::Request(Method::Send), Vec::new(), Some(content_type), b"")
    });
    // Bodiless SEND (R4975-7.1-4: no Content-Type, the end-line follows the headers).
    let send_bodiless =
        common().prop_map(|common| assemble(common, StartLine::Request(Method::Send), Vec::new(), None, b""));
    // REPORT with Status and Message-ID (R4975-7.1.2-1, R4975-9-10).
    let report = (common(), status(), ident()).prop_map(|(common, status, message_id)| {
        let own = vec![(HeaderName::Status, status.encode()), (HeaderName::MessageId, message_id)];
        assemble(common, StartLine::Request(Method::Report), own, None, b"")
    });
    // Responses, with and without comment, never with a body (R4975-9-2, R4975-7.2-2).
    let comment =
        vec(any::<char>().prop_filter("line break", |c| *c != '\r' && *c != '\n'), 1..=30).prop_map(String::from_iter);
    let response = (common(), 0u16..=999, option::of(comment)).prop_map(|(common, code, comment)| {
        assemble(common, StartLine::Response { code, comment }, Vec::new(), None, b"")
    });
    // AUTH (RFC 4976) with Digest challenge / credential headers.
    let auth = (
        common(),
        option::of(auth_params()),
        option::of(auth_params()),
        option::of(auth_params()),
        option::of((any::<u32>(), 0u8..3)),
        option::of(path()),
    )
        .prop_map(|(common, challenge, credentials, info, expires, use_path)| {
            let mut own = Vec::new();
            let scheme = "Digest".to_owned();
            if let Some(params) = challenge {
                own.push((HeaderName::WwwAuthenticate, WwwAuthenticate { scheme: scheme.clone(), params }.encode()));
            }
            if let Some(params) = credentials {
                own.push((HeaderName::Authorization, Authorization { scheme, params }.encode()));
            }
            if let Some(params) = info {
                own.push((HeaderName::AuthenticationInfo, AuthenticationInfo(params).encode()));
            }
            match expires {
                Some((seconds, 0)) => own.push((HeaderName::Expires, Expires(seconds.into()).encode())),
                Some((seconds, 1)) => own.push((HeaderName::MinExpires, MinExpires(seconds.into()).encode())),
                Some((seconds, _)) => own.push((HeaderName::MaxExpires, MaxExpires(seconds.into()).encode())),
                None => {}
            }
            if let Some(uris) = use_path {
                own.push((HeaderName::UsePath, UsePath(uris).encode()));
            }
            assemble(common, StartLine::Request(Method::Auth), own, None, b"")
        });
    // NICKNAME with Use-Nickname (RFC 7701).
    let nickname = (common(), quoted_text(1, 40)).prop_map(|(common, nickname)| {
        let own = vec![(HeaderName::UseNickname, UseNickname(nickname).encode())];
        assemble(common, StartLine::Request(Method::Nickname), own, None, b"")
    });
    // Unknown methods (R4975-9-1: upper-case words; `_` as real peers send it),
    // with or without a small body.
    let method =
        "[A-Z][A-Z_]{0,11}".prop_filter_map("a known method", |name| match Method::from_bytes(name.as_bytes()) {
            Some(method @ Method::Other(_)) => Some(method),
            _ => None,
        });
    let other = (common(), method, option::of((content_type(), body(1024, false)))).prop_map(
        |(common, method, body)| match body {
            Some((content_type, body)) => {
                let body = body.realize(&common.transaction_id);
                assemble(common, StartLine::Request(method), Vec::new(), Some(content_type), &body)
            }
            None => assemble(common, StartLine::Request(method), Vec::new(), None, b""),
        },
    );
    prop_oneof![
        6 => send_body,
        1 => send_empty,
        1 => send_bodiless,
        2 => report,
        2 => response,
        1 => auth,
        1 => nickname,
        2 => other,
    ]
    .prop_filter("the body holds its own end-line", body_is_framable)
    .boxed()
}

fn chunk() -> BoxedStrategy<Chunk> {
    chunk_with(true)
}

// ---------------------------------------------------------------------------
// Re-segmentation and decoding
// ---------------------------------------------------------------------------

/// How to cut a byte stream into the pieces fed to the decoder.
#[derive(Debug, Clone)]
enum Split {
    Whole,
    /// One byte per piece (coarser for long streams, to stay fast).
    Singles,
    Fixed(usize),
    /// Cut points: `(from_end, index)`; cuts from the end land near the end-line.
    Cuts(Vec<(bool, Index)>),
    /// Cuts inside or around end-lines: `(which run of dashes, offset from 2 bytes before it)`.
    NearEndLines(Vec<(Index, usize)>),
}

fn split() -> impl Strategy<Value = Split> {
    prop_oneof![
        1 => Just(Split::Whole),
        2 => Just(Split::Singles),
        2 => (1usize..=64).prop_map(Split::Fixed),
        5 => vec((any::<bool>(), any::<Index>()), 1..=24).prop_map(Split::Cuts),
        4 => vec((any::<Index>(), 0usize..=48), 1..=8).prop_map(Split::NearEndLines),
    ]
}

fn pieces(wire: &Bytes, split: &Split) -> Vec<Bytes> {
    let len = wire.len();
    // At most about 8192 pieces, so that a 64 KiB body stays fast in debug builds.
    let floor = len.div_ceil(8192).max(1);
    let mut cuts: Vec<usize> = match split {
        Split::Whole => Vec::new(),
        Split::Singles => (floor..len).step_by(floor).collect(),
        Split::Fixed(n) => {
            let n = (*n).max(floor);
            (n..len).step_by(n).collect()
        }
        Split::Cuts(cuts) => cuts
            .iter()
            .map(|(from_end, at)| if *from_end { len - at.index(len.min(64) + 1) } else { at.index(len + 1) })
            .collect(),
        Split::NearEndLines(cuts) => {
            let dashes: Vec<usize> =
                wire.windows(7).enumerate().filter(|(_, w)| w == b"-------").map(|(i, _)| i).collect();
            if dashes.is_empty() {
                Vec::new()
            } else {
                cuts.iter()
                    .map(|(which, offset)| (dashes[which.index(dashes.len())] + offset).saturating_sub(2).min(len))
                    .collect()
            }
        }
    };
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| wire.slice(w[0]..w[1])).collect()
}

/// One item of `Decoder::poll`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Head(Box<Chunk>),
    Data(Bytes),
    End(ContinuationFlag),
    Error(Box<ChunkParseError>),
}

struct Run {
    events: Vec<Event>,
    idle: bool,
    failed: bool,
}

/// Feeds the pieces in turn, draining `poll()` after each. Checks that nothing follows
/// an error that closes the connection, not even after more input.
fn decode(pieces: &[Bytes], limits: DecoderLimits) -> Result<Run, TestCaseError> {
    let mut decoder = Decoder::new(limits);
    let mut events = Vec::new();
    let mut closed = false;
    for piece in pieces {
        decoder.feed(piece.clone());
        while let Some(item) = decoder.poll() {
            prop_assert!(!closed, "poll() yielded {:?} after an error that closes the connection", item);
            events.push(match item {
                Ok(Decoded::Head(head)) => Event::Head(Box::new(head)),
                Ok(Decoded::Data(data)) => Event::Data(data),
                Ok(Decoded::End(flag)) => Event::End(flag),
                Err(error) => {
                    closed |= error.closes_connection();
                    Event::Error(Box::new(error))
                }
            });
        }
    }
    if closed {
        prop_assert!(decoder.is_failed(), "a connection-closing error left the decoder running");
        decoder.feed(Bytes::from_static(b"MSRP abcd 200 OK\r\nTo-Path: msrp://a:1/s;tcp\r\n"));
        let after = decoder.poll();
        prop_assert!(after.is_none(), "poll() yielded {:?} after a closing error and more input", after);
    }
    Ok(Run { events, idle: decoder.is_idle(), failed: decoder.is_failed() })
}

/// Joins adjacent body slices: how a body is sliced depends on the reads.
fn normalize(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for event in events {
        match (out.last_mut(), event) {
            (Some(Event::Data(previous)), Event::Data(data)) => {
                let mut joined = BytesMut::from(&previous[..]);
                joined.extend_from_slice(&data);
                *previous = joined.freeze();
            }
            (_, event) => out.push(event),
        }
    }
    out
}

/// A short, readable form of a body: its length and its two ends.
fn describe_bytes(data: &[u8]) -> String {
    if data.len() <= 48 {
        return format!("{} bytes {:?}", data.len(), Bytes::copy_from_slice(data));
    }
    let head = Bytes::copy_from_slice(&data[..24]);
    let tail = Bytes::copy_from_slice(&data[data.len() - 24..]);
    format!("{} bytes {head:?} .. {tail:?}", data.len())
}

fn describe(event: &Event) -> String {
    match event {
        Event::Head(head) => {
            format!("Head({} {:?}, {} headers)", head.transaction_id, head.start_line, head.headers.len())
        }
        Event::Data(data) => format!("Data({})", describe_bytes(data)),
        Event::End(flag) => format!("End({flag})"),
        Event::Error(error) => format!(
            "Error({:?} at {}, tid {:?}, closes: {})",
            error.kind,
            error.offset,
            error.transaction_id,
            error.closes_connection()
        ),
    }
}

/// Where two item sequences first differ, readably.
fn event_difference(split: &[Event], whole: &[Event]) -> Option<String> {
    let at = (0..split.len().max(whole.len())).find(|&i| split.get(i) != whole.get(i))?;
    let show = |events: &[Event]| events.get(at).map_or_else(|| "nothing".to_owned(), describe);
    Some(format!(
        "item {at} differs: split input gives {}, one piece gives {} (items: {} vs {})",
        show(split),
        show(whole),
        split.len(),
        whole.len()
    ))
}

/// Where the decoded chunks first differ from the encoded ones, readably.
fn chunk_difference(decoded: &[Chunk], expected: &[Chunk]) -> Option<String> {
    for (index, (got, want)) in decoded.iter().zip(expected).enumerate() {
        let mut got_head = got.clone();
        got_head.data = Bytes::new();
        let mut want_head = want.clone();
        want_head.data = Bytes::new();
        if got_head != want_head {
            return Some(format!("chunk {index}: decoded head {got_head:?}, encoded head {want_head:?}"));
        }
        if got.data != want.data {
            let at = got
                .data
                .iter()
                .zip(&want.data)
                .position(|(a, b)| a != b)
                .unwrap_or(got.data.len().min(want.data.len()));
            return Some(format!(
                "chunk {index} ({}): bodies differ from byte {at}: decoded {}, encoded {}",
                got.transaction_id,
                describe_bytes(&got.data),
                describe_bytes(&want.data)
            ));
        }
    }
    (decoded.len() != expected.len()).then(|| format!("{} chunks decoded, {} encoded", decoded.len(), expected.len()))
}

/// Rebuilds whole chunks from `Head Data* End` and checks that grammar.
fn reassemble(events: Vec<Event>) -> Result<Vec<Chunk>, TestCaseError> {
    let mut chunks = Vec::new();
    let mut current: Option<(Chunk, BytesMut)> = None;
    for event in events {
        match event {
            Event::Head(head) => {
                prop_assert!(current.is_none(), "a Head before the End of the previous chunk");
                prop_assert!(head.data.is_empty(), "a Head carries body bytes");
                current = Some((*head, BytesMut::new()));
            }
            Event::Data(data) => match &mut current {
                Some((_, body)) => body.extend_from_slice(&data),
                None => return Err(TestCaseError::fail("Data outside a chunk")),
            },
            Event::End(flag) => {
                let Some((mut chunk, body)) = current.take() else {
                    return Err(TestCaseError::fail("End outside a chunk"));
                };
                chunk.data = body.freeze();
                chunk.contflag = flag;
                chunks.push(chunk);
            }
            Event::Error(error) => {
                return Err(TestCaseError::fail(format!("decode error: {}", describe(&Event::Error(error)))));
            }
        }
    }
    if let Some((head, body)) = current {
        return Err(TestCaseError::fail(format!(
            "the stream ended inside chunk {} ({} decoded before it); body so far: {}",
            head.transaction_id,
            chunks.len(),
            describe_bytes(&body)
        )));
    }
    Ok(chunks)
}

fn encode_all(chunks: &[Chunk]) -> Bytes {
    let mut wire = BytesMut::new();
    for chunk in chunks {
        wire.extend_from_slice(&chunk.encode());
    }
    wire.freeze()
}

fn decode_chunks(chunks: &[Chunk], split: &Split) -> Result<(), TestCaseError> {
    let wire = encode_all(chunks);
    let run = decode(&pieces(&wire, split), DecoderLimits::default())?;
    let decoded = reassemble(run.events)?;
    if let Some(difference) = chunk_difference(&decoded, chunks) {
        return Err(TestCaseError::fail(difference));
    }
    prop_assert!(run.idle, "the decoder holds bytes after the last end-line");
    Ok(())
}

/// The default limits, or some of them made small so that short inputs reach them.
fn limits() -> impl Strategy<Value = DecoderLimits> {
    let small = (
        option::of(16usize..=120),
        option::of(2usize..=12),
        option::of(1usize..=3),
        option::of(0usize..=64),
        option::of(0u64..=2_000_000),
    )
        .prop_map(|(header_line, headers, path_uris, non_send_body, message_size)| {
            let default = DecoderLimits::default();
            DecoderLimits {
                max_header_line: header_line.unwrap_or(default.max_header_line),
                max_headers: headers.unwrap_or(default.max_headers),
                max_path_uris: path_uris.unwrap_or(default.max_path_uris),
                max_non_send_body: non_send_body.unwrap_or(default.max_non_send_body),
                max_message_size: message_size.unwrap_or(default.max_message_size),
                ..default
            }
        });
    prop_oneof![1 => Just(DecoderLimits::default()), 2 => small]
}

/// Bytes that often appear in MSRP framing.
fn wire_byte() -> impl Strategy<Value = u8> {
    prop_oneof![2 => any::<u8>(), 3 => select(b"MSRP \r\n-$+#:/;abcd0123SEND".to_vec())]
}

/// A line end: mostly CRLF, sometimes a bare LF, a bare CR or nothing.
fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just("\r\n"), 2 => Just("\n"), 1 => Just("\r"), 1 => Just("")]
}

/// Chunk-shaped text, good and bad, with good and bad line ends: streams that get
/// past the start line and into every state and error path of the decoder.
fn chunk_soup() -> impl Strategy<Value = Vec<u8>> {
    let long = format!("X-Long: {}", "x".repeat(100)).leak();
    let start =
        select(vec!["SEND", "REPORT", "NICKNAME", "FILE_OFFSET", "200 OK", "200", "413 too big", "send", "SEND ", ""]);
    let header = select(vec![
        "To-Path: msrp://a.example:1/s;tcp",
        "From-Path: msrp://b.example:2/t;tcp msrp://c.example:3/u;tcp",
        "To-Path: ",
        "Content-Type: text/plain",
        "Content-Type: text/plain",
        "Byte-Range: 1-5/5",
        "Byte-Range: 1-*/99999999",
        "Byte-Range: 9-1/5",
        "Message-ID: abcd",
        "Message-ID: ab",
        "Failure-Report: maybe",
        "Success-Report: yes",
        "Status: 000 200 OK",
        "X-Ext: v",
        "X-Ctl: \u{1}",
        long,
        long,
        long,
        "no colon",
        "-------abcd",
        "-------abcdX",
    ]);
    let body = select(vec!["", "hello", "0123456789012345678901234567890123456789", "a\r\n-------abcd+x", "\r\n"]);
    let flag = select(vec!["$", "+", "#", "", "x"]);
    let chunk = (
        select(vec!["abcd", "efgh", "ab"]),
        start,
        line_end(),
        vec((header, line_end()), 0..6),
        option::of((line_end(), vec((body, line_end()), 0..4))),
        flag,
        line_end(),
    )
        .prop_map(|(tid, start, start_end, headers, body, flag, end)| {
            let mut out = format!("MSRP {tid} {start}{start_end}");
            for (line, line_end) in headers {
                out.push_str(line);
                out.push_str(line_end);
            }
            if let Some((blank, lines)) = body {
                out.push_str(blank);
                for (line, line_end) in lines {
                    out.push_str(line);
                    out.push_str(line_end);
                }
            }
            out.push_str("-------");
            out.push_str(tid);
            out.push_str(flag);
            out.push_str(end);
            out.into_bytes()
        });
    vec(chunk, 1..=4).prop_map(|chunks| chunks.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        (any::<Index>(), wire_byte()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(mut wire: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        match mutation {
            Mutation::Flip(at, mask) if !wire.is_empty() => {
                let at = at.index(wire.len());
                wire[at] ^= mask;
            }
            Mutation::Insert(at, byte) => {
                let at = at.index(wire.len() + 1);
                wire.insert(at, *byte);
            }
            Mutation::Delete(at) if !wire.is_empty() => {
                let at = at.index(wire.len());
                wire.remove(at);
            }
            _ => {}
        }
    }
    wire
}

/// Streams that are not (all) valid MSRP.
fn bad_stream() -> impl Strategy<Value = Bytes> {
    let small_chunk = || chunk_with(false);
    prop_oneof![
        1 => vec(any::<u8>(), 0..512),
        1 => vec(wire_byte(), 0..512),
        2 => chunk_soup(),
        // A valid chunk, cut anywhere, then garbage.
        2 => (small_chunk(), any::<Index>(), prop_oneof![vec(wire_byte(), 0..256), chunk_soup()]).prop_map(
            |(chunk, cut, tail)| {
                let wire = chunk.encode();
                let mut out = wire[..cut.index(wire.len() + 1)].to_vec();
                out.extend_from_slice(&tail);
                out
            }
        ),
        // Valid chunks with bytes flipped, inserted or deleted.
        3 => (vec(small_chunk(), 1..=3), vec(mutation(), 1..=4))
            .prop_map(|(chunks, mutations)| mutate(encode_all(&chunks).to_vec(), &mutations)),
    ]
    .prop_map(Bytes::from)
}

fn segment_hint() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=16, 0usize..=4096, 0usize..=70_000]
}

/// The chunk with a Byte-Range that agrees with its body, as an honest sender writes it
/// (R4975-7.1.1-7, R4975-9-9: range-end is the position of the last byte, within total).
fn honest_byte_range(mut chunk: Chunk) -> Chunk {
    if let Some(range) = chunk.byte_range() {
        let last = range.start - 1 + chunk.data.len() as u64;
        let end = range.end.map(|_| last);
        let total = range.total.map(|total| total.max(last));
        chunk.add_header(&ByteRange::new(range.start, end, total));
    }
    chunk
}

fn without_byte_range(headers: &Headers) -> Headers {
    let mut headers = headers.clone();
    headers.remove(&HeaderName::ByteRange);
    headers
}

/// Checks the segments `poll_chunk(Some(hint))` returned for one chunk.
fn check_segments(original: &Chunk, segments: &[Chunk], hint: usize) -> Result<(), TestCaseError> {
    if let [whole] = segments {
        if whole.segment.is_none() {
            prop_assert_eq!(whole, original);
            return Ok(());
        }
    }
    prop_assert!(segments.len() > 1, "a lone segment carries a segment number: {:?}", segments);
    let base = original.byte_range().unwrap_or(ByteRange::new(1, None, None));
    let mut next_start = base.start;
    let mut body = BytesMut::new();
    for (index, segment) in segments.iter().enumerate() {
        let number = u32::try_from(index + 1).expect("few segments");
        let last = index + 1 == segments.len();
        prop_assert_eq!(segment.segment, Some(number));
        prop_assert_eq!(&segment.transaction_id, &original.transaction_id);
        prop_assert_eq!(&segment.start_line, &original.start_line);
        let flag = if last { original.contflag } else { ContinuationFlag::More };
        prop_assert_eq!(segment.contflag, flag, "segment {} of {}", number, segments.len());
        if !last {
            prop_assert!(segment.data.len() > hint, "segment {} is cut before the hint {}", number, hint);
        }
        let len = segment.data.len() as u64;
        let range = ByteRange::new(next_start, Some(next_start + len - 1), base.total);
        prop_assert_eq!(segment.byte_range(), Some(range), "segment {} of {}", number, segments.len());
        let ranges = segment.headers.iter().filter(|field| field.name == HeaderName::ByteRange).count();
        prop_assert_eq!(ranges, 1, "segment {} carries {} Byte-Range headers", number, ranges);
        prop_assert_eq!(
            without_byte_range(&segment.headers),
            without_byte_range(&original.headers),
            "segment {} of {}: headers other than Byte-Range changed",
            number,
            segments.len()
        );
        next_start += len;
        body.extend_from_slice(&segment.data);
    }
    prop_assert_eq!(&body[..], &original.data[..]);
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// 256 cases per property from a fixed seed, so a run is repeatable; the `XorShift`
/// generator, because `ChaCha` dominates the run time of a debug build; no regression
/// files in the source tree. `PROPTEST_RNG_SEED=<n>` and `PROPTEST_CASES=<n>` explore further.
fn config() -> ProptestConfig {
    let from_env = ProptestConfig::default();
    let set = |name: &str| std::env::var_os(name).is_some();
    ProptestConfig {
        cases: if set("PROPTEST_CASES") { from_env.cases } else { 256 },
        rng_seed: if set("PROPTEST_RNG_SEED") { from_env.rng_seed } else { RngSeed::Fixed(0x4d53_5250) },
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::XorShift,
        ..from_env
    }
}

proptest! {
    #![proptest_config(config())]

    /// Property 1. R4975-9-11 (the end-line carries this transaction id and a flag),
    /// R4975-7.1-8 (the body may hold anything but that end-line), R4975-9-4 and
    /// R4975-7.1-3 (header order), R4975-7.1-7 (the three flags), R4975-9-14 (binary
    /// bodies), R4975-12-1 (unknown headers and methods kept): any split of the encoding
    /// decodes to the chunk that was encoded.
    #[test]
    fn encode_then_decode_is_identity(chunk in chunk(), split in split()) {
        let wire = chunk.encode();
        let parts = chunk.encode_parts().concat();
        prop_assert_eq!(&parts[..], &wire[..], "encode_parts() and encode() differ");
        decode_chunks(std::slice::from_ref(&chunk), &split)?;
    }

    /// Property 2. R4975-9-11: chunks follow each other on a connection; each ends at its
    /// own end-line.
    #[test]
    fn concatenated_chunks_decode_in_order(chunks in vec(chunk(), 1..=5), split in split()) {
        decode_chunks(&chunks, &split)?;
    }

    /// Property 3. R4975-7.1.1-7 and R4975-9-9 (Byte-Range of a chunk), R4975-7.1.1-11
    /// (chunks of any size), msrplib `read_chunk(size)`:
    /// virtual segments concatenate to the body, are numbered only when there are
    /// several, carry `+` but the last, and have contiguous Byte-Ranges from the
    /// original start.
    #[test]
    fn poll_chunk_segments_reassemble(
        chunks in vec(chunk().prop_map(honest_byte_range), 1..=3),
        split in split(),
        hint in segment_hint(),
    ) {
        let wire = encode_all(&chunks);
        let mut decoder = Decoder::new(DecoderLimits::default());
        let mut segments = Vec::new();
        for piece in pieces(&wire, &split) {
            decoder.feed(piece);
            while let Some(item) = decoder.poll_chunk(Some(hint)) {
                segments.push(item.map_err(|error| TestCaseError::fail(format!("decode error: {error}")))?);
            }
        }
        prop_assert!(decoder.is_idle(), "the decoder holds bytes after the last end-line");
        let mut rest = &segments[..];
        for original in &chunks {
            prop_assert!(!rest.is_empty(), "missing segments for {:?}", original.transaction_id);
            let count = if rest[0].segment.is_none() {
                1
            } else {
                1 + rest[1..].iter().zip(2u32..).take_while(|(segment, n)| segment.segment == Some(*n)).count()
            };
            check_segments(original, &rest[..count], hint)?;
            rest = &rest[count..];
        }
        prop_assert!(rest.is_empty(), "extra segments: {:?}", rest);
    }

    /// Property 4. Robustness (R4975-7.1-9 body cap, R4975-9-7 header syntax; a bad
    /// chunk is skipped or the connection closed): nothing panics, the items do not
    /// depend on how the input was split (module docs: "Any split of the input gives the
    /// same chunks"), and an error that closes the connection is the last item.
    #[test]
    fn decoding_is_split_independent_and_never_panics(
        stream in bad_stream(),
        split in split(),
        limits in limits(),
        hint in option::of(segment_hint()),
    ) {
        let whole = decode(std::slice::from_ref(&stream), limits)?;
        let pieces = pieces(&stream, &split);
        let split_run = decode(&pieces, limits)?;
        if let Some(difference) = event_difference(&normalize(split_run.events), &normalize(whole.events)) {
            return Err(TestCaseError::fail(difference));
        }
        prop_assert_eq!(split_run.failed, whole.failed);
        // poll_chunk goes through the same paths; it must not panic either.
        let mut decoder = Decoder::new(limits);
        for piece in pieces {
            decoder.feed(piece);
            while decoder.poll_chunk(hint).is_some() {}
        }
        let _ = decoder.finish();
    }

    /// Property 5a. R4975-6-1 (URI syntax), R4975-6-2 (IP needs a port), R4975-6.1-1
    /// (comparison): Display then parse gives back every field, and the URI compares equal.
    #[test]
    fn uri_display_parse_round_trip(uri in uri(), path in path()) {
        let text = uri.to_string();
        let parsed: Uri = text.parse().map_err(|error| TestCaseError::fail(format!("{text:?}: {error}")))?;
        prop_assert_eq!(uri_fields(&parsed), uri_fields(&uri), "{}", text);
        prop_assert_eq!(&parsed, &uri);
        prop_assert_eq!(parsed.to_string(), text);
        // A path header holds URIs separated by spaces.
        let encoded = ToPath(path.clone()).encode();
        let decoded = ToPath::decode(&encoded).map_err(|error| TestCaseError::fail(format!("{encoded:?}: {error}")))?;
        prop_assert_eq!(
            decoded.0.iter().map(uri_fields).collect::<Vec<_>>(),
            path.iter().map(uri_fields).collect::<Vec<_>>()
        );
    }

    /// Property 5b. Parsing arbitrary text never panics, and whatever parses prints
    /// to text that parses to the same fields.
    #[test]
    fn uri_parse_arbitrary_text(
        text in prop_oneof![
            any::<String>(),
            "(msrps?|MSRPS?|sip|)(://)?[A-Za-z0-9@:/;=%\\[\\]._~!$&'()*+, -]{0,40}",
            (uri(), vec(mutation(), 1..=3)).prop_map(|(uri, mutations)| {
                String::from_utf8_lossy(&mutate(uri.to_string().into_bytes(), &mutations)).into_owned()
            }),
        ],
    ) {
        let _ = Uri::parse_path(&text);
        if let Ok(uri) = text.parse::<Uri>() {
            let printed = uri.to_string();
            let again: Uri = printed
                .parse()
                .map_err(|error| TestCaseError::fail(format!("{text:?} parsed, printed as {printed:?}: {error}")))?;
            prop_assert_eq!(uri_fields(&again), uri_fields(&uri), "{:?} printed as {:?}", text, printed);
        }
    }
}
