//! MSRP URIs (RFC 4975 §6): parsing, formatting and the two comparisons.
//!
//! `msrp[s]://[user@]host[:port][/session-id];transport[;name[=value]]…`
//!
//! Equality ([`PartialEq`]) follows RFC 4975 §6.1: scheme and host compare
//! case-insensitively (with percent-decoding of unreserved characters and IP
//! address equivalence), the port must match exactly (no 2855 default), the
//! session id is case-sensitive, the transport case-insensitive, and user info
//! and parameters other than the transport are ignored. [`Uri::matches_session`]
//! is the looser comparison used with `use_sessmatch`: session ids only.

use core::net::IpAddr;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use thiserror::Error;

use crate::ids::IdGenerator;

/// An MSRP or MSRPS URI.
///
/// Fields are public, as in msrplib, so that a connector can fill in a port
/// picked by the operating system (`prepare` with port 0).
#[doc(alias = "URI")]
#[derive(Debug, Clone, Eq)]
pub struct Uri {
    /// The host: a domain name, an IPv4 address or an IPv6 address (without brackets).
    pub host: String,
    /// `msrps` (TLS) when true, `msrp` otherwise.
    pub use_tls: bool,
    /// The user part (`user@`), which never takes part in comparison.
    pub user: Option<String>,
    /// The port. URIs exchanged in SDP always carry one; only an AUTH To-Path may omit it.
    pub port: Option<u16>,
    /// The session id; absent in a URI that names a host (a relay).
    pub session_id: Option<String>,
    /// The transport parameter: `tcp`, `ws` or any other alphanumeric token.
    pub transport: String,
    /// The URI parameters after the transport, in order.
    pub parameters: Vec<(String, Option<String>)>,
}

/// Why a string is not an MSRP URI.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UriError {
    /// The URI contains a character outside US-ASCII (RFC 4975 §6).
    #[error("MSRP URI {0:?} is not US-ASCII")]
    NotAscii(String),
    /// The scheme is not `msrp` or `msrps`.
    #[error("MSRP URI {0:?} does not start with msrp:// or msrps://")]
    BadScheme(String),
    /// The user part is empty or holds characters user info cannot have.
    #[error("MSRP URI {0:?} has an invalid user part")]
    BadUser(String),
    /// The host is empty or holds characters a host cannot have.
    #[error("MSRP URI {0:?} has an invalid host")]
    BadHost(String),
    /// The port is not a number from 0 to 65535.
    #[error("MSRP URI {0:?} has an invalid port")]
    BadPort(String),
    /// An IP address without a port (RFC 4975 §6).
    #[error("MSRP URI {0:?} names an IP address without a port")]
    IpWithoutPort(String),
    /// The user info holds a password (RFC 4975 §6).
    #[error("MSRP URI {0:?} carries a password in its user info")]
    Password(String),
    /// The session id is empty or holds characters outside `unreserved + = /`.
    #[error("MSRP URI {0:?} has an invalid session id")]
    BadSessionId(String),
    /// The mandatory `;transport` parameter is missing or not alphanumeric.
    #[error("MSRP URI {0:?} has no valid transport parameter (e.g. ;tcp)")]
    BadTransport(String),
    /// A path holds no URI at all.
    #[error("the path {0:?} holds no URI")]
    EmptyPath(String),
    /// A parameter is not `token[=token]`.
    #[error("MSRP URI {0:?} has an invalid parameter")]
    BadParameter(String),
}

