//! Errors a person can act on: one line each, and the exit code.

use std::process::ExitCode;

use msrp_tokio::core::session::SessionError;
use msrp_tokio::core::{DisplayDuration, Uri, UriError};
use msrp_tokio::{ConnectError, Error, RelayError, RelaySettings, TlsError};

use crate::relay::Trust;

/// Why the command stops: printed as `msrp: <text>`.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    text: String,
}

impl Failure {
    /// Bad input (arguments, URIs, files): exit code 2.
    pub(crate) fn usage(text: impl Into<String>) -> Self {
        Self { code: 2, text: text.into() }
    }

    /// Everything else: exit code 1.
    pub(crate) fn fatal(text: impl Into<String>) -> Self {
        Self { code: 1, text: text.into() }
    }

    /// Stopped by Ctrl-C: exit code 130.
    pub(crate) fn interrupted(text: impl Into<String>) -> Self {
        Self { code: crate::interrupt::EXIT_CODE, text: text.into() }
    }

    /// Prints the line (and with `json` an `error` event on standard output) and gives
    /// the exit code.
    pub(crate) fn report(self, json: bool) -> ExitCode {
        if json {
            let event = serde_json::json!({ "event": "error", "message": self.text, "exit_code": self.code });
            println!("{event}");
        }
        eprintln!("msrp: {}", self.text);
        ExitCode::from(self.code)
    }
}

/// Parses one URI, or says what is wrong with it.
pub(crate) fn parse_uri(text: &str) -> Result<Uri, Failure> {
    text.trim()
        .parse()
        .map_err(|error| Failure::usage(format!("invalid URI {:?}: {}", text.trim(), uri_reason(&error))))
}

/// Parses a path (URIs separated by spaces), or says which URI is wrong and why.
pub(crate) fn parse_path(text: &str) -> Result<Vec<Uri>, Failure> {
    Uri::parse_path(text.trim()).map_err(|error| match &error {
        UriError::EmptyPath(_) => Failure::usage(format!("invalid path {text:?}: it holds no URI")),
        UriError::NotAscii(uri)
        | UriError::BadScheme(uri)
        | UriError::BadUser(uri)
        | UriError::BadHost(uri)
        | UriError::BadPort(uri)
        | UriError::IpWithoutPort(uri)
        | UriError::Password(uri)
        | UriError::BadSessionId(uri)
        | UriError::BadTransport(uri)
        | UriError::BadParameter(uri) => Failure::usage(format!("invalid URI {uri:?}: {}", uri_reason(&error))),
        other => Failure::usage(format!("invalid path {text:?}: {other}")),
    })
}

