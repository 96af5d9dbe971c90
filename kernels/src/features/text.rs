//! Text to hashed word n-grams.
//!
//! Tokens are runs of two or more alphanumeric characters, lowercased (the
//! same tokens as scikit-learn's default `\b\w\w+\b`). N-grams join tokens
//! with a space and are hashed (FNV-1a, stable across machines and
//! releases) into buckets.

/// The hash buckets of every word n-gram of `text`, with repetitions.
pub fn buckets(text: &str, ngram_max: u8, buckets: u32) -> Vec<u32> {
    let tokens: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|t| t.chars().count() >= 2).map(str::to_lowercase).collect();
    let mut out = Vec::new();
    for n in 1..=usize::from(ngram_max.max(1)) {
        for window in tokens.windows(n) {
            out.push((fnv1a(&window.join(" ")) % u64::from(buckets.max(1))) as u32);
        }
    }
    out
}

/// FNV-1a of text: stable across machines and releases.
pub fn hash(text: &str) -> u64 {
    fnv1a(text)
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_words_of_two_or_more_lowercased() {
        assert_eq!(buckets("A cat, a CAT!", 1, 1 << 20), buckets("cat cat", 1, 1 << 20));
        assert_eq!(buckets("cat dog", 2, 1 << 20).len(), 3, "two unigrams and one bigram");
        assert!(buckets("", 2, 8).is_empty());
    }
}
