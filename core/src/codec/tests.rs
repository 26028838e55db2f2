//! Decoder behaviour, rule by rule. Vectors and property tests live in `tests/`.

use bytes::Bytes;

use super::*;
use crate::header::Status;

const TO: &str = "To-Path: msrp://b.example.com:8888/9di4eae923wzd;tcp\r\n";
const FROM: &str = "From-Path: msrp://a.example.com:7777/iau39soe2843z;tcp\r\n";

fn send(tid: &str, extra_headers: &str, body: Option<&[u8]>, flag: char) -> Vec<u8> {
    let mut out = format!("MSRP {tid} SEND\r\n{TO}{FROM}Message-ID: m1x2y3z4\r\n{extra_headers}").into_bytes();
    if let Some(body) = body {
        out.extend_from_slice(b"Content-Type: text/plain\r\n\r\n");
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("-------{tid}{flag}\r\n").as_bytes());
    out
}

/// Decodes `wire` fed in `read`-byte pieces into whole chunks and errors.
fn decode_with(limits: DecoderLimits, wire: &[u8], read: usize) -> Vec<Result<Chunk, ChunkParseError>> {
    let wire = Bytes::copy_from_slice(wire);
    let mut decoder = Decoder::new(limits);
    let mut out = Vec::new();
    for start in (0..wire.len()).step_by(read.max(1)) {
        decoder.feed(wire.slice(start..wire.len().min(start + read.max(1))));
        out.extend(std::iter::from_fn(|| decoder.poll_chunk(None)));
    }
    out.extend(decoder.finish().map(Err));
    out
}

/// Decodes at every read size from 1 to 7 and whole, checks they agree, returns the result.
fn decode(wire: &[u8]) -> Vec<Result<Chunk, ChunkParseError>> {
    let whole = decode_with(DecoderLimits::default(), wire, wire.len());
    for read in 1..8 {
        assert_eq!(decode_with(DecoderLimits::default(), wire, read), whole, "read size {read}");
    }
    whole
}

fn only_chunk(wire: &[u8]) -> Chunk {
    let mut items = decode(wire);
    assert_eq!(items.len(), 1, "{items:?}");
    items.remove(0).expect("decodes")
}

fn error_kinds(items: &[Result<Chunk, ChunkParseError>]) -> Vec<Option<&ParseErrorKind>> {
    items.iter().map(|item| item.as_ref().err().map(|e| &e.kind)).collect()
}

// R4975-9-1: method names are case-sensitive; a bad method with a readable transaction
// id gets 400 and decoding goes on; an unreadable start line closes the connection.
#[test]
fn start_line_rules() {
    let mut wire = b"MSRP abcd send\r\n".to_vec();
    wire.extend_from_slice(&format!("{TO}{FROM}-------abcd$\r\n").into_bytes());
    wire.extend(send("efgh", "", Some(b"hi"), '$'));
    let items = decode(&wire);
    assert_eq!(error_kinds(&items), [Some(&ParseErrorKind::BadMethod), None]);
    let error = items[0].as_ref().unwrap_err();
    assert_eq!((error.status(), error.transaction_id.as_deref()), (Some(400), Some("abcd")));
    assert_eq!(&items[1].as_ref().unwrap().data[..], b"hi");

    let items = decode(&send("abcd", "", None, '$').to_ascii_lowercase());
    assert!(items[0].as_ref().unwrap_err().closes_connection());
    assert_eq!(items.len(), 1, "nothing after a fatal error");
}

// R4975-9-2
#[test]
fn response_start_lines() {
    for (line, code, comment) in [
        ("MSRP a786hjs2 200 OK", 200, Some("OK")),
        ("MSRP a786hjs2 200", 200, None),
        ("MSRP d93kswow 425 Nickname reserved or already in use", 425, Some("Nickname reserved or already in use")),
    ] {
        let tid = line.split(' ').nth(1).expect("tid");
        let chunk = only_chunk(format!("{line}\r\n{TO}{FROM}-------{tid}$\r\n").as_bytes());
        assert_eq!((chunk.code(), chunk.comment()), (Some(code), comment));
    }
}

