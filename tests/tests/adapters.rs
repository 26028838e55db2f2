//! One scenario suite over real sockets on 127.0.0.1, run on every adapter and across
//! them: tokio, smol and blocking threads (the `Threads` runtime behind msrp-blocking),
//! each as the connecting side and as the accepting side.

use std::time::Duration;

use bytes::Bytes;
use futures::io::Cursor;
use msrp_core::Uri;
use msrp_core::header::Headers;
use msrp_core::session::{MessageOutcome, SessionConfig, SessionError};
use msrp_smol::runtime::Runtime;
use msrp_smol::{AcceptTypes, AcceptorDirect, ConnectError, ConnectorDirect, Error, OutgoingFile, Session, TlsError};
use msrp_tests::scenario::{Smol, Threads, Tokio, raw_exchange};
use msrp_tests::{every_pair, pairs, runtimes};
use sha2::{Digest, Sha256};

/// Alice (active, on `a`) and Bob (passive, on `b`), bound, with optional settings.
async fn pair<A: Runtime, B: Runtime>(
    a: A,
    b: B,
    alice_config: Option<SessionConfig>,
    bob_config: Option<SessionConfig>,
) -> (Session<A>, Session<B>) {
    let mut acceptor = AcceptorDirect::new(b, None, false);
    if let Some(config) = bob_config {
        acceptor.set_config(config);
    }
    let bob_path = acceptor.prepare(Some("msrp://127.0.0.1:0/bob;tcp".parse().unwrap())).await.unwrap();
    let mut connector = ConnectorDirect::new(a, None, false);
    if let Some(config) = alice_config {
        connector.set_config(config);
    }
    let alice_path = connector.prepare(None);
    let (outbound, inbound) = futures::join!(connector.complete(bob_path), acceptor.complete(alice_path));
    (
        Session::new(outbound.unwrap(), AcceptTypes::any(), None),
        Session::new(inbound.unwrap(), AcceptTypes::any(), None),
    )
}

fn config() -> SessionConfig {
    SessionConfig::new(msrp_core::session::Role::Active, Vec::new(), Vec::new())
}

async fn messages_both_ways<A: Runtime, B: Runtime>(a: A, b: B) {
    let (alice, bob) = pair(a, b, None, None).await;
    let hello = alice.send_message("text/plain", Bytes::from_static(b"Hello world!")).await.unwrap();
    assert_eq!(&bob.receive_chunk().await.unwrap().data[..], b"Hello world!");
    assert_eq!(hello.outcome().await, MessageOutcome::Delivered);
    let reply = bob.send_message("text/plain", Bytes::from_static(b"Hello Alice")).await.unwrap();
    assert_eq!(&alice.receive_chunk().await.unwrap().data[..], b"Hello Alice");
    assert_eq!(reply.outcome().await, MessageOutcome::Delivered);
    alice.shutdown(true).await;
    assert!(bob.receive_chunk().await.is_err(), "Bob learns the session ended");
}

every_pair!(messages_both_ways);

/// A generated file, streamed from a reader, checked with SHA-256 at the far end.
async fn file_with_checksum<A: Runtime, B: Runtime>(a: A, b: B, size: usize) {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    file_from_reader(a, b, Box::new(Cursor::new(data.clone())), &data).await;
}

/// A reader that returns fewer bytes than asked, by a varying amount.
struct Ragged {
    data: Cursor<Vec<u8>>,
    reads: usize,
}

impl futures::io::AsyncRead for Ragged {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buffer: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        const SIZES: [usize; 4] = [1, 997, 4096, 65_537];
        self.reads += 1;
        let most = buffer.len().min(SIZES[self.reads % SIZES.len()]);
        std::pin::Pin::new(&mut self.data).poll_read(cx, &mut buffer[..most])
    }
}

async fn file_from_a_ragged_reader<A: Runtime, B: Runtime>(a: A, b: B) {
    let data: Vec<u8> = (0..3_000_000_usize).map(|i| (i * 13 % 241) as u8).collect();
    let reader = Ragged { data: Cursor::new(data.clone()), reads: 0 };
    file_from_reader(a, b, Box::new(reader), &data).await;
}

pairs!(file_from_a_ragged_reader:
    smol_threads => (Smol, Threads),
    threads_tokio => (Threads, Tokio),
);

async fn file_from_reader<A: Runtime, B: Runtime>(
    a: A,
    b: B,
    reader: Box<dyn futures::io::AsyncRead + Send + Unpin>,
    data: &[u8],
) {
    let (alice, bob) = pair(a, b, None, None).await;
    let size = data.len();
    let expected = Sha256::digest(data);
    let file = OutgoingFile {
        reader,
        file: msrp_core::session::OutgoingFile {
            size: size as u64,
            content_type: Some("application/octet-stream".into()),
            position: 0,
            message_id: None,
            headers: Headers::new(),
        },
    };
    let message = alice.send_file(file).await.unwrap();
    let mut hasher = Sha256::new();
    let mut received = 0;
    while received < size {
        let chunk = bob.receive_chunk().await.unwrap();
        hasher.update(&chunk.data);
        received += chunk.data.len();
    }
    assert_eq!(received, size);
    assert_eq!(hasher.finalize(), expected);
    assert_eq!(message.outcome().await, MessageOutcome::Delivered);
    alice.shutdown(true).await;
}

