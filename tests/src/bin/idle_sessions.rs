//! Idle sessions benchmark over 127.0.0.1 (not a test; issue 17 §4): N MSRP sessions on
//! one `MsrpServer` port, each set up (connect, bind, one message each way) and then left
//! idle, both sides in one process; next to N idle raw TCP connection pairs of the same
//! runtime as the baseline. Each measurement runs in a process of its own, and memory is
//! `VmRSS` (from `/proc/self/status`) after the connections are idle minus before any.
//! Kernel socket buffers are not in `VmRSS`, so the figures are the program's own memory.
//!
//! `cargo run --release -p msrp-tests --bin idle_sessions -- [--sessions N] [--runtime tokio|smol] [--split]`
//! (default 10,000 on tokio). Every session uses two file descriptors (its two sides), so N
//! must fit under the open-file limit, which is printed with the figures. With `--split`
//! the server side (one `MsrpServer`, or one listener for raw TCP) and the client side run
//! in two processes, each measured on its own: N then needs to fit the limit once per
//! process, so 10,000 and 15,000 sessions fit a limit of 20,000.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use msrp_smol::runtime::{BoxStream, Runtime};
use msrp_smol::{AcceptTypes, ConnectorDirect, MsrpServer, Session, Smol};
use msrp_tokio::Tokio;

/// Sessions set up at once.
const BATCH: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str| args.iter().position(|arg| arg == name).and_then(|at| args.get(at + 1)).cloned();
    let sessions: usize = option("--sessions").map_or(10_000, |text| text.parse().expect("a number of sessions"));
    let runtime = option("--runtime").unwrap_or_else(|| "tokio".into());
    if let Some(role) = option("--role") {
        let kind = option("--measure").expect("--measure raw|msrp");
        let port = option("--port").map(|text| text.parse::<u16>().expect("a port"));
        on_runtime(&runtime, |runtime| async move { one_side(runtime, &kind, &role, port, sessions).await });
        return;
    }
    if args.iter().any(|arg| arg == "--split") {
        split(sessions, &runtime);
        return;
    }
    if let Some(kind) = option("--measure") {
        on_runtime(&runtime, |runtime| async move {
            let (rate, per_connection_pair) = match runtime {
                RuntimeKind::Tokio => measure(Tokio, &kind, sessions).await,
                RuntimeKind::Smol => measure(Smol, &kind, sessions).await,
            };
            println!("{rate:.0} {per_connection_pair:.0}");
        });
        return;
    }
    println!("open-file limit (soft / hard): {}", open_file_limit());
    println!("{sessions} sessions on {runtime}, both sides in one process, each measurement in a process of its own");
    let run = |kind: &str| -> (f64, f64) {
        let output = Command::new(std::env::current_exe().expect("this program"))
            .args(["--measure", kind, "--sessions", &sessions.to_string(), "--runtime", &runtime])
            .output()
            .expect("the measuring process");
        assert!(output.status.success(), "{kind}: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8_lossy(&output.stdout);
        let mut figures = text.split_whitespace().map(|figure| figure.parse::<f64>().expect("a figure"));
        (figures.next().expect("a rate"), figures.next().expect("a size"))
    };
    let (raw_rate, raw_pair) = run("raw");
    let (msrp_rate, msrp_pair) = run("msrp");
    println!("{:<26} {:>12} {:>20} {:>20}", "", "set-ups/s", "bytes per pair", "bytes per side");
    println!("{:<26} {:>12.0} {:>20.0} {:>20.0}", "raw TCP pairs (baseline)", raw_rate, raw_pair, raw_pair / 2.0);
    println!("{:<26} {:>12.0} {:>20.0} {:>20.0}", "MSRP sessions", msrp_rate, msrp_pair, msrp_pair / 2.0);
    println!(
        "MSRP minus raw TCP: {:.0} bytes per session pair, {:.0} per side ({:.1} KiB); set-up rate {:.2}x raw TCP's",
        msrp_pair - raw_pair,
        (msrp_pair - raw_pair) / 2.0,
        (msrp_pair - raw_pair) / 2048.0,
        msrp_rate / raw_rate
    );
}

/// Runs `work` to its end on the runtime named `runtime` (tokio unless `smol`).
fn on_runtime<F, W>(runtime: &str, work: W)
where
    W: FnOnce(RuntimeKind) -> F,
    F: std::future::Future<Output = ()>,
{
    match runtime {
        "smol" => smol::block_on(work(RuntimeKind::Smol)),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(work(RuntimeKind::Tokio)),
    }
}

