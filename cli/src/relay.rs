//! `--relay` and its companions on `send` and `recv`: the relay to go through (RFC 4976)
//! and how to authenticate to it.

use std::path::PathBuf;

use msrp_tokio::core::Uri;
use msrp_tokio::tls::parse_fingerprint;
use msrp_tokio::{RelaySettings, TlsClient};

use crate::failure::{Failure, parse_uri};
use crate::recv::read_file;

/// The environment variable a relay password is read from when no file is given.
pub(crate) const PASSWORD_VARIABLE: &str = "MSRP_RELAY_PASSWORD";

/// Arguments naming a relay.
#[derive(Debug, clap::Args)]
pub(crate) struct RelayArgs {
    /// Go through this MSRP relay (RFC 4976): `msrp://host:port` or `msrps://host:port`.
    #[arg(long, value_name = "URI")]
    pub(crate) relay: Option<String>,
    /// The user name to authenticate to the relay with.
    #[arg(long, value_name = "NAME", requires = "relay")]
    pub(crate) relay_user: Option<String>,
    /// A file whose first line is the relay password (default: the environment variable
    /// `MSRP_RELAY_PASSWORD`).
    #[arg(long, value_name = "FILE", requires = "relay")]
    pub(crate) relay_password_file: Option<PathBuf>,
    /// CA certificates (PEM) to verify an `msrps://` relay with.
    #[arg(long, value_name = "FILE", requires = "relay", conflicts_with = "relay_fingerprint")]
    pub(crate) relay_ca: Option<PathBuf>,
    /// SHA-256 fingerprint (`AB:CD:…`) of an `msrps://` relay's certificate.
    #[arg(long, value_name = "SHA256", requires = "relay")]
    pub(crate) relay_fingerprint: Option<String>,
}

impl RelayArgs {
    /// The relay settings, or `None` without `--relay`.
    pub(crate) fn settings(&self) -> Result<Option<RelaySettings>, Failure> {
        let Some(text) = &self.relay else { return Ok(None) };
        let uri = relay_uri(text)?;
        if uri.session_id.is_some() {
            return Err(Failure::usage(format!(
                "invalid relay {text:?}: name the relay's host and port only, without a session id"
            )));
        }
        let password = self.password()?;
        let mut settings = RelaySettings::at(&uri, self.relay_user.clone().unwrap_or_default(), password);
        settings.tls =
            client_tls(self.relay_ca.as_ref(), self.relay_fingerprint.as_deref(), uri.use_tls, Trust::RELAY)?;
        Ok(Some(settings))
    }

    /// The password: the first line of `--relay-password-file`, else the environment
    /// variable, else none.
    fn password(&self) -> Result<String, Failure> {
        if let Some(file) = &self.relay_password_file {
            let text = read_file(file)?;
            let text = String::from_utf8(text).map_err(|_| {
                Failure::usage(format!("cannot use --relay-password-file {}: it is not UTF-8 text", file.display()))
            })?;
            return Ok(text.lines().next().unwrap_or_default().to_owned());
        }
        Ok(std::env::var(PASSWORD_VARIABLE).unwrap_or_default())
    }
}

/// A relay URI as a user types it: `msrp://host:port`, with `;tcp` added when missing.
fn relay_uri(text: &str) -> Result<Uri, Failure> {
    if text.contains(';') { parse_uri(text) } else { parse_uri(&format!("{text};tcp")) }
}

/// The words of a TLS trust setting: the options and what they check.
#[derive(Clone, Copy)]
pub(crate) struct Trust {
    pub(crate) ca: &'static str,
    pub(crate) fingerprint: &'static str,
    /// What is checked.
    pub(crate) what: &'static str,
    /// Where its URI is given.
    pub(crate) given_by: &'static str,
    /// Where the right fingerprint is found.
    pub(crate) fingerprint_source: &'static str,
}

impl Trust {
    /// `--ca` and `--fingerprint` for the peer.
    pub(crate) const PEER: Self = Self {
        ca: "--ca",
        fingerprint: "--fingerprint",
        what: "peer",
        given_by: "remote path",
        fingerprint_source: "the a=fingerprint line of the peer's SDP",
    };
    /// `--relay-ca` and `--relay-fingerprint` for the relay.
    pub(crate) const RELAY: Self = Self {
        ca: "--relay-ca",
        fingerprint: "--relay-fingerprint",
        what: "relay",
        given_by: "--relay URI",
        fingerprint_source: "the fingerprint of the relay's certificate",
    };
}

/// How to check an `msrps` peer or relay: a CA file or a certificate fingerprint, one of
/// them needed exactly when `use_tls`.
pub(crate) fn client_tls(
    ca: Option<&PathBuf>,
    fingerprint: Option<&str>,
    use_tls: bool,
    trust: Trust,
) -> Result<Option<TlsClient>, Failure> {
    let Trust { ca: ca_option, fingerprint: fingerprint_option, what, given_by, .. } = trust;
    let client = match (ca, fingerprint) {
        (Some(ca), _) => TlsClient::with_ca_pem(&read_file(ca)?),
        (None, Some(fingerprint)) => {
            let fingerprint = parse_fingerprint(fingerprint).ok_or_else(|| {
                Failure::usage(format!("invalid fingerprint {fingerprint:?}: expected 32 hex pairs like AB:CD:…"))
            })?;
            TlsClient::with_fingerprint(fingerprint)
        }
        (None, None) if use_tls => {
            return Err(Failure::usage(format!(
                "an msrps:// {what} needs {ca_option} FILE or {fingerprint_option} SHA256"
            )));
        }
        (None, None) => return Ok(None),
    };
    if !use_tls {
        return Err(Failure::usage(format!("{ca_option} and {fingerprint_option} need an msrps:// {given_by}")));
    }
    client.map(Some).map_err(|error| Failure::usage(format!("cannot use the TLS setting: {error}")))
}
