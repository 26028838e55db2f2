//! `msrp recv`: listen, bind, print what arrives.
//!
//! The session engine answers every chunk with 200 as it arrives, but holds a message's
//! success REPORT (`SessionConfig::confirm_messages`) until this command has written the
//! whole message and flushed it to disk (`sync_data`): only then is it confirmed. A
//! message that is skipped or cannot be saved (a full disk, a folder gone) is refused
//! with a failure REPORT instead (where its Failure-Report allows one). A save failure
//! also prints `msrp: cannot save a message: …`, ends the session, and exits 1.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use msrp_tokio::core::header::{Header, HeaderName, ToPath};
use msrp_tokio::core::session::{Role, SessionConfig, SessionError};
use msrp_tokio::core::{MsrpError, Uri};
use msrp_tokio::{
    AcceptTypes, Acceptor, AcceptorDirect, AcceptorRelay, OnRefused, Refused, Session, TlsServer, Tokio, io_phrase,
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::RecvArgs;
use crate::events::{self, Incoming};
use crate::failure::{Failure, address, describe, describe_via_relay, parse_path, parse_uri, relay_address};
use crate::inbox::{Arrival, Inbox, Limits, Received};
use crate::interrupt::Interrupt;
use crate::output::{Output, hex};
use crate::trace;

/// A path as SDP writes it: URIs separated by spaces.
pub(crate) fn path_text(path: &[Uri]) -> String {
    ToPath(path.to_vec()).encode()
}

pub(crate) async fn run(args: RecvArgs) -> Result<ExitCode, Failure> {
    let out = Output::new(args.json, args.trace);
    let mut interrupt = Interrupt::listen().await;
    let local = args.local_uri.as_deref().map(parse_uri).transpose()?;
    let remote = args.remote_path.as_deref().map(parse_path).transpose()?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|error| Failure::usage(format!("cannot use --out {}: {}", dir.display(), io_phrase(&error))))?;
    }
    let mut config = SessionConfig::new(Role::Passive, Vec::new(), Vec::new());
    config.bind_timeout = Duration::from_secs(args.timeout);
    // Success REPORTs wait until a message is on disk.
    config.confirm_messages = true;
    let logger = Some(trace::logger(args.trace));
    let interrupted = || Failure::interrupted("interrupted before a peer bound the session");
    let mut acceptor = if let Some(relay) = args.relay.settings()? {
        if args.tls_cert.is_some() {
            return Err(Failure::usage("--tls-cert and --tls-key are for listening; with --relay nothing listens"));
        }
        let peer = relay_address(&relay);
        let mut acceptor = AcceptorRelay::new(Tokio, relay, logger, false);
        acceptor.set_config(config);
        let local_path = tokio::select! {
            prepared = acceptor.prepare(local) => prepared.map_err(|error| Failure::fatal(describe_via_relay(&error, &peer)))?,
            () = interrupt.pressed() => return Err(interrupted()),
        };
        print_path(&out, &local_path);
        Acceptor::Relay(acceptor)
    } else {
        let Some(local) = local else { return Err(Failure::usage("recv needs --local-uri or --relay")) };
        let tls = server_tls(&args, &local)?;
        let mut acceptor = AcceptorDirect::new(Tokio, logger, false);
        acceptor.set_config(config);
        acceptor.set_on_refused(print_refusals(out.clone()));
        if let Some(tls) = tls {
            acceptor.set_tls(tls);
        }
        let where_ = address(&local);
        let local_path = acceptor.prepare(Some(local)).await.map_err(|error| match error {
            msrp_tokio::Error::Listen { reason, .. } => Failure::fatal(format!("cannot listen on {where_}: {reason}")),
            other => Failure::fatal(format!("cannot listen on {where_}: {other}")),
        })?;
        print_path(&out, &local_path);
        Acceptor::Direct(acceptor)
    };
    let bound = tokio::select! {
        bound = async {
            match remote {
                Some(remote) => acceptor.complete(remote).await,
                None => acceptor.complete_any().await,
            }
        } => bound,
        () = interrupt.pressed() => return Err(interrupted()),
    };
    let transport = bound.map_err(|error| Failure::fatal(describe(&error, "the peer")))?;
    let remote_text = path_text(transport.remote_path());
    out.event("bound", json!({ "remote_path": remote_text }), || format!("bound to {remote_text}"));
    let session = Arc::new(Session::new(transport, AcceptTypes::any(), None));
    let limits = Limits { max_size: args.max_size, max_open: Limits::MAX_OPEN };
    let (incoming, _reports) = events::spawn(Arc::clone(&session), Inbox::new(args.out.clone(), limits));
    receive(&session, incoming, args.count, &out, interrupt).await
}

