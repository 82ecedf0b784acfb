//! Planning the daily PR job. Pure: given the updates found (grouped into pull requests)
//! and the job's existing pull requests, decide which to open, keep, close or defer, and
//! render branch names, titles and bodies. A hidden marker in each body records the
//! group key and the exact update, which is how duplicates are recognised.

use serde::{Deserialize, Serialize};

use crate::constraint::{Constraint, TfVersion};

/// The most characters GitHub accepts in a pull-request body.
pub const MAX_BODY_CHARS: usize = 65_536;

/// The marker kind in PR bodies: `<!-- opsbot:tfupdate {...} -->`.
pub const MARKER_KIND: &str = "tfupdate";

/// What a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Terraform,
    Provider,
    Module,
}

/// One target with a newer release, and the pins it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUpdate {
    /// Stable key: `terraform`, `provider-hashicorp-aws`, `module-terraform-aws-modules-vpc-aws`.
    pub key: String,
    /// For people: `Terraform`, `hashicorp/aws`, `terraform-aws-modules/vpc/aws`.
    pub name: String,
    pub kind: TargetKind,
    /// The constraint strings found before (distinct, in file order).
    pub from: Vec<String>,
    pub to: String,
    /// Release notes or changelog.
    pub notes_url: String,
    /// The release notes of every release after the old version up to `to`, newest
    /// first (empty when the source repository has none or could not be read).
    pub notes: Vec<ReleaseNote>,
    /// The source repository's releases page (`https://github.com/o/r/releases`).
    pub releases_url: Option<String>,
}

/// One release's notes, as its source repository publishes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseNote {
    /// `5.70.0`
    pub version: String,
    /// The release's name (`v5.70.0`).
    pub title: String,
    pub url: String,
    /// Markdown.
    pub body: String,
}

/// The lowest version the `from` constraints mention (`~> 3.5` → 3.5): where the
/// release notes start.
pub fn from_floor(from: &[String]) -> Option<TfVersion> {
    from.iter()
        .filter_map(|f| Constraint::parse(f).ok())
        .flat_map(|c| c.clauses.into_iter().map(|cl| cl.version))
        .min()
}

/// `true` when going from `from` to `to` crosses a major version (for 0.x, a minor one).
pub fn is_major(from: &[String], to: &str) -> bool {
    let (Some(old), Ok(new)) = (from_floor(from), TfVersion::parse(to)) else {
        return false;
    };
    let (o, n) = (old.semver(), new.semver());
    n.major > o.major || (n.major == 0 && o.major == 0 && n.minor > o.minor)
}

impl TargetUpdate {
    /// Crosses a major version.
    pub fn major(&self) -> bool {
        is_major(&self.from, &self.to)
    }

    /// The key for a provider or module address: `provider-hashicorp-aws`.
    pub fn key_for(kind: TargetKind, name: &str) -> String {
        let prefix = match kind {
            TargetKind::Terraform => return "terraform".to_string(),
            TargetKind::Provider => "provider",
            TargetKind::Module => "module",
        };
        format!("{prefix}-{}", sanitize(name))
    }
}

/// A changed file in a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    /// Pins rewritten in it (0 for lock files).
    pub pins: usize,
    pub content: String,
}

/// One pull request's worth of updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateGroup {
    /// `terraform`, `provider-hashicorp-aws`, `providers`, `modules`, `all`.
    pub key: String,
    pub updates: Vec<TargetUpdate>,
    pub files: Vec<FileChange>,
    /// Platforms the changed lock files carry `h1:` hashes for (empty when no lock file
    /// changed).
    pub lock_platforms: Vec<String>,
}

/// The state a PR body carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrMarker {
    pub key: String,
    /// `hashicorp/aws@5.70.0` (comma-separated for groups).
    pub identity: String,
    /// The base commit the branch was built on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The commit the job pushed; a branch whose head differs was changed by someone
    /// else and is never reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

/// How updates are grouped into pull requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// One pull request per target.
    #[default]
    None,
    /// Terraform alone, all providers together, all modules together.
    Kind,
    /// All providers in one pull request; Terraform and each module alone.
    Providers,
    /// Everything in one pull request.
    All,
}

