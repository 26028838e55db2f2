//! `msrp send`: connect, bind, send each item in order, print each outcome.
//!
//! Ctrl-C aborts the message in progress (its next chunk ends it with `#`), closes the
//! session (waiting at most [`INTERRUPT_GRACE`] for that) and exits 130.

use std::fmt::Write;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::io::AsyncRead;
use indicatif::ProgressBar;
use msrp_tokio::core::header::{ContentType, Header, HeaderName, Headers};
use msrp_tokio::core::outbox::{MessageOptions, OutgoingId};
use msrp_tokio::core::session::{MessageOutcome, Role, SessionConfig, SessionError};
use msrp_tokio::core::{DisplayDuration, Uri};
use msrp_tokio::{
    AcceptTypes, ConnectorDirect, ConnectorRelay, OutgoingFile, OutgoingMessage, Session, Tokio, Transport, io_phrase,
};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::events::{self, Incoming, ReportOutcome, Reports};
use crate::failure::{Failure, address, describe, describe_via_relay, parse_path, parse_uri, relay_address};
use crate::inbox::{Inbox, Limits};
use crate::interrupt::Interrupt;
use crate::output::Output;
use crate::recv::{path_text, print_arrival, print_incomplete, print_save_failed};
use crate::relay::{Trust, client_tls};
use crate::trace;
use crate::{Item, SendArgs};

/// How long the demo waits for the success REPORTs of a delivered message (send has
/// `--report-timeout`).
pub(crate) const REPORT_PATIENCE: Duration = Duration::from_secs(30);

/// After Ctrl-C, how long the session may take to send the `#` and close.
pub(crate) const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// How one message went.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// `None` when the message could not even be started.
    pub(crate) message_id: Option<String>,
    /// The response code (200 when delivered), or a failure REPORT's; `None` when the
    /// message was aborted.
    pub(crate) code: Option<u16>,
    pub(crate) reason: String,
    /// Bytes the success REPORTs covered, when they were asked for.
    pub(crate) bytes_reported: Option<u64>,
    /// Whether it arrived (and, when asked for, was reported) whole.
    pub(crate) delivered: bool,
}

/// An item checked and ready to go.
enum Ready {
    Text(Bytes),
    File { path: PathBuf, size: u64 },
}

