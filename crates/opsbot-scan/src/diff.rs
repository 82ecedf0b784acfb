//! Unified-diff parsing: which lines a patch adds. Pure; works on `git diff -U0`,
//! `git log -p` output (with `commit <sha>` lines) and on the `patch` field of GitHub's
//! compare / pull-request-files API (hunks only, no headers).
//!
//! Hunk headers give line counts, so added lines that look like headers (`+++ x`) are
//! still read as content.

/// One event of a diff, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffEvent<'a> {
    /// A `commit <sha>` line of `git log` output.
    Commit(String),
    /// A new file section; `None` when the file is deleted (`+++ /dev/null`).
    File(Option<String>),
    /// An added line: 1-based line number in the new file and its content (no newline).
    Added { line: u32, content: &'a [u8] },
    /// A `Binary files … differ` line: the file's content is not in the diff. `path` is the
    /// new path (`None` when the file is deleted); `blob` the new blob id from the section's
    /// `index` line, when it is a full one (`git diff --full-index`).
    Binary {
        path: Option<String>,
        blob: Option<String>,
    },
}

/// Streaming diff parser: feed it lines (with or without their `\n`).
#[derive(Debug, Default)]
pub struct DiffParser {
    old_left: u32,
    new_left: u32,
    next_line: u32,
    in_hunk: bool,
    /// The new blob id of the current file section (`index a..b` line), full ids only.
    new_blob: Option<String>,
    /// The new path of a renamed or copied file (`rename to` / `copy to` line).
    renamed_to: Option<Vec<u8>>,
}

impl DiffParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one line; returns the event it makes, if any.
    pub fn feed<'a>(&mut self, raw: &'a [u8]) -> Option<DiffEvent<'a>> {
        let line = strip_eol(raw);
        if self.in_hunk {
            match line.first() {
                Some(b'+') if self.new_left > 0 => {
                    let n = self.next_line;
                    self.next_line += 1;
                    self.new_left -= 1;
                    self.check_hunk_end();
                    return Some(DiffEvent::Added {
                        line: n,
                        content: &line[1..],
                    });
                }
                Some(b'-') if self.old_left > 0 => {
                    self.old_left -= 1;
                    self.check_hunk_end();
                    return None;
                }
                Some(b' ') | None if self.old_left > 0 && self.new_left > 0 => {
                    self.old_left -= 1;
                    self.new_left -= 1;
                    self.next_line += 1;
                    self.check_hunk_end();
                    return None;
                }
                Some(b'\\') => return None,
                _ => self.in_hunk = false,
            }
        }
        // Header lines.
        if line.starts_with(b"@@") {
            if let Some((old, new_start, new)) = parse_hunk_header(line) {
                self.old_left = old;
                self.new_left = new;
                self.next_line = new_start;
                self.in_hunk = old > 0 || new > 0;
            }
            return None;
        }
        if line.starts_with(b"\\") {
            return None;
        }
        if let Some(rest) = line.strip_prefix(b"+++ ") {
            return Some(DiffEvent::File(parse_path(rest, b"b/")));
        }
        if line.starts_with(b"diff ") {
            self.new_blob = None;
            self.renamed_to = None;
            return None;
        }
        if let Some(rest) = line.strip_prefix(b"index ") {
            self.new_blob = parse_index_line(rest);
            return None;
        }
        if let Some(rest) = line
            .strip_prefix(b"rename to ")
            .or_else(|| line.strip_prefix(b"copy to "))
        {
            self.renamed_to = Some(unquote_path(rest));
            return None;
        }
        if let Some(names) = line
            .strip_prefix(b"Binary files ")
            .and_then(|r| r.strip_suffix(b" differ"))
        {
            let path = binary_new_path(names, self.renamed_to.as_deref())
                .map(|p| String::from_utf8_lossy(&p).into_owned());
            return Some(DiffEvent::Binary {
                path,
                blob: self.new_blob.take(),
            });
        }
        if let Some(rest) = line.strip_prefix(b"commit ") {
            let sha = rest.split(|&b| b == b' ').next().unwrap_or_default();
            if (sha.len() == 40 || sha.len() == 64) && sha.iter().all(u8::is_ascii_hexdigit) {
                return Some(DiffEvent::Commit(String::from_utf8_lossy(sha).into_owned()));
            }
        }
        None
    }

    fn check_hunk_end(&mut self) {
        if self.old_left == 0 && self.new_left == 0 {
            self.in_hunk = false;
        }
    }
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `@@ -a[,b] +c[,d] @@` → (b, c, d); counts default to 1.
fn parse_hunk_header(line: &[u8]) -> Option<(u32, u32, u32)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    if parts.next()? != "@@" {
        return None;
    }
    let old = parts.next()?.strip_prefix('-')?;
    let new = parts.next()?.strip_prefix('+')?;
    let count = |s: &str| -> Option<(u32, u32)> {
        match s.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((s.parse().ok()?, 1)),
        }
    };
    let (_, old_count) = count(old)?;
    let (new_start, new_count) = count(new)?;
    Some((old_count, new_start, new_count))
}