/// An empty file is a message too: it is sent, finished and delivered.
async fn empty_file<A: Runtime, B: Runtime>(a: A, b: B) {
    let (alice, bob) = pair(a, b, None, None).await;
    let file = OutgoingFile {
        reader: Box::new(Cursor::new(Vec::new())),
        file: msrp_core::session::OutgoingFile {
            size: 0,
            content_type: Some("application/octet-stream".into()),
            position: 0,
            message_id: None,
            headers: Headers::new(),
        },
    };
    let message = alice.send_file(file).await.unwrap();
    assert_eq!(message.outcome().await, MessageOutcome::Delivered);
    alice.shutdown(true).await;
    drop(bob);
}

pairs!(empty_file:
    tokio_threads => (Tokio, Threads),
    threads_smol => (Threads, Smol),
);

async fn file_256_mib<A: Runtime, B: Runtime>(a: A, b: B) {
    file_with_checksum(a, b, 256 << 20).await;
}

pairs!(file_256_mib:
    tokio_tokio => (Tokio, Tokio),
    smol_smol => (Smol, Smol),
    threads_threads => (Threads, Threads),
);

async fn file_8_mib<A: Runtime, B: Runtime>(a: A, b: B) {
    file_with_checksum(a, b, 8 << 20).await;
}

pairs!(file_8_mib:
    tokio_smol => (Tokio, Smol),
    smol_threads => (Smol, Threads),
    threads_tokio => (Threads, Tokio),
);

async fn chat_overtakes_a_file<A: Runtime, B: Runtime>(a: A, b: B) {
    // Bob reads nothing until both messages are queued, so when the chat message is queued
    // at most what the buffers between them hold has left: Alice's watermark, both kernel
    // socket buffers (a few MiB on loopback) and Bob's adapter queues (at most
    // EVENT_QUEUE + 4 reads of 512 KiB, 34 MiB). A file larger than all of that is still
    // flowing then, however slowly either side is scheduled (16 MiB was not, under load).
    const FILE: usize = 64 << 20;
    let (alice, bob) = pair(a, b, None, None).await;
    let file = alice.send_message("application/octet-stream", Bytes::from(vec![7_u8; FILE])).await.unwrap();
    let chat = alice.send_message("text/plain", Bytes::from_static(b"quick!")).await.unwrap();
    let mut file_bytes = 0;
    let mut file_bytes_before_chat = None;
    while file_bytes < FILE || file_bytes_before_chat.is_none() {
        let chunk = bob.receive_chunk().await.unwrap();
        if chunk.content_type() == Some("text/plain") {
            assert_eq!(&chunk.data[..], b"quick!");
            file_bytes_before_chat = Some(file_bytes);
        } else {
            file_bytes += chunk.data.len();
        }
    }
    // The bound here is "before the file ends"; the core's tests show the one-chunk bound.
    assert!(file_bytes_before_chat < Some(FILE), "the chat message waited for the whole file");
    assert_eq!(chat.outcome().await, MessageOutcome::Delivered);
    assert_eq!(file.outcome().await, MessageOutcome::Delivered);
}

pairs!(chat_overtakes_a_file:
    tokio_tokio => (Tokio, Tokio),
    smol_smol => (Smol, Smol),
    threads_threads => (Threads, Threads),
);

async fn abort_a_file<A: Runtime, B: Runtime>(a: A, b: B) {
    let (alice, bob) = pair(a, b, None, None).await;
    // A reader that never ends: the file only stops by being aborted.
    let file = OutgoingFile {
        reader: Box::new(futures::io::repeat(1)),
        file: msrp_core::session::OutgoingFile { size: 1 << 40, ..Default::default() },
    };
    let message = alice.send_file(file).await.unwrap();
    let first = bob.receive_chunk().await.unwrap();
    assert_eq!(first.message_id(), Some(message.message_id.as_str()));
    let id = message.id;
    if let Err(error) = alice.abort(id).await {
        panic!("abort failed: {error}; the message ended {:?}", message.outcome().await);
    }
    loop {
        let chunk = bob.receive_chunk().await.unwrap();
        if chunk.contflag == msrp_core::ContinuationFlag::Abort {
            break;
        }
    }
    assert_eq!(message.outcome().await, MessageOutcome::Aborted);
}

pairs!(abort_a_file:
    tokio_tokio => (Tokio, Tokio),
    smol_smol => (Smol, Smol),
    threads_threads => (Threads, Threads),
);

