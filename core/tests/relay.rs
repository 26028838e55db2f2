//! The relay client (`msrp_core::relay`) against scripted relays, with a clock moved by
//! hand from an arbitrary start. Vectors are RFC
//! 4976 §5.1's exchange (tests/vectors/4976-5.1-*.txt), with our transaction ids.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;

use msrp_core::chunk::{Chunk, Method};
use msrp_core::codec::{Decoder, DecoderLimits};
use msrp_core::header::{Authorization, HeaderName, HeaderValue};
use msrp_core::ids::IdGenerator;
use msrp_core::relay::digest::{QopAuth, request_digest};
use msrp_core::relay::*;
use msrp_core::session::Input;
use msrp_core::{MsrpError, Uri};

const ALICE: &str = "msrps://alice.example.com:9892/98cjs;tcp";
const INTRA: &str = "msrps://alice@intra.example.com;tcp";
const INTRA_PATH: &str = "msrps://intra.example.com:9000/jui787s2f;tcp";
const EXTRA: &str = "msrps://extra.example.com;tcp";
const EXTRA_PATH: &str = "msrps://extra.example.com:9000/mywdEe1233;tcp";
const PASSWORD: &str = "secret";

fn uri(text: &str) -> Uri {
    text.parse().expect("valid URI")
}

fn alice() -> RelayCredentials {
    RelayCredentials { username: "Alice".into(), password: PASSWORD.into() }
}

fn hop(relay: &str) -> RelayHop {
    RelayHop::new(uri(relay), Some(alice()))
}

fn new_client(hops: Vec<RelayHop>, now: Instant) -> RelayClient {
    RelayClient::new(RelayClientConfig::new(hops, uri(ALICE)), IdGenerator::seed_from_u64(7), now)
}

/// The RFC vector `name` as text.
fn vector(name: &str) -> String {
    let path = format!("{}/../tests/vectors/4976-5.1-{name}.txt", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The RFC vector `name` with its transaction id replaced by `tid`.
fn vector_for(name: &str, tid: &str) -> String {
    let text = vector(name);
    let vector_tid = text.split(' ').nth(1).expect("a start line").to_owned();
    text.replace(&vector_tid, tid)
}

fn decode(text: &str) -> Chunk {
    let mut decoder = Decoder::new(DecoderLimits::default());
    decoder.feed(Bytes::copy_from_slice(text.as_bytes()));
    decoder.poll_chunk(None).expect("a chunk").expect("decodes")
}

/// A relay's response to `auth` with extra header lines (each ending in CRLF).
fn answer_text(auth: &Chunk, status: &str, headers: &str) -> String {
    let tid = &auth.transaction_id;
    format!("MSRP {tid} {status}\r\nTo-Path: {ALICE}\r\nFrom-Path: {INTRA}\r\n{headers}-------{tid}$\r\n")
}

fn answer(auth: &Chunk, status: &str, headers: &str) -> Chunk {
    decode(&answer_text(auth, status, headers))
}

fn challenge(nonce: &str, extra: &str) -> String {
    format!("WWW-Authenticate: Digest realm=\"intra.example.com\", qop=\"auth\", nonce=\"{nonce}\"{extra}\r\n")
}

fn granted(path: &str, expires: Option<u64>, nextnonce: Option<&str>) -> String {
    let mut headers = format!("Use-Path: {path}\r\n");
    if let Some(nonce) = nextnonce {
        let _ = write!(headers, "Authentication-Info: nextnonce=\"{nonce}\", qop=auth\r\n");
    }
    if let Some(expires) = expires {
        let _ = write!(headers, "Expires: {expires}\r\n");
    }
    headers
}

/// The next AUTH, which must be there.
fn next_auth(client: &mut RelayClient, now: Instant) -> Chunk {
    let auth = client.poll_request(now).expect("an AUTH");
    assert_eq!(auth.method(), Some(&Method::Auth));
    // What goes on the wire decodes to the same chunk.
    assert_eq!(decode(std::str::from_utf8(&auth.encode()).expect("ASCII")), auth);
    auth
}

fn authorization(auth: &Chunk) -> Option<Authorization> {
    auth.headers.typed::<Authorization>().map(|header| header.expect("valid Authorization"))
}

/// What a relay checks: the response digest over "AUTH:" + the rightmost To-Path URI as
/// written on the wire, and, when present, that `uri=` names that URI.
fn verify_digest(auth: &Chunk, password: &str) -> bool {
    let header = authorization(auth).expect("an Authorization");
    let wire = String::from_utf8(auth.encode().to_vec()).expect("ASCII");
    let to_path = wire.lines().find_map(|line| line.strip_prefix("To-Path: ")).expect("To-Path");
    let rightmost = to_path.rsplit(' ').next().expect("a URI");
    let param = |name: &str| header.params.get(name).unwrap_or_default().to_owned();
    if header.params.get("uri").is_some_and(|value| value != rightmost) {
        return false;
    }
    let credentials = RelayCredentials { username: param("username"), password: password.to_owned() };
    let (nc, cnonce) = (param("nc"), param("cnonce"));
    let qop = header.params.get("qop").map(|_| QopAuth { nc: &nc, cnonce: &cnonce });
    let expected = request_digest(&credentials, &param("realm"), "AUTH", rightmost, &param("nonce"), qop);
    header.params.get("response") == Some(expected.as_str())
}

fn events(client: &mut RelayClient) -> Vec<RelayEvent> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

/// Runs `handle_timeout` and checks that the next timeout is later than `now`.
fn fire(client: &mut RelayClient, now: Instant) {
    client.handle_timeout(now);
    if let Some(next) = client.poll_timeout() {
        assert!(next > now, "poll_timeout {next:?} not after {now:?}");
    }
}

/// A client authorized by one relay (401, then 200 with `granted_headers`).
fn authorized(relay: RelayHop, granted_headers: &str, now: Instant) -> RelayClient {
    let mut client = new_client(vec![relay], now);
    let auth = next_auth(&mut client, now);
    assert!(client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("n1", ""))));
    let auth = next_auth(&mut client, now);
    assert!(client.handle_response(now, &answer(&auth, "200 OK", granted_headers)));
    assert!(client.is_authorized(), "{:?}", events(&mut client));
    client
}

