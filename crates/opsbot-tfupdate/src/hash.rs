//! Provider package hashes as Terraform records them in `.terraform.lock.hcl`.
//!
//! - `zh:` is the hex SHA-256 of the zip archive (the value listed in `SHA256SUMS`).
//! - `h1:` is Go's `dirhash.Hash1` of the unpacked package: for each regular file, sorted
//!   by its slash-separated path, the line `hex(sha256(contents)) + "  " + path + "\n"`;
//!   the SHA-256 of those lines, base64 (standard, padded), prefixed with `h1:`.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use sha2::{Digest, Sha256};

/// A package that is not a readable zip archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid provider package: {0}")]
pub struct PackageError(pub String);

/// `zh:<hex sha256>` of a zip archive.
pub fn zh_hash(zip: &[u8]) -> String {
    format!("zh:{}", hex::encode(Sha256::digest(zip)))
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `h1:` hash of the files inside a zip archive (directories excluded).
pub fn h1_hash_zip(zip: &[u8]) -> Result<String, PackageError> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|e| PackageError(e.to_string()))?;
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| PackageError(e.to_string()))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry
            .name()
            .map_err(|e| PackageError(e.to_string()))?
            .trim_start_matches("./")
            .to_string();
        if name.contains('\n') {
            return Err(PackageError(format!("file name with a newline: {name:?}")));
        }
        let mut hasher = Sha256::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| PackageError(format!("{name}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        files.insert(name, hex::encode(hasher.finalize()));
    }
    Ok(h1_hash_files(
        files.iter().map(|(n, h)| (n.as_str(), h.as_str())),
    ))
}

/// `h1:` from `(path, hex sha256)` pairs (sorted here).
pub fn h1_hash_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut files: Vec<(&str, &str)> = files.into_iter().collect();
    files.sort();
    let mut summary = Sha256::new();
    for (name, hash) in files {
        summary.update(format!("{hash}  {name}\n").as_bytes());
    }
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary.finalize())
    )
}

/// Parses a `SHA256SUMS` document: `<hex>  <file name>` per line → file name → hex.
pub fn parse_sha256sums(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (hash, name) = line.trim().split_once(char::is_whitespace)?;
            let name = name.trim().trim_start_matches('*');
            (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (name.to_string(), hash.to_ascii_lowercase()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    fn zip_of(files: &[(&str, &[u8])], with_dir: bool) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        if with_dir {
            w.add_directory("docs/", opts).unwrap();
        }
        for (name, data) in files {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn h1_matches_the_dirhash_algorithm_written_out() {
        let zip = zip_of(&[("b.txt", b"world"), ("a.txt", b"hello")], true);
        // dirhash.Hash1 by hand: sorted names, "%x  %s\n", sha256, base64
        let summary = format!(
            "{}  a.txt\n{}  b.txt\n",
            sha256_hex(b"hello"),
            sha256_hex(b"world")
        );
        let expected = format!(
            "h1:{}",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(summary.as_bytes()))
        );
        assert_eq!(h1_hash_zip(&zip).unwrap(), expected);
        // the directory entry and the order of entries do not matter
        let other = zip_of(&[("a.txt", b"hello"), ("b.txt", b"world")], false);
        assert_eq!(h1_hash_zip(&other).unwrap(), expected);
        assert_ne!(zh_hash(&zip), zh_hash(&other));
    }

    #[test]
    fn bad_zip_is_an_error() {
        assert!(h1_hash_zip(b"not a zip").is_err());
    }

    #[test]
    fn sha256sums() {
        let sums = parse_sha256sums(&format!(
            "{}  terraform-provider-x_1.0.0_linux_amd64.zip\n{} *terraform-provider-x_1.0.0_manifest.json\nbad line\n",
            "a".repeat(64),
            "B".repeat(64)
        ));
        assert_eq!(sums.len(), 2);
        assert_eq!(
            sums["terraform-provider-x_1.0.0_manifest.json"],
            "b".repeat(64)
        );
    }
}
