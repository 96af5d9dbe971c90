//! The node's libp2p identity, kept in the data dir so a restart keeps the PeerId.

use std::{io::Write, path::Path};

use libp2p::identity::Keypair;

/// File name of the identity key inside the data dir.
pub const IDENTITY_FILE: &str = "identity.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read identity key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("identity key {path} is malformed ({reason}); move it away to start this node with a new identity")]
    Malformed { path: String, reason: String },
    #[error("cannot write identity key {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Loads the keypair from `data_dir`, creating and saving a new Ed25519 one the
/// first time.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair, IdentityError> {
    let path = data_dir.join(IDENTITY_FILE);
    let shown = path.display().to_string();
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| IdentityError::Malformed { path: shown, reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair.to_protobuf_encoding().expect("ed25519 keys always encode");
            write_private(&path, &bytes).map_err(|source| IdentityError::Write { path: shown, source })?;
            Ok(keypair)
        }
        Err(source) => Err(IdentityError::Read { path: shown, source }),
    }
}

/// Writes a secret file readable by its owner only, atomically: a crash leaves
/// either no file or the whole key, never half of one.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap().public().to_peer_id();
        let second = load_or_create(dir.path()).unwrap().public().to_peer_id();
        assert_eq!(first, second);
    }

    #[test]
    fn malformed_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is malformed"), "{err}");
    }
}
