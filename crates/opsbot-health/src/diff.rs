//! Pure comparison of the state recorded on an issue with a newly delivered event version, and
//! the comment that says what changed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::event::{EventStatus, HealthEvent, OrgIssues};
use crate::render::{
    BODY_BUDGET, EntityState, IssueState, chars, console_link, cut_chars, escape_text, human_time,
    rfc3339,
};

/// Entities listed by name in one comment line; the rest are counted.
const MAX_LISTED: usize = 50;

/// One difference between the recorded and the delivered version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Status {
        from: EventStatus,
        to: EventStatus,
    },
    Start {
        from: Option<String>,
        to: Option<String>,
    },
    End {
        from: Option<String>,
        to: Option<String>,
    },
    Description,
    EntitiesAdded(Vec<String>),
    EntitiesRemoved(Vec<String>),
    EntityStatus {
        entity: String,
        from: Option<String>,
        to: Option<String>,
    },
    EntityCount {
        from: usize,
        to: usize,
    },
}

/// How a delivered event relates to the version on the issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The issue already shows this version (a redelivery).
    Same,
    /// The delivered version is older than the issue's (an out-of-order delivery).
    Stale,
    /// Another page of the version on the issue: entities to merge into the body, no comment.
    MorePages { state: IssueState },
    /// A later version: comment with `changes`, then record `state`.
    Changed {
        from_version: String,
        changes: Vec<Change>,
        state: IssueState,
    },
}

/// Adds what one page (or one account's copy) of the version on the issue brings to
/// `state`: a union, so merging the same delivery twice changes nothing, and merging in any
/// order gives the same state.
pub fn merge_delivery(state: &mut IssueState, event: &HealthEvent) {
    merge_entities(state, event);
    if let Some((page, total)) = event.page {
        if !state.pages.contains(&page) {
            state.pages.push(page);
            state.pages.sort_unstable();
        }
        state.tp = Some(state.tp.unwrap_or(0).max(total));
    }
    if !state.accounts.is_empty() {
        state.merge_account(event);
    }
}

/// Unions two states of the same version (two issues created at once for the pages of one
/// event): entities, pages and accounts of both.
pub fn union_states(into: &mut IssueState, other: &IssueState) {
    for EntityState(value, status) in &other.entities {
        match into.entities.iter_mut().find(|e| &e.0 == value) {
            Some(existing) => {
                if existing.1.is_none() {
                    existing.1 = status.clone();
                }
            }
            None => into
                .entities
                .push(EntityState(value.clone(), status.clone())),
        }
    }
    into.more = into.more.max(other.more);
    for p in &other.pages {
        if !into.pages.contains(p) {
            into.pages.push(*p);
        }
    }
    into.pages.sort_unstable();
    into.tp = into.tp.max(other.tp);
    for a in &other.accounts {
        if !into.accounts.contains(a) {
            into.accounts.push(a.clone());
        }
    }
    into.accounts.sort();
    into.org |= other.org;
    into.cap();
}

/// Compares the recorded `old` state with `event`, keyed as `grouping` says.
pub fn compare(old: &IssueState, event: &HealthEvent, grouping: OrgIssues) -> Comparison {
    let old_version = old.version();
    if old_version.is_some_and(|v| event.last_updated < v) {
        return Comparison::Stale;
    }
    let same_version = old_version == Some(event.last_updated);
    let grouped = grouping == OrgIssues::PerEvent;
    if same_version && (event.page.is_some() || grouped) {
        // Another page, or another account's copy, of the version on the issue.
        let mut state = old.clone();
        if grouped && state.accounts.is_empty() {
            state.merge_account(event);
        }
        merge_delivery(&mut state, event);
        if &state == old {
            return Comparison::Same;
        }
        return Comparison::MorePages { state };
    }

    let mut state = IssueState::from_event(event, grouping);
    if event.page.is_some() || grouped {
        // One page (or one account) of a new version: what earlier pages and accounts
        // listed still applies until AWS says otherwise, so merge instead of replacing.
        state.entities = old.entities.clone();
        state.more = old.more;
        if grouped {
            let mine = std::mem::take(&mut state.accounts);
            state.accounts = old.accounts.clone();
            for a in mine {
                if !state.accounts.contains(&a) {
                    state.accounts.push(a);
                }
            }
            state.accounts.sort();
            state.org |= old.org;
        }
        merge_entities(&mut state, event);
    }
    let changes = changes(old, &state, event.page.is_none() && !grouped);
    if same_version && changes.is_empty() {
        return Comparison::Same;
    }
    Comparison::Changed {
        from_version: old.v.clone(),
        changes,
        state,
    }
}