async fn peer_closing_mid_message<A: Runtime, B: Runtime>(a: A, b: B) {
    let (alice, bob) = pair(a, b, None, None).await;
    let big = alice.send_message("application/octet-stream", Bytes::from(vec![1_u8; 64 << 20])).await.unwrap();
    bob.receive_chunk().await.unwrap();
    drop(bob);
    match big.outcome().await {
        MessageOutcome::Failed(error) => assert_eq!(error.code, 408),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(alice.receive_chunk().await, Err(Error::Session(_))));
}

pairs!(peer_closing_mid_message:
    tokio_tokio => (Tokio, Tokio),
    smol_smol => (Smol, Smol),
    threads_threads => (Threads, Threads),
);

async fn bind_timeout<A: Runtime, B: Runtime>(_a: A, b: B) {
    let mut config = config();
    config.bind_timeout = Duration::from_millis(200);
    let mut acceptor = AcceptorDirect::new(b, None, false);
    acceptor.set_config(config);
    acceptor.prepare(Some("msrp://127.0.0.1:0/lonely;tcp".parse().unwrap())).await.unwrap();
    let nobody: Uri = "msrp://127.0.0.1:9/nobody;tcp".parse().unwrap();
    let result = acceptor.complete(vec![nobody]).await;
    assert!(matches!(result, Err(Error::Session(SessionError::BindTimeout))), "{:?}", result.err());
}

pairs!(bind_timeout:
    tokio => (Tokio, Tokio),
    smol => (Smol, Smol),
    threads => (Threads, Threads),
);

/// Issue 12 §4: a host name is resolved through the runtime (not on one of its
/// threads), for listening and for connecting; every address of the name is tried.
async fn connect_to_localhost<A: Runtime>(a: A) {
    let mut acceptor = AcceptorDirect::new(a.clone(), None, false);
    let bob_path = acceptor.prepare(Some("msrp://localhost:0/bob;tcp".parse().unwrap())).await.unwrap();
    assert_eq!(bob_path[0].host, "localhost");
    let mut connector = ConnectorDirect::new(a, None, false);
    let alice_path = connector.prepare(None);
    let (outbound, inbound) = futures::join!(connector.complete(bob_path), acceptor.complete(alice_path));
    let (alice, bob) = (
        Session::new(outbound.unwrap(), AcceptTypes::any(), None),
        Session::new(inbound.unwrap(), AcceptTypes::any(), None),
    );
    alice.send_message("text/plain", Bytes::from_static(b"by name")).await.unwrap();
    assert_eq!(&bob.receive_chunk().await.unwrap().data[..], b"by name");
    alice.shutdown(true).await;
}

runtimes!(connect_to_localhost);

/// A runtime that counts the names it was asked to resolve, and otherwise is `R`.
#[derive(Clone)]
struct CountingResolves<R> {
    inner: R,
    names: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl<R: Runtime> Runtime for CountingResolves<R> {
    fn spawn(&self, future: msrp_smol::BoxFuture<'static, ()>) {
        self.inner.spawn(future);
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> msrp_smol::BoxFuture<'static, ()> {
        self.inner.sleep_until(deadline)
    }

    fn resolve(
        &self,
        host: String,
        port: u16,
    ) -> msrp_smol::BoxFuture<'static, std::io::Result<Vec<std::net::SocketAddr>>> {
        self.names.lock().unwrap().push(host.clone());
        self.inner.resolve(host, port)
    }

    fn connect(
        &self,
        address: std::net::SocketAddr,
        timeout: Duration,
    ) -> msrp_smol::BoxFuture<'static, std::io::Result<msrp_smol::BoxStream>> {
        self.inner.connect(address, timeout)
    }

    fn listen(
        &self,
        address: std::net::SocketAddr,
    ) -> msrp_smol::BoxFuture<'static, std::io::Result<Box<dyn msrp_smol::Listener>>> {
        self.inner.listen(address)
    }
}

/// Issue 12 §4: names are resolved by the runtime (its resolver never blocks one of its
/// threads); IP addresses are used as they are.
async fn names_are_resolved_by_the_runtime<A: Runtime>(a: A) {
    let runtime = CountingResolves { inner: a, names: std::sync::Arc::default() };
    let mut acceptor = AcceptorDirect::new(runtime.clone(), None, false);
    let by_name = acceptor.prepare(Some("msrp://localhost:0/bob;tcp".parse().unwrap())).await.unwrap();
    let mut other = AcceptorDirect::new(runtime.clone(), None, false);
    other.prepare(Some("msrp://127.0.0.1:0/carol;tcp".parse().unwrap())).await.unwrap();
    let mut connector = ConnectorDirect::new(runtime.clone(), None, false);
    let alice_path = connector.prepare(None);
    let (outbound, inbound) = futures::join!(connector.complete(by_name), acceptor.complete(alice_path));
    assert!(outbound.is_ok() && inbound.is_ok());
    assert_eq!(*runtime.names.lock().unwrap(), ["localhost", "localhost"], "listen and connect, not 127.0.0.1");
}