// R4975-9-3, R4975-9-11: transaction ids of 4 to 32 ident characters; the end-line is
// matched on the exact id and one flag, so `abcd+` ends with `-------abcd++`.
#[test]
fn transaction_ids_and_end_lines() {
    let chunk = only_chunk(&send("abcd+", "", Some(b"x"), '+'));
    assert_eq!((chunk.transaction_id.as_str(), chunk.contflag), ("abcd+", ContinuationFlag::More));
    let long = "a".repeat(32);
    assert_eq!(only_chunk(&send(&long, "", None, '$')).transaction_id, long);
    for bad in ["abc", &"a".repeat(33), "-abc"] {
        let items = decode(&send(bad, "", None, '$'));
        assert!(items[0].as_ref().unwrap_err().closes_connection(), "{bad}");
    }
    let body: &[u8] = b"x\r\n-------zzzzzzzz$\r\ny\r\n-------a1b2c3d4e5f6X\r\n-------a1b2c3d4e5f6+z";
    let chunk = only_chunk(&send("a1b2c3d4e5f6", "", Some(body), '#'));
    assert_eq!((&chunk.data[..], chunk.contflag), (body, ContinuationFlag::Abort));
}

// R4975-9-4: To-Path first, From-Path second; either missing is a 400 with framing intact,
// sent when there is a From-Path to send it to (issue 12 §2.7: no status is promised that
// cannot be sent).
#[test]
fn path_header_order() {
    let swapped = format!("MSRP abcd SEND\r\n{FROM}{TO}-------abcd$\r\n");
    let missing = format!("MSRP efgh SEND\r\n{TO}Message-ID: m1x2y3z4\r\n-------efgh$\r\n");
    let items = decode(format!("{swapped}{missing}").as_bytes());
    assert_eq!(
        error_kinds(&items),
        [
            Some(&ParseErrorKind::Header(HeaderError::WrongOrder)),
            Some(&ParseErrorKind::Header(HeaderError::Missing("From-Path")))
        ]
    );
    let statuses: Vec<_> = items.iter().map(|item| item.as_ref().unwrap_err().status()).collect();
    assert_eq!(statuses, [Some(400), None]);
}

// R4975-9-7 (TOL): two spaces after the colon, or none, are read; unknown headers kept (R4975-12-1).
#[test]
fn header_tolerances() {
    let wire = "MSRP abcd SEND\r\nTo-Path:  msrp://b.example.com:8888/x;tcp\r\nfrom-path:msrp://a.example.com:7777/y;tcp\r\n\
        X-Foo: bar  \r\nByte-Range: 1-0/0\r\n-------abcd$\r\n";
    let chunk = only_chunk(wire.as_bytes());
    assert_eq!(chunk.to_path().expect("valid").0[0].host, "b.example.com");
    assert_eq!(chunk.from_path().expect("valid").0[0].port, Some(7777));
    let foo = HeaderName::from_bytes(b"x-foo").expect("valid name");
    assert_eq!(chunk.headers.get(&foo).map(HeaderValue::as_str), Some("bar"));
    assert_eq!(chunk.byte_range(), Some(ByteRange::new(1, Some(0), Some(0))));
    let fields: Vec<_> = chunk.headers.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(fields, ["To-Path", "From-Path", "X-Foo", "Byte-Range"]);
}

// Tolerance of real peers: `_` in method names.
#[test]
fn method_with_underscore() {
    let chunk = only_chunk(format!("MSRP abcd FILE_OFFSET\r\n{TO}{FROM}-------abcd$\r\n").as_bytes());
    assert_eq!(chunk.method().map(Method::as_str), Some("FILE_OFFSET"));
}

