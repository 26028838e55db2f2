//! Sessions through a relay (RFC 4976) over real sockets on 127.0.0.1, on every adapter
//! and across them: each side authenticates to the test relay (`msrp_tests::relay`),
//! gets its Use-Path, and the session binds and runs through it. The relay imitates the
//! real ones where they differ (Kamailio, msrprelay).

use bytes::Bytes;
use futures::io::Cursor;
use msrp_core::Uri;
use msrp_core::header::Headers;
use msrp_core::session::{MessageOutcome, SessionError};
use msrp_smol::runtime::Runtime;
use msrp_smol::{
    AcceptTypes, AcceptorRelay, ConnectError, ConnectorRelay, DigestUri, Error, OutgoingFile, RelayError,
    RelaySettings, Session,
};
use msrp_tests::relay::net::TestRelay;
use msrp_tests::relay::{DigestAuth, RelayScript};
use msrp_tests::{every_pair, runtimes};
use sha2::{Digest, Sha256};

const PASSWORD: &str = "secret";

/// A relay asking for Digest credentials (any user, [`PASSWORD`]).
fn relay_with_auth(script: RelayScript) -> TestRelay {
    TestRelay::start(RelayScript { auth: Some(DigestAuth::any_user("msrp-test", PASSWORD)), ..script })
}

/// Settings for the test relay, as user `user` with `password`.
fn settings(relay: &TestRelay, user: &str, password: &str) -> RelaySettings {
    RelaySettings::at(&relay.uri(), user, password)
}

/// Alice (active, on `a`) and Bob (passive, on `b`), both through `relay`, bound.
async fn pair<A: Runtime, B: Runtime>(a: A, b: B, relay: &TestRelay) -> (Session<A>, Session<B>) {
    let mut acceptor = AcceptorRelay::new(b, settings(relay, "bob", PASSWORD), None, false);
    let bob_path = acceptor.prepare(Some("msrp://bob.invalid:2855/bob;tcp".parse().unwrap())).await.unwrap();
    let mut connector = ConnectorRelay::new(a, settings(relay, "alice", PASSWORD), None, false);
    let alice_path = connector.prepare(None).await.unwrap();
    // Each full path is the relay's Use-Path, then the side's own URI (what SDP carries).
    assert_eq!(bob_path.len(), 2);
    assert_eq!(alice_path.len(), 2);
    assert_eq!(bob_path[0].host, relay.uri().host);
    let (outbound, inbound) = futures::join!(connector.complete(bob_path), acceptor.complete(alice_path));
    (
        Session::new(outbound.unwrap(), AcceptTypes::any(), None),
        Session::new(inbound.unwrap(), AcceptTypes::any(), None),
    )
}

/// Text both ways and a file with a success REPORT, through a relay that asks for
/// credentials; the REPORT finds its way back through the relay.
async fn text_and_file_through_a_relay<A: Runtime, B: Runtime>(a: A, b: B) {
    let relay = relay_with_auth(RelayScript::default());
    let (alice, bob) = pair(a, b, &relay).await;
    let hello = alice.send_message("text/plain", Bytes::from_static(b"Hello through the relay")).await.unwrap();
    assert_eq!(&bob.receive_chunk().await.unwrap().data[..], b"Hello through the relay");
    assert_eq!(hello.outcome().await, MessageOutcome::Delivered);
    let reply = bob.send_message("text/plain", Bytes::from_static(b"Hello Alice")).await.unwrap();
    assert_eq!(&alice.receive_chunk().await.unwrap().data[..], b"Hello Alice");
    assert_eq!(reply.outcome().await, MessageOutcome::Delivered);

    let data: Vec<u8> = (0..300_000_usize).map(|i| (i * 7 % 251) as u8).collect();
    let mut headers = Headers::new();
    headers.set(msrp_core::HeaderName::SuccessReport, "yes");
    let file = OutgoingFile {
        reader: Box::new(Cursor::new(data.clone())),
        file: msrp_core::session::OutgoingFile {
            size: data.len() as u64,
            content_type: Some("application/octet-stream".into()),
            position: 0,
            message_id: None,
            headers,
        },
    };
    let message = alice.send_file(file).await.unwrap();
    let mut hasher = Sha256::new();
    let mut received = 0;
    let mut largest = 0;
    while received < data.len() {
        let chunk = bob.receive_chunk().await.unwrap();
        hasher.update(&chunk.data);
        received += chunk.data.len();
        largest = largest.max(chunk.data.len());
    }
    assert_eq!(hasher.finalize(), Sha256::digest(&data));
    assert!(largest <= msrp_smol::RELAY_CHUNK_SIZE, "chunks through a relay are capped, got {largest} bytes");
    assert_eq!(message.outcome().await, MessageOutcome::Delivered);
    // The success REPORT came back through the relay.
    let report = loop {
        if let msrp_core::session::Event::Report { report, .. } = alice.next_event().await.expect("a REPORT") {
            break report;
        }
    };
    assert_eq!(report.status().map(|status| status.code), Some(200));
    // Through a relay, one side closing its connection is not seen by the other (SIP's
    // BYE tells it): each side shuts down its own.
    alice.shutdown(true).await;
    bob.shutdown(true).await;
    let stats = relay.stats();
    assert_eq!(stats.authorized, 2, "each side authenticated once");
    assert!(stats.forwarded_requests >= 3, "the relay carried the session: {stats:?}");
}