// R4976-5.1, R4976-9.1: the exchange of RFC 4976 §5.1 with one relay: the AUTH byte for
// byte, the Authorization in the RFC's order and form, the path for SDP and To-Path.
#[test]
fn rfc4976_first_relay_exchange() {
    let now = Instant::now();
    let mut client = new_client(vec![hop(INTRA)], now);
    assert_eq!(client.poll_timeout(), None, "no timer before the AUTH is handed out");
    let auth = next_auth(&mut client, now);
    assert_eq!(auth.encode(), vector_for("AUTH-1", &auth.transaction_id).as_bytes());
    assert_eq!(client.poll_request(now), None, "one AUTH at a time");
    assert_eq!(client.poll_timeout(), Some(now + AUTH_TIMEOUT));
    assert!(client.handle_response(now, &decode(&vector_for("401-1", &auth.transaction_id))));

    let auth = next_auth(&mut client, now);
    let wire = String::from_utf8(auth.encode().to_vec()).expect("ASCII");
    let expected = vector_for("AUTH-2", &auth.transaction_id);
    let lines: Vec<&str> = wire.lines().collect();
    let expected_lines: Vec<&str> = expected.lines().collect();
    assert_eq!(lines.len(), expected_lines.len());
    assert_eq!(lines[..3], expected_lines[..3], "start line, To-Path, From-Path");
    // Our cnonce and so our response differ from the RFC's; the rest is the RFC's text.
    let cnonce = authorization(&auth).expect("Authorization").params.get("cnonce").expect("cnonce").to_owned();
    assert!(cnonce.len() >= 16 && cnonce.bytes().all(|b| b.is_ascii_hexdigit()), "{cnonce}");
    let prefix = "Authorization: Digest username=\"Alice\", realm=\"intra.example.com\", \
                  nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", qop=auth, nc=00000001, cnonce=\"";
    assert!(lines[3].starts_with(prefix), "{}", lines[3]);
    assert!(lines[3].contains("\", response=\""), "{}", lines[3]);
    assert_eq!(lines[4], expected_lines[4], "end-line");
    assert!(verify_digest(&auth, PASSWORD));

    assert!(client.handle_response(now, &decode(&vector_for("200-1", &auth.transaction_id))));
    assert_eq!(
        events(&mut client),
        [RelayEvent::Authorized { use_path: vec![uri(INTRA_PATH)], expires: Some(Duration::from_secs(900)) }]
    );
    assert_eq!(client.use_path(), [uri(INTRA_PATH)]);
    assert_eq!(client.local_path(), Some(vec![uri(INTRA_PATH), uri(ALICE)]));
    let bob = uri("msrps://bob.example.net:8888/bob;tcp");
    assert_eq!(client.to_path(std::slice::from_ref(&bob)), [uri(INTRA_PATH), bob]);
    // The refresh: 3/4 of 900 s.
    assert_eq!(client.poll_timeout(), Some(now + Duration::from_secs(675)));
}

