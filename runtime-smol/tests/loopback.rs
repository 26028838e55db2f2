//! Smoke test over real sockets on 127.0.0.1: the spec's two examples talking to each other.

use bytes::Bytes;
use msrp_smol::core::Uri;
use msrp_smol::core::session::MessageOutcome;
use msrp_smol::{AcceptTypes, AcceptorDirect, ConnectorDirect, Session, Smol};

#[test]
fn outbound_and_inbound_exchange_messages() {
    smol::block_on(async {
        let mut acceptor = AcceptorDirect::new(Smol, None, false);
        let local: Uri = "msrp://127.0.0.1:0/inbound1;tcp".parse().unwrap();
        let acceptor_path = acceptor.prepare(Some(local)).await.unwrap();
        assert_ne!(acceptor_path[0].port, Some(0), "prepare fills in the port");
        let mut connector = ConnectorDirect::new(Smol, None, false);
        let connector_path = connector.prepare(None);
        let accept = smol::spawn(async move { acceptor.complete(connector_path).await });
        let outbound = connector.complete(acceptor_path).await.unwrap();
        let inbound = accept.await.unwrap();
        let alice = Session::new(outbound, AcceptTypes::any(), None);
        let bob = Session::new(inbound, AcceptTypes::any(), None);
        let message = alice.send_message("text/plain", Bytes::from_static(b"Hello world!")).await.unwrap();
        let chunk = bob.receive_chunk().await.unwrap();
        assert_eq!(&chunk.data[..], b"Hello world!");
        assert_eq!(message.outcome().await, MessageOutcome::Delivered);
        let reply = bob.send_message("text/plain", Bytes::from_static(b"Hi Alice")).await.unwrap();
        assert_eq!(&alice.receive_chunk().await.unwrap().data[..], b"Hi Alice");
        assert_eq!(reply.outcome().await, MessageOutcome::Delivered);
        alice.shutdown().await;
        assert!(bob.receive_chunk().await.is_err(), "bob learns the session ended");
    });
}