pub(crate) async fn run(args: SendArgs, items: Vec<Item>) -> Result<ExitCode, Failure> {
    let out = Output::new(args.json, args.trace);
    let mut interrupt = Interrupt::listen().await;
    let remote = parse_path(&args.remote_path)?;
    let local = args.local_uri.as_deref().map(parse_uri).transpose()?;
    if let Some(content_type) = &args.content_type {
        ContentType::decode(content_type)
            .map_err(|_| Failure::usage(format!("invalid content type {content_type:?}: expected type/subtype")))?;
    }
    let items = items.into_iter().map(check_item).collect::<Result<Vec<_>, _>>()?;
    if items.is_empty() {
        return Err(Failure::usage("nothing to send: give --text or --file"));
    }
    let transport = bind(&args, remote, local, &out, &mut interrupt).await?;
    let remote_text = path_text(transport.remote_path());
    out.event("bound", json!({ "remote_path": remote_text }), || format!("bound to {remote_text}"));
    let session = Arc::new(Session::new(transport, AcceptTypes::any(), None));
    let (incoming, reports) = events::spawn(Arc::clone(&session), Inbox::new(None, Limits::default()));
    let printer = tokio::spawn(print_incoming(incoming, out.clone()));
    let report_timeout = args.success_report.then(|| Duration::from_secs(args.report_timeout));
    let mut all_delivered = true;
    for (index, item) in items.into_iter().enumerate() {
        let number = index + 1;
        let (content_type, size, file, started) = match item {
            Ready::Text(text) => {
                let content_type = args.content_type.clone().unwrap_or_else(|| "text/plain".to_owned());
                let size = text.len() as u64;
                let started = send_text(&session, &content_type, text, args.success_report).await;
                (content_type, size, None, started.map(|message| (message, None)))
            }
            Ready::File { path, size } => {
                let content_type = args.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
                let bar = out.bytes_bar(size, &file_name(&path));
                let started = send_file(&session, &path, size, &content_type, args.success_report, bar.clone()).await;
                (content_type, size, Some(path), started.map(|message| (message, Some(bar))))
            }
        };
        let sent = match started {
            Ok((message, bar)) => {
                let (id, message_id) = (message.id, message.message_id.clone());
                let outcome = tokio::select! {
                    outcome = message.outcome() => outcome,
                    () = interrupt.pressed() => {
                        if let Some(bar) = bar {
                            bar.finish_and_clear();
                        }
                        let sent = Sent {
                            message_id: Some(message_id),
                            code: None,
                            reason: "aborted: interrupted".to_owned(),
                            bytes_reported: None,
                            delivered: false,
                        };
                        print_sent(&out, number, &content_type, size, file.as_deref(), &sent);
                        return stop(&session, Some(id)).await;
                    }
                };
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                tokio::select! {
                    sent = settle(&reports, message_id, outcome, size, report_timeout) => sent,
                    () = interrupt.pressed() => return stop(&session, None).await,
                }
            }
            Err(text) => Sent { message_id: None, code: None, reason: text, bytes_reported: None, delivered: false },
        };
        all_delivered &= sent.delivered;
        print_sent(&out, number, &content_type, size, file.as_deref(), &sent);
    }
    tokio::select! {
        () = session.shutdown(true) => {}
        () = interrupt.pressed() => return stop(&session, None).await,
    }
    let _ = printer.await;
    Ok(if all_delivered { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Connects and binds (within `--timeout`), printing the local path once it is known.
async fn bind(
    args: &SendArgs,
    remote: Vec<Uri>,
    local: Option<Uri>,
    out: &Output,
    interrupt: &mut Interrupt,
) -> Result<Transport, Failure> {
    let first = &remote[0];
    let relay = args.relay.settings()?;
    let tls = client_tls(args.ca.as_ref(), args.fingerprint.as_deref(), first.use_tls && relay.is_none(), Trust::PEER)?;
    // Connection errors name whoever we connect to: the relay, else the peer's first hop.
    let peer = relay.as_ref().map_or_else(|| address(first), relay_address);
    let via_relay = relay.is_some();
    let timeout = Duration::from_secs(args.timeout);
    let mut config = SessionConfig::new(Role::Active, Vec::new(), Vec::new());
    config.bind_timeout = timeout;
    if let Some(chunk_size) = args.chunk_size {
        config.max_chunk_size = usize::try_from(chunk_size).unwrap_or(usize::MAX);
    }
    // The binding SEND fails by the bind timeout or by the response timeout, the earlier.
    let bind_wait = timeout.min(config.response_timeout);
    let logger = Some(trace::logger(args.trace));
    let describe_failure = |error: msrp_tokio::Error| match error {
        // Connected, but the binding SEND got no answer: nothing was refused.
        msrp_tokio::Error::Session(SessionError::BindTimeout) => Failure::fatal(format!(
            "{peer} accepted the connection but did not answer within {}",
            DisplayDuration(bind_wait)
        )),
        other if via_relay => Failure::fatal(describe_via_relay(&other, &peer)),
        other => Failure::fatal(describe(&other, &peer)),
    };
    let interrupted = || Failure::interrupted("interrupted before the session was bound");
    let bound = if let Some(mut relay) = relay {
        if let Some(chunk_size) = args.chunk_size {
            relay.max_chunk_size = usize::try_from(chunk_size).unwrap_or(usize::MAX);
        }
        let mut connector = ConnectorRelay::new(Tokio, relay, logger, false);
        connector.set_connect_timeout(timeout);
        connector.set_config(config);
        let local_path = tokio::select! {
            prepared = connector.prepare(local) => prepared.map_err(describe_failure)?,
            () = interrupt.pressed() => return Err(interrupted()),
        };
        print_local_path(out, &local_path);
        tokio::select! {
            bound = connector.complete(remote) => bound,
            () = interrupt.pressed() => return Err(interrupted()),
        }
    } else {
        let mut connector = ConnectorDirect::new(Tokio, logger, false);
        connector.set_connect_timeout(timeout);
        connector.set_config(config);
        if let Some(tls) = tls {
            connector.set_tls(tls);
        }
        print_local_path(out, &connector.prepare(local));
        tokio::select! {
            bound = connector.complete(remote) => bound,
            () = interrupt.pressed() => return Err(interrupted()),
        }
    };
    bound.map_err(describe_failure)
}

fn print_local_path(out: &Output, local_path: &[Uri]) {
    let local_path = path_text(local_path);
    out.event("local_path", json!({ "path": local_path }), || format!("local path {local_path}"));
}

/// Ctrl-C: aborts the message in progress (`#`), closes the session, exit code 130.
async fn stop(session: &Session, in_progress: Option<OutgoingId>) -> Result<ExitCode, Failure> {
    if let Some(id) = in_progress {
        // Failing means the message ended meanwhile: nothing to abort.
        let _ = session.abort(id).await;
    }
    // The `#` goes out ahead of the shutdown; answers to it are not waited for long.
    let _ = tokio::time::timeout(INTERRUPT_GRACE, session.shutdown(true)).await;
    Err(Failure::interrupted(if in_progress.is_some() {
        "interrupted: the message in progress was aborted and the session closed"
    } else {
        "interrupted: the session was closed"
    }))
}

/// Reads a message's outcome and, when they were asked for (`report_timeout` is how long
/// to wait for them), its success REPORTs; what the book kept about the message is
/// dropped.
pub(crate) async fn settle(
    reports: &Reports,
    message_id: String,
    outcome: MessageOutcome,
    size: u64,
    report_timeout: Option<Duration>,
) -> Sent {
    let id = message_id.clone();
    let message_id = Some(message_id);
    let sent = match (outcome, report_timeout) {
        (MessageOutcome::Delivered, Some(patience)) => {
            match reports.wait(message_id.as_deref().unwrap_or_default(), size, patience).await {
                (ReportOutcome::Complete, bytes) => Sent {
                    message_id,
                    code: Some(200),
                    reason: "OK".to_owned(),
                    bytes_reported: Some(bytes),
                    delivered: true,
                },
                (ReportOutcome::Failed(code, reason), bytes) => {
                    Sent { message_id, code: Some(code), reason, bytes_reported: Some(bytes), delivered: false }
                }
                (missing, bytes) => Sent {
                    message_id,
                    code: Some(200),
                    reason: missing_reports(&missing, bytes, size, patience),
                    bytes_reported: Some(bytes),
                    delivered: false,
                },
            }
        }
        (MessageOutcome::Delivered, None) => {
            Sent { message_id, code: Some(200), reason: "OK".to_owned(), bytes_reported: None, delivered: true }
        }
        (MessageOutcome::Failed(error), _) => {
            Sent { message_id, code: Some(error.code), reason: error.comment, bytes_reported: None, delivered: false }
        }
        (MessageOutcome::Aborted, _) => Sent {
            message_id,
            code: None,
            reason: "aborted: the file could not be read to its end".to_owned(),
            bytes_reported: None,
            delivered: false,
        },
    };
    reports.forget(&id);
    sent
}

/// Why a delivered message counts as not confirmed: its success REPORTs covered `bytes`
/// of its `size` when the wait ended.
fn missing_reports(outcome: &ReportOutcome, bytes: u64, size: u64, patience: Duration) -> String {
    let seconds = patience.as_secs();
    match (outcome, bytes) {
        (ReportOutcome::TimedOut, 0) => {
            format!("OK, but the peer sent no success REPORT for it within {seconds} s (see --report-timeout)")
        }
        (ReportOutcome::TimedOut, _) => format!(
            "OK, but within {seconds} s the peer's success REPORTs covered only {bytes} of {size} bytes (see --report-timeout)"
        ),
        (_, 0) => "OK, but the session ended before the peer sent a success REPORT for it".to_owned(),
        _ => format!("OK, but the peer's success REPORTs covered only {bytes} of {size} bytes"),
    }
}

fn print_sent(out: &Output, number: usize, content_type: &str, size: u64, file: Option<&Path>, sent: &Sent) {
    let file = file.map(|path| path.display().to_string());
    let fields = json!({
        "item": number,
        "message_id": sent.message_id,
        "content_type": content_type,
        "size": size,
        "file": file,
        "delivered": sent.delivered,
        "code": sent.code,
        "reason": sent.reason,
        "bytes_reported": sent.bytes_reported,
    });
    out.event("sent", fields, || {
        let status = if sent.delivered { "sent" } else { "FAILED" };
        let code = sent.code.map_or_else(|| "-".to_owned(), |code| code.to_string());
        let mut line = format!(
            "{status} {number} id={} type={content_type} size={size} → {code} {}",
            sent.message_id.as_deref().unwrap_or("-"),
            sent.reason
        );
        // The reason says it already when nothing was reported.
        if let Some(bytes) = sent.bytes_reported.filter(|&bytes| bytes > 0 || sent.delivered) {
            let _ = write!(line, " (reported {bytes} bytes)");
        }
        if let Some(file) = &file {
            let _ = write!(line, " file={file}");
        }
        line
    });
}

/// Prints what the peer sends us meanwhile.
async fn print_incoming(mut incoming: mpsc::Receiver<Incoming>, out: Output) {
    while let Some(event) = incoming.recv().await {
        match event {
            Incoming::Arrival(arrival) => print_arrival(&out, &arrival),
            Incoming::Incomplete(message_id, size) => print_incomplete(&out, &message_id, size),
            Incoming::Failed { text, .. } => print_save_failed(&out, &text),
            Incoming::Ended(_) => return,
        }
    }
}

/// Headers for every chunk of a message.
fn headers(content_type: &str, success_report: bool) -> Headers {
    let mut headers = Headers::new();
    headers.set(HeaderName::ContentType, content_type);
    if success_report {
        headers.set(HeaderName::SuccessReport, "yes");
    }
    headers
}

/// Starts sending a text message.
pub(crate) async fn send_text(
    session: &Session,
    content_type: &str,
    text: Bytes,
    success_report: bool,
) -> Result<OutgoingMessage, String> {
    let options = MessageOptions { headers: headers(content_type, success_report), ..MessageOptions::default() };
    session.send_message_with(options, text).await.map_err(|error| error.to_string())
}

/// Starts streaming a file from disk; `bar` counts the bytes read from it, which run a
/// little ahead of what is on the wire.
async fn send_file(
    session: &Session,
    path: &Path,
    size: u64,
    content_type: &str,
    success_report: bool,
    bar: ProgressBar,
) -> Result<OutgoingMessage, String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|error| format!("cannot open {}: {}", path.display(), io_phrase(&error)))?;
    let mut headers = headers(content_type, success_report);
    let name: String = file_name(path).chars().map(|c| if c == '"' || c == '\\' { '_' } else { c }).collect();
    headers.set(HeaderName::ContentDisposition, format!("attachment; filename=\"{name}\""));
    let file = OutgoingFile {
        reader: Box::new(Counted { inner: file.compat(), bar }),
        file: msrp_tokio::core::session::OutgoingFile {
            size,
            content_type: Some(content_type.to_owned()),
            position: 0,
            message_id: None,
            headers,
        },
    };
    session.send_file(file).await.map_err(|error| error.to_string())
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned())
}

/// Checks an item before connecting: no empty messages, files readable.
fn check_item(item: Item) -> Result<Ready, Failure> {
    match item {
        Item::Text(text) if text.is_empty() => {
            Err(Failure::usage("--text is empty: MSRP uses empty SENDs for binding and keepalive, not as messages"))
        }
        Item::Text(text) => Ok(Ready::Text(Bytes::from(text))),
        Item::File(path) => {
            let metadata = std::fs::metadata(&path)
                .map_err(|error| Failure::usage(format!("cannot read {}: {}", path.display(), io_phrase(&error))))?;
            if !metadata.is_file() {
                return Err(Failure::usage(format!("cannot send {}: not a regular file", path.display())));
            }
            if metadata.len() == 0 {
                return Err(Failure::usage(format!("cannot send {}: the file is empty", path.display())));
            }
            Ok(Ready::File { path, size: metadata.len() })
        }
    }
}

/// A reader that moves a progress bar by the bytes read through it.
pub(crate) struct Counted<T> {
    pub(crate) inner: T,
    pub(crate) bar: ProgressBar,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            self.bar.inc(*n as u64);
        }
        result
    }
}