/// Prints each connection the acceptor turns away: who, and why.
fn print_refusals(out: Output) -> OnRefused {
    Box::new(move |refused: Refused| {
        let path = |name: &HeaderName| {
            refused
                .request
                .as_ref()
                .and_then(|request| request.headers.get(name))
                .map(|value| value.as_str().to_owned())
        };
        let (from, to) = (path(&HeaderName::FromPath), path(&HeaderName::ToPath));
        let fields = json!({
            "peer": refused.peer.to_string(),
            "code": refused.error.code,
            "reason": refused.error.comment,
            "from_path": from,
            "to_path": to,
        });
        out.event("refused", fields, || match (&from, &to) {
            (None, None) => format!("refused {}: {}; still waiting for the peer", refused.peer, refused.error.comment),
            _ => format!(
                "refused {} (From-Path {}, To-Path {}): {} {}; still waiting for the peer",
                refused.peer,
                from.as_deref().unwrap_or("none"),
                to.as_deref().unwrap_or("none"),
                refused.error.code,
                refused.error.comment
            ),
        });
    })
}

/// Confirms a message to the sender once it is safe on disk (its success REPORT goes
/// out), or refuses it with a failure REPORT.
async fn confirm(session: &Session, message_id: &str, outcome: Result<(), MsrpError>) {
    // A session that has ended has no one left to tell.
    let _ = session.confirm_message(message_id, outcome).await;
}

/// Why recv ended the session itself.
enum Stop {
    /// `--count` messages arrived.
    Count,
    /// A message could not be saved.
    SaveFailed(String),
    /// Ctrl-C.
    Interrupted,
}

/// Prints what arrives until the session ends. After `count` messages, or when a message
/// cannot be saved, it shuts the session down and goes on printing what still arrives
/// until the end, so that nothing answered 200 goes unmentioned and no partial file is
/// left behind. Ctrl-C does the same, without waiting for anything.
async fn receive(
    session: &Session,
    mut incoming: mpsc::Receiver<Incoming>,
    count: Option<u64>,
    out: &Output,
    mut interrupt: Interrupt,
) -> Result<ExitCode, Failure> {
    let mut received = 0_u64;
    let mut incomplete = 0_u64;
    let mut stop = None;
    loop {
        let interrupted = matches!(stop, Some(Stop::Interrupted));
        let event = tokio::select! {
            event = incoming.recv() => event,
            () = interrupt.pressed(), if !interrupted => {
                // The session ends at once (recv has nothing of its own to send); the
                // messages cut short are then removed by the writer and printed here.
                stop = Some(Stop::Interrupted);
                session.shutdown(false).await;
                continue;
            }
        };
        let Some(event) = event else {
            // The reading task died without saying how the session ended.
            return Err(Failure::fatal("the session's event task stopped unexpectedly"));
        };
        match event {
            Incoming::Arrival(arrival) => {
                match &arrival {
                    Arrival::Complete(message) => confirm(session, &message.message_id, Ok(())).await,
                    Arrival::Skipped { message_id, status, reason } => {
                        confirm(session, message_id, Err(MsrpError::new(*status, reason.clone()))).await;
                    }
                    Arrival::Aborted { .. } => {}
                }
                print_arrival(out, &arrival);
                if matches!(arrival, Arrival::Complete(_)) {
                    received += 1;
                    if stop.is_none() && count.is_some_and(|count| received >= count) {
                        stop = Some(Stop::Count);
                        session.shutdown(true).await;
                    }
                }
            }
            Incoming::Failed { message_id, text } => {
                if let Some(message_id) = message_id {
                    let refusal = MsrpError::new(413, "The message could not be saved");
                    confirm(session, &message_id, Err(refusal)).await;
                }
                if stop.is_none() {
                    // Reported as the command's error once the session is down.
                    stop = Some(Stop::SaveFailed(text));
                    session.shutdown(true).await;
                } else {
                    print_save_failed(out, &text);
                }
            }
            Incoming::Incomplete(message_id, size) => {
                print_incomplete(out, &message_id, size);
                incomplete += 1;
            }
            Incoming::Ended(reason) => return ended(reason, stop, received, incomplete, count, out),
        }
    }
}