fn merge_entities(state: &mut IssueState, event: &HealthEvent) {
    for entity in &event.entities {
        match state.entities.iter_mut().find(|e| e.0 == entity.value) {
            Some(existing) => existing.1 = entity.status.clone(),
            None => state
                .entities
                .push(EntityState(entity.value.clone(), entity.status.clone())),
        }
    }
    state.cap();
}

fn changes(old: &IssueState, new: &IssueState, complete_list: bool) -> Vec<Change> {
    let mut out = Vec::new();
    if old.status != new.status {
        out.push(Change::Status {
            from: old.status.clone(),
            to: new.status.clone(),
        });
    }
    if old.start != new.start {
        out.push(Change::Start {
            from: old.start.clone(),
            to: new.start.clone(),
        });
    }
    if old.end != new.end {
        out.push(Change::End {
            from: old.end.clone(),
            to: new.end.clone(),
        });
    }
    if old.desc != new.desc {
        out.push(Change::Description);
    }
    let before: BTreeMap<&str, &Option<String>> =
        old.entities.iter().map(|e| (e.0.as_str(), &e.1)).collect();
    let after: BTreeMap<&str, &Option<String>> =
        new.entities.iter().map(|e| (e.0.as_str(), &e.1)).collect();
    let added: Vec<String> = after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    if !added.is_empty() {
        out.push(Change::EntitiesAdded(added));
    }
    let counted_only = old.more > 0 || new.more > 0;
    if complete_list && !counted_only {
        let removed: Vec<String> = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| k.to_string())
            .collect();
        if !removed.is_empty() {
            out.push(Change::EntitiesRemoved(removed));
        }
    }
    for (entity, to) in &after {
        if let Some(from) = before.get(entity)
            && from != to
        {
            out.push(Change::EntityStatus {
                entity: entity.to_string(),
                from: (*from).clone(),
                to: (*to).clone(),
            });
        }
    }
    if counted_only && old.entity_count() != new.entity_count() {
        out.push(Change::EntityCount {
            from: old.entity_count(),
            to: new.entity_count(),
        });
    }
    out
}

fn show_time(t: &Option<String>) -> String {
    t.as_deref()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(human_time)
        .unwrap_or_else(|| "—".into())
}

fn entity_list(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(MAX_LISTED)
        .map(|e| format!("`{}`", e.replace('`', "")))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_LISTED {
        let _ = write!(text, " …and {} more", items.len() - MAX_LISTED);
    }
    text
}

/// Kind of the hidden marker that starts every update comment: `<!-- opsbot:health-update
/// {"v":"<lastUpdatedTime>"} -->`. A retried invocation finds it and does not post again.
pub const COMMENT_MARKER_KIND: &str = "health-update";

/// What the comment marker records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommentMarker {
    /// The version (`lastUpdatedTime`, RFC 3339) the comment announces.
    pub v: String,
}

/// The version an update comment announces, when `body` is one of opsbot's.
pub fn comment_version(body: &str) -> Option<String> {
    opsbot_core::github::marker::find::<CommentMarker>(body, COMMENT_MARKER_KIND).map(|m| m.v)
}

/// Status changes of single entities listed one per line; the rest are counted.
const MAX_STATUS_LINES: usize = 50;

