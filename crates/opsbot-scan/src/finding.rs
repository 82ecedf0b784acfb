//! [`Finding`]: one secret found, already masked. The raw secret never leaves the engine.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rule::Severity;

/// One leaked secret. `secret` is masked (at most 4 leading characters and `…`).
///
/// Small on purpose (an input can yield 100,000 findings): the rule's id and description and
/// the path are shared with the scanner and the other findings of the same input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule_id: Arc<str>,
    pub description: Arc<str>,
    pub severity: Severity,
    /// Path as given or relative to the repository root, with `/` separators.
    pub path: Arc<str>,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in characters (Unicode scalar values; bytes in invalid UTF-8).
    pub column: u32,
    /// Masked secret, e.g. `AKIA…`.
    pub secret: String,
    /// Stable id of (rule, path, secret): survives line moves, used by baselines.
    pub fingerprint: Fingerprint,
    /// The commit that added the line (`--git` mode), or that introduced the blob (history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<Arc<str>>,
    /// Byte offset of the secret in a binary file (scanned as printable strings); `line` and
    /// `column` are 0 then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// Masks a secret: the first few characters (never more than 4, never more than a third of
/// the secret) followed by `…`.
pub fn mask(secret: &[u8]) -> String {
    let text = String::from_utf8_lossy(secret);
    let chars = text.chars().count();
    let show = (chars / 3).min(4);
    let mut out: String = text.chars().take(show).collect();
    out.push('…');
    out
}

/// The first 16 bytes of `sha256(rule_id NUL path NUL secret)`; shown and serialized as 32
/// lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    /// Parses the 32 hex digits of [`Fingerprint`]'s `Display` (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        // Cannot fail: the buffer is exactly twice the input.
        if hex::encode_to_slice(self.0, &mut buf).is_err() {
            return Err(fmt::Error);
        }
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Fingerprint::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("a fingerprint is 32 hex digits"))
    }
}

/// The [`Fingerprint`] of a secret found by `rule_id` in `path`.
pub fn fingerprint(rule_id: &str, path: &str, secret: &[u8]) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0u8]);
    h.update(path.as_bytes());
    h.update([0u8]);
    h.update(secret);
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_slice()[..16]);
    Fingerprint(bytes)
}

/// Shannon entropy in bits per byte.
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let len = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// Normalises a path for display and fingerprints: `/` separators, no leading `./`.
pub fn normalize_path(path: &str) -> String {
    let mut p = path.replace('\\', "/");
    while let Some(rest) = p.strip_prefix("./") {
        p = rest.to_owned();
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_never_shows_more_than_four_or_a_third() {
        assert_eq!(mask(b"AKIAZZZZZZZZZZZZZZZZ"), "AKIA…");
        assert_eq!(mask(b"abcdef"), "ab…");
        assert_eq!(mask(b"ab"), "…");
        assert_eq!(mask("héllo wörld!".as_bytes()), "héll…");
    }

    #[test]
    fn fingerprint_is_stable_and_depends_on_all_parts() {
        let a = fingerprint("r", "p", b"s");
        assert_eq!(a, fingerprint("r", "p", b"s"));
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(Fingerprint::from_hex(&a.to_string()), Some(a));
        assert_eq!(Fingerprint::from_hex("xyz"), None);
        assert_ne!(a, fingerprint("r2", "p", b"s"));
        assert_ne!(a, fingerprint("r", "p2", b"s"));
        assert_ne!(a, fingerprint("r", "p", b"s2"));
    }

    #[test]
    fn entropy_of_uniform_and_constant() {
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalize_path("./a/b"), "a/b");
        assert_eq!(normalize_path("a\\b"), "a/b");
    }
}
