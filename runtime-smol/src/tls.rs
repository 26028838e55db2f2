//! TLS for `msrps` URIs, with rustls (TLS 1.2 and 1.3 only, RFC 8996).
//!
//! A client checks the server either against root certificates (a CA, with the URI's
//! host as the name to verify and to send as SNI) or against a pinned SHA-256
//! certificate fingerprint, as SDP's `a=fingerprint` gives for self-signed peers
//! (RFC 4975 §14.2, RFC 4572). Any mismatch fails the handshake, so no MSRP byte is
//! exchanged with a peer that is not the expected one.

use std::io;
use std::sync::Arc;

use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::runtime::{BoxStream, IoStream, io_phrase};
use crate::session::Error;

/// Why a TLS handshake with a server failed, in the words a person can act on.
///
/// Certificate failures name the check that failed; the handshake failures that are
/// not about the certificate say what the peer did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// No trusted certificate authority signed the peer's certificate (a self-signed
    /// certificate checked against CA certificates ends here too, also when a trusted
    /// authority has the name of its issuer).
    #[error("the peer's certificate is not signed by a trusted certificate authority")]
    UnknownIssuer,
    /// The peer's certificate is a CA certificate, as self-signed certificates made with
    /// common tools are: it cannot identify a server, even when trusted as a CA.
    #[error("the peer's certificate is a CA certificate (self-signed ones often are), not one issued to a server")]
    CaUsedAsEndEntity,
    /// The peer's certificate has expired.
    #[error("the peer's certificate has expired")]
    Expired,
    /// The peer's certificate is not valid yet.
    #[error("the peer's certificate is not valid yet")]
    NotValidYet,
    /// The peer's certificate was issued for other names than `host`.
    #[error("the peer's certificate is not valid for {host}")]
    NameMismatch {
        /// The host the URI names.
        host: String,
    },
    /// The peer's certificate was revoked.
    #[error("the peer's certificate was revoked")]
    Revoked,
    /// The peer's certificate is not the one pinned by its fingerprint.
    #[error("the peer's certificate does not have the expected fingerprint")]
    FingerprintMismatch,
    /// The peer's certificate failed another check (its encoding, its signature, …).
    #[error("the peer's certificate is invalid")]
    InvalidCertificate,
    /// The peer answered with something that is not TLS.
    #[error("the peer does not speak TLS on this port")]
    NotTls,
    /// The peer ended the handshake with an alert (its name as the TLS RFCs write it).
    #[error("the peer ended the TLS handshake with the alert {alert}")]
    PeerAlert {
        /// The alert, e.g. `handshake failure`.
        alert: String,
    },
    /// The peer offers no TLS version or cipher suite this side accepts.
    #[error("the peer has no TLS version or cipher suite in common with us")]
    Incompatible,
    /// The connection closed before the handshake was done.
    #[error("the connection closed during the TLS handshake")]
    Closed,
    /// The URI's host cannot be used as a TLS server name.
    #[error("{host} cannot be used as a TLS server name")]
    InvalidName {
        /// The host the URI names.
        host: String,
    },
    /// Any other failure of the handshake, as the TLS library words it.
    #[error("the TLS handshake failed: {reason}")]
    Handshake {
        /// What went wrong.
        reason: String,
    },
}

impl TlsError {
    /// The failure behind an error of a handshake with a server named `host`.
    fn of_handshake(error: &io::Error, host: &str) -> Self {
        if let Some(error) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return Self::of_rustls(error, host);
        }
        match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Self::Closed,
            _ => Self::Handshake { reason: io_phrase(error) },
        }
    }

    fn of_rustls(error: &rustls::Error, host: &str) -> Self {
        use rustls::CertificateError as Certificate;
        match error {
            rustls::Error::InvalidCertificate(certificate) => match certificate {
                // A bad signature: an authority of the issuer's name is trusted, but it did
                // not sign this certificate.
                Certificate::UnknownIssuer | Certificate::BadSignature => Self::UnknownIssuer,
                Certificate::Expired | Certificate::ExpiredContext { .. } => Self::Expired,
                Certificate::NotValidYet | Certificate::NotValidYetContext { .. } => Self::NotValidYet,
                Certificate::NotValidForName | Certificate::NotValidForNameContext { .. } => {
                    Self::NameMismatch { host: host.to_owned() }
                }
                Certificate::Revoked => Self::Revoked,
                Certificate::Other(other) if other.0.is::<FingerprintMismatch>() => Self::FingerprintMismatch,
                Certificate::Other(other)
                    if other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity) =>
                {
                    Self::CaUsedAsEndEntity
                }
                _ => Self::InvalidCertificate,
            },
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. } => Self::NotTls,
            rustls::Error::AlertReceived(alert) => Self::PeerAlert { alert: alert_words(alert.as_str()) },
            rustls::Error::PeerIncompatible(_) => Self::Incompatible,
            // rustls words some failures with Rust debug formatting: plain words here.
            rustls::Error::PeerMisbehaved(_) => {
                Self::Handshake { reason: "the peer broke the TLS protocol".to_owned() }
            }
            rustls::Error::NoCertificatesPresented => {
                Self::Handshake { reason: "the peer showed no certificate".to_owned() }
            }
            rustls::Error::DecryptError => {
                Self::Handshake { reason: "a TLS record from the peer could not be decrypted".to_owned() }
            }
            rustls::Error::General(reason) => Self::Handshake { reason: reason.clone() },
            _ => Self::Handshake { reason: "an unexpected TLS error".to_owned() },
        }
    }
}