/// Which runtime a side runs on.
#[derive(Clone, Copy)]
enum RuntimeKind {
    Tokio,
    Smol,
}

/// One side of a `--split` measurement, in its own process: `server` listens, prints
/// `PORT p`, and serves `count` connections of `kind`; `client` makes them to `port`.
/// Each prints its set-up rate and the resident bytes per connection once all are idle,
/// then holds them until its standard input closes.
async fn one_side(runtime: RuntimeKind, kind: &str, role: &str, port: Option<u16>, count: usize) {
    let (rate, per_connection, held) = match runtime {
        RuntimeKind::Tokio => side(Tokio, kind, role, port, count).await,
        RuntimeKind::Smol => side(Smol, kind, role, port, count).await,
    };
    println!("{rate:.0} {per_connection:.0}");
    // The connections stay open until the other side has measured too.
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0_u8; 1]);
    drop(held);
}

/// Sets up this side's `count` connections; their set-up rate, resident bytes each, and
/// the connections.
async fn side<R: Runtime>(
    runtime: R,
    kind: &str,
    role: &str,
    port: Option<u16>,
    count: usize,
) -> (f64, f64, Box<dyn std::any::Any>) {
    measured(&runtime, count, async {
        let held: Box<dyn std::any::Any> = match (kind, role) {
            ("raw", "server") => Box::new(raw_server(&runtime, count).await),
            ("raw", _) => Box::new(raw_clients(&runtime, port.expect("--port"), count).await),
            (_, "server") => Box::new(msrp_server(runtime.clone(), count).await),
            _ => Box::new(msrp_clients(runtime.clone(), port.expect("--port"), count).await),
        };
        (held, Instant::now())
    })
    .await
}

/// Runs `set_up` of `count` connections, which returns them and when it finished; then,
/// after a second of idling (whatever the set-up left to do is done), their set-up rate,
/// the resident bytes each added, and the connections.
async fn measured<R: Runtime, T>(
    runtime: &R,
    count: usize,
    set_up: impl std::future::Future<Output = (T, Instant)>,
) -> (f64, f64, T) {
    let before = resident_bytes();
    let started = Instant::now();
    let (held, finished) = set_up.await;
    let rate = count as f64 / finished.duration_since(started).as_secs_f64();
    runtime.sleep_until(Instant::now() + Duration::from_secs(1)).await;
    let after = resident_bytes();
    (rate, after.saturating_sub(before) as f64 / count as f64, held)
}

/// Tells the other process where to connect.
fn announce(port: u16) {
    println!("PORT {port}");
    std::io::Write::flush(&mut std::io::stdout()).expect("stdout");
}

async fn raw_server<R: Runtime>(runtime: &R, count: usize) -> Vec<BoxStream> {
    let mut listener = runtime.listen(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("a listener");
    announce(listener.local_addr().expect("its address").port());
    let mut served = Vec::with_capacity(count);
    while served.len() < count {
        let batch = BATCH.min(count - served.len());
        let mut accepted = Vec::with_capacity(batch);
        for _ in 0..batch {
            accepted.push(listener.accept().await.expect("an accepted connection").0);
        }
        served.extend(
            futures::future::join_all(accepted.into_iter().map(|mut stream| async move {
                let mut buffer = [0_u8; 5];
                stream.read_exact(&mut buffer).await.expect("read");
                stream.write_all(b"hello").await.expect("written");
                stream
            }))
            .await,
        );
    }
    served
}

async fn raw_clients<R: Runtime>(runtime: &R, port: u16, count: usize) -> Vec<BoxStream> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut connected = Vec::with_capacity(count);
    while connected.len() < count {
        let batch = BATCH.min(count - connected.len());
        connected.extend(
            futures::future::join_all((0..batch).map(|_| async {
                let mut stream = runtime.connect(address, Duration::from_secs(10)).await.expect("a connection");
                let mut buffer = [0_u8; 5];
                stream.write_all(b"hello").await.expect("written");
                stream.read_exact(&mut buffer).await.expect("read");
                stream
            }))
            .await,
        );
    }
    connected
}

