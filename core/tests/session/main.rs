//! The session engine (`msrp_core::session`), driven back to back with a virtual clock. Each test names the
//! conformance items it shows (`R<rfc>-<section>-<n>`, the ids of the project's RFC conformance checklist).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod confirm;
mod harness;
mod relay;

use bytes::Bytes;
use harness::{ALICE, BOB, Pair, Solo, configs, uri};
use msrp_core::codec::{Decoder, DecoderLimits};
use msrp_core::header::{ByteRange, FailureReport as Fr, HeaderName, Headers};
use msrp_core::log::TrafficLogger;
use msrp_core::outbox::{MessageOptions, OutgoingId};
use msrp_core::session::{
    Event, Input, MAX_REPORT_FRAGMENTS, MessageOutcome, OutgoingFile, Output, ReassemblyLimits, RequestId, Role,
    SendError, Session, SessionConfig, SessionError, transaction_result,
};
use msrp_core::{AcceptTypes, Chunk, ChunkParams, ContinuationFlag, IdGenerator, Method, MsrpError, Transport};

fn options(content_type: &str) -> MessageOptions {
    let mut headers = Headers::new();
    headers.set(HeaderName::ContentType, content_type);
    MessageOptions { headers, ..MessageOptions::default() }
}

fn with_header(mut options: MessageOptions, name: HeaderName, value: &str) -> MessageOptions {
    options.headers.set(name, value);
    options
}

/// A text message asking for a success REPORT and no responses (RFC 4975 §11.6 style).
fn reported_without_responses() -> MessageOptions {
    let mut options = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
    options.headers.set(HeaderName::FailureReport, "no");
    options
}

fn done(events: &[Event]) -> Vec<(OutgoingId, MessageOutcome)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::MessageDone { message, outcome, .. } => Some((*message, outcome.clone())),
            _ => None,
        })
        .collect()
}

fn incoming(events: &[Event]) -> Vec<&Chunk> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Incoming(chunk) => Some(chunk),
            _ => None,
        })
        .collect()
}

fn incoming_body(events: &[Event]) -> Vec<u8> {
    incoming(events).iter().flat_map(|chunk| chunk.data.iter().copied()).collect()
}

fn closed_reason(events: &[Event]) -> Option<&Option<SessionError>> {
    events.iter().find_map(|event| match event {
        Event::Closed { reason } => Some(reason),
        _ => None,
    })
}

fn responses(chunks: &[Chunk]) -> Vec<u16> {
    chunks.iter().filter_map(Chunk::code).collect()
}

fn missing_reports(events: &[Event]) -> Vec<OutgoingId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ReportMissing { message, .. } => Some(*message),
            _ => None,
        })
        .collect()
}

fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

/// A SEND from Alice to Bob as Bob's side sees it (`\n` becomes CRLF when fed).
fn send_text(tid: &str, extra_headers: &str, body: &str) -> String {
    let mut text = format!("MSRP {tid} SEND\nTo-Path: {BOB}\nFrom-Path: {ALICE}\nMessage-ID: m-{tid}\n");
    text.push_str(extra_headers);
    if body.is_empty() {
        text.push_str("Byte-Range: 1-0/0\n");
        let _ = writeln!(text, "-------{tid}$");
    } else {
        let _ = write!(text, "Byte-Range: 1-{0}/{0}\nContent-Type: text/plain\n\n{body}\n-------{tid}$\n", body.len());
    }
    text
}

// ---- Binding (conformance.md §1.7) ----

#[test]
fn active_side_binds_with_an_empty_send_and_passive_side_answers() {
    // R4975-5.4-3: the first bytes the active side writes are a SEND for the session.
    let (alice, bob) = configs();
    let mut pair = Pair::new(alice, bob);
    pair.connect();
    pair.run();
    let first = &pair.alice.sent_chunks()[0];
    assert_eq!(first.method(), Some(&Method::Send));
    assert!(first.data.is_empty() && first.content_type().is_none());
    assert_eq!(first.to_path().unwrap().0, vec![uri(BOB)]);
    assert_eq!(responses(&pair.bob.sent_chunks()), vec![200]);
    assert_eq!(pair.alice.take_events(), vec![Event::Bound]);
    // The empty binding SEND is not shown to the application.
    assert_eq!(pair.bob.take_events(), vec![Event::Bound]);
}

#[test]
fn passive_side_sends_nothing_before_the_first_request() {
    // R4975-5.4-4: Bob's message waits until Alice's SEND has arrived.
    let (alice, bob) = configs();
    let mut pair = Pair::new(alice, bob);
    pair.bob.session.handle_input(pair.now, Input::Connected);
    pair.bob.session.send_message(pair.now, options("text/plain"), Bytes::from_static(b"early")).unwrap();
    pair.run();
    assert!(pair.bob.wire.is_empty(), "the passive side wrote before being bound");
    pair.alice.session.handle_input(pair.now, Input::Connected);
    pair.run();
    assert_eq!(incoming_body(&pair.alice.take_events()), b"early");
}

#[test]
fn both_sides_active_bind_and_exchange_messages() {
    // R6135-4.2.2-2 tolerance: both sides connect-and-SEND; each accepts the other's.
    let (alice, mut bob) = configs();
    bob.role = Role::Active;
    let mut pair = Pair::bound_with(alice, bob);
    assert!(pair.alice.session.is_bound() && pair.bob.session.is_bound());
    assert_eq!(responses(&pair.alice.sent_chunks()), vec![200]);
    assert_eq!(responses(&pair.bob.sent_chunks()), vec![200]);
    pair.bob.session.send_message(pair.now, options("text/plain"), Bytes::from_static(b"hi")).unwrap();
    pair.run();
    assert_eq!(incoming_body(&pair.alice.take_events()), b"hi");
}

#[test]
fn a_first_send_with_a_body_binds_and_is_delivered() {
    let mut bob = Solo::passive();
    bob.feed(&send_text("bind0001", "", "hello"));
    assert_eq!(bob.events[0], Event::Bound);
    let delivered = incoming(&bob.events);
    assert_eq!(delivered.len(), 1);
    assert_eq!(&delivered[0].data[..], b"hello");
    assert_eq!(responses(&bob.take_sent()), vec![200]);
}

#[test]
fn a_send_for_another_session_gets_481_and_does_not_bind() {
    // R4975-7.3-1 (a) unknown session id, (c) a To-Path of two URIs; R4975-5.4-5 no match → 481.
    let mut bob = Solo::passive();
    let wrong = send_text("wrong001", "", "x").replace("bob5678", "someone-else");
    bob.feed(&wrong);
    let two_hops =
        send_text("twohops1", "", "x").replace(&format!("To-Path: {BOB}"), &format!("To-Path: {ALICE} {BOB}"));
    bob.feed(&two_hops);
    let sent = bob.take_sent();
    assert_eq!(responses(&sent), vec![481, 481]);
    assert!(!bob.session.is_bound());
    assert!(incoming(&bob.events).is_empty());
    // With Failure-Report: no, even the 481 is not sent (R4975-7.1.4-2).
    bob.feed(&send_text("wrong002", "Failure-Report: no\n", "x").replace("bob5678", "someone-else"));
    assert!(bob.take_sent().is_empty());
    // The right SEND still binds.
    bob.feed(&send_text("right001", "", "x"));
    assert!(bob.session.is_bound());
}

#[test]
fn a_from_path_other_than_the_expected_peer_gets_481() {
    let mut bob = Solo::passive();
    bob.feed(&send_text("from0001", "", "x").replace("alice1234", "mallory"));
    assert_eq!(responses(&bob.take_sent()), vec![481]);
}

#[test]
fn sessmatch_compares_session_ids_only() {
    let mut config = configs().1;
    config.use_sessmatch = true;
    let mut bob = Solo::with_config(config);
    // An SBC rewrote the authority; the session id still matches.
    bob.feed(&send_text("sbc00001", "", "x").replace("127.0.0.1:2856", "10.0.0.9:9999"));
    assert!(bob.session.is_bound());
    assert_eq!(responses(&bob.take_sent()), vec![200]);
}

#[test]
fn no_binding_within_30_seconds_ends_the_session() {
    let mut bob = Solo::passive();
    bob.advance(Duration::from_millis(29_999));
    assert!(!bob.session.is_closed());
    bob.advance(Duration::from_millis(1));
    assert_eq!(closed_reason(&bob.events), Some(&Some(SessionError::BindTimeout)));
    assert!(bob.closed, "the adapter is told to close");
    assert_eq!(bob.session.poll_timeout(), None);
}

#[test]
fn a_refused_binding_ends_the_active_side() {
    let mut alice = Solo::with_config(configs().0);
    let bind = alice.take_sent().remove(0);
    alice.feed(&format!(
        "MSRP {} 481 No such session\nTo-Path: {ALICE}\nFrom-Path: {BOB}\n-------{}$\n",
        bind.transaction_id, bind.transaction_id
    ));
    match closed_reason(&alice.events) {
        Some(Some(SessionError::BindRefused(error))) => assert_eq!(error.code, 481),
        other => panic!("expected a refused binding, got {other:?}"),
    }
}

/// Issue 12 §3 (bind timeout wording), R4975-7.1.1-4: a binding SEND the peer never
/// answers fails by the response timeout as a bind timeout, not as a refusal (408).
#[test]
fn an_unanswered_binding_send_is_a_bind_timeout_not_a_refusal() {
    let mut config = configs().0;
    config.bind_timeout = Duration::from_secs(60);
    let mut alice = Solo::with_config(config);
    assert_eq!(alice.take_sent().len(), 1, "the binding SEND went out");
    alice.advance(Duration::from_millis(29_999));
    assert!(!alice.session.is_closed());
    alice.advance(Duration::from_millis(1));
    assert_eq!(closed_reason(&alice.events), Some(&Some(SessionError::BindTimeout)));
    assert!(alice.closed, "the adapter is told to close");
}

// ---- Receiving (conformance.md §1.5, §1.6) ----

#[test]
fn media_types_outside_accept_types_get_415() {
    // R4975-7.3.1-4; `type/*` matches a whole type.
    let (alice, mut bob) = configs();
    bob.accept_types = AcceptTypes::new(["text/plain", "image/*"]);
    let mut pair = Pair::bound_with(alice, bob);
    let now = pair.now;
    let refused = pair.alice.session.send_message(now, options("application/zip"), Bytes::from_static(b"PK")).unwrap();
    let png = pair.alice.session.send_message(now, options("image/png"), Bytes::from_static(b"png")).unwrap();
    pair.run();
    let outcomes = done(&pair.alice.take_events());
    assert_eq!(outcomes[0], (refused, MessageOutcome::Failed(MsrpError::new(415, "Unsupported Media Type"))));
    assert_eq!(outcomes[1], (png, MessageOutcome::Delivered));
    assert_eq!(incoming_body(&pair.bob.take_events()), b"png");
}

#[test]
fn unknown_methods_get_501_and_reports_are_never_answered() {
    // R4975-12-1, R4975-10.9; R4975-7.1.2-2; R4975-7.3.2-1 (a REPORT about an unknown
    // Message-ID is only shown, with no message of ours).
    let mut bob = Solo::passive();
    bob.feed(&send_text("bind0001", "", ""));
    bob.take_sent();
    bob.feed(&format!("MSRP abcd0001 FOO\nTo-Path: {BOB}\nFrom-Path: {ALICE}\nX-Foo: bar\n-------abcd0001$\n"));
    let sent = bob.take_sent();
    assert_eq!(responses(&sent), vec![501]);
    assert_eq!(sent[0].transaction_id, "abcd0001");
    bob.feed(&format!(
        "MSRP rep00001 REPORT\nTo-Path: {BOB}\nFrom-Path: {ALICE}\nMessage-ID: unknown\nByte-Range: 1-1/1\nStatus: 000 200 OK\n-------rep00001$\n"
    ));
    assert!(bob.take_sent().is_empty(), "a REPORT was answered");
    assert!(matches!(bob.events.last(), Some(Event::Report { message: None, .. })));
}