runtimes!(names_are_resolved_by_the_runtime);

/// Alice's attempt to bind with `peer`, on `a`, with a connect timeout.
async fn connect<A: Runtime>(a: A, peer: &str, timeout: Duration) -> Error {
    let mut connector = ConnectorDirect::new(a, None, false);
    connector.set_connect_timeout(timeout);
    // Bob's certificate is never checked: no test here gets that far.
    connector.set_tls(msrp_smol::TlsClient::with_fingerprint([0; 32]).unwrap());
    connector.prepare(None);
    match connector.complete(vec![peer.parse().unwrap()]).await {
        Ok(_) => panic!("{peer}: connected"),
        Err(error) => error,
    }
}

/// Issue 12 §4: a failed connect is a `ConnectError` callers can match: refused (nothing
/// listens), no address (the name does not resolve), timed out (the connect timeout
/// bounds the TLS handshake too).
async fn connect_errors<A: Runtime>(a: A) {
    let port = {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        closed.local_addr().unwrap().port()
    };
    let refused = connect(a.clone(), &format!("msrp://127.0.0.1:{port}/bob;tcp"), Duration::from_secs(30)).await;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(refused, Error::Connect(ConnectError::Refused { address }));
    // RFC 2606: `.invalid` never resolves.
    let nowhere = connect(a.clone(), "msrp://nowhere.invalid:2855/bob;tcp", Duration::from_secs(30)).await;
    assert_eq!(nowhere, Error::Connect(ConnectError::NoAddress { host: "nowhere.invalid".to_owned() }));
    // A port that takes the connection but never speaks TLS: the handshake waits until
    // the connect timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let after = Duration::from_millis(200);
    let late = connect(a, &format!("msrps://127.0.0.1:{port}/bob;tcp"), after).await;
    let address = format!("127.0.0.1:{port}");
    assert_eq!(late, Error::Connect(ConnectError::TimedOut { address, after }));
    assert_eq!(late.to_string(), format!("connecting to 127.0.0.1:{port} took longer than 200 ms"));
    drop(silent);
}

runtimes!(connect_errors);

/// Issue 12 §4: a failure to listen is an error of its own, not a connect error.
async fn listen_errors<A: Runtime>(a: A) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut acceptor = AcceptorDirect::new(a, None, false);
    let result = acceptor.prepare(Some(format!("msrp://127.0.0.1:{port}/bob;tcp").parse().unwrap())).await;
    match result {
        Err(Error::Listen { address, kind, .. }) => {
            assert_eq!((address, kind), (format!("127.0.0.1:{port}"), std::io::ErrorKind::AddrInUse));
        }
        other => panic!("expected a listening error, got {other:?}"),
    }
}

runtimes!(listen_errors);

/// A peer that binds and then never answers: it reads everything and says nothing.
fn silent_peer() -> Vec<Uri> {
    peer_after_binding(true)
}

/// A peer that binds and then stops reading: what is sent to it fills the socket
/// buffers, and writes to it block.
fn stalled_peer() -> Vec<Uri> {
    peer_after_binding(false)
}

/// A peer that answers the binding SEND, then goes on reading (`reads`) or not.
fn peer_after_binding(reads: bool) -> Vec<Uri> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let me: Uri = format!("msrp://127.0.0.1:{port}/silent;tcp").parse().unwrap();
    let from = me.to_string();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut decoder = msrp_core::Decoder::new(msrp_core::DecoderLimits::default());
        let mut buffer = vec![0_u8; 65536];
        let mut answered = false;
        while reads || !answered {
            let n = match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            decoder.feed(Bytes::copy_from_slice(&buffer[..n]));
            while let Some(Ok(item)) = decoder.poll() {
                if let (msrp_core::Decoded::Head(head), false) = (item, answered) {
                    // Only the binding SEND is answered.
                    answered = true;
                    let to = head.from_path().unwrap().0[0].to_string();
                    let tid = &head.transaction_id;
                    let response =
                        format!("MSRP {tid} 200 OK\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\n-------{tid}$\r\n");
                    stream.write_all(response.as_bytes()).unwrap();
                }
            }
        }
        // Holds the connection open, unread, until the test process ends.
        loop {
            std::thread::park();
        }
    });
    vec![me]
}

/// Alice on `a`, bound to a raw `peer`, with 300 ms response and shutdown timeouts.
async fn alice_impatient<A: Runtime>(a: A, peer: Vec<Uri>) -> Session<A> {
    let mut config = config();
    config.response_timeout = Duration::from_millis(300);
    config.shutdown_timeout = Duration::from_millis(300);
    let mut connector = ConnectorDirect::new(a, None, false);
    connector.set_config(config);
    connector.prepare(None);
    Session::new(connector.complete(peer).await.unwrap(), AcceptTypes::any(), None)
}

