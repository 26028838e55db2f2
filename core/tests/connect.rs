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

fn route_code(router: &mut SessionRouter, connection: u64, request: &Chunk) -> u16 {
    match router.route(ConnectionId(connection), request) {
        Route::Bind { .. } => 200,
        Route::Reject { error, .. } => error.code,
    }
}

fn session_uri(i: usize) -> Uri {
    uri(&format!("msrp://127.0.0.1:2856/s{i:05}x;tcp"))
}

#[test]
fn a_second_connection_gets_506_only_while_the_first_lives_then_481() {
    let now = Instant::now();
    let mut router = SessionRouter::new(false, Duration::from_secs(30));
    router.prepare(now, uri(BOB));
    let request = head_of(send("bind0001", BOB, "", ""));
    assert_eq!(route_code(&mut router, 1, &request), 200);
    assert_eq!(router.bound_to(&uri(BOB)), Some(ConnectionId(1)));
    assert_eq!(route_code(&mut router, 2, &request), 506);
    // Refused connections bound nothing: releasing them leaves the binding alone.
    router.release(ConnectionId(2));
    assert_eq!(route_code(&mut router, 3, &request), 506);
    // The first connection closed: its session is over, and so is the URI.
    router.release(ConnectionId(1));
    assert_eq!(route_code(&mut router, 4, &request), 481);
    assert!(router.is_empty());
    // Prepared again (a new offer), it binds again.
    router.prepare(now, uri(BOB));
    assert_eq!(route_code(&mut router, 4, &request), 200);
    // A cleaned-up URI is gone even while its connection lives.
    assert!(router.cleanup(&uri(BOB)));
    assert_eq!(route_code(&mut router, 5, &request), 481);
    router.release(ConnectionId(4));
    assert!(router.is_empty());
}

#[test]
fn preparing_a_bound_uri_again_detaches_it_from_the_old_connection() {
    let now = Instant::now();
    let mut router = SessionRouter::new(false, Duration::from_secs(30));
    router.prepare(now, uri(BOB));
    let request = head_of(send("again001", BOB, "", ""));
    assert_eq!(route_code(&mut router, 1, &request), 200);
    router.prepare(now, uri(BOB));
    assert!(router.is_waiting(&uri(BOB)));
    // The old connection's close must not take the new preparation with it.
    router.release(ConnectionId(1));
    assert_eq!(route_code(&mut router, 2, &request), 200);
    router.release(ConnectionId(2));
    assert!(router.is_empty());
}

#[test]
fn the_state_is_empty_after_many_prepare_bind_release_cycles() {
    let start = Instant::now();
    let mut router = SessionRouter::new(false, Duration::from_secs(30));
    for i in 0..1000 {
        let now = start + Duration::from_millis(i as u64);
        router.prepare(now, session_uri(i));
        let request = head_of(send(&format!("t{i:07}"), &session_uri(i).to_string(), "", ""));
        assert_eq!(route_code(&mut router, i as u64, &request), 200);
        // Some sessions overlap: close the previous one now.
        if i % 2 == 1 {
            router.release(ConnectionId(i as u64 - 1));
            router.release(ConnectionId(i as u64));
        }
    }
    assert_eq!(router.len(), 0);
    assert!(router.is_empty());
    assert_eq!(router.poll_timeout(), None);
}

#[test]
fn the_state_is_empty_after_many_prepare_cleanup_cycles() {
    let start = Instant::now();
    let mut router = SessionRouter::new(true, Duration::from_secs(30));
    for i in 0..1000 {
        router.prepare(start, session_uri(i));
        if i % 3 == 0 {
            // Bound first: cleanup frees the binding too, and a late release is harmless.
            let request = head_of(send(&format!("t{i:07}"), &session_uri(i).to_string(), "", ""));
            assert_eq!(route_code(&mut router, i as u64, &request), 200);
        }
        assert_eq!(router.len(), 1);
        assert!(router.cleanup(&session_uri(i)));
        assert!(!router.cleanup(&session_uri(i)), "cleaned up twice");
        router.release(ConnectionId(i as u64));
    }
    assert!(router.is_empty());
}

#[test]
fn the_state_is_empty_after_many_prepared_uris_expire() {
    let start = Instant::now();
    let timeout = Duration::from_secs(30);
    let mut router = SessionRouter::new(true, timeout);
    for i in 0..1000 {
        router.prepare(start + Duration::from_millis(i as u64 / 10), session_uri(i));
    }
    assert_eq!(router.len(), 1000);
    assert_eq!(router.poll_timeout(), Some(start + timeout));
    // Equal deadlines expire in the order prepared.
    let first = router.handle_timeout(start + timeout);
    assert_eq!(first, (0..10).map(session_uri).collect::<Vec<_>>());
    assert_eq!(router.poll_timeout(), Some(start + timeout + Duration::from_millis(1)));
    let rest = router.handle_timeout(start + timeout + Duration::from_secs(1));
    assert_eq!(rest.len(), 990);
    assert!(router.is_empty());
    assert_eq!(router.poll_timeout(), None);
    let late = head_of(send("late0001", &session_uri(5).to_string(), "", ""));
    assert_eq!(route_code(&mut router, 1, &late), 481);
}

