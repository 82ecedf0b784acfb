//! PKCS#12 (`.p12` / `.pfx`) keystores whose private key anyone can open: the file's integrity
//! MAC (RFC 7292 §4) verifies with a well-known password, such as `notasecret`, which Google
//! Cloud uses for every service-account `.p12` key, or Java's `changeit`. Such a file is a
//! leaked private key; one protected by a password of its own is not reported.
//!
//! Pure functions over bytes: a small DER reader for the `PFX` envelope, the RFC 7292
//! Appendix B key derivation and HMAC (RustCrypto `hmac`, `sha1`, `sha2`). The work is
//! bounded: at most [`MAX_ITERATIONS`] KDF rounds per password and [`KNOWN_PASSWORDS`] tries.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// Passwords that keystores are shipped with, tried in order. The empty password is tried
/// both as an empty BMPString and as none at all (OpenSSL accepts either).
pub const KNOWN_PASSWORDS: [&str; 8] = [
    "notasecret",
    "",
    "changeit",
    "password",
    "secret",
    "123456",
    "1234",
    "test",
];

/// KDF iteration counts above this are not tried (a crafted file must not cost seconds).
pub const MAX_ITERATIONS: u64 = 10_000;

/// `1.2.840.113549.1.7.1` (PKCS#7 `data`), DER-encoded.
const OID_PKCS7_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];

/// Whether `head` starts like a PKCS#12 `PFX`: a SEQUENCE whose first element is the
/// INTEGER 3. Cheap; says nothing about the password.
pub fn looks_like_pfx(head: &[u8]) -> bool {
    let Some((0x30, body, _)) = tlv(head) else {
        // The input may be cut short of the outer length: read the header alone.
        return header_then_version3(head);
    };
    matches!(tlv(body), Some((0x02, [3], _)))
}

fn header_then_version3(head: &[u8]) -> bool {
    let Some((tag, header_len, _)) = header(head) else {
        return false;
    };
    tag == 0x30 && head.get(header_len..header_len + 3) == Some(&[0x02, 0x01, 0x03])
}

