//! Transfer benchmark over 127.0.0.1 (not a test): one file sent as one MSRP message on
//! each adapter, next to raw TCP moving the same bytes in the same run, each side in a
//! process of its own so that its peak RSS can be read; then the rate of small messages.
//!
//! `cargo run --release -p msrp-tests --bin transfer_bench [MiB]` (default 1024).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::io::AsyncRead;
use msrp_core::Uri;
use msrp_core::header::Headers;
use msrp_core::session::MessageOutcome;
use msrp_smol::runtime::Runtime;
use msrp_smol::{AcceptTypes, AcceptorDirect, ConnectorDirect, OutgoingFile, Session, Smol};
use msrp_tokio::Tokio;

const SENDER: &str = "msrp://127.0.0.1:2855/bench-sender;tcp";
/// `tokio` runs each side on a current-thread runtime (one thread per process, like the
/// raw TCP side); `tokio-mt` on a multi-thread runtime with two workers.
const MODES: [&str; 5] = ["raw-tcp", "tokio", "tokio-mt", "smol", "blocking"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("receive") => receive(&args[2], parse_size(&args[3])),
        Some("send") => send(&args[2], &args[3], parse_size(&args[4])),
        other => {
            let mib: u64 = other.and_then(|text| text.parse().ok()).unwrap_or(1024);
            compare(mib << 20);
        }
    }
}

fn parse_size(text: &str) -> u64 {
    text.parse().expect("a size in bytes")
}

/// Runs every mode as a pair of processes and prints throughput and peak RSS.
fn compare(size: u64) {
    // The machine's speed drifts between seconds (raw TCP most), so the modes take turns
    // for nine rounds. Each is reported by its median rate, that median over raw TCP's,
    // and the median of its ratios to the raw TCP run of the same round.
    const ROUNDS: usize = 9;
    println!("{} MiB over 127.0.0.1, one message, sender and receiver in separate processes", size >> 20);
    println!("{ROUNDS} rounds, the modes taking turns");
    let mut runs: Vec<Vec<Run>> = MODES.iter().map(|_| Vec::new()).collect();
    for _ in 0..ROUNDS {
        for (mode, runs) in MODES.iter().zip(&mut runs) {
            runs.push(transfer(mode, size));
        }
    }
    println!(
        "{:<10} {:>8} {:>8} {:>11} {:>13} {:>16} {:>16}",
        "mode", "MiB/s", "vs raw", "per round", "range", "sender RSS max", "receiver RSS max"
    );
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let raw: Vec<f64> = runs[0].iter().map(|run| run.rate).collect();
    let base = median(raw.clone());
    for (mode, runs) in MODES.iter().zip(&runs) {
        let rates: Vec<f64> = runs.iter().map(|run| run.rate).collect();
        let rate = median(rates.clone());
        let per_round = median(rates.iter().zip(&raw).map(|(rate, raw)| rate / raw).collect());
        let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let fastest = rates.iter().copied().fold(0.0, f64::max);
        let range = format!("{slowest:.0}-{fastest:.0}");
        let sender = runs.iter().map(|run| run.sender_peak_kib).max().unwrap_or(0);
        let receiver = runs.iter().map(|run| run.receiver_peak_kib).max().unwrap_or(0);
        println!(
            "{mode:<10} {rate:>8.0} {:>7.2}x {per_round:>10.2}x {range:>13} {sender:>12} KiB {receiver:>12} KiB",
            rate / base
        );
    }
    for mode in ["tokio-mt", "smol", "blocking"] {
        let (count, elapsed) = small_messages(mode, 20_000);
        println!(
            "{mode:<10} {:>10.0} small messages/s (1 KiB text/plain, Failure-Report yes, pipelined)",
            count as f64 / elapsed.as_secs_f64()
        );
    }
}

/// One transfer: its rate and each side's peak RSS.
struct Run {
    rate: f64,
    sender_peak_kib: u64,
    receiver_peak_kib: u64,
}