async fn response_timeout<A: Runtime>(a: A) {
    let alice = alice_impatient(a, silent_peer()).await;
    let mut chunk =
        alice.make_chunk(msrp_core::ChunkParams { data: Bytes::from_static(b"ping"), ..Default::default() });
    chunk.headers.set(msrp_core::HeaderName::ContentType, "text/plain");
    match alice.deliver_chunk(chunk).await {
        Err(Error::Transaction(error)) => assert_eq!(error.code, 408),
        other => panic!("expected a local 408, got {other:?}"),
    }
}

runtimes!(response_timeout);

/// A file sent to a peer that stopped reading: the writes block, yet the response timeout
/// still fails the message, and the session still shuts down.
async fn writes_blocked_by_a_stalled_peer<A: Runtime>(a: A) {
    let alice = alice_impatient(a, stalled_peer()).await;
    // More than the socket buffers of both ends hold.
    let size = 256 * 1024 * 1024;
    let reader = futures::io::AsyncReadExt::take(futures::io::repeat(b'x'), size);
    let file = OutgoingFile {
        reader: Box::new(reader),
        file: msrp_core::session::OutgoingFile {
            size,
            content_type: Some("application/octet-stream".into()),
            position: 0,
            message_id: None,
            headers: Headers::new(),
        },
    };
    let message = alice.send_file(file).await.unwrap();
    match message.outcome().await {
        MessageOutcome::Failed(error) => assert_eq!(error.code, 408),
        other => panic!("expected a local 408, got {other:?}"),
    }
    alice.shutdown(true).await;
}

runtimes!(writes_blocked_by_a_stalled_peer);

/// Two sessions on one listening port, a first SEND with a body, a stranger's 481, and
/// a 506 for a second connection to a session bound already.
async fn two_sessions_on_one_port<A: Runtime, B: Runtime>(a: A, b: B) {
    use msrp_smol::MsrpServer;
    let mut server = MsrpServer::new(b, None);
    // Issue 12 §3 refusals: the application hears of each connection the router refuses.
    let refusals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let told = std::sync::Arc::clone(&refusals);
    server.set_on_refused(Box::new(move |refused| told.lock().unwrap().push(refused)));
    let first = server.prepare("msrp://127.0.0.1:0/room1;tcp".parse().unwrap(), None).await.unwrap();
    let port = first[0].port.unwrap();
    let room1 = first[0].to_string();
    let second = server.prepare(format!("msrp://127.0.0.1:{port}/room2;tcp").parse().unwrap(), None).await.unwrap();
    assert_eq!(second[0].port, Some(port), "one port for both");
    let mut alice = ConnectorDirect::new(a.clone(), None, false);
    let mut carol = ConnectorDirect::new(a, None, false);
    let alice_path = alice.prepare(Some("msrp://127.0.0.1:2855/alice;tcp".parse().unwrap()));
    let carol_path = carol.prepare(Some("msrp://127.0.0.1:2855/carol;tcp".parse().unwrap()));
    // Carol's connection arrives before the server completes her session.
    let (alice_transport, carol_transport, served_alice) =
        futures::join!(alice.complete(first), carol.complete(second), server.complete(alice_path));
    let served_carol = server.complete(carol_path).await.unwrap();
    let alice = Session::new(alice_transport.unwrap(), AcceptTypes::any(), None);
    let carol = Session::new(carol_transport.unwrap(), AcceptTypes::any(), None);
    let for_alice = Session::new(served_alice.unwrap(), AcceptTypes::any(), None);
    let for_carol = Session::new(served_carol, AcceptTypes::any(), None);
    alice.send_message("text/plain", Bytes::from_static(b"from alice")).await.unwrap();
    carol.send_message("text/plain", Bytes::from_static(b"from carol")).await.unwrap();
    assert_eq!(&for_alice.receive_chunk().await.unwrap().data[..], b"from alice");
    assert_eq!(&for_carol.receive_chunk().await.unwrap().data[..], b"from carol");
    // A stranger naming no prepared session gets 481 and the connection closes.
    let response = raw_exchange(port, "msrp://127.0.0.1:2856/nobody;tcp");
    assert!(response.starts_with("MSRP stranger 481 "), "{response}");
    // Another connection naming Alice's session, bound already: 506, and Alice's session
    // goes on.
    let response = raw_exchange(port, &room1);
    assert!(response.starts_with("MSRP stranger 506 "), "{response}");
    alice.send_message("text/plain", Bytes::from_static(b"still here")).await.unwrap();
    assert_eq!(&for_alice.receive_chunk().await.unwrap().data[..], b"still here");
    let refusals = refusals.lock().unwrap();
    let codes: Vec<u16> = refusals.iter().map(|refused| refused.error.code).collect();
    assert_eq!(codes, [481, 506]);
    assert!(refusals.iter().all(|refused| refused.peer.ip().is_loopback() && refused.request.is_some()));
}

