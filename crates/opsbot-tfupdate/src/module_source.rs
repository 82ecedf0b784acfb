//! Module `source` strings: registry addresses (`ns/name/system`, optionally with a host
//! and a `//subdir`), git and other remote sources (`git::https://…?ref=v1.2.3`), and
//! local paths. Pure.

use std::ops::Range;

use crate::pins::DEFAULT_REGISTRY_HOST;

/// A module registry address: `[HOST/]NAMESPACE/NAME/SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleAddress {
    pub host: Option<String>,
    pub namespace: String,
    pub name: String,
    pub system: String,
}

impl ModuleAddress {
    /// Parses a registry module source (`//subdir` allowed and ignored). `None` for git,
    /// local and other sources.
    pub fn parse(source: &str) -> Option<ModuleAddress> {
        let source = source.trim();
        if source.contains("::") || source.contains('?') || source.starts_with('.') {
            return None;
        }
        let base = strip_subdir(source);
        let parts: Vec<&str> = base.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let (host, rest) = match parts.as_slice() {
            [host, ns, name, system] if host.contains('.') && !host.contains(':') => {
                (Some(host.to_ascii_lowercase()), [*ns, *name, *system])
            }
            [ns, name, system] => (None, [*ns, *name, *system]),
            _ => return None,
        };
        if !rest.iter().all(|p| valid(p)) {
            return None;
        }
        // `github.com/org/repo` is a git shorthand, not a registry address
        if rest[0].contains('.') {
            return None;
        }
        let host = host.filter(|h| h != DEFAULT_REGISTRY_HOST);
        Some(ModuleAddress {
            host,
            namespace: rest[0].to_ascii_lowercase(),
            name: rest[1].to_ascii_lowercase(),
            system: rest[2].to_ascii_lowercase(),
        })
    }

    /// `ns/name/system`, or with the host for a non-default registry.
    pub fn short(&self) -> String {
        let base = format!("{}/{}/{}", self.namespace, self.name, self.system);
        match &self.host {
            Some(host) => format!("{host}/{base}"),
            None => base,
        }
    }
}

impl std::fmt::Display for ModuleAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short())
    }
}

fn strip_subdir(source: &str) -> &str {
    let search_from = source.find("://").map_or(0, |i| i + 3);
    match source[search_from..].find("//") {
        Some(i) => &source[..search_from + i],
        None => source,
    }
}

/// A comparable form of a source: no `git::` forcing, scheme, user, query, `//subdir`,
/// trailing `.git`; scp-like `git@host:org/repo` becomes `host/org/repo`; lower case.
pub fn normalize(source: &str) -> String {
    let mut s = source.trim();
    if let Some((forced, rest)) = s.split_once("::")
        && !forced.contains('/')
    {
        s = rest;
    }
    if let Some(i) = s.find('?') {
        s = &s[..i];
    }
    let s = strip_subdir(s);
    let s = match s.find("://") {
        Some(i) => &s[i + 3..],
        None => s,
    };
    let s = match s.split_once('@') {
        Some((user, rest)) if !user.contains('/') => rest,
        _ => s,
    };
    let mut out = s.to_string();
    // scp-like `host:org/repo`
    if let Some(colon) = out.find(':') {
        let slash = out.find('/').unwrap_or(out.len());
        let port = out[colon + 1..slash].bytes().all(|b| b.is_ascii_digit());
        if colon < slash && !port {
            out.replace_range(colon..colon + 1, "/");
        }
    }
    let out = out.trim_end_matches('/');
    let out = out.strip_suffix(".git").unwrap_or(out);
    let out = out.to_ascii_lowercase();
    match out.strip_prefix(&format!("{DEFAULT_REGISTRY_HOST}/")) {
        Some(rest) => rest.to_string(),
        None => out,
    }
}

/// Whether a module `source` is the module `pattern` names (the registry address or the
/// repository, whatever the `//subdir`, `?ref=` or URL spelling).
pub fn matches(pattern: &str, source: &str) -> bool {
    match (ModuleAddress::parse(pattern), ModuleAddress::parse(source)) {
        (Some(p), Some(s)) => p == s,
        (Some(_), None) | (None, Some(_)) => false,
        (None, None) => {
            let (p, s) = (normalize(pattern), normalize(source));
            !p.is_empty() && p == s
        }
    }
}