// R4976-5.1: AUTH to the second relay through the first (To-Path "intra extra"), paths
// as in the RFC's example: Use-Path "B C", SDP path "C B A", To-Path "B C D E F".
#[test]
fn rfc4976_two_relays_in_a_row() {
    let now = Instant::now();
    let mut client = new_client(vec![hop(INTRA), hop(EXTRA)], now);
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &decode(&vector_for("401-1", &auth.transaction_id)));
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &decode(&vector_for("200-1", &auth.transaction_id)));
    assert!(!client.is_authorized() && events(&mut client).is_empty(), "one relay of two");

    let auth = next_auth(&mut client, now);
    assert_eq!(auth.encode(), vector_for("AUTH-3", &auth.transaction_id).as_bytes());
    client.handle_response(now, &decode(&vector_for("401-2-fwd", &auth.transaction_id)));
    let auth = next_auth(&mut client, now);
    let header = authorization(&auth).expect("Authorization");
    assert_eq!(header.params.get("realm"), Some("extra.example.com"));
    assert_eq!(header.params.get("nc"), Some("00000001"));
    assert!(verify_digest(&auth, PASSWORD), "A2 uses the rightmost To-Path URI, the second relay's");
    // The RFC's forwarded 200 repeats extra's URI in Use-Path (an error of the example);
    // this is the Use-Path extra sent: the whole path so far, taken as it is.
    client.handle_response(now, &decode(&vector_for("200-2", &auth.transaction_id)));
    let path = vec![uri(INTRA_PATH), uri(EXTRA_PATH)];
    assert_eq!(
        events(&mut client),
        [RelayEvent::Authorized { use_path: path.clone(), expires: Some(Duration::from_secs(900)) }]
    );
    assert_eq!(client.local_path(), Some(vec![uri(EXTRA_PATH), uri(INTRA_PATH), uri(ALICE)]));
    let peer = ["msrps://d.example.org;tcp", "msrps://e.example.org:9000/e;tcp", "msrps://f.example.org:9/f;tcp"];
    let peer: Vec<Uri> = peer.into_iter().map(uri).collect();
    let expected: Vec<Uri> = path.iter().chain(&peer).cloned().collect();
    assert_eq!(client.to_path(&peer), expected);

    // A second relay that gives only its own URI: appended to the path so far.
    let mut client = client_with_two_hops_granted(now, EXTRA_PATH);
    assert_eq!(client.use_path(), [uri(INTRA_PATH), uri(EXTRA_PATH)]);
    assert!(matches!(events(&mut client)[..], [RelayEvent::Authorized { .. }]));
}

fn client_with_two_hops_granted(now: Instant, second_use_path: &str) -> RelayClient {
    let mut client = new_client(vec![RelayHop::new(uri(INTRA), None), RelayHop::new(uri(EXTRA), None)], now);
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "200 OK", &granted(INTRA_PATH, None, None)));
    let auth = next_auth(&mut client, now);
    assert_eq!(auth.to_path().expect("To-Path").0, [uri(INTRA_PATH), uri(EXTRA)]);
    assert!(authorization(&auth).is_none(), "no challenge, no Authorization");
    client.handle_response(now, &answer(&auth, "200 OK", &granted(second_use_path, None, None)));
    client
}

// Issue 18: the RFC's form first; a complete Authorization answered by another 401 (not
// stale) once more with uri= (Kamailio); after that, the form that worked is kept.
#[test]
fn digest_uri_fallback_after_a_second_401() {
    let now = Instant::now();
    let relay = RelayHop { expires: None, ..hop(INTRA) };
    let mut client = new_client(vec![relay], now);
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("n1", "")));
    let auth = next_auth(&mut client, now);
    assert_eq!(authorization(&auth).expect("Authorization").params.get("uri"), None);
    client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("n2", ", opaque=\"o\"")));
    let auth = next_auth(&mut client, now);
    let header = authorization(&auth).expect("Authorization");
    assert_eq!(header.params.get("uri"), Some(INTRA));
    assert_eq!(header.params.get("opaque"), Some("o"));
    assert_eq!(header.params.get("nonce"), Some("n2"));
    assert!(verify_digest(&auth, PASSWORD));
    client.handle_response(now, &answer(&auth, "200 OK", &granted(INTRA_PATH, Some(100), Some("next1"))));
    assert!(client.is_authorized());
    // The refresh answers the nextnonce at once, with uri=.
    let refresh_at = client.poll_timeout().expect("a refresh");
    assert_eq!(refresh_at, now + Duration::from_secs(75));
    fire(&mut client, refresh_at);
    let auth = next_auth(&mut client, refresh_at);
    let header = authorization(&auth).expect("the nextnonce is answered");
    assert_eq!((header.params.get("nonce"), header.params.get("uri")), (Some("next1"), Some(INTRA)));
    assert_eq!(header.params.get("nc"), Some("00000001"));
    assert!(verify_digest(&auth, PASSWORD));

    // Both forms refused: wrong credentials.
    let mut client = new_client(vec![hop(INTRA)], now);
    for nonce in ["a", "b", "c"] {
        let auth = next_auth(&mut client, now);
        client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge(nonce, "")));
    }
    assert_eq!(client.poll_request(now), None);
    assert_eq!(events(&mut client), [RelayEvent::Failed(RelayError::WrongCredentials { relay: Box::new(uri(INTRA)) })]);
    assert_eq!(client.poll_timeout(), None);
    assert!(!client.is_authorized() && client.local_path().is_none());
}

