//! The one place where protocol values become bytes and back.
//!
//! bincode 2 is unmaintained upstream (RUSTSEC-2025-0141). Everything that is
//! encoded goes through [`encode`] and [`decode`], so replacing it touches this
//! file only. Decoding is bounded twice: the input length is checked against the
//! caller's limit, and bincode's own limit stops a forged length prefix from
//! allocating more than the input could hold.

use serde::{Serialize, de::DeserializeOwned};

/// Largest gossip message (an advert) a node accepts.
pub const MAX_GOSSIP_MESSAGE: usize = 64 * 1024;
/// Largest request-response message a node accepts.
/// (Shard statistics with exact value counts are the largest answers.)
pub const MAX_RPC_MESSAGE: usize = 16 * 1024 * 1024;

/// Largest stored record (a dataset shard, a model's weights).
pub const MAX_RECORD: usize = 1 << 30;

/// bincode's internal bound for messages: no decode may claim more.
const DECODE_LIMIT: usize = 16 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_little_endian().with_variable_int_encoding().with_limit::<DECODE_LIMIT>()
}

/// The same encoding, bounded for large stored records.
fn record_config() -> impl bincode::config::Config {
    bincode::config::standard().with_little_endian().with_variable_int_encoding().with_limit::<MAX_RECORD>()
}

/// Why bytes could not be turned into a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{extra} unexpected bytes after the message")]
    TrailingBytes { extra: usize },
}

/// Why a message could not be turned into bytes.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode message: {0}")]
pub struct EncodeError(String);

/// Encodes a protocol value.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| EncodeError(e.to_string()))
}

/// Decodes a protocol value from exactly `bytes`, refusing inputs over `limit`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::Oversized { size: bytes.len(), limit });
    }
    let decoded = if limit <= DECODE_LIMIT {
        bincode::serde::decode_from_slice(bytes, config())
    } else {
        bincode::serde::decode_from_slice(bytes, record_config())
    };
    let (value, read) = decoded.map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(DecodeError::TrailingBytes { extra: bytes.len() - read });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::{Request, Response};

    #[test]
    fn oversized_input_is_rejected_before_decoding() {
        let bytes = vec![0u8; 100];
        let err = decode::<Request>(&bytes, 10).unwrap_err();
        assert_eq!(err, DecodeError::Oversized { size: 100, limit: 10 });
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&Request::GetAdvert).unwrap();
        bytes.push(7);
        assert_eq!(decode::<Request>(&bytes, 1024), Err(DecodeError::TrailingBytes { extra: 1 }));
    }

    #[test]
    fn forged_length_prefix_does_not_allocate() {
        // Variant 1 (Error), kind 0, then a string length claiming ~2^62 bytes.
        let bytes = [1u8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x40];
        assert!(matches!(decode::<Response>(&bytes, 1024), Err(DecodeError::Malformed(_))));
    }
}
