//! Every MSRP message among the RFC vectors (`tests/vectors/`) decoded at every
//! split offset, re-encoded, and compared with what conformance.md says of it.

use std::fs;

use bytes::Bytes;
use msrp_core::codec::{ChunkParseError, Decoder, DecoderLimits, ParseErrorKind};
use msrp_core::{Chunk, ContinuationFlag, HeaderError};
use msrp_tests::vectors_dir;

/// What decoding a whole input gave: complete chunks (body joined) and errors, in order.
#[derive(Debug, PartialEq)]
enum Item {
    Chunk(Chunk),
    Error(ChunkParseError),
}

/// Decodes `wire` cut at `splits` into whole chunks and errors, and what the end of the stream says.
fn decode_in_pieces(wire: &[u8], splits: &[usize]) -> (Vec<Item>, Option<ChunkParseError>) {
    let wire = Bytes::copy_from_slice(wire);
    let mut decoder = Decoder::new(DecoderLimits::default());
    let mut items = Vec::new();
    let mut from = 0;
    for cut in splits.iter().copied().chain([wire.len()]) {
        decoder.feed(wire.slice(from..cut));
        from = cut;
        while let Some(item) = decoder.poll_chunk(None) {
            items.push(item.map_or_else(Item::Error, Item::Chunk));
        }
    }
    (items, decoder.finish())
}

struct Vector {
    id: String,
    bytes: Vec<u8>,
}

/// The MSRP vectors listed in `vectors/index.json`, read without a JSON parser:
/// each entry's `"id"` comes before its `"kind"`.
fn msrp_vectors() -> Vec<Vector> {
    let dir = vectors_dir();
    let index = fs::read_to_string(dir.join("index.json")).expect("tests/vectors/index.json is readable");
    let mut vectors = Vec::new();
    let mut id = None;
    for line in index.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("\"id\": \"") {
            id = Some(value.trim_end_matches("\",").to_owned());
        } else if line == "\"kind\": \"msrp\"," {
            let id = id.take().expect("id before kind");
            let bytes = fs::read(dir.join(format!("{id}.txt"))).expect("vector file");
            vectors.push(Vector { id, bytes });
        }
    }
    assert!(vectors.len() >= 60, "expected the 60-odd MSRP vectors, found {}", vectors.len());
    vectors
}

/// Vectors that conformance.md marks as not decodable as printed, with why.
fn expected_failure(id: &str) -> Option<&'static str> {
    match id {
        // R4975-X-2: snippets without To-Path/From-Path are rejected, framing intact, and
        // not answered: there is no From-Path to send a 400 to (issue 12 §2.7).
        "4975-F3-chunk1" | "4975-F3-chunk2" => Some("missing To-Path"),
        // R4976-X-1: printed without an end-line; the stream ends inside the chunk.
        "4976-3-200-bob" => Some("truncated"),
        _ => None,
    }
}

#[test]
fn every_vector_decodes_the_same_at_every_split() {
    for vector in msrp_vectors() {
        let whole = decode_in_pieces(&vector.bytes, &[]);
        for split in 1..vector.bytes.len() {
            assert_eq!(decode_in_pieces(&vector.bytes, &[split]), whole, "{} split at {split}", vector.id);
        }
        let bytewise: Vec<usize> = (1..vector.bytes.len()).collect();
        assert_eq!(decode_in_pieces(&vector.bytes, &bytewise), whole, "{} one byte per read", vector.id);
    }
}

#[test]
fn valid_vectors_decode_verify_and_re_encode_byte_exact() {
    for vector in msrp_vectors() {
        if expected_failure(&vector.id).is_some() {
            continue;
        }
        let (items, eof) = decode_in_pieces(&vector.bytes, &[]);
        assert_eq!(eof, None, "{}", vector.id);
        let [Item::Chunk(chunk)] = &items[..] else { panic!("{}: expected one chunk, got {items:?}", vector.id) };
        chunk.verify_headers().unwrap_or_else(|e| panic!("{}: {e}", vector.id));
        let encoded = chunk.encode();
        if encoded[..] == vector.bytes[..] {
            continue;
        }
        // Canonical form: the only vectors that differ are the RFC 7977 ones printed with two
        // spaces after a colon (R4975-9-7 TOL); msrp writes exactly one.
        let canonical = String::from_utf8_lossy(&vector.bytes).replace(":  ", ": ");
        assert_eq!(String::from_utf8_lossy(&encoded), canonical, "{} re-encodes to its canonical form", vector.id);
        assert!(vector.id.starts_with("7977-"), "{} is not expected to need a canonical form", vector.id);
    }
}

#[test]
fn broken_vectors_are_handled_as_conformance_md_says() {
    for vector in msrp_vectors() {
        let Some(why) = expected_failure(&vector.id) else {
            continue;
        };
        let (items, eof) = decode_in_pieces(&vector.bytes, &[]);
        match why {
            "missing To-Path" => {
                let [Item::Error(error)] = &items[..] else { panic!("{}: {items:?}", vector.id) };
                assert_eq!(error.kind, ParseErrorKind::Header(HeaderError::Missing("To-Path")));
                assert_eq!(error.status(), None, "{}: no From-Path to answer to", vector.id);
                assert!(!error.closes_connection());
                assert_eq!(eof, None, "{}: framing must stay intact", vector.id);
            }
            "truncated" => {
                assert!(items.is_empty(), "{}: {items:?}", vector.id);
                let eof = eof.expect("truncation is reported");
                assert_eq!(eof.kind, ParseErrorKind::Truncated);
                // With the end-line the wire form asks for, it decodes.
                let mut fixed = vector.bytes.clone();
                fixed.extend_from_slice(b"-------xght6$\r\n");
                let (items, eof) = decode_in_pieces(&fixed, &[]);
                assert!(matches!(&items[..], [Item::Chunk(c)] if c.code() == Some(200)), "{items:?}");
                assert_eq!(eof, None);
            }
            other => unreachable!("{other}"),
        }
    }
}

// R4975-X-1, R4975-7.3.1-2: Byte-Range that disagrees with the body is not rejected;
// the body is what was actually received.
#[test]
fn byte_range_mismatches_of_rfc_examples_are_tolerated() {
    for (id, body_len) in [("4975-F2-SEND", 23), ("4975-11.2-SEND-xhtml", 384), ("4975-11.6-SEND", 121)] {
        let bytes = fs::read(vectors_dir().join(format!("{id}.txt"))).expect("vector");
        let (items, _) = decode_in_pieces(&bytes, &[]);
        let [Item::Chunk(chunk)] = &items[..] else { panic!("{id}") };
        assert_eq!(chunk.size(), body_len, "{id}");
    }
}

// R7701 9.5 as printed: two chunks in one stream reusing a transaction id both decode.
#[test]
fn a_stream_of_several_vectors_decodes_in_order() {
    let dir = vectors_dir();
    let mut stream = Vec::new();
    for id in ["7701-9.5-chunk1", "7701-9.5-chunk2", "4975-F2-SEND", "4975-F2-200"] {
        stream.extend(fs::read(dir.join(format!("{id}.txt"))).expect("vector"));
    }
    let (items, eof) = decode_in_pieces(&stream, &[]);
    assert_eq!(eof, None);
    let flags: Vec<_> = items
        .iter()
        .map(|item| match item {
            Item::Chunk(chunk) => chunk.contflag,
            Item::Error(error) => panic!("{error}"),
        })
        .collect();
    assert_eq!(flags, [ContinuationFlag::End; 4]);
}