/// Group keys of the targets, per the grouping.
pub fn group_key(grouping: Grouping, update: &TargetUpdate) -> String {
    match (grouping, update.kind) {
        (Grouping::All, _) => "all".to_string(),
        (Grouping::Kind | Grouping::Providers, TargetKind::Provider) => "providers".to_string(),
        (Grouping::Kind, TargetKind::Module) => "modules".to_string(),
        _ => update.key.clone(),
    }
}

fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

impl UpdateGroup {
    /// What exactly this PR updates: `hashicorp/aws@5.70.0,terraform@1.9.8`.
    pub fn identity(&self) -> String {
        let mut parts: Vec<String> = self
            .updates
            .iter()
            .map(|u| format!("{}@{}", u.name.to_ascii_lowercase(), u.to))
            .collect();
        parts.sort();
        parts.join(",")
    }

    /// `opsbot/tfupdate/provider-hashicorp-aws`: one branch per group key, whatever the
    /// version, so a newer release refreshes the same branch and pull request.
    pub fn branch(&self, prefix: &str) -> String {
        format!("{}/{}", prefix.trim_end_matches('/'), self.key)
    }

    /// The marker without commits (what identifies the update).
    pub fn marker(&self) -> PrMarker {
        PrMarker {
            key: self.key.clone(),
            identity: self.identity(),
            base: None,
            head: None,
        }
    }

    /// Any update crosses a major version.
    pub fn major(&self) -> bool {
        self.updates.iter().any(TargetUpdate::major)
    }

    /// `Bump hashicorp/aws from 5.31.0 to 5.70.0`, `… (major)` across a major version;
    /// groups list every target.
    pub fn title(&self) -> String {
        let major = if self.major() { " (major)" } else { "" };
        match self.updates.as_slice() {
            [one] => match one.from.as_slice() {
                [from] => format!("Bump {} from {from} to {}{major}", one.name, one.to),
                _ => format!("Bump {} to {}{major}", one.name, one.to),
            },
            many => {
                let list: Vec<String> = many
                    .iter()
                    .map(|u| {
                        let m = if u.major() { " (major)" } else { "" };
                        format!("{} {}{m}", u.name, u.to)
                    })
                    .collect();
                let what = match self.key.as_str() {
                    "providers" => "providers",
                    "modules" => "modules",
                    _ => "Terraform versions",
                };
                format!("Bump {what}: {}", list.join(", "))
            }
        }
    }

    /// The PR body without commits in the marker (see [`UpdateGroup::body_with`]).
    pub fn body(&self) -> String {
        self.body_with(&self.marker())
    }

    /// The PR body: from → to (major bumps marked), the release notes of every release
    /// in between (collapsed, cut to fit GitHub's 65,536 characters with a note saying
    /// what was cut), the changed files, the lock platforms, and the hidden `marker`.
    pub fn body_with(&self, marker: &PrMarker) -> String {
        let head = self.body_head();
        let tail = self.body_tail(marker);
        let fixed = head.chars().count() + tail.chars().count();
        let notes = render_notes(&self.updates, MAX_BODY_CHARS.saturating_sub(fixed));
        let body = format!("{head}{notes}{tail}");
        if body.chars().count() <= MAX_BODY_CHARS {
            return body;
        }
        // only when the fixed parts alone are too long (thousands of files)
        let mut cut: String = head.chars().take(MAX_BODY_CHARS / 2).collect();
        cut.push_str("\n\n_Cut to fit GitHub's 65,536-character limit._\n\n");
        cut.push_str(&opsbot_core::github::marker::render(MARKER_KIND, marker));
        cut.push('\n');
        cut
    }

