//! The pre-shared network key (libp2p pnet): only nodes holding the same key
//! can complete a connection. The file format is the one IPFS uses
//! (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits).

use std::{path::Path, str::FromStr};

use libp2p::pnet::PreSharedKey;
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum NetworkKeyError {
    #[error("cannot read network key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "network key {path} is malformed ({reason}); expected the three lines '/key/swarm/psk/1.0.0/', '/base16/' and 64 hex digits, as written by 'mass keygen'"
    )]
    Malformed { path: String, reason: String },
    #[error("{path} already exists; pass --force to overwrite it (nodes using the old key will no longer connect)")]
    Exists { path: String },
    #[error("cannot write network key {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Reads a network key file.
pub fn load(path: &Path) -> Result<PreSharedKey, NetworkKeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| NetworkKeyError::Read { path: shown.clone(), source })?;
    PreSharedKey::from_str(text.trim()).map_err(|e| NetworkKeyError::Malformed { path: shown, reason: e.to_string() })
}

/// Writes a new random key to `path`, refusing to replace one unless `force`.
pub fn generate(path: &Path, force: bool) -> Result<PreSharedKey, NetworkKeyError> {
    let shown = path.display().to_string();
    if path.exists() && !force {
        return Err(NetworkKeyError::Exists { path: shown });
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = PreSharedKey::new(bytes);
    super::identity::write_private(path, format!("{key}\n").as_bytes())
        .map_err(|source| NetworkKeyError::Write { path: shown, source })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.key");
        let key = generate(&path, false).unwrap();
        assert_eq!(load(&path).unwrap().fingerprint().to_string(), key.fingerprint().to_string());
    }

    #[test]
    fn existing_key_is_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.key");
        let first = generate(&path, false).unwrap();
        assert!(matches!(generate(&path, false), Err(NetworkKeyError::Exists { .. })));
        assert_eq!(load(&path).unwrap().fingerprint().to_string(), first.fingerprint().to_string());
        let second = generate(&path, true).unwrap();
        assert_ne!(second.fingerprint().to_string(), first.fingerprint().to_string());
    }

    #[test]
    fn malformed_key_files_are_refused_with_the_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        for text in ["", "hello", "/key/swarm/psk/1.0.0/\n/base16/\nzz", "/key/swarm/psk/1.0.0/\n/base16/\nabcd"] {
            std::fs::write(&path, text).unwrap();
            let err = load(&path).unwrap_err().to_string();
            assert!(err.contains("is malformed") && err.contains("mass keygen"), "{text:?}: {err}");
        }
    }
}