every_pair!(text_and_file_through_a_relay);

/// Kamailio's ways (uri= required, 11238-byte frames, a 200 to every SEND) and
/// msrprelay's (silence to uri=) both work without configuration.
async fn both_real_relays_quirks_work<R: Runtime>(runtime: R) {
    for script in [RelayScript::kamailio_like(None), RelayScript::msrprelay_like(None)] {
        let relay = relay_with_auth(script);
        let (alice, bob) = pair(runtime.clone(), runtime.clone(), &relay).await;
        let data = Bytes::from(vec![b'x'; 100_000]);
        let message = alice.send_message("application/octet-stream", data.clone()).await.unwrap();
        let mut received = Vec::new();
        while received.len() < data.len() {
            received.extend_from_slice(&bob.receive_chunk().await.unwrap().data);
        }
        assert_eq!(received, data);
        assert_eq!(message.outcome().await, MessageOutcome::Delivered);
        assert_eq!(relay.stats().too_large, 0, "no frame was too large for the relay");
        alice.shutdown(true).await;
    }
}

runtimes!(both_real_relays_quirks_work);

/// A wrong password is told as such, not as a timeout or a closed connection.
async fn wrong_password_is_wrong_credentials<R: Runtime>(runtime: R) {
    let relay = relay_with_auth(RelayScript::default());
    let mut connector = ConnectorRelay::new(runtime, settings(&relay, "alice", "guess"), None, false);
    let error = connector.prepare(None).await.unwrap_err();
    assert!(matches!(error, Error::Relay(RelayError::WrongCredentials { .. })), "{error:?}");
    assert!(error.to_string().contains("user name and password"), "{error}");
}

runtimes!(wrong_password_is_wrong_credentials);

/// Nothing listening where the relay should be: a connect error naming the address.
async fn unreachable_relay_is_a_connect_error<R: Runtime>(runtime: R) {
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let uri = Uri::new("127.0.0.1").with_port(address.port());
    let mut acceptor = AcceptorRelay::new(runtime, RelaySettings::at(&uri, "bob", PASSWORD), None, false);
    let error = acceptor.prepare(None).await.unwrap_err();
    assert!(matches!(error, Error::Connect(ConnectError::Refused { .. })), "{error:?}");
}

runtimes!(unreachable_relay_is_a_connect_error);

/// A relay that refuses (a status of its own) or never answers the AUTH.
async fn refusal_and_silence<R: Runtime>(runtime: R) {
    let relay = TestRelay::start(RelayScript { refuse_auth_with: Some(500), ..RelayScript::default() });
    let mut connector = ConnectorRelay::new(runtime.clone(), settings(&relay, "alice", PASSWORD), None, false);
    let error = connector.prepare(None).await.unwrap_err();
    let Error::Relay(RelayError::Refused { status, .. }) = error else { panic!("{error:?}") };
    assert_eq!(status.code, 500);

    let relay = TestRelay::start(RelayScript { drop_after_auth: true, ..RelayScript::default() });
    let mut connector = ConnectorRelay::new(runtime, settings(&relay, "alice", PASSWORD), None, false);
    let path = connector.prepare(None).await.unwrap();
    // The relay hung up after granting the path: binding fails, it does not hang.
    let peer: Vec<Uri> = vec!["msrp://127.0.0.1:9/peer;tcp".parse().unwrap()];
    let Err(error) = connector.complete(peer).await else { panic!("bound through a relay that hung up ({path:?})") };
    assert!(matches!(error, Error::Session(SessionError::ConnectionClosed | SessionError::BindTimeout)), "{error:?}");
}

runtimes!(refusal_and_silence);