/// The exit once the session ended.
fn ended(
    reason: Option<SessionError>,
    stop: Option<Stop>,
    received: u64,
    incomplete: u64,
    count: Option<u64>,
    out: &Output,
) -> Result<ExitCode, Failure> {
    match (stop, reason) {
        (Some(Stop::Interrupted), _) => Err(Failure::interrupted(if incomplete > 0 {
            format!(
                "interrupted: the session is closed and {incomplete} partial file{} removed",
                if incomplete == 1 { " is" } else { "s are" }
            )
        } else {
            "interrupted: the session is closed".to_owned()
        })),
        (Some(Stop::SaveFailed(text)), _) => Err(Failure::fatal(format!("cannot save a message: {text}"))),
        // Messages cut short by our own shutdown came after the ones asked for.
        (Some(Stop::Count), _) => Ok(ExitCode::SUCCESS),
        (None, None | Some(SessionError::ConnectionClosed)) => {
            out.event("ended", json!({ "messages": received, "incomplete": incomplete }), || {
                format!("session ended by the peer after {received} message{}", if received == 1 { "" } else { "s" })
            });
            match count {
                Some(count) if received < count => {
                    Err(Failure::fatal(format!("the session ended after {received} of {count} messages")))
                }
                _ if incomplete > 0 => Err(Failure::fatal(format!(
                    "the session ended with {incomplete} message{} incomplete",
                    if incomplete == 1 { "" } else { "s" }
                ))),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        (None, Some(reason)) => Err(Failure::fatal(format!("the session failed: {reason}"))),
    }
}

/// Prints the full local path, the first line: what the peer puts in SDP (or passes to
/// `send --remote-path`).
fn print_path(out: &Output, local_path: &[Uri]) {
    let path = path_text(local_path);
    out.event("listening", json!({ "path": path }), || path.clone());
}

/// The certificate for an `msrps` local URI.
fn server_tls(args: &RecvArgs, local: &Uri) -> Result<Option<TlsServer>, Failure> {
    match (local.use_tls, &args.tls_cert, &args.tls_key) {
        (true, Some(cert), Some(key)) => {
            let chain = read_file(cert)?;
            let key = read_file(key)?;
            TlsServer::from_pem(&chain, &key)
                .map(Some)
                .map_err(|error| Failure::usage(format!("cannot use --tls-cert/--tls-key: {error}")))
        }
        (true, _, _) => Err(Failure::usage("an msrps:// local URI needs --tls-cert and --tls-key")),
        (false, Some(_), _) | (false, _, Some(_)) => {
            Err(Failure::usage("--tls-cert and --tls-key need an msrps:// local URI"))
        }
        (false, None, None) => Ok(None),
    }
}

/// A whole file, or a usage error naming it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|error| Failure::usage(format!("cannot read {}: {}", path.display(), io_phrase(&error))))
}

/// One line for a received (or aborted) message.
pub(crate) fn print_arrival(out: &Output, arrival: &Arrival) {
    match arrival {
        Arrival::Complete(message) => print_received(out, message),
        Arrival::Aborted { message_id, size } => {
            out.event("aborted", json!({ "message_id": message_id, "size": size }), || {
                format!("aborted id={message_id} after {size} bytes")
            });
        }
        Arrival::Skipped { message_id, status, reason } => {
            out.event("skipped", json!({ "message_id": message_id, "code": status, "reason": reason }), || {
                format!("skipped id={message_id}: {reason}; its chunks are ignored (refused with {status})")
            });
        }
    }
}

/// A message that could not be saved (it is dropped).
pub(crate) fn print_save_failed(out: &Output, text: &str) {
    out.event("save_failed", json!({ "message": text }), || format!("cannot save a message: {text}"));
}

fn print_received(out: &Output, message: &Received) {
    let sha256 = message.sha256.map(|digest| hex(&digest));
    let file = message.file.as_ref().map(|path| path.display().to_string());
    let mut fields = json!({
        "message_id": message.message_id,
        "content_type": message.content_type,
        "size": message.size,
        "sha256": sha256,
        "file": file,
    });
    if let (Some(text), Some(object)) = (&message.text, fields.as_object_mut()) {
        object.insert("text".to_owned(), json!(text));
    }
    out.event("message", fields, || {
        let mut line = format!(
            "message id={} type={} size={} sha256={}",
            message.message_id,
            message.content_type,
            message.size,
            sha256.as_deref().unwrap_or("unknown")
        );
        if let Some(file) = &file {
            let _ = write!(line, " file={file}");
        }
        if let Some(text) = &message.text {
            let _ = write!(line, " text={text:?}");
        }
        line
    });
}

pub(crate) fn print_incomplete(out: &Output, message_id: &str, size: u64) {
    out.event("incomplete", json!({ "message_id": message_id, "size": size }), || {
        format!("incomplete id={message_id}: the session ended after {size} bytes")
    });
}
