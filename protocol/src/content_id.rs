//! [`ContentId`]: the blake3 hash of an artifact's bytes, and its name.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Names every blob by the blake3 hash of its bytes.
///
/// Raw 32 bytes on the wire, lowercase hex for people and JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; 32]);

impl ContentId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// First 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

/// In JSON a content id is its 64 lowercase hex digits.
impl utoipa::PartialSchema for ContentId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some("64 hex digits (blake3)"))
            .into()
    }
}

impl utoipa::ToSchema for ContentId {}

impl From<blake3::Hash> for ContentId {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.short())
    }
}

/// Why text is not a content id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not a content id (expected 64 hex digits)")]
pub struct ParseContentIdError(String);

impl FromStr for ContentId {
    type Err = ParseContentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| ParseContentIdError(s.to_owned()))?;
        Ok(Self(bytes))
    }
}

impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() { serializer.collect_str(self) } else { self.0.serialize(serializer) }
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ContentId::of(b"mass");
        assert_eq!(id.to_string().parse::<ContentId>().unwrap(), id);
        assert_eq!(id.to_string(), blake3::hash(b"mass").to_hex().as_str());
    }

    #[test]
    fn bad_hex_names_the_input() {
        let err = "xyz".parse::<ContentId>().unwrap_err();
        assert!(err.to_string().contains("'xyz'"));
    }

    #[test]
    fn json_is_hex_and_wire_is_raw() {
        let id = ContentId::of(b"");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        let wire = crate::codec::encode(&id).unwrap();
        assert_eq!(wire.len(), 32);
        assert_eq!(crate::codec::decode::<ContentId>(&wire, 64).unwrap(), id);
    }
}
