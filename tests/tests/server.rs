//! `MsrpServer` and `AcceptorDirect` under accept faults (issue 17 §1), and the server's
//! usability at scale (issue 17 §5): a shared port-0 listener, its own bind timeout,
//! clones shared across tasks.
//!
//! Faults come from a runtime wrapper whose listener returns the errors a test queues
//! before it accepts for real, so no file-descriptor limit is raised or exhausted.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::channel::mpsc;
use msrp_core::Uri;
use msrp_core::session::SessionError;
use msrp_smol::runtime::{BoxFuture, BoxStream, Listener, Runtime};
use msrp_smol::{AcceptTypes, AcceptorDirect, ConnectorDirect, Error, MsrpServer, Session, Smol};

/// Smol, with a listener that first returns the accept errors sent to it.
#[derive(Clone)]
struct Faulty {
    /// The faults, for the first listener opened.
    faults: Arc<Mutex<Option<mpsc::UnboundedReceiver<io::Error>>>>,
    /// Faults returned so far.
    returned: Arc<AtomicUsize>,
}

impl Faulty {
    /// The runtime and where to send the faults its first listener returns.
    fn new() -> (mpsc::UnboundedSender<io::Error>, Self) {
        let (sender, receiver) = mpsc::unbounded();
        (sender, Self { faults: Arc::new(Mutex::new(Some(receiver))), returned: Arc::new(AtomicUsize::new(0)) })
    }

    fn returned(&self) -> usize {
        self.returned.load(Ordering::SeqCst)
    }
}

struct FaultyListener {
    inner: Box<dyn Listener>,
    faults: Option<mpsc::UnboundedReceiver<io::Error>>,
    returned: Arc<AtomicUsize>,
}

impl Listener for FaultyListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let Some(faults) = &mut self.faults else { return self.inner.accept().await };
            // A fault already sent comes before any connection (`select` polls it first).
            match futures::future::select(faults.next(), self.inner.accept()).await {
                futures::future::Either::Left((Some(fault), _)) => {
                    self.returned.fetch_add(1, Ordering::SeqCst);
                    Err(fault)
                }
                futures::future::Either::Left((None, accept)) => accept.await,
                futures::future::Either::Right((accepted, _)) => accepted,
            }
        })
    }
}

impl Runtime for Faulty {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        Smol.spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Smol.sleep_until(deadline)
    }

    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Smol.resolve(host, port)
    }

    fn connect(&self, address: SocketAddr, timeout: Duration) -> BoxFuture<'static, io::Result<BoxStream>> {
        Smol.connect(address, timeout)
    }

    fn listen(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let faults = self.faults.lock().unwrap().take();
        let returned = Arc::clone(&self.returned);
        Box::pin(async move {
            let inner = Smol.listen(address).await?;
            Ok(Box::new(FaultyListener { inner, faults, returned }) as Box<dyn Listener>)
        })
    }
}

/// What a process out of file descriptors, or a peer that gave up while queued, gets.
fn transient_faults() -> Vec<io::Error> {
    vec![
        io::Error::from_raw_os_error(24), // EMFILE
        io::Error::from(io::ErrorKind::ConnectionAborted),
        io::Error::from_raw_os_error(23), // ENFILE
    ]
}

/// What a listening socket that is gone gets.
fn fatal_fault() -> io::Error {
    io::Error::other("the listening socket is gone")
}

fn uri(text: &str) -> Uri {
    text.parse().unwrap()
}

/// Alice connects to `to` from `alice_uri` and sends one message; returns her session
/// and the path to complete with.
fn alice(alice_uri: &str) -> (ConnectorDirect<Smol>, Vec<Uri>) {
    let mut connector = ConnectorDirect::new(Smol, None, false);
    let path = connector.prepare(Some(uri(alice_uri)));
    (connector, path)
}

/// A message from Alice reaches the server's side of the session.
async fn message_flows<A: Runtime, B: Runtime>(alice: Session<A>, served: Session<B>, text: &'static [u8]) {
    alice.send_message("text/plain", Bytes::from_static(text)).await.unwrap();
    assert_eq!(&served.receive_chunk().await.unwrap().data[..], text);
}

