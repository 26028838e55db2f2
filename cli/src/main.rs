//! The `msrp` command: send and receive MSRP (RFC 4975) messages and files by hand, on
//! the tokio adapter (`msrp-tokio`).
//!
//! Subcommands:
//! - `msrp recv --local-uri URI (--remote-path "URI …" | --accept-any)`: listens, prints
//!   its full local path (what the other side puts in SDP), lets the peer bind, then prints
//!   one line per received message (Message-ID, content type, size, SHA-256, and the file
//!   when `--out DIR` saves bodies, streamed to disk). A message counts once every byte
//!   of it has arrived; what a peer can make recv hold is bounded (`--max-size`, 16
//!   messages in progress at once). A message's success REPORT goes out only once it is
//!   written and flushed to disk; one skipped or not saved gets a failure REPORT. Every
//!   peer refused (481, 400) is printed with its address and the reason. Ends after
//!   `--count N` messages (printing what still arrives while the session closes) or when
//!   the peer ends the session; exits 1 when a message was left incomplete by the peer.
//! - `msrp send --remote-path "URI …" (--text TEXT | --file PATH)…`: connects, binds,
//!   sends each item in order (files streamed, with a progress bar), and prints one line
//!   per message with its outcome (with `--success-report`, waiting `--report-timeout`
//!   for its REPORTs); exits 0 only if every message was delivered.
//! - `msrp demo`: a receiver and a sender on 127.0.0.1 in one process: chat both ways
//!   and a generated 256 MiB file checked with SHA-256 at both ends, then a short report.
//! - `msrp decode`: reads MSRP bytes (a capture) from standard input and prints one line
//!   per chunk and one per error (with its position), going on after each error.
//!
//! `--trace` on `recv` and `send` prints every chunk sent and received on standard
//! error; `RUST_LOG` (e.g. `RUST_LOG=msrp=debug`) shows the library's diagnostics there.
//! Ctrl-C stops `recv` (partial files removed) and `send` (the message in progress
//! aborted with `#`, the session closed), with exit code 130.
//!
//! With `--json`, `recv` and `send` print one JSON object per line. Errors a person can
//! act on (a bad URI, a refused connection, a 481, a TLS failure) print one line starting
//! with `msrp:` on standard error (and, with `--json`, an `error` event on standard
//! output) and exit non-zero: 2 for bad input, 1 for everything else.

mod decode;
mod demo;
mod events;
mod failure;
mod inbox;
mod interrupt;
mod output;
mod recv;
mod relay;
mod send;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::failure::Failure;
use crate::inbox::Limits;

/// Send and receive MSRP (RFC 4975) messages and files.
#[derive(Debug, Parser)]
#[command(name = "msrp", version, about, propagate_version = true)]
#[command(after_help = "Set RUST_LOG (e.g. RUST_LOG=msrp=debug) to see the library's diagnostics on standard error.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Listen for one MSRP session and print what arrives.
    #[command(group(ArgGroup::new("peer").required(true).args(["remote_path", "accept_any"])))]
    #[command(after_help = RECV_NOTES)]
    Recv(RecvArgs),
    /// Connect to an MSRP peer and send text messages and files.
    #[command(group(ArgGroup::new("items").required(true).multiple(true).args(["text", "file"])))]
    #[command(group(ArgGroup::new("trust").args(["ca", "fingerprint"])))]
    #[command(after_help = SEND_NOTES)]
    Send(SendArgs),
    /// Exchange chat messages and a 256 MiB file between two sessions on 127.0.0.1.
    Demo(DemoArgs),
    /// Print the chunks of MSRP bytes read from standard input.
    Decode,
}

/// The end of `msrp recv --help`.
const RECV_NOTES: &str = "Each chunk is answered 200 as it arrives; a message's success REPORT goes out once the \
message is written and flushed to disk, and a message skipped or not saved gets a failure REPORT instead. Every \
connection refused (a wrong path or session id, bytes that are not MSRP) is printed with the peer's address and the \
reason. Ctrl-C closes the session, removes partial files and exits with code 130. RUST_LOG=msrp=debug shows the \
library's diagnostics on standard error.";

/// The end of `msrp send --help`.
const SEND_NOTES: &str = "Ctrl-C aborts the message in progress (its next chunk ends it with #), closes the \
session and exits with code 130. RUST_LOG=msrp=debug shows the library's diagnostics on standard error.";

/// Arguments of `msrp recv`.
#[derive(Debug, clap::Args)]
pub(crate) struct RecvArgs {
    /// Our URI, e.g. `msrp://127.0.0.1:0/bob;tcp` (port 0 picks a free port; a missing
    /// session id is made up). `msrps://` needs --tls-cert and --tls-key. With --relay,
    /// nothing listens: it only names us in the path (made up when not given).
    #[arg(long, value_name = "URI", required_unless_present = "relay")]
    pub(crate) local_uri: Option<String>,
    /// The peer's full path from its SDP (space-separated URIs, its own last).
    #[arg(long, value_name = "URI …")]
    pub(crate) remote_path: Option<String>,
    /// Bind whatever From-Path the first request carries.
    #[arg(long)]
    pub(crate) accept_any: bool,
    /// Save every message's body in this folder (streamed to disk).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Skip (and say so) any message larger than this many bytes; its partial file is
    /// removed.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::MAX_SIZE, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_size: u64,
    /// Exit after this many messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Certificate chain (PEM) shown on an `msrps://` local URI.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Seconds to wait for the peer to connect and bind.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) timeout: u64,
    /// Print one JSON object per line.
    #[arg(long)]
    pub(crate) json: bool,
    /// Print every chunk sent and received on standard error (a text body cut to its
    /// first 256 bytes with a count of the rest; a binary body only counted).
    #[arg(long)]
    pub(crate) trace: bool,
    #[command(flatten)]
    pub(crate) relay: relay::RelayArgs,
}

