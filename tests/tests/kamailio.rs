//! Interop with Kamailio's MSRP relay (RFC 4976), over raw sockets: proves the harness
//! (`msrp_tests::kamailio`) and pins down how this third-party relay behaves.
//!
//! Opt-in: every test is ignored unless asked for, as Kamailio must be installed
//! (`apt-get install -y kamailio kamailio-tls-modules`). Run them with
//! `cargo test -p msrp-tests --test kamailio -- --ignored`; see `tests/kamailio/README.md`.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use msrp_tests::kamailio::{DEFAULT_EXPIRES, Kamailio, KamailioOptions, PASSWORD, REALM};

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
