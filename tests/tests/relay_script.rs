//! The scripted test relay (`msrp_tests::relay`): sans-IO with a virtual clock where time
//! matters (grant expiry, stale nonces, one-byte reads), and over real sockets on
//! 127.0.0.1 with raw `TcpStream` clients writing hand-written chunks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5::{Digest, Md5};
use msrp_core::codec::{Decoder, DecoderLimits};
use msrp_core::connect::ConnectionId;
use msrp_core::header::{Expires, HeaderName, MaxExpires, MinExpires, UsePath, WwwAuthenticate};
use msrp_core::{Chunk, ContinuationFlag, Method, Uri};
use msrp_tests::relay::net::TestRelay;
use msrp_tests::relay::{DigestAuth, KAMAILIO_MAX_FRAME, RelayOutput, RelayScript, ScriptedRelay};

const REALM: &str = "msrp-test";
const PASSWORD: &str = "secret";

// ---------------------------------------------------------------- wire helpers

/// A request frame written by hand: start line, headers in the order given, optional body.
fn request(tid: &str, method: &str, headers: &[(&str, &str)], body: Option<&[u8]>, flag: char) -> Vec<u8> {
    let mut out = format!("MSRP {tid} {method}\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(body) = body {
        out.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("-------{tid}{flag}\r\n").as_bytes());
    out
}

fn response(tid: &str, code: u16, to: &str, from: &str) -> Vec<u8> {
    format!("MSRP {tid} {code} OK\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\n-------{tid}$\r\n").into_bytes()
}

fn md5_hex(text: &str) -> String {
    format!("{:x}", Md5::digest(text.as_bytes()))
}

/// The `Authorization` value answering `challenge` (RFC 2617, qop=auth), computed here
/// independently of the relay; `uri` adds the `uri=` directive.
fn authorization(challenge: &Chunk, user: &str, password: &str, digest_uri: &str, with_uri: bool) -> String {
    let challenge = challenge.headers.typed::<WwwAuthenticate>().expect("WWW-Authenticate").expect("valid");
    let realm = challenge.params.get("realm").expect("realm");
    let nonce = challenge.params.get("nonce").expect("nonce");
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("AUTH:{digest_uri}"));
    let digest = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    let uri = if with_uri { format!(", uri=\"{digest_uri}\"") } else { String::new() };
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\"{uri}, qop=auth, nc={nc}, \
         cnonce=\"{cnonce}\", response=\"{digest}\""
    )
}

fn use_path(chunk: &Chunk) -> Uri {
    let UsePath(uris) = chunk.headers.typed::<UsePath>().expect("Use-Path").expect("valid");
    assert_eq!(uris.len(), 1);
    uris[0].clone()
}

fn header<'a>(chunk: &'a Chunk, name: &str) -> Option<&'a str> {
    let name = HeaderName::from_bytes(name.as_bytes()).expect("name");
    chunk.headers.get(&name).map(msrp_core::header::HeaderValue::as_str)
}

