//! The file system side of rewriting: which files (`-r`, `-i`, skipping `.terraform/`
//! and `.git/`), reading and parsing them in parallel, and atomic writes (temp file in the
//! same directory + rename), so a file is either the old or the new version, never half.

use std::io::Write;
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::constraint::TfVersion;
use crate::pins::{NON_UTF8_PLACEHOLDER, Pin, find_pins, text_for_parsing};
use crate::rewrite::{PinNote, PinRewrite, Setting, Target, rewrite_pins_with, splice_bytes};

/// Directories never entered.
pub const SKIPPED_DIRS: &[&str] = &[".terraform", ".git"];

/// Which files to visit.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Descend into subdirectories (`-r`).
    pub recursive: bool,
    /// Paths to skip (`-i`, repeatable): matched against the path relative to the root
    /// and against the path as given.
    pub ignore: Vec<Regex>,
}

/// A file that could not be read, parsed or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FileError {
    pub file: PathBuf,
    /// Complete message, naming the file (and the line for parse errors).
    pub message: String,
}

impl WalkOptions {
    fn ignored(&self, root: &Path, path: &Path) -> bool {
        if self.ignore.is_empty() {
            return false;
        }
        let rel = path.strip_prefix(root).unwrap_or(path);
        let rel = rel.to_string_lossy();
        let full = path.to_string_lossy();
        self.ignore
            .iter()
            .any(|re| (!rel.is_empty() && re.is_match(&rel)) || re.is_match(&full))
    }
}

fn is_terraform_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("tf") | Some("tofu")
    )
}

/// Which configuration files a walk reads, as the tool that reads them does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// `.tf` and `.tofu` (providers, modules and locks serve both tools).
    #[default]
    Any,
    /// What Terraform reads: `.tf` only.
    Terraform,
    /// What OpenTofu reads: `.tf` and `.tofu`, and of `x.tf` and `x.tofu` in one
    /// directory only `x.tofu`.
    OpenTofu,
}

/// The `.tf` / `.tofu` files under `root` (or `root` itself when it is a file), sorted.
pub fn terraform_files(root: &Path, opts: &WalkOptions) -> Result<Vec<PathBuf>, FileError> {
    terraform_files_for(root, opts, Dialect::Any)
}

/// Like [`terraform_files`], for the files `dialect` reads. A file given as `root` is
/// always read, whatever its name (as tfupdate).
pub fn terraform_files_for(
    root: &Path,
    opts: &WalkOptions,
    dialect: Dialect,
) -> Result<Vec<PathBuf>, FileError> {
    let mut files = all_terraform_files(root, opts)?;
    if root.is_file() {
        return Ok(files);
    }
    match dialect {
        Dialect::Any => {}
        Dialect::Terraform => files.retain(|f| f.extension().is_some_and(|e| e == "tf")),
        Dialect::OpenTofu => {
            let tofu: std::collections::HashSet<PathBuf> = files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "tofu"))
                .cloned()
                .collect();
            files.retain(|f| {
                !(f.extension().is_some_and(|e| e == "tf")
                    && tofu.contains(&f.with_extension("tofu")))
            });
        }
    }
    Ok(files)
}

fn all_terraform_files(root: &Path, opts: &WalkOptions) -> Result<Vec<PathBuf>, FileError> {
    let meta = std::fs::metadata(root).map_err(|e| FileError {
        file: root.to_path_buf(),
        message: format!("{}: {e}", root.display()),
    })?;
    if meta.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| FileError {
            file: dir.clone(),
            message: format!("{}: {e}", dir.display()),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                let name = entry.file_name();
                if opts.recursive
                    && !SKIPPED_DIRS.iter().any(|s| name == *s)
                    && !opts.ignored(root, &path)
                {
                    dirs.push(path);
                }
            } else if (kind.is_file() || kind.is_symlink())
                && is_terraform_file(&path)
                && !opts.ignored(root, &path)
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// One parsed file.
#[derive(Debug, Clone)]
pub struct ScannedFile {
    pub path: PathBuf,
    pub text: String,
    pub pins: Vec<Pin>,
}

/// Reads and parses `files` on all cores. Files that fail are returned as errors; the
/// others are returned in the input order.
pub fn scan_files(files: &[PathBuf]) -> (Vec<ScannedFile>, Vec<FileError>) {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let chunk = files.len().div_ceil(workers).max(1);
    let results: Vec<Vec<Result<ScannedFile, FileError>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|f| scan_one(f)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(FileError {
                        file: PathBuf::new(),
                        message: "a file-scanning thread panicked".to_string(),
                    })]
                })
            })
            .collect()
    });
    let mut ok = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for result in results.into_iter().flatten() {
        match result {
            Ok(file) => ok.push(file),
            Err(err) => errors.push(err),
        }
    }
    (ok, errors)
}

