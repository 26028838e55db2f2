//! Interop with Kamailio's MSRP relay (RFC 4976), over raw sockets: proves the harness
//! (`msrp_tests::kamailio`) and pins down how this third-party relay behaves.
//!
//! Opt-in: every test is ignored unless asked for, as Kamailio must be installed
//! (`apt-get install -y kamailio kamailio-tls-modules`). Run them with
//! `cargo test -p msrp-tests --test kamailio -- --ignored`; see `tests/kamailio/README.md`.

use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::Either;
use md5::{Digest, Md5};
use msrp_core::chunk::Method;
use msrp_core::header::{HeaderName, Headers};
use msrp_core::log::TrafficLogger;
use msrp_core::session::{Event, MessageOutcome, SessionError};
use msrp_core::{Chunk, Uri};
use msrp_smol::runtime::Runtime;
use msrp_smol::{
    AcceptTypes, AcceptorRelay, ConnectorRelay, Error, OutgoingFile, OutgoingMessage, RELAY_CHUNK_SIZE, RelayError,
    RelayEvent, RelaySettings, Session, Smol, TlsClient,
};
use msrp_tests::kamailio::{DEFAULT_EXPIRES, Kamailio, KamailioOptions, PASSWORD, REALM};
use msrp_tokio::Tokio;
use sha2::Sha256;

/// Longest a test waits for the relay to answer before it fails.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn start(options: KamailioOptions) -> Kamailio {
    Kamailio::start(options).unwrap_or_else(|error| panic!("{error}"))
}

/// One MSRP frame as received: first line, headers in order, body.
#[derive(Debug)]
struct Frame {
    transaction: String,
    /// The method of a request, the status code of a response.
    kind: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Frame {
    fn parse(text: &str) -> Self {
        let (head, body) = text.split_once("\r\n\r\n").map_or((text, ""), |(head, rest)| (head, rest));
        let mut lines = head.lines();
        let first: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
        let headers = lines
            .take_while(|line| !line.starts_with("-------"))
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let body = body.rsplit_once("\r\n-------").map_or("", |(body, _)| body);
        Self {
            transaction: first.get(1).copied().unwrap_or_default().to_owned(),
            kind: first.get(2).copied().unwrap_or_default().to_owned(),
            headers,
            body: body.to_owned(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(found, _)| found == name).map(|(_, value)| value.as_str())
    }

    /// A header's value, or a failure naming the frame and the relay's log.
    fn expect(&self, name: &str, kamailio: &Kamailio) -> String {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} in {self:?}; kamailio's log:\n{}", kamailio.log()))
            .to_owned()
    }
}

/// A hand-written MSRP client on one connection to the relay (TCP or TLS).
struct RawClient<'k, S> {
    kamailio: &'k Kamailio,
    stream: S,
    /// Bytes read past the last whole frame.
    pending: Vec<u8>,
    /// This client's own URI: the last From-Path URI of everything it sends.
    uri: String,
    /// The relay's URI on this connection, as put in an AUTH's To-Path.
    relay: String,
    next_transaction: u32,
}

impl<'k, S: Read + Write> RawClient<'k, S> {
    fn new(kamailio: &'k Kamailio, stream: S, name: &str, relay: String) -> Self {
        Self {
            kamailio,
            stream,
            pending: Vec::new(),
            uri: format!("msrp://127.0.0.1:9/{name};tcp"),
            relay,
            next_transaction: 0,
        }
    }

    fn transaction(&mut self) -> String {
        self.next_transaction += 1;
        format!("t{}", self.next_transaction)
    }

    fn write(&mut self, frame: &str) {
        self.stream.write_all(frame.as_bytes()).unwrap_or_else(|error| panic!("write: {error}"));
        self.stream.flush().unwrap_or_else(|error| panic!("flush: {error}"));
    }

    /// Reads more bytes; `false` at the end of the stream.
    fn fill(&mut self) -> bool {
        let mut buffer = [0; 16 * 1024];
        match self.stream.read(&mut buffer) {
            Ok(0) => false,
            Ok(read) => {
                self.pending.extend_from_slice(&buffer[..read]);
                true
            }
            // A reset, or (TLS) a close without close_notify: the relay is gone all the same.
            Err(error) if matches!(error.kind(), ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof) => false,
            Err(error) => panic!("{} read: {error}; kamailio's log:\n{}", self.uri, self.kamailio.log()),
        }
    }

    /// The next whole frame; fails when the relay closes the connection or says nothing in time.
    fn read_frame(&mut self) -> Frame {
        loop {
            if let Some(end) = self.frame_end() {
                let frame: Vec<u8> = self.pending.drain(..end).collect();
                return Frame::parse(&String::from_utf8_lossy(&frame));
            }
            assert!(self.fill(), "{} was closed by the relay; kamailio's log:\n{}", self.uri, self.kamailio.log());
        }
    }

    /// Where the first buffered frame ends, if it is all here: after `-------<transaction><flag>\r\n`.
    fn frame_end(&self) -> Option<usize> {
        let text = String::from_utf8_lossy(&self.pending);
        let transaction = text.strip_prefix("MSRP ")?.split(' ').next()?;
        let end_line = format!("\r\n-------{transaction}");
        let start = text.find(&end_line)? + end_line.len();
        let rest = text.get(start..)?;
        (rest.len() >= 3 && rest[1..].starts_with("\r\n")).then_some(start + 3)
    }

    /// Reads until the relay closes this connection; fails if it does not within the read timeout.
    fn expect_end_of_stream(&mut self) {
        while self.fill() {}
    }

    /// Sends AUTH with `extra` headers after the paths and returns the relay's answer.
    fn auth(&mut self, extra: &str) -> Frame {
        let transaction = self.transaction();
        let frame = format!(
            "MSRP {transaction} AUTH\r\nTo-Path: {}\r\nFrom-Path: {}\r\n{extra}-------{transaction}$\r\n",
            self.relay, self.uri
        );
        self.write(&frame);
        let answer = self.read_frame();
        assert_eq!(answer.transaction, transaction, "{answer:?}");
        answer
    }

    /// AUTH without credentials, expecting a grant; returns the Use-Path.
    fn auth_granted(&mut self) -> String {
        let answer = self.auth("");
        assert_eq!(answer.kind, "200", "{answer:?}; kamailio's log:\n{}", self.kamailio.log());
        answer.expect("Use-Path", self.kamailio)
    }

