//! Errors a person can act on: one line each, and the exit code.

use std::process::ExitCode;

use msrp_tokio::Error;
use msrp_tokio::core::session::SessionError;
use msrp_tokio::core::{Uri, UriError};

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
        Error::Session(other) => format!("the session with {peer} failed: {other}"),
        Error::Connect(text) => match text.strip_prefix("TLS: ") {
            Some(reason) => format!("TLS with {peer} failed: {reason}"),
            None => format!("cannot connect to {peer}: {}", tidy(text)),
        },
        other => format!("{peer}: {other}"),
    }
}

/// An OS error as a phrase: `Connection refused (os error 111)` → `connection refused`.
pub(crate) fn tidy(text: &str) -> String {
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if chars.clone().next().is_some_and(char::is_lowercase) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msrp_tokio::core::MsrpError;

    #[test]
    fn errors_read_as_one_plain_line() {
        assert_eq!(tidy("Connection refused (os error 111)"), "connection refused");
        assert_eq!(tidy("TLS handshake"), "TLS handshake");
        let refused = Error::Session(SessionError::BindRefused(MsrpError::new(481, "Invalid From-Path")));
        assert_eq!(describe(&refused, "x"), "the peer refused the session (481 Invalid From-Path)");
        let tls = Error::Connect("TLS: invalid peer certificate: UnknownIssuer".into());
        assert_eq!(
            describe(&tls, "127.0.0.1:9"),
            "TLS with 127.0.0.1:9 failed: invalid peer certificate: UnknownIssuer"
        );
        let refused = Error::Connect("Connection refused (os error 111)".into());
        assert_eq!(describe(&refused, "127.0.0.1:9"), "cannot connect to 127.0.0.1:9: connection refused");
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
