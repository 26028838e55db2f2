//! `msrp recv`: listen, bind, print what arrives.
//!
//! The session engine answers every chunk (200) and sends the success REPORTs a sender
//! asked for as the chunks arrive, before this command writes them to disk: a message
//! that cannot be saved (a full disk, a folder gone) has already been confirmed to the
//! sender. recv then prints `msrp: cannot save a message: …`, ends the session, and
//! exits 1.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use msrp_tokio::core::Uri;
use msrp_tokio::core::header::{Header, ToPath};
use msrp_tokio::core::session::{Role, SessionConfig, SessionError};
use msrp_tokio::{AcceptTypes, AcceptorDirect, Session, TlsServer, Tokio};
use serde_json::json;
use tokio::sync::mpsc;

use crate::RecvArgs;
use crate::events::{self, Incoming};
use crate::failure::{Failure, address, describe, parse_path, parse_uri, tidy};
use crate::inbox::{Arrival, Inbox, Limits, Received};
use crate::output::{Output, hex};

/// A path as SDP writes it: URIs separated by spaces.
pub(crate) fn path_text(path: &[Uri]) -> String {
    ToPath(path.to_vec()).encode()
}

pub(crate) async fn run(args: RecvArgs) -> Result<ExitCode, Failure> {
    let out = Output::new(args.json);
    let local = parse_uri(&args.local_uri)?;
    let remote = args.remote_path.as_deref().map(parse_path).transpose()?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|error| {
            Failure::usage(format!("cannot use --out {}: {}", dir.display(), tidy(&error.to_string())))
        })?;
    }
    let tls = server_tls(&args, &local)?;
    let mut config = SessionConfig::new(Role::Passive, Vec::new(), Vec::new());
    config.bind_timeout = Duration::from_secs(args.timeout);
    let mut acceptor = AcceptorDirect::new(Tokio, None, false);
    acceptor.set_config(config);
    if let Some(tls) = tls {
        acceptor.set_tls(tls);
    }
    let where_ = address(&local);
    let local_path = acceptor.prepare(Some(local)).await.map_err(|error| match error {
        msrp_tokio::Error::Listen { reason, .. } => Failure::fatal(format!("cannot listen on {where_}: {reason}")),
        other => Failure::fatal(format!("cannot listen on {where_}: {other}")),
    })?;
    let path = path_text(&local_path);
    out.event("listening", json!({ "path": path }), || path.clone());
    let bound = match remote {
        Some(remote) => acceptor.complete(remote).await,
        None => acceptor.complete_any().await,
    };
    let transport = bound.map_err(|error| Failure::fatal(describe(&error, "the peer")))?;
    let remote_text = path_text(transport.remote_path());
    out.event("bound", json!({ "remote_path": remote_text }), || format!("bound to {remote_text}"));
    let session = Arc::new(Session::new(transport, AcceptTypes::any(), None));
    let limits = Limits { max_size: args.max_size, max_open: Limits::MAX_OPEN };
    let (incoming, _reports) = events::spawn(Arc::clone(&session), Inbox::new(args.out.clone(), limits));
    receive(&session, incoming, args.count, &out).await
}

/// Why recv ended the session itself.
enum Stop {
    /// `--count` messages arrived.
    Count,
    /// A message could not be saved.
    SaveFailed(String),
}

/// Prints what arrives until the session ends. After `count` messages, or when a message
/// cannot be saved, it shuts the session down and goes on printing what still arrives
/// until the end, so that nothing answered 200 goes unmentioned and no partial file is
/// left behind.
async fn receive(
    session: &Session,
    mut incoming: mpsc::Receiver<Incoming>,
    count: Option<u64>,
    out: &Output,
) -> Result<ExitCode, Failure> {
    let mut received = 0_u64;
    let mut incomplete = 0_u64;
    let mut stop = None;
    loop {
        let Some(event) = incoming.recv().await else {
            // The reading task died without saying how the session ended.
            return Err(Failure::fatal("the session's event task stopped unexpectedly"));
        };
        match event {
            Incoming::Arrival(arrival) => {
                print_arrival(out, &arrival);
                if matches!(arrival, Arrival::Complete(_)) {
                    received += 1;
                    if stop.is_none() && count.is_some_and(|count| received >= count) {
                        stop = Some(Stop::Count);
                        session.shutdown(true).await;
                    }
                }
            }
            Incoming::Failed(text) => {
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
        .map_err(|error| Failure::usage(format!("cannot read {}: {}", path.display(), tidy(&error.to_string()))))
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
        Arrival::Skipped { message_id, reason } => {
            out.event("skipped", json!({ "message_id": message_id, "reason": reason }), || {
                format!("skipped id={message_id}: {reason}; its chunks are ignored")
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