    /// AUTH, the 401 challenge, then Authorization (with `uri=` when `with_uri`); returns the final answer.
    fn auth_digest(&mut self, with_uri: bool, extra: &str) -> Frame {
        let challenge = self.auth("");
        assert_eq!(challenge.kind, "401", "{challenge:?}; kamailio's log:\n{}", self.kamailio.log());
        let authenticate = challenge.expect("WWW-Authenticate", self.kamailio);
        let authorization = authorization(&authenticate, &self.relay, with_uri);
        self.auth(&format!("Authorization: {authorization}\r\n{extra}"))
    }

    /// Sends a one-chunk text message along `to_path` and returns the relay's answer to it.
    fn send_text(&mut self, to_path: &str, text: &str) -> Frame {
        let transaction = self.transaction();
        let frame = format!(
            "MSRP {transaction} SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {}\r\nMessage-ID: m-{transaction}\r\n\
             Byte-Range: 1-{len}/{len}\r\nContent-Type: text/plain\r\n\r\n{text}\r\n-------{transaction}$\r\n",
            self.uri,
            len = text.len()
        );
        self.write(&frame);
        let answer = self.read_frame();
        assert_eq!(answer.transaction, transaction, "{answer:?}");
        answer
    }
}

fn tcp_client<'k>(kamailio: &'k Kamailio, name: &str) -> RawClient<'k, TcpStream> {
    let stream = TcpStream::connect(kamailio.tcp_addr()).expect("connect to kamailio over TCP");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
    RawClient::new(kamailio, stream, name, kamailio.tcp_uri())
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client that trusts only the relay's own certificate and checks it names 127.0.0.1.
fn tls_client<'k>(kamailio: &'k Kamailio, name: &str) -> RawClient<'k, TlsStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(kamailio.cert_der().to_vec()))
        .expect("the relay's certificate as a trust anchor");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    let connection = rustls::ClientConnection::new(Arc::new(config), server_name).expect("TLS client");
    let address = kamailio.tls_addr().expect("kamailio started with TLS");
    let stream = TcpStream::connect(address).expect("connect to kamailio over TLS");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
    let uri = kamailio.tls_uri().expect("kamailio started with TLS");
    RawClient::new(kamailio, rustls::StreamOwned::new(connection, stream), name, uri)
}

fn md5_hex(text: &str) -> String {
    format!("{:x}", Md5::digest(text.as_bytes()))
}

/// A quoted or bare directive of a `WWW-Authenticate: Digest …` header.
fn directive<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    let body = header.strip_prefix("Digest ")?;
    body.split(", ").find_map(|part| {
        let value = part.strip_prefix(name)?.strip_prefix('=')?;
        Some(value.trim_matches('"'))
    })
}

/// The RFC 2617 answer (`qop=auth`) to a challenge, the digest-uri being the relay's URI.
fn authorization(www_authenticate: &str, relay: &str, with_uri: bool) -> String {
    let nonce = directive(www_authenticate, "nonce").expect("nonce in the challenge");
    assert_eq!(directive(www_authenticate, "realm"), Some(REALM));
    assert_eq!(directive(www_authenticate, "qop"), Some("auth"));
    let (user, nc, cnonce) = ("alice", "00000001", "0a4f113b");
    let ha1 = md5_hex(&format!("{user}:{REALM}:{PASSWORD}"));
    let ha2 = md5_hex(&format!("AUTH:{relay}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    let uri = if with_uri { format!(", uri=\"{relay}\"") } else { String::new() };
    let opaque = directive(www_authenticate, "opaque").map_or(String::new(), |opaque| format!(", opaque=\"{opaque}\""));
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\"{uri}, response=\"{response}\", \
         qop=auth, nc={nc}, cnonce=\"{cnonce}\"{opaque}"
    )
}