/// The well-known password that opens `der` (a complete PFX), if any. `None` also for
/// anything malformed, a PFX without a MAC, an unknown MAC digest or too many iterations.
pub fn known_password(der: &[u8]) -> Option<&'static str> {
    let mac = MacData::parse(der)?;
    KNOWN_PASSWORDS.iter().copied().find(|pw| {
        let mut bmp: Vec<u8> = pw.encode_utf16().flat_map(u16::to_be_bytes).collect();
        bmp.extend_from_slice(&[0, 0]);
        mac.verifies(&bmp) || (pw.is_empty() && mac.verifies(&[]))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MacDigest {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl MacDigest {
    fn from_oid(oid: &[u8]) -> Option<Self> {
        const NIST: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];
        match oid {
            [0x2b, 0x0e, 0x03, 0x02, 0x1a] => Some(MacDigest::Sha1),
            [nist @ .., last] if nist == NIST => match last {
                1 => Some(MacDigest::Sha256),
                2 => Some(MacDigest::Sha384),
                3 => Some(MacDigest::Sha512),
                4 => Some(MacDigest::Sha224),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What the MAC check needs from a PFX.
struct MacData<'a> {
    digest: MacDigest,
    /// The authenticated content: the value of `authSafe`'s OCTET STRING.
    content: &'a [u8],
    expected: &'a [u8],
    salt: &'a [u8],
    iterations: u64,
}

impl<'a> MacData<'a> {
    fn parse(der: &'a [u8]) -> Option<Self> {
        let (0x30, pfx, _) = tlv(der)? else {
            return None;
        };
        let (0x02, [3], rest) = tlv(pfx)? else {
            return None;
        };
        // authSafe ContentInfo { contentType data, [0] EXPLICIT OCTET STRING }.
        let (0x30, auth_safe, rest) = tlv(rest)? else {
            return None;
        };
        let (0x06, OID_PKCS7_DATA, explicit) = tlv(auth_safe)? else {
            return None;
        };
        let (0xa0, wrapped, _) = tlv(explicit)? else {
            return None;
        };
        let (0x04, content, _) = tlv(wrapped)? else {
            return None;
        };
        // macData { DigestInfo { AlgorithmIdentifier, digest }, macSalt, iterations }.
        let (0x30, mac_data, _) = tlv(rest)? else {
            return None;
        };
        let (0x30, digest_info, rest) = tlv(mac_data)? else {
            return None;
        };
        let (0x30, algorithm, digest_rest) = tlv(digest_info)? else {
            return None;
        };
        let (0x06, oid, _) = tlv(algorithm)? else {
            return None;
        };
        let (0x04, expected, _) = tlv(digest_rest)? else {
            return None;
        };
        let (0x04, salt, rest) = tlv(rest)? else {
            return None;
        };
        let iterations = match tlv(rest) {
            Some((0x02, int, _)) => unsigned(int)?,
            _ => 1,
        };
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return None;
        }
        Some(MacData {
            digest: MacDigest::from_oid(oid)?,
            content,
            expected,
            salt,
            iterations,
        })
    }

    fn verifies(&self, password: &[u8]) -> bool {
        macro_rules! check {
            ($d:ty, $block:expr) => {{
                let key = derive_mac_key::<$d>($block, password, self.salt, self.iterations);
                let Ok(mut mac) = <Hmac<$d> as KeyInit>::new_from_slice(&key) else {
                    return false;
                };
                mac.update(self.content);
                mac.verify_slice(self.expected).is_ok()
            }};
        }
        match self.digest {
            MacDigest::Sha1 => check!(Sha1, 64),
            MacDigest::Sha224 => check!(Sha224, 64),
            MacDigest::Sha256 => check!(Sha256, 64),
            MacDigest::Sha384 => check!(Sha384, 128),
            MacDigest::Sha512 => check!(Sha512, 128),
        }
    }
}

/// RFC 7292 Appendix B.2 with ID 3 (MAC key), as long as the digest's output. `block` is
/// the digest's block size `v`; `password` is the BMPString with its terminator.
fn derive_mac_key<D: Digest>(block: usize, password: &[u8], salt: &[u8], rounds: u64) -> Vec<u8> {
    let out_len = <D as Digest>::output_size();
    let fill = |s: &[u8]| -> Vec<u8> {
        if s.is_empty() {
            return Vec::new();
        }
        let len = s.len().div_ceil(block) * block;
        s.iter().copied().cycle().take(len).collect()
    };
    let mut i_block = fill(salt);
    i_block.extend(fill(password));
    let diversifier = vec![3u8; block];
    let mut key = Vec::with_capacity(out_len);
    loop {
        let mut a = D::new()
            .chain_update(&diversifier)
            .chain_update(&i_block)
            .finalize();
        for _ in 1..rounds {
            a = D::digest(&a);
        }
        let take = (out_len - key.len()).min(a.len());
        key.extend_from_slice(&a[..take]);
        if key.len() >= out_len {
            return key;
        }
        // I_j = (I_j + B + 1) mod 2^(8v), B = A repeated to v bytes.
        let b: Vec<u8> = a.iter().copied().cycle().take(block).collect();
        for chunk in i_block.chunks_mut(block) {
            let mut carry = 1u16;
            for (x, y) in chunk.iter_mut().zip(&b).rev() {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = sum as u8;
                carry = sum >> 8;
            }
        }
    }
}

/// A DER tag and the length of its header, and the content length (definite lengths only).
fn header(input: &[u8]) -> Option<(u8, usize, usize)> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if first < 0x80 {
        return Some((tag, 2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 || rest.len() < n {
        return None;
    }
    let len = rest[..n]
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Some((tag, 2 + n, len))
}

/// One DER element: its tag, its content and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (tag, header_len, len) = header(input)?;
    let end = header_len.checked_add(len)?;
    let content = input.get(header_len..end)?;
    Some((tag, content, &input[end..]))
}

fn unsigned(int: &[u8]) -> Option<u64> {
    let int = match int {
        [0, rest @ ..] => rest,
        [first, ..] if first & 0x80 != 0 => return None,
        _ => int,
    };
    if int.len() > 8 {
        return None;
    }
    Some(int.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bmp(pw: &str) -> Vec<u8> {
        let mut v: Vec<u8> = pw.encode_utf16().flat_map(u16::to_be_bytes).collect();
        v.extend_from_slice(&[0, 0]);
        v
    }

    #[test]
    fn kdf_matches_the_openssl_vector() {
        // PKCS12_key_gen_utf8("ge@äheim", salt 01..08, ID 3, 100 rounds, SHA-256), as
        // published with RustCrypto's pkcs12 crate (checked there against OpenSSL).
        let salt = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let key = derive_mac_key::<Sha256>(64, &bmp("ge@äheim"), &salt, 100);
        assert_eq!(
            hex::encode(key),
            "136355ed9434516682534f46d63956db5ff06b844702c2c1f3b46321e2524a4d"
        );
    }

    /// A PFX envelope around `content` with a MAC computed under `password`.
    fn pfx(content: &[u8], password: &str, iterations: u8) -> Vec<u8> {
        fn el(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            if body.len() < 0x80 {
                v.push(body.len() as u8);
            } else {
                v.push(0x82);
                v.extend_from_slice(&(body.len() as u16).to_be_bytes());
            }
            v.extend_from_slice(body);
            v
        }
        let salt = [9u8; 8];
        let key = derive_mac_key::<Sha256>(64, &bmp(password), &salt, u64::from(iterations));
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
        mac.update(content);
        let digest = mac.finalize().into_bytes();
        let sha256_oid = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
        let algorithm = el(0x30, &[el(0x06, &sha256_oid), el(0x05, &[])].concat());
        let digest_info = el(0x30, &[algorithm, el(0x04, &digest)].concat());
        let mac_data = el(
            0x30,
            &[digest_info, el(0x04, &salt), el(0x02, &[iterations])].concat(),
        );
        let auth_safe = el(
            0x30,
            &[el(0x06, OID_PKCS7_DATA), el(0xa0, &el(0x04, content))].concat(),
        );
        el(0x30, &[el(0x02, &[3]), auth_safe, mac_data].concat())
    }

    #[test]
    fn a_keystore_under_a_known_password_is_opened() {
        let content = vec![0x30u8; 300];
        let der = pfx(&content, "notasecret", 7);
        assert!(looks_like_pfx(&der));
        assert_eq!(known_password(&der), Some("notasecret"));
        assert_eq!(
            known_password(&pfx(&content, "changeit", 1)),
            Some("changeit")
        );
        assert_eq!(known_password(&pfx(&content, "", 3)), Some(""));
    }

    #[test]
    fn a_keystore_with_its_own_password_or_damaged_is_not() {
        let content = vec![0x30u8; 300];
        let der = pfx(&content, "Zq8-vL2#wX", 7);
        assert!(looks_like_pfx(&der));
        assert_eq!(known_password(&der), None);
        // Truncated, a flipped content byte, garbage.
        let good = pfx(&content, "notasecret", 7);
        assert_eq!(known_password(&good[..good.len() - 10]), None);
        let mut flipped = good.clone();
        flipped[40] ^= 1;
        assert_eq!(known_password(&flipped), None);
        assert_eq!(known_password(b"\x30\x82\xff\xff garbage"), None);
        assert!(!looks_like_pfx(b"\x30\x03\x02\x01\x00"));
    }

    #[test]
    fn a_keystore_made_by_openssl_is_opened() {
        // End to end with another implementation: openssl writes the file (skipped when
        // the openssl command is absent).
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let p12 = dir.path().join("k.p12");
        let run = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
        };
        let Ok(out) = run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-subj",
            "/CN=opsbot-test",
            "-days",
            "1",
        ]) else {
            eprintln!("SKIP: openssl not found");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(key.exists());
        for (password, expected) in [("notasecret", Some("notasecret")), ("Zq8-vL2#wX", None)] {
            let pass = format!("pass:{password}");
            let out = run(&[
                "pkcs12", "-export", "-inkey", "k.pem", "-in", "c.pem", "-out", "k.p12",
                "-passout", &pass,
            ])
            .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let der = std::fs::read(&p12).unwrap();
            assert!(looks_like_pfx(&der));
            assert_eq!(known_password(&der), expected, "password {password}");
        }
    }
}