/// Moves `size` bytes in `mode` between two fresh processes.
fn transfer(mode: &str, size: u64) -> Run {
    let exe = std::env::current_exe().expect("own path");
    let mut receiver = Command::new(&exe)
        .args(["receive", mode, &size.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("receiver starts");
    let mut lines = BufReader::new(receiver.stdout.take().expect("piped"));
    let mut address = String::new();
    lines.read_line(&mut address).expect("the receiver says where it listens");
    let started = Instant::now();
    let sender = Command::new(&exe)
        .args(["send", mode, address.trim(), &size.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sender starts");
    let mut receiver_report = String::new();
    lines.read_to_string(&mut receiver_report).expect("receiver report");
    let elapsed = started.elapsed();
    let sender_report = String::from_utf8(sender.wait_with_output().expect("sender ends").stdout).unwrap_or_default();
    let _ = receiver.wait();
    Run {
        rate: size as f64 / f64::from(1 << 20) / elapsed.as_secs_f64(),
        sender_peak_kib: peak_of(&sender_report),
        receiver_peak_kib: peak_of(&receiver_report),
    }
}

fn peak_of(report: &str) -> u64 {
    report.lines().find_map(|line| line.strip_prefix("peak-rss-kib ")?.trim().parse().ok()).unwrap_or(0)
}

/// This process's peak resident set size.
fn print_peak_rss() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .map(|value| value.trim().trim_end_matches(" kB").to_owned());
    println!("peak-rss-kib {}", peak.unwrap_or_else(|| "?".into()));
}

/// A reader of `size` bytes of a repeating pattern, produced as they are read (by
/// copying, so that generating the data costs next to nothing in every mode).
struct Pattern {
    left: u64,
    offset: usize,
}

impl Pattern {
    fn new(size: u64) -> Self {
        Self { left: size, offset: 0 }
    }
}

/// 251 is prime, so the pattern does not line up with any buffer size.
static CYCLE: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| (0..251 * 1024_usize).map(|i| (i % 251) as u8).collect());

impl Read for Pattern {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = buffer.len().min(usize::try_from(self.left).unwrap_or(usize::MAX)).min(CYCLE.len() - 251);
        buffer[..n].copy_from_slice(&CYCLE[self.offset..self.offset + n]);
        self.offset = (self.offset + n) % 251;
        self.left -= n as u64;
        Ok(n)
    }
}

impl AsyncRead for Pattern {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buffer: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Read::read(self.get_mut(), buffer))
    }
}

fn outgoing(size: u64) -> msrp_core::session::OutgoingFile {
    msrp_core::session::OutgoingFile {
        size,
        content_type: Some("application/octet-stream".into()),
        position: 0,
        message_id: None,
        headers: Headers::new(),
    }
}

fn receive(mode: &str, size: u64) {
    let mut received = 0_u64;
    match mode {
        "raw-tcp" => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
            println!("{}", listener.local_addr().expect("address"));
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buffer = vec![0_u8; 64 * 1024];
            while received < size {
                let n = stream.read(&mut buffer).expect("read");
                if n == 0 {
                    break;
                }
                received += n as u64;
            }
        }
        "blocking" => {
            let mut acceptor = msrp_blocking::AcceptorDirect::new(None, false);
            let path =
                acceptor.prepare(Some("msrp://127.0.0.1:0/bench-receiver;tcp".parse().expect("URI"))).expect("listen");
            println!("{}", path[0]);
            flush();
            let session =
                msrp_blocking::Session::new(acceptor.complete(sender_path()).expect("bind"), AcceptTypes::any(), None);
            while received < size {
                received += session.receive_chunk().expect("chunk").data.len() as u64;
            }
            // Stay until the sender, answered, ends the session.
            while session.receive_chunk().is_ok() {}
        }
        "tokio" | "tokio-mt" => {
            let runtime = tokio_runtime(mode);
            // The work runs as a task on the runtime's workers, as in a tokio program.
            received = runtime.block_on(runtime.spawn(receive_async(Tokio, size))).expect("receiver task");
        }
        _ => received = smol::block_on(receive_async(Smol, size)),
    }
    assert_eq!(received, size, "bytes received");
    print_peak_rss();
}

async fn receive_async<R: Runtime>(runtime: R, size: u64) -> u64 {
    let mut acceptor = AcceptorDirect::new(runtime, None, false);
    let path =
        acceptor.prepare(Some("msrp://127.0.0.1:0/bench-receiver;tcp".parse().expect("URI"))).await.expect("listen");
    println!("{}", path[0]);
    flush();
    let session = Session::new(acceptor.complete(sender_path()).await.expect("bind"), AcceptTypes::any(), None);
    let mut received = 0;
    while received < size {
        received += session.receive_chunk().await.expect("chunk").data.len() as u64;
    }
    // Stay until the sender, answered, ends the session.
    while session.receive_chunk().await.is_ok() {}
    received
}