// A refresh without a nextnonce (Kamailio gives none) answers the new challenge at once
// in the form that worked, not the RFC's form first again (a wasted round trip and nonce).
#[test]
fn refresh_challenge_is_answered_in_the_form_that_worked() {
    let now = Instant::now();
    let mut client = new_client(vec![hop(INTRA)], now);
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("n1", "")));
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("n2", "")));
    let auth = next_auth(&mut client, now);
    assert_eq!(authorization(&auth).expect("Authorization").params.get("uri"), Some(INTRA));
    client.handle_response(now, &answer(&auth, "200 OK", &granted(INTRA_PATH, Some(4), None)));
    assert!(client.is_authorized());
    events(&mut client);

    let refresh_at = client.poll_timeout().expect("a refresh");
    fire(&mut client, refresh_at);
    let auth = next_auth(&mut client, refresh_at);
    assert_eq!(authorization(&auth), None, "no nonce to answer yet");
    client.handle_response(refresh_at, &answer(&auth, "401 Unauthorized", &challenge("n3", "")));
    let auth = next_auth(&mut client, refresh_at);
    let header = authorization(&auth).expect("Authorization");
    assert_eq!((header.params.get("nonce"), header.params.get("uri")), (Some("n3"), Some(INTRA)));
    assert!(verify_digest(&auth, PASSWORD));
    let moved = "msrps://intra.example.com:9000/second;tcp";
    client.handle_response(refresh_at, &answer(&auth, "200 OK", &granted(moved, Some(4), None)));
    assert_eq!(
        events(&mut client),
        [RelayEvent::Refreshed {
            use_path: vec![uri(moved)],
            expires: Some(Duration::from_secs(4)),
            path_changed: true
        }]
    );
}

// Issue 18: a per-relay switch forces either form, and then there is no fallback.
#[test]
fn digest_uri_forced_forms() {
    let now = Instant::now();
    for (policy, with_uri) in [(DigestUri::Always, true), (DigestUri::Never, false)] {
        let mut client = new_client(vec![RelayHop { digest_uri: policy, ..hop(INTRA) }], now);
        let auth = next_auth(&mut client, now);
        client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("a", "")));
        let auth = next_auth(&mut client, now);
        assert_eq!(authorization(&auth).expect("Authorization").params.get("uri").is_some(), with_uri);
        client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("b", "")));
        assert_eq!(client.poll_request(now), None, "{policy:?}");
        assert_eq!(
            events(&mut client),
            [RelayEvent::Failed(RelayError::WrongCredentials { relay: Box::new(uri(INTRA)) })]
        );
    }
}

#[test]
fn final_answers_that_fail() {
    let now = Instant::now();
    let run = |relay: RelayHop, status: &str, headers: &str| {
        let mut client = new_client(vec![relay], now);
        let auth = next_auth(&mut client, now);
        assert!(client.handle_response(now, &answer(&auth, status, headers)));
        assert_eq!(client.poll_request(now), None);
        assert_eq!(client.poll_timeout(), None);
        events(&mut client)
    };
    let relay = uri(INTRA);
    assert_eq!(
        run(hop(INTRA), "403 Forbidden", ""),
        [RelayEvent::Failed(RelayError::WrongCredentials { relay: Box::new(relay.clone()) })]
    );
    assert_eq!(
        run(RelayHop::new(uri(INTRA), None), "401 Unauthorized", &challenge("n", "")),
        [RelayEvent::Failed(RelayError::CredentialsNeeded { relay: Box::new(relay.clone()) })]
    );
    assert_eq!(
        run(hop(INTRA), "500 Oops", ""),
        [RelayEvent::Failed(RelayError::Refused {
            relay: Box::new(relay.clone()),
            status: MsrpError::new(500, "Oops")
        })]
    );
    let failures = [
        run(hop(INTRA), "200 OK", "Expires: 60\r\n"),
        run(hop(INTRA), "401 Unauthorized", "WWW-Authenticate: Basic realm=\"r\"\r\n"),
        run(hop(INTRA), "401 Unauthorized", ""),
    ];
    for failure in failures {
        assert!(
            matches!(&failure[..], [RelayEvent::Failed(RelayError::Malformed { relay: r, .. })] if **r == relay),
            "{failure:?}"
        );
    }
}