// R4975-7.1-3..6: bodiless, empty body, body without Content-Type, body framing.
#[test]
fn bodies() {
    let bodiless = only_chunk(&send("a1b2c3d4e5f6", "Byte-Range: 1-0/0\r\n", None, '$'));
    assert!(bodiless.data.is_empty() && bodiless.content_type().is_none());
    let empty = only_chunk(&send("a1b2c3d4e5f6", "Byte-Range: 1-0/0\r\n", Some(b""), '$'));
    assert!(empty.data.is_empty() && empty.content_type() == Some("text/plain"));
    assert_eq!(only_chunk(&send("abcd1234", "", Some(b"abcd"), '$')).size(), 4);

    let mut wire = format!("MSRP abcd SEND\r\n{TO}{FROM}\r\nbody without type\r\n-------abcd$\r\n").into_bytes();
    wire.extend(send("efgh", "", Some(b"next"), '$'));
    let items = decode(&wire);
    assert_eq!(error_kinds(&items), [Some(&ParseErrorKind::Header(HeaderError::MissingContentType)), None]);
    assert_eq!(items[0].as_ref().unwrap_err().status(), Some(400));
}

// R4975-7.1.1-11: chunks of any size, 0 to 1 MiB, are received.
#[test]
fn chunks_of_any_size() {
    for size in [0usize, 1, 2048, 2049, 1 << 20] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let wire = send("abcd", "", Some(&body), '+');
        let items = decode_with(DecoderLimits::default(), &wire, 4096);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_ref().expect("decodes").data, body, "size {size}");
    }
}