/// Arguments of `msrp send`.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The peer's full path from its SDP (space-separated URIs, its own last).
    #[arg(long, value_name = "URI …")]
    pub(crate) remote_path: String,
    /// Our URI, as the peer expects it in From-Path (default: made up, on 127.0.0.1:2855).
    #[arg(long, value_name = "URI")]
    pub(crate) local_uri: Option<String>,
    /// A text message to send (repeatable; items go in the order given).
    #[arg(long, value_name = "TEXT")]
    pub(crate) text: Vec<String>,
    /// A file to send, streamed (repeatable; items go in the order given).
    #[arg(long, value_name = "PATH")]
    pub(crate) file: Vec<PathBuf>,
    /// Content type of every item (default: text/plain for --text,
    /// application/octet-stream for --file).
    #[arg(long, value_name = "TYPE")]
    pub(crate) content_type: Option<String>,
    /// Ask for success REPORTs and wait for them after each item (see --report-timeout).
    #[arg(long)]
    pub(crate) success_report: bool,
    /// Seconds to wait for an item's success REPORTs once its chunks were answered.
    #[arg(long, value_name = "SECONDS", requires = "success_report", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) report_timeout: u64,
    /// Largest chunk body in bytes (at most 16 MiB).
    #[arg(long, value_name = "BYTES", value_parser = chunk_size)]
    pub(crate) chunk_size: Option<u64>,
    /// CA certificates (PEM) to verify an `msrps://` peer with.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// SHA-256 fingerprint (`AB:CD:…`, as in SDP) of an `msrps://` peer's certificate.
    #[arg(long, value_name = "SHA256")]
    pub(crate) fingerprint: Option<String>,
    /// Seconds to wait for the connection (TCP and TLS), then for the peer to accept the
    /// session (its answer is awaited at most 30 s, MSRP's response timeout).
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) timeout: u64,
    /// Print one JSON object per line.
    #[arg(long)]
    pub(crate) json: bool,
    /// Print every chunk sent and received on standard error (a text body cut to its
    /// first 256 bytes with a count of the rest; a binary body only counted).
    #[arg(long)]
    pub(crate) trace: bool,
    #[command(flatten)]
    pub(crate) relay: relay::RelayArgs,
}

/// Arguments of `msrp demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The size of the generated file in bytes (for tests).
    #[arg(long, hide = true, default_value_t = demo::FILE_SIZE, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) size: u64,
}

/// The largest `--chunk-size`.
const MAX_CHUNK_SIZE: u64 = 16 << 20;

/// Parses `--chunk-size`: 1 byte to 16 MiB.
fn chunk_size(text: &str) -> Result<u64, String> {
    let size: u64 = text.parse().map_err(|_| format!("{text:?} is not a number of bytes"))?;
    if (1..=MAX_CHUNK_SIZE).contains(&size) {
        Ok(size)
    } else {
        Err(format!("{size} is not from 1 to {MAX_CHUNK_SIZE} (16 MiB)"))
    }
}

/// One item of `msrp send`, in command-line order.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Text(String),
    File(PathBuf),
}

fn main() -> ExitCode {
    trace::init_diagnostics();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let json = match &cli.command {
        Command::Recv(args) => args.json,
        Command::Send(args) => args.json,
        Command::Demo(_) | Command::Decode => false,
    };
    let result = match cli.command {
        Command::Decode => Ok(decode::run()),
        Command::Demo(args) => runtime().and_then(|runtime| runtime.block_on(demo::run(args.size))),
        Command::Recv(args) => runtime().and_then(|runtime| runtime.block_on(recv::run(args))),
        Command::Send(args) => {
            let items = matches.subcommand_matches("send").map(|send| items_in_order(&args, send)).unwrap_or_default();
            runtime().and_then(|runtime| runtime.block_on(send::run(args, items)))
        }
    };
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(json),
    }
}

/// The --text and --file items in the order they were given.
fn items_in_order(args: &SendArgs, matches: &clap::ArgMatches) -> Vec<Item> {
    let texts = matches.indices_of("text").into_iter().flatten().zip(args.text.iter().cloned().map(Item::Text));
    let files = matches.indices_of("file").into_iter().flatten().zip(args.file.iter().cloned().map(Item::File));
    let mut items: Vec<(usize, Item)> = texts.chain(files).collect();
    items.sort_by_key(|(index, _)| *index);
    items.into_iter().map(|(_, item)| item).collect()
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::fatal(format!("cannot start the async runtime: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_is_capped_at_16_mib() {
        assert_eq!(chunk_size("100000"), Ok(100_000));
        assert_eq!(chunk_size("16777216"), Ok(16 << 20));
        assert_eq!(chunk_size("16777217"), Err("16777217 is not from 1 to 16777216 (16 MiB)".to_owned()));
        assert!(chunk_size("0").is_err());
        assert!(chunk_size("1G").is_err());
    }
}