#[test]
fn nickname_without_use_nickname_gets_400_and_with_it_goes_to_the_application() {
    // RFC 7701 §7.1.
    let mut bob = Solo::passive();
    bob.feed(&send_text("bind0001", "", ""));
    bob.take_sent();
    bob.feed(&format!("MSRP nick0001 NICKNAME\nTo-Path: {BOB}\nFrom-Path: {ALICE}\n-------nick0001$\n"));
    assert_eq!(responses(&bob.take_sent()), vec![400]);
    bob.feed(&format!(
        "MSRP nick0002 NICKNAME\nTo-Path: {BOB}\nFrom-Path: {ALICE}\nUse-Nickname: \"Alice\"\n-------nick0002$\n"
    ));
    let Some(Event::Request(request)) = bob.events.last().cloned() else { panic!("no request event") };
    assert_eq!(request.method(), Some(&Method::Nickname));
    assert!(bob.session.send_response(bob.now, &request, 425, Some("Nickname in use".into())).unwrap());
    bob.drain();
    let sent = bob.take_sent();
    assert_eq!(responses(&sent), vec![425]);
    // R4975-7.2-3: for methods other than SEND the To-Path is the whole From-Path.
    assert_eq!(sent[0].to_path().unwrap().0, vec![uri(ALICE)]);
}

#[test]
fn responses_follow_the_failure_report_matrix() {
    // R4975-7.2-1, R4975-7.1.4-2, R4975-7.1.4-3: FR yes/absent → 200; partial → silence on
    // success, error on failure; no → silence always.
    let mut config = configs().1;
    config.accept_types = AcceptTypes::new(["text/plain"]);
    let mut bob = Solo::with_config(config);
    let cases = [
        ("", 200, Some(415)),
        ("Failure-Report: yes\n", 200, Some(415)),
        ("Failure-Report: partial\n", 0, Some(415)),
        ("Failure-Report: no\n", 0, None),
    ];
    for (i, (header, ok, refused)) in cases.into_iter().enumerate() {
        bob.feed(&send_text(&format!("good{i:04}"), header, "x"));
        let sent = bob.take_sent();
        assert_eq!(responses(&sent), if ok == 0 { vec![] } else { vec![ok] }, "good SEND with {header:?}");
        bob.feed(&send_text(&format!("bad0{i:04}"), header, "x").replace("text/plain", "image/png"));
        assert_eq!(responses(&bob.take_sent()), refused.into_iter().collect::<Vec<_>>(), "bad SEND with {header:?}");
    }
}

#[test]
fn responses_go_to_the_previous_hop_with_a_dollar_end_line() {
    // R4975-7.2-2, R4975-7.2-3.
    let mut bob = Solo::passive();
    let relayed = send_text("hop00001", "", "x")
        .replace(&format!("From-Path: {ALICE}"), &format!("From-Path: msrp://relay.example.com:2855/r1;tcp {ALICE}"));
    bob.feed(&relayed);
    let wire = String::from_utf8(bob.wire.to_vec()).unwrap();
    assert!(wire.starts_with("MSRP hop00001 200 OK\r\nTo-Path: msrp://relay.example.com:2855/r1;tcp\r\n"), "{wire}");
    assert!(wire.ends_with("-------hop00001$\r\n"));
}

#[test]
fn a_malformed_chunk_gets_400_and_lost_framing_ends_the_session() {
    // R4975-10.2: a malformed Byte-Range is answered 400 and the session goes on.
    let mut bob = Solo::passive();
    bob.feed(&send_text("bind0001", "", ""));
    bob.take_sent();
    bob.feed(&send_text("bad00001", "", "abc").replace("Byte-Range: 1-3/3", "Byte-Range: x-3/3"));
    assert_eq!(responses(&bob.take_sent()), vec![400]);
    assert!(!bob.session.is_closed());
    bob.feed("this is not MSRP at all\n");
    assert!(matches!(closed_reason(&bob.events), Some(Some(SessionError::Parse(_)))));
    assert!(bob.closed);
}

/// Bob, bound, fed `wire` cut in two at `cut`: the transaction ids and codes he answered.
fn answers_to(wire: &str, cut: usize) -> (Solo, Vec<(String, Option<u16>)>) {
    let mut bob = Solo::passive();
    bob.feed(&send_text("bind0001", "", ""));
    bob.take_sent();
    bob.events.clear();
    bob.feed_bytes(&wire.as_bytes()[..cut]);
    bob.feed_bytes(&wire.as_bytes()[cut..]);
    let answered = bob.take_sent().into_iter().map(|chunk| (chunk.transaction_id.clone(), chunk.code())).collect();
    (bob, answered)
}

/// Issue 12 §2.2, R4975-9-11 (the end-line repeats the start line's transaction id): a
/// bodiless SEND whose end-line names another id (a prefix, an extension, another case)
/// gets a 400, and the session keeps listening: the decoder resynchronises on the next
/// start line, so the SEND after it gets its 200, wherever the reads split the bytes.
#[test]
fn issue_12_2_2_a_wrong_end_line_gets_400_and_the_next_send_its_200() {
    let good = send_text("good0001", "", "hello").replace('\n', "\r\n");
    for wrong in ["bad0000", "bad000011", "BAD00001"] {
        let bad = send_text("bad00001", "", "").replace("-------bad00001$", &format!("-------{wrong}$"));
        let wire = format!("{}{good}", bad.replace('\n', "\r\n"));
        for cut in 0..=wire.len() {
            let (bob, answered) = answers_to(&wire, cut);
            let expected = [("bad00001".to_owned(), Some(400)), ("good0001".to_owned(), Some(200))];
            assert_eq!(answered, expected, "end-line {wrong}, cut at {cut}");
            assert_eq!(incoming_body(&bob.events), b"hello", "end-line {wrong}, cut at {cut}");
            assert!(!bob.session.is_closed() && !bob.closed, "end-line {wrong}, cut at {cut}");
        }
    }
}

/// Issue 12 §2.7, R4975-9-1 (a bad method gets 400 when a transaction id can be recovered):
/// what the decoder's error promises is what goes on the wire, for a bad method and for
/// the requests that can get no answer (`Failure-Report: no`, no From-Path, a response
/// with a malformed status code).
#[test]
fn issue_12_2_7_malformed_requests_get_exactly_the_response_the_error_promises() {
    let paths = format!("To-Path: {BOB}\nFrom-Path: {ALICE}\n");
    let cases = [
        (format!("MSRP meth0001 send\n{paths}-------meth0001$\n"), Some(400)),
        (format!("MSRP meth0002 Send\n{paths}Content-Type: text/plain\n\nhi\n-------meth0002$\n"), Some(400)),
        (format!("MSRP meth0003 send\n{paths}Failure-Report: no\n-------meth0003$\n"), None),
        (format!("MSRP meth0004 20 OK\n{paths}-------meth0004$\n"), None),
        (format!("MSRP path0001 SEND\nTo-Path: {BOB}\nMessage-ID: m1\n-------path0001$\n"), None),
        (format!("MSRP path0002 SEND\nFrom-Path: {ALICE}\nMessage-ID: m2\n-------path0002$\n"), Some(400)),
    ];
    for (text, status) in cases {
        let wire = text.replace('\n', "\r\n");
        let mut decoder = Decoder::new(DecoderLimits::default());
        decoder.feed(Bytes::from(wire.clone()));
        let error = decoder.poll_chunk(None).expect("an item").expect_err("malformed");
        assert_eq!(error.status(), status, "{text}");
        let (_, answered) = answers_to(&wire, wire.len());
        let tid = error.transaction_id.clone().expect("transaction id");
        assert_eq!(answered, status.map(|code| (tid, Some(code))).into_iter().collect::<Vec<_>>(), "{text}");
    }
}

/// Issue 12 §2.9, R4975-7.1-4 (a bodiless request MUST NOT carry Content-Type), tolerated:
/// sloppy peers put one on the empty SEND that binds or keeps alive. It is answered with
/// 200 like any bodiless SEND, shows the application nothing, and is not refused for its
/// type.
#[test]
fn issue_12_2_9_a_bodiless_send_with_content_type_is_a_plain_bodiless_send() {
    let mut config = configs().1;
    config.accept_types = AcceptTypes::new(["image/png"]);
    let mut bob = Solo::with_config(config);
    bob.feed(&send_text("bind0001", "Content-Type: text/plain\n", ""));
    assert_eq!(responses(&bob.take_sent()), vec![200]);
    assert_eq!(bob.events, vec![Event::Bound]);
}

/// A 100,000-byte message sent in one chunk to a side with segments of 10,000 bytes,
/// read in pieces of `split` bytes: the receiver's events and the body.
fn one_chunk_received_in_segments(split: usize) -> (Vec<Event>, Bytes) {
    let (mut alice, mut bob) = configs();
    alice.max_chunk_size = 1 << 20;
    bob.segment_size = 10_000;
    let mut pair = Pair::new(alice, bob);
    pair.split = split;
    pair.connect();
    pair.run();
    let body = pattern(100_000);
    pair.alice.session.send_message(pair.now, options("application/octet-stream"), body.clone()).unwrap();
    pair.run();
    (pair.bob.take_events(), body)
}

#[test]
fn large_incoming_chunks_come_in_segments() {
    // R4975-7.1.1-11: chunks of any size are accepted; the application sees segments of
    // about `segment_size` with Byte-Ranges that add up.
    let (events, body) = one_chunk_received_in_segments(4096);
    let segments = incoming(&events);
    assert!(segments.len() >= 9, "{} segments", segments.len());
    let mut next = 1;
    for segment in &segments {
        let range = segment.byte_range().unwrap();
        assert_eq!(range.start, next);
        next += segment.data.len() as u64;
    }
    assert_eq!(segments.last().unwrap().contflag, ContinuationFlag::End);
    assert_eq!(incoming_body(&events), body);
}

#[test]
fn pieces_read_are_not_joined_past_the_segment_size() {
    // Reads of 6000 bytes against segments of 10,000: held bytes go out before a piece
    // that would take them past the size, so no segment is a joined copy above it.
    let (events, body) = one_chunk_received_in_segments(6000);
    let segments = incoming(&events);
    assert!(segments.len() >= 16, "{} segments", segments.len());
    for segment in &segments {
        assert!(segment.data.len() <= 10_000, "a segment of {} bytes", segment.data.len());
    }
    assert_eq!(incoming_body(&events), body);
}

#[test]
fn reassembly_delivers_whole_messages_and_413_beyond_the_cap() {
    // R4975-7.3.1-1, R4975-10.5: after the 413 the sender sends no further chunk of it.
    let (mut alice, mut bob) = configs();
    alice.max_chunk_size = 1000;
    alice.write_high_watermark = 1;
    bob.reassembly = Some(ReassemblyLimits { max_message_size: 10_000, max_open_messages: 4 });
    let mut pair = Pair::bound_with(alice, bob);
    // Writes are held, so one chunk is out when the 413 comes back.
    pair.alice.hold_writes = true;
    let big = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(50_000)).unwrap();
    pair.run();
    pair.alice.hold_writes = false;
    pair.alice.release_writes(pair.now);
    let small = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(5000)).unwrap();
    pair.run();
    let bob_events = pair.bob.take_events();
    let whole = incoming(&bob_events);
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].data, pattern(5000));
    assert_eq!(whole[0].byte_range(), Some(ByteRange::whole(5000)));
    let outcomes = done(&pair.alice.take_events());
    assert!(outcomes.contains(&(small, MessageOutcome::Delivered)));
    assert!(outcomes.contains(&(big, MessageOutcome::Failed(MsrpError::new(413, "Message too large")))));
    let big_chunks = pair
        .alice
        .sent_chunks()
        .into_iter()
        .filter(|c| c.byte_range().is_some_and(|r| r.total == Some(50_000)))
        .count();
    assert_eq!(big_chunks, 1);
}

// ---- Reports (conformance.md §1.4) ----

#[test]
fn success_report_matches_the_rfc_example() {
    // R4975-7.1.3-2: given the §11.6 SEND, the REPORT equals the §11.6 REPORT but for the tid.
    let local = vec![uri("msrp://bob.example.com:8888/9di4eae923wzd;tcp")];
    let remote = vec![uri("msrp://alicepc.example.com:7777/iau39soe2843z;tcp")];
    let mut bob = Solo::with_config(SessionConfig::new(Role::Passive, local, remote));
    let body = "<html><body>\n<p>Here is that important link...\n<a href=\"http://www.example.com/foobar\">foobar</a>\n</p>\n</body></html>\n";
    let send = format!(
        "MSRP d93kswow SEND\nTo-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\nFrom-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\nMessage-ID: 12339sdqwer\nByte-Range: 1-106/106\nSuccess-Report: yes\nFailure-Report: no\nContent-Type: text/html\n\n{body}-------d93kswow$\n"
    );
    bob.feed(&send);
    let sent = bob.take_sent();
    assert_eq!(sent.len(), 1, "Failure-Report: no, so only the REPORT goes out");
    let tid = sent[0].transaction_id.clone();
    // R4975-X-1: the example's Byte-Range says 106 but its body is 121 octets; the REPORT
    // covers the bytes received (R4975-7.3.1-2), so it differs from the RFC there only.
    let expected = format!(
        "MSRP {tid} REPORT\r\nTo-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\nFrom-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\nMessage-ID: 12339sdqwer\r\nByte-Range: 1-121/121\r\nStatus: 000 200 OK\r\n-------{tid}$\r\n"
    );
    assert_eq!(String::from_utf8(sent[0].encode().to_vec()).unwrap(), expected);
}