// R4975-7.1-9: a REPORT body over 10240 octets gets 413, is skipped, and never answered
// (REPORTs are not), while the stream goes on.
#[test]
fn non_send_body_limit() {
    let body = vec![b'r'; MAX_NON_SEND_BODY + 1];
    let mut wire = format!(
        "MSRP abcd REPORT\r\n{TO}{FROM}Message-ID: m1x2y3z4\r\nStatus: 000 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    wire.extend_from_slice(&body);
    wire.extend_from_slice(b"\r\n-------abcd$\r\n");
    let mut nickname =
        format!("MSRP efgh NICKNAME\r\n{TO}{FROM}Use-Nickname: \"n\"\r\nContent-Type: text/plain\r\n\r\n").into_bytes();
    nickname.extend_from_slice(&body);
    nickname.extend_from_slice(b"\r\n-------efgh$\r\n");
    wire.extend(nickname);
    wire.extend(send("ijkl", "", Some(b"fine"), '$'));
    let items = decode_with(DecoderLimits::default(), &wire, 1000);
    let limit = ParseErrorKind::BodyTooLarge { limit: MAX_NON_SEND_BODY };
    assert_eq!(error_kinds(&items), [Some(&limit), Some(&limit), None]);
    assert_eq!(items[0].as_ref().unwrap_err().status(), None, "a REPORT is never answered");
    assert_eq!(items[1].as_ref().unwrap_err().status(), Some(413));
    let report =
        format!("MSRP abcd REPORT\r\n{TO}{FROM}Message-ID: m1x2y3z4\r\nStatus: 000 200 OK\r\n-------abcd$\r\n");
    assert_eq!(only_chunk(report.as_bytes()).status(), Some(Status::new(200, Some("OK".into()))));
}

// R4975-14.5-1, R4975-9-9: Byte-Range values are checked before anything is allocated.
#[test]
fn absurd_byte_ranges() {
    for (range, status) in
        [("1-*/99999999999999", 413), ("1-99999999999999999999/*", 400), ("0-5/5", 400), ("1-5", 400)]
    {
        let wire = send("abcd", &format!("Byte-Range: {range}\r\n"), Some(b"data"), '$');
        let items = decode(&wire);
        assert_eq!(items.len(), 1, "{range}");
        assert_eq!(items[0].as_ref().unwrap_err().status(), Some(status), "{range}");
    }
}

// Limits: header line, header count, path length; a line too long before the transaction
// id is known closes the connection.
#[test]
fn limits() {
    let limits = DecoderLimits { max_header_line: 100, max_headers: 4, max_path_uris: 2, ..DecoderLimits::default() };
    let long_header = format!("X-Long: {}\r\n", "v".repeat(200));
    let many = "A: 1\r\nB: 2\r\nC: 3\r\n";
    let path = "To-Path: msrp://a:1/a;tcp msrp://b:1/b;tcp msrp://c:1/c;tcp\r\n";
    let mut wire = send("abcd", &long_header, Some(b"x"), '$');
    wire.extend(send("efgh", many, None, '$'));
    wire.extend(format!("MSRP ijkl SEND\r\n{path}{FROM}-------ijkl$\r\n").into_bytes());
    wire.extend(send("mnop", "", Some(b"ok"), '$'));
    for read in [1, 7, 64, wire.len()] {
        let items = decode_with(limits, &wire, read);
        assert_eq!(
            error_kinds(&items),
            [
                Some(&ParseErrorKind::LineTooLong { limit: 100 }),
                Some(&ParseErrorKind::TooManyHeaders { limit: 4 }),
                Some(&ParseErrorKind::PathTooLong { header: "To-Path", limit: 2 }),
                None
            ],
            "read size {read}"
        );
    }
    let items = decode_with(limits, format!("MSRP {} SEND\r\n", "a".repeat(200)).as_bytes(), 10);
    assert!(
        matches!(&items[..], [Err(e)] if e.closes_connection() && e.kind == ParseErrorKind::LineTooLong { limit: 100 })
    );
}

#[test]
fn bare_line_feed_and_truncation() {
    let items = decode(b"MSRP abcd SEND\n");
    assert!(matches!(&items[..], [Err(e)] if e.kind == ParseErrorKind::BareLineFeed && e.closes_connection()));
    let wire = send("abcd", "", Some(b"cut short"), '$');
    let items = decode(&wire[..wire.len() - 5]);
    assert!(matches!(&items[..], [Err(e)] if e.kind == ParseErrorKind::Truncated));
}

// Bodies are slices of the fed buffers, delivered as they arrive; only a suffix that may
// begin the end-line is held back, so memory stays bounded whatever the chunk size.
#[test]
fn bodies_stream_zero_copy_with_bounded_hold_back() {
    let head = send("abcd", "", Some(b""), '$');
    let head = &head[..head.len() - "\r\n-------abcd$\r\n".len()];
    let mut decoder = Decoder::new(DecoderLimits::default());
    decoder.feed(Bytes::copy_from_slice(head));
    assert!(matches!(decoder.poll(), Some(Ok(Decoded::Head(_)))));
    let read = Bytes::from(vec![b'z'; 64 * 1024]);
    for _ in 0..128 {
        decoder.feed(read.clone());
        let Some(Ok(Decoded::Data(data))) = decoder.poll() else { panic!("data expected") };
        assert_eq!(data.as_ptr(), read.as_ptr(), "a slice of the fed buffer, not a copy");
        assert_eq!(data.len(), read.len());
        assert_eq!(decoder.buffered(), 0);
    }
    // A read ending inside the end-line: everything before its CR is delivered now.
    decoder.feed(Bytes::from_static(b"tail\r\n-----"));
    assert_eq!(decoder.poll(), Some(Ok(Decoded::Data(Bytes::from_static(b"tail")))));
    assert_eq!(decoder.poll(), None);
    decoder.feed(Bytes::from_static(b"--abcd"));
    assert_eq!(decoder.poll(), None);
    decoder.feed(Bytes::from_static(b"$\r\n"));
    assert_eq!(decoder.poll(), Some(Ok(Decoded::End(ContinuationFlag::End))));
    assert!(decoder.is_idle());
}

// msrplib read_chunk(size): virtual segments with segment numbers, `+` and adjusted Byte-Range.
#[test]
fn virtual_segments() {
    let body: Vec<u8> = (0..25u8).collect();
    let wire = Bytes::from(send("abcd", "Byte-Range: 11-35/50\r\n", Some(&body), '$'));
    let mut decoder = Decoder::new(DecoderLimits::default());
    let mut segments = Vec::new();
    let body_at = wire.len() - body.len() - "\r\n-------abcd$\r\n".len();
    decoder.feed(wire.slice(..body_at));
    for start in (body_at..wire.len()).step_by(10) {
        decoder.feed(wire.slice(start..wire.len().min(start + 10)));
        while let Some(chunk) = decoder.poll_chunk(Some(8)) {
            segments.push(chunk.expect("decodes"));
        }
    }
    let described: Vec<_> =
        segments.iter().map(|c| (c.segment, c.byte_range().expect("range"), c.contflag, c.data.len())).collect();
    assert_eq!(
        described,
        [
            (Some(1), ByteRange::new(11, Some(20), Some(50)), ContinuationFlag::More, 10),
            (Some(2), ByteRange::new(21, Some(30), Some(50)), ContinuationFlag::More, 10),
            (Some(3), ByteRange::new(31, Some(35), Some(50)), ContinuationFlag::End, 5),
        ]
    );
    let joined: Vec<u8> = segments.iter().flat_map(|c| c.data.to_vec()).collect();
    assert_eq!(joined, body);

    // Without a size hint the chunk is whole, unless it is over max_whole_chunk.
    let mut decoder = Decoder::new(DecoderLimits::default());
    decoder.feed(wire.clone());
    let whole = decoder.poll_chunk(None).expect("chunk").expect("decodes");
    assert_eq!((whole.segment, whole.data.len()), (None, 25));
    let mut decoder = Decoder::new(DecoderLimits { max_whole_chunk: 4, ..DecoderLimits::default() });
    decoder.feed(wire.slice(..body_at + 6));
    decoder.feed(wire.slice(body_at + 6..));
    let first = decoder.poll_chunk(None).expect("segment").expect("decodes");
    assert_eq!((first.segment, first.data.len()), (Some(1), 6));
}

// Regressions found by the property tests (core/tests/codec_properties.rs).

/// An end-line split across two reads after a read of more than `QUICK_SCAN` body bytes
/// was released as body.
#[test]
fn end_line_split_after_a_long_read() {
    let wire = send("abcd", "", Some(&[b'a'; 600]), '$');
    for cut in 1..=16 {
        let limits = DecoderLimits::default();
        let mut decoder = Decoder::new(limits);
        let wire = Bytes::from(wire.clone());
        decoder.feed(wire.slice(..wire.len() - cut));
        decoder.feed(wire.slice(wire.len() - cut..));
        let mut body = 0;
        let mut ended = false;
        while let Some(item) = decoder.poll() {
            match item.expect("decodes") {
                Decoded::Data(data) => body += data.len(),
                Decoded::End(_) => ended = true,
                Decoded::Head(_) => {}
            }
        }
        assert!(ended && body == 600 && decoder.is_idle(), "cut {cut} bytes before the end");
    }
}

/// `BodyTooLarge` delivers exactly `limit` bytes and names the first byte past the limit,
/// however the input was split.
#[test]
fn body_limit_is_split_independent() {
    let limits = DecoderLimits { max_non_send_body: 4, ..DecoderLimits::default() };
    let wire = format!("MSRP abcd REPORT\r\n{TO}{FROM}Content-Type: text/plain\r\n\r\n0123456789\r\n-------abcd$\r\n");
    let body_start = wire.find("0123").expect("body") as u64;
    let whole = decode_with(limits, wire.as_bytes(), wire.len());
    for read in 1..wire.len() {
        assert_eq!(decode_with(limits, wire.as_bytes(), read), whole, "read size {read}");
    }
    let error = whole[0].as_ref().expect_err("over the limit");
    assert_eq!((error.kind.clone(), error.offset), (ParseErrorKind::BodyTooLarge { limit: 4 }, body_start + 4));
}

/// A header line that is too long and ends in a bare LF resyncs the same way whether or
/// not the read boundary falls inside it: the skipped header section ends at the next
/// line, the end-line (issue 12 §2.2: it used to wait for an end-line after a CRLF, and
/// swallowed the rest of the stream).
#[test]
fn long_line_with_bare_lf_is_split_independent() {
    // To-Path and From-Path lines are 53 and 54 bytes; the X-Long line is 88.
    let limits = DecoderLimits { max_header_line: 60, ..DecoderLimits::default() };
    let wire = format!(
        "MSRP abcd SEND\r\n{TO}{FROM}X-Long: {}\n-------abcd$\r\nMSRP efgh SEND\r\n{TO}{FROM}-------efgh$\r\n",
        "0123456789".repeat(8)
    );
    let whole = decode_with(limits, wire.as_bytes(), wire.len());
    assert_eq!(error_kinds(&whole), [Some(&ParseErrorKind::LineTooLong { limit: 60 }), None]);
    assert_eq!(whole[1].as_ref().expect("decodes").transaction_id, "efgh");
    for read in 1..wire.len() {
        assert_eq!(decode_with(limits, wire.as_bytes(), read), whole, "read size {read}");
    }
}

/// A Byte-Range that disagrees with the body (RFC examples do) still gives valid segment ranges.
#[test]
fn segments_of_a_chunk_with_a_wrong_byte_range_stay_valid() {
    let wire = send("abcd", "Byte-Range: 1-0/0\r\n", Some(b"hello"), '$');
    let mut decoder = Decoder::new(DecoderLimits::default());
    let wire = Bytes::from(wire);
    let body_at = wire.len() - "hello\r\n-------abcd$\r\n".len();
    decoder.feed(wire.slice(..body_at + 3));
    decoder.feed(wire.slice(body_at + 3..));
    let mut ranges = Vec::new();
    while let Some(segment) = decoder.poll_chunk(Some(2)) {
        let segment = segment.expect("decodes");
        segment.verify_headers().expect("valid headers");
        ranges.push(segment.byte_range().expect("valid range"));
    }
    assert_eq!(ranges, [ByteRange::new(1, Some(3), None), ByteRange::new(4, Some(5), None)]);
}

/// The error for an over-long non-SEND body carries the head read so far, so the receiver
/// can address its 413 (found by the fuzzer).
#[test]
fn body_limit_error_carries_the_head() {
    let limits = DecoderLimits { max_non_send_body: 4, ..DecoderLimits::default() };
    let wire =
        format!("MSRP abcd NICKNAME\r\n{TO}{FROM}Content-Type: text/plain\r\n\r\n0123456789\r\n-------abcd$\r\n");
    let items = decode_with(limits, wire.as_bytes(), 7);
    let error = items[0].as_ref().expect_err("over the limit");
    let head = error.head.as_ref().expect("head");
    assert_eq!(head.method(), Some(&Method::Nickname));
    assert_eq!(head.from_path().expect("From-Path").0[0].host, "a.example.com");
    assert_eq!(error.status(), Some(413));
}

/// Tolerance: an empty body whose end-line comes right after the blank line, without the
/// CRLF that closes a body, ends the chunk (it used to swallow the rest of the stream).
#[test]
fn empty_body_without_closing_crlf() {
    let mut wire = format!("MSRP abcd SEND\r\n{TO}{FROM}Content-Type: text/plain\r\n\r\n-------abcd$\r\n").into_bytes();
    wire.extend(send("efgh", "", Some(b"next"), '$'));
    let items = decode(&wire);
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items[0].as_ref().expect("decodes").data.is_empty());
    assert_eq!(&items[1].as_ref().expect("decodes").data[..], b"next");
    // A body that merely starts with dashes is data.
    assert_eq!(&only_chunk(&send("abcd", "", Some(b"-------abcdX"), '$')).data[..], b"-------abcdX");
}

