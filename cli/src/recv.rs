//! `msrp recv`: listen, bind, print what arrives.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use msrp_core::Uri;
use msrp_core::session::{Role, SessionConfig, SessionError};
use msrp_smol::{AcceptTypes, AcceptorDirect, Session, TlsServer};
use msrp_tokio::Tokio;
use serde_json::json;
use tokio::sync::mpsc;

use crate::RecvArgs;
use crate::events::{self, Incoming};
use crate::failure::{Failure, describe, parse_path, parse_uri, tidy};
use crate::inbox::{Arrival, Inbox, Received};
use crate::output::{Output, hex};

/// A path as SDP writes it: URIs separated by spaces.
pub(crate) fn path_text(path: &[Uri]) -> String {
    path.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
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
    let where_ = format!("{}:{}", local.host, local.port.unwrap_or_default());
    let local_path = acceptor.prepare(Some(local)).await.map_err(|error| match error {
        msrp_smol::Error::Connect(text) => Failure::fatal(format!("cannot listen on {where_}: {}", tidy(&text))),
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
    let (incoming, _reports) = events::spawn(Arc::clone(&session), Inbox::new(args.out.clone()));
    receive(&session, incoming, args.count, &out).await
}

/// Prints what arrives until `count` messages did (then shuts down) or the session ends.
async fn receive<R: msrp_smol::Runtime>(
    session: &Session<R>,
    mut incoming: mpsc::Receiver<Incoming>,
    count: Option<u64>,
    out: &Output,
) -> Result<ExitCode, Failure> {
    let mut received = 0_u64;
    while let Some(event) = incoming.recv().await {
        match event {
            Incoming::Arrival(arrival) => {
                print_arrival(out, &arrival);
                if matches!(arrival, Arrival::Complete(_)) {
                    received += 1;
                    if count.is_some_and(|count| received >= count) {
                        session.shutdown(true).await;
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
            Incoming::Failed(text) => {
                session.shutdown(true).await;
                return Err(Failure::fatal(format!("cannot save a message: {text}")));
            }
            Incoming::Incomplete(message_id, size) => print_incomplete(out, &message_id, size),
            Incoming::Ended(None | Some(SessionError::ConnectionClosed)) => {
                out.event("ended", json!({ "messages": received }), || {
                    format!(
                        "session ended by the peer after {received} message{}",
                        if received == 1 { "" } else { "s" }
                    )
                });
                return match count {
                    Some(count) if received < count => {
                        Err(Failure::fatal(format!("the session ended after {received} of {count} messages")))
                    }
                    _ => Ok(ExitCode::SUCCESS),
                };
            }
            Incoming::Ended(Some(reason)) => return Err(Failure::fatal(format!("the session failed: {reason}"))),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The certificate for an `msrps` local URI.
fn server_tls(args: &RecvArgs, local: &Uri) -> Result<Option<TlsServer>, Failure> {
    match (local.use_tls, &args.tls_cert, &args.tls_key) {
        (true, Some(cert), Some(key)) => {
            let chain = read_file(cert)?;
            let key = read_file(key)?;
            TlsServer::from_pem(&chain, &key).map(Some).map_err(|error| {
                let text = error.to_string();
                Failure::usage(format!(
                    "cannot use --tls-cert/--tls-key: {}",
                    text.strip_prefix("TLS: ").unwrap_or(&text)
                ))
            })
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
    }
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
