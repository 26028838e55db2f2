//! HTTP Digest authentication (RFC 2617, MD5) as RFC 4976 §9.1 restricts it for AUTH:
//! reading a relay's `WWW-Authenticate` challenge ([`DigestChallenge`]) and writing the
//! `Authorization` that answers it ([`authorization`]).
//!
//! The digest is `MD5(HA1:nonce:nc:cnonce:qop:HA2)` with `HA1 = MD5(user:realm:password)`
//! and `HA2 = MD5("AUTH:" uri)`, where `uri` is the rightmost To-Path URI of the AUTH
//! exactly as written. A challenge without `qop` gets the older RFC 2069 form
//! `MD5(HA1:nonce:HA2)`, and then no `qop`, `nc` or `cnonce` (RFC 2617 §3.2.2 forbids them
//! when the server offered no qop).

use std::fmt::Write as _;

use md5::{Digest as _, Md5};
use thiserror::Error;

use crate::header::{AuthParams, Authorization, WwwAuthenticate};

use super::RelayCredentials;

/// The method whose name goes into HA2 for MSRP relays.
pub const AUTH_METHOD: &str = "AUTH";

/// Why a `WWW-Authenticate` challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The challenge's scheme is not Digest (RFC 4976 §9.1 forbids Basic).
    #[error("the challenge uses the {0} scheme, not Digest")]
    NotDigest(String),
    /// A parameter every Digest challenge carries is absent.
    #[error("the Digest challenge has no {0} parameter")]
    Missing(&'static str),
    /// The challenge names an algorithm other than MD5 (MD5-sess is forbidden by RFC 4976 §9.1).
    #[error("the Digest challenge asks for the unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The challenge offers qop values, but not `auth`.
    #[error("the Digest challenge offers qop {0:?} without auth")]
    UnsupportedQop(String),
}

/// A Digest challenge from a `WWW-Authenticate` header (RFC 2617 §3.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// The protection space, echoed in the answer.
    pub realm: String,
    /// The server's nonce.
    pub nonce: String,
    /// Opaque data echoed in the answer.
    pub opaque: Option<String>,
    /// `stale=true`: the previous answer was right but its nonce expired.
    pub stale: bool,
    /// The algorithm as named in the challenge (only MD5 is accepted); `None` when unnamed.
    pub algorithm: Option<String>,
    /// Whether the challenge offered `qop=auth` (otherwise it offered no qop at all).
    pub qop_auth: bool,
}

impl DigestChallenge {
    /// Reads a challenge: the scheme must be Digest, `realm` and `nonce` present, the
    /// algorithm MD5 or unnamed, and qop (when offered) must include `auth`.
    pub fn from_header(header: &WwwAuthenticate) -> Result<Self, DigestError> {
        if !header.scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest(header.scheme.clone()));
        }
        Self::from_params(&header.params)
    }

    /// Reads a challenge from its parameters (the text after `Digest `).
    pub fn from_params(params: &AuthParams) -> Result<Self, DigestError> {
        let realm = params.get("realm").ok_or(DigestError::Missing("realm"))?.to_owned();
        let nonce = params.get("nonce").ok_or(DigestError::Missing("nonce"))?.to_owned();
        let algorithm = params.get("algorithm").map(str::to_owned);
        if let Some(name) = algorithm.as_deref().filter(|name| !name.eq_ignore_ascii_case("MD5")) {
            return Err(DigestError::UnsupportedAlgorithm(name.to_owned()));
        }
        let qop_auth = match params.get("qop") {
            None => false,
            Some(list) if list.split(',').any(|value| value.trim().eq_ignore_ascii_case("auth")) => true,
            Some(list) => return Err(DigestError::UnsupportedQop(list.to_owned())),
        };
        Ok(Self {
            realm,
            nonce,
            opaque: params.get("opaque").map(str::to_owned),
            stale: params.get("stale").is_some_and(|value| value.eq_ignore_ascii_case("true")),
            algorithm,
            qop_auth,
        })
    }
}

/// The lower-case hex MD5 of `text`.
fn md5_hex(text: &str) -> String {
    let digest = Md5::digest(text.as_bytes());
    let mut out = String::with_capacity(32);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The qop part of a digest: nonce count (8 hex digits) and client nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QopAuth<'a> {
    /// The nonce count as written, e.g. `00000001`.
    pub nc: &'a str,
    /// The client nonce.
    pub cnonce: &'a str,
}