// Found in review.

/// R4975-7.1.4-2: a request with `Failure-Report: no` gets no response, not even a 400.
#[test]
fn failure_report_no_gets_no_error_response() {
    let wire = send("abcd", "Failure-Report: no\r\nByte-Range: 1-2/1x\r\n", None, '$');
    let items = decode(&wire);
    let error = items[0].as_ref().expect_err("bad Byte-Range");
    assert_eq!(error.status(), None);
    let wire = send("abcd", "Failure-Report: partial\r\nByte-Range: 1-2/1x\r\n", None, '$');
    assert_eq!(decode(&wire)[0].as_ref().expect_err("bad Byte-Range").status(), Some(400));
}

/// The position of a header error is the start of that header's line.
#[test]
fn header_errors_point_at_their_line() {
    let wire = send("abcd", "Byte-Range: 1-2/1x\r\n", None, '$');
    let line = String::from_utf8_lossy(&wire).find("Byte-Range").expect("header") as u64;
    assert_eq!(decode(&wire)[0].as_ref().expect_err("bad Byte-Range").offset, line);
}

/// The path limit counts URIs separated by tabs too.
#[test]
fn path_limit_counts_tab_separated_uris() {
    let path = vec!["msrp://a:1/a;tcp"; 40].join("\t");
    let wire = format!("MSRP abcd SEND\r\nTo-Path: {path}\r\n{FROM}-------abcd$\r\n");
    let error = decode_with(DecoderLimits::default(), wire.as_bytes(), wire.len()).remove(0).expect_err("too long");
    assert_eq!(error.kind, ParseErrorKind::PathTooLong { header: "To-Path", limit: 32 });
}