/// An alert's name in words: `HandshakeFailure` → `handshake failure`.
fn alert_words(name: Option<&str>) -> String {
    let Some(name) = name else { return "of an unknown kind".to_owned() };
    let mut words = String::new();
    for c in name.chars() {
        if c.is_uppercase() && !words.is_empty() {
            words.push(' ');
        }
        words.extend(c.to_lowercase());
    }
    words
}

/// What [`PinnedCertificate`] rejects a certificate with, found again in the handshake's
/// error.
#[derive(Debug)]
struct FingerprintMismatch;

impl std::fmt::Display for FingerprintMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the certificate does not have the pinned fingerprint")
    }
}

impl std::error::Error for FingerprintMismatch {}

/// The SHA-256 fingerprint of a DER certificate, as SDP's `a=fingerprint:sha-256` shows it.
pub fn fingerprint(certificate: &[u8]) -> [u8; 32] {
    let digest = ::ring::digest::digest(&::ring::digest::SHA256, certificate);
    let mut out = [0_u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Reads `AB:CD:…` (32 hex pairs, as in `a=fingerprint:sha-256 AB:CD:…`).
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let mut out = [0_u8; 32];
    let mut pairs = text.trim().split(':');
    for byte in &mut out {
        let pair = pairs.next()?;
        if pair.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    pairs.next().is_none().then_some(out)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A TLS setting that cannot be used (a file without certificates, a bad key, …).
fn setting_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{what}: {error}"))
}

/// How a connecting side checks the server of an `msrps` URI.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Verifies the server against `roots` and the URI's host name.
    pub fn with_roots(roots: RootCertStore) -> Result<Self, Error> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| setting_error("the TLS versions cannot be used", error))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { config: Arc::new(config) })
    }

    /// Verifies the server against the CA certificates of a PEM file.
    pub fn with_ca_pem(pem: &[u8]) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate.map_err(|error| setting_error("the CA file is not valid PEM", error))?;
            roots.add(certificate).map_err(|error| setting_error("a CA certificate cannot be used", error))?;
        }
        if roots.is_empty() {
            return Err(Error::Invalid("the CA file holds no certificate".to_owned()));
        }
        Self::with_roots(roots)
    }

    /// Accepts only a server whose certificate has this SHA-256 fingerprint (a
    /// self-signed peer named in SDP); its signatures are still checked.
    pub fn with_fingerprint(fingerprint: [u8; 32]) -> Result<Self, Error> {
        let provider = provider();
        let verifier = PinnedCertificate { fingerprint, algorithms: provider.signature_verification_algorithms };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| setting_error("the TLS versions cannot be used", error))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self { config: Arc::new(config) })
    }

    /// Runs the handshake over `stream` for a server named `host`.
    pub(crate) async fn connect(&self, host: &str, stream: BoxStream) -> Result<BoxStream, TlsError> {
        let name =
            ServerName::try_from(host.to_owned()).map_err(|_| TlsError::InvalidName { host: host.to_owned() })?;
        let connecting = TlsConnector::from(Arc::clone(&self.config)).connect(name, stream);
        let stream = connecting.await.map_err(|error| TlsError::of_handshake(&error, host))?;
        Ok(Box::new(IoStream(stream)))
    }
}

/// The certificate an accepting side shows for `msrps` URIs.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
}

impl TlsServer {
    /// Shows `chain` (end entity first), proving it with `key`.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self, Error> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| setting_error("the TLS versions cannot be used", error))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| setting_error("the certificate and key cannot be used", error))?;
        Ok(Self { config: Arc::new(config) })
    }

    /// From PEM texts: the certificate chain and the private key.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| setting_error("the certificate file is not valid PEM", error))?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|error| setting_error("the key file holds no usable key", error))?;
        Self::new(chain, key)
    }

    /// Runs the handshake over an accepted `stream`.
    pub(crate) async fn accept(&self, stream: BoxStream) -> io::Result<BoxStream> {
        let stream = TlsAcceptor::from(Arc::clone(&self.config)).accept(stream).await?;
        Ok(Box::new(IoStream(stream)))
    }
}

/// Trusts exactly one certificate, by its SHA-256 fingerprint.
#[derive(Debug)]
struct PinnedCertificate {
    fingerprint: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            let mismatch = rustls::OtherError(Arc::new(FingerprintMismatch));
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(mismatch)))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 §3: rustls failures become plain sentences, never Rust debug formatting
    /// (it was `invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`).
    #[test]
    fn rustls_failures_read_as_plain_sentences() {
        let ca_as_server = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(webpki::Error::CaUsedAsEndEntity),
        )));
        let cases = [
            (ca_as_server, TlsError::CaUsedAsEndEntity),
            (
                rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
                TlsError::PeerAlert { alert: "handshake failure".to_owned() },
            ),
            (rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType), TlsError::NotTls),
            (
                rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::TooManyEmptyFragments),
                TlsError::Handshake { reason: "the peer broke the TLS protocol".to_owned() },
            ),
            (
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
                TlsError::NameMismatch { host: "example.com".to_owned() },
            ),
        ];
        for (error, expected) in cases {
            let tls = TlsError::of_handshake(&io::Error::new(io::ErrorKind::InvalidData, error), "example.com");
            assert_eq!(tls, expected);
            let text = tls.to_string();
            // No debug formatting: no type or variant names, no braces.
            assert!(!["Other", "Error", "{", "::"].iter().any(|debug| text.contains(debug)), "{text}");
        }
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(TlsError::of_handshake(&eof, "example.com"), TlsError::Closed);
    }
}
