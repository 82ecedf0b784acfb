//! `SHA256SUMS` signatures: the registry lists the signing keys of a release
//! (`signing_keys.gpg_public_keys[].ascii_armor`) and serves a detached OpenPGP
//! signature of the document (`shasums_signature_url`); the document is trusted only when
//! one of those keys made that signature, as `terraform providers lock` requires.
//! Pure: bytes in, verdict out (OpenPGP by `pgp`, a pure-Rust implementation).

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};

/// Why a `SHA256SUMS` document is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the registry lists no signing key for this release")]
    NoKeys,
    #[error("signing key {index} is not an OpenPGP public key: {reason}")]
    BadKey { index: usize, reason: String },
    #[error("the signature is not an OpenPGP detached signature: {0}")]
    BadSignature(String),
    #[error(
        "the signature was not made by any of the registry's {0} signing key(s) over this document"
    )]
    Mismatch(usize),
}

/// Checks `signature` (binary or ASCII-armored) over `document` against `armored_keys`.
pub fn verify_detached(
    document: &[u8],
    signature: &[u8],
    armored_keys: &[String],
) -> Result<(), SignatureError> {
    if armored_keys.is_empty() {
        return Err(SignatureError::NoKeys);
    }
    let keys = armored_keys
        .iter()
        .enumerate()
        .map(|(index, armor)| {
            SignedPublicKey::from_string(armor)
                .map(|(k, _)| k)
                .map_err(|e| SignatureError::BadKey {
                    index,
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sig = if signature.starts_with(b"-----BEGIN") {
        DetachedSignature::from_armor_single(signature).map(|(s, _)| s)
    } else {
        DetachedSignature::from_bytes(signature)
    }
    .map_err(|e| SignatureError::BadSignature(e.to_string()))?;
    for key in &keys {
        if sig.verify(&key.primary_key, document).is_ok() {
            return Ok(());
        }
        if key
            .public_subkeys
            .iter()
            .any(|sub| sig.verify(&sub.key, document).is_ok())
        {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch(keys.len()))
}
