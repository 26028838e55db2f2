//! [`TestRelay`]: a [`ScriptedRelay`] over real TCP sockets on 127.0.0.1, with plain
//! threads: one accepts, one reads each connection and one writes each connection. The
//! relay sits behind a mutex; a reader feeds it what it read and hands its outputs to
//! the writers' queues, so a client that does not read never blocks the relay for others.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use msrp_core::Uri;
use msrp_core::connect::ConnectionId;

use super::{RelayOutput, RelayScript, RelayStats, ScriptedRelay};

/// Largest single read.
const READ_SIZE: usize = 64 * 1024;

/// What a connection's writer thread is asked to do.
enum WriterCommand {
    Write(Bytes),
    Close,
}

struct Link {
    writer: Sender<WriterCommand>,
}

struct State {
    relay: ScriptedRelay,
    links: HashMap<ConnectionId, Link>,
    next_id: u64,
    threads: Vec<JoinHandle<()>>,
    /// Every socket accepted, to shut down at stop even after its link is gone (a
    /// writer may still be blocked on a client that stopped reading).
    sockets: Vec<TcpStream>,
}

impl State {
    /// Hands every output of the relay to the writer of its connection.
    fn pump(&mut self) {
        while let Some(output) = self.relay.poll_output() {
            let (connection, command) = match output {
                RelayOutput::Write { connection, bytes } => (connection, WriterCommand::Write(bytes)),
                RelayOutput::Close { connection } => (connection, WriterCommand::Close),
            };
            if let Some(link) = self.links.get(&connection) {
                // A writer that has gone is a connection closing; the reader reports it.
                let _ = link.writer.send(command);
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    stopping: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the relay from the test's assertions.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running relay on 127.0.0.1 (a free port). Stopped by [`TestRelay::stop`] or on drop.
pub struct TestRelay {
    uri: Uri,
    address: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl TestRelay {
    /// Starts a relay following `script`; the script's URI is replaced by
    /// `msrp://127.0.0.1:<port>;tcp` (its scheme kept).
    ///
    /// Panics when no port on 127.0.0.1 can be bound: this is test infrastructure.
    pub fn start(script: RelayScript) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a relay port on 127.0.0.1");
        let address = listener.local_addr().expect("the relay's bound address");
        let mut script = script;
        script.uri.host = "127.0.0.1".into();
        script.uri.port = Some(address.port());
        let relay = ScriptedRelay::new(script);
        let uri = relay.uri().clone();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                relay,
                links: HashMap::new(),
                next_id: 1,
                threads: Vec::new(),
                sockets: Vec::new(),
            }),
            stopping: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = std::thread::Builder::new()
            .name("test-relay-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared))
            .expect("spawn the relay's accept thread");
        Self { uri, address, shared, accept_thread: Some(accept_thread) }
    }

    /// The relay's URI, `msrp://127.0.0.1:<port>;tcp`: what a client puts in To-Path of AUTH.
    pub fn uri(&self) -> Uri {
        self.uri.clone()
    }

    /// The listening address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What the relay did so far.
    pub fn stats(&self) -> RelayStats {
        self.shared.lock().relay.stats().clone()
    }

    /// The open connections, in the order they were accepted.
    pub fn connections(&self) -> Vec<ConnectionId> {
        self.shared.lock().relay.connection_ids()
    }

    /// Runs `f` on the relay (to read a grant, say), then carries out what it asked for.
    pub fn with_relay<R>(&self, f: impl FnOnce(&mut ScriptedRelay) -> R) -> R {
        let mut state = self.shared.lock();
        let result = f(&mut state.relay);
        state.pump();
        result
    }

    /// The relay hangs up on one client; its grant dies.
    pub fn drop_client(&self, connection: ConnectionId) {
        self.with_relay(|relay| relay.drop_connection(connection));
    }

    /// The relay hangs up on every client.
    pub fn drop_all_clients(&self) {
        self.with_relay(|relay| {
            for connection in relay.connection_ids() {
                relay.drop_connection(connection);
            }
        });
    }

    /// Stops accepting, closes every connection and waits for every thread.
    pub fn stop(&mut self) {
        let Some(accept_thread) = self.accept_thread.take() else { return };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept; it sees `stopping` and returns.
        let _ = TcpStream::connect(self.address);
        let _ = accept_thread.join();
        let threads = {
            let mut state = self.shared.lock();
            for socket in &state.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut state.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for TestRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRelay").field("uri", &self.uri.to_string()).finish_non_exhaustive()
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let (Ok(reader), Ok(socket)) = (stream.try_clone(), stream.try_clone()) else { continue };
        let mut state = shared.lock();
        let connection = ConnectionId(state.next_id);
        state.next_id += 1;
        let (writer, commands) = channel();
        let writer_thread = std::thread::Builder::new()
            .name(format!("test-relay-write-{}", connection.0))
            .spawn(move || write_loop(stream, &commands));
        let reader_shared = Arc::clone(shared);
        let reader_thread = std::thread::Builder::new()
            .name(format!("test-relay-read-{}", connection.0))
            .spawn(move || read_loop(reader, connection, &reader_shared));
        let (Ok(writer_thread), Ok(reader_thread)) = (writer_thread, reader_thread) else {
            let _ = socket.shutdown(Shutdown::Both);
            continue;
        };
        state.threads.extend([writer_thread, reader_thread]);
        state.sockets.push(socket);
        state.links.insert(connection, Link { writer });
        state.relay.handle_connected(connection);
        state.pump();
    }
}

fn read_loop(mut stream: TcpStream, connection: ConnectionId, shared: &Shared) {
    let mut buffer = vec![0; READ_SIZE];
    loop {
        let read = stream.read(&mut buffer);
        let mut state = shared.lock();
        match read {
            Ok(count) if count > 0 => {
                state.relay.handle_received(Instant::now(), connection, Bytes::copy_from_slice(&buffer[..count]));
                state.pump();
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            _ => {
                state.relay.handle_closed(connection);
                // Dropping the link's sender ends the writer thread once it wrote what
                // is queued (a client that only half-closed still gets it).
                state.links.remove(&connection);
                state.pump();
                return;
            }
        }
    }
}

fn write_loop(mut stream: TcpStream, commands: &std::sync::mpsc::Receiver<WriterCommand>) {
    for command in commands {
        match command {
            WriterCommand::Write(bytes) => {
                if stream.write_all(&bytes).is_err() {
                    // The reader sees the broken connection and reports it closed.
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
            WriterCommand::Close => break,
        }
    }
    // Only the sending side: shutting down reading with unread input would make the
    // kernel reset the connection and drop what is still queued for the client. The
    // client sees the end of the stream and closes; the reader then reports it.
    let _ = stream.shutdown(Shutdown::Write);
}