/// Reads a file as text to parse: a UTF-8 BOM is kept (the parser skips it), bytes that
/// are not UTF-8 become [`NON_UTF8_PLACEHOLDER`] (same offsets; [`apply`] writes the
/// original bytes back around its edits).
fn scan_one(path: &Path) -> Result<ScannedFile, FileError> {
    let bytes = std::fs::read(path).map_err(|e| FileError {
        file: path.to_path_buf(),
        message: format!("{}: cannot read: {e}", path.display()),
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => text_for_parsing(e.as_bytes()).into_owned(),
    };
    let pins = find_pins(path, &text).map_err(|e| FileError {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(ScannedFile {
        path: path.to_path_buf(),
        text,
        pins,
    })
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, given
/// the original file's permissions, then renamed over `path`, so readers see the old or
/// the new file, never a mix. (No fsync: like `terraform fmt`, durability across a power
/// loss is left to the file system; it cost 5 ms a file here.)
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".opsbot-tfupdate-")
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// What an update of a tree did.
#[derive(Debug, Clone, Default)]
pub struct TreeUpdate {
    pub files_scanned: usize,
    pub changed_files: Vec<PathBuf>,
    pub rewrites: Vec<PinRewrite>,
    pub notes: Vec<PinNote>,
    /// Files left untouched because they could not be read, parsed or written.
    pub errors: Vec<FileError>,
}

/// Applies `target` → `version` to already scanned files and writes the changed ones
/// (unless `dry_run`).
pub fn apply(
    files: &[ScannedFile],
    target: &Target,
    version: &TfVersion,
    dry_run: bool,
) -> TreeUpdate {
    apply_with(files, target, Setting::Version(version), dry_run)
}

/// The bytes to write for a rewritten file: the new text, or, for a file that is not
/// UTF-8 everywhere, its bytes as they are on disk with the edits spliced in.
fn new_contents(
    file: &ScannedFile,
    result: &crate::rewrite::FileRewrite,
) -> Result<Vec<u8>, String> {
    if !file.text.contains(NON_UTF8_PLACEHOLDER as char) {
        return Ok(result.text.clone().into_bytes());
    }
    let raw = std::fs::read(&file.path).map_err(|e| format!("cannot read: {e}"))?;
    if raw == file.text.as_bytes() {
        return Ok(result.text.clone().into_bytes());
    }
    if text_for_parsing(&raw) != file.text.as_str() {
        return Err("changed on disk during the update; left alone".to_string());
    }
    Ok(splice_bytes(&raw, &result.edits))
}

/// Like [`apply`], for a version or a constraint string.
pub fn apply_with(
    files: &[ScannedFile],
    target: &Target,
    setting: Setting<'_>,
    dry_run: bool,
) -> TreeUpdate {
    let mut out = TreeUpdate {
        files_scanned: files.len(),
        ..TreeUpdate::default()
    };
    for file in files {
        if !file.pins.iter().any(|p| target.matches(p)) {
            continue;
        }
        let result = rewrite_pins_with(&file.path, &file.text, &file.pins, target, setting);
        out.notes.extend(result.notes.iter().cloned());
        if result.rewrites.is_empty() || result.text == file.text {
            continue;
        }
        if !dry_run {
            let contents = match new_contents(file, &result) {
                Ok(c) => c,
                Err(message) => {
                    out.errors.push(FileError {
                        file: file.path.clone(),
                        message: format!("{}: {message}", file.path.display()),
                    });
                    continue;
                }
            };
            if let Err(e) = write_atomic(&file.path, &contents) {
                out.errors.push(FileError {
                    file: file.path.clone(),
                    message: format!("{}: cannot write: {e}", file.path.display()),
                });
                continue;
            }
        }
        out.changed_files.push(file.path.clone());
        out.rewrites.extend(result.rewrites);
    }
    out
}

/// Collects, scans and updates the files under `root` for one target.
pub fn update_tree(
    root: &Path,
    opts: &WalkOptions,
    target: &Target,
    version: &TfVersion,
    dry_run: bool,
) -> Result<TreeUpdate, FileError> {
    update_tree_with(
        root,
        opts,
        Dialect::Any,
        target,
        Setting::Version(version),
        dry_run,
    )
}

/// Like [`update_tree`], for the files `dialect` reads and a version or a constraint.
pub fn update_tree_with(
    root: &Path,
    opts: &WalkOptions,
    dialect: Dialect,
    target: &Target,
    setting: Setting<'_>,
    dry_run: bool,
) -> Result<TreeUpdate, FileError> {
    let files = terraform_files_for(root, opts, dialect)?;
    let (scanned, errors) = scan_files(&files);
    let mut out = apply_with(&scanned, target, setting, dry_run);
    out.files_scanned = files.len();
    out.errors.extend(errors);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn walks_recursively_skipping_dot_dirs_and_ignored_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "main.tf",
            "notes.md",
            "a/b.tf",
            "a/c.tofu",
            ".terraform/modules/x/main.tf",
            ".git/x.tf",
            "vendor/v.tf",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let flat = terraform_files(root, &WalkOptions::default()).unwrap();
        assert_eq!(flat, vec![root.join("main.tf")]);
        let opts = WalkOptions {
            recursive: true,
            ignore: vec![Regex::new("^vendor").unwrap()],
        };
        let all = terraform_files(root, &opts).unwrap();
        assert_eq!(
            all,
            vec![
                root.join("a/b.tf"),
                root.join("a/c.tofu"),
                root.join("main.tf")
            ]
        );
        assert_eq!(
            terraform_files(&root.join("a/b.tf"), &opts).unwrap(),
            vec![root.join("a/b.tf")]
        );
        assert!(terraform_files(&root.join("missing"), &opts).is_err());
    }

    #[test]
    fn each_tool_reads_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["main.tf", "main.tofu", "versions.tf", "only.tofu"] {
            std::fs::write(root.join(f), "").unwrap();
        }
        let opts = WalkOptions::default();
        let names = |d| {
            terraform_files_for(root, &opts, d)
                .unwrap()
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Dialect::Any),
            ["main.tf", "main.tofu", "only.tofu", "versions.tf"]
        );
        assert_eq!(names(Dialect::Terraform), ["main.tf", "versions.tf"]);
        assert_eq!(
            names(Dialect::OpenTofu),
            ["main.tofu", "only.tofu", "versions.tf"]
        );
        // a file named on the command line is read whatever its name
        assert_eq!(
            terraform_files_for(&root.join("main.tf"), &opts, Dialect::OpenTofu).unwrap(),
            vec![root.join("main.tf")]
        );
    }

    #[test]
    fn bom_and_non_utf8_comment_bytes_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("main.tf");
        let mut bytes = b"\xEF\xBB\xBF# caf\xE9 \xFF\n".to_vec();
        bytes.extend_from_slice(b"terraform {\n  required_version = \"1.5.7\" // \xC3\n}\n");
        std::fs::write(&p, &bytes).unwrap();
        let up = update_tree(
            dir.path(),
            &WalkOptions::default(),
            &Target::Terraform,
            &TfVersion::parse("1.9.8").unwrap(),
            false,
        )
        .unwrap();
        assert!(up.errors.is_empty(), "{:?}", up.errors);
        assert_eq!(up.rewrites.len(), 1);
        assert_eq!(up.rewrites[0].line, 3);
        let want = String::from_utf8_lossy(&bytes).replace("1.5.7", "1.9.8");
        let got = std::fs::read(&p).unwrap();
        let mut expected = bytes.clone();
        let at = bytes.windows(5).position(|w| w == b"1.5.7").unwrap();
        expected.splice(at..at + 5, b"1.9.8".iter().copied());
        assert_eq!(got, expected, "{want}");
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tf");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