#[test]
fn one_success_report_covers_a_chunked_message_after_its_last_chunk() {
    // R4975-7.1.2-3, R4975-7.1.3-1, R4975-7.1.3-3 (none without Success-Report: yes),
    // R4975-7.1.2-1.
    let (mut alice, bob) = configs();
    alice.max_chunk_size = 3000;
    let mut pair = Pair::bound_with(alice, bob);
    let now = pair.now;
    let wanted = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
    let reported = pair.alice.session.send_message(now, wanted, pattern(8000)).unwrap();
    pair.alice.session.send_message(now, options("text/plain"), pattern(10)).unwrap();
    pair.run();
    let reports: Vec<Chunk> =
        pair.bob.sent_chunks().into_iter().filter(|c| c.method() == Some(&Method::Report)).collect();
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report.byte_range(), Some(ByteRange::new(1, Some(8000), Some(8000))));
    assert_eq!(report.status().unwrap().code, 200);
    assert_eq!(report.headers.get(&HeaderName::SuccessReport), None);
    assert_eq!(report.headers.get(&HeaderName::FailureReport), None);
    // The REPORT follows the 200 of the last chunk on the wire.
    let bob_chunks = pair.bob.sent_chunks();
    let at = bob_chunks.iter().position(|c| c.method() == Some(&Method::Report)).unwrap();
    assert_eq!(bob_chunks[at - 1].code(), Some(200));
    let events = pair.alice.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::Report { message: Some(id), .. } if *id == reported)));
    assert!(done(&events).contains(&(reported, MessageOutcome::Delivered)));
    // The report arrived, so closing owes nothing.
    pair.alice.session.close(pair.now);
    pair.run();
    assert!(!pair.alice.take_events().iter().any(|e| matches!(e, Event::ReportMissing { .. })));
}

#[test]
fn the_success_report_of_an_empty_message_names_it() {
    // An empty message asking for a success REPORT gets one (Byte-Range 1-0/0) after its
    // 200; the sender must still know which message it is about (it used to forget an
    // empty message on `Delivered`, its coverage being complete without any REPORT).
    let mut pair = Pair::bound();
    let wanted = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
    let id = pair.alice.session.send_message(pair.now, wanted, Bytes::new()).unwrap();
    pair.run();
    let events = pair.alice.take_events();
    assert_eq!(done(&events), vec![(id, MessageOutcome::Delivered)]);
    let report = events.iter().find_map(|event| match event {
        Event::Report { message, report } => Some((*message, report.byte_range())),
        _ => None,
    });
    assert_eq!(report, Some((Some(id), Some(ByteRange::new(1, Some(0), Some(0))))));
    pair.alice.session.close(pair.now);
    pair.run();
    assert!(missing_reports(&pair.alice.take_events()).is_empty(), "the REPORT came");
}

#[test]
fn an_empty_message_whose_success_report_never_comes_is_reported_missing() {
    let mut pair = Pair::bound();
    pair.bob.deaf = true;
    let mut lost = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
    lost.headers.set(HeaderName::FailureReport, "no");
    let id = pair.alice.session.send_message(pair.now, lost, Bytes::new()).unwrap();
    pair.advance(Duration::from_secs(31));
    pair.alice.session.close(pair.now);
    pair.run();
    let events = pair.alice.take_events();
    assert_eq!(done(&events), vec![(id, MessageOutcome::Delivered)]);
    assert_eq!(missing_reports(&events), vec![id]);
}

#[test]
fn a_missing_success_report_is_told_when_the_session_ends() {
    // R4975-7.1.1-6: the peer swallows the message, so no REPORT comes.
    let mut pair = Pair::bound();
    pair.bob.deaf = true;
    let mut lost = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
    lost.headers.set(HeaderName::FailureReport, "no");
    let id = pair.alice.session.send_message(pair.now, lost, pattern(10)).unwrap();
    pair.advance(Duration::from_secs(31));
    pair.alice.session.close(pair.now);
    pair.run();
    let events = pair.alice.take_events();
    assert_eq!(done(&events), vec![(id, MessageOutcome::Delivered)], "FR no: local 200 after 30 s");
    let missing = missing_reports(&events);
    assert_eq!(missing, vec![id]);
}

/// Alice sends a 100 KB message of which one 1000-byte chunk is out when Bob's REPORT with
/// `status` comes back; returns the pair, the message and its Message-ID.
fn report_during_a_message(status: &str) -> (Pair, OutgoingId, String) {
    let (mut alice, bob) = configs();
    alice.max_chunk_size = 1000;
    alice.write_high_watermark = 1;
    let mut pair = Pair::bound_with(alice, bob);
    // Writes are held, so the watermark keeps every other chunk back.
    pair.alice.hold_writes = true;
    let id = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(100_000)).unwrap();
    pair.run();
    let message_id = pair.alice.sent_chunks().last().unwrap().message_id().unwrap().to_owned();
    let report = format!(
        "MSRP rep00000 REPORT\r\nTo-Path: {ALICE}\r\nFrom-Path: {BOB}\r\nMessage-ID: {message_id}\r\nByte-Range: 1-1000/100000\r\nStatus: {status}\r\n-------rep00000$\r\n"
    );
    pair.alice.session.handle_input(pair.now, Input::Received(Bytes::from(report)));
    pair.alice.release_writes(pair.now);
    pair.alice.hold_writes = false;
    pair.run();
    (pair, id, message_id)
}

#[test]
fn a_failure_report_with_status_413_stops_the_message() {
    // R4975-7.3.2-2: `Status: 000 413` acts like a 413 response: no further chunk (R4975-10.5).
    let (mut pair, id, message_id) = report_during_a_message("000 413 Stop");
    let sends = pair.alice.sent_chunks().into_iter().filter(|c| c.message_id() == Some(message_id.as_str())).count();
    assert_eq!(sends, 1, "no chunk after the 413 REPORT");
    let events = pair.alice.take_events();
    assert!(done(&events).contains(&(id, MessageOutcome::Failed(MsrpError::new(413, "Stop")))));
    assert_eq!(closed_reason(&events), None, "a 413 stops the message, not the session");
}

/// Issue 12 §2.3, R4975-7.3.2-2 (Status namespace 000 is read like a response with that
/// code; RFC 4975 §7.3.2 reserves the codes of other namespaces): a failure REPORT
/// `999 500` about a message that asked for REPORTs is shown but fails nothing; `000 500`
/// fails the message and, bytes being lost, the session (R4975-7.3.2-4).
#[test]
fn issue_12_2_3_only_status_namespace_000_fails_a_message() {
    for (status, fails) in [("999 500 Whatever", false), ("000 500 Whatever", true)] {
        let mut alice = Solo::with_config(configs().0);
        let bind = alice.take_sent().remove(0).transaction_id;
        alice.feed(&format!("MSRP {bind} 200 OK\nTo-Path: {ALICE}\nFrom-Path: {BOB}\n-------{bind}$\n"));
        let mut reported = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
        reported.headers.set(HeaderName::FailureReport, "yes");
        let id = alice.session.send_message(alice.now, reported, Bytes::from_static(b"hello")).unwrap();
        alice.drain();
        let send = alice.take_sent().remove(0);
        let message_id = send.message_id().unwrap().to_owned();
        alice.events.clear();
        alice.feed(&format!(
            "MSRP rep00001 REPORT\nTo-Path: {ALICE}\nFrom-Path: {BOB}\nMessage-ID: {message_id}\nByte-Range: 1-5/5\nStatus: {status}\n-------rep00001$\n"
        ));
        assert!(
            alice.events.iter().any(|event| matches!(event, Event::Report { message: Some(m), .. } if *m == id)),
            "{status}: {:?}",
            alice.events
        );
        if fails {
            assert_eq!(done(&alice.events), vec![(id, MessageOutcome::Failed(MsrpError::new(500, "Whatever")))]);
            assert!(matches!(closed_reason(&alice.events), Some(Some(SessionError::Failed(_)))), "{status}");
        } else {
            assert_eq!(done(&alice.events), vec![], "{status}");
            assert!(!alice.session.is_closed(), "{status}");
            let tid = &send.transaction_id;
            alice.feed(&format!("MSRP {tid} 200 OK\nTo-Path: {ALICE}\nFrom-Path: {BOB}\n-------{tid}$\n"));
            assert_eq!(done(&alice.events), vec![(id, MessageOutcome::Delivered)], "{status}");
        }
    }
}

// ---- Transactions and timeouts (conformance.md §1.3) ----

fn chunk_with_failure_report(pair: &mut Pair, failure_report: Option<Fr>) -> Chunk {
    let mut chunk = pair
        .alice
        .session
        .transport_mut()
        .make_chunk(ChunkParams { data: Bytes::from_static(b"ping"), ..ChunkParams::default() });
    chunk.headers.set(HeaderName::ContentType, "text/plain");
    if let Some(failure_report) = failure_report {
        chunk.add_header(&failure_report);
    }
    chunk
}

fn response_of(events: &[Event], id: RequestId) -> Option<(u16, bool)> {
    events.iter().find_map(|event| match event {
        Event::Response { request, response, local } if *request == id => Some((response.code()?, *local)),
        _ => None,
    })
}

#[test]
fn send_chunk_reports_the_peer_response() {
    // R4975-10.1, R4975-7.2-4 (the response comes back on the connection of the request).
    let mut pair = Pair::bound();
    let chunk = chunk_with_failure_report(&mut pair, None);
    let id = pair.alice.session.send_chunk(pair.now, chunk).unwrap();
    pair.run();
    assert_eq!(response_of(&pair.alice.take_events(), id), Some((200, false)));
}