pairs!(two_sessions_on_one_port:
    tokio_tokio => (Tokio, Tokio),
    smol_smol => (Smol, Smol),
    threads_threads => (Threads, Threads),
    smol_tokio => (Smol, Tokio),
);

/// msrplib's transport calls: a request written and waited for, read on the far side
/// and answered; raw bytes written in sync; a shutdown that does not wait.
async fn transport_calls<A: Runtime, B: Runtime>(a: A, b: B) {
    use msrp_core::ChunkParams;
    use msrp_core::header::HeaderName;
    let mut acceptor = AcceptorDirect::new(b, None, false);
    let bob_path = acceptor.prepare(Some("msrp://127.0.0.1:0/bob;tcp".parse().unwrap())).await.unwrap();
    let mut connector = ConnectorDirect::new(a, None, false);
    let alice_path = connector.prepare(None);
    let (alice, bob) = futures::join!(connector.complete(bob_path), acceptor.complete(alice_path));
    let (mut alice, mut bob) = (alice.unwrap(), bob.unwrap());
    let mut by_hand = |text: &'static [u8]| {
        let mut chunk = alice.make_chunk(ChunkParams { data: Bytes::from_static(text), ..ChunkParams::default() });
        chunk.headers.set(HeaderName::ContentType, "text/plain");
        chunk
    };
    let (first, second) = (by_hand(b"written and waited for"), by_hand(b"as raw bytes"));
    alice.write_chunk(first, true).await.unwrap();
    let received = bob.read_chunk(None).await.unwrap();
    assert_eq!(&received.data[..], b"written and waited for");
    assert!(bob.write_response(&received, 200, Some("OK".into()), true).await.unwrap());
    alice.write(second.encode(), true).await.unwrap();
    assert_eq!(&bob.read_chunk(None).await.unwrap().data[..], b"as raw bytes");
    let alice = Session::new(alice, AcceptTypes::any(), None);
    alice.shutdown(false).await;
    assert!(bob.read_chunk(None).await.is_err(), "Bob learns the session ended");
}

pairs!(transport_calls:
    tokio_threads => (Tokio, Threads),
    threads_smol => (Threads, Smol),
);

/// An acceptor answers a stranger's first SEND with 481, closes that connection and
/// goes on waiting for its peer; a connection that stays silent does not hold it up.
async fn acceptor_waits_past_a_stranger<A: Runtime, B: Runtime>(a: A, b: B) {
    let mut acceptor = AcceptorDirect::new(b, None, false);
    // Issue 12 §3 refusals: the stranger is told to the application.
    let (told, refusals) = futures::channel::mpsc::unbounded();
    acceptor.set_on_refused(Box::new(move |refused| {
        let _ = told.unbounded_send(refused);
    }));
    // Bob's settings, which must survive the stranger: whole messages of 100 bytes at most.
    let mut bob_config = config();
    bob_config.reassembly = Some(msrp_core::session::ReassemblyLimits { max_message_size: 100, max_open_messages: 4 });
    acceptor.set_config(bob_config);
    let bob_path = acceptor.prepare(Some("msrp://127.0.0.1:0/bob;tcp".parse().unwrap())).await.unwrap();
    let (port, to) = (bob_path[0].port.unwrap(), bob_path[0].to_string());
    let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (answered, answer) = futures::channel::oneshot::channel();
    std::thread::spawn(move || answered.send(raw_exchange(port, &to)));
    let mut connector = ConnectorDirect::new(a, None, false);
    let alice_path = connector.prepare(None);
    let alice = async {
        let response = answer.await.unwrap();
        assert!(response.starts_with("MSRP stranger 481 "), "{response}");
        connector.complete(bob_path).await
    };
    let (inbound, outbound) = futures::join!(acceptor.complete(alice_path.clone()), alice);
    let bob = Session::new(inbound.unwrap(), AcceptTypes::any(), None);
    let alice = Session::new(outbound.unwrap(), AcceptTypes::any(), None);
    alice.send_message("text/plain", Bytes::from_static(b"it is me")).await.unwrap();
    assert_eq!(&bob.receive_chunk().await.unwrap().data[..], b"it is me");
    let too_big = alice.send_message("text/plain", Bytes::from(vec![b'x'; 1000])).await.unwrap();
    assert!(matches!(too_big.outcome().await, MessageOutcome::Failed(error) if error.code == 413));
    alice.shutdown(true).await;
    drop(acceptor);
    let refusals: Vec<_> = futures::StreamExt::collect(refusals).await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!((refusals[0].error.code, refusals[0].error.comment.as_str()), (481, "Invalid From-Path"));
}

