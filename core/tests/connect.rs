//! Binding connections on a shared port (`msrp_core::connect`): 481, 506, bind timeouts,
//! and a first SEND with a body reaching the session.

use std::time::{Duration, Instant};

use bytes::Bytes;
use msrp_core::codec::DecoderLimits;
use msrp_core::connect::{ConnectionId, PendingConnection, Route, SessionRouter};
use msrp_core::session::{Event, Input, Output, Role, Session, SessionConfig};
use msrp_core::{Chunk, IdGenerator, Uri};

const ALICE: &str = "msrp://127.0.0.1:2855/alice1234;tcp";
const BOB: &str = "msrp://127.0.0.1:2856/bob5678;tcp";
const CAROL: &str = "msrp://127.0.0.1:2856/carol999;tcp";

fn uri(text: &str) -> Uri {
    text.parse().expect("valid URI")
}

fn send(tid: &str, to: &str, extra: &str, body: &str) -> Bytes {
    let range = format!("1-{0}/{0}", body.len());
    let body_part = if body.is_empty() { String::new() } else { format!("Content-Type: text/plain\r\n\r\n{body}\r\n") };
    Bytes::from(format!(
        "MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {ALICE}\r\nMessage-ID: m{tid}\r\nByte-Range: {range}\r\n{extra}{body_part}-------{tid}$\r\n"
    ))
}

fn head_of(data: Bytes) -> Chunk {
    let mut pending = PendingConnection::new(DecoderLimits::default());
    pending.handle_received(data).expect("a head").expect("valid")
}

#[test]
fn first_request_binds_the_prepared_session_and_a_second_connection_gets_506() {
    // R4975-5.4-5: no match → 481; bound to another connection → 506 (R4975-10.10).
    let now = Instant::now();
    let mut router = SessionRouter::new(false, Duration::from_secs(30));
    router.prepare(now, uri(BOB));
    router.prepare(now, uri(CAROL));
    let first = head_of(send("first001", BOB, "", ""));
    assert_eq!(router.route(ConnectionId(1), &first), Route::Bind { local_uri: uri(BOB) });
    assert!(!router.is_waiting(&uri(BOB)) && router.is_waiting(&uri(CAROL)));
    let Route::Reject { error, response } = router.route(ConnectionId(2), &first) else { panic!("not refused") };
    assert_eq!(error.code, 506);
    let response = response.expect("a response");
    assert_eq!(response.code(), Some(506));
    assert_eq!(response.transaction_id, "first001");
    assert_eq!(response.to_path().unwrap().0, vec![uri(ALICE)]);
    assert_eq!(response.from_path().unwrap().0, vec![uri(BOB)]);
    // The same connection may send more requests for its own session.
    assert_eq!(router.route(ConnectionId(1), &first), Route::Bind { local_uri: uri(BOB) });
    // Once the connection is gone the session is gone too.
    router.release(ConnectionId(1));
    assert!(matches!(router.route(ConnectionId(3), &first), Route::Reject { error, .. } if error.code == 481));
}

#[test]
fn unknown_sessions_get_481_unless_failure_report_is_no() {
    // R4975-7.3-1, R4975-7.1.4-2.
    let mut router = SessionRouter::new(false, Duration::from_secs(30));
    router.prepare(Instant::now(), uri(BOB));
    let unknown = head_of(send("unkn0001", CAROL, "", "hi"));
    let Route::Reject { error, response } = router.route(ConnectionId(1), &unknown) else { panic!() };
    assert_eq!((error.code, response.and_then(|r| r.code())), (481, Some(481)));
    let silent = head_of(send("unkn0002", CAROL, "Failure-Report: no\r\n", ""));
    assert!(matches!(router.route(ConnectionId(1), &silent), Route::Reject { response: None, .. }));
    let two_hops = head_of(send("unkn0003", &format!("{ALICE} {BOB}"), "", ""));
    assert!(matches!(router.route(ConnectionId(1), &two_hops), Route::Reject { error, .. } if error.code == 481));
}

#[test]
fn prepared_uris_expire_after_the_bind_timeout() {
    let start = Instant::now();
    let mut router = SessionRouter::new(true, Duration::from_secs(30));
    router.prepare(start, uri(BOB));
    router.prepare(start + Duration::from_secs(10), uri(CAROL));
    assert_eq!(router.poll_timeout(), Some(start + Duration::from_secs(30)));
    assert!(router.handle_timeout(start + Duration::from_secs(29)).is_empty());
    assert_eq!(router.handle_timeout(start + Duration::from_secs(30)), vec![uri(BOB)]);
    assert_eq!(router.poll_timeout(), Some(start + Duration::from_secs(40)));
    // sessmatch: a rewritten authority still finds the session by its id.
    let rewritten = head_of(send("sbc00001", "msrp://10.9.9.9:1/carol999;tcp", "", ""));
    assert_eq!(router.route(ConnectionId(7), &rewritten), Route::Bind { local_uri: uri(CAROL) });
    assert_eq!(router.poll_timeout(), None, "a bound URI does not expire");
    assert!(router.cleanup(&uri(CAROL)));
}

#[test]
fn a_first_send_with_a_body_reaches_the_session_that_takes_the_connection() {
    let now = Instant::now();
    let mut router = SessionRouter::new(false, Duration::from_secs(30));
    router.prepare(now, uri(BOB));
    let wire = send("body0001", BOB, "", "hello over a shared port");
    let mut pending = PendingConnection::new(DecoderLimits::default());
    // The head arrives in two reads; the body has not all arrived yet.
    assert!(pending.handle_received(wire.slice(..20)).is_none());
    let head = pending.handle_received(wire.slice(20..wire.len() - 30)).expect("head").expect("valid");
    let Route::Bind { local_uri } = router.route(ConnectionId(1), &head) else { panic!("not bound") };
    let config = SessionConfig::new(Role::Passive, vec![local_uri], vec![uri(ALICE)]);
    let mut session = Session::new(config, IdGenerator::seed_from_u64(1), now).unwrap();
    session.handle_input(now, Input::Connected);
    for data in pending.into_received() {
        session.handle_input(now, Input::Received(data));
    }
    session.handle_input(now, Input::Received(wire.slice(wire.len() - 30..)));
    let mut events = Vec::new();
    while let Some(output) = session.poll_output(now) {
        if let Output::Event(event) = output {
            events.push(event);
        }
    }
    assert_eq!(events[0], Event::Bound);
    let Event::Incoming(chunk) = &events[1] else { panic!("no message: {events:?}") };
    assert_eq!(&chunk.data[..], b"hello over a shared port");
}