#[test]
fn deliver_chunk_waits_for_a_response_unless_failure_report_is_no() {
    let mut pair = Pair::bound();
    let chunk = chunk_with_failure_report(&mut pair, None);
    let id = pair.alice.session.deliver_chunk(pair.now, chunk).unwrap().expect("a response to wait for");
    let silent = chunk_with_failure_report(&mut pair, Some(Fr::No));
    assert_eq!(pair.alice.session.deliver_chunk(pair.now, silent).unwrap(), None);
    pair.run();
    let events = pair.alice.take_events();
    let responses: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Response { request, response, .. } => Some((*request, response.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(responses.len(), 1, "FR no opens no transaction");
    assert_eq!(responses[0].0, id);
    assert!(transaction_result(responses[0].1.clone()).is_ok());
    pair.advance(Duration::from_secs(60));
    assert!(!pair.alice.take_events().iter().any(|e| matches!(e, Event::Response { .. })));
    let failed = Chunk::response("abcd", 415, Some("Unsupported Media Type".into()));
    assert_eq!(transaction_result(failed), Err(MsrpError::new(415, "Unsupported Media Type")));
}

#[test]
fn no_response_within_30_seconds_gives_408_or_200_by_failure_report() {
    // R4975-7.1.1-4 (timer of 30 s), spec rule: partial/no → local 200; R4975-7.1.1-5 pipelining.
    let mut pair = Pair::bound();
    pair.bob.deaf = true;
    let cases = [None, Some(Fr::Yes), Some(Fr::Partial), Some(Fr::No)];
    let ids: Vec<_> = cases
        .iter()
        .map(|fr| {
            let chunk = chunk_with_failure_report(&mut pair, *fr);
            pair.alice.session.send_chunk(pair.now, chunk).unwrap()
        })
        .collect();
    pair.run();
    assert_eq!(
        pair.alice.sent_chunks().iter().filter(|c| c.method() == Some(&Method::Send)).count(),
        5,
        "all pipelined"
    );
    pair.advance(Duration::from_millis(29_999));
    assert!(ids.iter().all(|id| response_of(&pair.alice.events, *id).is_none()), "answered before 30 s");
    pair.advance(Duration::from_millis(1));
    let events = pair.alice.take_events();
    let codes: Vec<_> = ids.iter().map(|id| response_of(&events, *id)).collect();
    assert_eq!(codes, vec![Some((408, true)), Some((408, true)), Some((200, true)), Some((200, true))]);
}

#[test]
fn the_response_timer_starts_when_the_last_byte_is_written() {
    // R4975-7.1.1-4: "within 30 s of the last byte being sent". A write that takes 40 s
    // would end the session at the default write-stall deadline (issue 12 §2.1).
    let (mut alice, bob) = configs();
    alice.write_stall_timeout = Duration::from_secs(60);
    let mut pair = Pair::bound_with(alice, bob);
    pair.bob.deaf = true;
    pair.alice.hold_writes = true;
    let chunk = chunk_with_failure_report(&mut pair, None);
    let id = pair.alice.session.send_chunk(pair.now, chunk).unwrap();
    pair.run();
    pair.advance(Duration::from_secs(40));
    assert!(response_of(&pair.alice.events, id).is_none(), "timed out before the write completed");
    pair.alice.release_writes(pair.now);
    pair.advance(Duration::from_secs(30));
    assert_eq!(response_of(&pair.alice.take_events(), id), Some((408, true)));
}

#[test]
fn a_408_from_a_relay_is_treated_like_a_local_timeout_and_481_ends_the_session() {
    // R4975-10.4: a 408 response fails the message; R4975-10.8: 481 ends the session.
    let mut pair = Pair::bound();
    pair.bob.deaf = true;
    let first = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(10)).unwrap();
    let second = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(10)).unwrap();
    pair.run();
    let sends: Vec<_> = pair.alice.sent_chunks().into_iter().filter(|c| c.method() == Some(&Method::Send)).collect();
    let answer = |tid: &str, code: u16| {
        Bytes::from(format!("MSRP {tid} {code} Whatever\r\nTo-Path: {ALICE}\r\nFrom-Path: {BOB}\r\n-------{tid}$\r\n"))
    };
    pair.alice.session.handle_input(pair.now, Input::Received(answer(&sends[1].transaction_id, 408)));
    pair.run();
    assert_eq!(done(&pair.alice.take_events()), vec![(first, MessageOutcome::Failed(MsrpError::new(408, "Whatever")))]);
    pair.alice.session.handle_input(pair.now, Input::Received(answer(&sends[2].transaction_id, 481)));
    pair.run();
    let events = pair.alice.take_events();
    assert_eq!(done(&events), vec![(second, MessageOutcome::Failed(MsrpError::new(481, "Whatever")))]);
    assert!(matches!(closed_reason(&events), Some(Some(SessionError::Failed(_)))));
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut pair = Pair::bound();
    let now = pair.now;
    let response = Chunk::response("abcd1234", 200, None);
    assert_eq!(pair.alice.session.send_chunk(now, response), Err(SendError::NotARequest));
    let chunk = chunk_with_failure_report(&mut pair, None);
    pair.alice.session.send_chunk(now, chunk.clone()).unwrap();
    assert!(matches!(pair.alice.session.send_chunk(now, chunk), Err(SendError::DuplicateTransaction(_))));
    let mut bad = Chunk::request("x", Method::Send);
    bad.data = Bytes::from_static(b"no paths");
    assert!(matches!(pair.alice.session.send_chunk(now, bad), Err(SendError::Invalid(_))));
    pair.alice.session.close(now);
    assert_eq!(pair.alice.session.send_message(now, options("text/plain"), Bytes::new()), Err(SendError::Closed));
}

// ---- Sending: chunking, interleaving, abort, resume, backpressure (§1.2, §1.3) ----

#[test]
fn a_chat_message_overtakes_a_10_mib_transfer() {
    // R4975-7.1.1-12: concurrent SENDs are interleaved; the chat line leaves within one chunk.
    let mut pair = Pair::bound();
    let now = pair.now;
    let file = pair.alice.session.send_message(now, options("application/octet-stream"), pattern(10 << 20)).unwrap();
    let chat = pair.alice.session.send_message(now, options("text/plain"), Bytes::from_static(b"hi!")).unwrap();
    pair.run();
    let sends: Vec<_> = pair.alice.sent_chunks().into_iter().filter(|c| c.method() == Some(&Method::Send)).collect();
    let chat_at = sends.iter().position(|c| c.content_type() == Some("text/plain")).unwrap();
    assert!(chat_at <= 2, "the chat message went out as send #{chat_at}");
    // R4975-5.1-1: file chunks over 2048 bytes are interruptible (`*` end); R4975-7.1-7 flags.
    let file_chunks: Vec<_> = sends.iter().filter(|c| c.content_type() == Some("application/octet-stream")).collect();
    let chunk_size = pair.alice.session.config().max_chunk_size;
    let count = (10 << 20) / chunk_size;
    assert_eq!(file_chunks.len(), count);
    // R4975-7.1.1-10: as few chunks as the chunk size allows, none short but the last.
    assert!(file_chunks.iter().all(|c| c.data.len() == chunk_size));
    assert!(file_chunks.iter().all(|c| c.byte_range().unwrap().end.is_none()));
    assert!(file_chunks[..count - 1].iter().all(|c| c.contflag == ContinuationFlag::More));
    assert_eq!(file_chunks[count - 1].contflag, ContinuationFlag::End);
    // R4975-7.1.1-1 and -8: one Message-ID, Byte-Range order; R4975-7.1.1-2: the same
    // report headers on every chunk.
    let message_id = file_chunks[0].message_id().unwrap();
    let mut next = 1;
    for chunk in &file_chunks {
        assert_eq!(chunk.message_id(), Some(message_id));
        assert_eq!(
            chunk.headers.get(&HeaderName::FailureReport),
            file_chunks[0].headers.get(&HeaderName::FailureReport)
        );
        assert_eq!(
            chunk.headers.get(&HeaderName::SuccessReport),
            file_chunks[0].headers.get(&HeaderName::SuccessReport)
        );
        assert_eq!(chunk.byte_range().unwrap().start, next);
        next += chunk.data.len() as u64;
    }
    let events = pair.alice.take_events();
    assert_eq!(done(&events), vec![(chat, MessageOutcome::Delivered), (file, MessageOutcome::Delivered)]);
    let bob_events = pair.bob.take_events();
    assert_eq!(incoming(&bob_events).iter().map(|c| c.data.len()).sum::<usize>(), (10 << 20) + 3);
}

/// The file's chunks and the responses a node wrote, in wire order.
fn file_chunks_and_responses(node: &harness::Node) -> Vec<Chunk> {
    let file_or_response = |c: &Chunk| c.content_type() == Some("application/octet-stream") || c.code().is_some();
    node.sent_chunks().into_iter().filter(file_or_response).collect()
}

/// The file's chunks a node wrote.
fn file_chunks(node: &harness::Node) -> Vec<Chunk> {
    file_chunks_and_responses(node).into_iter().filter(|c| c.method() == Some(&Method::Send)).collect()
}

/// A 1 MiB file from Alice in 256 KiB chunks (the defaults: 64 KiB slices, 256 KiB write
/// watermark) to Bob, who reassembles it; Alice's socket drains only when told.
fn slow_file_transfer() -> (Pair, OutgoingId) {
    let (alice, mut bob) = configs();
    bob.reassembly = Some(ReassemblyLimits { max_message_size: 4 << 20, max_open_messages: 4 });
    let mut pair = Pair::bound_with(alice, bob);
    pair.alice.hold_writes = true;
    let file =
        pair.alice.session.send_message(pair.now, options("application/octet-stream"), pattern(1 << 20)).unwrap();
    pair.run();
    (pair, file)
}

/// Lets Alice's socket drain 16 KiB at a time until everything is written and answered.
fn drain_slowly(pair: &mut Pair) {
    while pair.alice.release_some_writes(pair.now, 16 * 1024) > 0 {
        pair.run();
        // R4975-7.1.1-12: what is handed out but unwritten stays under the watermark plus a
        // slice (and a head), however large the chunk.
        let config = pair.alice.session.config();
        let bound = config.write_high_watermark + config.max_slice_size + 1024;
        assert!(pair.alice.session.unwritten() <= bound as u64, "{} B unwritten", pair.alice.session.unwritten());
    }
    pair.alice.hold_writes = false;
    pair.run();
}

// Issue 12 §2.5, R4975-7.1.1-12 (and R4975-5.1-1): a SEND larger than 2048 octets is
// interrupted for a pending response. Alice owes Bob a 200 while the second 256 KiB chunk
// of her file is in progress: that chunk ends early with `+`, the 200 goes out, and the
// rest of the file follows in new chunks; Bob reassembles it byte for byte.
#[test]
fn issue_12_2_5_a_200_overtakes_the_rest_of_a_large_chunk() {
    let (mut pair, file) = slow_file_transfer();
    let chunk_size = pair.alice.session.config().max_chunk_size;
    // The first chunk went out whole; the second starts once there is room again.
    pair.alice.release_some_writes(pair.now, 64 * 1024);
    pair.run();
    let chat = pair.bob.session.send_message(pair.now, options("text/plain"), Bytes::from_static(b"hi")).unwrap();
    pair.run();
    drain_slowly(&mut pair);

    let wire = file_chunks_and_responses(&pair.alice);
    let ok_to_bob = wire.iter().position(|c| c.code() == Some(200) && c.to_path().unwrap().0 == vec![uri(BOB)]);
    let ok_to_bob = ok_to_bob.expect("Alice answered Bob's SEND");
    let before: Vec<_> = wire[..ok_to_bob].iter().filter(|c| c.method() == Some(&Method::Send)).collect();
    let after: Vec<_> = wire[ok_to_bob..].iter().filter(|c| c.method() == Some(&Method::Send)).collect();
    let sent_before: usize = before.iter().map(|c| c.data.len()).sum();
    assert!(sent_before < 2 * chunk_size, "the 200 came after {sent_before} B of the file, behind the whole chunk");
    let interrupted = before.last().unwrap();
    assert_eq!(interrupted.byte_range().unwrap().start, chunk_size as u64 + 1);
    assert!(interrupted.data.len() < chunk_size, "the chunk in progress was not ended early");
    assert_eq!(interrupted.contflag, ContinuationFlag::More);
    assert_eq!(interrupted.byte_range().unwrap().end, None, "an interruptible chunk says `*` for its end");
    // The rest follows from the next byte on, in Byte-Range order, and the last chunk ends with `$`.
    let mut next = 1;
    for chunk in before.iter().chain(&after) {
        assert_eq!(chunk.byte_range().unwrap().start, next);
        next += chunk.data.len() as u64;
    }
    assert_eq!(next, (1 << 20) + 1);
    assert_eq!(after.last().unwrap().contflag, ContinuationFlag::End);

    let bob_events = pair.bob.take_events();
    let whole = incoming(&bob_events);
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].data, pattern(1 << 20), "Bob reassembled the file byte for byte");
    assert_eq!(done(&bob_events), vec![(chat, MessageOutcome::Delivered)]);
    assert_eq!(done(&pair.alice.take_events()), vec![(file, MessageOutcome::Delivered)]);
}

// Issue 12 §2.5, R4975-7.1.1-10: with nothing else waiting, chunks are not cut early (as
// few chunks as the chunk size allows), although their bodies leave in slices and what is
// unwritten stays bounded (checked in `drain_slowly`).
#[test]
fn issue_12_2_5_without_pending_responses_a_chunk_is_not_cut_early() {
    let (mut pair, file) = slow_file_transfer();
    drain_slowly(&mut pair);
    let chunk_size = pair.alice.session.config().max_chunk_size;
    let sends = file_chunks(&pair.alice);
    assert_eq!(sends.len(), (1 << 20) / chunk_size);
    assert!(sends.iter().all(|c| c.data.len() == chunk_size && c.byte_range().unwrap().end.is_none()));
    assert_eq!(sends.last().unwrap().contflag, ContinuationFlag::End);
    assert_eq!(incoming(&pair.bob.take_events())[0].data, pattern(1 << 20));
    assert_eq!(done(&pair.alice.take_events()), vec![(file, MessageOutcome::Delivered)]);
}

// Issue 12 §2.5: a chunk's body leaves in slices of at most `max_slice_size`, each a
// slice of the application's buffer (no copy), while less than the watermark is unwritten.
#[test]
fn issue_12_2_5_slices_are_bounded_and_share_the_application_buffer() {
    let mut pair = Pair::bound();
    let data = pattern(1 << 20);
    let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
    pair.alice.session.send_message(pair.now, options("application/octet-stream"), data.clone()).unwrap();
    let (slice, watermark) =
        (pair.alice.session.config().max_slice_size, pair.alice.session.config().write_high_watermark);
    let mut bodies = 0;
    while let Some(output) = pair.alice.session.poll_output(pair.now) {
        let Output::Transmit(transmit) = output else { continue };
        let body = &transmit.parts[1];
        assert!(body.len() <= slice, "a transmit carries {} B of body", body.len());
        assert!(range.contains(&(body.as_ptr() as usize)), "a slice was copied");
        assert!(pair.alice.session.unwritten() <= (watermark + slice + 1024) as u64);
        bodies += body.len();
    }
    assert_eq!(bodies, watermark, "handed out up to the watermark, then held back");
}