/// The comment posted for a later version: what changed, and the new description when it
/// changed. Starts with a hidden `opsbot:health-update` marker naming the version, and
/// always fits GitHub's 65,536 characters.
pub fn render_comment(event: &HealthEvent, from_version: &str, changes: &[Change]) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "{}",
        opsbot_core::github::marker::render(
            COMMENT_MARKER_KIND,
            &CommentMarker {
                v: rfc3339(event.last_updated)
            }
        )
    );
    let verb = match changes.iter().find_map(|ch| match ch {
        Change::Status { from, to } => Some((from, to)),
        _ => None,
    }) {
        Some((_, EventStatus::Closed)) => "closed this event; closing the issue",
        Some((EventStatus::Closed, _)) => "reopened this event; reopening the issue",
        _ => "updated this event",
    };
    let _ = writeln!(
        c,
        "**AWS Health {verb}.** Last updated {} (was {}).\n",
        human_time(event.last_updated),
        show_time(&Some(from_version.to_string()))
    );
    if changes.is_empty() {
        c.push_str("- Only the last-updated time changed.\n");
    }
    let status_changes = changes
        .iter()
        .filter(|ch| matches!(ch, Change::EntityStatus { .. }))
        .count();
    let mut status_lines = 0usize;
    for change in changes {
        if matches!(change, Change::EntityStatus { .. }) {
            status_lines += 1;
            if status_lines > MAX_STATUS_LINES {
                continue;
            }
        }
        let line = match change {
            Change::Status { from, to } => format!("- Status: `{from}` → `{to}`"),
            Change::Start { from, to } => {
                format!("- Start: {} → {}", show_time(from), show_time(to))
            }
            Change::End { from, to } => format!("- End: {} → {}", show_time(from), show_time(to)),
            Change::Description => "- Description updated (latest text below).".into(),
            Change::EntitiesAdded(items) => format!(
                "- Affected entities added ({}): {}",
                items.len(),
                entity_list(items)
            ),
            Change::EntitiesRemoved(items) => format!(
                "- No longer listed as affected ({}): {}",
                items.len(),
                entity_list(items)
            ),
            Change::EntityStatus { entity, from, to } => format!(
                "- `{}`: {} → {}",
                entity.replace('`', ""),
                from.as_deref().unwrap_or("—"),
                to.as_deref().unwrap_or("—")
            ),
            Change::EntityCount { from, to } => {
                format!("- Affected entities: {from} → {to}")
            }
        };
        let (line, _) = cut_chars(&line, 2_000);
        let _ = writeln!(c, "{line}");
    }
    if status_changes > MAX_STATUS_LINES {
        let _ = writeln!(
            c,
            "- …and {} more status changes of affected entities (see the issue body).",
            status_changes - MAX_STATUS_LINES
        );
    }
    if changes.contains(&Change::Description) {
        let text = escape_text(event.description.trim());
        let room = BODY_BUDGET.saturating_sub(chars(&c) + 600);
        let (shown, left) = cut_chars(&text, room);
        let _ = write!(
            c,
            "\n<details><summary>Latest description</summary>\n\n{shown}"
        );
        if left > 0 {
            let _ = write!(
                c,
                "\n\n_…and {left} more characters: the full text is in the AWS Health \
                 Dashboard ([link]({}))._",
                console_link(event)
            );
        }
        c.push_str("\n\n</details>\n");
    }
    c
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::test_support::fixture;

    #[test]
    fn redelivery_is_same_and_older_is_stale() {
        let first = fixture("ec2_instance_retirement");
        let state = IssueState::from_event(&first, OrgIssues::PerAccount);
        assert_eq!(
            compare(&state, &first, OrgIssues::PerAccount),
            Comparison::Same
        );
        let update = fixture("ec2_instance_retirement_update");
        let newer = IssueState::from_event(&update, OrgIssues::PerAccount);
        assert_eq!(
            compare(&newer, &first, OrgIssues::PerAccount),
            Comparison::Stale
        );
    }

    #[test]
    fn update_lists_every_change() {
        let old =
            IssueState::from_event(&fixture("ec2_instance_retirement"), OrgIssues::PerAccount);
        let update = fixture("ec2_instance_retirement_update");
        let Comparison::Changed {
            changes,
            state,
            from_version,
        } = compare(&old, &update, OrgIssues::PerAccount)
        else {
            panic!("expected a change")
        };
        assert_eq!(
            state,
            IssueState::from_event(&update, OrgIssues::PerAccount)
        );
        assert_eq!(
            changes,
            vec![
                Change::Status {
                    from: EventStatus::Upcoming,
                    to: EventStatus::Open
                },
                Change::Description,
                Change::EntitiesAdded(vec!["i-07c6b5a4938271605".into()]),
                Change::EntitiesRemoved(vec!["i-0f9e8d7c6b5a49382".into()]),
                Change::EntityStatus {
                    entity: "i-0a1b2c3d4e5f60718".into(),
                    from: None,
                    to: Some("IMPAIRED".into())
                },
            ]
        );
        insta::assert_snapshot!(render_comment(&update, &from_version, &changes));
    }

    #[test]
    fn close_and_reopen_comments() {
        let open = IssueState::from_event(
            &fixture("ec2_instance_retirement_update"),
            OrgIssues::PerAccount,
        );
        let closed_event = fixture("ec2_instance_retirement_closed");
        let Comparison::Changed {
            changes,
            from_version,
            state,
        } = compare(&open, &closed_event, OrgIssues::PerAccount)
        else {
            panic!()
        };
        let text = render_comment(&closed_event, &from_version, &changes);
        assert!(text.contains("AWS Health closed this event; closing the issue."));
        assert!(text.contains("- Status: `open` → `closed`"));
        assert!(text.contains("- End: — → 2025-03-17 10:30:00 UTC"));
        let reopened = fixture("ec2_instance_retirement_reopened");
        let Comparison::Changed {
            changes,
            from_version,
            ..
        } = compare(&state, &reopened, OrgIssues::PerAccount)
        else {
            panic!()
        };
        let text = render_comment(&reopened, &from_version, &changes);
        assert!(
            text.contains("reopened this event; reopening the issue"),
            "{text}"
        );
    }

    #[test]
    fn only_last_updated_changed_still_comments() {
        let event = fixture("rds_maintenance");
        let old = IssueState::from_event(&event, OrgIssues::PerAccount);
        let mut later = event.clone();
        later.last_updated += time::Duration::hours(1);
        let Comparison::Changed { changes, .. } = compare(&old, &later, OrgIssues::PerAccount)
        else {
            panic!()
        };
        assert!(changes.is_empty());
        assert!(render_comment(&later, &old.v, &changes).contains("Only the last-updated time"));
    }

    #[test]
    fn pages_merge_silently_and_redelivered_pages_are_same() {
        let mut page1 = fixture("rds_maintenance");
        page1.page = Some((1, 2));
        let state = IssueState::from_event(&page1, OrgIssues::PerAccount);
        assert_eq!(state.pages, vec![1]);
        let mut page2 = page1.clone();
        page2.page = Some((2, 2));
        page2.entities[0].value = "orders-staging".into();
        let Comparison::MorePages { state: merged } =
            compare(&state, &page2, OrgIssues::PerAccount)
        else {
            panic!()
        };
        assert_eq!(merged.entities.len(), 4);
        assert_eq!(merged.pages, vec![1, 2]);
        assert_eq!(
            compare(&merged, &page2, OrgIssues::PerAccount),
            Comparison::Same
        );
        assert_eq!(
            compare(&merged, &page1, OrgIssues::PerAccount),
            Comparison::Same
        );

        // Page 1 of a later version does not report page 2's entities as removed.
        let mut next = page1.clone();
        next.last_updated += time::Duration::hours(1);
        next.entities.truncate(1);
        let Comparison::Changed { changes, state, .. } =
            compare(&merged, &next, OrgIssues::PerAccount)
        else {
            panic!()
        };
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(state.entities.len(), 4);
        assert_eq!(state.pages, vec![1]);
    }
}
