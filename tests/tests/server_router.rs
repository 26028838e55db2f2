//! `MsrpServer` forgets what it no longer needs (issue 17): sessions that ended, URIs
//! cleaned up or expired leave it idle, and a second connection for a session gets 506
//! only while the first connection lives (481 once the session is over).

use std::time::{Duration, Instant};

use bytes::Bytes;
use msrp_core::Uri;
use msrp_smol::runtime::Runtime;
use msrp_smol::{AcceptTypes, ConnectorDirect, MsrpServer, Session};
use msrp_tests::pairs;
use msrp_tests::scenario::{Smol, Threads, Tokio, raw_exchange};

fn uri(text: &str) -> Uri {
    text.parse().unwrap()
}

/// Waits (real time: the sessions end on their own tasks) until `server` holds nothing.
async fn until_idle<R: Runtime>(runtime: &R, server: &MsrpServer<R>) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !server.is_idle() {
        assert!(Instant::now() < give_up, "the server still holds {} prepared URIs or more", server.prepared_count());
        runtime.sleep_until(runtime.now() + Duration::from_millis(5)).await;
    }
}

/// Prepares `count` rooms on one port; returns their paths and the port.
async fn rooms<R: Runtime>(server: &MsrpServer<R>, count: usize) -> (Vec<Vec<Uri>>, u16) {
    let first = server.prepare(uri("msrp://127.0.0.1:0/room0;tcp"), None).await.unwrap();
    let port = first[0].port.unwrap();
    let mut paths = vec![first];
    for i in 1..count {
        paths.push(server.prepare(uri(&format!("msrp://127.0.0.1:{port}/room{i};tcp")), None).await.unwrap());
    }
    (paths, port)
}

/// Ten sessions complete, exchange a message and end; five connect and are cleaned up
/// before any `complete` takes them; five never connect and are cleaned up. Nothing is
/// left.
async fn sessions_that_end_leave_the_server_idle<A: Runtime, B: Runtime>(a: A, b: B) {
    let server = MsrpServer::new(b.clone(), None);
    let (paths, _) = rooms(&server, 20).await;
    assert_eq!(server.prepared_count(), 20);
    for (i, room) in paths.iter().enumerate().take(10) {
        let mut client = ConnectorDirect::new(a.clone(), None, false);
        let client_path = client.prepare(Some(uri(&format!("msrp://127.0.0.1:2855/client{i};tcp"))));
        let (outbound, inbound) = futures::join!(client.complete(room.clone()), server.complete(client_path));
        let client = Session::new(outbound.unwrap(), AcceptTypes::any(), None);
        let served = Session::new(inbound.unwrap(), AcceptTypes::any(), None);
        client.send_message("text/plain", Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(&served.receive_chunk().await.unwrap().data[..], b"hello");
        client.shutdown(true).await;
        assert!(served.receive_chunk().await.is_err(), "the server's session ended");
    }
    // Bound, waiting for a `complete` that never comes.
    let mut parked = Vec::new();
    for (i, room) in paths.iter().enumerate().take(15).skip(10) {
        let mut client = ConnectorDirect::new(a.clone(), None, false);
        client.prepare(Some(uri(&format!("msrp://127.0.0.1:2855/client{i};tcp"))));
        parked.push(Session::new(client.complete(room.clone()).await.unwrap(), AcceptTypes::any(), None));
    }
    assert!(!server.is_idle());
    for room in &paths[10..] {
        server.cleanup(&room[0]);
    }
    for client in &parked {
        assert!(client.receive_chunk().await.is_err(), "a cleaned-up session ends");
    }
    until_idle(&b, &server).await;
    assert_eq!(server.prepared_count(), 0);
}

pairs!(sessions_that_end_leave_the_server_idle:
    smol_smol => (Smol, Smol),
    tokio_tokio => (Tokio, Tokio),
    threads_threads => (Threads, Threads),
);

/// A second connection for a bound session: 506 while the first connection lives; once
/// it closed, the session is over and its URI forgotten: 481.
async fn a_506_only_while_the_first_connection_lives<A: Runtime, B: Runtime>(a: A, b: B) {
    let server = MsrpServer::new(b.clone(), None);
    let (paths, port) = rooms(&server, 1).await;
    let room = paths[0][0].to_string();
    let mut client = ConnectorDirect::new(a, None, false);
    let client_path = client.prepare(Some(uri("msrp://127.0.0.1:2855/alice;tcp")));
    let (outbound, inbound) = futures::join!(client.complete(paths[0].clone()), server.complete(client_path));
    let client = Session::new(outbound.unwrap(), AcceptTypes::any(), None);
    let served = Session::new(inbound.unwrap(), AcceptTypes::any(), None);
    let response = raw_exchange(port, &room);
    assert!(response.starts_with("MSRP stranger 506 "), "{response}");
    client.shutdown(true).await;
    assert!(served.receive_chunk().await.is_err());
    until_idle(&b, &server).await;
    let response = raw_exchange(port, &room);
    assert!(response.starts_with("MSRP stranger 481 "), "{response}");
    assert!(server.is_idle(), "a refused connection leaves nothing behind");
}

pairs!(a_506_only_while_the_first_connection_lives:
    smol_smol => (Smol, Smol),
    tokio_threads => (Tokio, Threads),
);

/// Prepared URIs no connection binds expire after the bind timeout (30 s), on tokio's
/// paused clock: nothing is left, and a late connection gets 481.
#[test]
fn prepared_uris_expire_after_the_bind_timeout() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    runtime.block_on(async {
        let server = MsrpServer::new(Tokio, None);
        let (_, port) = rooms(&server, 50).await;
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(server.prepared_count(), 50);
        // Prepared later: it expires later.
        server.prepare(uri(&format!("msrp://127.0.0.1:{port}/late;tcp")), None).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(server.prepared_count(), 1);
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(server.prepared_count(), 0);
        assert!(server.is_idle());
        let response =
            tokio::task::spawn_blocking(move || raw_exchange(port, &format!("msrp://127.0.0.1:{port}/room3;tcp")))
                .await
                .unwrap();
        assert!(response.starts_with("MSRP stranger 481 "), "{response}");
    });
}