#[test]
fn server_keeps_serving_after_transient_accept_errors() {
    smol::block_on(async {
        let (faults, runtime) = Faulty::new();
        for fault in transient_faults() {
            faults.unbounded_send(fault).unwrap();
        }
        let mut server = MsrpServer::new(runtime.clone(), None);
        let told = Arc::new(Mutex::new(Vec::new()));
        let tell = Arc::clone(&told);
        server.set_on_listen_error(Box::new(move |error| tell.lock().unwrap().push(error)));
        let room = server.prepare(uri("msrp://127.0.0.1:0/room;tcp"), None).await.unwrap();
        let (mut connector, alice_path) = alice("msrp://127.0.0.1:2855/alice;tcp");
        let (outbound, inbound) = futures::join!(connector.complete(room), server.complete(alice_path));
        let alice = Session::new(outbound.unwrap(), AcceptTypes::any(), None);
        let served = Session::new(inbound.unwrap(), AcceptTypes::any(), None);
        message_flows(alice, served, b"after three accept errors").await;
        assert_eq!(runtime.returned(), 3, "every fault was returned by accept");
        assert!(told.lock().unwrap().is_empty(), "transient errors are not fatal");
        assert_eq!(server.local_addresses().len(), 1);
    });
}

#[test]
fn server_fails_complete_after_a_fatal_accept_error_until_it_listens_again() {
    smol::block_on(async {
        let (faults, runtime) = Faulty::new();
        let mut server = MsrpServer::new(runtime.clone(), None);
        let told = Arc::new(Mutex::new(Vec::new()));
        let tell = Arc::clone(&told);
        server.set_on_listen_error(Box::new(move |error| tell.lock().unwrap().push(error)));
        server.prepare(uri("msrp://127.0.0.1:0/room;tcp"), None).await.unwrap();
        let port = server.local_addresses()[0].port();
        let alice_path = vec![uri("msrp://127.0.0.1:2855/alice;tcp")];
        // `complete` waits first (it registers before its first await), then the listener dies.
        let (waiting, ()) = futures::join!(server.complete(alice_path.clone()), async {
            faults.unbounded_send(fatal_fault()).unwrap();
        });
        let is_fatal = |error: &Error| matches!(error, Error::Listen { kind: io::ErrorKind::Other, .. });
        let waiting = waiting.err().expect("the waiting complete fails");
        assert!(is_fatal(&waiting), "{waiting:?}");
        assert_eq!(waiting.to_string(), format!("cannot listen on 127.0.0.1:{port}: the listening socket is gone"));
        let later = server.complete(alice_path).await.err().expect("a later complete fails");
        assert!(is_fatal(&later), "{later:?}");
        assert_eq!(*told.lock().unwrap(), [waiting]);
        assert!(server.local_addresses().is_empty());
        // A prepare listens again, and the server serves.
        let room = server.prepare(uri("msrp://127.0.0.1:0/room2;tcp"), None).await.unwrap();
        assert_eq!(server.local_addresses().len(), 1);
        let (mut connector, alice_path) = alice("msrp://127.0.0.1:2855/alice2;tcp");
        let (outbound, inbound) = futures::join!(connector.complete(room), server.complete(alice_path));
        let alice = Session::new(outbound.unwrap(), AcceptTypes::any(), None);
        let served = Session::new(inbound.unwrap(), AcceptTypes::any(), None);
        message_flows(alice, served, b"on the new listener").await;
    });
}

#[test]
fn acceptor_keeps_serving_after_transient_accept_errors() {
    smol::block_on(async {
        let (faults, runtime) = Faulty::new();
        for fault in transient_faults() {
            faults.unbounded_send(fault).unwrap();
        }
        let mut acceptor = AcceptorDirect::new(runtime.clone(), None, false);
        let bob_path = acceptor.prepare(Some(uri("msrp://127.0.0.1:0/bob;tcp"))).await.unwrap();
        let (mut connector, alice_path) = alice("msrp://127.0.0.1:2855/alice;tcp");
        let (outbound, inbound) = futures::join!(connector.complete(bob_path), acceptor.complete(alice_path));
        let alice = Session::new(outbound.unwrap(), AcceptTypes::any(), None);
        let served = Session::new(inbound.unwrap(), AcceptTypes::any(), None);
        message_flows(alice, served, b"after three accept errors").await;
        assert_eq!(runtime.returned(), 3, "every fault was returned by accept");
    });
}