// Issue 12 §2.5, R4975-10.5: a 413 that comes while a chunk is in progress interrupts it
// (with `#`), and nothing more of the message is sent.
#[test]
fn issue_12_2_5_a_413_interrupts_the_chunk_in_progress() {
    let (mut alice, mut bob) = configs();
    alice.write_high_watermark = 64 * 1024;
    bob.reassembly = Some(ReassemblyLimits { max_message_size: 512 * 1024, max_open_messages: 4 });
    let mut pair = Pair::bound_with(alice, bob);
    pair.alice.hold_writes = true;
    let file =
        pair.alice.session.send_message(pair.now, options("application/octet-stream"), pattern(1 << 20)).unwrap();
    pair.run();
    drain_slowly(&mut pair);
    let sends = file_chunks(&pair.alice);
    assert_eq!(sends.len(), 1, "a chunk went out after the 413");
    assert_eq!(sends[0].contflag, ContinuationFlag::Abort);
    assert!(sends[0].data.len() < pair.alice.session.config().max_chunk_size, "the chunk was not interrupted");
    assert!(
        matches!(&done(&pair.alice.take_events())[..], [(id, MessageOutcome::Failed(error))] if *id == file && error.code == 413)
    );
}

// Issue 12 §2.5, R4975-7.1-7: closing while a chunk is in progress ends it with `#`
// first, so the peer reads whole frames up to the close (no truncated chunk).
#[test]
fn issue_12_2_5_closing_ends_the_chunk_in_progress_with_a_hash() {
    let (mut pair, file) = slow_file_transfer();
    pair.alice.release_some_writes(pair.now, 64 * 1024);
    pair.run();
    pair.alice.session.close(pair.now);
    pair.run();
    pair.alice.release_writes(pair.now);
    pair.run();
    let sends = file_chunks(&pair.alice);
    let last = sends.last().unwrap();
    assert_eq!((last.contflag, last.data.len()), (ContinuationFlag::Abort, 64 * 1024));
    assert!(matches!(&done(&pair.alice.take_events())[..], [(id, MessageOutcome::Failed(_))] if *id == file));
    // Everything Alice wrote reads as whole frames.
    let mut decoder = Decoder::new(DecoderLimits::default());
    decoder.feed(Bytes::from(pair.alice.wire.clone()));
    while let Some(chunk) = decoder.poll_chunk(Some(usize::MAX)) {
        chunk.unwrap();
    }
    assert_eq!(decoder.finish(), None, "Alice's output ends inside a frame");
}

#[test]
fn an_aborted_message_ends_with_a_hash() {
    // R4975-7.1-7: `#` aborts; a message aborted before anything left sends nothing.
    let (mut alice, bob) = configs();
    alice.max_chunk_size = 64 * 1024;
    let mut pair = Pair::bound_with(alice, bob);
    let now = pair.now;
    let mut file = options("application/octet-stream");
    file.total = Some(1 << 20);
    let id = pair.alice.session.start_message(now, file).unwrap();
    assert_eq!(pair.alice.session.write_message(now, id, pattern(200_000)).unwrap(), 200_000);
    pair.run();
    pair.alice.session.abort_message(pair.now, id).unwrap();
    let never = pair.alice.session.start_message(pair.now, options("text/plain")).unwrap();
    pair.alice.session.abort_message(pair.now, never).unwrap();
    pair.run();
    let sends: Vec<_> = pair.alice.sent_chunks().into_iter().filter(|c| c.method() == Some(&Method::Send)).collect();
    assert_eq!(sends.last().unwrap().contflag, ContinuationFlag::Abort);
    assert!(sends.iter().all(|c| c.content_type() != Some("text/plain")));
    let outcomes = done(&pair.alice.take_events());
    assert!(outcomes.contains(&(id, MessageOutcome::Aborted)));
    assert!(outcomes.contains(&(never, MessageOutcome::Aborted)));
    let bob_events = pair.bob.take_events();
    assert_eq!(incoming(&bob_events).last().unwrap().contflag, ContinuationFlag::Abort);
}

#[test]
fn a_file_resumes_from_a_position() {
    let mut pair = Pair::bound();
    let file = OutgoingFile {
        size: 5000,
        content_type: Some("application/octet-stream".into()),
        position: 1000,
        message_id: Some("file-1".into()),
        headers: Headers::new(),
    };
    let id = pair.alice.session.send_file(pair.now, &file).unwrap();
    assert_eq!(pair.alice.session.write_message(pair.now, id, pattern(4000)).unwrap(), 4000);
    pair.alice.session.finish_message(pair.now, id).unwrap();
    pair.run();
    let bob_events = pair.bob.take_events();
    let chunks = incoming(&bob_events);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].message_id(), Some("file-1"));
    assert_eq!(chunks[0].byte_range(), Some(ByteRange::new(1001, None, Some(5000))));
    assert_eq!(chunks[0].data, pattern(4000));
    assert_eq!(done(&pair.alice.take_events()), vec![(id, MessageOutcome::Delivered)]);
}

#[test]
fn streamed_writes_are_bounded_and_writable_says_when_to_go_on() {
    let (mut alice, bob) = configs();
    alice.message_buffer = 100_000;
    alice.max_chunk_size = 10_000;
    alice.write_high_watermark = 50_000;
    let mut pair = Pair::bound_with(alice, bob);
    pair.alice.hold_writes = true;
    let id = pair.alice.session.start_message(pair.now, options("application/octet-stream")).unwrap();
    let body = pattern(1 << 20);
    let mut offset = 0;
    let mut blocked = 0;
    while offset < body.len() {
        match pair.alice.session.write_message(pair.now, id, body.slice(offset..)) {
            Ok(taken) => offset += taken,
            Err(SendError::Blocked) => {
                blocked += 1;
                pair.run();
                // Output stays bounded while the socket does not drain.
                assert!(pair.alice.session.unwritten() <= 50_000 + 10_000 + 1024);
                pair.alice.release_writes(pair.now);
                pair.run();
                let events = pair.alice.take_events();
                assert!(events.contains(&Event::Writable { message: id }), "no Writable after a blocked write");
            }
            Err(other) => panic!("{other}"),
        }
    }
    pair.alice.session.finish_message(pair.now, id).unwrap();
    pair.alice.hold_writes = false;
    pair.alice.release_writes(pair.now);
    pair.run();
    assert!(blocked > 5);
    assert_eq!(incoming_body(&pair.bob.take_events()), body);
    assert_eq!(done(&pair.alice.take_events()), vec![(id, MessageOutcome::Delivered)]);
}

#[test]
fn bodies_holding_their_own_end_line_are_sent_safely() {
    // R4975-7.1-8.
    let mut pair = Pair::bound();
    let sneaky = Bytes::from_static(b"a\r\n-------abcd$\r\nb");
    pair.alice.session.send_message(pair.now, options("text/plain"), sneaky.clone()).unwrap();
    pair.run();
    assert_eq!(incoming_body(&pair.bob.take_events()), sneaky);
}

// ---- Keepalive and shutdown (§1.7) ----

#[test]
fn an_idle_session_sends_keepalives_and_a_silent_peer_fails_it() {
    let mut pair = Pair::bound();
    pair.advance(Duration::from_secs(60));
    let keepalives: Vec<_> =
        pair.alice.sent_chunks().into_iter().filter(|c| c.headers.get(&HeaderName::KeepAlive).is_some()).collect();
    assert!(!keepalives.is_empty());
    assert!(keepalives[0].data.is_empty());
    assert!(pair.bob.take_events().is_empty(), "keepalives are not shown to the application");
    pair.bob.deaf = true;
    pair.advance(Duration::from_secs(95));
    match closed_reason(&pair.alice.take_events()) {
        Some(Some(SessionError::KeepaliveFailed(error))) => assert_eq!(error.code, 408),
        other => panic!("expected a keepalive failure, got {other:?}"),
    }
}

#[test]
fn keepalive_can_be_turned_off() {
    let (mut alice, mut bob) = configs();
    alice.keepalive_interval = None;
    bob.keepalive_interval = None;
    let mut pair = Pair::new(alice, bob);
    pair.connect();
    pair.advance(Duration::from_secs(600));
    assert_eq!(pair.alice.sent_chunks().len(), 1, "only the binding SEND");
    assert_eq!(pair.alice.session.poll_timeout(), None);
}

#[test]
fn shutdown_sends_what_is_queued_waits_for_responses_then_closes() {
    let mut pair = Pair::bound();
    let id = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(300_000)).unwrap();
    pair.alice.session.shutdown(pair.now);
    assert_eq!(
        pair.alice.session.send_message(pair.now, options("text/plain"), Bytes::new()),
        Err(SendError::ShuttingDown)
    );
    pair.run();
    let events = pair.alice.take_events();
    assert_eq!(done(&events), vec![(id, MessageOutcome::Delivered)]);
    assert_eq!(events.last(), Some(&Event::Closed { reason: None }));
    assert!(pair.alice.closed);
    assert_eq!(incoming_body(&pair.bob.take_events()).len(), 300_000);
}

#[test]
fn shutdown_with_a_silent_peer_answers_every_pending_transaction_locally() {
    let mut pair = Pair::bound();
    pair.bob.deaf = true;
    let chunk = chunk_with_failure_report(&mut pair, Some(Fr::No));
    let request = pair.alice.session.send_chunk(pair.now, chunk).unwrap();
    let message = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(10)).unwrap();
    let mut config_shorter = pair.alice.session.config().shutdown_timeout;
    config_shorter /= 3;
    pair.run();
    pair.alice.session.shutdown(pair.now);
    pair.advance(config_shorter);
    assert!(!pair.alice.session.is_closed(), "closed before the shutdown timeout");
    pair.advance(Duration::from_secs(30));
    let events = pair.alice.take_events();
    // Both transactions ended: the message by its own 30 s timeout (408), the FR=no
    // request with the spec's local 200.
    assert_eq!(response_of(&events, request), Some((200, true)));
    assert_eq!(done(&events), vec![(message, MessageOutcome::Failed(MsrpError::new(408, "Request Timeout")))]);
    assert_eq!(events.last(), Some(&Event::Closed { reason: None }));
}

#[test]
fn a_peer_closing_mid_message_fails_everything_pending() {
    // R4975-5.4-6: a failed connection fails the session; nothing is forgotten.
    let mut pair = Pair::bound();
    pair.alice.hold_writes = true;
    pair.bob.deaf = true;
    let queued = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(3 << 20)).unwrap();
    let chunk = chunk_with_failure_report(&mut pair, None);
    let request = pair.alice.session.send_chunk(pair.now, chunk).unwrap();
    pair.run();
    pair.alice.session.handle_input(pair.now, Input::Closed);
    pair.run();
    let events = pair.alice.take_events();
    assert_eq!(response_of(&events, request), Some((408, true)));
    assert!(matches!(done(&events)[..], [(id, MessageOutcome::Failed(_))] if id == queued));
    assert_eq!(events.last(), Some(&Event::Closed { reason: Some(SessionError::ConnectionClosed) }));
    // Nothing after Closed, and no timer left.
    pair.alice.session.handle_input(pair.now, Input::Received(Bytes::from_static(b"MSRP")));
    assert_eq!(pair.alice.session.poll_output(pair.now), None);
    assert_eq!(pair.alice.session.poll_timeout(), None);
}

#[test]
fn incoming_reads_pause_while_the_peer_does_not_read_our_responses() {
    let (alice, mut bob) = configs();
    bob.write_high_watermark = 1000;
    let mut pair = Pair::bound_with(alice, bob);
    pair.bob.hold_writes = true;
    for _ in 0..200 {
        pair.alice.session.send_message(pair.now, options("text/plain"), pattern(10)).unwrap();
    }
    pair.run();
    assert!(!pair.bob.session.wants_read());
    // Reading stopped once the unwritten responses passed the watermark (plus one read).
    assert!(pair.bob.session.unwritten() <= 1000 + 2000);
    pair.bob.release_writes(pair.now);
    pair.bob.hold_writes = false;
    pair.run();
    assert_eq!(done(&pair.alice.take_events()).len(), 200);
}

