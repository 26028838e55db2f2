//! `msrp demo`: Alice and Bob, two MSRP sessions on 127.0.0.1 in one process on the tokio
//! adapter. Bob listens (`AcceptorDirect`), Alice connects and binds (`ConnectorDirect`);
//! they chat both ways, then Alice streams a generated 256 MiB file (another size with
//! the hidden `--size`, for tests) to Bob. Every message asks for a success REPORT, and
//! both ends hash what they send and receive.

use std::io;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::io::AsyncRead;
use msrp_tokio::core::Uri;
use msrp_tokio::core::header::{HeaderName, Headers};
use msrp_tokio::{AcceptTypes, AcceptorDirect, ConnectorDirect, OutgoingFile, Session, Tokio};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::events::{self, Incoming, Reports};
use crate::failure::{Failure, describe};
use crate::inbox::{Arrival, Inbox, Limits, Received};
use crate::output::{Output, hex};
use crate::recv::path_text;
use crate::send::{Counted, REPORT_PATIENCE, Sent, send_text, settle};

/// The size of the generated file.
pub(crate) const FILE_SIZE: u64 = 256 << 20;
const MIB: f64 = 1024.0 * 1024.0;

/// Who says what, in order: `true` when Alice speaks.
const CHAT: [(bool, &str); 4] = [
    (true, "Hello Bob, can you hear me?"),
    (false, "Loud and clear, Alice. Over MSRP, no less."),
    (true, "Sending you a file of test data now."),
    (false, "Ready when you are; I will check its SHA-256."),
];

/// One side of the demo.
struct Peer {
    name: &'static str,
    session: Arc<Session>,
    incoming: mpsc::Receiver<Incoming>,
    reports: Reports,
}

impl Peer {
    fn new(name: &'static str, session: Session) -> Self {
        let session = Arc::new(session);
        let (incoming, reports) = events::spawn(Arc::clone(&session), Inbox::new(None, Limits::default()));
        Self { name, session, incoming, reports }
    }

    /// The next whole message, or why none came.
    async fn next_message(&mut self) -> Result<Received, String> {
        match self.incoming.recv().await {
            Some(Incoming::Arrival(Arrival::Complete(message))) => Ok(message),
            Some(Incoming::Arrival(Arrival::Aborted { message_id, .. })) => {
                Err(format!("{} saw message {message_id} aborted", self.name))
            }
            Some(Incoming::Arrival(Arrival::Skipped { message_id, reason, .. })) => {
                Err(format!("{} skipped message {message_id}: {reason}", self.name))
            }
            Some(Incoming::Failed { text, .. }) => Err(text),
            Some(Incoming::Incomplete(message_id, size)) => {
                Err(format!("{} got only {size} bytes of {message_id}", self.name))
            }
            Some(Incoming::Ended(reason)) => {
                let why = reason.map_or_else(|| "closed".to_owned(), |reason| reason.to_string());
                Err(format!("{}'s session ended: {why}", self.name))
            }
            None => Err(format!("{}'s session ended", self.name)),
        }
    }
}

/// What the demo counts.
#[derive(Default)]
struct Tally {
    messages: usize,
    delivered: usize,
    bytes: u64,
    problems: Vec<String>,
}