/// A sends one text to B through the relay; B gets it with the relay's hops prepended to the From-Path.
fn a_reaches_b<A: Read + Write, B: Read + Write>(
    a: &mut RawClient<'_, A>,
    a_use_path: &str,
    b: &mut RawClient<'_, B>,
    b_use_path: &str,
) {
    let kamailio = a.kamailio;
    let to_path = format!("{a_use_path} {b_use_path} {}", b.uri);
    let answer = a.send_text(&to_path, "hello through kamailio");
    assert_eq!(answer.kind, "200", "{answer:?}; kamailio's log:\n{}", kamailio.log());
    // The relay answers the hop itself, from the first To-Path URI back to A.
    assert_eq!(answer.header("To-Path"), Some(a.uri.as_str()));
    assert_eq!(answer.header("From-Path"), Some(a_use_path));

    let received = b.read_frame();
    assert_eq!(received.kind, "SEND", "{received:?}");
    assert_eq!(received.header("To-Path"), Some(b.uri.as_str()));
    // Each URI the relay took off the To-Path went onto the From-Path (A and B share this relay,
    // which forwards to itself), so B's reversed path back to A is complete.
    assert_eq!(received.header("From-Path"), Some(format!("{b_use_path} {a_use_path} {}", a.uri).as_str()));
    assert_eq!(received.header("Byte-Range"), Some("1-22/22"));
    assert_eq!(received.body, "hello through kamailio");
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn auth_without_credentials_is_granted_a_use_path_and_the_default_expiry() {
    let kamailio = start(KamailioOptions::default());
    let mut client = tcp_client(&kamailio, "alice");
    let answer = client.auth("");
    assert_eq!(answer.kind, "200", "{answer:?}; kamailio's log:\n{}", kamailio.log());
    // Paths first and swapped, as in any response.
    assert_eq!(answer.headers[0], ("To-Path".to_owned(), client.uri.clone()));
    assert_eq!(answer.headers[1], ("From-Path".to_owned(), kamailio.tcp_uri()));
    let use_path = answer.expect("Use-Path", &kamailio);
    let prefix = format!("msrp://127.0.0.1:{}/", kamailio.tcp_addr().port());
    assert!(use_path.starts_with(&prefix) && use_path.ends_with(";tcp"), "{use_path}");
    assert_eq!(answer.header("Expires"), Some(DEFAULT_EXPIRES.to_string().as_str()));
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn digest_authorization_with_uri_is_granted() {
    let kamailio = start(KamailioOptions { auth: true, ..KamailioOptions::default() });
    let mut client = tcp_client(&kamailio, "alice");
    let answer = client.auth_digest(true, "");
    assert_eq!(answer.kind, "200", "{answer:?}; kamailio's log:\n{}", kamailio.log());
    assert!(answer.header("Use-Path").is_some(), "{answer:?}");
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn digest_authorization_without_uri_is_challenged_again() {
    let kamailio = start(KamailioOptions { auth: true, ..KamailioOptions::default() });
    let mut client = tcp_client(&kamailio, "alice");
    let answer = client.auth_digest(false, "");
    assert_eq!(answer.kind, "401", "{answer:?}; kamailio's log:\n{}", kamailio.log());
    assert!(answer.header("WWW-Authenticate").is_some(), "{answer:?}");
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn expires_beside_authorization_gets_423_without_bounds() {
    let kamailio = start(KamailioOptions { auth: true, expires: Some(60), ..KamailioOptions::default() });
    let mut client = tcp_client(&kamailio, "alice");
    // Any value, even the one the relay grants: the module reads it from the wrong header (the
    // Authorization's, as 0), and builds Min-Expires but leaves it out of the 423.
    let answer = client.auth_digest(true, "Expires: 60\r\n");
    assert_eq!(answer.kind, "423", "{answer:?}; kamailio's log:\n{}", kamailio.log());
    assert_eq!(answer.header("Min-Expires"), None, "{answer:?}");
    assert_eq!(answer.header("Max-Expires"), None, "{answer:?}");
    // Without Expires the same connection is granted at once.
    let answer = client.auth_digest(true, "");
    assert_eq!(answer.kind, "200", "{answer:?}; kamailio's log:\n{}", kamailio.log());
    assert_eq!(answer.header("Expires"), Some("60"));
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn expires_without_authorization_is_ignored_for_the_configured_grant() {
    let kamailio = start(KamailioOptions { expires: Some(60), ..KamailioOptions::default() });
    let mut client = tcp_client(&kamailio, "alice");
    let answer = client.auth("Expires: 3000\r\n");
    assert_eq!(answer.kind, "200", "{answer:?}; kamailio's log:\n{}", kamailio.log());
    assert_eq!(answer.header("Expires"), Some("60"));
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn second_auth_on_one_connection_gets_a_new_use_path_and_the_old_one_still_delivers() {
    let kamailio = start(KamailioOptions { expires: Some(60), ..KamailioOptions::default() });
    let mut a = tcp_client(&kamailio, "alice");
    let mut b = tcp_client(&kamailio, "bob");
    let first = a.auth("");
    let second = a.auth("");
    assert_eq!((first.header("Expires"), second.header("Expires")), (Some("60"), Some("60")));
    let (first, second) = (first.expect("Use-Path", &kamailio), second.expect("Use-Path", &kamailio));
    assert_ne!(first, second, "a refresh is a new grant with a new session");
    let b_use_path = b.auth_granted();
    // Until it expires the old grant routes to the same connection as the new one.
    a_reaches_b(&mut b, &b_use_path, &mut a, &first);
    a_reaches_b(&mut b, &b_use_path, &mut a, &second);
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn send_from_a_reaches_b_through_the_relay_over_tcp() {
    let kamailio = start(KamailioOptions::default());
    let mut a = tcp_client(&kamailio, "alice");
    let mut b = tcp_client(&kamailio, "bob");
    let (a_use_path, b_use_path) = (a.auth_granted(), b.auth_granted());
    a_reaches_b(&mut a, &a_use_path, &mut b, &b_use_path);
    a_reaches_b(&mut b, &b_use_path, &mut a, &a_use_path);
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn send_from_a_reaches_b_through_the_relay_over_tls_with_digest() {
    let kamailio = start(KamailioOptions { tls: true, auth: true, ..KamailioOptions::default() });
    let mut a = tls_client(&kamailio, "alice");
    let mut b = tls_client(&kamailio, "bob");
    let mut use_paths = Vec::new();
    for client in [&mut a, &mut b] {
        let answer = client.auth_digest(true, "");
        assert_eq!(answer.kind, "200", "{answer:?}; kamailio's log:\n{}", kamailio.log());
        let use_path = answer.expect("Use-Path", &kamailio);
        let prefix = format!("msrps://127.0.0.1:{}/", kamailio.tls_addr().expect("TLS").port());
        assert!(use_path.starts_with(&prefix), "{use_path}");
        use_paths.push(use_path);
    }
    a_reaches_b(&mut a, &use_paths[0], &mut b, &use_paths[1]);
    a_reaches_b(&mut b, &use_paths[1], &mut a, &use_paths[0]);
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn tcp_and_tls_clients_reach_each_other_through_one_relay() {
    let kamailio = start(KamailioOptions { tls: true, ..KamailioOptions::default() });
    let mut a = tcp_client(&kamailio, "alice");
    let mut b = tls_client(&kamailio, "bob");
    let (a_use_path, b_use_path) = (a.auth_granted(), b.auth_granted());
    a_reaches_b(&mut a, &a_use_path, &mut b, &b_use_path);
    a_reaches_b(&mut b, &b_use_path, &mut a, &a_use_path);
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn dropped_client_reads_the_end_of_stream_and_its_path_gets_481() {
    let kamailio = start(KamailioOptions::default());
    let mut a = tcp_client(&kamailio, "alice");
    let mut b = tcp_client(&kamailio, "bob");
    let (a_use_path, b_use_path) = (a.auth_granted(), b.auth_granted());

    kamailio.drop_client(&b.uri).unwrap_or_else(|error| panic!("{error}; kamailio's log:\n{}", kamailio.log()));
    b.expect_end_of_stream();
    assert!(kamailio.drop_client(&b.uri).is_err(), "a client is dropped once");
    assert!(kamailio.drop_client("msrp://127.0.0.1:9/nobody;tcp").is_err());

    // The relay's hop that holds B's grant finds B's connection gone: 481.
    let answer = a.send_text(&format!("{b_use_path} {}", b.uri), "anyone there?");
    assert_eq!(answer.kind, "481", "{answer:?}; kamailio's log:\n{}", kamailio.log());
    // Along the full path the first hop (A's grant) answers 200 before forwarding, and the 481 of
    // the next hop is lost: the relay tries to send it to A's URI, not over A's connection.
    let answer = a.send_text(&format!("{a_use_path} {b_use_path} {}", b.uri), "anyone there?");
    assert_eq!(answer.kind, "200", "{answer:?}; kamailio's log:\n{}", kamailio.log());
}

// Our relay client (the adapters' ConnectorRelay, AcceptorRelay, get_connector and
// get_acceptor) against Kamailio: A and B through one relay, as an application uses them.

/// Longest one step of an adapter scenario (a login, a message, a REPORT) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a file of several MB may take through the relay (debug builds included).
const FILE_TIMEOUT: Duration = Duration::from_secs(90);
/// Kamailio's largest frame (headers included); a larger one gets 501.
const KAMAILIO_MAX_FRAME: usize = 11238;
/// The user names; Kamailio takes any with [`PASSWORD`].
const ALICE: &str = "alice";
const BOB: &str = "bob";

/// Runs a scenario on the test thread with a tokio runtime entered, so that tokio's side
/// can spawn; smol and threads need nothing.
fn run<F: Future>(scenario: F) -> F::Output {
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let _context = tokio.enter();
    futures::executor::block_on(scenario)
}

/// The end of Kamailio's log, for failure messages (a transfer logs thousands of lines).
fn log_tail(kamailio: &Kamailio) -> String {
    let log = kamailio.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `future`, or a failure naming `what` once `limit` has passed (on any runtime: smol's
/// timer has a thread of its own when no smol executor drives it).
async fn within<T>(kamailio: &Kamailio, what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    let future = std::pin::pin!(future);
    match futures::future::select(future, smol::Timer::after(limit)).await {
        Either::Left((value, _)) => value,
        Either::Right(_) => panic!("{what}: not done after {limit:?}; end of kamailio's log:\n{}", log_tail(kamailio)),
    }
}

/// Runs blocking `work` on a thread of its own and fails naming `what` if it takes
/// longer than `limit` (the thread is left behind then).
fn blocking_within<T: Send + 'static>(
    kamailio: &Kamailio,
    what: &str,
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
    });
    match result.recv_timeout(limit) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(error) => {
            panic!("{what}: not done after {limit:?} ({error}); end of kamailio's log:\n{}", log_tail(kamailio))
        }
    }
}

/// Settings for Kamailio over TCP, or over TLS trusting its certificate (`tls`).
fn settings(kamailio: &Kamailio, tls: Tls, user: &str, password: &str) -> RelaySettings {
    let uri = match tls {
        Tls::No => kamailio.tcp_uri(),
        Tls::Ca | Tls::Fingerprint => kamailio.tls_uri().expect("kamailio started with TLS"),
    };
    let mut settings = RelaySettings::at(&uri.parse().expect("the relay's URI"), user, password);
    settings.tls = match tls {
        Tls::No => None,
        Tls::Ca => Some(TlsClient::with_ca_pem(kamailio.cert_pem().as_bytes()).expect("the relay's certificate")),
        Tls::Fingerprint => Some(
            TlsClient::with_fingerprint(msrp_smol::tls::fingerprint(kamailio.cert_der())).expect("the fingerprint"),
        ),
    };
    assert_eq!(settings.use_tls, tls != Tls::No);
    settings
}

/// How a side reaches the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    /// Plain TCP.
    No,
    /// TLS, trusting the relay's certificate as a CA.
    Ca,
    /// TLS, pinning the relay's certificate by its SHA-256 fingerprint.
    Fingerprint,
}

/// Two bound sessions through one Kamailio, with each side's full path (as SDP carries it).
struct Pair<A: Runtime, B: Runtime> {
    alice: Session<A>,
    bob: Session<B>,
    alice_path: Vec<Uri>,
    bob_path: Vec<Uri>,
    /// When each side's first grant began (its `prepare` returned).
    alice_granted: Instant,
    bob_granted: Instant,
}

/// Alice (active, [`ConnectorRelay`] on `a`) and Bob (passive, [`AcceptorRelay`] on `b`)
/// log in to Kamailio one after the other (a burst of AUTHs may lose one), exchange paths
/// and bind. `alice_logger` sees Alice's traffic.
async fn pair<A: Runtime, B: Runtime>(
    kamailio: &Kamailio,
    (a, alice_settings): (A, RelaySettings),
    (b, bob_settings): (B, RelaySettings),
    alice_logger: Option<Box<dyn TrafficLogger>>,
) -> Pair<A, B> {
    let mut acceptor = AcceptorRelay::new(b, bob_settings, None, false);
    let bob_path = within(kamailio, "Bob's login", STEP_TIMEOUT, acceptor.prepare(None))
        .await
        .unwrap_or_else(|error| panic!("Bob's login: {error}; end of kamailio's log:\n{}", log_tail(kamailio)));
    let bob_granted = Instant::now();
    let mut connector = ConnectorRelay::new(a, alice_settings, alice_logger, false);
    let alice_path = within(kamailio, "Alice's login", STEP_TIMEOUT, connector.prepare(None))
        .await
        .unwrap_or_else(|error| panic!("Alice's login: {error}; end of kamailio's log:\n{}", log_tail(kamailio)));
    let alice_granted = Instant::now();
    // Each full path is Kamailio's Use-Path (on the connection's scheme), then the side's URI.
    for path in [&alice_path, &bob_path] {
        assert_eq!(path.len(), 2, "{path:?}");
        assert_eq!(path[0].host, "127.0.0.1", "{path:?}");
        assert!(path[0].session_id.is_some(), "Kamailio's Use-Path names a session: {path:?}");
    }
    let binding = futures::future::join(connector.complete(bob_path.clone()), acceptor.complete(alice_path.clone()));
    let (outbound, inbound) = within(kamailio, "binding through the relay", STEP_TIMEOUT, binding).await;
    let fail = |side: &str, error: Error| -> ! {
        panic!("{side} did not bind: {error}; end of kamailio's log:\n{}", log_tail(kamailio))
    };
    let outbound = outbound.unwrap_or_else(|error| fail("Alice", error));
    let inbound = inbound.unwrap_or_else(|error| fail("Bob", error));
    Pair {
        alice: Session::new(outbound, AcceptTypes::any(), None),
        bob: Session::new(inbound, AcceptTypes::any(), None),
        alice_path,
        bob_path,
        alice_granted,
        bob_granted,
    }
}

/// `from` sends `text`; `to` receives it, and `from` learns it was delivered (the relay's
/// own 200: Kamailio answers hop by hop).
async fn text<F: Runtime, T: Runtime>(kamailio: &Kamailio, from: &Session<F>, to: &Session<T>, text: &'static str) {
    let message = within(kamailio, "sending a text", STEP_TIMEOUT, from.send_message("text/plain", Bytes::from(text)))
        .await
        .expect("the session takes a text");
    let chunk = within(kamailio, "receiving a text", STEP_TIMEOUT, to.receive_chunk())
        .await
        .unwrap_or_else(|error| panic!("no text: {error}; end of kamailio's log:\n{}", log_tail(kamailio)));
    assert_eq!(&chunk.data[..], text.as_bytes());
    assert_eq!(chunk.content_type(), Some("text/plain"));
    assert_eq!(within(kamailio, "a text's outcome", STEP_TIMEOUT, message.outcome()).await, MessageOutcome::Delivered);
}

/// `size` bytes that do not repeat (xorshift), so that a misplaced chunk changes the hash.
fn file_data(size: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

/// What went through a file transfer.
#[derive(Debug)]
struct FileTransfer {
    /// The success REPORTs Alice got for the file.
    reports: usize,
}

/// Alice sends a file of `size` bytes with `send_file` and `Success-Report: yes`; Bob gets
/// it whole (SHA-256), and the success REPORTs come back through the relay to Alice until
/// they cover the file. Alice's events are read while Bob receives, as an application does.
async fn file<A: Runtime, B: Runtime>(
    kamailio: &Kamailio,
    alice: &Session<A>,
    bob: &Session<B>,
    size: usize,
) -> FileTransfer {
    let data = file_data(size);
    let mut headers = Headers::new();
    headers.set(HeaderName::SuccessReport, "yes");
    let outgoing = OutgoingFile {
        reader: Box::new(futures::io::Cursor::new(data.clone())),
        file: msrp_core::session::OutgoingFile {
            size: size as u64,
            content_type: Some("application/octet-stream".into()),
            position: 0,
            message_id: None,
            headers,
        },
    };
    let message = within(kamailio, "starting a file", STEP_TIMEOUT, alice.send_file(outgoing))
        .await
        .expect("the session takes a file");
    let (id, message_id) = (message.id, message.message_id.clone());

    let receiving = async {
        let mut received = vec![0_u8; size];
        let mut count = 0;
        while count < size {
            let chunk = bob.receive_chunk().await.unwrap_or_else(|error| {
                panic!(
                    "Bob's session ended after {count} bytes: {error}; end of kamailio's log:\n{}",
                    log_tail(kamailio)
                )
            });
            assert_eq!(chunk.message_id(), Some(message_id.as_str()), "{chunk:?}");
            let range = chunk.byte_range().expect("a Byte-Range");
            let start = usize::try_from(range.start - 1).expect("a position in memory");
            received[start..start + chunk.data.len()].copy_from_slice(&chunk.data);
            count += chunk.data.len();
        }
        received
    };
    let reporting = async {
        let (mut reports, mut covered) = (0, 0);
        while covered < size as u64 {
            match alice.next_event().await {
                Some(Event::Report { message: Some(reported), report }) if reported == id => {
                    assert_eq!(report.status().map(|status| status.code), Some(200), "{report:?}");
                    assert_eq!(report.message_id(), Some(message_id.as_str()));
                    covered = covered.max(report.byte_range().and_then(|range| range.end).unwrap_or(0));
                    reports += 1;
                }
                Some(Event::Closed { reason }) => panic!("Alice's session ended before the REPORTs did: {reason:?}"),
                None => panic!("Alice's session ended before the REPORTs did"),
                Some(_) => {}
            }
        }
        reports
    };
    let (received, reports) =
        within(kamailio, "the file and its REPORTs", FILE_TIMEOUT, futures::future::join(receiving, reporting)).await;
    assert!(Sha256::digest(&received) == Sha256::digest(&data), "the file arrived changed");
    assert_eq!(
        within(kamailio, "the file's outcome", STEP_TIMEOUT, message.outcome()).await,
        MessageOutcome::Delivered
    );
    FileTransfer { reports }
}

/// The frames a session wrote: the largest (whole frame and body) and how many SENDs.
#[derive(Debug, Default)]
struct Frames {
    current_frame: usize,
    current_body: usize,
    largest_frame: usize,
    largest_body: usize,
    sends: usize,
}

/// A traffic logger that measures every frame written.
struct FrameMeter(Arc<Mutex<Frames>>);

fn frames(meter: &Mutex<Frames>) -> MutexGuard<'_, Frames> {
    meter.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FrameMeter {
    fn frames(&self) -> MutexGuard<'_, Frames> {
        frames(&self.0)
    }
}

impl TrafficLogger for FrameMeter {
    fn sent_new_chunk(&mut self, data: &[u8], _: &msrp_core::Transport, chunk: &Chunk) {
        let mut frames = self.frames();
        frames.current_frame = data.len();
        frames.current_body = 0;
        if chunk.method() == Some(&Method::Send) {
            frames.sends += 1;
        }
    }

    fn sent_chunk_data(&mut self, data: &[u8], _: &msrp_core::Transport, _: &str) {
        let mut frames = self.frames();
        frames.current_frame += data.len();
        frames.current_body += data.len();
    }

    fn sent_chunk_end(&mut self, data: &[u8], _: &msrp_core::Transport, _: &str) {
        let mut frames = self.frames();
        frames.current_frame += data.len();
        frames.largest_frame = frames.largest_frame.max(frames.current_frame);
        frames.largest_body = frames.largest_body.max(frames.current_body);
    }
}

/// Every frame fitted Kamailio. One over its cap of 11238 bytes is answered 501 and
/// leaves `bad parameters` in its log instead of an `MSRP frame` line (its script cannot
/// read the frame's fields; a response is logged as `MSRP frame [<null>]`); one over its
/// read buffer (16 KiB) makes it drop the connection with `buffer overrun`.
fn assert_kamailio_took_every_frame(kamailio: &Kamailio) {
    let log = kamailio.log();
    assert!(
        !log.contains("bad parameters") && !log.contains("buffer overrun"),
        "kamailio could not take a frame; end of its log:\n{}",
        log_tail(kamailio)
    );
}

/// Scenario 1 (TCP, no auth): text both ways, then a 5 MB file with success REPORTs.
async fn text_and_a_5_mb_file_over_tcp<A: Runtime, B: Runtime>(a: A, b: B) {
    let kamailio = start(KamailioOptions::default());
    let meter = Arc::new(Mutex::new(Frames::default()));
    let pair = pair(
        &kamailio,
        (a, settings(&kamailio, Tls::No, ALICE, "")),
        (b, settings(&kamailio, Tls::No, BOB, "")),
        Some(Box::new(FrameMeter(Arc::clone(&meter)))),
    )
    .await;
    text(&kamailio, &pair.alice, &pair.bob, "Hello Bob, through Kamailio").await;
    text(&kamailio, &pair.bob, &pair.alice, "Hello Alice, through Kamailio").await;
    let size = 5 * 1024 * 1024;
    let transfer = file(&kamailio, &pair.alice, &pair.bob, size).await;
    assert!(transfer.reports >= 1);
    {
        let frames = frames(&meter);
        assert!(frames.largest_body <= RELAY_CHUNK_SIZE, "{frames:?}");
        assert!(frames.largest_frame <= KAMAILIO_MAX_FRAME, "{frames:?}");
        assert!(frames.sends >= size / RELAY_CHUNK_SIZE, "the file went in chunks of the relay's size: {frames:?}");
    }
    assert_kamailio_took_every_frame(&kamailio);
    pair.alice.shutdown(true).await;
    pair.bob.shutdown(true).await;
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn adapters_tcp_text_both_ways_and_a_5_mb_file_with_success_reports_on_tokio() {
    run(text_and_a_5_mb_file_over_tcp(Tokio, Tokio));
}

/// Scenario 2 (TCP, digest): text both ways and a 1 MB file with credentials; a wrong
/// password is told as wrong credentials.
async fn digest_over_tcp<A: Runtime, B: Runtime>(a: A, b: B) {
    let kamailio = start(KamailioOptions { auth: true, ..KamailioOptions::default() });
    let pair = pair(
        &kamailio,
        (a.clone(), settings(&kamailio, Tls::No, ALICE, PASSWORD)),
        (b, settings(&kamailio, Tls::No, BOB, PASSWORD)),
        None,
    )
    .await;
    text(&kamailio, &pair.alice, &pair.bob, "Hello Bob, with digest").await;
    text(&kamailio, &pair.bob, &pair.alice, "Hello Alice, with digest").await;
    file(&kamailio, &pair.alice, &pair.bob, 1024 * 1024).await;
    assert_kamailio_took_every_frame(&kamailio);

    let mut intruder = ConnectorRelay::new(a, settings(&kamailio, Tls::No, "mallory", "guess"), None, false);
    let error = within(&kamailio, "a login with a wrong password", STEP_TIMEOUT, intruder.prepare(None))
        .await
        .expect_err("Kamailio let a wrong password in");
    assert!(matches!(error, Error::Relay(RelayError::WrongCredentials { .. })), "{error:?}");
    pair.alice.shutdown(true).await;
    pair.bob.shutdown(true).await;
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn adapters_tcp_digest_text_file_and_wrong_password_on_smol() {
    run(digest_over_tcp(Smol, Smol));
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn adapters_tcp_digest_text_file_and_wrong_password_from_tokio_to_smol() {
    run(digest_over_tcp(Tokio, Smol));
}

/// Scenario 3 (TLS, digest): Alice trusts the relay's certificate as a CA, Bob pins its
/// fingerprint; text both ways and a 2 MB file.
async fn digest_over_tls<A: Runtime, B: Runtime>(a: A, b: B) {
    let kamailio = start(KamailioOptions { tls: true, auth: true, ..KamailioOptions::default() });
    let pair = pair(
        &kamailio,
        (a, settings(&kamailio, Tls::Ca, ALICE, PASSWORD)),
        (b, settings(&kamailio, Tls::Fingerprint, BOB, PASSWORD)),
        None,
    )
    .await;
    let tls_port = kamailio.tls_addr().expect("TLS").port();
    for path in [&pair.alice_path, &pair.bob_path] {
        assert!(path[0].use_tls && path[0].port == Some(tls_port), "a Use-Path on the TLS listener: {path:?}");
    }
    text(&kamailio, &pair.alice, &pair.bob, "Hello Bob, over TLS").await;
    text(&kamailio, &pair.bob, &pair.alice, "Hello Alice, over TLS").await;
    file(&kamailio, &pair.alice, &pair.bob, 2 * 1024 * 1024).await;
    assert_kamailio_took_every_frame(&kamailio);
    pair.alice.shutdown(true).await;
    pair.bob.shutdown(true).await;
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn adapters_tls_digest_text_both_ways_and_a_file_on_tokio() {
    run(digest_over_tls(Tokio, Tokio));
}

/// What one side of the refresh scenario saw; times in seconds since the first grant.
#[derive(Debug, Default)]
struct Timeline {
    /// Messages sent: number and time.
    sent: Vec<(u32, f64)>,
    /// The peer's messages received: number and time.
    received: Vec<(u32, f64)>,
    /// Refreshes: time, whether the Use-Path changed, the new Use-Path.
    refreshes: Vec<(f64, bool, Vec<Uri>)>,
    failures: Vec<RelayError>,
    /// The messages sent, for their outcomes.
    messages: Vec<OutgoingMessage>,
    /// How the session ended, when it did before the scenario.
    ended: Option<String>,
}

fn seconds_since(origin: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(origin).as_secs_f64()
}

/// Sends `"{name} #n"` at `start + n s` for n in 1..=ticks, and meanwhile reads every
/// event, until half a second after the last message.
async fn keep_talking<R: Runtime>(
    name: &str,
    session: &Session<R>,
    origin: Instant,
    start: Instant,
    ticks: u32,
) -> Timeline {
    let mut timeline = Timeline::default();
    let end = start + Duration::from_secs(u64::from(ticks)) + Duration::from_millis(500);
    let mut next = 1;
    while Instant::now() < end {
        let tick = if next <= ticks { start + Duration::from_secs(u64::from(next)) } else { end };
        let event = std::pin::pin!(session.next_event());
        match futures::future::select(event, smol::Timer::at(tick)).await {
            Either::Right(_) if next <= ticks => {
                let text = format!("{name} #{next}");
                let message =
                    session.send_message("text/plain", Bytes::from(text)).await.expect("the session takes a text");
                timeline.messages.push(message);
                timeline.sent.push((next, seconds_since(origin, Instant::now())));
                next += 1;
            }
            Either::Right(_) => {}
            Either::Left((Some(event), _)) => match event {
                Event::Incoming(chunk) => {
                    let body = String::from_utf8_lossy(&chunk.data);
                    let number = body.rsplit_once('#').and_then(|(_, number)| number.parse().ok());
                    timeline.received.push((number.expect("a numbered text"), seconds_since(origin, Instant::now())));
                }
                Event::Relay(RelayEvent::Refreshed { use_path, path_changed, .. }) => {
                    timeline.refreshes.push((seconds_since(origin, Instant::now()), path_changed, use_path));
                }
                Event::Relay(RelayEvent::Failed(error)) => timeline.failures.push(error),
                Event::Closed { reason } => {
                    timeline.ended = Some(format!("closed: {reason:?}"));
                    break;
                }
                _ => {}
            },
            Either::Left((None, _)) => {
                timeline.ended = Some("no more events".to_owned());
                break;
            }
        }
    }
    timeline
}

/// Scenario 4: a grant of 4 s, refreshed by both sides across more than two grant
/// periods while they send a text every second each way.
///
/// What must hold: every refresh is answered (digest included) before the grant it
/// renews runs out, Kamailio gives a new Use-Path each time (`path_changed`), no relay
/// failure, the sessions go on, and every text sent while the first grants live arrives.
/// What happens once the first grants are forgotten (each side still addresses the
/// other's first Use-Path, which then gets 481 inside the relay; the sender only sees
/// the first hop's 200) is printed, not asserted: see tests/kamailio/README.md.
#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn adapters_refresh_with_a_4_s_grant_keeps_the_session_on_tokio() {
    const GRANT: u32 = 4;
    const TICKS: u32 = 10;
    let kamailio = start(KamailioOptions { auth: true, expires: Some(GRANT), ..KamailioOptions::default() });
    run(async {
        let pair = Box::pin(pair(
            &kamailio,
            (Tokio, settings(&kamailio, Tls::No, ALICE, PASSWORD)),
            (Tokio, settings(&kamailio, Tls::No, BOB, PASSWORD)),
            None,
        ))
        .await;
        let origin = pair.bob_granted;
        let start = Instant::now();
        let (alice, bob) = futures::future::join(
            keep_talking("alice", &pair.alice, origin, start, TICKS),
            keep_talking("bob", &pair.bob, origin, start, TICKS),
        )
        .await;
        let alice_granted = seconds_since(origin, pair.alice_granted);
        let grant = f64::from(GRANT);
        eprintln!(
            "Refresh through Kamailio, grant {GRANT} s; times in s since Bob's first grant (Alice's: {alice_granted:.2})"
        );
        for (name, timeline) in [("alice", &alice), ("bob", &bob)] {
            eprintln!(
                "{name}: refreshes (time, path changed): {:?}",
                timeline.refreshes.iter().map(|(at, changed, _)| (format!("{at:.2}"), *changed)).collect::<Vec<_>>()
            );
            eprintln!(
                "{name}: sent {:?}",
                timeline.sent.iter().map(|(n, at)| format!("#{n}@{at:.2}")).collect::<Vec<_>>()
            );
            eprintln!(
                "{name}: received {:?}",
                timeline.received.iter().map(|(n, at)| format!("#{n}@{at:.2}")).collect::<Vec<_>>()
            );
            eprintln!("{name}: relay failures {:?}; closed {:?}", timeline.failures, timeline.ended);
        }

        for (name, timeline, granted) in [("Alice", &alice, alice_granted), ("Bob", &bob, 0.0)] {
            assert_eq!(timeline.ended, None, "{name}'s session ended");
            assert!(timeline.failures.is_empty(), "{name}'s relay client failed: {:?}", timeline.failures);
            assert!(
                timeline.refreshes.len() >= 3,
                "{name} refreshed {} times in {TICKS} s with a {GRANT} s grant",
                timeline.refreshes.len()
            );
            let mut grant_began = granted;
            let mut paths = vec![if name == "Alice" { pair.alice_path[0].clone() } else { pair.bob_path[0].clone() }];
            for (at, changed, use_path) in &timeline.refreshes {
                // min(3/4 E, E - 5 s) but not before E/2: 2 s into a 4 s grant.
                let into = at - grant_began;
                assert!(
                    into >= grant / 2.0 - 0.1 && into < grant,
                    "{name} refreshed {into:.2} s into a {GRANT} s grant"
                );
                assert!(*changed, "Kamailio gives a new Use-Path on every refresh ({name} at {at:.2})");
                assert_eq!(use_path.len(), 1, "{use_path:?}");
                assert!(!paths.contains(&use_path[0]), "{name} got a Use-Path again: {use_path:?}");
                paths.push(use_path[0].clone());
                grant_began = *at;
            }
        }
        // The texts sent while the first grants lived all arrived (a text to Bob travels on Bob's
        // first Use-Path, a text to Alice on hers).
        for (to, sender, receiver, granted) in [("Bob", &alice, &bob, 0.0), ("Alice", &bob, &alice, alice_granted)] {
            for (number, at) in sender.sent.iter().filter(|(_, at)| *at < granted + grant) {
                assert!(
                    receiver.received.iter().any(|(received, _)| received == number),
                    "{to} did not get #{number}, sent at {at:.2} s while the first grant lived; end of kamailio's log:\n{}",
                    log_tail(&kamailio)
                );
            }
        }
        let lost = |sender: &Timeline, receiver: &Timeline| -> Vec<u32> {
            sender.sent.iter().map(|(n, _)| *n).filter(|n| !receiver.received.iter().any(|(r, _)| r == n)).collect()
        };
        eprintln!("lost on their way to Bob: {:?}; to Alice: {:?}", lost(&alice, &bob), lost(&bob, &alice));
        for (name, timeline) in [("alice", alice), ("bob", bob)] {
            let mut outcomes = Vec::new();
            for message in timeline.messages {
                outcomes.push(within(&kamailio, "a text's outcome", STEP_TIMEOUT, message.outcome()).await);
            }
            // Kamailio answers each SEND at the first hop, so a text lost further on is "Delivered".
            eprintln!("{name}: outcomes of the texts sent {outcomes:?}");
        }
        // Each refresh is one AUTH answered 401 and one with the Authorization answered 200:
        // the `uri=` form Kamailio needs was learnt at login, where the RFC's form (without
        // `uri=`) was refused once per side.
        let refused_forms = kamailio.log().matches("Credentials are not filled properly").count();
        assert_eq!(
            refused_forms,
            2,
            "Authorizations without uri= besides one per login; end of kamailio's log:\n{}",
            log_tail(&kamailio)
        );
        pair.alice.shutdown(true).await;
        pair.bob.shutdown(true).await;
    });
}

/// Scenario 5: the relay closes Alice's connection, then Bob's: each session ends with
/// `ConnectionClosed` at once.
async fn relay_dropping_each_side<A: Runtime, B: Runtime>(a: A, b: B) {
    let kamailio = start(KamailioOptions::default());
    let pair =
        pair(&kamailio, (a, settings(&kamailio, Tls::No, ALICE, "")), (b, settings(&kamailio, Tls::No, BOB, "")), None)
            .await;
    text(&kamailio, &pair.alice, &pair.bob, "Hello before the drop").await;
    let alice_uri = pair.alice_path.last().expect("Alice's URI").to_string();
    kamailio.drop_client(&alice_uri).unwrap_or_else(|error| panic!("{error}"));
    let ended =
        within(&kamailio, "Alice's session ending after the drop", Duration::from_secs(3), pair.alice.receive_chunk())
            .await;
    assert!(matches!(ended, Err(Error::Session(SessionError::ConnectionClosed))), "{ended:?}");

    let bob_uri = pair.bob_path.last().expect("Bob's URI").to_string();
    kamailio.drop_client(&bob_uri).unwrap_or_else(|error| panic!("{error}"));
    let ended =
        within(&kamailio, "Bob's session ending after the drop", Duration::from_secs(3), pair.bob.receive_chunk())
            .await;
    assert!(matches!(ended, Err(Error::Session(SessionError::ConnectionClosed))), "{ended:?}");
}

#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn adapters_relay_dropping_a_client_ends_its_session_on_tokio() {
    run(relay_dropping_each_side(Tokio, Tokio));
}

/// Scenario 6: msrp-blocking's `get_acceptor(Some(relay))` and `get_connector(Some(relay))`
/// with digest: text both ways and a 1 MB file read from a `std::io::Read`.
#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn adapters_blocking_get_connector_and_get_acceptor_with_digest() {
    let kamailio = start(KamailioOptions { auth: true, ..KamailioOptions::default() });
    let alice_settings = settings(&kamailio, Tls::No, ALICE, PASSWORD);
    let bob_settings = settings(&kamailio, Tls::No, BOB, PASSWORD);
    blocking_within(&kamailio, "the blocking scenario", FILE_TIMEOUT, move || {
        let mut acceptor = msrp_blocking::get_acceptor(Some(bob_settings), None, false);
        assert!(acceptor.is_relay());
        let bob_path = acceptor.prepare(None).expect("Bob's login");
        let mut connector = msrp_blocking::get_connector(Some(alice_settings), None, false);
        assert!(connector.is_relay());
        let alice_path = connector.prepare(None).expect("Alice's login");
        let waiting = std::thread::spawn(move || acceptor.complete(alice_path).map(|transport| (transport, acceptor)));
        let outbound = connector.complete(bob_path).expect("Alice binds");
        let (inbound, _acceptor) = waiting.join().expect("Bob's thread").expect("Bob binds");
        let alice = msrp_blocking::Session::new(outbound, AcceptTypes::any(), None);
        let bob = msrp_blocking::Session::new(inbound, AcceptTypes::any(), None);

        for (from, to, text) in [(&alice, &bob, "Hello Bob, blocking"), (&bob, &alice, "Hello Alice, blocking")] {
            let message = from.send_message("text/plain", Bytes::from(text)).expect("the session takes a text");
            assert_eq!(&to.receive_chunk().expect("a text").data[..], text.as_bytes());
            assert_eq!(message.outcome(), MessageOutcome::Delivered);
        }

        let data = file_data(1024 * 1024);
        let file = msrp_blocking::OutgoingFile {
            reader: Box::new(std::io::Cursor::new(data.clone())),
            file: msrp_core::session::OutgoingFile {
                size: data.len() as u64,
                content_type: Some("application/octet-stream".into()),
                position: 0,
                message_id: None,
                headers: Headers::new(),
            },
        };
        let message = alice.send_file(file).expect("the session takes a file");
        let mut received = vec![0_u8; data.len()];
        let mut count = 0;
        while count < data.len() {
            let chunk = bob.receive_chunk().expect("the file's chunks");
            let start = usize::try_from(chunk.byte_range().expect("a Byte-Range").start - 1).expect("in memory");
            received[start..start + chunk.data.len()].copy_from_slice(&chunk.data);
            count += chunk.data.len();
        }
        assert!(Sha256::digest(&received) == Sha256::digest(&data), "the file arrived changed");
        assert_eq!(message.outcome(), MessageOutcome::Delivered);
        alice.shutdown(true);
        bob.shutdown(true);
    });
    assert_kamailio_took_every_frame(&kamailio);
}

/// The check of [`assert_kamailio_took_every_frame`] sees a frame over Kamailio's cap:
/// with chunks of 12000 bytes through the relay, the SEND gets 501.
#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn adapters_chunks_over_kamailios_frame_cap_get_501_on_tokio() {
    let kamailio = start(KamailioOptions::default());
    run(async {
        let mut alice_settings = settings(&kamailio, Tls::No, ALICE, "");
        alice_settings.max_chunk_size = 12_000;
        let bob_settings = settings(&kamailio, Tls::No, BOB, "");
        let pair = Box::pin(pair(&kamailio, (Tokio, alice_settings), (Tokio, bob_settings), None)).await;
        let message = pair
            .alice
            .send_message("application/octet-stream", Bytes::from(file_data(20_000)))
            .await
            .expect("a message");
        let outcome = within(&kamailio, "the outcome of a chunk too large", STEP_TIMEOUT, message.outcome()).await;
        assert!(
            matches!(&outcome, MessageOutcome::Failed(status) if status.code == 501),
            "{outcome:?}; end of kamailio's log:\n{}",
            log_tail(&kamailio)
        );
        let log = kamailio.log();
        assert!(log.contains("bad parameters"), "no trace of the 501 in kamailio's log:\n{log}");
    });
}

/// Asking for a grant length (`Expires`) with digest: Kamailio answers 423 without bounds
/// to any Expires beside an Authorization, and the client retries once without it.
#[test]
#[ignore = "needs Kamailio: see tests/kamailio/README.md"]
fn adapters_expires_asked_with_digest_gets_423_and_the_retry_without_it_is_granted_on_tokio() {
    let kamailio = start(KamailioOptions { auth: true, ..KamailioOptions::default() });
    run(async {
        let mut asking = settings(&kamailio, Tls::No, ALICE, PASSWORD);
        asking.expires = Some(600);
        let mut connector = ConnectorRelay::new(Tokio, asking, None, false);
        let path = within(&kamailio, "a login asking for 600 s", STEP_TIMEOUT, connector.prepare(None))
            .await
            .expect("granted after the 423");
        assert_eq!(path.len(), 2, "{path:?}");
    });
    let log = kamailio.log();
    assert!(log.matches("MSRP frame [AUTH]").count() >= 3, "401, 423, then 200: {}", log_tail(&kamailio));
}