/// A segment that reaches the end-line in the same read is the last one: no empty segment follows.
#[test]
fn no_empty_last_segment() {
    let wire = send("abcd", "Byte-Range: 11-*/20\r\n", Some(b"hello"), '+');
    let mut decoder = Decoder::new(DecoderLimits::default());
    decoder.feed(Bytes::from(wire));
    let segments: Vec<Chunk> =
        std::iter::from_fn(|| decoder.poll_chunk(Some(2))).map(|c| c.expect("decodes")).collect();
    assert_eq!(segments.len(), 1);
    assert_eq!((segments[0].contflag, segments[0].data.len()), (ContinuationFlag::More, 5));
    assert_eq!(segments[0].segment, None, "a chunk that came whole is not a segment");
}

// Issue 12 §2 (outside review).

/// Decodes `wire` whole, at read sizes 1 to 7 and cut once at every offset, checks they
/// all agree, and returns the result.
fn decode_at_every_split(wire: &[u8]) -> Vec<Result<Chunk, ChunkParseError>> {
    let whole = decode(wire);
    let wire = Bytes::copy_from_slice(wire);
    for cut in 1..wire.len() {
        let mut decoder = Decoder::new(DecoderLimits::default());
        let mut items = Vec::new();
        for piece in [wire.slice(..cut), wire.slice(cut..)] {
            decoder.feed(piece);
            items.extend(std::iter::from_fn(|| decoder.poll_chunk(None)));
        }
        items.extend(decoder.finish().map(Err));
        assert_eq!(items, whole, "cut at {cut}");
    }
    whole
}