/// The request digest of RFC 2617 §3.2.2.1 with MD5: `MD5(HA1:nonce:nc:cnonce:auth:HA2)`
/// with `qop`, `MD5(HA1:nonce:HA2)` without (RFC 2069).
pub fn request_digest(
    credentials: &RelayCredentials,
    realm: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<QopAuth<'_>>,
) -> String {
    let ha1 = md5_hex(&format!("{}:{realm}:{}", credentials.username, credentials.password));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    match qop {
        Some(QopAuth { nc, cnonce }) => md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// The `Authorization` answering `challenge` for an AUTH whose rightmost To-Path URI is
/// `digest_uri` (as written), with nonce count `nc` and client nonce `cnonce`.
///
/// Directives come in this order, separated by `", "`: username, realm, nonce, `uri`
/// (only with `include_uri`: RFC 4976's grammar has none, some relays demand it),
/// `qop=auth`, `nc`, `cnonce` (these three only when the challenge offered qop), response,
/// opaque (when challenged with one), `algorithm=MD5` (only when the challenge named it).
pub fn authorization(
    challenge: &DigestChallenge,
    credentials: &RelayCredentials,
    digest_uri: &str,
    include_uri: bool,
    nc: u32,
    cnonce: &str,
) -> Authorization {
    let nc = format!("{nc:08x}");
    let qop = challenge.qop_auth.then_some(QopAuth { nc: &nc, cnonce });
    let response = request_digest(credentials, &challenge.realm, AUTH_METHOD, digest_uri, &challenge.nonce, qop);
    let mut params = AuthParams::default();
    params.push("username", credentials.username.as_str(), true);
    params.push("realm", challenge.realm.as_str(), true);
    params.push("nonce", challenge.nonce.as_str(), true);
    if include_uri {
        params.push("uri", digest_uri, true);
    }
    if let Some(qop) = qop {
        params.push("qop", "auth", false);
        params.push("nc", qop.nc, false);
        params.push("cnonce", qop.cnonce, true);
    }
    params.push("response", response, true);
    if let Some(opaque) = &challenge.opaque {
        params.push("opaque", opaque.as_str(), true);
    }
    if let Some(algorithm) = &challenge.algorithm {
        params.push("algorithm", algorithm.as_str(), false);
    }
    Authorization { scheme: "Digest".to_owned(), params }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Header;

    fn credentials(username: &str, password: &str) -> RelayCredentials {
        RelayCredentials { username: username.to_owned(), password: password.to_owned() }
    }

    // RFC 2617 §3.5: the worked example (GET /dir/index.html), and the same inputs
    // without qop (RFC 2069 form; value computed independently with Python's hashlib).
    #[test]
    fn rfc2617_worked_example() {
        let mufasa = credentials("Mufasa", "Circle Of Life");
        let nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
        let qop = QopAuth { nc: "00000001", cnonce: "0a4f113b" };
        let digest = request_digest(&mufasa, "testrealm@host.com", "GET", "/dir/index.html", nonce, Some(qop));
        assert_eq!(digest, "6629fae49393a05397450978507c4ef1");
        let digest = request_digest(&mufasa, "testrealm@host.com", "GET", "/dir/index.html", nonce, None);
        assert_eq!(digest, "670fd8c2df070c60b045671b8b24ff02");
    }

    fn challenge(text: &str) -> DigestChallenge {
        DigestChallenge::from_header(&WwwAuthenticate::decode(text).expect("header parses")).expect("challenge")
    }

    // R4976-5.1, R4976-9.1: the Authorization of RFC 4976 §5.1 (first and second relay),
    // byte for byte but the response, which the RFC copied from RFC 2617 and which
    // depends on a password it does not give: ours is checked against hashlib's with
    // password "secret" and A2 = "AUTH:" + the rightmost To-Path URI as written.
    #[test]
    fn rfc4976_example_authorization() {
        let alice = credentials("Alice", "secret");
        let intra =
            challenge(r#"Digest realm="intra.example.com", qop="auth", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#);
        let header = authorization(&intra, &alice, "msrps://alice@intra.example.com;tcp", false, 1, "0a4f113b");
        assert_eq!(
            header.encode(),
            "Digest username=\"Alice\", realm=\"intra.example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"750e4fd73ea1221cef6d74424f4cd590\""
        );
        let extra =
            challenge(r#"Digest realm="extra.example.com", qop="auth", nonce="Uumu8cAV38FGsEF31VLevIbNXj9HWO""#);
        let header = authorization(&extra, &alice, "msrps://extra.example.com;tcp", false, 1, "85a0dca8");
        assert_eq!(header.params.get("response"), Some("4c5d833e7a35eee36c3df2bd89dbd617"));
    }

    // Kamailio's challenge (opaque, qop list), the uri= form, algorithm echoed only when
    // named, nc in 8 hex digits.
    #[test]
    fn optional_directives_and_their_order() {
        let alice = credentials("alice", "secret");
        let kamailio = challenge(r#"Digest realm="msrp-test", nonce="n1", qop="auth,auth-int", opaque="op""#);
        let header = authorization(&kamailio, &alice, "msrp://127.0.0.1:2855;tcp", true, 26, "c1");
        let names: Vec<&str> = header.params.0.iter().map(|param| param.name.as_str()).collect();
        assert_eq!(names, ["username", "realm", "nonce", "uri", "qop", "nc", "cnonce", "response", "opaque"]);
        assert_eq!(header.params.get("nc"), Some("0000001a"));
        assert_eq!(header.params.get("uri"), Some("msrp://127.0.0.1:2855;tcp"));
        let named = challenge(r#"Digest realm="r", nonce="n", algorithm=MD5"#);
        let header = authorization(&named, &alice, "msrp://r:1;tcp", false, 1, "c");
        let names: Vec<&str> = header.params.0.iter().map(|param| param.name.as_str()).collect();
        assert_eq!(names, ["username", "realm", "nonce", "response", "algorithm"], "no qop offered, none sent");
        assert!(header.encode().ends_with(", algorithm=MD5"));
    }

    #[test]
    fn challenges_that_cannot_be_answered() {
        let parse = |text: &str| DigestChallenge::from_header(&WwwAuthenticate::decode(text).expect("parses"));
        assert_eq!(parse(r#"Basic realm="r""#), Err(DigestError::NotDigest("Basic".into())));
        assert_eq!(parse(r#"Digest realm="r""#), Err(DigestError::Missing("nonce")));
        assert_eq!(
            parse(r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#),
            Err(DigestError::UnsupportedAlgorithm("MD5-sess".into()))
        );
        assert_eq!(
            parse(r#"Digest realm="r", nonce="n", qop="auth-int""#),
            Err(DigestError::UnsupportedQop("auth-int".into()))
        );
        let stale = parse(r#"Digest realm="r", nonce="n", stale=TRUE, qop="auth""#).expect("parses");
        assert!(stale.stale && stale.qop_auth);
    }
}