async fn msrp_server<R: Runtime>(runtime: R, count: usize) -> Vec<Session<R>> {
    let server = MsrpServer::new(runtime, None);
    let first = server.prepare("msrp://127.0.0.1:0/s0;tcp".parse().expect("a URI"), None).await.expect("listening");
    let port = first[0].port.expect("the port picked");
    for i in 1..count {
        let uri = format!("msrp://127.0.0.1:{port}/s{i};tcp").parse().expect("a URI");
        server.prepare(uri, None).await.expect("prepared");
    }
    announce(port);
    let mut sessions = Vec::with_capacity(count);
    while sessions.len() < count {
        let batch = (sessions.len()..(sessions.len() + BATCH).min(count)).map(|i| {
            let server = &server;
            async move {
                let client_path = vec![format!("msrp://127.0.0.1:2855/c{i};tcp").parse().expect("a URI")];
                let served = Session::new(server.complete(client_path).await.expect("bound"), AcceptTypes::any(), None);
                assert_eq!(&served.receive_chunk().await.expect("received").data[..], b"hello");
                served.send_message("text/plain", Bytes::from_static(b"hello back")).await.expect("sent");
                served
            }
        });
        sessions.extend(futures::future::join_all(batch).await);
    }
    sessions
}

async fn msrp_clients<R: Runtime>(runtime: R, port: u16, count: usize) -> Vec<Session<R>> {
    let mut sessions = Vec::with_capacity(count);
    while sessions.len() < count {
        let batch = (sessions.len()..(sessions.len() + BATCH).min(count)).map(|i| {
            let runtime = runtime.clone();
            async move {
                let mut connector = ConnectorDirect::new(runtime, None, false);
                connector.prepare(Some(format!("msrp://127.0.0.1:2855/c{i};tcp").parse().expect("a URI")));
                let server_path = vec![format!("msrp://127.0.0.1:{port}/s{i};tcp").parse().expect("a URI")];
                let client =
                    Session::new(connector.complete(server_path).await.expect("connected"), AcceptTypes::any(), None);
                client.send_message("text/plain", Bytes::from_static(b"hello")).await.expect("sent");
                assert_eq!(&client.receive_chunk().await.expect("received").data[..], b"hello back");
                client
            }
        });
        sessions.extend(futures::future::join_all(batch).await);
    }
    sessions
}

/// `--split`: each kind measured with its server and its clients in two processes.
fn split(sessions: usize, runtime: &str) {
    use std::io::BufRead;
    use std::process::Stdio;

    println!("open-file limit (soft / hard): {}", open_file_limit());
    println!("{sessions} sessions on {runtime}, server side and client side in two processes");
    let me = std::env::current_exe().expect("this program");
    let spawn = |kind: &str, role: &str, port: Option<u16>| {
        let mut command = Command::new(&me);
        command.args(["--measure", kind, "--role", role, "--sessions", &sessions.to_string(), "--runtime", runtime]);
        if let Some(port) = port {
            command.args(["--port", &port.to_string()]);
        }
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("a measuring process")
    };
    let figures = |line: String| -> (f64, f64) {
        let mut figures = line.split_whitespace().map(|figure| figure.parse::<f64>().expect("a figure"));
        (figures.next().expect("a rate"), figures.next().expect("a size"))
    };
    println!("{:<34} {:>12} {:>20}", "", "set-ups/s", "bytes per connection");
    let mut results = Vec::new();
    for kind in ["raw", "msrp"] {
        let mut server = spawn(kind, "server", None);
        let mut server_lines = std::io::BufReader::new(server.stdout.take().expect("its output")).lines();
        let port_line = server_lines.next().expect("the port").expect("a line");
        let port: u16 = port_line.strip_prefix("PORT ").expect("PORT p").parse().expect("a port");
        let mut client = spawn(kind, "client", Some(port));
        let client_line = std::io::BufReader::new(client.stdout.take().expect("its output"))
            .lines()
            .next()
            .expect("the client's figures")
            .expect("a line");
        let server_line = server_lines.next().expect("the server's figures").expect("a line");
        drop((client.stdin.take(), server.stdin.take()));
        let _ = (client.wait(), server.wait());
        let (client_rate, client_bytes) = figures(client_line);
        let (_, server_bytes) = figures(server_line);
        let name = if kind == "raw" { "raw TCP (baseline)" } else { "MSRP" };
        println!("{:<34} {:>12.0} {:>20.0}", format!("{name}, server side"), "", server_bytes);
        println!("{:<34} {:>12.0} {:>20.0}", format!("{name}, client side"), client_rate, client_bytes);
        results.push((client_rate, server_bytes, client_bytes));
    }
    let (raw, msrp) = (results[0], results[1]);
    println!(
        "MSRP minus raw TCP per session: server side {:.1} KiB, client side {:.1} KiB; set-up rate {:.2}x raw TCP's",
        (msrp.1 - raw.1) / 1024.0,
        (msrp.2 - raw.2) / 1024.0,
        msrp.0 / raw.0
    );
}