// ---- Logging ----

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl TrafficLogger for Recorder {
    fn received_new_chunk(&mut self, _: &[u8], _: &Transport, chunk: &Chunk) {
        self.0.lock().unwrap().push(format!("received_new_chunk {}", chunk.transaction_id));
    }
    fn received_chunk_data(&mut self, data: &[u8], _: &Transport, tid: &str) {
        self.0.lock().unwrap().push(format!("received_chunk_data {tid} {}", data.len()));
    }
    fn received_chunk_end(&mut self, data: &[u8], _: &Transport, tid: &str) {
        let text = String::from_utf8_lossy(data).into_owned();
        self.0.lock().unwrap().push(format!("received_chunk_end {tid} {}", text.trim()));
    }
    fn sent_new_chunk(&mut self, data: &[u8], _: &Transport, chunk: &Chunk) {
        assert!(data.starts_with(format!("MSRP {} ", chunk.transaction_id).as_bytes()));
        self.0.lock().unwrap().push(format!("sent_new_chunk {}", chunk.transaction_id));
    }
    fn sent_chunk_data(&mut self, data: &[u8], _: &Transport, tid: &str) {
        self.0.lock().unwrap().push(format!("sent_chunk_data {tid} {}", data.len()));
    }
    fn sent_chunk_end(&mut self, _: &[u8], _: &Transport, tid: &str) {
        self.0.lock().unwrap().push(format!("sent_chunk_end {tid}"));
    }
    fn info(&mut self, message: &str) {
        self.0.lock().unwrap().push(format!("info {message}"));
    }
}

#[test]
fn the_logger_sees_every_chunk_start_data_and_end_in_order() {
    let (alice, bob) = configs();
    let mut pair = Pair::new(alice, bob);
    let (alice_log, bob_log) = (Recorder::default(), Recorder::default());
    pair.alice.session.set_logger(Box::new(alice_log.clone()));
    pair.bob.session.set_logger(Box::new(bob_log.clone()));
    pair.split = 700;
    pair.connect();
    pair.run();
    pair.alice.session.send_message(pair.now, options("text/plain"), pattern(1500)).unwrap();
    pair.run();
    let sends: Vec<_> = pair.alice.sent_chunks().into_iter().filter(|c| c.method() == Some(&Method::Send)).collect();
    let (bind, message) = (&sends[0].transaction_id, &sends[1].transaction_id);
    let alice_lines = alice_log.0.lock().unwrap().clone();
    let expected_alice = [
        format!("sent_new_chunk {bind}"),
        format!("sent_chunk_end {bind}"),
        format!("received_new_chunk {bind}"),
        // A response is acted on as soon as its head is read.
        "info session bound".to_owned(),
        format!("received_chunk_end {bind} -------{bind}$"),
        format!("sent_new_chunk {message}"),
        format!("sent_chunk_data {message} 1500"),
        format!("sent_chunk_end {message}"),
        format!("received_new_chunk {message}"),
        format!("received_chunk_end {message} -------{message}$"),
    ];
    assert_eq!(alice_lines, expected_alice);
    let bob_lines = bob_log.0.lock().unwrap().clone();
    let data_lines: usize = bob_lines
        .iter()
        .filter(|l| l.starts_with(&format!("received_chunk_data {message}")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(data_lines, 1500, "split reads each logged as data");
    let start = bob_lines.iter().position(|l| *l == format!("received_new_chunk {message}")).unwrap();
    let end = bob_lines.iter().position(|l| l.starts_with(&format!("received_chunk_end {message}"))).unwrap();
    assert!(start < end);
    assert_eq!(bob_lines[end + 1], format!("sent_new_chunk {message}"), "the 200 follows the chunk's end");
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let run = || {
        let mut pair = Pair::bound();
        pair.alice.session.send_message(pair.now, options("text/plain"), pattern(100_000)).unwrap();
        pair.advance(Duration::from_secs(120));
        (pair.alice.wire, pair.bob.wire)
    };
    assert_eq!(run(), run());
}

#[test]
fn success_reports_for_a_scattered_message_stay_bounded_and_cover_every_byte() {
    // R4975-7.1.3-1: REPORTs cover every byte received, also when a peer scatters a message
    // in many pieces; what is tracked for it stays bounded.
    let mut bob = Solo::passive();
    let mut reported = Vec::new();
    let mut positions: Vec<u64> = (0..150).map(|i| 1 + 2 * i).collect();
    positions.push(400);
    for (i, position) in positions.iter().enumerate() {
        let tid = format!("scat{i:04}");
        let flag = if *position == 400 { '$' } else { '+' };
        bob.feed(&format!(
            "MSRP {tid} SEND\nTo-Path: {BOB}\nFrom-Path: {ALICE}\nMessage-ID: scattered\nByte-Range: {position}-{position}/400\nSuccess-Report: yes\nFailure-Report: no\nContent-Type: text/plain\n\nx\n-------{tid}{flag}\n"
        ));
        for report in bob.take_sent() {
            let range = report.byte_range().unwrap();
            assert_eq!(range.total, Some(400));
            reported.extend(range.start..=range.end.unwrap());
        }
        let (messages, fragments) = bob.session.tracked_reports();
        assert!(messages <= 1 && fragments <= MAX_REPORT_FRAGMENTS, "{messages} messages, {fragments} pieces tracked");
    }
    assert_eq!(reported, positions, "every byte reported once, in order");
}

#[test]
fn a_resumed_message_gets_reports_for_the_bytes_it_carried() {
    // R4975-7.1.3-1: a message that starts at byte 1001 is never "complete from 1" here;
    // its `$` chunk still brings the REPORT of what arrived.
    let mut pair = Pair::bound();
    let mut headers = Headers::new();
    headers.set(HeaderName::SuccessReport, "yes");
    let file = OutgoingFile {
        size: 200_000,
        content_type: Some("application/octet-stream".into()),
        position: 1000,
        message_id: Some("resumed".into()),
        headers,
    };
    let id = pair.alice.session.send_file(pair.now, &file).unwrap();
    pair.alice.session.write_message(pair.now, id, pattern(199_000)).unwrap();
    pair.alice.session.finish_message(pair.now, id).unwrap();
    pair.run();
    let reports: Vec<_> = pair.bob.sent_chunks().into_iter().filter(|c| c.method() == Some(&Method::Report)).collect();
    let ranges: Vec<_> = reports.iter().map(|r| r.byte_range().unwrap()).collect();
    assert_eq!(ranges, vec![ByteRange::new(1001, Some(200_000), Some(200_000))]);
    assert_eq!(pair.bob.session.tracked_reports(), (0, 0));
}

#[test]
fn requests_queued_when_the_session_ends_are_answered() {
    // Nothing is forgotten: a request waiting for the binding gets a local 408.
    let mut config = configs().1;
    config.bind_timeout = Duration::from_secs(5);
    let mut bob = Solo::with_config(config);
    let mut chunk = bob.session.transport_mut().make_chunk(ChunkParams::default());
    chunk.headers.set(HeaderName::ContentType, "text/plain");
    let id = bob.session.send_chunk(bob.now, chunk).unwrap();
    bob.advance(Duration::from_secs(5));
    assert_eq!(response_of(&bob.events, id), Some((408, true)));
    assert_eq!(closed_reason(&bob.events), Some(&Some(SessionError::BindTimeout)));
    // The same when the application closes before anything was polled.
    let mut pair = Pair::bound();
    let chunk = chunk_with_failure_report(&mut pair, None);
    let id = pair.alice.session.send_chunk(pair.now, chunk).unwrap();
    pair.alice.session.close(pair.now);
    pair.run();
    assert_eq!(response_of(&pair.alice.take_events(), id), Some((408, true)));
}

#[test]
fn a_report_sent_with_deliver_chunk_expects_no_response() {
    let mut pair = Pair::bound();
    let mut report = Chunk::request("rep00001", Method::Report);
    report.headers.set(HeaderName::ToPath, BOB);
    report.headers.set(HeaderName::FromPath, ALICE);
    report.headers.set(HeaderName::MessageId, "whatever");
    report.add_header(&ByteRange::whole(1));
    report.add_header(&msrp_core::header::Status::new(200, Some("OK".into())));
    let before = pair.bob.sent_chunks().len();
    assert_eq!(pair.alice.session.deliver_chunk(pair.now, report).unwrap(), None);
    pair.run();
    assert_eq!(pair.bob.sent_chunks().len(), before, "a REPORT is never answered");
    assert_eq!(pair.alice.session.pending_transactions(), 0);
}

#[test]
fn an_early_success_report_is_not_reported_missing() {
    // Success-Report yes with Failure-Report no (the RFC §11.6 combination): the REPORT
    // comes before the message is settled by the local 200.
    let mut pair = Pair::bound();
    let wanted = reported_without_responses();
    let id = pair.alice.session.send_message(pair.now, wanted, pattern(10)).unwrap();
    pair.advance(Duration::from_secs(31));
    pair.alice.session.close(pair.now);
    pair.run();
    let events = pair.alice.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::Report { message: Some(m), .. } if *m == id)));
    assert_eq!(done(&events), vec![(id, MessageOutcome::Delivered)]);
    assert!(!events.iter().any(|e| matches!(e, Event::ReportMissing { .. })));
}

#[test]
fn messages_waiting_for_reports_are_bounded() {
    let (mut alice, bob) = configs();
    alice.max_tracked_reports = 2;
    let mut pair = Pair::bound_with(alice, bob);
    pair.bob.deaf = true;
    let wanted = reported_without_responses();
    let ids: Vec<_> =
        (0..3).map(|_| pair.alice.session.send_message(pair.now, wanted.clone(), pattern(10)).unwrap()).collect();
    pair.advance(Duration::from_secs(31));
    let missing = missing_reports(&pair.alice.take_events());
    assert_eq!(missing, vec![ids[0]], "the oldest is given up when a third one waits");
}

#[test]
fn shutdown_while_binding_sends_the_queue_once_bound() {
    let (alice, bob) = configs();
    let mut pair = Pair::new(alice, bob);
    let id = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(10)).unwrap();
    pair.alice.session.shutdown(pair.now);
    pair.run();
    assert!(!pair.alice.session.is_closed(), "closed before the queue went out");
    pair.connect();
    pair.run();
    let events = pair.alice.take_events();
    assert_eq!(done(&events), vec![(id, MessageOutcome::Delivered)]);
    assert_eq!(events.last(), Some(&Event::Closed { reason: None }));
    assert_eq!(incoming_body(&pair.bob.take_events()), pattern(10));
}

#[test]
fn shutdown_does_not_wait_for_responses_that_will_not_come() {
    // With Failure-Report no or partial a success is silent: the shutdown ends as soon
    // as those requests are written, and they end with the spec's local 200.
    let mut pair = Pair::bound();
    let silent = with_header(options("text/plain"), HeaderName::FailureReport, "no");
    let id = pair.alice.session.send_message(pair.now, silent, pattern(10)).unwrap();
    pair.alice.session.shutdown(pair.now);
    pair.run();
    let events = pair.alice.take_events();
    assert_eq!(done(&events), vec![(id, MessageOutcome::Delivered)]);
    assert_eq!(events.last(), Some(&Event::Closed { reason: None }));
}

#[test]
fn the_shutdown_timeout_bounds_the_wait() {
    let (mut alice, bob) = configs();
    alice.shutdown_timeout = Duration::from_secs(10);
    let mut pair = Pair::bound_with(alice, bob);
    pair.bob.deaf = true;
    let id = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(10)).unwrap();
    pair.run();
    pair.alice.session.shutdown(pair.now);
    pair.advance(Duration::from_millis(9_999));
    assert!(!pair.alice.session.is_closed());
    pair.advance(Duration::from_millis(1));
    let events = pair.alice.take_events();
    assert_eq!(done(&events), vec![(id, MessageOutcome::Failed(MsrpError::new(408, "Request Timeout")))]);
    assert_eq!(events.last(), Some(&Event::Closed { reason: None }));
}

#[test]
fn a_reused_transaction_id_gets_its_own_timer() {
    let mut pair = Pair::bound();
    pair.alice.hold_writes = true;
    let chunk = chunk_with_failure_report(&mut pair, None);
    let first = pair.alice.session.send_chunk(pair.now, chunk.clone()).unwrap();
    pair.run();
    // Answered before the write was acknowledged; the id is free again.
    assert_eq!(response_of(&pair.alice.take_events(), first), Some((200, false)));
    pair.bob.deaf = true;
    let again = pair.alice.session.send_chunk(pair.now, chunk).unwrap();
    let other = chunk_with_failure_report(&mut pair, None);
    let other = pair.alice.session.send_chunk(pair.now, other).unwrap();
    pair.run();
    pair.advance(Duration::from_secs(10));
    pair.alice.release_writes(pair.now);
    pair.advance(Duration::from_millis(29_999));
    assert!(pair.alice.take_events().is_empty(), "a timer ran from before the write");
    pair.advance(Duration::from_millis(1));
    let events = pair.alice.take_events();
    assert_eq!(response_of(&events, again), Some((408, true)));
    assert_eq!(response_of(&events, other), Some((408, true)));
}

