//! Webhook signatures: GitHub signs each delivery's body with the App's webhook secret and
//! sends `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`. Pure; the comparison is
//! constant-time (`Mac::verify_slice`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a delivery's signature was refused. Never contains the secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not `sha256=<64 hex digits>`")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
    #[error("the webhook secret is empty")]
    EmptySecret,
}

/// Checks `header` (the `X-Hub-Signature-256` value) against `body` signed with `secret`.
pub fn verify(secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::EmptySecret);
    }
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_digest.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .map_err(|_| SignatureError::EmptySecret)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `X-Hub-Signature-256` value GitHub would send for `body` (used by tests and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from GitHub's "Validating webhook deliveries" documentation.
    const DOC_SECRET: &[u8] = b"It's a Secret to Everybody";
    const DOC_BODY: &[u8] = b"Hello, World!";
    const DOC_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn matches_githubs_documented_example() {
        assert_eq!(sign(DOC_SECRET, DOC_BODY), DOC_SIGNATURE);
        assert_eq!(verify(DOC_SECRET, Some(DOC_SIGNATURE), DOC_BODY), Ok(()));
    }

    #[test]
    fn refuses_missing_malformed_and_wrong_signatures() {
        assert_eq!(
            verify(DOC_SECRET, None, DOC_BODY),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(DOC_SECRET, Some("sha1=abcdef"), DOC_BODY),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(DOC_SECRET, Some("sha256=zz"), DOC_BODY),
            Err(SignatureError::Malformed)
        );
        let not_hex = format!("sha256={}", "g".repeat(64));
        assert_eq!(
            verify(DOC_SECRET, Some(&not_hex), DOC_BODY),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"another secret", Some(DOC_SIGNATURE), DOC_BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(DOC_SECRET, Some(DOC_SIGNATURE), b"Hello, World?"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"", Some(DOC_SIGNATURE), DOC_BODY),
            Err(SignatureError::EmptySecret)
        );
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let upper = DOC_SIGNATURE.replace("sha256=", "").to_uppercase();
        assert_eq!(
            verify(DOC_SECRET, Some(&format!("sha256={upper}")), DOC_BODY),
            Ok(())
        );
    }
}
