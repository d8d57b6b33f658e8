//! Certificates for a simulated Proxmox endpoint, made at start with rcgen: a self-signed
//! cluster CA (like `/etc/pve/pve-root-ca.pem`) and a node certificate it signs (like
//! `pve-ssl.pem`), valid for `127.0.0.1` and `localhost`.
//!
//! Clients either pin the SHA-256 of the leaf's DER (Proxmox's colon-hex fingerprint) or
//! trust the CA PEM.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Errors while making an endpoint's certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen failed.
    #[error("tls: generating the certificate of Proxmox endpoint '{endpoint}' failed: {source}")]
    Generate {
        /// Endpoint name.
        endpoint: String,
        /// Cause.
        #[source]
        source: rcgen::Error,
    },
    /// rustls refused the certificate.
    #[error("tls: building the server config of Proxmox endpoint '{endpoint}' failed: {source}")]
    Config {
        /// Endpoint name.
        endpoint: String,
        /// Cause.
        #[source]
        source: rustls::Error,
    },
}

/// An endpoint's certificate material.
pub(crate) struct EndpointCert {
    pub(crate) ca_pem: String,
    pub(crate) fingerprint: String,
    pub(crate) server_config: Arc<rustls::ServerConfig>,
}

/// Colon-separated uppercase hex of the SHA-256 of `der` (Proxmox's `fingerprint-sha256` format).
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(crate) fn make_endpoint_cert(endpoint: &str, node: &str) -> Result<EndpointCert, TlsError> {
    let gen_err = |source| TlsError::Generate {
        endpoint: endpoint.to_string(),
        source,
    };
    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("Proxmox Virtual Environment {endpoint}"),
    );
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "PVE Cluster Manager CA");
    let ca = ca_params.self_signed(&ca_key).map_err(gen_err)?;

    let leaf_key = KeyPair::generate().map_err(gen_err)?;
    let mut leaf_params = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        node.to_string(),
    ])
    .map_err(gen_err)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, format!("{node}.pve.invalid"));
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca, &ca_key)
        .map_err(gen_err)?;

    let fingerprint = fingerprint_sha256(leaf.der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg_err = |source| TlsError::Config {
        endpoint: endpoint.to_string(),
        source,
    };
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(cfg_err)?
        .with_no_client_auth()
        .with_single_cert(
            vec![
                CertificateDer::from(leaf.der().to_vec()),
                CertificateDer::from(ca.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(cfg_err)?;
    Ok(EndpointCert {
        ca_pem: ca.pem(),
        fingerprint,
        server_config: Arc::new(server_config),
    })
}
