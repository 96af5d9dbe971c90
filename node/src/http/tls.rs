//! HTTPS for the API: the node's certificate chain and private key, read
//! from PEM files (`http.tls_cert`, `http.tls_key`).

use std::{path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("http.tls_cert {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("http.tls_key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("http.tls_cert and http.tls_key do not make a usable pair: {0}")]
    Pair(String),
}

/// A server configuration from a PEM certificate chain (leaf first) and a
/// PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let cert_err = |reason: String| TlsError::Cert { path: cert.display().to_string(), reason };
    let key_err = |reason: String| TlsError::Key { path: key.display().to_string(), reason };
    let cert_pem = std::fs::read(cert).map_err(|e| cert_err(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(cert_err("holds no certificate".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| key_err(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| key_err(format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Pair(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls").join(name)
    }

    #[test]
    fn the_test_pair_loads() {
        server_config(&fixture("node.crt"), &fixture("node.key")).unwrap();
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let missing = dir.path().join("missing.pem");
        let err = server_config(&missing, &fixture("node.key")).unwrap_err().to_string();
        assert!(err.starts_with("http.tls_cert") && err.contains("missing.pem"), "{err}");
        let err = server_config(&junk, &fixture("node.key")).unwrap_err().to_string();
        assert!(err.contains("holds no certificate"), "{err}");
        let err = server_config(&fixture("node.crt"), &junk).unwrap_err().to_string();
        assert!(err.starts_with("http.tls_key") && err.contains("junk.pem"), "{err}");
        // The CA's certificate with the node's key: the key does not match.
        let err = server_config(&fixture("ca.crt"), &fixture("node.key")).unwrap_err().to_string();
        assert!(err.contains("usable pair"), "{err}");
    }
}
