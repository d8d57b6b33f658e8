//! TLS for both API clients: how a server certificate is trusted.
//!
//! Three modes, chosen per endpoint in the configuration:
//! - [`TlsMode::Verify`]: the normal chain and hostname check. Trust anchors are the system store
//!   (`rustls-native-certs`, so a company CA installed on the host works) plus the Mozilla bundle
//!   (`webpki-roots`, so a minimal container without `/etc/ssl` still reaches public CAs). With a
//!   `ca_file`, that file's certificates are the only anchors (like `curl --cacert`): a Proxmox
//!   cluster's `pve-root-ca.pem` should not be mixed with the public web's CAs.
//! - [`TlsMode::Pin`]: the SHA-256 of the leaf certificate (DER) must equal the pin. Chain and
//!   hostname are not checked (Proxmox nodes use a self-signed cluster CA and are often reached by
//!   IP), but the handshake signature still is, so the server must hold the pinned key.
//!   A mismatch refuses the connection with both fingerprints in the error.
//! - [`TlsMode::Insecure`]: any certificate. Only from an explicit option; the caller warns.
//!
//! The `rustls::ClientConfig` built here goes to reqwest through `use_preconfigured_tls`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// How the server certificate of one endpoint is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Chain and hostname verification; `ca_file` replaces the default trust anchors.
    Verify { ca_file: Option<PathBuf> },
    /// The leaf certificate's SHA-256 must equal this fingerprint.
    Pin(Fingerprint),
    /// No verification at all (explicit user option, warned).
    Insecure,
}

impl Default for TlsMode {
    fn default() -> Self {
        Self::Verify { ca_file: None }
    }
}

/// A SHA-256 certificate fingerprint, written as colon hex (`AB:CD:…`, Proxmox's
/// `fingerprint-sha256` format) or as 64 plain hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
        if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "expected a SHA-256 fingerprint: 32 colon-separated hex bytes (AB:CD:…) or 64 hex \
                 digits, got {} hex digits",
                digits.len()
            ));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes).map_err(|err| err.to_string())?;
        Ok(Self(bytes))
    }
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    /// rustls refused the configuration (should not happen with the ring provider).
    #[error("TLS setup: {0}")]
    Setup(String),
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// System trust store plus the Mozilla bundle, loaded once per process (reading the system store
/// costs a few milliseconds and every client of a run would repeat it).
fn default_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let native = rustls_native_certs::load_native_certs();
            if !native.errors.is_empty() {
                tracing::debug!(errors = ?native.errors, "some system CA certificates could not be loaded");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "system CA certificates loaded");
            Arc::new(roots)
        })
        .clone()
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let err = |message: String| TlsError::CaFile {
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no PEM certificate".into()));
    }
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(err(format!(
            "none of its {ignored} certificates is usable as a trust anchor"
        )));
    }
    Ok(roots)
}

/// Builds the rustls client configuration for one endpoint.
pub fn client_config(mode: &TlsMode) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let config = match mode {
        TlsMode::Verify { ca_file: None } => builder
            .with_root_certificates(default_roots())
            .with_no_client_auth(),
        TlsMode::Verify {
            ca_file: Some(path),
        } => builder
            .with_root_certificates(roots_from_file(path)?)
            .with_no_client_auth(),
        TlsMode::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LeafVerifier {
                pin: Some(*pin),
                algorithms,
            }))
            .with_no_client_auth(),
        TlsMode::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LeafVerifier {
                pin: None,
                algorithms,
            }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// The pinned-certificate mismatch, carried inside the rustls error so the message reaches the
/// caller through reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error(
    "certificate fingerprint mismatch: the server presented SHA-256 {presented}, the configuration \
     pins {pinned}"
)]
pub struct PinMismatch {
    /// What the server sent.
    pub presented: Fingerprint,
    /// What the configuration expects.
    pub pinned: Fingerprint,
}

/// Accepts the leaf certificate whose SHA-256 equals `pin` (or any, with `pin: None` for
/// `insecure`), and still verifies the handshake signature with the certificate's key.
#[derive(Debug)]
struct LeafVerifier {
    pin: Option<Fingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for LeafVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pinned) = self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let presented = Fingerprint::of_der(end_entity.as_ref());
        if presented == pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::Other(rustls::OtherError(Arc::new(
                PinMismatch { presented, pinned },
            ))))
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

    #[test]
    fn fingerprint_parses_colon_and_plain_hex() {
        let colon = "ab:CD:".repeat(16);
        let colon = colon.trim_end_matches(':');
        let fp: Fingerprint = colon.parse().unwrap();
        assert_eq!(fp.0[0], 0xAB);
        assert_eq!(fp.0[1], 0xCD);
        let plain: Fingerprint = "abcd".repeat(16).parse().unwrap();
        assert_eq!(fp, plain);
        assert_eq!(fp.to_string(), "AB:CD:".repeat(16).trim_end_matches(':'));
    }

    #[test]
    fn fingerprint_rejects_wrong_length_and_non_hex() {
        assert!("AB:CD".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
        assert!("ab".repeat(33).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn ca_file_without_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = client_config(&TlsMode::Verify {
            ca_file: Some(path.clone()),
        })
        .unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }
}