/// Issue 12 §2.2, R4975-9-11 (the end-line repeats the transaction id of the start line):
/// a bodiless SEND whose end-line names another id (a prefix, an extension, another case)
/// gets a 400 and ends at that line; the next SEND decodes, however the input is split.
#[test]
fn issue_12_2_2_a_wrong_end_line_ends_its_chunk_and_decoding_goes_on() {
    for wrong in ["abcd123", "abcd12345", "ABCD1234"] {
        let mut wire =
            format!("MSRP abcd1234 SEND\r\n{TO}{FROM}Message-ID: m1x2y3z4\r\nByte-Range: 1-0/0\r\n-------{wrong}$\r\n")
                .into_bytes();
        wire.extend(send("efgh5678", "", Some(b"next"), '$'));
        let items = decode_at_every_split(&wire);
        assert_eq!(error_kinds(&items), [Some(&ParseErrorKind::WrongEndLine), None], "{wrong}");
        let error = items[0].as_ref().unwrap_err();
        assert_eq!((error.status(), error.transaction_id.as_deref()), (Some(400), Some("abcd1234")), "{wrong}");
        assert_eq!(&items[1].as_ref().unwrap().data[..], b"next", "{wrong}");
    }
}

/// Issue 12 §2.2: a header section holds header lines, the blank line or the end-line; a
/// start line there means the chunk lost its end-line, and the decoder resynchronises on
/// it, whether the chunk was being read or skipped after a bad header line. A chunk being
/// skipped also ends at an end-line that names another id.
#[test]
fn issue_12_2_2_a_start_line_in_a_header_section_resynchronises() {
    let next = send("efgh5678", "", Some(b"next"), '$');
    for (bad, kind) in [
        (format!("MSRP abcd1234 SEND\r\n{TO}{FROM}"), ParseErrorKind::MissingEndLine),
        (format!("MSRP abcd1234 SEND\r\n{TO}{FROM}no colon here\r\n"), ParseErrorKind::BadHeaderLine),
        (format!("MSRP abcd1234 SEND\r\n{TO}{FROM}no colon\r\n-------abcd123$\r\n"), ParseErrorKind::BadHeaderLine),
        (format!("MSRP abcd1234 SEND\r\n{TO}{FROM}bare LF\n-------abcd123+\r\n"), ParseErrorKind::BareLineFeed),
    ] {
        let mut wire = bad.clone().into_bytes();
        wire.extend_from_slice(&next);
        let items = decode_at_every_split(&wire);
        assert_eq!(error_kinds(&items), [Some(&kind), None], "{bad:?}");
        assert_eq!(&items[1].as_ref().unwrap().data[..], b"next", "{bad:?}");
    }
}