// Issue 18: 423 once, with Expires moved into Min-Expires; a second 423 fails.
#[test]
fn interval_too_brief_moves_expires_once() {
    let now = Instant::now();
    let mut client = new_client(vec![RelayHop { expires: Some(30), ..hop(INTRA) }], now);
    let auth = next_auth(&mut client, now);
    assert_eq!(auth.headers.get(&HeaderName::Expires).map(HeaderValue::as_str), Some("30"));
    client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("n1", "")));
    let auth = next_auth(&mut client, now);
    let wire = String::from_utf8(auth.encode().to_vec()).expect("ASCII");
    let names: Vec<&str> =
        wire.lines().skip(1).filter_map(|line| line.split_once(": ")).map(|(name, _)| name).collect();
    assert_eq!(names, ["To-Path", "From-Path", "Authorization", "Expires"]);
    client.handle_response(now, &answer(&auth, "423 Interval Out-of-Bounds", "Min-Expires: 60\r\n"));
    let auth = next_auth(&mut client, now);
    assert_eq!(auth.headers.get(&HeaderName::Expires).map(HeaderValue::as_str), Some("60"));
    let header = authorization(&auth).expect("the nonce is answered again");
    assert_eq!((header.params.get("nonce"), header.params.get("nc")), (Some("n1"), Some("00000002")));
    client.handle_response(now, &answer(&auth, "423 Interval Out-of-Bounds", "Min-Expires: 60\r\n"));
    assert_eq!(client.poll_request(now), None);
    assert!(matches!(
        &events(&mut client)[..],
        [RelayEvent::Failed(RelayError::Refused { status, .. })] if status.code == 423
    ));
}

// Kamailio answers 423 (Min-Expires: 60) to any Expires with an Authorization: bounds
// that allow what was sent do not explain it, so the AUTH goes again without Expires,
// and so do later ones. A relay's 423 without bounds to an AUTH without Expires fails.
#[test]
fn interval_refused_for_any_expires_drops_it() {
    let now = Instant::now();
    let mut client = new_client(vec![RelayHop { expires: Some(600), ..hop(INTRA) }], now);
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("n1", "")));
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "423 Interval Out-of-Bounds", "Min-Expires: 60\r\n"));
    let auth = next_auth(&mut client, now);
    assert_eq!(auth.headers.get(&HeaderName::Expires), None);
    // The reused nonce refused: a new challenge, not a verdict on the credentials.
    client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("n2", "")));
    let auth = next_auth(&mut client, now);
    assert_eq!(authorization(&auth).expect("Authorization").params.get("uri"), None, "still the RFC's form");
    client.handle_response(now, &answer(&auth, "200 OK", &granted(INTRA_PATH, Some(3600), None)));
    assert!(client.is_authorized());
    let refresh_at = client.poll_timeout().expect("a refresh");
    fire(&mut client, refresh_at);
    let auth = next_auth(&mut client, refresh_at);
    assert_eq!(auth.headers.get(&HeaderName::Expires), None, "the refresh leaves Expires out too");
    assert!(authorization(&auth).is_none(), "no nextnonce was given: a plain AUTH");

    let mut client = new_client(vec![hop(INTRA)], now);
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "423 Interval Out-of-Bounds", ""));
    assert!(matches!(&events(&mut client)[..], [RelayEvent::Failed(RelayError::Refused { .. })]));
}

// RFC 2617 §3.2.1: stale=true means the credentials were right and the nonce expired: the
// new nonce is answered in the same form (a few times at most).
#[test]
fn stale_nonce_is_answered_a_few_times() {
    let now = Instant::now();
    let mut client = new_client(vec![hop(INTRA)], now);
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("n1", "")));
    for round in 0..3 {
        let auth = next_auth(&mut client, now);
        let header = authorization(&auth).expect("Authorization");
        assert_eq!(header.params.get("uri"), None, "round {round}: stale keeps the form");
        assert_eq!(header.params.get("nc"), Some("00000001"), "a new nonce counts from 1");
        assert!(verify_digest(&auth, PASSWORD));
        let nonce = format!("s{round}");
        client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge(&nonce, ", stale=true")));
    }
    let auth = next_auth(&mut client, now);
    assert_eq!(authorization(&auth).expect("Authorization").params.get("nonce"), Some("s2"));
    client.handle_response(now, &answer(&auth, "200 OK", &granted(INTRA_PATH, None, None)));
    assert!(client.is_authorized());
    assert_eq!(client.poll_timeout(), None, "no Expires, no refresh");

    let mut client = new_client(vec![hop(INTRA)], now);
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge("n1", "")));
    for round in 0..4 {
        let auth = next_auth(&mut client, now);
        let nonce = format!("s{round}");
        client.handle_response(now, &answer(&auth, "401 Unauthorized", &challenge(&nonce, ", stale=true")));
    }
    assert_eq!(client.poll_request(now), None);
    assert!(matches!(
        &events(&mut client)[..],
        [RelayEvent::Failed(RelayError::Refused { status, .. })] if status.code == 401
    ));
}