/// Where a URI points, as `host:port` (`[v6]:port`; the host alone without a port).
pub(crate) fn address(uri: &Uri) -> String {
    let host = if uri.host.contains(':') { format!("[{}]", uri.host) } else { uri.host.clone() };
    match uri.port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

fn uri_reason(error: &UriError) -> String {
    match error {
        UriError::NotAscii(_) => "it is not US-ASCII".to_owned(),
        UriError::BadScheme(_) => "it does not start with msrp:// or msrps://".to_owned(),
        UriError::BadUser(_) => "the user part is invalid".to_owned(),
        UriError::BadHost(_) => "the host is invalid".to_owned(),
        UriError::BadPort(_) => "the port is not a number from 0 to 65535".to_owned(),
        UriError::IpWithoutPort(_) => "an IP address needs a port".to_owned(),
        UriError::Password(_) => "it carries a password".to_owned(),
        UriError::BadSessionId(_) => "the session id is invalid".to_owned(),
        UriError::BadTransport(_) => "it has no valid transport parameter (e.g. ;tcp)".to_owned(),
        UriError::BadParameter(_) => "a parameter is invalid".to_owned(),
        other => other.to_string(),
    }
}

/// `host:port` of a relay, for messages.
pub(crate) fn relay_address(relay: &RelaySettings) -> String {
    let host = relay.host.as_deref().unwrap_or(&relay.domain);
    let port = relay.port.unwrap_or(msrp_tokio::RELAY_PORT);
    if host.contains(':') { format!("the relay [{host}]:{port}") } else { format!("the relay {host}:{port}") }
}

/// The one line for a failure to connect or bind; `peer` names the other side (an
/// address) for connection errors.
pub(crate) fn describe(error: &Error, peer: &str) -> String {
    match error {
        Error::Session(SessionError::BindRefused(refusal) | SessionError::Failed(refusal)) => {
            format!("the peer refused the session ({} {})", refusal.code, refusal.comment)
        }
        Error::Session(SessionError::BindTimeout) => "the session was not bound in time".to_owned(),
        Error::Session(SessionError::ConnectionClosed) => {
            format!("the connection with {peer} closed before the session was bound")
        }
        Error::Session(stalled @ SessionError::WriteStalled { .. }) => {
            format!("the session with {peer} ended because {stalled}")
        }
        Error::Session(other) => format!("the session with {peer} failed: {other}"),
        Error::Connect(ConnectError::Tls(tls)) => format!("TLS with {peer} failed: {}", tls_reason(tls, &Trust::PEER)),
        Error::Connect(ConnectError::Refused { .. }) => format!("cannot connect to {peer}: connection refused"),
        Error::Connect(ConnectError::TimedOut { after, .. }) => {
            format!("cannot connect to {peer}: no answer within {}", DisplayDuration(*after))
        }
        Error::Connect(ConnectError::Io { reason, .. }) => format!("cannot connect to {peer}: {reason}"),
        Error::Connect(other) => format!("cannot connect to {peer}: {other}"),
        Error::Relay(relay) => relay_reason(relay),
        Error::Listen { .. } | Error::Invalid(_) => error.to_string(),
        other => format!("{peer}: {other}"),
    }
}

/// A relay's refusal as a sentence, with what to do where the usual cause is known.
fn relay_reason(error: &RelayError) -> String {
    let hint = match error {
        RelayError::WrongCredentials { .. } => {
            "; check --relay-user and the password (--relay-password-file or MSRP_RELAY_PASSWORD)"
        }
        RelayError::CredentialsNeeded { .. } => {
            "; give --relay-user and a password (--relay-password-file or MSRP_RELAY_PASSWORD)"
        }
        _ => "",
    };
    format!("{error}{hint}")
}

/// A TLS failure as a phrase, with what to do where the usual cause is known.
fn tls_reason(error: &TlsError, trust: &Trust) -> String {
    let Trust { ca, fingerprint, what, given_by, fingerprint_source } = trust;
    let hint = match error {
        TlsError::UnknownIssuer => {
            format!("; if it is self-signed, pass its fingerprint with {fingerprint} instead of {ca}")
        }
        TlsError::CaUsedAsEndEntity => format!("; pass its fingerprint with {fingerprint} instead of {ca}"),
        TlsError::FingerprintMismatch => format!("; compare {fingerprint} with {fingerprint_source}"),
        TlsError::NameMismatch { .. } => format!("; the {given_by} must name a host the certificate was issued for"),
        TlsError::NotTls => format!("; check whether the {what}'s URI is msrp:// rather than msrps://"),
        _ => String::new(),
    };
    format!("{error}{hint}")
}

/// [`describe`] for a failure on the way through a relay: TLS advice names the
/// `--relay-…` options.
pub(crate) fn describe_via_relay(error: &Error, relay: &str) -> String {
    match error {
        Error::Connect(ConnectError::Tls(tls)) => {
            format!("TLS with {relay} failed: {}", tls_reason(tls, &Trust::RELAY))
        }
        other => describe(other, relay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msrp_tokio::core::MsrpError;

    #[test]
    fn errors_read_as_one_plain_line() {
        let refused = Error::Session(SessionError::BindRefused(MsrpError::new(481, "Invalid From-Path")));
        assert_eq!(describe(&refused, "x"), "the peer refused the session (481 Invalid From-Path)");
        let refused = Error::Connect(ConnectError::Refused { address: "127.0.0.1:9".parse().unwrap() });
        assert_eq!(describe(&refused, "127.0.0.1:9"), "cannot connect to 127.0.0.1:9: connection refused");
        let late = Error::Connect(ConnectError::TimedOut {
            address: "192.0.2.1:9".to_owned(),
            after: std::time::Duration::from_secs(30),
        });
        assert_eq!(describe(&late, "192.0.2.1:9"), "cannot connect to 192.0.2.1:9: no answer within 30 s");
        let nowhere = Error::Connect(ConnectError::NoAddress { host: "nowhere.invalid".to_owned() });
        assert_eq!(
            describe(&nowhere, "nowhere.invalid:9"),
            "cannot connect to nowhere.invalid:9: nowhere.invalid does not resolve to an address"
        );
    }

    /// Issue 12 §3: TLS failures read as one plain sentence (no Rust debug formatting),
    /// with what to do where the usual cause is known.
    #[test]
    fn tls_failures_read_as_plain_sentences_with_a_hint() {
        let tls = |error| describe(&Error::Connect(ConnectError::Tls(error)), "127.0.0.1:9");
        assert_eq!(
            tls(TlsError::CaUsedAsEndEntity),
            "TLS with 127.0.0.1:9 failed: the peer's certificate is a CA certificate (self-signed ones often are), \
             not one issued to a server; pass its fingerprint with --fingerprint instead of --ca"
        );
        assert_eq!(
            tls(TlsError::UnknownIssuer),
            "TLS with 127.0.0.1:9 failed: the peer's certificate is not signed by a trusted certificate authority; \
             if it is self-signed, pass its fingerprint with --fingerprint instead of --ca"
        );
        assert_eq!(
            tls(TlsError::NameMismatch { host: "example.com".to_owned() }),
            "TLS with 127.0.0.1:9 failed: the peer's certificate is not valid for example.com; \
             the remote path must name a host the certificate was issued for"
        );
        assert_eq!(tls(TlsError::Expired), "TLS with 127.0.0.1:9 failed: the peer's certificate has expired");
    }

    // Issue 12 §2.1: a peer that stopped reading ends the session with a plain sentence.
    #[test]
    fn a_write_stall_reads_as_one_plain_line() {
        let stalled = Error::Session(SessionError::WriteStalled { timeout: std::time::Duration::from_secs(30) });
        assert_eq!(
            describe(&stalled, "127.0.0.1:9"),
            "the session with 127.0.0.1:9 ended because the peer stopped reading: nothing could be written for 30 s"
        );
    }

    #[test]
    fn a_bad_uri_says_which_and_why() {
        let error = parse_path("msrp://127.0.0.1:2855/a;tcp msrp://127.0.0.1:99999/b;tcp").unwrap_err();
        assert_eq!(
            error.text,
            "invalid URI \"msrp://127.0.0.1:99999/b;tcp\": the port is not a number from 0 to 65535"
        );
        assert_eq!(error.code, 2);
        assert!(parse_path("  ").is_err());
        assert_eq!(parse_path(" msrp://h.example.com/a;tcp\tmsrp://h.example.com/b;tcp ").unwrap().len(), 2);
    }

    #[test]
    fn addresses_bracket_ipv6_and_leave_out_a_missing_port() {
        assert_eq!(address(&parse_uri("msrp://[::1]:2855/a;tcp").unwrap()), "[::1]:2855");
        assert_eq!(address(&parse_uri("msrp://127.0.0.1:9/a;tcp").unwrap()), "127.0.0.1:9");
        assert_eq!(address(&parse_uri("msrp://relay.example.com;tcp").unwrap()), "relay.example.com");
    }
}