    fn body_head(&self) -> String {
        let mut out = String::new();
        match self.updates.as_slice() {
            [one] => out.push_str(&format!(
                "Bumps **{}** from {} to `{}`.\n\n",
                one.name,
                from_list(&one.from),
                one.to
            )),
            _ => out.push_str("Bumps these Terraform version pins:\n\n"),
        }
        let majors: Vec<&TargetUpdate> = self.updates.iter().filter(|u| u.major()).collect();
        if !majors.is_empty() {
            out.push_str("> [!WARNING]\n");
            for u in &majors {
                let old = from_floor(&u.from)
                    .map(|v| v.semver().major.to_string())
                    .unwrap_or_else(|| "?".to_string());
                let new = TfVersion::parse(&u.to)
                    .map(|v| v.semver().major.to_string())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "> **Major version bump** of {}: {old}.x → {new}.x. Expect breaking \
                     changes; read the release notes and upgrade guide before merging.\n",
                    u.name
                ));
            }
            out.push('\n');
        }
        out.push_str("| Target | From | To | Release notes |\n|---|---|---|---|\n");
        for u in &self.updates {
            let notes = if u.notes_url.is_empty() {
                "—".to_string()
            } else {
                format!("[{}]({})", u.to, u.notes_url)
            };
            let major = if u.major() { " **major**" } else { "" };
            out.push_str(&format!(
                "| {} | {} | `{}`{major} | {notes} |\n",
                u.name,
                from_list(&u.from),
                u.to
            ));
        }
        out
    }

    fn body_tail(&self, marker: &PrMarker) -> String {
        let mut out = String::new();
        out.push_str("\n### Changed files\n\n");
        const MAX_FILES: usize = 300;
        for f in self.files.iter().take(MAX_FILES) {
            if f.pins > 0 {
                let s = if f.pins == 1 { "" } else { "s" };
                out.push_str(&format!("- `{}` ({} pin{s})\n", f.path, f.pins));
            } else {
                out.push_str(&format!("- `{}` (lock file)\n", f.path));
            }
        }
        if self.files.len() > MAX_FILES {
            out.push_str(&format!(
                "- … and {} more files (see the Files tab)\n",
                self.files.len() - MAX_FILES
            ));
        }
        let locks = self.files.iter().filter(|f| f.pins == 0).count();
        if locks > 0 && !self.lock_platforms.is_empty() {
            let platforms: Vec<String> = self
                .lock_platforms
                .iter()
                .map(|p| format!("`{p}`"))
                .collect();
            let s = if locks == 1 { "" } else { "s" };
            out.push_str(&format!(
                "\n### Lock files\n\n{locks} lock file{s} updated as `terraform providers lock` \
                 writes them: `h1:` hashes for {}, and `zh:` hashes of every package the \
                 provider publishes.\n",
                platforms.join(", ")
            ));
        }
        out.push_str(
            "\nOpened by `opsbot tfupdate pr`. Only version strings changed; comments and \
             formatting are untouched. A newer release, or a move of the base branch, \
             refreshes this pull request in place; closing it skips this version.\n\n",
        );
        out.push_str(&opsbot_core::github::marker::render(MARKER_KIND, marker));
        out.push('\n');
        out
    }
}

/// Keeps release-note text from closing our markup or faking the marker.
fn sanitize_note(body: &str) -> String {
    body.replace("\r\n", "\n")
        .replace("<!-- opsbot:", "<!-- opsbot :")
        .replace("</details>", "&lt;/details&gt;")
        .trim()
        .to_string()
}

/// The first `max` characters of `text`, with an open code fence closed.
fn cut_chars(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if let Some(nl) = out.rfind('\n')
        && nl > max / 2
    {
        out.truncate(nl);
    }
    let fences = out
        .lines()
        .filter(|l| l.trim_start().starts_with("```"))
        .count();
    if fences % 2 == 1 {
        out.push_str("\n```");
    }
    out
}

fn note_block(update: &TargetUpdate, note: &ReleaseNote, body: &str) -> String {
    let link = if note.url.is_empty() {
        String::new()
    } else {
        format!("\n\n[{} on GitHub]({})", note.title, note.url)
    };
    format!(
        "<details>\n<summary>{} {}</summary>\n\n{body}{link}\n\n</details>\n",
        update.name, note.title
    )
}

