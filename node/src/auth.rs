//! API tokens: who may call the HTTP API, with which role.
//!
//! Tokens live in `<data dir>/tokens.json`, stored as BLAKE3 hashes (the
//! token itself is shown once, when created). `mass token create` writes the
//! file; a running node notices changes (the file's modification time is
//! checked at most once a second), so tokens are added and revoked without a
//! restart. A node with no tokens serves everyone, which a node refuses to
//! start with unless its HTTP listens on loopback only.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use mass_protocol::api::Role;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// File of a node's tokens, in its data dir.
pub const TOKENS_FILE: &str = "tokens.json";
/// Tokens start with this, so they are recognizable in configs and logs.
pub const TOKEN_PREFIX: &str = "mass_";
/// How often a running node looks for changes to its tokens file.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Short public name of the token (its first characters), for listing
    /// and revoking.
    pub id: String,
    pub role: Role,
    /// What the operator called it.
    pub name: String,
    /// BLAKE3 of the whole token, hex.
    pub hash: String,
    /// Unix seconds.
    pub created_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("no token with id '{0}'")]
    Unknown(String),
}

fn read_file(path: &Path) -> Result<Vec<TokenEntry>, TokenError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| TokenError::Read { path: path.to_owned(), reason: format!("not a tokens file: {e}") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(TokenError::Read { path: path.to_owned(), reason: e.to_string() }),
    }
}

/// Writes atomically (a temporary file renamed over the old one), readable
/// by the owner only.
fn write_file(path: &Path, entries: &[TokenEntry]) -> Result<(), TokenError> {
    let err = |e: std::io::Error| TokenError::Write { path: path.to_owned(), reason: e.to_string() };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(entries).expect("tokens serialize")).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

/// Creates a token with `role` in the data dir; returns the token (shown once).
pub fn create(data_dir: &Path, role: Role, name: &str) -> Result<(String, TokenEntry), TokenError> {
    let path = data_dir.join(TOKENS_FILE);
    let mut entries = read_file(&path)?;
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{role}_{}", hex::encode(secret));
    let id = hex::encode(&secret[..4]);
    let created_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let entry = TokenEntry {
        id,
        role,
        name: name.to_owned(),
        hash: blake3::hash(token.as_bytes()).to_hex().to_string(),
        created_at,
    };
    entries.push(entry.clone());
    std::fs::create_dir_all(data_dir).map_err(|e| TokenError::Write { path: path.clone(), reason: e.to_string() })?;
    write_file(&path, &entries)?;
    Ok((token, entry))
}

pub fn list(data_dir: &Path) -> Result<Vec<TokenEntry>, TokenError> {
    read_file(&data_dir.join(TOKENS_FILE))
}

pub fn revoke(data_dir: &Path, id: &str) -> Result<TokenEntry, TokenError> {
    let path = data_dir.join(TOKENS_FILE);
    let mut entries = read_file(&path)?;
    let index = entries.iter().position(|e| e.id == id).ok_or_else(|| TokenError::Unknown(id.to_owned()))?;
    let removed = entries.remove(index);
    write_file(&path, &entries)?;
    Ok(removed)
}

/// A running node's view of its tokens, kept in step with the file.
#[derive(Clone)]
pub struct Tokens {
    path: PathBuf,
    inner: Arc<Mutex<Loaded>>,
}

struct Loaded {
    entries: Vec<TokenEntry>,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// What a presented token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The node has no tokens: everyone may call (loopback only).
    Open,
    Valid {
        id: String,
        role: Role,
    },
    Missing,
    Unknown,
}

impl Tokens {
    pub fn load(data_dir: &Path) -> Result<Self, TokenError> {
        let path = data_dir.join(TOKENS_FILE);
        let entries = read_file(&path)?;
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Ok(Self { path, inner: Arc::new(Mutex::new(Loaded { entries, modified, checked: Instant::now() })) })
    }

    fn refresh(&self, loaded: &mut Loaded) {
        if loaded.checked.elapsed() < RECHECK {
            return;
        }
        loaded.checked = Instant::now();
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified != loaded.modified {
            match read_file(&self.path) {
                Ok(entries) => {
                    loaded.entries = entries;
                    loaded.modified = modified;
                }
                Err(e) => tracing::warn!("tokens file unreadable, keeping the tokens loaded before: {e}"),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        let mut loaded = self.inner.lock().expect("tokens lock");
        self.refresh(&mut loaded);
        loaded.entries.is_empty()
    }

    /// Checks the token from an `Authorization` header value, if any.
    pub fn verify(&self, header: Option<&str>) -> Verdict {
        let mut loaded = self.inner.lock().expect("tokens lock");
        self.refresh(&mut loaded);
        if loaded.entries.is_empty() {
            return Verdict::Open;
        }
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim) else {
            return Verdict::Missing;
        };
        let hash = blake3::hash(token.as_bytes());
        // Comparing BLAKE3 hashes is constant-time (blake3::Hash's PartialEq).
        loaded
            .entries
            .iter()
            .find(|e| blake3::Hash::from_hex(&e.hash).is_ok_and(|h| h == hash))
            .map_or(Verdict::Unknown, |e| Verdict::Valid { id: e.id.clone(), role: e.role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_created_verified_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::load(dir.path()).unwrap();
        assert_eq!(tokens.verify(None), Verdict::Open);
        let (token, entry) = create(dir.path(), Role::Predict, "app").unwrap();
        assert!(token.starts_with("mass_predict_"));
        let tokens = Tokens::load(dir.path()).unwrap();
        assert_eq!(tokens.verify(None), Verdict::Missing);
        assert_eq!(tokens.verify(Some("Bearer mass_predict_nope")), Verdict::Unknown);
        assert_eq!(
            tokens.verify(Some(&format!("Bearer {token}"))),
            Verdict::Valid { id: entry.id.clone(), role: Role::Predict }
        );
        let stored = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!stored.contains(&token), "the token itself is never stored");
        revoke(dir.path(), &entry.id).unwrap();
        assert!(revoke(dir.path(), &entry.id).is_err());
        assert!(Role::Admin > Role::Write && Role::Write > Role::Predict && Role::Predict > Role::Read);
    }
}