fn tokio_runtime(mode: &str) -> tokio::runtime::Runtime {
    let mut builder = match mode {
        "tokio-mt" => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build().expect("tokio")
}

fn sender_path() -> Vec<Uri> {
    vec![SENDER.parse().expect("URI")]
}

fn flush() {
    let _ = std::io::stdout().flush();
}

fn send(mode: &str, address: &str, size: u64) {
    match mode {
        "raw-tcp" => {
            let mut stream = std::net::TcpStream::connect(address).expect("connect");
            let mut pattern = Pattern::new(size);
            let mut buffer = vec![0_u8; 64 * 1024];
            loop {
                let n = pattern.read(&mut buffer).expect("pattern");
                if n == 0 {
                    break;
                }
                stream.write_all(&buffer[..n]).expect("write");
            }
        }
        "blocking" => {
            let mut connector = msrp_blocking::ConnectorDirect::new(None, false);
            connector.prepare(Some(SENDER.parse().expect("URI")));
            let remote = vec![address.parse().expect("URI")];
            let session =
                msrp_blocking::Session::new(connector.complete(remote).expect("bind"), AcceptTypes::any(), None);
            let file = msrp_blocking::OutgoingFile { reader: Box::new(Pattern::new(size)), file: outgoing(size) };
            assert_eq!(session.send_file(file).expect("send").outcome(), MessageOutcome::Delivered);
            session.shutdown(true);
        }
        "tokio" | "tokio-mt" => {
            let runtime = tokio_runtime(mode);
            let address = address.to_owned();
            runtime
                .block_on(runtime.spawn(async move { send_async(Tokio, &address, size).await }))
                .expect("sender task");
        }
        _ => smol::block_on(send_async(Smol, address, size)),
    }
    print_peak_rss();
}

async fn send_async<R: Runtime>(runtime: R, address: &str, size: u64) {
    let mut connector = ConnectorDirect::new(runtime, None, false);
    connector.prepare(Some(SENDER.parse().expect("URI")));
    let session = Session::new(
        connector.complete(vec![address.parse().expect("URI")]).await.expect("bind"),
        AcceptTypes::any(),
        None,
    );
    let file = OutgoingFile { reader: Box::new(Pattern::new(size)), file: outgoing(size) };
    assert_eq!(session.send_file(file).await.expect("send").outcome().await, MessageOutcome::Delivered);
    session.shutdown(true).await;
}

/// Sends `count` pipelined 1 KiB messages between two sessions of one process and waits
/// for every 200.
fn small_messages(mode: &str, count: usize) -> (usize, Duration) {
    let run = |a, b| async move { Box::pin(small_messages_on(a, b, count)).await };
    let elapsed = match mode {
        "tokio-mt" => tokio_runtime(mode).block_on(small_messages_on(Tokio, Tokio, count)),
        "smol" => smol::block_on(small_messages_on(Smol, Smol, count)),
        _ => futures::executor::block_on(run(msrp_blocking::Threads, msrp_blocking::Threads)),
    };
    (count, elapsed)
}

async fn small_messages_on<A: Runtime, B: Runtime>(a: A, b: B, count: usize) -> Duration {
    let mut acceptor = AcceptorDirect::new(b, None, false);
    let path =
        acceptor.prepare(Some("msrp://127.0.0.1:0/small-receiver;tcp".parse().expect("URI"))).await.expect("listen");
    let mut connector = ConnectorDirect::new(a, None, false);
    connector.prepare(Some(SENDER.parse().expect("URI")));
    let (outbound, inbound) = futures::join!(connector.complete(path), acceptor.complete(sender_path()));
    let sender = Session::new(outbound.expect("bind"), AcceptTypes::any(), None);
    let receiver = Session::new(inbound.expect("bind"), AcceptTypes::any(), None);
    let body = Bytes::from(vec![b'x'; 1024]);
    let started = Instant::now();
    let drain = async {
        for _ in 0..count {
            receiver.receive_chunk().await.expect("message");
        }
    };
    let send_all = async {
        let mut outcomes = Vec::with_capacity(count);
        for _ in 0..count {
            outcomes.push(sender.send_message("text/plain", body.clone()).await.expect("send"));
        }
        for outcome in outcomes {
            assert_eq!(outcome.outcome().await, MessageOutcome::Delivered);
        }
    };
    futures::join!(drain, send_all);
    started.elapsed()
}