/// The header names of an encoded frame, in wire order.
fn header_names(frame: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(frame);
    text.split("\r\n")
        .skip(1)
        .take_while(|line| !line.is_empty() && !line.starts_with("-------"))
        .map(|line| line.split(':').next().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------- socket client

/// A raw MSRP client: a socket, a decoder, and the bytes it read (for byte checks).
struct Client {
    stream: TcpStream,
    decoder: Decoder,
    uri: String,
    raw: Vec<u8>,
}

impl Client {
    fn connect(relay: &TestRelay, name: &str) -> Self {
        let stream = TcpStream::connect(relay.address()).expect("connect to the relay");
        // A guard against a hung test, not protocol timing.
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            decoder: Decoder::new(DecoderLimits::default()),
            uri: format!("msrp://127.0.0.1:9/{name};tcp"),
            raw: Vec::new(),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn read_some(&mut self) -> usize {
        let mut buffer = [0; 16384];
        let count = self.stream.read(&mut buffer).expect("read (timed out?)");
        self.raw.extend_from_slice(&buffer[..count]);
        self.decoder.feed(Bytes::copy_from_slice(&buffer[..count]));
        count
    }

    fn read(&mut self) -> Chunk {
        loop {
            if let Some(chunk) = self.decoder.poll_chunk(None) {
                return chunk.expect("a valid chunk from the relay");
            }
            assert!(self.read_some() > 0, "the relay closed the connection");
        }
    }

    /// Reads until the relay closes; nothing else may arrive.
    fn expect_closed(&mut self) {
        loop {
            if let Some(chunk) = self.decoder.poll_chunk(None) {
                panic!("expected the end of the stream, got {chunk:?}");
            }
            if self.read_some() == 0 {
                return;
            }
        }
    }

    fn auth_request(&mut self, tid: &str, relay: &Uri, extra: &[(&str, &str)]) {
        let relay = relay.to_string();
        let mut headers = vec![("To-Path", relay.as_str()), ("From-Path", self.uri.as_str())];
        headers.extend_from_slice(extra);
        let frame = request(tid, "AUTH", &headers, None, '$');
        self.write(&frame);
    }

    /// AUTH without credentials; returns the Use-Path URI.
    fn auth(&mut self, relay: &Uri) -> Uri {
        self.auth_request("auth0001", relay, &[]);
        let answer = self.read();
        assert_eq!(answer.code(), Some(200), "{answer:?}");
        use_path(&answer)
    }

    fn send(&mut self, tid: &str, to: &str, extra: &[(&str, &str)], body: &[u8]) {
        let mut headers = vec![("To-Path", to), ("From-Path", self.uri.as_str()), ("Message-ID", "msg12345")];
        let range = format!("1-{}/{}", body.len(), body.len());
        headers.push(("Byte-Range", &range));
        headers.extend_from_slice(extra);
        let frame = request(tid, "SEND", &headers, Some(body), '$');
        self.write(&frame);
    }
}

fn start(script: RelayScript) -> TestRelay {
    TestRelay::start(script)
}

// ---------------------------------------------------------------- AUTH over sockets

#[test]
fn auth_without_credentials_grants_a_use_path_and_refresh_keeps_it() {
    let relay = start(RelayScript::default());
    let mut client = Client::connect(&relay, "alice1");
    client.auth_request("a1b2c3d4", &relay.uri(), &[]);
    let answer = client.read();
    assert_eq!((answer.transaction_id.as_str(), answer.code()), ("a1b2c3d4", Some(200)));
    assert_eq!(header(&answer, "To-Path"), Some(client.uri.as_str()));
    assert_eq!(header(&answer, "From-Path"), Some(relay.uri().to_string().as_str()));
    assert_eq!(answer.headers.typed::<Expires>(), Some(Ok(Expires(3600))));
    let granted = use_path(&answer);
    assert_eq!((granted.host.as_str(), granted.port), ("127.0.0.1", relay.uri().port));
    let session = granted.session_id.clone().expect("a session id");
    assert!(session.len() >= 11, "at least 64 random bits: {session}");
    assert_eq!(header_names(&client.raw), ["To-Path", "From-Path", "Use-Path", "Expires"]);

    // A second AUTH on the same connection renews the grant and keeps the URI.
    client.auth_request("e5f6g7h8", &relay.uri(), &[("Expires", "600")]);
    let refreshed = client.read();
    assert_eq!(refreshed.code(), Some(200));
    assert_eq!(use_path(&refreshed), granted);
    assert_eq!(refreshed.headers.typed::<Expires>(), Some(Ok(Expires(600))));
    let stats = relay.stats();
    assert_eq!((stats.auth_requests, stats.authorized, stats.refreshed, stats.challenges), (2, 1, 1, 0));

    // Another connection gets another URI.
    let mut other = Client::connect(&relay, "bob1");
    assert_ne!(other.auth(&relay.uri()), granted);
}

#[test]
fn digest_auth_challenges_then_checks_the_password() {
    let relay = start(RelayScript::with_auth(DigestAuth::any_user(REALM, PASSWORD)));
    let relay_uri = relay.uri().to_string();
    let mut client = Client::connect(&relay, "alice2");
    client.auth_request("tx000001", &relay.uri(), &[]);
    let challenge = client.read();
    assert_eq!(challenge.code(), Some(401));
    let www = challenge.headers.typed::<WwwAuthenticate>().expect("present").expect("valid");
    assert_eq!(www.scheme, "Digest");
    assert_eq!((www.params.get("realm"), www.params.get("qop")), (Some(REALM), Some("auth")));
    assert!(header(&challenge, "WWW-Authenticate").is_some_and(|v| v.contains("qop=\"auth\"")));
    assert_eq!(www.params.get("stale"), None);

    // Wrong password: 401 again, not stale.
    let wrong = authorization(&challenge, "alice", "guess", &relay_uri, false);
    client.auth_request("tx000002", &relay.uri(), &[("Authorization", &wrong)]);
    let again = client.read();
    assert_eq!(again.code(), Some(401));
    let again_www = again.headers.typed::<WwwAuthenticate>().expect("present").expect("valid");
    assert_eq!(again_www.params.get("stale"), None);

    // Right password: 200 with a grant.
    let right = authorization(&again, "alice", PASSWORD, &relay_uri, false);
    client.auth_request("tx000003", &relay.uri(), &[("Authorization", &right)]);
    let granted = client.read();
    assert_eq!(granted.code(), Some(200), "{granted:?}");
    assert!(use_path(&granted).session_id.is_some());
    let stats = relay.stats();
    assert_eq!((stats.auth_requests, stats.challenges, stats.authorized), (3, 2, 1));
}

#[test]
fn digest_for_listed_users_only() {
    let relay = start(RelayScript::with_auth(DigestAuth::users(REALM, [("alice", "a-pass")])));
    let relay_uri = relay.uri().to_string();
    let mut client = Client::connect(&relay, "mallory");
    client.auth_request("tx000001", &relay.uri(), &[]);
    let challenge = client.read();
    let credentials = authorization(&challenge, "mallory", "a-pass", &relay_uri, false);
    client.auth_request("tx000002", &relay.uri(), &[("Authorization", &credentials)]);
    assert_eq!(client.read().code(), Some(403));
    assert_eq!(relay.stats().forbidden, 1);
}

#[test]
fn kamailio_quirks_uri_required_and_expires_refused() {
    let relay = start(RelayScript::kamailio_like(Some(DigestAuth::any_user(REALM, PASSWORD))));
    let relay_uri = relay.uri().to_string();
    let mut client = Client::connect(&relay, "alice3");
    client.auth_request("tx000001", &relay.uri(), &[]);
    let challenge = client.read();
    // The RFC's form (no uri=) is refused with another challenge.
    let rfc_form = authorization(&challenge, "alice", PASSWORD, &relay_uri, false);
    client.auth_request("tx000002", &relay.uri(), &[("Authorization", &rfc_form)]);
    let again = client.read();
    assert_eq!(again.code(), Some(401));
    // With uri= but with Expires: 423 with Min-Expires, whatever the value.
    let with_uri = authorization(&again, "alice", PASSWORD, &relay_uri, true);
    client.auth_request("tx000003", &relay.uri(), &[("Authorization", &with_uri), ("Expires", "900")]);
    let interval = client.read();
    assert_eq!(interval.code(), Some(423));
    assert_eq!(interval.headers.typed::<MinExpires>(), Some(Ok(MinExpires(60))));
    // With uri= and no Expires: granted.
    client.auth_request("tx000004", &relay.uri(), &[("Authorization", &with_uri)]);
    assert_eq!(client.read().code(), Some(200));
    let stats = relay.stats();
    assert_eq!((stats.challenges, stats.interval_refused, stats.authorized), (2, 1, 1));
}

#[test]
fn msrprelay_quirk_ignores_an_authorization_with_uri() {
    let relay = start(RelayScript::msrprelay_like(Some(DigestAuth::any_user(REALM, PASSWORD))));
    let relay_uri = relay.uri().to_string();
    let mut client = Client::connect(&relay, "alice4");
    client.auth_request("tx000001", &relay.uri(), &[]);
    let challenge = client.read();
    let with_uri = authorization(&challenge, "alice", PASSWORD, &relay_uri, true);
    client.auth_request("tx000002", &relay.uri(), &[("Authorization", &with_uri)]);
    let without = authorization(&challenge, "alice", PASSWORD, &relay_uri, false);
    client.auth_request("tx000003", &relay.uri(), &[("Authorization", &without)]);
    // The next answer on the connection is the one to tx000003: tx000002 got none.
    let answer = client.read();
    assert_eq!((answer.transaction_id.as_str(), answer.code()), ("tx000003", Some(200)));
    assert_eq!(relay.stats().auth_ignored, 1);
}

#[test]
fn expires_outside_the_bounds_gets_423() {
    let relay = start(RelayScript { min_expires: 60, max_expires: 3600, ..RelayScript::default() });
    let mut client = Client::connect(&relay, "alice5");
    client.auth_request("tx000001", &relay.uri(), &[("Expires", "10")]);
    let low = client.read();
    assert_eq!((low.code(), low.headers.typed::<MinExpires>()), (Some(423), Some(Ok(MinExpires(60)))));
    client.auth_request("tx000002", &relay.uri(), &[("Expires", "7200")]);
    let high = client.read();
    assert_eq!((high.code(), high.headers.typed::<MaxExpires>()), (Some(423), Some(Ok(MaxExpires(3600)))));
    client.auth_request("tx000003", &relay.uri(), &[("Expires", "60")]);
    let granted = client.read();
    assert_eq!((granted.code(), granted.headers.typed::<Expires>()), (Some(200), Some(Ok(Expires(60)))));
}

#[test]
fn drop_after_auth_closes_after_the_200_and_refuse_auth_with_answers_its_status() {
    let relay = start(RelayScript { drop_after_auth: true, ..RelayScript::default() });
    let mut client = Client::connect(&relay, "alice6");
    client.auth(&relay.uri());
    client.expect_closed();

    let relay = start(RelayScript { refuse_auth_with: Some(403), ..RelayScript::default() });
    let mut client = Client::connect(&relay, "alice7");
    client.auth_request("tx000001", &relay.uri(), &[]);
    assert_eq!(client.read().code(), Some(403));
}

// ---------------------------------------------------------------- forwarding over sockets

#[test]
fn forwards_a_send_from_a_to_b_rewriting_the_paths_and_answers_hop_by_hop() {
    let relay = start(RelayScript::default());
    let mut alice = Client::connect(&relay, "alice8");
    let mut bob = Client::connect(&relay, "bob8");
    let alice_grant = alice.auth(&relay.uri()).to_string();
    let bob_grant = bob.auth(&relay.uri()).to_string();
    let bob_raw_before = bob.raw.len();

    let to = format!("{alice_grant} {bob_grant} {}", bob.uri);
    alice.send("snd00001", &to, &[("Success-Report", "yes")], b"Hello through the relay");
    let ok = alice.read();
    assert_eq!((ok.transaction_id.as_str(), ok.code()), ("snd00001", Some(200)));
    assert_eq!(header(&ok, "To-Path"), Some(alice.uri.as_str()));
    assert_eq!(header(&ok, "From-Path"), Some(alice_grant.as_str()));
    assert_eq!(ok.headers.len(), 2, "nothing but the paths: {ok:?}");

    let forwarded = bob.read();
    assert_eq!(forwarded.method(), Some(&Method::Send));
    assert_eq!(forwarded.transaction_id, "snd00001");
    assert_eq!(header(&forwarded, "To-Path"), Some(bob.uri.as_str()));
    let from = format!("{alice_grant} {}", alice.uri);
    assert_eq!(header(&forwarded, "From-Path"), Some(from.as_str()));
    assert_eq!(&forwarded.data[..], b"Hello through the relay");
    assert_eq!((forwarded.message_id(), header(&forwarded, "Success-Report")), (Some("msg12345"), Some("yes")));
    assert_eq!(
        header_names(&bob.raw[bob_raw_before..]),
        ["To-Path", "From-Path", "Message-ID", "Byte-Range", "Success-Report", "Content-Type"]
    );

    // Bob's 200 ends at the relay and is dropped; his REPORT along the full path reaches
    // Alice and is answered by nobody.
    bob.write(&response("snd00001", 200, &alice_grant, &bob.uri));
    let report_to = format!("{bob_grant} {alice_grant} {}", alice.uri);
    let report = request(
        "rep00001",
        "REPORT",
        &[
            ("To-Path", &report_to),
            ("From-Path", &bob.uri),
            ("Message-ID", "msg12345"),
            ("Byte-Range", "1-23/23"),
            ("Status", "000 200 OK"),
        ],
        None,
        '$',
    );
    bob.write(&report);
    let delivered = alice.read();
    assert_eq!(delivered.method(), Some(&Method::Report));
    assert_eq!(header(&delivered, "To-Path"), Some(alice.uri.as_str()));
    let report_from = format!("{bob_grant} {}", bob.uri);
    assert_eq!(header(&delivered, "From-Path"), Some(report_from.as_str()));
    assert_eq!(header(&delivered, "Status"), Some("000 200 OK"));

    // Nothing came back to Bob for the REPORT: the next thing he reads answers his SEND.
    bob.send("snd00002", &format!("{bob_grant} {alice_grant} {}", alice.uri), &[], b"back");
    let answer = bob.read();
    assert_eq!((answer.transaction_id.as_str(), answer.code()), ("snd00002", Some(200)));
    assert_eq!(&alice.read().data[..], b"back");
    let stats = relay.stats();
    assert_eq!((stats.forwarded_requests, stats.hop_responses, stats.dropped_responses), (3, 2, 1));
    assert_eq!(stats.forwarded_body_bytes, 27);
}

#[test]
fn unknown_or_gone_sessions_get_481_and_a_stranger_uri_closes() {
    let relay = start(RelayScript::default());
    let mut alice = Client::connect(&relay, "alice9");
    let mut bob = Client::connect(&relay, "bob9");
    let alice_grant = alice.auth(&relay.uri()).to_string();
    let bob_grant = bob.auth(&relay.uri()).to_string();
    let mut bogus = relay.uri();
    bogus.session_id = Some("notagrant1234".into());

    alice.send("snd00001", &format!("{alice_grant} {bogus} {}", bob.uri), &[], b"x");
    let refused = alice.read();
    assert_eq!((refused.transaction_id.as_str(), refused.code()), ("snd00001", Some(481)));

    // The relay drops Bob: his grant dies with the connection.
    let bob_connection = relay.connections()[1];
    relay.drop_client(bob_connection);
    bob.expect_closed();
    drop(bob);
    let bob_uri = "msrp://127.0.0.1:9/bob9;tcp";
    // Failure-Report: no asks for no answer, so a refusal is silent too.
    alice.send("snd00002", &format!("{alice_grant} {bob_grant} {bob_uri}"), &[("Failure-Report", "no")], b"y");
    alice.send("snd00003", &format!("{alice_grant} {bob_grant} {bob_uri}"), &[], b"z");
    let gone = alice.read();
    assert_eq!((gone.transaction_id.as_str(), gone.code()), ("snd00003", Some(481)));
    assert_eq!(relay.stats().no_route, 3);

    // A request for some other host is not for this relay: the connection is dropped.
    alice.send("snd00004", "msrp://192.0.2.1:2855/abc;tcp msrp://127.0.0.1:9/x;tcp", &[], b"w");
    alice.expect_closed();
}

#[test]
fn a_large_body_written_in_small_pieces_arrives_intact() {
    let relay = start(RelayScript::default());
    let mut alice = Client::connect(&relay, "alice10");
    let mut bob = Client::connect(&relay, "bob10");
    let alice_grant = alice.auth(&relay.uri()).to_string();
    let bob_grant = bob.auth(&relay.uri()).to_string();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let to = format!("{alice_grant} {bob_grant} {}", bob.uri);
    let range = format!("1-{}/{}", body.len(), body.len());
    let frame = request(
        "big00001",
        "SEND",
        &[("To-Path", &to), ("From-Path", &alice.uri), ("Message-ID", "bigmsg01"), ("Byte-Range", &range)],
        Some(&body),
        '+',
    );
    // Odd piece sizes, so the end-line is split across writes too.
    for piece in frame.chunks(997) {
        alice.write(piece);
    }
    let forwarded = bob.read();
    assert_eq!(forwarded.contflag, ContinuationFlag::More, "the flag passes through");
    assert!(forwarded.data == body, "body of {} bytes differs", forwarded.data.len());
    assert_eq!(alice.read().code(), Some(200));
}

#[test]
fn a_frame_over_max_frame_gets_501_and_is_not_forwarded() {
    let relay = start(RelayScript { max_frame: Some(KAMAILIO_MAX_FRAME), ..RelayScript::default() });
    let mut alice = Client::connect(&relay, "alice11");
    let mut bob = Client::connect(&relay, "bob11");
    let alice_grant = alice.auth(&relay.uri()).to_string();
    let bob_grant = bob.auth(&relay.uri()).to_string();
    let to = format!("{alice_grant} {bob_grant} {}", bob.uri);
    alice.send("big00001", &to, &[], &vec![b'a'; 12_000]);
    let refused = alice.read();
    assert_eq!((refused.transaction_id.as_str(), refused.code()), ("big00001", Some(501)));
    alice.send("ok000001", &to, &[], &vec![b'b'; 10_000]);
    assert_eq!(alice.read().code(), Some(200));
    let forwarded = bob.read();
    assert_eq!((forwarded.transaction_id.as_str(), forwarded.data.len()), ("ok000001", 10_000));
    let stats = relay.stats();
    assert_eq!((stats.too_large, stats.forwarded_requests), (1, 1));
}

// ---------------------------------------------------------------- sans-IO, virtual time

/// The relay driven directly; what it writes to each connection is decoded.
struct Harness {
    relay: ScriptedRelay,
    now: Instant,
    decoders: Vec<Decoder>,
    closed: Vec<bool>,
}

impl Harness {
    fn new(script: RelayScript, connections: usize) -> Self {
        let mut relay = ScriptedRelay::new(script);
        for id in 0..connections {
            relay.handle_connected(ConnectionId(id as u64));
        }
        Self {
            relay,
            now: Instant::now(),
            decoders: (0..connections).map(|_| Decoder::new(DecoderLimits::default())).collect(),
            closed: vec![false; connections],
        }
    }

    fn feed(&mut self, connection: usize, bytes: &[u8]) {
        self.relay.handle_received(self.now, ConnectionId(connection as u64), Bytes::copy_from_slice(bytes));
        while let Some(output) = self.relay.poll_output() {
            match output {
                RelayOutput::Write { connection, bytes } => self.decoders[connection.0 as usize].feed(bytes),
                RelayOutput::Close { connection } => self.closed[connection.0 as usize] = true,
            }
        }
    }

    fn next(&mut self, connection: usize) -> Option<Chunk> {
        self.decoders[connection].poll_chunk(None).map(|chunk| chunk.expect("valid"))
    }

    fn auth(&mut self, connection: usize, extra: &[(&str, &str)]) -> Chunk {
        let relay = self.relay.uri().to_string();
        let from = format!("msrp://127.0.0.1:9/c{connection};tcp");
        let mut headers = vec![("To-Path", relay.as_str()), ("From-Path", from.as_str())];
        headers.extend_from_slice(extra);
        self.feed(connection, &request("auth0001", "AUTH", &headers, None, '$'));
        self.next(connection).expect("an answer")
    }
}

#[test]
fn a_stale_nonce_gets_stale_true_and_grants_expire() {
    let script = RelayScript::with_auth(DigestAuth::any_user(REALM, PASSWORD));
    let mut harness = Harness::new(script, 2);
    let relay_uri = harness.relay.uri().to_string();
    let challenge = harness.auth(0, &[]);
    harness.now += Duration::from_secs(31);
    let late = authorization(&challenge, "alice", PASSWORD, &relay_uri, false);
    let stale = harness.auth(0, &[("Authorization", &late)]);
    assert_eq!(stale.code(), Some(401));
    let www = stale.headers.typed::<WwwAuthenticate>().expect("present").expect("valid");
    assert_eq!(www.params.get("stale"), Some("true"));
    let fresh = authorization(&stale, "alice", PASSWORD, &relay_uri, false);
    let granted = harness.auth(0, &[("Authorization", &fresh), ("Expires", "60")]);
    assert_eq!(granted.code(), Some(200));
    assert!(harness.relay.grant(ConnectionId(0), harness.now).is_some());
    assert_eq!(harness.relay.stats().stale_challenges, 1);

    // Connection 1 authenticates too, then connection 0's grant runs out.
    let challenge = harness.auth(1, &[]);
    let answer = authorization(&challenge, "bob", PASSWORD, &relay_uri, false);
    let bob_grant = use_path(&harness.auth(1, &[("Authorization", &answer)])).to_string();
    let alice_grant = use_path(&granted).to_string();
    harness.now += Duration::from_secs(61);
    assert_eq!(harness.relay.grant(ConnectionId(0), harness.now), None);
    let to = format!("{bob_grant} {alice_grant} msrp://127.0.0.1:9/c0;tcp");
    let from = "msrp://127.0.0.1:9/c1;tcp";
    let send = request("snd00001", "SEND", &[("To-Path", &to), ("From-Path", from)], Some(b"late"), '$');
    harness.feed(1, &send);
    assert_eq!(harness.next(1).and_then(|c| c.code()), Some(481));
    assert!(harness.next(0).is_none());
}

#[test]
fn one_byte_reads_forward_the_same_frames_and_failure_report_rules_hold() {
    let mut harness = Harness::new(RelayScript::default(), 2);
    let alice_grant = use_path(&harness.auth(0, &[])).to_string();
    let bob_grant = use_path(&harness.auth(1, &[])).to_string();
    let to = format!("{alice_grant} {bob_grant} msrp://127.0.0.1:9/c1;tcp");
    let from = "msrp://127.0.0.1:9/c0;tcp";
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8 + b'0').collect();
    let mut wire = Vec::new();
    for (tid, report, flag) in [("one00001", "yes", '+'), ("two00002", "partial", '#'), ("thr00003", "no", '$')] {
        let headers = [("To-Path", to.as_str()), ("From-Path", from), ("Failure-Report", report)];
        wire.extend(request(tid, "SEND", &headers, Some(&body), flag));
    }
    for byte in &wire {
        harness.feed(0, std::slice::from_ref(byte));
    }
    let flags: Vec<_> = std::iter::from_fn(|| harness.next(1))
        .map(|chunk| {
            assert_eq!(chunk.data, body);
            (chunk.transaction_id, chunk.contflag)
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("one00001".to_owned(), ContinuationFlag::More),
            ("two00002".to_owned(), ContinuationFlag::Abort),
            ("thr00003".to_owned(), ContinuationFlag::End)
        ]
    );
    // Only Failure-Report: yes gets the hop-by-hop 200.
    let answers: Vec<_> = std::iter::from_fn(|| harness.next(0)).map(|c| c.transaction_id).collect();
    assert_eq!(answers, ["one00001"]);

    // Kamailio answers them all.
    let mut harness = Harness::new(RelayScript { answer_every_send: true, ..RelayScript::default() }, 2);
    let alice_grant = use_path(&harness.auth(0, &[])).to_string();
    let bob_grant = use_path(&harness.auth(1, &[])).to_string();
    let to = format!("{alice_grant} {bob_grant} msrp://127.0.0.1:9/c1;tcp");
    let headers = [("To-Path", to.as_str()), ("From-Path", from), ("Failure-Report", "no")];
    harness.feed(0, &request("fou00004", "SEND", &headers, Some(b"x"), '$'));
    assert_eq!(harness.next(0).and_then(|c| c.code()), Some(200));
}

#[test]
fn requests_without_a_grant_of_their_own_are_forbidden_and_ignore_auth_is_silent() {
    let mut harness = Harness::new(RelayScript::default(), 2);
    let bob_grant = use_path(&harness.auth(1, &[])).to_string();
    let to = format!("{bob_grant} msrp://127.0.0.1:9/c1;tcp");
    let headers = [("To-Path", to.as_str()), ("From-Path", "msrp://127.0.0.1:9/c0;tcp")];
    harness.feed(0, &request("snd00001", "SEND", &headers, Some(b"x"), '$'));
    assert_eq!(harness.next(0).and_then(|c| c.code()), Some(403));
    assert!(harness.next(1).is_none());

    let mut harness = Harness::new(RelayScript { ignore_auth: true, ..RelayScript::default() }, 1);
    let relay = harness.relay.uri().to_string();
    let headers = [("To-Path", relay.as_str()), ("From-Path", "msrp://127.0.0.1:9/c0;tcp")];
    harness.feed(0, &request("auth0001", "AUTH", &headers, None, '$'));
    assert!(harness.next(0).is_none());
    assert_eq!((harness.relay.stats().auth_requests, harness.relay.stats().auth_ignored), (1, 1));
}

#[test]
fn a_non_send_request_is_forwarded_unanswered_and_its_response_routed_back() {
    let mut harness = Harness::new(RelayScript::default(), 2);
    let alice_grant = use_path(&harness.auth(0, &[])).to_string();
    let bob_grant = use_path(&harness.auth(1, &[])).to_string();
    let (alice, bob) = ("msrp://127.0.0.1:9/c0;tcp", "msrp://127.0.0.1:9/c1;tcp");
    let to = format!("{alice_grant} {bob_grant} {bob}");
    let headers = [("To-Path", to.as_str()), ("From-Path", alice), ("Use-Nickname", "\"Al\"")];
    harness.feed(0, &request("nick0001", "NICKNAME", &headers, None, '$'));
    assert!(harness.next(0).is_none(), "no hop-by-hop answer to a non-SEND request");
    let nickname = harness.next(1).expect("forwarded");
    let from = format!("{alice_grant} {alice}");
    assert_eq!(header(&nickname, "From-Path"), Some(from.as_str()));

    // Bob answers end to end along the From-Path he got.
    harness.feed(1, &response("nick0001", 200, &from, bob));
    let answer = harness.next(0).expect("the response, routed back");
    assert_eq!((answer.transaction_id.as_str(), answer.code()), ("nick0001", Some(200)));
    assert_eq!(header(&answer, "To-Path"), Some(alice));
    let back = format!("{bob_grant} {bob}");
    assert_eq!(header(&answer, "From-Path"), Some(back.as_str()));
    let stats = harness.relay.stats();
    assert_eq!((stats.forwarded_requests, stats.forwarded_responses, stats.hop_responses), (1, 1, 0));
}