/// Issue 12 §3 success REPORT after the bytes are safe: with `confirm_messages`, the
/// adapters' `Session::confirm_message` lets the success REPORT go (RFC 4975 §7.1.2).
async fn success_report_after_confirmation<R: Runtime>(runtime: R) {
    use msrp_core::header::HeaderName;
    use msrp_core::outbox::MessageOptions;
    use msrp_core::session::Event;
    let mut bob_config = config();
    bob_config.confirm_messages = true;
    let (alice, bob) = pair(runtime.clone(), runtime, None, Some(bob_config)).await;
    let mut options = MessageOptions::default();
    options.headers.set(HeaderName::ContentType, "text/plain");
    options.headers.set(HeaderName::SuccessReport, "yes");
    let message = alice.send_message_with(options, Bytes::from_static(b"keep me")).await.unwrap();
    let message_id = message.message_id.clone();
    assert_eq!(message.outcome().await, MessageOutcome::Delivered);
    let chunk = bob.receive_chunk().await.unwrap();
    assert_eq!(chunk.message_id(), Some(message_id.as_str()));
    assert_eq!(bob.confirm_message(&message_id, Ok(())).await, Ok(true));
    let report = loop {
        match alice.next_event().await {
            Some(Event::Report { report, .. }) => break report,
            Some(_) => {}
            None => panic!("the session ended without the REPORT"),
        }
    };
    assert_eq!(report.status().map(|status| status.code), Some(200));
    assert_eq!(report.message_id(), Some(message_id.as_str()));
    alice.shutdown(true).await;
}

runtimes!(success_report_after_confirmation);

pairs!(acceptor_waits_past_a_stranger:
    tokio_tokio => (Tokio, Tokio),
    threads_smol => (Threads, Smol),
    smol_threads => (Smol, Threads),
);

/// `complete_any` binds whoever comes first, with its From-Path as the remote path.
async fn acceptor_binds_any_peer<A: Runtime, B: Runtime>(a: A, b: B) {
    let mut acceptor = AcceptorDirect::new(b, None, false);
    let bob_path = acceptor.prepare(Some("msrp://127.0.0.1:0/bob;tcp".parse().unwrap())).await.unwrap();
    let mut connector = ConnectorDirect::new(a, None, false);
    let alice_path = connector.prepare(None);
    let (outbound, inbound) = futures::join!(connector.complete(bob_path), acceptor.complete_any());
    let inbound = inbound.unwrap();
    assert_eq!(inbound.remote_path(), &alice_path[..]);
    let bob = Session::new(inbound, AcceptTypes::any(), None);
    let alice = Session::new(outbound.unwrap(), AcceptTypes::any(), None);
    bob.send_message("text/plain", Bytes::from_static(b"welcome")).await.unwrap();
    assert_eq!(&alice.receive_chunk().await.unwrap().data[..], b"welcome");
    alice.shutdown(true).await;
}

pairs!(acceptor_binds_any_peer:
    smol_tokio => (Smol, Tokio),
    threads_threads => (Threads, Threads),
);

/// Certificates made for the test: a CA with a server certificate for 127.0.0.1, and a
/// self-signed one.
struct Certificates {
    ca_pem: String,
    ca_key_pem: String,
    server_chain_pem: String,
    server_key_pem: String,
    self_signed_pem: String,
    self_signed_key_pem: String,
    self_signed_fingerprint: [u8; 32],
}

fn certificates() -> Certificates {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server =
        CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&server_key, &ca, &ca_key).unwrap();
    let own_key = KeyPair::generate().unwrap();
    let own = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&own_key).unwrap();
    Certificates {
        ca_pem: ca.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        server_chain_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        self_signed_fingerprint: msrp_smol::tls::fingerprint(own.der()),
        self_signed_pem: own.pem(),
        self_signed_key_pem: own_key.serialize_pem(),
    }
}

/// An `msrps` pair: Bob shows `server`, Alice checks with `client`. Returns both sides'
/// results; Bob's is `None` when Alice failed and Bob went on waiting for his peer.
async fn tls_pair<A: Runtime, B: Runtime>(
    a: A,
    b: B,
    server: msrp_smol::TlsServer,
    client: msrp_smol::TlsClient,
) -> (Result<Session<A>, Error>, Option<Result<Session<B>, Error>>) {
    let mut acceptor = AcceptorDirect::new(b, None, false);
    acceptor.set_tls(server);
    let bob_path = acceptor.prepare(Some("msrps://127.0.0.1:0/bob;tcp".parse().unwrap())).await.unwrap();
    let mut connector = ConnectorDirect::new(a, None, false);
    connector.set_tls(client);
    let alice_path = connector.prepare(Some("msrps://127.0.0.1:2855/alice;tcp".parse().unwrap()));
    let outbound = Box::pin(connector.complete(bob_path));
    let inbound = Box::pin(acceptor.complete(alice_path));
    let (outbound, inbound) = match futures::future::select(outbound, inbound).await {
        futures::future::Either::Left((Err(error), _)) => (Err(error), None),
        futures::future::Either::Left((outbound, inbound)) => (outbound, Some(inbound.await)),
        futures::future::Either::Right((inbound, outbound)) => (outbound.await, Some(inbound)),
    };
    (
        outbound.map(|transport| Session::new(transport, AcceptTypes::any(), None)),
        inbound.map(|inbound| inbound.map(|transport| Session::new(transport, AcceptTypes::any(), None))),
    )
}