/// Issue 12 §2.7, R4975-9-1: a bad method (`send` in lower case, or no method at all) gets
/// a 400, so the decoder reads the header section for the From-Path to send it to; the
/// error promises no status it cannot address: none with `Failure-Report: no`, without a
/// From-Path, or when the "method" is a malformed status code (a response).
#[test]
fn issue_12_2_7_a_bad_method_keeps_what_its_400_needs() {
    for method in ["send", "Send", "", "SEND!"] {
        let wire = format!("MSRP abcd {method}\r\n{TO}{FROM}-------abcd$\r\n");
        let items = decode_at_every_split(wire.as_bytes());
        assert_eq!(error_kinds(&items), [Some(&ParseErrorKind::BadMethod)], "{method:?}");
        let error = items[0].as_ref().unwrap_err();
        assert_eq!((error.status(), error.transaction_id.as_deref()), (Some(400), Some("abcd")), "{method:?}");
        let head = error.head.as_ref().expect("the head the 400 is built from");
        assert_eq!(head.from_path().expect("From-Path").0[0].host, "a.example.com");
    }
    for unanswerable in [
        format!("MSRP abcd send\r\n{TO}{FROM}Failure-Report: no\r\n-------abcd$\r\n"),
        format!("MSRP abcd send\r\n{TO}-------abcd$\r\n"),
        format!("MSRP abcd 20 OK\r\n{TO}{FROM}-------abcd$\r\n"),
    ] {
        let items = decode_at_every_split(unanswerable.as_bytes());
        assert_eq!(error_kinds(&items), [Some(&ParseErrorKind::BadMethod)], "{unanswerable:?}");
        assert_eq!(items[0].as_ref().unwrap_err().status(), None, "{unanswerable:?}");
    }
}

/// Issue 12 §2.9, R4975-7.1-4 (a bodiless request MUST NOT carry Content-Type), tolerated:
/// the stray Content-Type is dropped, so the chunk is bodiless and encodes back to the
/// bodiless frame, not to one with an empty body.
#[test]
fn issue_12_2_9_a_bodiless_request_with_content_type_stays_bodiless() {
    let clean = send("abcd1234", "Byte-Range: 1-0/0\r\n", None, '$');
    let sloppy = send("abcd1234", "Byte-Range: 1-0/0\r\nContent-Type: text/plain\r\n", None, '$');
    let chunk = only_chunk(&sloppy);
    assert_eq!((chunk.content_type(), chunk.has_body_section()), (None, false));
    assert_eq!(chunk.encode(), clean);
    assert_eq!(only_chunk(&clean), chunk);
}
