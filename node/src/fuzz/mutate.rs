//! The stable runner's inputs: seed-corpus entries changed a few times
//! over (bit flips, interesting bytes, truncations, random insertions,
//! varints claiming huge lengths, dictionary tokens of the text formats,
//! duplicated runs, splices of two entries), or plain random bytes. Every
//! choice comes from the caller's seeded generator, so a seed and a run
//! number replay an input exactly.

use rand::{Rng, rngs::StdRng};

/// Mutations grow inputs up to this (libFuzzer's default `-max_len`), or
/// the seed's own length when larger.
pub const MAX_LEN: usize = 4096;

/// Bytes that sit on boundaries: zero, one, the sign bits, and bincode's
/// varint markers (0xfb: u16 follows, 0xfc: u32, 0xfd: u64, 0xfe: u128).
const INTERESTING: [u8; 9] = [0, 1, 0x7f, 0x80, 0xfb, 0xfc, 0xfd, 0xfe, 0xff];

/// Tokens of the text inputs (JSON bodies, CSV, `.npy` headers): numbers
/// at and past the limits, the wrong types, separators and quotes.
const TOKENS: &[&[u8]] = &[
    b"1e999",
    b"-1",
    b"18446744073709551615",
    b"4294967296",
    b"NaN",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"\"\"",
    b"\"\\u0000\"",
    b",",
    b"\n",
    b"\"",
    b"(1099511627776,)",
    b"(2, 1099511627776)",
    b"'descr': '<f8'",
    b"\xc3\xa9",
];

/// A few mutations of `input`, some taking bytes from `other`.
pub fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if out.is_empty() { 0 } else { rng.random_range(0..out.len()) };
        match rng.random_range(0..8) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.random_range(0..8),
            1 if !out.is_empty() => out[at] = INTERESTING[rng.random_range(0..INTERESTING.len())],
            2 => out.truncate(at),
            3 => {
                let bytes: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                out.splice(at..at, bytes);
            }
            // A varint claiming a huge length or count: 0xfd, then a u64.
            4 => {
                let claim: u64 = rng.random_range(1 << 20..u64::MAX);
                out.splice(at..at, std::iter::once(0xfd).chain(claim.to_le_bytes()));
            }
            5 if !other.is_empty() => {
                let from = rng.random_range(0..other.len());
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            6 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            _ if !out.is_empty() => {
                let end = rng.random_range(at..=out.len().min(at + 64));
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
            _ => out.push(rng.random()),
        }
    }
    out.truncate(MAX_LEN.max(input.len()));
    out
}

/// Random bytes, up to 256 of them.
pub fn random(rng: &mut StdRng) -> Vec<u8> {
    (0..rng.random_range(0..256)).map(|_| rng.random()).collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let make = || {
            let mut rng = StdRng::seed_from_u64(9);
            (0..50).map(|_| mutate(&mut rng, b"{\"rows\": [[1, 2]]}", b"abc")).collect::<Vec<_>>()
        };
        assert_eq!(make(), make());
        assert!(make().iter().all(|m| m.len() <= MAX_LEN));
    }
}