/// Path of a `+++ ` line: `/dev/null` → None; strips the `b/` prefix, C-style quotes and
/// the trailing tab git adds to names with spaces.
fn parse_path(rest: &[u8], prefix: &[u8]) -> Option<String> {
    let rest = rest.strip_suffix(b"\t").unwrap_or(rest);
    let raw = if rest.first() == Some(&b'"') {
        unquote_c(rest)
    } else {
        rest.to_vec()
    };
    if raw == b"/dev/null" {
        return None;
    }
    let path = raw.strip_prefix(prefix).unwrap_or(&raw);
    Some(String::from_utf8_lossy(path).into_owned())
}

/// `index <old>..<new>[ <mode>]` → the new id when it is a full (40 or 64 digit), non-zero one.
fn parse_index_line(rest: &[u8]) -> Option<String> {
    let ids = rest.split(|&b| b == b' ').next()?;
    let text = std::str::from_utf8(ids).ok()?;
    let (_, new) = text.split_once("..")?;
    let full = (new.len() == 40 || new.len() == 64) && new.bytes().all(|b| b.is_ascii_hexdigit());
    (full && new.bytes().any(|b| b != b'0')).then(|| new.to_ascii_lowercase())
}

/// A path as git prints it in a header: C-quoted when it has special characters.
fn unquote_path(raw: &[u8]) -> Vec<u8> {
    let raw = raw.strip_suffix(b"\t").unwrap_or(raw);
    if raw.first() == Some(&b'"') {
        unquote_c(raw)
    } else {
        raw.to_vec()
    }
}

/// Splits a C-quoted token off the start of `s` (which starts with `"`): the decoded token and
/// what follows its closing quote.
fn quoted_token(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some((unquote_c(&s[..=i]), &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// The new path of `Binary files <old> and <new> differ` (the part between `Binary files `
/// and ` differ`), without its `b/` prefix; `None` for a deletion (`<new>` is `/dev/null`).
/// Names are C-quoted when they hold special characters, but not when they hold spaces, so
/// ` and ` may be part of a name: a renamed or copied file takes its name from the section's
/// `rename to` / `copy to` line, any other has the same name on both sides (`a/P and b/P`)
/// or `/dev/null` on the old side.
fn binary_new_path(names: &[u8], renamed_to: Option<&[u8]>) -> Option<Vec<u8>> {
    if let Some(p) = renamed_to {
        return Some(p.to_vec());
    }
    if names.ends_with(b" and /dev/null") {
        return None;
    }
    let new: Vec<u8> = if let Some(rest) = names.strip_prefix(b"/dev/null and ") {
        unquote_path(rest)
    } else if names.first() == Some(&b'"') {
        let (_, after) = quoted_token(names)?;
        unquote_path(after.strip_prefix(b" and ")?)
    } else if names.last() == Some(&b'"') {
        // An unquoted old name and a quoted new one: the quoted token that ends the line.
        let mut found = None;
        for (i, w) in names.windows(6).enumerate() {
            if w == b" and \""
                && let Some((tok, tail)) = quoted_token(&names[i + 5..])
                && tail.is_empty()
            {
                found = Some(tok);
                break;
            }
        }
        found?
    } else {
        // `a/P and b/P`: the same name on both sides.
        let n = names.len();
        let sym = n >= 9 && (n - 9).is_multiple_of(2) && {
            let p = (n - 9) / 2;
            names.starts_with(b"a/")
                && &names[2 + p..9 + p] == b" and b/"
                && names[2..2 + p] == names[9 + p..]
        };
        if sym {
            names[(n - 9) / 2 + 7..].to_vec()
        } else {
            let at = memchr::memmem::rfind(names, b" and ")?;
            names[at + 5..].to_vec()
        }
    };
    if new == b"/dev/null" {
        return None;
    }
    Some(new.strip_prefix(b"b/").map(<[u8]>::to_vec).unwrap_or(new))
}

/// Decodes git's C-style quoted path (`"a\tb\303\251"`).
fn unquote_c(s: &[u8]) -> Vec<u8> {
    let inner = s
        .strip_prefix(b"\"")
        .and_then(|s| s.strip_suffix(b"\""))
        .unwrap_or(s);
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b != b'\\' || i + 1 >= inner.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = inner[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut k = 0;
                while k < 2 && i < inner.len() && (b'0'..=b'7').contains(&inner[i]) {
                    v = v * 8 + u32::from(inner[i] - b'0');
                    i += 1;
                    k += 1;
                }
                out.push((v & 0xff) as u8);
            }
            other => out.push(other),
        }
    }
    out
}

/// The lines one file gains, possibly in one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAdditions {
    pub commit: Option<String>,
    pub path: String,
    pub lines: Vec<(u32, Vec<u8>)>,
}