async fn tls<A: Runtime, B: Runtime>(a: A, b: B) {
    use msrp_smol::{TlsClient, TlsServer};
    let certificates = certificates();
    // Verified against a CA, with 127.0.0.1 as the name.
    let server =
        TlsServer::from_pem(certificates.server_chain_pem.as_bytes(), certificates.server_key_pem.as_bytes()).unwrap();
    let client = TlsClient::with_ca_pem(certificates.ca_pem.as_bytes()).unwrap();
    let (alice, bob) = tls_pair(a.clone(), b.clone(), server.clone(), client).await;
    let (alice, bob) = (alice.unwrap(), bob.unwrap().unwrap());
    alice.send_message("text/plain", Bytes::from_static(b"over TLS")).await.unwrap();
    assert_eq!(&bob.receive_chunk().await.unwrap().data[..], b"over TLS");
    alice.shutdown(true).await;
    // A self-signed peer pinned by its SDP fingerprint.
    let own = TlsServer::from_pem(certificates.self_signed_pem.as_bytes(), certificates.self_signed_key_pem.as_bytes())
        .unwrap();
    let pinned = TlsClient::with_fingerprint(certificates.self_signed_fingerprint).unwrap();
    let (alice, bob) = tls_pair(a.clone(), b.clone(), own.clone(), pinned).await;
    let (alice, bob) = (alice.unwrap(), bob.unwrap().unwrap());
    bob.send_message("text/plain", Bytes::from_static(b"pinned")).await.unwrap();
    assert_eq!(&alice.receive_chunk().await.unwrap().data[..], b"pinned");
    alice.shutdown(true).await;
    // The wrong fingerprint, and a CA that did not sign the certificate: no MSRP at all,
    // and Bob goes on waiting for a peer that passes.
    let mut wrong = certificates.self_signed_fingerprint;
    wrong[0] ^= 1;
    // Issue 12 §4: each TLS failure is a `ConnectError::Tls` that names the check.
    let (alice, bob) = tls_pair(a.clone(), b.clone(), own.clone(), TlsClient::with_fingerprint(wrong).unwrap()).await;
    assert_eq!(alice.err(), Some(Error::Connect(ConnectError::Tls(TlsError::FingerprintMismatch))));
    assert!(bob.is_none(), "Bob still waits");
    let untrusted = TlsClient::with_ca_pem(certificates.ca_pem.as_bytes()).unwrap();
    let (alice, bob) = tls_pair(a.clone(), b.clone(), own, untrusted).await;
    assert_eq!(alice.err(), Some(Error::Connect(ConnectError::Tls(TlsError::UnknownIssuer))));
    assert!(bob.is_none(), "Bob still waits");
    // A CA certificate shown as a server's (as self-signed certificates made by common
    // tools are), even one the client trusts.
    let ca_as_server = TlsServer::from_pem(certificates.ca_pem.as_bytes(), certificates.ca_key_pem.as_bytes()).unwrap();
    let trusting = TlsClient::with_ca_pem(certificates.ca_pem.as_bytes()).unwrap();
    let (alice, bob) = tls_pair(a, b, ca_as_server, trusting).await;
    assert_eq!(alice.err(), Some(Error::Connect(ConnectError::Tls(TlsError::CaUsedAsEndEntity))));
    assert!(bob.is_none(), "Bob still waits");
}

pairs!(tls:
    tokio_tokio => (Tokio, Tokio),
    smol_smol => (Smol, Smol),
    threads_threads => (Threads, Threads),
    threads_smol => (Threads, Smol),
);

#[test]
fn fingerprints_read_as_sdp_writes_them() {
    let text = (0..32).map(|i| format!("{i:02X}")).collect::<Vec<_>>().join(":");
    let parsed = msrp_smol::tls::parse_fingerprint(&text).unwrap();
    assert_eq!(parsed[31], 31);
    assert_eq!(msrp_smol::tls::parse_fingerprint("AB:CD"), None);
}

/// msrp-smol works inside async-std's executor (async-std shares smol's reactor).
#[test]
fn smol_adapter_runs_under_async_std() {
    async_std::task::block_on(async {
        let (alice, bob) = Box::pin(pair(Smol, Smol, None, None)).await;
        let message = alice.send_message("text/plain", Bytes::from_static(b"async-std")).await.unwrap();
        assert_eq!(&bob.receive_chunk().await.unwrap().data[..], b"async-std");
        assert_eq!(message.outcome().await, MessageOutcome::Delivered);
        async_std::task::spawn(async move { alice.shutdown(true).await }).await;
    });
}
