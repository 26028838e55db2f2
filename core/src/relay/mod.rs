//! The relay client (RFC 4976): getting and keeping a path through one or more MSRP relays.
//!
//! - [`RelayClient`] is the chunk-level machine for the connection to the nearest relay:
//!   it sends `AUTH` to every hop in turn (the second through the first, §5.1), answers
//!   `401` with a Digest [`Authorization`](crate::header::Authorization) ([`digest`]),
//!   follows `423` once, and re-authenticates before each grant expires.
//! - [`RelayLogin`] wraps it with a decoder for the time before a session exists: bytes in,
//!   bytes out, until the path is granted; then [`RelayLogin::into_parts`] hands the client
//!   and any bytes read past the relay's last answer to a [`Session`](crate::session::Session)
//!   ([`Session::set_relay`](crate::session::Session::set_relay)), which keeps refreshing.
//!
//! Paths (RFC 4976 §5.1): the relays' Use-Path lists them nearest first (`B C`); the path put
//! in SDP is that list reversed plus our URI ([`RelayClient::local_path`]: `C B A`); the
//! To-Path of every request is the Use-Path then the peer's SDP path
//! ([`RelayClient::to_path`]: `B C D E F`).
//!
//! Interoperability (issue 18): relays disagree about the Digest `uri=` directive
//! ([`DigestUri`]) and about `Expires` (Kamailio answers 423 to any Expires with an
//! Authorization), so the defaults send the RFC's form without `uri=` first and no
//! `Expires`, and adapt to what the relay answers.

mod client;
pub mod digest;
mod login;

use std::time::Duration;

use thiserror::Error;

use crate::session::DisplayDuration;
use crate::transport::MsrpError;
use crate::uri::Uri;

pub use client::RelayClient;
pub use login::{LoginOutput, RelayLogin};

/// How long an AUTH waits for its answer: 30 s, like every MSRP transaction.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// A user name and password for a relay's Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayCredentials {
    /// The user name (`username=` of the Authorization).
    pub username: String,
    /// The password (only its digest leaves the machine).
    pub password: String,
}

/// How the Authorization header treats the digest `uri=` directive (relays disagree).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DigestUri {
    /// RFC 4976's form without `uri=` first (msrprelay never answers an Authorization with
    /// `uri=`); when a complete Authorization gets another 401 without `stale=true`, once
    /// more with `uri=` (Kamailio demands it).
    #[default]
    Auto,
    /// Always `uri="<relay URI>"`.
    Always,
    /// Never `uri=`.
    Never,
}

/// One relay to authenticate with.
#[derive(Debug, Clone)]
pub struct RelayHop {
    /// The relay as put in To-Path, e.g. `msrp://127.0.0.1:2855;tcp`; its text is also the
    /// digest URI.
    pub uri: Uri,
    /// Credentials for its challenge; `None` fails with [`RelayError::CredentialsNeeded`]
    /// when challenged.
    pub credentials: Option<RelayCredentials>,
    /// The `uri=` directive policy.
    pub digest_uri: DigestUri,
    /// The Expires (seconds) asked for; `None` (the default) sends none and takes the
    /// relay's grant.
    pub expires: Option<u64>,
}

impl RelayHop {
    /// A hop with the default digest policy and no Expires.
    pub fn new(uri: Uri, credentials: Option<RelayCredentials>) -> Self {
        Self { uri, credentials, digest_uri: DigestUri::Auto, expires: None }
    }
}

/// What a [`RelayClient`] is configured with.
#[derive(Debug, Clone)]
pub struct RelayClientConfig {
    /// The relays, nearest first; each AUTH after the first goes through those before it.
    pub hops: Vec<RelayHop>,
    /// Our own session URI: the From-Path of every AUTH, the last URI of our SDP path.
    pub local_uri: Uri,
    /// How long an AUTH waits for its answer ([`AUTH_TIMEOUT`]).
    pub auth_timeout: Duration,
}

impl RelayClientConfig {
    /// A configuration with the default AUTH timeout.
    pub fn new(hops: Vec<RelayHop>, local_uri: Uri) -> Self {
        Self { hops, local_uri, auth_timeout: AUTH_TIMEOUT }
    }
}

/// What the relay client tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// Every hop granted a path: requests can flow. `expires` is the shortest grant of
    /// all hops (`None` when no relay gave an Expires).
    Authorized {
        /// The granted path, nearest relay first.
        use_path: Vec<Uri>,
        /// The shortest grant.
        expires: Option<Duration>,
    },
    /// A hop re-authenticated before its grant ran out.
    Refreshed {
        /// The path now, nearest relay first.
        use_path: Vec<Uri>,
        /// The new grant of the refreshed hop.
        expires: Option<Duration>,
        /// Whether the path differs from before (the peer's SDP still has the old one).
        path_changed: bool,
    },
    /// Authentication failed: before authorization the client is done; a failed refresh
    /// leaves the path usable until its grant runs out, and that hop is not refreshed again.
    Failed(RelayError),
}

/// Why a relay would not give (or keep) a path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RelayError {
    /// 403, or another 401 after a complete Authorization in every form tried.
    #[error("the relay {relay} did not accept the user name and password")]
    WrongCredentials {
        /// The relay.
        relay: Box<Uri>,
    },
    /// The relay asked for credentials and none are configured for it.
    #[error("the relay {relay} asks for credentials and none are configured")]
    CredentialsNeeded {
        /// The relay.
        relay: Box<Uri>,
    },
    /// Any other final answer (including a second 423, or a nonce stale too often).
    #[error("the relay {relay} refused to authenticate us: {status}")]
    Refused {
        /// The relay.
        relay: Box<Uri>,
        /// Its answer.
        status: MsrpError,
    },
    /// No answer within the AUTH timeout.
    #[error("the relay {relay} did not answer our AUTH within {}", DisplayDuration(*after))]
    TimedOut {
        /// The relay.
        relay: Box<Uri>,
        /// The timeout that ran out.
        after: Duration,
    },
    /// An answer that cannot be used (a 200 without Use-Path, a challenge that cannot be
    /// answered, input that is not MSRP).
    #[error("the relay {relay} sent an answer to AUTH that cannot be used: {reason}")]
    Malformed {
        /// The relay.
        relay: Box<Uri>,
        /// What is wrong with the answer.
        reason: String,
    },
    /// The connection went away while authenticating.
    #[error("the relay closed the connection while we authenticated")]
    Closed,
}