/// Bob reassembling whole messages of up to 1000 bytes, one at a time.
fn reassembling_one_message_at_a_time() -> Solo {
    let mut config = configs().1;
    config.reassembly = Some(ReassemblyLimits { max_message_size: 1000, max_open_messages: 1 });
    Solo::with_config(config)
}

/// A SEND from Alice to Bob with the body `abc`.
fn abc_chunk(tid: &str, message: &str, range: &str, flag: char) -> String {
    format!(
        "MSRP {tid} SEND\nTo-Path: {BOB}\nFrom-Path: {ALICE}\nMessage-ID: {message}\nByte-Range: {range}\nContent-Type: text/plain\n\nabc\n-------{tid}{flag}\n"
    )
}

#[test]
fn a_refused_message_frees_its_reassembly_slot() {
    let mut bob = reassembling_one_message_at_a_time();
    bob.feed(&abc_chunk("big00001", "big-message", "1-3/*", '+'));
    bob.feed(&abc_chunk("big00002", "big-message", "4-6/5000", '+'));
    bob.feed(&abc_chunk("next0001", "next-message", "1-3/6", '+'));
    bob.feed(&abc_chunk("next0002", "next-message", "4-6/6", '$'));
    assert_eq!(responses(&bob.take_sent()), vec![200, 413, 200, 200]);
    let messages = incoming(&bob.events);
    assert_eq!(messages.len(), 1);
    assert_eq!(&messages[0].data[..], b"abcabc");
}

#[test]
fn a_streamed_message_ended_by_an_empty_last_chunk_frees_its_reassembly_slot() {
    // A message with a known total is whole once its bytes are in; the sender's `$`
    // chunk, sent when the application finishes, carries no bytes. It used to reopen the
    // message in the reassembler, so the next message got 413 "Too many messages in
    // progress" (found by the simulation).
    let mut bob = reassembling_one_message_at_a_time();
    let send = |tid: &str, message: &str, range: &str, body: &str, flag: char| {
        let content_type = if body.is_empty() { String::new() } else { "Content-Type: text/plain\n".to_owned() };
        let body = if body.is_empty() { String::new() } else { format!("\n{body}\n") };
        format!(
            "MSRP {tid} SEND\nTo-Path: {BOB}\nFrom-Path: {ALICE}\nMessage-ID: {message}\nByte-Range: {range}\n{content_type}{body}-------{tid}{flag}\n"
        )
    };
    bob.feed(&send("first001", "first-message", "1-3/3", "abc", '+'));
    bob.feed(&send("first002", "first-message", "4-3/3", "", '$'));
    bob.feed(&send("next0001", "next-message", "1-3/6", "def", '+'));
    bob.feed(&send("next0002", "next-message", "4-6/6", "ghi", '$'));
    assert_eq!(responses(&bob.take_sent()), vec![200, 200, 200, 200]);
    let messages: Vec<&[u8]> = incoming(&bob.events).iter().map(|chunk| &chunk.data[..]).collect();
    assert_eq!(messages, vec![&b"abc"[..], &b"defghi"[..]]);
}

#[test]
fn chunks_of_a_refused_message_still_on_the_way_do_not_take_its_slot_again() {
    // After a 413 the sender stops, but chunks it already sent still arrive. They used to
    // reopen the refused message, which never completes, so with one slot every later
    // chunked message got 413 (found by the simulation).
    let mut bob = reassembling_one_message_at_a_time();
    bob.feed(&abc_chunk("first001", "first-message", "1-3/6", '+'));
    bob.feed(&abc_chunk("other001", "other-message", "1-3/6", '+'));
    bob.feed(&abc_chunk("first002", "first-message", "4-6/6", '$'));
    bob.feed(&abc_chunk("other002", "other-message", "4-6/6", '$'));
    bob.feed(&abc_chunk("third001", "third-message", "1-3/6", '+'));
    bob.feed(&abc_chunk("third002", "third-message", "4-6/6", '$'));
    assert_eq!(responses(&bob.take_sent()), vec![200, 413, 200, 413, 200, 200]);
    let messages: Vec<Option<&str>> = incoming(&bob.events).iter().map(|chunk| chunk.message_id()).collect();
    assert_eq!(messages, vec![Some("first-message"), Some("third-message")]);
}

#[test]
fn a_failure_report_fails_the_message_and_the_session() {
    // R4975-7.3.2-4: a failure REPORT says bytes were lost: the session is failed.
    let (mut pair, id, _) = report_during_a_message("000 500 Lost");
    let events = pair.alice.take_events();
    assert!(done(&events).contains(&(id, MessageOutcome::Failed(MsrpError::new(500, "Lost")))));
    assert!(matches!(closed_reason(&events), Some(Some(SessionError::Failed(error))) if error.code == 500));
}

#[test]
fn a_failure_response_ends_the_rest_of_the_message_with_a_hash() {
    // R4975-7.3.2-3: a failure response while the message is still going out aborts it.
    let (mut alice, bob) = configs();
    alice.max_chunk_size = 1000;
    alice.write_high_watermark = 1;
    let mut pair = Pair::bound_with(alice, bob);
    pair.bob.deaf = true;
    pair.alice.hold_writes = true;
    let id = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(100_000)).unwrap();
    pair.run();
    let first = pair.alice.sent_chunks().last().unwrap().clone();
    let tid = &first.transaction_id;
    let refusal = format!("MSRP {tid} 500 Broken\r\nTo-Path: {ALICE}\r\nFrom-Path: {BOB}\r\n-------{tid}$\r\n");
    pair.alice.session.handle_input(pair.now, Input::Received(Bytes::from(refusal)));
    pair.alice.release_writes(pair.now);
    pair.alice.hold_writes = false;
    pair.run();
    let sends: Vec<_> = pair.alice.sent_chunks().into_iter().filter(|c| c.message_id() == first.message_id()).collect();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[1].contflag, ContinuationFlag::Abort);
    assert!(done(&pair.alice.take_events()).contains(&(id, MessageOutcome::Failed(MsrpError::new(500, "Broken")))));
}

#[test]
fn settings_that_would_stall_the_engine_are_raised() {
    let (mut alice, mut bob) = configs();
    alice.keepalive_interval = Some(Duration::ZERO);
    alice.response_timeout = Duration::ZERO;
    alice.message_buffer = 0;
    alice.write_high_watermark = 0;
    bob.max_chunk_size = 0;
    let mut pair = Pair::new(alice, bob);
    pair.connect();
    // `advance` checks that no timer fires at `now` again after handle_timeout.
    pair.advance(Duration::from_millis(20));
    let id = pair.alice.session.start_message(pair.now, options("text/plain")).unwrap();
    let taken = pair.alice.session.write_message(pair.now, id, pattern(1 << 20)).unwrap();
    assert!(taken >= pair.alice.session.config().max_chunk_size);
    pair.alice.session.handle_input(pair.now, Input::Written(usize::MAX));
    pair.run();
    assert!(pair.alice.session.unwritten() < 100_000);
}

#[test]
fn bytes_before_connected_start_the_active_side_too() {
    let mut alice = Solo::with_config(configs().0);
    assert_eq!(alice.take_sent().len(), 1, "the binding SEND went out on Connected");
    let (config, _) = configs();
    let now = alice.now;
    let mut session = Session::new(config, IdGenerator::seed_from_u64(9), now).unwrap();
    session.handle_input(now, Input::Received(Bytes::from_static(b"MSRP ")));
    assert!(matches!(session.poll_output(now), Some(Output::Transmit(_))), "no binding SEND");
}

#[test]
fn nothing_is_written_after_the_connection_closed() {
    // R4975-7.1.2-4: no REPORT (nor response) for a session that is gone.
    let mut bob = Solo::passive();
    bob.session
        .handle_input(bob.now, Input::Received(Bytes::from(send_text("last0001", "", "x").replace('\n', "\r\n"))));
    bob.session.handle_input(bob.now, Input::Closed);
    bob.drain();
    assert!(bob.take_sent().is_empty());
    assert!(matches!(bob.events.last(), Some(Event::Closed { .. })));
}

#[test]
fn every_failure_report_and_success_report_combination() {
    // R4975-7.2-1, R4975-7.1.4-2/-3, R4975-7.1.3-1/-3, R4975-7.1.1-3 (absent SR = no,
    // absent FR = yes): what a good SEND gets back, for each pair of header values.
    let mut bob = Solo::passive();
    let failure = [None, Some("yes"), Some("partial"), Some("no")];
    let success = [None, Some("yes"), Some("no")];
    for (i, fr) in failure.iter().enumerate() {
        for (j, sr) in success.iter().enumerate() {
            let mut headers = String::new();
            if let Some(sr) = sr {
                let _ = writeln!(headers, "Success-Report: {sr}");
            }
            if let Some(fr) = fr {
                let _ = writeln!(headers, "Failure-Report: {fr}");
            }
            bob.feed(&send_text(&format!("comb{i}{j}00"), &headers, "hello"));
            let sent = bob.take_sent();
            let got_200 = sent.iter().any(|c| c.code() == Some(200));
            let got_report = sent.iter().any(|c| c.method() == Some(&Method::Report));
            assert_eq!(got_200, matches!(fr, None | Some("yes")), "200 with FR {fr:?} SR {sr:?}");
            assert_eq!(got_report, *sr == Some("yes"), "REPORT with FR {fr:?} SR {sr:?}");
            if got_200 && got_report {
                assert!(sent[0].code() == Some(200), "the response goes before the REPORT");
            }
        }
    }
}

#[test]
fn success_reports_may_cover_other_ranges_than_the_chunks_sent() {
    // R4975-7.1.1-13: a relay may re-chunk; REPORTs that together cover the message count.
    for (reports, missing) in [(&["1-5000", "5001-8000"][..], false), (&["1-5000"][..], true)] {
        let (mut alice, bob) = configs();
        alice.max_chunk_size = 3000;
        let mut pair = Pair::bound_with(alice, bob);
        pair.bob.deaf = true;
        let mut wanted = reported_without_responses();
        wanted.message_id = Some("rechunked".into());
        let id = pair.alice.session.send_message(pair.now, wanted, pattern(8000)).unwrap();
        pair.run();
        for (i, range) in reports.iter().enumerate() {
            let report = format!(
                "MSRP rech000{i} REPORT\r\nTo-Path: {ALICE}\r\nFrom-Path: {BOB}\r\nMessage-ID: rechunked\r\nByte-Range: {range}/8000\r\nStatus: 000 200 OK\r\n-------rech000{i}$\r\n"
            );
            pair.alice.session.handle_input(pair.now, Input::Received(Bytes::from(report)));
        }
        pair.advance(Duration::from_secs(31));
        pair.alice.session.close(pair.now);
        pair.run();
        let events = pair.alice.take_events();
        assert_eq!(done(&events), vec![(id, MessageOutcome::Delivered)]);
        let reported_missing =
            events.iter().any(|e| matches!(e, Event::ReportMissing { message, .. } if *message == id));
        assert_eq!(reported_missing, missing, "REPORTs {reports:?}");
    }
}

#[test]
fn raw_bytes_and_accept_types_set_after_binding() {
    let mut pair = Pair::bound();
    pair.bob.session.set_accept_types(AcceptTypes::new(["text/plain"]));
    let chunk = chunk_with_failure_report(&mut pair, None).encode();
    pair.alice.session.send_raw(pair.now, chunk).unwrap();
    let png = pair.alice.session.send_message(pair.now, options("image/png"), pattern(3)).unwrap();
    pair.run();
    assert_eq!(incoming_body(&pair.bob.take_events()), b"ping");
    let events = pair.alice.take_events();
    assert_eq!(done(&events), vec![(png, MessageOutcome::Failed(MsrpError::new(415, "Unsupported Media Type")))]);
}

