//! The one place where protocol values become bytes and back.
//!
//! bincode 2 is unmaintained upstream (RUSTSEC-2025-0141). Everything that is
//! encoded goes through [`encode`] and [`decode`], so replacing it touches this
//! file only. Decoding is bounded twice: the input length is checked against the
//! caller's limit, and bincode's own limit (on the bytes it may claim, checked
//! before it allocates for a length prefix) grows with the input: a few
//! hundred forged bytes can no longer claim a 1 GiB string. See [`claim_limit`].

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

/// How many bytes bincode may claim per input byte. It claims each value's
/// size in memory as it decodes it: a varint u64 of one byte claims 8, a
/// string what it holds, so honest data claims at most about 8 times its
/// length; forged length prefixes are refused past this.
pub const CLAIM_FACTOR: usize = 16;

/// The claim limits bincode can take (a type parameter, so a few tiers;
/// each is one more instantiation of every decoder).
const TIERS: [usize; 4] = [1 << 20, 1 << 24, 1 << 28, MAX_RECORD];

/// The most bincode may claim while decoding `len` bytes under the
/// caller's `limit`: the smallest tier holding `len * CLAIM_FACTOR`, and
/// never more than the message or record bound.
pub fn claim_limit(len: usize, limit: usize) -> usize {
    let bound = if limit <= DECODE_LIMIT { DECODE_LIMIT } else { MAX_RECORD };
    let wanted = len.saturating_mul(CLAIM_FACTOR);
    TIERS.into_iter().find(|t| *t >= wanted).unwrap_or(MAX_RECORD).min(bound)
}

fn standard() -> bincode::config::Configuration<bincode::config::LittleEndian, bincode::config::Varint> {
    bincode::config::standard().with_little_endian().with_variable_int_encoding()
}

fn config() -> impl bincode::config::Config {
    standard().with_limit::<DECODE_LIMIT>()
}

/// Decodes with bincode's claims bounded by `claims` (one of [`TIERS`]).
fn decode_claiming<T: DeserializeOwned>(
    bytes: &[u8],
    claims: usize,
) -> Result<(T, usize), bincode::error::DecodeError> {
    use bincode::serde::decode_from_slice;
    match claims {
        c if c <= TIERS[0] => decode_from_slice(bytes, standard().with_limit::<{ TIERS[0] }>()),
        c if c <= TIERS[1] => decode_from_slice(bytes, standard().with_limit::<{ TIERS[1] }>()),
        c if c <= TIERS[2] => decode_from_slice(bytes, standard().with_limit::<{ TIERS[2] }>()),
        _ => decode_from_slice(bytes, standard().with_limit::<{ TIERS[3] }>()),
    }
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

/// Encodes a protocol value of at most `limit` bytes, stopping as soon as
/// it is over: a big message is not encoded whole only to be refused.
pub fn encode_within<T: Serialize>(value: &T, limit: usize) -> Result<Vec<u8>, EncodeError> {
    struct Capped {
        bytes: Vec<u8>,
        limit: usize,
    }
    impl bincode::enc::write::Writer for Capped {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            if self.bytes.len() + bytes.len() > self.limit {
                return Err(bincode::error::EncodeError::Other("over the size limit"));
            }
            self.bytes.extend_from_slice(bytes);
            Ok(())
        }
    }
    let mut out = Capped { bytes: Vec::new(), limit };
    bincode::serde::encode_into_writer(value, &mut out, config())
        .map_err(|e| EncodeError(format!("a message over {limit} bytes: {e}")))?;
    Ok(out.bytes)
}

/// Decodes a protocol value from exactly `bytes`, refusing inputs over `limit`.
/// A record kept in storage and read back through its own decoder, which
/// also reads the layouts earlier versions wrote.
pub trait Stored: Sized {
    fn decode_stored(bytes: &[u8]) -> Result<Self, DecodeError>;
}

impl Stored for crate::jobs::JobRecord {
    fn decode_stored(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode(bytes)
    }
}

impl Stored for crate::jobs::ModelManifest {
    fn decode_stored(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode(bytes)
    }
}

impl Stored for crate::serving::ScoringRecord {
    fn decode_stored(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes, MAX_RECORD)
    }
}

impl Stored for crate::studies::StudyRecord {
    fn decode_stored(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode(bytes)
    }
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::Oversized { size: bytes.len(), limit });
    }
    let (value, read) =
        decode_claiming(bytes, claim_limit(bytes.len(), limit)).map_err(|e| DecodeError::Malformed(e.to_string()))?;
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
    fn a_message_within_the_limit_encodes_as_usual_and_one_over_it_is_refused() {
        let request = Request::GetRef { name: "x".repeat(100) };
        let whole = encode(&request).unwrap();
        assert_eq!(encode_within(&request, whole.len()).unwrap(), whole);
        let err = encode_within(&request, whole.len() - 1).unwrap_err().to_string();
        assert!(err.contains(&format!("over {} bytes", whole.len() - 1)), "{err}");
    }

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

    /// Fuzz regression: a 429-byte dataset manifest whose statistics held a
    /// string claiming 497 MB had bincode allocate it (the record bound was
    /// 1 GiB whatever the input's length) before finding the input short.
    #[test]
    fn a_small_input_cannot_claim_a_large_allocation() {
        // Variant 1 (Error), kind 0, then a string claiming 2^20 + 1 bytes
        // (0xfc: a u32 follows) in a 9-byte message.
        let mut bytes = vec![1u8, 0, 0xfc];
        bytes.extend(((1u32 << 20) + 1).to_le_bytes());
        let err = decode::<Response>(&bytes, MAX_RECORD).unwrap_err();
        assert!(matches!(&err, DecodeError::Malformed(m) if m.contains("LimitExceeded")), "{err:?}");
        assert_eq!(claim_limit(429, MAX_RECORD), 1 << 20);
        assert_eq!(claim_limit(1 << 20, MAX_RECORD), 1 << 24);
        assert_eq!(claim_limit(100 << 20, MAX_RECORD), MAX_RECORD);
        assert_eq!(claim_limit(MAX_RPC_MESSAGE, MAX_RPC_MESSAGE), DECODE_LIMIT);
    }

    /// Honest data claims up to about 8 bytes per input byte (small varints
    /// decoded into u64): well within the factor.
    #[test]
    fn honest_values_decode_within_their_claims() {
        let counts: Vec<u64> = vec![1; 200_000];
        let bytes = encode(&counts).unwrap();
        assert_eq!(decode::<Vec<u64>>(&bytes, MAX_RECORD).unwrap(), counts);
        let names: Vec<Option<String>> = vec![None; 200_000];
        assert_eq!(decode::<Vec<Option<String>>>(&encode(&names).unwrap(), MAX_RECORD).unwrap(), names);
    }

    #[test]
    fn forged_length_prefix_does_not_allocate() {
        // Variant 1 (Error), kind 0, then a string length claiming ~2^62 bytes.
        let bytes = [1u8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x40];
        assert!(matches!(decode::<Response>(&bytes, 1024), Err(DecodeError::Malformed(_))));
    }
}