// Issue 18: no answer within 30 s of the AUTH being handed out.
#[test]
fn unanswered_auth_times_out() {
    let start = Instant::now();
    let mut client = new_client(vec![hop(INTRA)], start);
    let sent = start + Duration::from_secs(5);
    let auth = next_auth(&mut client, sent);
    assert_eq!(client.poll_timeout(), Some(sent + AUTH_TIMEOUT), "counted from the hand-out");
    fire(&mut client, sent + Duration::from_millis(29_999));
    assert!(events(&mut client).is_empty());
    fire(&mut client, sent + AUTH_TIMEOUT);
    assert_eq!(
        events(&mut client),
        [RelayEvent::Failed(RelayError::TimedOut { relay: Box::new(uri(INTRA)), after: AUTH_TIMEOUT })]
    );
    assert_eq!(
        RelayError::TimedOut { relay: Box::new(uri(INTRA)), after: AUTH_TIMEOUT }.to_string(),
        "the relay msrps://alice@intra.example.com;tcp did not answer our AUTH within 30 s"
    );
    assert_eq!(client.poll_timeout(), None);
    // A late answer is still recognised as ours, and changes nothing.
    assert!(client.handle_response(sent + AUTH_TIMEOUT, &answer(&auth, "200 OK", &granted(INTRA_PATH, None, None))));
    assert!(!client.is_authorized() && events(&mut client).is_empty());
    assert!(!client.handle_response(
        start,
        &decode(
            "MSRP other1234 200 OK\r\nTo-Path: msrp://a:1/s;tcp\r\nFrom-Path: msrp://b:2/t;tcp\r\n-------other1234$\r\n"
        )
    ));
}

// Issue 18: the grant is renewed at 3/4 of its time (at least 5 s before it runs out),
// on the same connection; a new Use-Path says so.
#[test]
fn refresh_before_expiry_and_path_changes() {
    let start = Instant::now();
    let mut client = authorized(hop(INTRA), &granted(INTRA_PATH, Some(20), None), start);
    events(&mut client);
    // min(15 s, 20 − 5 s) = 15 s.
    let refresh_at = start + Duration::from_secs(15);
    assert_eq!(client.poll_timeout(), Some(refresh_at));
    fire(&mut client, start + Duration::from_millis(14_999));
    assert_eq!(client.poll_request(refresh_at), None, "not yet");
    fire(&mut client, refresh_at);
    assert_eq!(client.poll_timeout(), None, "the refresh AUTH is not handed out yet");
    let auth = next_auth(&mut client, refresh_at);
    assert_eq!(client.poll_timeout(), Some(refresh_at + AUTH_TIMEOUT));
    client.handle_response(refresh_at, &answer(&auth, "401 Unauthorized", &challenge("n9", "")));
    let auth = next_auth(&mut client, refresh_at);
    assert!(verify_digest(&auth, PASSWORD));
    client.handle_response(refresh_at, &answer(&auth, "200 OK", &granted(INTRA_PATH, Some(8), Some("nn"))));
    assert_eq!(
        events(&mut client),
        [RelayEvent::Refreshed {
            use_path: vec![uri(INTRA_PATH)],
            expires: Some(Duration::from_secs(8)),
            path_changed: false
        }]
    );
    // A short grant: min(6 s, 3 s), but not before half of it (4 s).
    let second = refresh_at + Duration::from_secs(4);
    assert_eq!(client.poll_timeout(), Some(second));
    fire(&mut client, second);
    let auth = next_auth(&mut client, second);
    assert_eq!(authorization(&auth).expect("nextnonce").params.get("nonce"), Some("nn"));
    let moved = "msrps://intra.example.com:9000/newpath1;tcp";
    client.handle_response(second, &answer(&auth, "200 OK", &granted(moved, Some(600), None)));
    assert_eq!(
        events(&mut client),
        [RelayEvent::Refreshed {
            use_path: vec![uri(moved)],
            expires: Some(Duration::from_secs(600)),
            path_changed: true
        }]
    );
    assert_eq!(client.local_path(), Some(vec![uri(moved), uri(ALICE)]));

    // A failed refresh is told; the path stays until it runs out, and is not refreshed again.
    let third = second + Duration::from_secs(450);
    assert_eq!(client.poll_timeout(), Some(third));
    fire(&mut client, third);
    let auth = next_auth(&mut client, third);
    client.handle_response(third, &answer(&auth, "403 Forbidden", ""));
    assert_eq!(events(&mut client), [RelayEvent::Failed(RelayError::WrongCredentials { relay: Box::new(uri(INTRA)) })]);
    assert!(client.is_authorized());
    assert_eq!(client.use_path(), [uri(moved)]);
    assert_eq!(client.poll_timeout(), None);
}