/// The byte range of the `ref=` value in a remote source's query string, if any.
pub fn git_ref(source: &str) -> Option<Range<usize>> {
    let q = source.find('?')?;
    let mut offset = q + 1;
    for param in source[q + 1..].split('&') {
        if let Some(value) = param.strip_prefix("ref=") {
            let start = offset + 4;
            return (!value.is_empty()).then_some(start..start + value.len());
        }
        offset += param.len() + 1;
    }
    None
}

/// `source` with its `ref=` version tag replaced by `new` (keeping a leading `v`), or
/// `None` when the ref is not a version tag (a branch, a commit).
pub fn with_ref(source: &str, new: &crate::constraint::TfVersion) -> Option<String> {
    let range = git_ref(source)?;
    let current = &source[range.clone()];
    crate::constraint::TfVersion::parse(current).ok()?;
    let tag = if current.starts_with('v') {
        format!("v{}", new.as_str())
    } else {
        new.as_str().to_string()
    };
    let mut out = source.to_string();
    out.replace_range(range, &tag);
    Some(out)
}

/// The version tag in a source's `ref=`, if it is one.
pub fn ref_version(source: &str) -> Option<crate::constraint::TfVersion> {
    let range = git_ref(source)?;
    crate::constraint::TfVersion::parse(&source[range]).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::constraint::TfVersion;

    #[test]
    fn registry_addresses() {
        let a = ModuleAddress::parse("terraform-aws-modules/vpc/aws").unwrap();
        assert_eq!(a.short(), "terraform-aws-modules/vpc/aws");
        assert_eq!(
            ModuleAddress::parse("registry.terraform.io/terraform-aws-modules/vpc/aws"),
            Some(a.clone())
        );
        assert_eq!(
            ModuleAddress::parse("terraform-aws-modules/iam/aws//modules/iam-user")
                .unwrap()
                .name,
            "iam"
        );
        let p = ModuleAddress::parse("app.terraform.io/acme/net/aws").unwrap();
        assert_eq!(p.host.as_deref(), Some("app.terraform.io"));
        for not_registry in [
            "./modules/vpc",
            "../x/y/z",
            "github.com/org/repo",
            "git::https://example.com/vpc.git?ref=v1.2.0",
            "git@github.com:org/repo.git",
            "s3::https://s3.amazonaws.com/b/m.zip",
            "a/b",
        ] {
            assert!(
                ModuleAddress::parse(not_registry).is_none(),
                "{not_registry}"
            );
        }
    }

    #[test]
    fn matching_sources() {
        assert!(matches(
            "terraform-aws-modules/vpc/aws",
            "registry.terraform.io/terraform-aws-modules/vpc/aws"
        ));
        assert!(matches(
            "terraform-aws-modules/iam/aws",
            "terraform-aws-modules/iam/aws//modules/iam-user"
        ));
        assert!(!matches(
            "terraform-aws-modules/vpc/aws",
            "terraform-aws-modules/vpc/google"
        ));
        assert!(matches(
            "github.com/acme/tf-modules",
            "git::https://github.com/acme/tf-modules.git//net?ref=v1.2.3"
        ));
        assert!(matches(
            "git::https://github.com/acme/tf-modules.git",
            "git@github.com:acme/tf-modules.git?ref=v1.2.3"
        ));
        assert!(matches(
            "git::ssh://git@example.com:2222/acme/m.git",
            "git::ssh://git@example.com:2222/acme/m.git?ref=1.0.0"
        ));
        assert!(!matches(
            "github.com/acme/other",
            "github.com/acme/tf-modules?ref=v1"
        ));
        assert!(!matches("./modules/a", "./modules/b"));
    }

    #[test]
    fn git_refs() {
        let src = "git::https://example.com/m.git//sub?depth=1&ref=v1.2.3";
        assert_eq!(&src[git_ref(src).unwrap()], "v1.2.3");
        let new = TfVersion::parse("1.4.0").unwrap();
        assert_eq!(
            with_ref(src, &new).unwrap(),
            "git::https://example.com/m.git//sub?depth=1&ref=v1.4.0"
        );
        assert_eq!(
            with_ref("github.com/a/b?ref=1.2.3", &new).unwrap(),
            "github.com/a/b?ref=1.4.0"
        );
        assert_eq!(with_ref("github.com/a/b?ref=main", &new), None);
        assert_eq!(git_ref("github.com/a/b"), None);
        assert_eq!(ref_version(src).unwrap().as_str(), "1.2.3");
    }
}