/// Added lines of a single-file patch (GitHub's `patch` field, or one file of a diff):
/// `(line number in the new file, content)`.
pub fn added_lines_from_patch(patch: &str) -> Vec<(u32, String)> {
    let mut parser = DiffParser::new();
    let mut out = Vec::new();
    for line in patch.split_inclusive('\n') {
        if let Some(DiffEvent::Added { line, content }) = parser.feed(line.as_bytes()) {
            out.push((line, String::from_utf8_lossy(content).into_owned()));
        }
    }
    out
}

/// Splits a whole multi-file diff (`git diff` / `git log -p`) into per-file additions.
pub fn parse_git_diff(diff: &[u8]) -> Vec<FileAdditions> {
    let mut parser = DiffParser::new();
    let mut commit: Option<String> = None;
    let mut out: Vec<FileAdditions> = Vec::new();
    let mut current: Option<FileAdditions> = None;
    for line in diff.split_inclusive(|&b| b == b'\n') {
        match parser.feed(line) {
            Some(DiffEvent::Commit(sha)) => {
                out.extend(current.take().filter(|f| !f.lines.is_empty()));
                commit = Some(sha);
            }
            Some(DiffEvent::File(path)) => {
                out.extend(current.take().filter(|f| !f.lines.is_empty()));
                current = path.map(|path| FileAdditions {
                    commit: commit.clone(),
                    path,
                    lines: Vec::new(),
                });
            }
            Some(DiffEvent::Added { line, content }) => {
                if let Some(f) = current.as_mut() {
                    f.lines.push((line, content.to_vec()));
                }
            }
            Some(DiffEvent::Binary { .. }) => {
                out.extend(current.take().filter(|f| !f.lines.is_empty()));
            }
            None => {}
        }
    }
    out.extend(current.take().filter(|f| !f.lines.is_empty()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_patch_field_with_context_lines() {
        let patch = "@@ -1,3 +1,4 @@\n line one\n-old two\n+new two\n+++ looks like a header\n line three\n@@ -10,0 +12,1 @@\n+tail\n\\ No newline at end of file";
        assert_eq!(
            added_lines_from_patch(patch),
            vec![
                (2, "new two".to_owned()),
                (3, "++ looks like a header".to_owned()),
                (12, "tail".to_owned()),
            ]
        );
    }

    #[test]
    fn git_log_output_with_commits_renames_quotes_and_deletions() {
        let sha1 = "a".repeat(40);
        let sha2 = "b".repeat(40);
        let text = format!(
            "commit {sha1}\n\ndiff --git a/x.txt b/x.txt\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/x.txt\n@@ -0,0 +1,2 @@\n+one\n+two\ncommit {sha2}\n\ndiff --git \"a/sp ace\\303\\251\" \"b/sp ace\\303\\251\"\n--- \"a/sp ace\\303\\251\"\n+++ \"b/sp ace\\303\\251\"\n@@ -3 +3 @@\n-old\n+new\ndiff --git a/gone b/gone\ndeleted file mode 100644\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\ndiff --git a/bin b/bin\nBinary files /dev/null and b/bin differ\n"
        );
        let files = parse_git_diff(text.as_bytes());
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].commit.as_deref(), Some(sha1.as_str()));
        assert_eq!(files[0].path, "x.txt");
        assert_eq!(
            files[0].lines,
            vec![(1, b"one".to_vec()), (2, b"two".to_vec())]
        );
        assert_eq!(files[1].commit.as_deref(), Some(sha2.as_str()));
        assert_eq!(files[1].path, "sp aceé");
        assert_eq!(files[1].lines, vec![(3, b"new".to_vec())]);
    }

    /// The `Binary` events of a diff, as `(path, blob)`.
    fn binaries(text: &str) -> Vec<(Option<String>, Option<String>)> {
        let mut parser = DiffParser::new();
        text.split_inclusive('\n')
            .filter_map(|l| match parser.feed(l.as_bytes()) {
                Some(DiffEvent::Binary { path, blob }) => Some((path, blob)),
                _ => None,
            })
            .collect()
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn binary_lines_give_the_new_path_and_the_full_blob_id() {
        let (z, a, b) = ("0".repeat(40), "a".repeat(40), "b".repeat(40));
        let text = format!(
            "diff --git a/x.db b/x.db\nnew file mode 100644\nindex {z}..{a}\n\
             Binary files /dev/null and b/x.db differ\n\
             diff --git a/my file.p12 b/my file.p12\nindex {a}..{b} 100644\n\
             Binary files a/my file.p12 and b/my file.p12 differ\n\
             diff --git a/x and b/y b/x and b/y\nindex {a}..{b} 100644\n\
             Binary files a/x and b/y and b/x and b/y differ\n\
             diff --git a/gone.bin b/gone.bin\ndeleted file mode 100644\nindex {a}..{z}\n\
             Binary files a/gone.bin and /dev/null differ\n\
             diff --git a/short b/short\nindex 1234567..89abcde 100644\n\
             Binary files a/short and b/short differ\n"
        );
        assert_eq!(
            binaries(&text),
            vec![
                (some("x.db"), Some(a.clone())),
                (some("my file.p12"), Some(b.clone())),
                (some("x and b/y"), Some(b.clone())),
                (None, None),
                // Abbreviated ids are not used (the scan asks for `--full-index`).
                (some("short"), None),
            ]
        );
    }

    #[test]
    fn quoted_renamed_and_copied_binary_paths() {
        let b = "b".repeat(40);
        let text = format!(
            "diff --git \"a/t\\tab.bin\" \"b/t\\tab.bin\"\nindex {b}..{b} 100644\n\
             Binary files \"a/t\\tab.bin\" and \"b/t\\tab.bin\" differ\n\
             diff --git a/plain b/q\\\"uote\nsimilarity index 60%\nrename from plain\n\
             rename to \"q\\\"uote and b/x\"\nindex {b}..{b} 100644\n\
             Binary files a/plain and \"b/q\\\"uote and b/x\" differ\n\
             diff --git a/old name.so b/new name.so\nsimilarity index 90%\ncopy from old name.so\n\
             copy to new name.so\nindex {b}..{b} 100755\n\
             Binary files a/old name.so and b/new name.so differ\n\
             diff --git a/cafe b/cafe\nindex {b}..{b} 100644\n\
             Binary files \"a/caf\\303\\251\" and /dev/null differ\n\
             diff --git a/n b/n\nindex {b}..{b} 100644\n\
             Binary files \"a/n\" and \"b/n\\303\\251 \\\"x\\\"\" differ\n"
        );
        assert_eq!(
            binaries(&text),
            vec![
                (some("t\tab.bin"), Some(b.clone())),
                (some("q\"uote and b/x"), Some(b.clone())),
                (some("new name.so"), Some(b.clone())),
                (None, Some(b.clone())),
                (some("né \"x\""), Some(b.clone())),
            ]
        );
        // Without a rename line, an unquoted old name and a quoted new one.
        assert_eq!(
            binary_new_path(b"a/x y and \"b/x\\ty\"", None),
            Some(b"x\ty".to_vec())
        );
        // The blob id of one section does not leak into the next.
        let text = format!(
            "diff --git a/a b/a\nindex {b}..{b} 100644\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y\n\
             diff --git a/c b/c\nBinary files a/c and b/c differ\n"
        );
        assert_eq!(binaries(&text), vec![(some("c"), None)]);
    }

    #[test]
    fn hunk_header_counts() {
        assert_eq!(parse_hunk_header(b"@@ -1 +1 @@"), Some((1, 1, 1)));
        assert_eq!(parse_hunk_header(b"@@ -0,0 +1,5 @@ fn x"), Some((0, 1, 5)));
        assert_eq!(parse_hunk_header(b"@@ garbage"), None);
    }
}