// Refreshes of two relays due together go one after the other, nearest first; the
// second relay's refresh still goes through the first.
#[test]
fn refreshes_of_two_relays_take_turns() {
    let now = Instant::now();
    let mut client = new_client(vec![RelayHop::new(uri(INTRA), None), RelayHop::new(uri(EXTRA), None)], now);
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "200 OK", &granted(INTRA_PATH, Some(100), None)));
    let auth = next_auth(&mut client, now);
    client.handle_response(now, &answer(&auth, "200 OK", &granted(EXTRA_PATH, Some(100), None)));
    assert!(matches!(
        &events(&mut client)[..],
        [RelayEvent::Authorized { expires: Some(expires), .. }] if *expires == Duration::from_secs(100)
    ));
    let due = now + Duration::from_secs(75);
    assert_eq!(client.poll_timeout(), Some(due));
    fire(&mut client, due);
    let first = next_auth(&mut client, due);
    assert_eq!(first.to_path().expect("To-Path").0, [uri(INTRA)]);
    assert_eq!(client.poll_request(due), None, "one at a time");
    client.handle_response(due, &answer(&first, "200 OK", &granted(INTRA_PATH, Some(100), None)));
    let second = next_auth(&mut client, due);
    assert_eq!(second.to_path().expect("To-Path").0, [uri(INTRA_PATH), uri(EXTRA)]);
    client.handle_response(due, &answer(&second, "200 OK", &granted(EXTRA_PATH, Some(100), None)));
    assert_eq!(events(&mut client).len(), 2);
    assert_eq!(client.use_path(), [uri(INTRA_PATH), uri(EXTRA_PATH)]);
}

#[test]
fn closing_fails_once_and_stops_everything() {
    let now = Instant::now();
    let mut client = new_client(vec![hop(INTRA)], now);
    let _ = next_auth(&mut client, now);
    client.handle_closed(now);
    client.handle_closed(now);
    assert_eq!(events(&mut client), [RelayEvent::Failed(RelayError::Closed)]);
    assert_eq!((client.poll_timeout(), client.poll_request(now)), (None, None));
}

// ---- RelayLogin: the same over bytes ----

/// Runs a login against a relay that answers the first AUTH with `first` and the second
/// with `second` (texts made from the AUTH), each delivered in two reads split at the
/// given offsets. Returns the outputs (transmits decoded) and the login.
fn run_login(
    first: &dyn Fn(&Chunk) -> String,
    second: &dyn Fn(&Chunk) -> String,
    splits: (usize, usize),
) -> (Vec<LoginOutput>, RelayLogin) {
    let now = Instant::now();
    let mut login = RelayLogin::new(new_client(vec![hop(INTRA)], now));
    let mut outputs = Vec::new();
    assert_eq!(login.poll_output(now), None, "nothing before the connection is up");
    login.handle_input(now, Input::Connected);
    for (answer, split) in [(first, splits.0), (second, splits.1)] {
        let auth = loop {
            match login.poll_output(now).expect("an AUTH") {
                LoginOutput::Transmit(bytes) => break decode(std::str::from_utf8(&bytes).expect("ASCII")),
                other => outputs.push(other),
            }
        };
        let text = answer(&auth);
        let split = split.min(text.len());
        for part in [&text[..split], &text[split..]] {
            login.handle_input(now, Input::Received(Bytes::copy_from_slice(part.as_bytes())));
        }
    }
    outputs.extend(std::iter::from_fn(|| login.poll_output(now)));
    (outputs, login)
}

const PEER_SEND: &str = "MSRP peer5678 SEND\r\nTo-Path: msrps://alice.example.com:9892/98cjs;tcp\r\n\
    From-Path: msrps://intra.example.com:9000/jui787s2f;tcp msrps://bob.example.net:1/b;tcp\r\n\
    Message-ID: m1\r\nByte-Range: 1-5/5\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------peer5678$\r\n";