#[test]
fn per_piece_reports_complete_a_message_streamed_without_a_total() {
    // R4975-7.1.3-1: a receiver that tracks too many messages reports each piece as it
    // comes, with the total the chunks announced: `*` for a message streamed without one,
    // until its last chunk.
    // The sender knows the length once it cut the last chunk, so those REPORTs complete it
    // (found by the simulation, seed 13).
    let (mut alice, mut bob) = configs();
    alice.max_chunk_size = 10;
    bob.max_tracked_reports = 1;
    let mut pair = Pair::bound_with(alice, bob);
    let streamed = || with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
    let first = pair.alice.session.start_message(pair.now, streamed()).unwrap();
    pair.alice.session.write_message(pair.now, first, pattern(10)).unwrap();
    pair.run();
    let second = pair.alice.session.start_message(pair.now, streamed()).unwrap();
    pair.alice.session.write_message(pair.now, second, pattern(25)).unwrap();
    pair.alice.session.finish_message(pair.now, second).unwrap();
    pair.run();
    pair.alice.session.finish_message(pair.now, first).unwrap();
    pair.run();
    pair.alice.session.close(pair.now);
    pair.run();
    let events = pair.alice.take_events();
    let reports: Vec<ByteRange> = events
        .iter()
        .filter_map(|e| match e {
            Event::Report { message: Some(m), report } if *m == second => report.byte_range(),
            _ => None,
        })
        .collect();
    // The last chunk says the total (issue 12 §2.8), so its REPORT does too.
    assert_eq!(
        reports.iter().map(|range| range.total).collect::<Vec<_>>(),
        [None, None, Some(25)],
        "per piece, total `*` until the `$` chunk"
    );
    assert_eq!(done(&events), [(second, MessageOutcome::Delivered), (first, MessageOutcome::Delivered)]);
    assert_eq!(missing_reports(&events), [], "every byte of both messages was reported");
}

#[test]
fn closing_fails_a_message_without_responses_that_was_never_written() {
    // `Failure-Report: no` makes silence a success, but only for bytes that reached the
    // socket: closed (or shut down past its timeout) before the write completed, the
    // message failed (found by the simulation, seed 319).
    for shutdown in [false, true] {
        let mut pair = Pair::bound();
        pair.alice.hold_writes = true;
        let silent = with_header(options("text/plain"), HeaderName::FailureReport, "no");
        let id = pair.alice.session.send_message(pair.now, silent, pattern(100)).unwrap();
        pair.run();
        if shutdown {
            pair.alice.session.shutdown(pair.now);
            pair.advance(Duration::from_secs(31));
        } else {
            pair.alice.session.close(pair.now);
            pair.run();
        }
        let outcomes = done(&pair.alice.take_events());
        assert!(
            matches!(&outcomes[..], [(message, MessageOutcome::Failed(error))] if *message == id && error.code == 408),
            "shutdown {shutdown}: {outcomes:?}"
        );
    }
}

// ---- Issue 12 §2: findings of the outside review ----

// Issue 12 §2.1, RFC 4975 §7.1.1 (R4975-7.1.1-4: tell the user a request probably failed). A
// peer that keeps the connection open but stops reading never lets a request be written, so
// no response timer starts; the write-stall deadline ends the session instead.
#[test]
fn issue12_2_1_a_peer_that_stops_reading_ends_the_session_at_the_write_stall_deadline() {
    let mut pair = Pair::bound();
    // Nothing Alice transmits is ever written, and so nothing reaches Bob.
    pair.alice.hold_writes = true;
    pair.bob.deaf = true;
    let start = pair.now;
    let message = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(10)).unwrap();
    let chunk = chunk_with_failure_report(&mut pair, None);
    let request = pair.alice.session.send_chunk(pair.now, chunk).unwrap();
    pair.run();
    assert_eq!(pair.alice.session.poll_timeout(), Some(start + Duration::from_secs(30)), "the deadline is a timer");
    pair.advance(Duration::from_millis(29_999));
    assert!(!pair.alice.session.is_closed(), "ended before the write-stall timeout");
    pair.advance(Duration::from_millis(1));
    let events = pair.alice.take_events();
    assert_eq!(response_of(&events, request), Some((408, true)));
    let stopped = MsrpError::new(408, "The peer stopped reading");
    assert_eq!(done(&events), [(message, MessageOutcome::Failed(stopped))]);
    let stalled = SessionError::WriteStalled { timeout: Duration::from_secs(30) };
    assert_eq!(stalled.to_string(), "the peer stopped reading: nothing could be written for 30 s");
    assert_eq!(events.last(), Some(&Event::Closed { reason: Some(stalled) }));
    assert!(pair.alice.closed, "Output::Close asks the adapter to close the connection");
    assert_eq!(pair.alice.session.poll_timeout(), None);
}

// Issue 12 §2.1: the write-stall deadline counts from the last write that made progress, so a
// slow socket that takes a little at a time is not a stalled one (RFC 4975 §7.1.1 counts the
// response timeout from the last byte written, however long writing takes).
#[test]
fn issue12_2_1_a_slow_but_progressing_writer_is_not_ended() {
    let (mut alice, bob) = configs();
    alice.write_stall_timeout = Duration::from_secs(10);
    let mut pair = Pair::bound_with(alice, bob);
    pair.alice.hold_writes = true;
    pair.alice.session.send_message(pair.now, options("application/octet-stream"), pattern(100_000)).unwrap();
    pair.run();
    for _ in 0..20 {
        pair.advance(Duration::from_secs(9));
        pair.alice.release_some_writes(pair.now, 1000);
    }
    assert!(!pair.alice.session.is_closed(), "180 s of slow progress is no stall");
    assert!(pair.alice.session.unwritten() > 0);
    pair.advance(Duration::from_millis(9_999));
    assert!(!pair.alice.session.is_closed());
    pair.advance(Duration::from_millis(1));
    let events = pair.alice.take_events();
    let stalled = SessionError::WriteStalled { timeout: Duration::from_secs(10) };
    assert_eq!(closed_reason(&events), Some(&Some(stalled)));
}

// Issue 12 §2.1: an adapter that forgets `Input::Written` is caught by the same deadline,
// even when the peer answers everything (the style's "make misuse visible").
#[test]
fn issue12_2_1_an_adapter_that_never_reports_written_is_caught() {
    let mut pair = Pair::bound();
    pair.alice.hold_writes = true;
    let id = pair.alice.session.send_message(pair.now, options("text/plain"), pattern(10)).unwrap();
    pair.run();
    assert_eq!(done(&pair.alice.take_events()), vec![(id, MessageOutcome::Delivered)], "Bob answered");
    pair.advance(Duration::from_secs(30));
    let reason = closed_reason(&pair.alice.events).cloned();
    assert_eq!(reason, Some(Some(SessionError::WriteStalled { timeout: Duration::from_secs(30) })));
}

// Issue 12 §2.4, RFC 4975 §7.1.2 and §7.3 (R4975-7.1.4-2: with `Failure-Report: no` no response
// ever comes; R4975-7.1.3-1: the success REPORT covers every byte received). The REPORT is
// the proof of delivery: the message is done when it arrives, not when the 30 s response
// timer makes its local 200. Whole, chunked and streamed messages, `no` and `partial`.
#[test]
fn issue12_2_4_a_success_report_covering_the_message_delivers_it_at_once() {
    for failure_report in ["no", "partial"] {
        for case in ["whole", "chunked", "streamed"] {
            let (mut alice, bob) = configs();
            alice.max_chunk_size = 1000;
            let mut pair = Pair::bound_with(alice, bob);
            let mut wanted = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
            wanted.headers.set(HeaderName::FailureReport, failure_report);
            let session = &mut pair.alice.session;
            let id = match case {
                "whole" => session.send_message(pair.now, wanted, pattern(10)).unwrap(),
                "chunked" => session.send_message(pair.now, wanted, pattern(2500)).unwrap(),
                _ => {
                    let id = session.start_message(pair.now, wanted).unwrap();
                    session.write_message(pair.now, id, pattern(2500)).unwrap();
                    session.finish_message(pair.now, id).unwrap();
                    id
                }
            };
            pair.run();
            let events = pair.alice.take_events();
            let context = format!("Failure-Report: {failure_report}, {case}");
            assert!(
                events.iter().any(|e| matches!(e, Event::Report { message: Some(m), .. } if *m == id)),
                "{context}"
            );
            assert_eq!(done(&events), vec![(id, MessageOutcome::Delivered)], "{context}");
            assert_eq!(pair.alice.session.pending_transactions(), 0, "{context}");
            pair.alice.session.close(pair.now);
            pair.run();
            assert_eq!(missing_reports(&pair.alice.take_events()), [], "{context}");
        }
    }
}

// Issue 12 §2.4: `send_chunk` and `deliver_chunk` treat these headers as messages do: a request
// with `Failure-Report` partial or no and `Success-Report: yes` ends with the spec's local 200
// as soon as a success REPORT covers its bytes (RFC 4975 §7.1.2, §7.3).
#[test]
fn issue12_2_4_a_request_covered_by_a_success_report_ends_at_once() {
    for failure_report in [Fr::Partial, Fr::No] {
        let mut pair = Pair::bound();
        let mut chunk = chunk_with_failure_report(&mut pair, Some(failure_report));
        chunk.headers.set(HeaderName::SuccessReport, "yes");
        let id = if failure_report == Fr::Partial {
            pair.alice.session.deliver_chunk(pair.now, chunk).unwrap().expect("a partial request waits")
        } else {
            pair.alice.session.send_chunk(pair.now, chunk).unwrap()
        };
        pair.run();
        let events = pair.alice.take_events();
        assert_eq!(response_of(&events, id), Some((200, true)), "{failure_report:?}");
        assert_eq!(pair.alice.session.pending_transactions(), 0, "{failure_report:?}");
    }
}

// Issue 12 §2.6, RFC 4975 §7.1 (R4975-7.1-7: `#` aborts a message). A shutdown cannot wait for
// the rest of a streamed message the application has not finished: it ends it with `#` at
// once, reports it aborted, and closes without waiting for the shutdown timeout.
#[test]
fn issue12_2_6_shutdown_ends_a_half_sent_streamed_message_with_a_hash_at_once() {
    let (mut alice, bob) = configs();
    alice.max_chunk_size = 1000;
    let mut pair = Pair::bound_with(alice, bob);
    let now = pair.now;
    let half_sent = pair.alice.session.start_message(now, options("text/plain")).unwrap();
    pair.alice.session.write_message(now, half_sent, pattern(2500)).unwrap();
    // A streamed message of which nothing went out yet ends too, silently.
    let unsent = pair.alice.session.start_message(now, options("text/plain")).unwrap();
    pair.alice.session.write_message(now, unsent, pattern(10)).unwrap();
    pair.run();
    pair.alice.session.shutdown(pair.now);
    pair.run();
    assert!(pair.alice.session.is_closed(), "closed without waiting for the shutdown timeout");
    assert!(pair.alice.closed);
    let flags: Vec<_> =
        pair.alice.sent_chunks().iter().filter(|c| c.method() == Some(&Method::Send)).map(|c| c.contflag).collect();
    // The binding SEND, two chunks of 1000 bytes, then the `#`.
    assert_eq!(flags, [ContinuationFlag::End, ContinuationFlag::More, ContinuationFlag::More, ContinuationFlag::Abort]);
    let events = pair.alice.take_events();
    // The unsent one at once, the other once its `#` is answered.
    assert_eq!(done(&events), [(unsent, MessageOutcome::Aborted), (half_sent, MessageOutcome::Aborted)]);
    assert_eq!(events.last(), Some(&Event::Closed { reason: None }));
    assert_eq!(incoming(&pair.bob.take_events()).last().map(|c| c.contflag), Some(ContinuationFlag::Abort));
}

// Issue 12 §2.8, RFC 4975 §7.1.1 (R4975-7.1.1-7: the total SHOULD be given when known). A
// message streamed without a total knows it once finished: its last chunk says it, also
// when that chunk is empty.
#[test]
fn issue12_2_8_the_last_chunk_of_a_streamed_message_carries_the_total() {
    for (len, last) in
        [(2000, ByteRange::new(2001, Some(2000), Some(2000))), (2500, ByteRange::new(2001, Some(2500), Some(2500)))]
    {
        let (mut alice, bob) = configs();
        alice.max_chunk_size = 1000;
        let mut pair = Pair::bound_with(alice, bob);
        let id = pair.alice.session.start_message(pair.now, options("text/plain")).unwrap();
        let message_id = pair.alice.session.outgoing_message_id(id).unwrap();
        pair.alice.session.write_message(pair.now, id, pattern(len)).unwrap();
        pair.run();
        pair.alice.session.finish_message(pair.now, id).unwrap();
        pair.run();
        let sends: Vec<_> =
            pair.alice.sent_chunks().into_iter().filter(|c| c.message_id() == Some(message_id.as_str())).collect();
        let ranges: Vec<_> = sends.iter().map(|c| c.byte_range().unwrap()).collect();
        assert_eq!(
            ranges,
            [ByteRange::new(1, Some(1000), None), ByteRange::new(1001, Some(2000), None), last],
            "{len} bytes"
        );
        assert_eq!(sends.last().unwrap().contflag, ContinuationFlag::End);
        assert_eq!(done(&pair.alice.take_events()), [(id, MessageOutcome::Delivered)]);
        assert_eq!(incoming_body(&pair.bob.take_events()), pattern(len));
    }
}