/// The relay drops a bound client: both sides learn the session ended.
async fn relay_dropping_a_client_ends_the_session<R: Runtime>(runtime: R) {
    let relay = relay_with_auth(RelayScript::default());
    let (alice, bob) = pair(runtime.clone(), runtime, &relay).await;
    relay.drop_all_clients();
    let ended = alice.receive_chunk().await.unwrap_err();
    assert!(matches!(ended, Error::Session(SessionError::ConnectionClosed)), "{ended:?}");
    assert!(bob.receive_chunk().await.is_err());
}

runtimes!(relay_dropping_a_client_ends_the_session);

/// The RFC's form of the Digest answer (no `uri=`) forced: a relay that demands `uri=`
/// then refuses it, and the error says so; forcing `uri=` works there.
async fn digest_uri_switch<R: Runtime>(runtime: R) {
    let relay = relay_with_auth(RelayScript::kamailio_like(None));
    let mut never = settings(&relay, "alice", PASSWORD);
    never.digest_uri = DigestUri::Never;
    let error = ConnectorRelay::new(runtime.clone(), never, None, false).prepare(None).await.unwrap_err();
    assert!(matches!(error, Error::Relay(RelayError::WrongCredentials { .. })), "{error:?}");
    let mut always = settings(&relay, "alice", PASSWORD);
    always.digest_uri = DigestUri::Always;
    let path = ConnectorRelay::new(runtime, always, None, false).prepare(None).await.unwrap();
    assert_eq!(path.len(), 2);
}

runtimes!(digest_uri_switch);

/// `get_connector(Some(relay))` and `get_acceptor(Some(relay))` on each adapter's own API.
#[test]
fn get_connector_and_acceptor_with_a_relay_on_tokio() {
    let relay = relay_with_auth(RelayScript::default());
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    tokio.block_on(async {
        let mut acceptor = msrp_tokio::get_acceptor(Some(settings(&relay, "bob", PASSWORD)), None, false);
        let mut connector = msrp_tokio::get_connector(Some(settings(&relay, "alice", PASSWORD)), None, false);
        assert!(matches!(connector, msrp_tokio::Connector::Relay(_)));
        let bob_path = acceptor.prepare(None).await.unwrap();
        let alice_path = connector.prepare(None).await.unwrap();
        let (outbound, inbound) = tokio::join!(connector.complete(bob_path), acceptor.complete(alice_path));
        let alice = msrp_tokio::Session::new(outbound.unwrap(), AcceptTypes::any(), None);
        let bob = msrp_tokio::Session::new(inbound.unwrap(), AcceptTypes::any(), None);
        alice.send_message("text/plain", Bytes::from_static(b"via tokio")).await.unwrap();
        assert_eq!(&bob.receive_chunk().await.unwrap().data[..], b"via tokio");
        alice.shutdown(true).await;
    });
}

#[test]
fn relay_connection_and_get_connector_on_blocking() {
    let relay = relay_with_auth(RelayScript::default());
    let mut bob = msrp_blocking::RelayConnection::new(
        settings(&relay, "bob", PASSWORD),
        msrp_blocking::Mode::Passive,
        None,
        false,
    );
    let bob_path = bob.prepare(None).unwrap();
    let mut alice = msrp_blocking::get_connector(Some(settings(&relay, "alice", PASSWORD)), None, false);
    assert!(alice.is_relay());
    let alice_path = alice.prepare(None).unwrap();
    let waiting = std::thread::spawn(move || bob.complete(alice_path).map(|t| (t, bob)));
    let outbound = alice.complete(bob_path).unwrap();
    let (inbound, _bob) = waiting.join().unwrap().unwrap();
    let alice = msrp_blocking::Session::new(outbound, AcceptTypes::any(), None);
    let bob = msrp_blocking::Session::new(inbound, AcceptTypes::any(), None);
    let message = alice.send_message("text/plain", Bytes::from_static(b"via threads")).unwrap();
    assert_eq!(&bob.receive_chunk().unwrap().data[..], b"via threads");
    assert_eq!(message.outcome(), MessageOutcome::Delivered);
    let mut acceptor = msrp_blocking::AcceptorRelay::new(settings(&relay, "carol", "guess"), None, false);
    assert!(matches!(acceptor.prepare(None), Err(Error::Relay(RelayError::WrongCredentials { .. }))));
    alice.shutdown(true);
}

/// Settings never print the password.
#[test]
fn relay_settings_debug_hides_the_password() {
    let settings = RelaySettings::new("example.org", "alice", "hunter2");
    assert!(!format!("{settings:?}").contains("hunter2"));
}