/// Runs the demo with a generated file of `file_size` bytes.
pub(crate) async fn run(file_size: u64) -> Result<ExitCode, Failure> {
    let out = Output::new(false, false);
    let started = Instant::now();
    let mut acceptor = AcceptorDirect::new(Tokio, None, false);
    let bob_path = acceptor
        .prepare(Some(Uri::new("127.0.0.1").with_port(0)))
        .await
        .map_err(|error| Failure::fatal(format!("cannot listen on 127.0.0.1: {error}")))?;
    println!("Bob listens at   {}", path_text(&bob_path));
    let mut connector = ConnectorDirect::new(Tokio, None, false);
    let alice_path = connector.prepare(None);
    println!("Alice connects as {}", path_text(&alice_path));
    let (outbound, inbound) = tokio::join!(connector.complete(bob_path), acceptor.complete(alice_path));
    let outbound = outbound.map_err(|error| Failure::fatal(format!("Alice: {}", describe(&error, "Bob"))))?;
    let inbound = inbound.map_err(|error| Failure::fatal(format!("Bob: {}", describe(&error, "Alice"))))?;
    println!("bound: the session is up ({:.0} ms)", started.elapsed().as_secs_f64() * 1000.0);
    let mut alice = Peer::new("Alice", Session::new(outbound, AcceptTypes::any(), None));
    let mut bob = Peer::new("Bob", Session::new(inbound, AcceptTypes::any(), None));
    let mut tally = Tally::default();

    for (alice_speaks, text) in CHAT {
        let (from, to) = if alice_speaks { (&mut alice, &mut bob) } else { (&mut bob, &mut alice) };
        chat(from, to, text, &mut tally).await;
    }

    let (file_ok, seconds) = file(&mut alice, &mut bob, file_size, &out, &mut tally).await;
    alice.session.shutdown(true).await;
    // Bob hears the end.
    let _ = bob.next_message().await;

    println!("--");
    let confirmed = if tally.delivered == tally.messages {
        "each confirmed by a success REPORT"
    } else {
        "the others not confirmed by a success REPORT"
    };
    println!(
        "messages:     {} of {} delivered ({} chat, 1 file), {confirmed}",
        tally.delivered,
        tally.messages,
        CHAT.len()
    );
    println!("bytes:        {} ({:.0} MiB)", tally.bytes, tally.bytes as f64 / MIB);
    println!(
        "throughput:   {:.0} MiB/s for the file ({:.2} s over 127.0.0.1)",
        file_size as f64 / MIB / seconds.max(1e-9),
        seconds
    );
    println!("verification: {}", if file_ok { "SHA-256 equal at both ends" } else { "FAILED" });
    for problem in &tally.problems {
        println!("problem:      {problem}");
    }
    let ok = tally.problems.is_empty() && file_ok && tally.delivered == tally.messages;
    println!("{}", if ok { "demo OK: everything delivered intact" } else { "demo FAILED" });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One chat message: sent, received, answered with 200 and reported.
async fn chat(from: &mut Peer, to: &mut Peer, text: &str, tally: &mut Tally) {
    tally.messages += 1;
    let size = text.len() as u64;
    let sent = match send_text(&from.session, "text/plain", Bytes::copy_from_slice(text.as_bytes()), true).await {
        Ok(message) => {
            let message_id = message.message_id.clone();
            let outcome = message.outcome().await;
            settle(&from.reports, message_id, outcome, size, Some(REPORT_PATIENCE)).await
        }
        Err(error) => {
            tally.problems.push(format!("{} could not send: {error}", from.name));
            return;
        }
    };
    match to.next_message().await {
        Ok(received) if received.text.as_deref() == Some(text) => {}
        Ok(received) => tally.problems.push(format!("{} got {:?} instead of {text:?}", to.name, received.text)),
        Err(error) => tally.problems.push(error),
    }
    println!("{:>5} → {:<5} {text:?}: {}", from.name, to.name, outcome_text(&sent));
    if sent.delivered {
        tally.delivered += 1;
        tally.bytes += size;
    } else {
        tally.problems.push(format!("{}'s message was not delivered: {}", from.name, outcome_text(&sent)));
    }
}

/// The file: generated as it is read, hashed on both sides. Returns whether it arrived
/// intact and the seconds it took.
async fn file(alice: &mut Peer, bob: &mut Peer, size: u64, out: &Output, tally: &mut Tally) -> (bool, f64) {
    tally.messages += 1;
    let digest = Arc::new(Mutex::new(None));
    let generator = Generated { size, position: 0, hasher: Sha256::new(), digest: Arc::clone(&digest) };
    let bar = out.bytes_bar(size, "Alice → Bob");
    let mut headers = Headers::new();
    headers.set(HeaderName::SuccessReport, "yes");
    headers.set(HeaderName::ContentDisposition, "attachment; filename=\"demo.bin\"");
    let file = OutgoingFile {
        reader: Box::new(Counted { inner: generator, bar: bar.clone() }),
        file: msrp_tokio::core::session::OutgoingFile {
            size,
            content_type: Some("application/octet-stream".to_owned()),
            headers,
            ..msrp_tokio::core::session::OutgoingFile::default()
        },
    };
    let started = Instant::now();
    let message = match alice.session.send_file(file).await {
        Ok(message) => message,
        Err(error) => {
            bar.finish_and_clear();
            tally.problems.push(format!("Alice could not start the file: {error}"));
            return (false, started.elapsed().as_secs_f64());
        }
    };
    let message_id = message.message_id.clone();
    let (received, outcome) = tokio::join!(bob.next_message(), message.outcome());
    let seconds = started.elapsed().as_secs_f64();
    let sent = settle(&alice.reports, message_id, outcome, size, Some(REPORT_PATIENCE)).await;
    bar.finish_and_clear();
    println!("Alice → Bob   {} file: {}", size_text(size), outcome_text(&sent));
    let sent_digest = *digest.lock().unwrap_or_else(PoisonError::into_inner);
    let received = match received {
        Ok(received) => received,
        Err(error) => {
            tally.problems.push(error);
            return (false, seconds);
        }
    };
    let show = |digest: Option<[u8; 32]>| digest.map_or_else(|| "none".to_owned(), |digest| hex(&digest));
    println!("  SHA-256 sent     {}", show(sent_digest));
    println!("  SHA-256 received {} ({} bytes)", show(received.sha256), received.size);
    let intact = sent_digest.is_some() && sent_digest == received.sha256 && received.size == size;
    if sent.delivered {
        tally.delivered += 1;
        tally.bytes += size;
    } else {
        tally.problems.push(format!("the file was not delivered: {}", outcome_text(&sent)));
    }
    (intact, seconds)
}

/// `256 MiB` for whole MiB, else bytes.
fn size_text(size: u64) -> String {
    if size % (1 << 20) == 0 { format!("{} MiB", size >> 20) } else { format!("{size}-byte") }
}

fn outcome_text(sent: &Sent) -> String {
    let code = sent.code.map_or_else(|| "-".to_owned(), |code| code.to_string());
    match sent.bytes_reported {
        Some(bytes) => format!("{code} {}, success REPORT for {bytes} bytes", sent.reason),
        None => format!("{code} {}", sent.reason),
    }
}

/// The generated file: 8 bytes of `SplitMix64` per 8-byte word, the same on every run;
/// hashed as it is read, the digest published at its end.
struct Generated {
    size: u64,
    position: u64,
    hasher: Sha256,
    digest: Arc<Mutex<Option<[u8; 32]>>>,
}

/// `SplitMix64` of `index`: a well-mixed word for each position.
fn splitmix64(index: u64) -> u64 {
    let mut z = index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buffer` with the file's bytes from `position`.
fn fill(position: u64, buffer: &mut [u8]) {
    let mut at = position;
    let mut filled = 0;
    while filled < buffer.len() {
        let word = splitmix64(at / 8).to_le_bytes();
        let offset = (at % 8) as usize;
        let n = (8 - offset).min(buffer.len() - filled);
        buffer[filled..filled + n].copy_from_slice(&word[offset..offset + n]);
        filled += n;
        at += n as u64;
    }
}

impl AsyncRead for Generated {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buffer: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = (this.size - this.position).min(buffer.len() as u64) as usize;
        fill(this.position, &mut buffer[..n]);
        this.hasher.update(&buffer[..n]);
        this.position += n as u64;
        if this.position == this.size && n > 0 {
            let digest: [u8; 32] = std::mem::take(&mut this.hasher).finalize().into();
            *this.digest.lock().unwrap_or_else(PoisonError::into_inner) = Some(digest);
        }
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_file_is_the_same_however_it_is_read() {
        let mut whole = vec![0_u8; 100];
        fill(0, &mut whole);
        let mut pieces = vec![0_u8; 100];
        fill(0, &mut pieces[..3]);
        fill(3, &mut pieces[3..50]);
        fill(50, &mut pieces[50..]);
        assert_eq!(whole, pieces);
        assert_ne!(whole[..8], whole[8..16]);
    }
}