/// The release-notes section within `budget` characters: every note collapsed, newest
/// first; what does not fit is named, with a link, instead of quoted.
fn render_notes(updates: &[TargetUpdate], budget: usize) -> String {
    if updates.iter().all(|u| u.notes.is_empty()) {
        return String::new();
    }
    const HEADING: &str = "\n### Release notes\n\n";
    // room for the note saying what was cut: one line per update
    let reserve = 120 + updates.len() * 400;
    let Some(mut left) = budget.checked_sub(HEADING.len() + reserve) else {
        return String::new();
    };
    let mut out = String::from(HEADING);
    let mut cut: Vec<(&TargetUpdate, Vec<&ReleaseNote>)> = Vec::new();
    let mut full = false;
    for u in updates.iter().filter(|u| !u.notes.is_empty()) {
        if updates.len() > 1 {
            let heading = format!("#### {}\n\n", u.name);
            if heading.chars().count() > left {
                full = true;
            } else {
                left -= heading.chars().count();
                out.push_str(&heading);
            }
        }
        let mut skipped = Vec::new();
        for note in &u.notes {
            if full {
                skipped.push(note);
                continue;
            }
            let body = sanitize_note(&note.body);
            let body = if body.is_empty() {
                "_No release notes._".to_string()
            } else {
                body
            };
            let block = note_block(u, note, &body);
            let n = block.chars().count();
            if n <= left {
                left -= n;
                out.push_str(&block);
                continue;
            }
            // a long note that does not fit: quote its start when there is room
            let overhead = note_block(u, note, "").chars().count() + 80;
            if left > overhead + 1_000 {
                let mut text = cut_chars(&body, left - overhead);
                text.push_str("\n\n_… cut here to fit GitHub's limit._");
                let block = note_block(u, note, &text);
                left = left.saturating_sub(block.chars().count());
                out.push_str(&block);
            } else {
                skipped.push(note);
            }
            full = true;
        }
        if !skipped.is_empty() {
            cut.push((u, skipped));
        }
    }
    if !cut.is_empty() {
        out.push_str(&format!(
            "\n_Release notes cut to fit GitHub's {MAX_BODY_CHARS}-character limit:_\n"
        ));
        for (u, skipped) in cut {
            let newest = skipped.first().map_or("", |n| n.version.as_str());
            let oldest = skipped.last().map_or("", |n| n.version.as_str());
            let range = if newest == oldest {
                newest.to_string()
            } else {
                format!("{oldest} to {newest}")
            };
            let s = if skipped.len() == 1 { "" } else { "s" };
            let link = u
                .releases_url
                .clone()
                .or_else(|| skipped.first().map(|n| n.url.clone()))
                .unwrap_or_default();
            out.push_str(&format!(
                "- {}: {} release{s} not quoted ({range}); [read them on GitHub]({link})\n",
                u.name,
                skipped.len()
            ));
        }
    }
    out
}

fn from_list(from: &[String]) -> String {
    if from.is_empty() {
        return "—".to_string();
    }
    from.iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A pull request of this job that exists on GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingPr {
    pub number: u64,
    pub branch: String,
    pub open: bool,
    pub merged: bool,
    pub marker: PrMarker,
    /// The branch's head commit.
    pub head_sha: Option<String>,
    /// The base commit the branch is built on (its head commit's parent), when known.
    pub based_on: Option<String>,
}

impl ExistingPr {
    /// Someone else pushed to the branch: it is never reset.
    pub fn edited(&self) -> bool {
        matches!((&self.marker.head, &self.head_sha), (Some(ours), Some(now)) if ours != now)
    }
}

/// Why a pull request is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// A newer update for the same target: the group at this index.
    Superseded { group: usize },
    /// The repository already has the latest versions for this key.
    UpToDate,
}

/// Why an open pull request's branch is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshReason {
    /// Built on an older commit of the base branch.
    BaseMoved,
    /// For an older update of the same target: the identity it had.
    Superseded { was: String },
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrAction {
    /// Open a pull request for the group at this index.
    Open { group: usize },
    /// The same update is already open on the current base (its title and body are
    /// rewritten only if they differ).
    Keep { group: usize, number: u64 },
    /// Rebuild the branch of open pull request `number` on the current base with the
    /// group's files (a forced ref update) and rewrite its title and body: same pull
    /// request, never a duplicate.
    Refresh {
        group: usize,
        number: u64,
        branch: String,
        reason: RefreshReason,
    },
    /// The pull request would be refreshed, but someone pushed to its branch.
    KeepEdited { group: usize, number: u64 },
    /// A pull request for this exact update was closed without merging (or merged):
    /// do not open it again.
    Declined { group: usize, number: u64 },
    /// Over the open pull request limit; tried again next run.
    Deferred { group: usize },
    Close {
        number: u64,
        branch: String,
        reason: CloseReason,
    },
}