#[test]
fn acceptor_fails_complete_on_a_fatal_accept_error() {
    smol::block_on(async {
        let (faults, runtime) = Faulty::new();
        faults.unbounded_send(io::Error::from_raw_os_error(24)).unwrap();
        faults.unbounded_send(fatal_fault()).unwrap();
        let mut acceptor = AcceptorDirect::new(runtime.clone(), None, false);
        acceptor.prepare(Some(uri("msrp://127.0.0.1:0/bob;tcp"))).await.unwrap();
        let error = acceptor.complete(vec![uri("msrp://127.0.0.1:2855/alice;tcp")]).await.err().unwrap();
        assert!(matches!(error, Error::Listen { kind: io::ErrorKind::Other, .. }), "{error:?}");
        assert_eq!(runtime.returned(), 2, "the transient error was waited out first");
    });
}

#[test]
fn port_zero_prepares_share_one_port() {
    smol::block_on(async {
        let server = MsrpServer::new(Smol, None);
        let first = server.prepare(uri("msrp://127.0.0.1:0/room1;tcp"), None).await.unwrap();
        let second = server.prepare(uri("msrp://127.0.0.1:0/room2;tcp"), None).await.unwrap();
        let port = first[0].port.unwrap();
        assert_ne!(port, 0);
        assert_eq!(second[0].port, Some(port), "the second port-0 prepare shares the first port");
        assert_eq!(server.local_addresses(), [SocketAddr::from(([127, 0, 0, 1], port))]);
    });
}

#[test]
fn a_clone_prepares_and_completes_on_another_task() {
    smol::block_on(async {
        let server = MsrpServer::new(Smol, None);
        let first = server.prepare(uri("msrp://127.0.0.1:0/room1;tcp"), None).await.unwrap();
        let clone = server.clone();
        let (mut connector, alice_path) = alice("msrp://127.0.0.1:2855/alice;tcp");
        let (prepared, room) = futures::channel::oneshot::channel();
        let served = smol::spawn(async move {
            let room = clone.prepare(uri("msrp://127.0.0.1:0/room2;tcp"), None).await.unwrap();
            prepared.send(room).unwrap();
            clone.complete(alice_path).await
        });
        let room = room.await.unwrap();
        assert_eq!(room[0].port, first[0].port, "the clone shares the server's port");
        let alice = Session::new(connector.complete(room).await.unwrap(), AcceptTypes::any(), None);
        let served = Session::new(served.await.unwrap(), AcceptTypes::any(), None);
        message_flows(alice, served, b"through a clone").await;
    });
}

#[test]
fn complete_waits_the_servers_own_bind_timeout() {
    smol::block_on(async {
        let mut server = MsrpServer::new(Smol, None);
        server.set_bind_timeout(Duration::from_millis(50));
        server.prepare(uri("msrp://127.0.0.1:0/room;tcp"), None).await.unwrap();
        let started = Instant::now();
        let error = server.complete(vec![uri("msrp://127.0.0.1:2855/nobody;tcp")]).await.err().unwrap();
        assert_eq!(error, Error::Session(SessionError::BindTimeout));
        assert!(started.elapsed() < Duration::from_secs(5), "not the default 30 s");
    });
}

#[test]
fn blocking_server_clones_share_one_port() {
    let mut server = msrp_blocking::MsrpServer::new(None);
    server.set_bind_timeout(Duration::from_secs(5));
    server.set_on_listen_error(Box::new(|_| {}));
    let clone = server.clone();
    let first = server.prepare(uri("msrp://127.0.0.1:0/room1;tcp"), None).unwrap();
    let second = clone.prepare(uri("msrp://127.0.0.1:0/room2;tcp"), None).unwrap();
    assert_eq!(first[0].port, second[0].port);
    assert_eq!(clone.local_addresses(), [SocketAddr::from(([127, 0, 0, 1], first[0].port.unwrap()))]);
}
