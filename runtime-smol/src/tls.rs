//! TLS for `msrps` URIs, with rustls (TLS 1.2 and 1.3 only, RFC 8996).
//!
//! A client checks the server either against root certificates (a CA, with the URI's
//! host as the name to verify and to send as SNI) or against a pinned SHA-256
//! certificate fingerprint, as SDP's `a=fingerprint` gives for self-signed peers
//! (RFC 4975 §14.2, RFC 4572). Any mismatch fails the handshake, so no MSRP byte is
//! exchanged with a peer that is not the expected one.

use std::sync::Arc;

use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::runtime::{BoxStream, IoStream};
use crate::session::Error;

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

fn tls_error(error: impl std::fmt::Display) -> Error {
    Error::Connect(format!("TLS: {error}"))
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
            .map_err(tls_error)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { config: Arc::new(config) })
    }

    /// Verifies the server against the CA certificates of a PEM file.
    pub fn with_ca_pem(pem: &[u8]) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(pem) {
            roots.add(certificate.map_err(tls_error)?).map_err(tls_error)?;
        }
        if roots.is_empty() {
            return Err(tls_error("no certificate in the CA file"));
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
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self { config: Arc::new(config) })
    }

    /// Runs the handshake over `stream` for a server named `host`.
    pub(crate) async fn connect(&self, host: &str, stream: BoxStream) -> Result<BoxStream, Error> {
        let name = ServerName::try_from(host.to_owned()).map_err(tls_error)?;
        let stream = TlsConnector::from(Arc::clone(&self.config)).connect(name, stream).await.map_err(tls_error)?;
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
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(tls_error)?;
        Ok(Self { config: Arc::new(config) })
    }

    /// From PEM texts: the certificate chain and the private key.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(chain).collect::<Result<Vec<_>, _>>().map_err(tls_error)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(tls_error)?;
        Self::new(chain, key)
    }

    /// Runs the handshake over an accepted `stream`.
    pub(crate) async fn accept(&self, stream: BoxStream) -> Result<BoxStream, Error> {
        let stream = TlsAcceptor::from(Arc::clone(&self.config)).accept(stream).await.map_err(tls_error)?;
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
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
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