#[test]
fn sessmatch_finds_sessions_by_id_alone() {
    let now = Instant::now();
    let mut router = SessionRouter::new(true, Duration::from_secs(30));
    router.prepare(now, uri(BOB));
    router.prepare(now, uri(CAROL));
    // A relay or SBC rewrote the authority, scheme case and transport.
    let rewritten = head_of(send("sess0001", "msrp://relay.example.com:9000/bob5678;TCP", "", ""));
    assert_eq!(router.route(ConnectionId(1), &rewritten), Route::Bind { local_uri: uri(BOB) });
    assert_eq!(route_code(&mut router, 2, &rewritten), 506);
    // Session ids are case-sensitive.
    let other_case = head_of(send("sess0002", "msrp://127.0.0.1:2856/CAROL999;tcp", "", ""));
    assert_eq!(route_code(&mut router, 3, &other_case), 481);
    // Same session id, another authority: it replaces the earlier preparation.
    router.prepare(now, uri("msrp://10.1.1.1:7000/carol999;tcp"));
    assert_eq!(router.len(), 2);
    assert!(!router.is_waiting(&uri(CAROL)));
    let carol = head_of(send("sess0003", CAROL, "", ""));
    assert_eq!(
        router.route(ConnectionId(3), &carol),
        Route::Bind { local_uri: uri("msrp://10.1.1.1:7000/carol999;tcp") }
    );
    // A URI without a session id can never match, yet it waits and expires.
    router.prepare(now, uri("msrp://127.0.0.1:2856;tcp"));
    let no_id = head_of(send("sess0004", "msrp://127.0.0.1:2856;tcp", "", ""));
    assert_eq!(route_code(&mut router, 4, &no_id), 481);
    assert_eq!(router.handle_timeout(now + Duration::from_secs(30)), vec![uri("msrp://127.0.0.1:2856;tcp")]);
    router.release(ConnectionId(1));
    router.release(ConnectionId(3));
    assert!(router.is_empty());
}

/// Spellings of a few URIs, some equal under RFC 4975 §6.1 and some not.
const SPELLINGS: &[&str] = &[
    "msrp://host.example.com:7777/abc;tcp",
    "msrp://Host.Example.COM:7777/abc;tcp",
    "MSRP://host.example.com:7777/abc;TCP",
    "msrp://%68ost.example.com:7777/abc;tcp",
    "msrp://%48OST.example.com:7777/abc;Tcp",
    "msrp://alice@host.example.com:7777/abc;tcp;x=1",
    "msrp://host.example.com%2e:7777/abc;tcp",
    "msrp://host.example.com:7777/ABC;tcp",
    "msrp://host.example.com/abc;tcp",
    "msrp://host.example.com:2855/abc;tcp",
    "msrp://host.example.com:07777/abc;tcp",
    "msrps://host.example.com:7777/abc;tcp",
    "msrp://host.example.com:7777/abc;ws",
    "msrp://host.example.com:7777;tcp",
    "msrp://host.example.com:7778/abc;tcp",
    "msrp://[2001:db8::1]:7777/abc;tcp",
    "msrp://[2001:DB8:0:0::1]:7777/abc;tcp",
    "msrp://[2001:0db8:0000::0001]:7777/abc;tcp",
    "msrp://[::ffff:192.0.2.1]:7777/abc;tcp",
    "msrp://192.0.2.1:7777/abc;tcp",
    "msrp://192.0.2.1:7777/abc;TCP;foo",
    "msrp://%31%392.0.2.1:7777/abc;tcp",
    "msrp://a%2Fb:7777/abc;tcp",
    "msrp://a%2fb:7777/abc;tcp",
    "msrp://A%2Fb:7777/abc;tcp",
];

#[test]
fn the_comparison_key_agrees_with_equality() {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    let hash = |value: &dyn Fn(&mut DefaultHasher)| {
        let mut hasher = DefaultHasher::new();
        value(&mut hasher);
        hasher.finish()
    };
    let uris: Vec<Uri> = SPELLINGS.iter().map(|text| uri(text)).collect();
    let mut equal_pairs = 0;
    for a in &uris {
        for b in &uris {
            let (same, same_key) = (a == b, a.comparison_key() == b.comparison_key());
            assert_eq!(same, same_key, "{a} vs {b}: == says {same}, the keys say {same_key}");
            if same {
                equal_pairs += 1;
                assert_eq!(hash(&|h| a.hash(h)), hash(&|h| b.hash(h)), "{a} and {b} hash apart");
                assert_eq!(hash(&|h| a.comparison_key().hash(h)), hash(&|h| b.comparison_key().hash(h)));
            }
        }
    }
    // Not only the diagonal: the list holds groups of equal spellings.
    assert!(equal_pairs > uris.len() + 20, "{equal_pairs} equal pairs");

    // And the router finds each prepared URI by any equal spelling, and by no other.
    let now = Instant::now();
    for (i, prepared) in uris.iter().enumerate() {
        let mut router = SessionRouter::new(false, Duration::from_secs(30));
        router.prepare(now, prepared.clone());
        for (j, addressed) in uris.iter().enumerate() {
            let request = head_of(send(&format!("k{i:03}x{j:03}"), &addressed.to_string(), "", ""));
            let expected = if prepared == addressed { 200 } else { 481 };
            assert_eq!(route_code(&mut router, j as u64, &request), expected, "{prepared} addressed as {addressed}");
            router.release(ConnectionId(j as u64));
            if expected == 200 {
                router.prepare(now, prepared.clone());
            }
        }
    }
}
