//! Issue 18: a session with a relay client ([`Session::set_relay`]) keeps the relay's grant
//! alive on its own connection, between the chunks of a transfer, and leaves the
//! application alone; and responses the session never waited for are dropped silently.

use std::time::Instant;

use msrp_core::relay::{RelayClient, RelayClientConfig, RelayError, RelayEvent, RelayHop};

use super::*;

const RELAY: &str = "msrp://127.0.0.1:2900;tcp";
const USE_PATH: &str = "msrp://127.0.0.1:2900/grant1;tcp";

/// The relay's answer to `auth`, as bytes on the wire.
fn relay_answer(auth: &Chunk, code: u16, expires: u64) -> Bytes {
    let mut response = Chunk::response(auth.transaction_id.clone(), code, Some("OK".to_owned()));
    response.headers.set(HeaderName::ToPath, ALICE);
    response.headers.set(HeaderName::FromPath, RELAY);
    if code == 200 {
        response.headers.set(HeaderName::UsePath, USE_PATH);
        response.headers.set(HeaderName::Expires, expires.to_string());
    }
    response.encode()
}

/// A relay client granted a path for 60 s at `now` (a relay without a challenge).
fn granted_client(now: Instant) -> RelayClient {
    let config = RelayClientConfig::new(vec![RelayHop::new(uri(RELAY), None)], uri(ALICE));
    let mut client = RelayClient::new(config, IdGenerator::seed_from_u64(9), now);
    let auth = client.poll_request(now).expect("an AUTH");
    let answer = decode_one(&relay_answer(&auth, 200, 60));
    assert!(client.handle_response(now, &answer));
    assert!(matches!(client.poll_event(), Some(RelayEvent::Authorized { .. })));
    client
}

fn decode_one(wire: &[u8]) -> Chunk {
    let mut decoder = Decoder::new(DecoderLimits::default());
    decoder.feed(Bytes::copy_from_slice(wire));
    decoder.poll_chunk(None).expect("a chunk").expect("decodes")
}

/// Whether a transmit is one whole AUTH (the relay client's requests go out whole).
fn as_auth(parts: &[Bytes; 3]) -> Option<Chunk> {
    let first_line = parts[0].split(|&b| b == b'\r').next()?;
    (first_line.starts_with(b"MSRP ") && first_line.ends_with(b" AUTH")).then(|| decode_one(&parts[0]))
}

fn fire(session: &mut Session, now: Instant) {
    if session.poll_timeout().is_some_and(|deadline| deadline <= now) {
        session.handle_timeout(now);
        assert!(session.poll_timeout().is_none_or(|next| next > now), "poll_timeout not after now");
    }
}

#[test]
fn issue18_the_relay_grant_is_refreshed_mid_transfer_without_disturbing_the_message() {
    let start = Instant::now();
    let (alice_config, bob_config) = configs();
    let mut alice = Session::new(alice_config, IdGenerator::seed_from_u64(1), start).unwrap();
    let mut bob = Session::new(bob_config, IdGenerator::seed_from_u64(2), start).unwrap();
    alice.set_relay(granted_client(start));
    // The refresh of a 60 s grant: at 45 s.
    assert_eq!(alice.poll_timeout(), Some(start + Duration::from_secs(30)), "the bind timer comes first");
    alice.handle_input(start, Input::Connected);
    bob.handle_input(start, Input::Connected);
    let body = pattern(3_000_000);
    let id = alice.send_message(start, options("application/octet-stream"), body.clone()).unwrap();

    let (mut alice_events, mut bob_events) = (Vec::new(), Vec::new());
    let mut auths = Vec::new();
    let mut alice_wire = Vec::new();
    let mut now = start;
    // One transmit of Alice's per 2 s step, so the transfer spans the refresh time.
    for _ in 0..500 {
        now += Duration::from_secs(2);
        fire(&mut alice, now);
        fire(&mut bob, now);
        let mut to_bob = Vec::new();
        let mut to_alice = Vec::new();
        while let Some(output) = alice.poll_output(now) {
            match output {
                Output::Transmit(transmit) => {
                    alice.handle_input(now, Input::Written(transmit.len()));
                    if let Some(auth) = as_auth(&transmit.parts) {
                        let delivered = incoming_body(&bob_events).len();
                        assert!(delivered > 0 && delivered < body.len(), "the AUTH goes mid-transfer");
                        // The first refresh is granted; the second is refused.
                        let code = if auths.is_empty() { 200 } else { 403 };
                        to_alice.push(relay_answer(&auth, code, 60));
                        auths.push(now);
                    } else {
                        for part in &transmit.parts {
                            alice_wire.extend_from_slice(part);
                        }
                        to_bob.extend(transmit.parts);
                    }
                    break;
                }
                Output::Event(event) => alice_events.push(event),
                Output::Close => panic!("Alice closed"),
            }
        }
        for part in to_bob.into_iter().filter(|part| !part.is_empty()) {
            bob.handle_input(now, Input::Received(part));
        }
        while let Some(output) = bob.poll_output(now) {
            match output {
                Output::Transmit(transmit) => {
                    bob.handle_input(now, Input::Written(transmit.len()));
                    to_alice.extend(transmit.parts);
                }
                Output::Event(event) => bob_events.push(event),
                Output::Close => panic!("Bob closed"),
            }
        }
        for part in to_alice.into_iter().filter(|part| !part.is_empty()) {
            alice.handle_input(now, Input::Received(part));
        }
        if done(&alice_events).iter().any(|(message, _)| *message == id) {
            break;
        }
    }
    assert_eq!(done(&alice_events), [(id, MessageOutcome::Delivered)]);
    assert_eq!(incoming_body(&bob_events), body, "the message arrived intact");
    // R4975-7.1.1-12: the chunk in progress when an AUTH came ended early with `+`.
    let chunk_size = alice.config().max_chunk_size;
    // The rest of a chunk cut short follows as a chunk of its own. (The empty chunks are
    // the binding SEND and Alice's 200 to Bob's keepalive.)
    let sizes: Vec<usize> = super::harness::decode_all(&alice_wire).iter().map(|chunk| chunk.data.len()).collect();
    let cut_in_two =
        sizes.windows(2).filter(|pair| (1..chunk_size).contains(&pair[0]) && pair[0] + pair[1] == chunk_size).count();
    assert_eq!(cut_in_two, 2, "one chunk cut short per AUTH: {sizes:?}");
    // Due at 45 s, seen at the 46 s step, whose one transmit ends the chunk in progress
    // early (`+`); the AUTH is the next transmit.
    assert_eq!(auths.first(), Some(&(start + Duration::from_secs(48))));
    let relay_events: Vec<&RelayEvent> = alice_events
        .iter()
        .filter_map(|event| match event {
            Event::Relay(relay) => Some(relay),
            _ => None,
        })
        .collect();
    assert_eq!(
        relay_events,
        [
            &RelayEvent::Refreshed {
                use_path: vec![uri(USE_PATH)],
                expires: Some(Duration::from_secs(60)),
                path_changed: false
            },
            &RelayEvent::Failed(RelayError::WrongCredentials { relay: Box::new(uri(RELAY)) }),
        ]
    );
    assert!(
        !alice_events.iter().any(|event| matches!(event, Event::Response { .. })),
        "the relay's answers never reach the application"
    );
    assert!(alice.is_bound(), "a failed refresh leaves the session going");
    alice.close(now);
    assert_eq!(alice.poll_timeout(), None, "closing drops the relay client and its timers");
}

