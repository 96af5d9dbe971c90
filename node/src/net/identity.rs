//! The node's libp2p identity, kept in the data dir so a restart keeps the PeerId.

use std::{io::Write, path::Path};

use libp2p::{
    PeerId,
    identity::{Keypair, PublicKey},
};
use mass_protocol::storage::RefEntry;

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

/// The public key a peer id carries (Ed25519 peer ids inline their key).
fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let multihash = peer.as_ref();
    // Code 0 is the identity hash: the digest is the protobuf-encoded key.
    (multihash.code() == 0).then(|| PublicKey::try_decode_protobuf(multihash.digest()).ok()).flatten()
}

/// Checks that `entry` of ref `name` was signed by its origin.
pub fn verify_ref_entry(name: &str, entry: &RefEntry) -> Result<(), String> {
    let peer: PeerId = entry.origin.parse().map_err(|_| format!("origin '{}' is not a peer id", entry.origin))?;
    let key = public_key_of(&peer).ok_or_else(|| format!("origin {peer} carries no public key to check against"))?;
    if entry.signature.is_empty() {
        return Err(format!("entry v{} of {name} is not signed", entry.version));
    }
    if !key.verify(&entry.signed_bytes(name), &entry.signature) {
        return Err(format!("entry v{} of {name} is not signed by its origin {peer}", entry.version));
    }
    Ok(())
}

/// Signs ref entries as this node.
pub fn ref_signer(keypair: Keypair) -> impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static {
    move |bytes| keypair.sign(bytes).expect("ed25519 signing does not fail")
}

#[cfg(test)]
mod signing_tests {
    use super::*;

    #[test]
    fn entries_verify_only_under_their_origins_key() {
        let key = Keypair::generate_ed25519();
        let sign = ref_signer(key.clone());
        let mut entry = RefEntry {
            version: 1,
            target: None,
            clock: 1,
            origin: key.public().to_peer_id().to_string(),
            set_at: 0,
            signature: vec![],
        };
        assert!(verify_ref_entry("model/x", &entry).unwrap_err().contains("not signed"));
        entry.signature = sign(&entry.signed_bytes("model/x"));
        verify_ref_entry("model/x", &entry).unwrap();
        assert!(verify_ref_entry("model/y", &entry).is_err(), "a signature covers the name");
        let mut forged = entry.clone();
        forged.version = 99;
        assert!(verify_ref_entry("model/x", &forged).is_err());
        let other = Keypair::generate_ed25519();
        let mut stolen = entry.clone();
        stolen.origin = other.public().to_peer_id().to_string();
        assert!(verify_ref_entry("model/x", &stolen).is_err());
    }
}