impl Uri {
    /// A URI for `host` with transport `tcp` and nothing else set. An IPv6 address may be
    /// given with or without brackets. (RFC 4975 §6 wants a port with an IP address:
    /// set one before the URI goes into a path.)
    pub fn new(host: impl Into<String>) -> Self {
        let host: String = host.into();
        let host = match host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')) {
            Some(inner) => inner.to_owned(),
            None => host,
        };
        Self {
            host,
            use_tls: false,
            user: None,
            port: None,
            session_id: None,
            transport: "tcp".to_owned(),
            parameters: Vec::new(),
        }
    }

    /// Sets the port.
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Sets the session id.
    #[must_use]
    pub fn with_session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Sets a fresh random session id with ≥ 80 bits of randomness (RFC 4975 §14.1).
    #[must_use]
    pub fn with_random_session_id(mut self, ids: &mut IdGenerator) -> Self {
        self.session_id = Some(ids.session_id());
        self
    }

    /// Switches between `msrps` (true) and `msrp`.
    #[must_use]
    pub fn with_tls(mut self, use_tls: bool) -> Self {
        self.use_tls = use_tls;
        self
    }

    /// The scheme: `msrps` or `msrp`.
    pub fn scheme(&self) -> &'static str {
        if self.use_tls { "msrps" } else { "msrp" }
    }

    #[doc(alias = "use_sessmatch")]
    #[doc(alias = "sessmatch")]
    /// Compares by session id only, as `use_sessmatch` asks
    /// (draft-ietf-simple-msrp-sessmatch): two URIs without a session id never match.
    pub fn matches_session(&self, other: &Self) -> bool {
        matches!((&self.session_id, &other.session_id), (Some(a), Some(b)) if a == b)
    }

    /// Parses a path: URIs separated by spaces (`a=path`, To-Path, From-Path, Use-Path).
    /// Extra spaces between URIs are tolerated; an empty path is an error.
    pub fn parse_path(path: &str) -> Result<Vec<Self>, UriError> {
        let uris =
            path.split([' ', '\t']).filter(|part| !part.is_empty()).map(str::parse).collect::<Result<Vec<_>, _>>()?;
        if uris.is_empty() {
            return Err(UriError::EmptyPath(path.to_owned()));
        }
        Ok(uris)
    }

    /// The host as compared by RFC 4975 §6.1: an IP address, or the name
    /// percent-decoded and lower-cased.
    fn host_key(&self) -> HostKey {
        let decoded = percent_decode_unreserved(&self.host);
        match decoded.parse::<IpAddr>() {
            Ok(ip) => HostKey::Ip(ip),
            Err(_) => HostKey::Name(decoded.to_ascii_lowercase()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostKey {
    Ip(IpAddr),
    Name(String),
}

/// A URI reduced to what RFC 4975 §6.1 compares, for hash maps: two URIs are equal
/// (`==`) exactly when their keys are. Computing it costs a few small allocations;
/// comparing and hashing keys costs none, which makes it the cheap index of a table
/// looked up once per connection or message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UriKey {
    use_tls: bool,
    port: Option<u16>,
    session_id: Option<String>,
    /// Lower-cased.
    transport: String,
    host: HostKey,
}

impl Uri {
    /// This URI's RFC 4975 §6.1 comparison key: scheme, host (percent-decoded
    /// unreserved characters, lower-cased name or parsed IP address), port as written
    /// (no 2855 default), session id (case-sensitive) and lower-cased transport. User
    /// info and the other parameters are left out, as `==` ignores them.
    pub fn comparison_key(&self) -> UriKey {
        UriKey {
            use_tls: self.use_tls,
            port: self.port,
            session_id: self.session_id.clone(),
            transport: self.transport.to_ascii_lowercase(),
            host: self.host_key(),
        }
    }
}

impl PartialEq for Uri {
    /// RFC 4975 §6.1 equality (see the module docs); the same as comparing
    /// [`Uri::comparison_key`]s, without computing them when the hosts are spelled alike.
    fn eq(&self, other: &Self) -> bool {
        self.use_tls == other.use_tls
            && self.port == other.port
            && self.session_id == other.session_id
            && self.transport.eq_ignore_ascii_case(&other.transport)
            && (self.host == other.host || self.host_key() == other.host_key())
    }
}

impl Hash for Uri {
    /// Hashes the [`Uri::comparison_key`], so that equal URIs hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.comparison_key().hash(state);
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme())?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(session_id) = &self.session_id {
            write!(f, "/{session_id}")?;
        }
        write!(f, ";{}", self.transport)?;
        for (name, value) in &self.parameters {
            write!(f, ";{name}")?;
            if let Some(value) = value {
                write!(f, "={value}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Uri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if !text.is_ascii() {
            return Err(UriError::NotAscii(text.to_owned()));
        }
        let err = |make: fn(String) -> UriError| make(text.to_owned());
        let (scheme, rest) = text.split_once("://").ok_or_else(|| err(UriError::BadScheme))?;
        let use_tls = if scheme.eq_ignore_ascii_case("msrp") {
            false
        } else if scheme.eq_ignore_ascii_case("msrps") {
            true
        } else {
            return Err(err(UriError::BadScheme));
        };

        let authority_end = rest.find(['/', ';']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        let (user, host_port) = match authority.split_once('@') {
            Some((user, host_port)) => {
                if user.contains(':') {
                    return Err(err(UriError::Password));
                }
                if user.is_empty() || !user.bytes().all(is_userinfo_char) {
                    return Err(err(UriError::BadUser));
                }
                (Some(user.to_owned()), host_port)
            }
            None => (None, authority),
        };
        let (host, port, is_ip) = split_host_port(host_port).ok_or_else(|| err(UriError::BadHost))?;
        let port = match port {
            Some(digits) => Some(parse_port(digits).ok_or_else(|| err(UriError::BadPort))?),
            None => None,
        };
        if is_ip && port.is_none() {
            return Err(err(UriError::IpWithoutPort));
        }

        let (session_id, rest) = match rest.strip_prefix('/') {
            Some(after) => {
                let end = after.find(';').unwrap_or(after.len());
                let id = &after[..end];
                if id.is_empty() || !id.bytes().all(is_session_id_char) {
                    return Err(err(UriError::BadSessionId));
                }
                (Some(id.to_owned()), &after[end..])
            }
            None => (None, rest),
        };

        let mut params = rest.strip_prefix(';').ok_or_else(|| err(UriError::BadTransport))?.split(';');
        let transport = params.next().unwrap_or_default();
        if transport.is_empty() || !transport.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err(UriError::BadTransport));
        }
        let parameters = params
            .map(|param| {
                let (name, value) = match param.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (param, None),
                };
                let valid = is_token(name) && value.is_none_or(is_token);
                valid.then(|| (name.to_owned(), value.map(str::to_owned)))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| err(UriError::BadParameter))?;

        Ok(Self { host: host.to_owned(), use_tls, user, port, session_id, transport: transport.to_owned(), parameters })
    }
}

/// Splits `host[:port]` or `[v6][:port]`; returns (host, port digits, host is an IP literal).
fn split_host_port(text: &str) -> Option<(&str, Option<&str>, bool)> {
    if let Some(after) = text.strip_prefix('[') {
        let (v6, rest) = after.split_once(']')?;
        v6.parse::<core::net::Ipv6Addr>().ok()?;
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':')?),
        };
        return Some((v6, port, true));
    }
    let (host, port) = match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    if host.is_empty() || !is_reg_name(host) {
        return None;
    }
    let is_ip = host.parse::<core::net::Ipv4Addr>().is_ok();
    Some((host, port, is_ip))
}

fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// RFC 3986 reg-name: unreserved, pct-encoded and sub-delims (minus `;`, which ends the authority).
fn is_reg_name(host: &str) -> bool {
    let bytes = host.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escape = bytes.get(i + 1..i + 3);
                if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if is_unreserved(b) || b"!$&'()*+,=".contains(&b) => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_userinfo_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || b"!$&'()*+,=".contains(&b)
}

fn is_session_id_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'+' | b'=' | b'/')
}

/// RFC 4975 `token`.
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_token_char)
}

pub(crate) fn is_token_char(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x27 | 0x2A | 0x2B | 0x2D | 0x2E | 0x30..=0x39 | 0x41..=0x5A | 0x5E..=0x7E)
}

/// Decodes `%XX` escapes of unreserved characters only; other escapes stay as written.
fn percent_decode_unreserved(host: &str) -> String {
    if !host.contains('%') {
        return host.to_owned();
    }
    let bytes = host.as_bytes();
    let mut out = String::with_capacity(host.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = host.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(decoded) = hex.filter(|b| is_unreserved(*b)) {
                out.push(char::from(decoded));
                i += 3;
                continue;
            }
        }
        out.push(char::from(bytes[i]));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Uri {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    // R4975-6.1-1 and R4975-6.1-2: the 13 rows of conformance.md §5.1.
    #[test]
    fn comparison_table() {
        let rows = [
            ("msrp://Host.Example.COM:7777/abc;tcp", "msrp://host.example.com:7777/abc;tcp", true),
            ("MSRP://host.example.com:7777/abc;tcp", "msrp://host.example.com:7777/abc;tcp", true),
            ("msrp://host.example.com:7777/abc;tcp", "msrps://host.example.com:7777/abc;tcp", false),
            ("msrp://host.example.com:7777/ABC;tcp", "msrp://host.example.com:7777/abc;tcp", false),
            ("msrp://host.example.com/abc;tcp", "msrp://host.example.com:2855/abc;tcp", false),
            ("msrp://host.example.com:7777/abc;TCP", "msrp://host.example.com:7777/abc;tcp", true),
            ("msrp://host.example.com:7777/abc;tcp", "msrp://host.example.com:7777/abc;ws", false),
            ("msrp://alice@host.example.com:7777/abc;tcp", "msrp://host.example.com:7777/abc;tcp", true),
            ("msrp://host.example.com:7777;tcp", "msrp://host.example.com:7777/abc;tcp", false),
            ("msrp://%68ost.example.com:7777/abc;tcp", "msrp://host.example.com:7777/abc;tcp", true),
            ("msrp://[2001:db8::1]:7777/abc;tcp", "msrp://[2001:DB8:0:0::1]:7777/abc;tcp", true),
            ("msrp://host.example.com:7777/abc;tcp;x=1", "msrp://host.example.com:7777/abc;tcp", true),
            ("msrp://host.example.com:7777/abc;tcp", "msrp://host.example.com:7778/abc;tcp", false),
        ];
        for (row, (a, b, equal)) in rows.into_iter().enumerate() {
            let (a, b) = (uri(a), uri(b));
            assert_eq!(a == b, equal, "row {}: {a} vs {b}", row + 1);
            assert_eq!(b == a, equal, "row {} reversed", row + 1);
            if equal {
                let hash = |u: &Uri| {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    u.hash(&mut h);
                    h.finish()
                };
                assert_eq!(hash(&a), hash(&b), "row {}: equal URIs hash alike", row + 1);
            }
        }
    }

    // R4975-6-1 … R4975-6-4, R7977-5.2.1-1 and the validity list of conformance.md §5.1.
    #[test]
    fn validity() {
        for (text, expected) in [
            ("msrp://192.0.2.1/abc;tcp", UriError::IpWithoutPort(String::new())),
            ("msrp://host.example.com:7777/abc", UriError::BadTransport(String::new())),
            ("msrp://u:pw@host.example.com:7777/abc;tcp", UriError::Password(String::new())),
            ("msrp://h:1/s b;tcp", UriError::BadSessionId(String::new())),
            ("msrp://[2001:db8::1]/abc;tcp", UriError::IpWithoutPort(String::new())),
            ("msrp://h:99999/s;tcp", UriError::BadPort(String::new())),
            ("sip://h:1/s;tcp", UriError::BadScheme(String::new())),
            ("msrp://hé:1/s;tcp", UriError::NotAscii(String::new())),
            ("msrp://h:1/s;tcp;a=b=c", UriError::BadParameter(String::new())),
            ("msrp://:1/s;tcp", UriError::BadHost(String::new())),
            ("msrp://a b@h:1/s;tcp", UriError::BadUser(String::new())),
        ] {
            let error = text.parse::<Uri>().expect_err(text);
            assert_eq!(std::mem::discriminant(&error), std::mem::discriminant(&expected), "{text}: {error}");
            assert!(error.to_string().contains(text), "the error names the input: {error}");
        }
        let ws = uri("msrps://df7jal23ls0d.invalid:2855/98cjs;ws");
        assert!(ws.use_tls);
        assert_eq!(ws.transport, "ws");
        let relay = uri("msrps://extra.example.com;tcp");
        assert_eq!((relay.port, relay.session_id), (None, None));
        let odd = uri("msrp://h:1/s;dc;foo=bar;flag");
        assert_eq!(odd.parameters, vec![("foo".into(), Some("bar".into())), ("flag".into(), None)]);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp",
            "msrps://alice@intra.example.com;tcp",
            "msrp://[2001:db8::1]:7777/a+b=c/d;tcp;x=1",
            "msrps://df7jal23ls0d.invalid:2855/98cjs;ws",
        ] {
            assert_eq!(uri(text).to_string(), text);
        }
        assert_eq!(uri("MSRPS://H:1/s;TCP").to_string(), "msrps://H:1/s;TCP");
        assert_eq!(Uri::new("[::1]").with_port(1).to_string(), "msrp://[::1]:1;tcp");
        assert_eq!(Uri::new("::1").with_port(1), uri("msrp://[::1]:1;tcp"));
    }

    #[test]
    fn sessmatch_compares_session_ids_only() {
        let a = uri("msrp://10.0.0.1:1000/abc;tcp");
        let b = uri("msrps://relay.example.com:2855/abc;ws");
        assert!(a != b && a.matches_session(&b));
        assert!(!a.matches_session(&uri("msrp://10.0.0.1:1000/ABC;tcp")));
        assert!(!uri("msrp://h:1;tcp").matches_session(&uri("msrp://h:1;tcp")));
    }

    #[test]
    fn builders_and_paths() {
        let mut ids = IdGenerator::seed_from_u64(3);
        let local = Uri::new("127.0.0.1").with_port(0).with_random_session_id(&mut ids).with_tls(true);
        assert_eq!(local.scheme(), "msrps");
        assert_eq!(local.session_id.as_ref().map(String::len), Some(crate::ids::SESSION_ID_LEN));
        let path = Uri::parse_path("msrp://a:1/x;tcp  msrp://b:2/y;tcp").expect("path");
        assert_eq!(path.len(), 2);
        assert!(Uri::parse_path("  ").is_err());
    }
}