/// Decides what to do. `current_keys` are group keys whose targets were checked and are
/// up to date (their open PRs are obsolete). `max_open` bounds this job's open PRs.
/// `base_sha` is the base branch's head now (`None`: unknown, e.g. a dry run that did
/// not look): an open PR built on another commit is refreshed.
pub fn plan(
    groups: &[UpdateGroup],
    current_keys: &[String],
    existing: &[ExistingPr],
    max_open: usize,
    base_sha: Option<&str>,
) -> Vec<PrAction> {
    let mut actions = Vec::new();
    let mut open_count = existing.iter().filter(|p| p.open).count();
    for (i, group) in groups.iter().enumerate() {
        let marker = group.marker();
        let same_key: Vec<&ExistingPr> = existing
            .iter()
            .filter(|p| p.marker.key == marker.key)
            .collect();
        let open: Vec<&ExistingPr> = same_key.iter().copied().filter(|p| p.open).collect();
        // the PR to keep or refresh: the one for this exact update, else the newest
        let current = open
            .iter()
            .copied()
            .find(|p| p.marker.identity == marker.identity);
        let declined = same_key
            .iter()
            .find(|p| !p.open && p.marker.identity == marker.identity);
        let target = match (current, declined) {
            (Some(pr), _) => Some(pr),
            // this exact update was closed by a person: not offered again
            (None, Some(pr)) => {
                actions.push(PrAction::Declined {
                    group: i,
                    number: pr.number,
                });
                continue;
            }
            (None, None) => open.iter().copied().max_by_key(|p| p.number),
        };
        let Some(pr) = target else {
            if open_count + 1 > max_open {
                actions.push(PrAction::Deferred { group: i });
                continue;
            }
            open_count += 1;
            actions.push(PrAction::Open { group: i });
            continue;
        };
        let reason = if pr.marker.identity != marker.identity {
            Some(RefreshReason::Superseded {
                was: pr.marker.identity.clone(),
            })
        } else if let (Some(now), Some(built_on)) = (base_sha, &pr.based_on)
            && now != built_on
        {
            Some(RefreshReason::BaseMoved)
        } else {
            None
        };
        match reason {
            None => actions.push(PrAction::Keep {
                group: i,
                number: pr.number,
            }),
            Some(_) if pr.edited() => actions.push(PrAction::KeepEdited {
                group: i,
                number: pr.number,
            }),
            Some(reason) => actions.push(PrAction::Refresh {
                group: i,
                number: pr.number,
                branch: pr.branch.clone(),
                reason,
            }),
        }
        // any other open PR of this key (older job versions opened one per release)
        for old in open.iter().filter(|p| p.number != pr.number) {
            open_count -= 1;
            actions.push(PrAction::Close {
                number: old.number,
                branch: old.branch.clone(),
                reason: CloseReason::Superseded { group: i },
            });
        }
    }
    for pr in existing
        .iter()
        .filter(|p| p.open && current_keys.contains(&p.marker.key))
    {
        if !groups.iter().any(|g| g.key == pr.marker.key) {
            actions.push(PrAction::Close {
                number: pr.number,
                branch: pr.branch.clone(),
                reason: CloseReason::UpToDate,
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn update(kind: TargetKind, name: &str, from: &str, to: &str) -> TargetUpdate {
        TargetUpdate {
            key: TargetUpdate::key_for(kind, name),
            name: name.to_string(),
            kind,
            from: vec![from.to_string()],
            to: to.to_string(),
            notes_url: format!("https://example.com/{name}/{to}"),
            notes: Vec::new(),
            releases_url: None,
        }
    }

    fn group(updates: Vec<TargetUpdate>, key: &str) -> UpdateGroup {
        UpdateGroup {
            key: key.to_string(),
            updates,
            files: vec![
                FileChange {
                    path: "envs/prod/versions.tf".into(),
                    pins: 2,
                    content: String::new(),
                },
                FileChange {
                    path: "envs/prod/.terraform.lock.hcl".into(),
                    pins: 0,
                    content: String::new(),
                },
            ],
            lock_platforms: vec!["linux_amd64".into(), "darwin_arm64".into()],
        }
    }

    fn aws(to: &str) -> UpdateGroup {
        group(
            vec![update(TargetKind::Provider, "hashicorp/aws", "5.31.0", to)],
            "provider-hashicorp-aws",
        )
    }

    fn existing(g: &UpdateGroup, number: u64, open: bool) -> ExistingPr {
        ExistingPr {
            number,
            branch: g.branch("opsbot/tfupdate"),
            open,
            merged: false,
            marker: PrMarker {
                base: Some("base1".into()),
                head: Some("head1".into()),
                ..g.marker()
            },
            head_sha: Some("head1".into()),
            based_on: Some("base1".into()),
        }
    }

    fn note(version: &str, body: &str) -> ReleaseNote {
        ReleaseNote {
            version: version.to_string(),
            title: format!("v{version}"),
            url: format!(
                "https://github.com/hashicorp/terraform-provider-aws/releases/tag/v{version}"
            ),
            body: body.to_string(),
        }
    }

    #[test]
    fn names_and_body() {
        let g = aws("5.70.0");
        assert_eq!(
            g.branch("opsbot/tfupdate"),
            "opsbot/tfupdate/provider-hashicorp-aws"
        );
        assert_eq!(g.title(), "Bump hashicorp/aws from 5.31.0 to 5.70.0");
        let body = g.body();
        assert!(
            body.contains("Bumps **hashicorp/aws** from `5.31.0` to `5.70.0`."),
            "{body}"
        );
        assert!(
            body.contains("[5.70.0](https://example.com/hashicorp/aws/5.70.0)"),
            "{body}"
        );
        assert!(body.contains(
            "- `envs/prod/versions.tf` (2 pins)\n- `envs/prod/.terraform.lock.hcl` (lock file)"
        ));
        assert!(body.contains("`linux_amd64`, `darwin_arm64`"), "{body}");
        assert!(!body.contains("major"), "{body}");
        let marker: PrMarker = opsbot_core::github::marker::find(&body, MARKER_KIND).unwrap();
        assert_eq!(marker, g.marker());
        assert_eq!(marker.identity, "hashicorp/aws@5.70.0");

        let many = group(
            vec![
                update(TargetKind::Provider, "hashicorp/random", "~> 3.5", "3.6.3"),
                update(TargetKind::Provider, "hashicorp/aws", "5.31.0", "5.70.0"),
            ],
            "providers",
        );
        assert_eq!(
            many.identity(),
            "hashicorp/aws@5.70.0,hashicorp/random@3.6.3"
        );
        assert_eq!(many.branch("opsbot/tfupdate/"), "opsbot/tfupdate/providers");
        assert_eq!(
            many.title(),
            "Bump providers: hashicorp/random 3.6.3, hashicorp/aws 5.70.0"
        );
        assert_eq!(
            TargetUpdate::key_for(TargetKind::Module, "app.terraform.io/Acme/net/aws"),
            "module-app.terraform.io-acme-net-aws"
        );
    }

    #[test]
    fn major_versions() {
        let f = |s: &str| vec![s.to_string()];
        assert!(is_major(&f("4.67.0"), "5.0.0"));
        assert!(is_major(&f("~> 4.0"), "5.70.0"));
        assert!(!is_major(&f("~> 5.0"), "5.70.0"));
        assert!(is_major(&f("0.13.1"), "0.14.0"));
        assert!(!is_major(&f("0.13.1"), "0.13.9"));
        assert!(!is_major(&f(">= 3.0, < 4.0"), "3.6.3"));
        assert_eq!(from_floor(&f(">= 3.1, < 4.0")).unwrap().as_str(), "3.1");
        let g = group(
            vec![update(
                TargetKind::Provider,
                "hashicorp/aws",
                "4.67.0",
                "5.1.0",
            )],
            "provider-hashicorp-aws",
        );
        assert_eq!(g.title(), "Bump hashicorp/aws from 4.67.0 to 5.1.0 (major)");
        let body = g.body();
        assert!(
            body.contains("**Major version bump** of hashicorp/aws: 4.x → 5.x"),
            "{body}"
        );
        assert!(body.contains("| `5.1.0` **major** |"), "{body}");
    }

    #[test]
    fn body_with_release_notes_snapshot() {
        let mut u = update(TargetKind::Provider, "hashicorp/aws", "4.67.0", "5.1.0");
        u.releases_url =
            Some("https://github.com/hashicorp/terraform-provider-aws/releases".into());
        u.notes = vec![
            note(
                "5.1.0",
                "## 5.1.0\n\nFEATURES:\n\n* **New Resource:** `aws_foo`\n",
            ),
            note(
                "5.0.1",
                "BUG FIXES:\n\n* resource/aws_s3_bucket: fix drift\n",
            ),
            note(
                "5.0.0",
                "BREAKING CHANGES:\n\n* see the [upgrade guide](https://example.com/upgrade)\n<!-- opsbot:tfupdate {} -->\n",
            ),
        ];
        let g = group(vec![u], "provider-hashicorp-aws");
        let marker = PrMarker {
            base: Some("b4se".into()),
            head: Some("he4d".into()),
            ..g.marker()
        };
        let body = g.body_with(&marker);
        insta::assert_snapshot!(body);
        let found: PrMarker = opsbot_core::github::marker::find(&body, MARKER_KIND).unwrap();
        assert_eq!(found, marker, "the notes cannot fake the marker");
    }

    #[test]
    fn long_release_notes_are_cut_to_fit() {
        let mut u = update(TargetKind::Provider, "hashicorp/aws", "5.31.0", "5.70.0");
        u.releases_url =
            Some("https://github.com/hashicorp/terraform-provider-aws/releases".into());
        let big = "* resource/aws_thing: a change that matters to someone\n".repeat(120);
        u.notes = (32..=70)
            .rev()
            .map(|minor| note(&format!("5.{minor}.0"), &format!("```\ncode\n```\n{big}")))
            .collect();
        let mut g = group(vec![u], "provider-hashicorp-aws");
        let body = g.body();
        let n = body.chars().count();
        assert!(n <= MAX_BODY_CHARS, "{n}");
        assert!(n > MAX_BODY_CHARS - 8_000, "uses the room: {n}");
        assert!(body.contains("<summary>hashicorp/aws v5.70.0</summary>"));
        assert!(body.contains("_Release notes cut to fit GitHub's 65536-character limit:_"));
        assert!(
            body.contains("release not quoted") || body.contains("releases not quoted"),
            "{body}"
        );
        assert!(body.contains(
            "[read them on GitHub](https://github.com/hashicorp/terraform-provider-aws/releases)"
        ));
        assert!(body.contains("5.32.0"), "the oldest cut release is named");
        assert!(opsbot_core::github::marker::find::<PrMarker>(&body, MARKER_KIND).is_some());
        assert_eq!(
            body.matches("<details>").count(),
            body.matches("</details>").count()
        );

        // one giant note: its start is quoted, fences closed
        g.updates[0].notes = vec![note(
            "5.70.0",
            &format!("```hcl\n{}", "x = 1\n".repeat(30_000)),
        )];
        let body = g.body();
        assert!(body.chars().count() <= MAX_BODY_CHARS);
        assert!(
            body.contains("_… cut here to fit GitHub's limit._"),
            "{}",
            &body[..200]
        );
        let fences = body
            .lines()
            .filter(|l| l.trim_start().starts_with("```"))
            .count();
        assert_eq!(fences % 2, 0);

        // a group of many targets and files still fits
        let many: Vec<TargetUpdate> = (0..40)
            .map(|i| {
                let mut u = update(
                    TargetKind::Provider,
                    &format!("acme/p{i}"),
                    "1.0.0",
                    "1.1.0",
                );
                u.notes = vec![note("1.1.0", &big)];
                u
            })
            .collect();
        let mut g = group(many, "providers");
        g.files = (0..2_000)
            .map(|i| FileChange {
                path: format!("roots/r{i}/versions.tf"),
                pins: 1,
                content: String::new(),
            })
            .collect();
        let body = g.body();
        assert!(body.chars().count() <= MAX_BODY_CHARS);
        assert!(opsbot_core::github::marker::find::<PrMarker>(&body, MARKER_KIND).is_some());
    }

    #[test]
    fn grouping_keys() {
        let p = update(TargetKind::Provider, "hashicorp/aws", "1", "2");
        let m = update(TargetKind::Module, "a/b/c", "1", "2");
        let t = update(TargetKind::Terraform, "Terraform", "1", "2");
        assert_eq!(group_key(Grouping::None, &p), "provider-hashicorp-aws");
        assert_eq!(group_key(Grouping::Providers, &p), "providers");
        assert_eq!(group_key(Grouping::Providers, &m), "module-a-b-c");
        assert_eq!(group_key(Grouping::Kind, &m), "modules");
        assert_eq!(group_key(Grouping::Kind, &t), "terraform");
        assert_eq!(group_key(Grouping::All, &t), "all");
    }

    #[test]
    fn first_run_opens_second_run_keeps() {
        let groups = vec![aws("5.70.0")];
        assert_eq!(
            plan(&groups, &[], &[], 10, Some("base1")),
            vec![PrAction::Open { group: 0 }]
        );
        let open = vec![existing(&groups[0], 7, true)];
        assert_eq!(
            plan(&groups, &[], &open, 10, Some("base1")),
            vec![PrAction::Keep {
                group: 0,
                number: 7
            }]
        );
        // base unknown (dry run): kept
        assert_eq!(
            plan(&groups, &[], &open, 10, None),
            vec![PrAction::Keep {
                group: 0,
                number: 7
            }]
        );
    }

    #[test]
    fn base_moved_refreshes_in_place() {
        let groups = vec![aws("5.70.0")];
        let open = vec![existing(&groups[0], 7, true)];
        assert_eq!(
            plan(&groups, &[], &open, 10, Some("base2")),
            vec![PrAction::Refresh {
                group: 0,
                number: 7,
                branch: "opsbot/tfupdate/provider-hashicorp-aws".into(),
                reason: RefreshReason::BaseMoved,
            }]
        );
        // someone pushed to the branch: never reset
        let mut edited = open.clone();
        edited[0].head_sha = Some("theirs".into());
        assert_eq!(
            plan(&groups, &[], &edited, 10, Some("base2")),
            vec![PrAction::KeepEdited {
                group: 0,
                number: 7
            }]
        );
    }

    #[test]
    fn newer_release_refreshes_the_older_pr() {
        let old = aws("5.70.0");
        let new = vec![aws("5.71.0")];
        let open = vec![existing(&old, 7, true)];
        assert_eq!(
            plan(&new, &[], &open, 1, Some("base1")),
            vec![PrAction::Refresh {
                group: 0,
                number: 7,
                branch: "opsbot/tfupdate/provider-hashicorp-aws".into(),
                reason: RefreshReason::Superseded {
                    was: "hashicorp/aws@5.70.0".into()
                },
            }]
        );
        // two open PRs of the key (an older job opened one per release): the newest is
        // refreshed, the other closed
        let mut legacy = existing(&aws("5.69.0"), 5, true);
        legacy.branch = "opsbot/tfupdate/provider-hashicorp-aws-5.69.0".into();
        let open = vec![legacy, existing(&old, 7, true)];
        let actions = plan(&new, &[], &open, 10, Some("base1"));
        assert_eq!(actions.len(), 2);
        assert!(matches!(actions[0], PrAction::Refresh { number: 7, .. }));
        assert_eq!(
            actions[1],
            PrAction::Close {
                number: 5,
                branch: "opsbot/tfupdate/provider-hashicorp-aws-5.69.0".into(),
                reason: CloseReason::Superseded { group: 0 }
            }
        );
    }

    #[test]
    fn declined_updates_are_not_reopened() {
        let groups = vec![aws("5.70.0")];
        let closed = vec![existing(&groups[0], 7, false)];
        assert_eq!(
            plan(&groups, &[], &closed, 10, Some("base1")),
            vec![PrAction::Declined {
                group: 0,
                number: 7
            }]
        );
        // a newer release after a declined one is offered
        assert_eq!(
            plan(&[aws("5.71.0")], &[], &closed, 10, Some("base1")),
            vec![PrAction::Open { group: 0 }]
        );
    }

    #[test]
    fn limit_defers_new_prs() {
        let tf = group(
            vec![update(TargetKind::Terraform, "Terraform", "1.5.7", "1.9.8")],
            "terraform",
        );
        let other = group(
            vec![update(
                TargetKind::Provider,
                "hashicorp/google",
                "5.0.0",
                "6.0.0",
            )],
            "provider-hashicorp-google",
        );
        let groups = vec![aws("5.70.0"), tf, other];
        let actions = plan(&groups, &[], &[], 2, None);
        assert_eq!(
            actions,
            vec![
                PrAction::Open { group: 0 },
                PrAction::Open { group: 1 },
                PrAction::Deferred { group: 2 }
            ]
        );
    }

    #[test]
    fn up_to_date_targets_close_their_prs() {
        let old = aws("5.70.0");
        let open = vec![existing(&old, 9, true)];
        let actions = plan(
            &[],
            &["provider-hashicorp-aws".to_string()],
            &open,
            10,
            None,
        );
        assert_eq!(
            actions,
            vec![PrAction::Close {
                number: 9,
                branch: old.branch("opsbot/tfupdate"),
                reason: CloseReason::UpToDate
            }]
        );
        // a key that was not checked (e.g. modules disabled) is left alone
        assert!(plan(&[], &[], &open, 10, None).is_empty());
    }
}