// The relay's answers split at every byte offset give the same login, and the bytes after
// the 200 (a peer's SEND, half of another chunk) are handed back whole, in order.
#[test]
fn login_over_bytes_split_at_every_offset() {
    let first = |auth: &Chunk| answer_text(auth, "401 Unauthorized", &challenge("n1", ""));
    let tail = &PEER_SEND[..PEER_SEND.len() - 9];
    let second = |auth: &Chunk| {
        format!("{}{PEER_SEND}{tail}", answer_text(auth, "200 OK", &granted(INTRA_PATH, Some(900), None)))
    };
    let probe = Instant::now();
    let mut sample = new_client(vec![hop(INTRA)], probe);
    let sample_auth = next_auth(&mut sample, probe);
    let lengths = (first(&sample_auth).len(), second(&sample_auth).len());
    let expected_local_path = vec![uri(INTRA_PATH), uri(ALICE)];
    for split in 0..=lengths.0.max(lengths.1) {
        for splits in [(split, usize::MAX), (usize::MAX, split)] {
            let (outputs, login) = run_login(&first, &second, splits);
            assert_eq!(
                outputs,
                [LoginOutput::Authorized { local_path: expected_local_path.clone() }],
                "split {splits:?}"
            );
            assert!(login.poll_timeout().is_some(), "the refresh timer runs");
            let (client, leftover) = login.into_parts();
            assert!(client.is_authorized());
            assert_eq!(leftover.concat(), format!("{PEER_SEND}{tail}").as_bytes(), "split {splits:?}");
        }
    }
}

// A request that arrives before the path is granted, and a response to something else,
// are kept for the session; the relay's answers are not.
#[test]
fn login_keeps_what_is_not_the_relays_answer() {
    let stray = "MSRP stray123 200 OK\r\nTo-Path: msrps://alice.example.com:9892/98cjs;tcp\r\n\
        From-Path: msrps://x.example.com:1/x;tcp\r\n-------stray123$\r\n";
    let first =
        |auth: &Chunk| format!("{PEER_SEND}{}{stray}", answer_text(auth, "401 Unauthorized", &challenge("n1", "")));
    let second = |auth: &Chunk| answer_text(auth, "200 OK", &granted(INTRA_PATH, None, None));
    let (outputs, login) = run_login(&first, &second, (PEER_SEND.len() + 3, 10));
    assert!(matches!(&outputs[..], [LoginOutput::Authorized { .. }]), "{outputs:?}");
    let (_, leftover) = login.into_parts();
    assert_eq!(leftover.concat(), format!("{PEER_SEND}{stray}").as_bytes());
}

#[test]
fn login_fails_on_refusal_closure_and_garbage() {
    let now = Instant::now();
    let first = |auth: &Chunk| answer_text(auth, "403 Forbidden", "");
    let mut login = RelayLogin::new(new_client(vec![hop(INTRA)], now));
    login.handle_input(now, Input::Connected);
    let Some(LoginOutput::Transmit(bytes)) = login.poll_output(now) else { panic!("an AUTH") };
    let auth = decode(std::str::from_utf8(&bytes).expect("ASCII"));
    login.handle_input(now, Input::Received(Bytes::from(first(&auth))));
    assert_eq!(
        login.poll_output(now),
        Some(LoginOutput::Failed(RelayError::WrongCredentials { relay: Box::new(uri(INTRA)) }))
    );
    login.handle_input(now, Input::Closed);
    assert_eq!(login.poll_output(now), None, "one failure only");

    let mut login = RelayLogin::new(new_client(vec![hop(INTRA)], now));
    login.handle_input(now, Input::Connected);
    assert!(matches!(login.poll_output(now), Some(LoginOutput::Transmit(_))));
    login.handle_input(now, Input::Written(10));
    login.handle_input(now, Input::Closed);
    assert_eq!(login.poll_output(now), Some(LoginOutput::Failed(RelayError::Closed)));
    assert_eq!((login.poll_output(now), login.poll_timeout()), (None, None));

    let mut login = RelayLogin::new(new_client(vec![hop(INTRA)], now));
    login.handle_input(now, Input::Connected);
    assert!(matches!(login.poll_output(now), Some(LoginOutput::Transmit(_))));
    login.handle_input(now, Input::Received(Bytes::from_static(b"HTTP/1.1 400 Bad Request\r\n\r\n")));
    assert!(matches!(
        login.poll_output(now),
        Some(LoginOutput::Failed(RelayError::Malformed { relay, .. })) if *relay == uri(INTRA)
    ));

    // Timeout through the login.
    let mut login = RelayLogin::new(new_client(vec![hop(INTRA)], now));
    login.handle_input(now, Input::Connected);
    assert!(matches!(login.poll_output(now), Some(LoginOutput::Transmit(_))));
    let deadline = login.poll_timeout().expect("the AUTH timer");
    login.handle_timeout(deadline);
    assert!(matches!(login.poll_output(deadline), Some(LoginOutput::Failed(RelayError::TimedOut { .. }))));
}