// Kamailio answers every SEND hop by hop with its own 200, even one sent with
// `Failure-Report: no`: a response to a transaction the session never waited for (or no
// longer waits for) is dropped without an event or a reply.
#[test]
fn issue18_a_response_nobody_waits_for_is_ignored() {
    let mut pair = Pair::bound();
    let mut chunk = pair
        .alice
        .session
        .transport_mut()
        .make_chunk(ChunkParams { data: Bytes::from_static(b"hi"), ..ChunkParams::default() });
    chunk.headers.set(HeaderName::ContentType, "text/plain");
    chunk.headers.set(HeaderName::FailureReport, "no");
    let tid = chunk.transaction_id.clone();
    assert_eq!(pair.alice.session.deliver_chunk(pair.now, chunk), Ok(None));
    pair.run();
    pair.alice.take_events();
    let sent_before = pair.alice.sent_chunks().len();
    let relays_200 = format!("MSRP {tid} 200 OK\r\nTo-Path: {ALICE}\r\nFrom-Path: {BOB}\r\n-------{tid}$\r\n");
    pair.alice.session.handle_input(pair.now, Input::Received(Bytes::from(relays_200)));
    pair.run();
    assert_eq!(pair.alice.take_events(), [], "no event");
    assert_eq!(pair.alice.sent_chunks().len(), sent_before, "no reply");
    assert!(pair.alice.session.is_bound() && !pair.alice.session.is_closed());
    assert_eq!(pair.alice.session.pending_transactions(), 0);
}

/// Kamailio grants another Use-Path on every refresh: the session's own requests move to
/// it (the SDP path it offers, too), while what the peer sent keeps being accepted.
#[test]
fn issue18_a_refresh_with_another_use_path_moves_our_requests_to_it() {
    let mut config = configs().0;
    let granted = uri(USE_PATH);
    config.local_path = vec![granted.clone(), uri(ALICE)];
    config.remote_path = vec![granted.clone(), uri(BOB)];
    let mut alice = Solo::with_config(config);
    alice.session.set_relay(granted_client(alice.now));
    let binding = alice.take_sent();
    assert_eq!(
        binding[0].headers.get(&HeaderName::ToPath).map(msrp_core::header::HeaderValue::as_str),
        Some(format!("{USE_PATH} {BOB}").as_str())
    );
    alice.feed(&format!(
        "MSRP {} 200 OK\nTo-Path: {ALICE}\nFrom-Path: {USE_PATH}\n-------{}$\n",
        binding[0].transaction_id, binding[0].transaction_id
    ));
    assert!(alice.session.is_bound());

    // The refresh of the 60 s grant, at 45 s; the relay answers with a new path.
    alice.advance(Duration::from_secs(45));
    let auth = alice.take_sent().into_iter().find(|chunk| chunk.method() == Some(&Method::Auth)).expect("a refresh");
    let renewed = "msrp://127.0.0.1:2900/grant2;tcp";
    let answer = String::from_utf8(relay_answer(&auth, 200, 60).to_vec()).unwrap().replace(USE_PATH, renewed);
    alice.feed_bytes(answer.as_bytes());
    assert!(
        alice
            .events
            .iter()
            .any(|event| matches!(event, Event::Relay(RelayEvent::Refreshed { path_changed: true, .. })))
    );
    assert_eq!(alice.session.transport().remote_path(), [uri(renewed), uri(BOB)]);
    assert_eq!(alice.session.transport().local_path(), [uri(renewed), uri(ALICE)]);

    alice.session.send_message(alice.now, options("text/plain"), Bytes::from_static(b"after")).unwrap();
    alice.drain();
    let sent = alice.take_sent();
    let to_path = sent.last().and_then(|chunk| chunk.headers.get(&HeaderName::ToPath)).map(|v| v.as_str().to_owned());
    assert_eq!(to_path, Some(format!("{renewed} {BOB}")));
}