/// Sets up `count` idle connection pairs of `kind` (`raw` or `msrp`); returns pairs set
/// up per second and the resident bytes each pair added.
async fn measure<R: Runtime>(runtime: R, kind: &str, count: usize) -> (f64, f64) {
    let (rate, per_pair, held) = measured(&runtime, count, async {
        if kind == "raw" {
            let (pairs, finished) = raw_pairs(&runtime, count).await;
            (Box::new(pairs) as Box<dyn std::any::Any>, finished)
        } else {
            let (sessions, finished) = msrp_sessions(runtime.clone(), count).await;
            (Box::new(sessions) as Box<dyn std::any::Any>, finished)
        }
    })
    .await;
    drop(held);
    (rate, per_pair)
}

/// `count` connections accepted and connected, with a few bytes each way.
async fn raw_pairs<R: Runtime>(runtime: &R, count: usize) -> (Vec<(BoxStream, BoxStream)>, Instant) {
    let mut listener = runtime.listen(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("a listener");
    let address = listener.local_addr().expect("its address");
    let mut pairs = Vec::with_capacity(count);
    while pairs.len() < count {
        let batch = BATCH.min(count - pairs.len());
        let connects: Vec<_> = (0..batch).map(|_| runtime.connect(address, Duration::from_secs(10))).collect();
        let accepts = async {
            let mut accepted = Vec::with_capacity(batch);
            for _ in 0..batch {
                accepted.push(listener.accept().await.expect("an accepted connection").0);
            }
            accepted
        };
        let (connected, accepted) = futures::join!(futures::future::join_all(connects), accepts);
        let exchanges = connected.into_iter().zip(accepted).map(|(connected, accepted)| async move {
            let (mut connected, mut accepted) = (connected.expect("a connection"), accepted);
            let mut buffer = [0_u8; 16];
            connected.write_all(b"hello").await.expect("written");
            accepted.read_exact(&mut buffer[..5]).await.expect("read");
            accepted.write_all(b"hello").await.expect("written");
            connected.read_exact(&mut buffer[..5]).await.expect("read");
            (connected, accepted)
        });
        pairs.extend(futures::future::join_all(exchanges).await);
    }
    (pairs, Instant::now())
}

/// `count` sessions on one server port: each connects, binds, and sends one message
/// each way.
async fn msrp_sessions<R: Runtime>(runtime: R, count: usize) -> (Vec<(Session<R>, Session<R>)>, Instant) {
    let server = MsrpServer::new(runtime.clone(), None);
    let first = server.prepare("msrp://127.0.0.1:0/s0;tcp".parse().expect("a URI"), None).await.expect("listening");
    let port = first[0].port.expect("the port picked");
    let mut sessions = Vec::with_capacity(count);
    while sessions.len() < count {
        let batch = (sessions.len()..(sessions.len() + BATCH).min(count)).map(|i| {
            let (server, runtime, first) = (&server, runtime.clone(), &first);
            async move {
                let server_path = if i == 0 {
                    first.clone()
                } else {
                    let uri = format!("msrp://127.0.0.1:{port}/s{i};tcp").parse().expect("a URI");
                    server.prepare(uri, None).await.expect("prepared")
                };
                let mut connector = ConnectorDirect::new(runtime, None, false);
                let client_path =
                    connector.prepare(Some(format!("msrp://127.0.0.1:2855/c{i};tcp").parse().expect("a URI")));
                let (client, served) = futures::join!(connector.complete(server_path), server.complete(client_path));
                let client = Session::new(client.expect("connected"), AcceptTypes::any(), None);
                let served = Session::new(served.expect("bound"), AcceptTypes::any(), None);
                client.send_message("text/plain", Bytes::from_static(b"hello")).await.expect("sent");
                assert_eq!(&served.receive_chunk().await.expect("received").data[..], b"hello");
                served.send_message("text/plain", Bytes::from_static(b"hello back")).await.expect("sent");
                assert_eq!(&client.receive_chunk().await.expect("received").data[..], b"hello back");
                (client, served)
            }
        });
        sessions.extend(futures::future::join_all(batch).await);
    }
    (sessions, Instant::now())
}

/// `VmRSS` of this process, in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:")).expect("VmRSS");
    line.trim().trim_end_matches("kB").trim().parse::<u64>().expect("a size in kB") * 1024
}

/// "soft / hard" from the "Max open files" line of `/proc/self/limits`.
fn open_file_limit() -> String {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|line| line.starts_with("Max open files")).unwrap_or_default();
    let figures: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    figures.join(" / ")
}
