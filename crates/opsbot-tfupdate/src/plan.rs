//! Planning the daily PR job. Pure: given the updates found (grouped into pull requests)
//! and the job's existing pull requests, decide which to open, keep, close or defer, and
//! render branch names, titles and bodies. A hidden marker in each body records the
//! group key and the exact update, which is how duplicates are recognised.

use serde::{Deserialize, Serialize};

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
}

impl TargetUpdate {
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
}

/// The state a PR body carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrMarker {
    pub key: String,
    /// `hashicorp/aws@5.70.0` (comma-separated for groups).
    pub identity: String,
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

fn short_hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..4])
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

    /// `opsbot/tfupdate/provider-hashicorp-aws-5.70.0`; groups of several get a short
    /// hash of the identity instead of a version.
    pub fn branch(&self, prefix: &str) -> String {
        let suffix = match self.updates.as_slice() {
            [one] => sanitize(&one.to),
            _ => short_hash(&self.identity()),
        };
        format!("{}/{}-{suffix}", prefix.trim_end_matches('/'), self.key)
    }

    pub fn marker(&self) -> PrMarker {
        PrMarker {
            key: self.key.clone(),
            identity: self.identity(),
        }
    }

    /// `Bump hashicorp/aws from 5.31.0 to 5.70.0`; groups list every target.
    pub fn title(&self) -> String {
        match self.updates.as_slice() {
            [one] => match one.from.as_slice() {
                [from] => format!("Bump {} from {from} to {}", one.name, one.to),
                _ => format!("Bump {} to {}", one.name, one.to),
            },
            many => {
                let list: Vec<String> = many
                    .iter()
                    .map(|u| format!("{} {}", u.name, u.to))
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

    /// The PR body: from → to, release notes, changed files, and the hidden marker.
    pub fn body(&self) -> String {
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
        out.push_str("| Target | From | To | Release notes |\n|---|---|---|---|\n");
        for u in &self.updates {
            let notes = if u.notes_url.is_empty() {
                "—".to_string()
            } else {
                format!("[{}]({})", u.to, u.notes_url)
            };
            out.push_str(&format!(
                "| {} | {} | `{}` | {notes} |\n",
                u.name,
                from_list(&u.from),
                u.to
            ));
        }
        out.push_str("\n### Changed files\n\n");
        for f in &self.files {
            if f.pins > 0 {
                let s = if f.pins == 1 { "" } else { "s" };
                out.push_str(&format!("- `{}` ({} pin{s})\n", f.path, f.pins));
            } else {
                out.push_str(&format!("- `{}` (lock file)\n", f.path));
            }
        }
        out.push_str(
            "\nOpened by `opsbot tfupdate pr`. Only version strings changed; comments and \
             formatting are untouched. A newer release replaces this pull request; closing it \
             skips this version.\n\n",
        );
        out.push_str(&opsbot_core::github::marker::render(
            MARKER_KIND,
            &self.marker(),
        ));
        out.push('\n');
        out
    }
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
}

/// Why a pull request is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// A newer update for the same target: the group at this index.
    Superseded { group: usize },
    /// The repository already has the latest versions for this key.
    UpToDate,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrAction {
    /// Open a pull request for the group at this index.
    Open { group: usize },
    /// The same update is already open.
    Keep { group: usize, number: u64 },
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
pub fn plan(
    groups: &[UpdateGroup],
    current_keys: &[String],
    existing: &[ExistingPr],
    max_open: usize,
) -> Vec<PrAction> {
    let mut actions = Vec::new();
    let mut open_count = existing.iter().filter(|p| p.open).count();
    for (i, group) in groups.iter().enumerate() {
        let marker = group.marker();
        let same_key: Vec<&ExistingPr> = existing
            .iter()
            .filter(|p| p.marker.key == marker.key)
            .collect();
        if let Some(pr) = same_key
            .iter()
            .find(|p| p.open && p.marker.identity == marker.identity)
        {
            actions.push(PrAction::Keep {
                group: i,
                number: pr.number,
            });
            for old in same_key.iter().filter(|p| p.open && p.number != pr.number) {
                open_count -= 1;
                actions.push(PrAction::Close {
                    number: old.number,
                    branch: old.branch.clone(),
                    reason: CloseReason::Superseded { group: i },
                });
            }
            continue;
        }
        if let Some(pr) = same_key
            .iter()
            .find(|p| !p.open && p.marker.identity == marker.identity)
        {
            actions.push(PrAction::Declined {
                group: i,
                number: pr.number,
            });
            continue;
        }
        let superseded: Vec<&&ExistingPr> = same_key.iter().filter(|p| p.open).collect();
        if open_count + 1 - superseded.len() > max_open {
            actions.push(PrAction::Deferred { group: i });
            continue;
        }
        open_count = open_count + 1 - superseded.len();
        actions.push(PrAction::Open { group: i });
        for old in superseded {
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
            marker: g.marker(),
        }
    }

    #[test]
    fn names_and_body() {
        let g = aws("5.70.0");
        assert_eq!(
            g.branch("opsbot/tfupdate"),
            "opsbot/tfupdate/provider-hashicorp-aws-5.70.0"
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
        assert!(
            many.branch("opsbot/tfupdate/")
                .starts_with("opsbot/tfupdate/providers-")
        );
        assert_eq!(many.branch("p").len(), "p/providers-".len() + 8);
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
            plan(&groups, &[], &[], 10),
            vec![PrAction::Open { group: 0 }]
        );
        let open = vec![existing(&groups[0], 7, true)];
        assert_eq!(
            plan(&groups, &[], &open, 10),
            vec![PrAction::Keep {
                group: 0,
                number: 7
            }]
        );
    }

    #[test]
    fn newer_release_supersedes_the_older_pr() {
        let old = aws("5.70.0");
        let new = vec![aws("5.71.0")];
        let open = vec![existing(&old, 7, true)];
        assert_eq!(
            plan(&new, &[], &open, 1),
            vec![
                PrAction::Open { group: 0 },
                PrAction::Close {
                    number: 7,
                    branch: "opsbot/tfupdate/provider-hashicorp-aws-5.70.0".into(),
                    reason: CloseReason::Superseded { group: 0 }
                }
            ]
        );
    }

    #[test]
    fn declined_updates_are_not_reopened() {
        let groups = vec![aws("5.70.0")];
        let closed = vec![existing(&groups[0], 7, false)];
        assert_eq!(
            plan(&groups, &[], &closed, 10),
            vec![PrAction::Declined {
                group: 0,
                number: 7
            }]
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
        let actions = plan(&groups, &[], &[], 2);
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
        let actions = plan(&[], &["provider-hashicorp-aws".to_string()], &open, 10);
        assert_eq!(
            actions,
            vec![PrAction::Close {
                number: 9,
                branch: old.branch("opsbot/tfupdate"),
                reason: CloseReason::UpToDate
            }]
        );
        // a key that was not checked (e.g. modules disabled) is left alone
        assert!(plan(&[], &[], &open, 10).is_empty());
    }
}
