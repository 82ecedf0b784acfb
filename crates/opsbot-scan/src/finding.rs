//! [`Finding`]: one secret found, already masked. The raw secret never leaves the engine.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rule::Severity;

/// One leaked secret. `secret` is masked (at most 4 leading characters and `…`).
///
/// Small on purpose (an input can yield 100,000 findings; 104 bytes each, nothing else on the
/// heap): the rule's id, description and severity are one [`RuleLabel`] shared with the
/// scanner, the path and commit are shared with the other findings of the same input, and the
/// masked secret is held inline. Serialized (JSON output) with the rule's fields flat:
/// `rule_id`, `description`, `severity`, `path`, `line`, `column`, `secret`, `fingerprint`,
/// then `commit` and `offset` when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    rule: Arc<RuleLabel>,
    /// Path as given or relative to the repository root, with `/` separators.
    pub path: Arc<str>,
    /// The commit that added the line (`--git` mode), or that introduced the blob (history).
    pub commit: Option<Arc<str>>,
    /// Stable id of (rule, path, secret): survives line moves, used by baselines.
    pub fingerprint: Fingerprint,
    /// Byte offset of the secret in a binary file (scanned as printable strings); `line` and
    /// `column` are 0 then.
    pub offset: Option<u64>,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in characters (Unicode scalar values; bytes in invalid UTF-8).
    pub column: u32,
    /// Masked secret, e.g. `AKIA…`.
    pub secret: Masked,
}

/// What a finding says about its rule: one per rule, shared by all its findings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleLabel {
    pub id: String,
    pub description: String,
    pub severity: Severity,
}

impl Finding {
    /// A finding of `rule` at `path:line:column` (no commit, no offset).
    pub fn new(
        rule: Arc<RuleLabel>,
        path: Arc<str>,
        (line, column): (u32, u32),
        secret: Masked,
        fingerprint: Fingerprint,
    ) -> Self {
        Finding {
            rule,
            path,
            commit: None,
            fingerprint,
            offset: None,
            line,
            column,
            secret,
        }
    }

    pub fn rule_id(&self) -> &str {
        &self.rule.id
    }

    pub fn description(&self) -> &str {
        &self.rule.description
    }

    pub fn severity(&self) -> Severity {
        self.rule.severity
    }

    /// The rule's label, shared with the other findings of the rule.
    pub fn rule(&self) -> &Arc<RuleLabel> {
        &self.rule
    }
}

impl Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = 8 + usize::from(self.commit.is_some()) + usize::from(self.offset.is_some());
        let mut st = s.serialize_struct("Finding", fields)?;
        st.serialize_field("rule_id", self.rule_id())?;
        st.serialize_field("description", self.description())?;
        st.serialize_field("severity", &self.severity())?;
        st.serialize_field("path", &*self.path)?;
        st.serialize_field("line", &self.line)?;
        st.serialize_field("column", &self.column)?;
        st.serialize_field("secret", &*self.secret)?;
        st.serialize_field("fingerprint", &self.fingerprint)?;
        if let Some(commit) = &self.commit {
            st.serialize_field("commit", &**commit)?;
        }
        if let Some(offset) = self.offset {
            st.serialize_field("offset", &offset)?;
        }
        st.end()
    }
}

/// Bytes a masked secret can take: 4 characters of up to 4 bytes, and `…` (3 bytes).
const MASKED_MAX: usize = 4 * 4 + 3;

/// A masked secret (see [`mask`]), held inline: no allocation per finding. Reads as a `&str`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Masked {
    len: u8,
    bytes: [u8; MASKED_MAX],
}

impl Masked {
    pub fn as_str(&self) -> &str {
        // Only `mask` builds one, from whole characters.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("…")
    }
}

impl std::ops::Deref for Masked {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for Masked {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Masked {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Masks a secret: the first few characters (never more than 4, never more than a third of
/// the secret) followed by `…`.
pub fn mask(secret: &[u8]) -> Masked {
    let text = String::from_utf8_lossy(secret);
    let chars = text.chars().count();
    let show = (chars / 3).min(4);
    let mut out = Masked {
        len: 0,
        bytes: [0; MASKED_MAX],
    };
    let mut len = 0;
    for c in text.chars().take(show).chain(std::iter::once('…')) {
        len += c.encode_utf8(&mut out.bytes[len..]).len();
    }
    // At most 4 × 4 + 3 bytes: fits MASKED_MAX, and u8.
    out.len = len as u8;
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
        // The widest: four 4-byte characters (and invalid UTF-8 shown as U+FFFD).
        assert_eq!(mask("😀😀😀😀😀😀😀😀😀😀😀😀".as_bytes()), "😀😀😀😀…");
        assert_eq!(mask(&[0xff; 12]), "\u{fffd}\u{fffd}\u{fffd}\u{fffd}…");
    }

    #[test]
    fn findings_stay_small() {
        // 100,000 findings of one file are about 10 MB, nothing else allocated per finding.
        assert!(
            std::mem::size_of::<Finding>() <= 104,
            "{}",
            std::mem::size_of::<Finding>()
        );
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
