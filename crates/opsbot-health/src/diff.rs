//! Pure comparison of the state recorded on an issue with a newly delivered event version, and
//! the comment that says what changed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::event::{EventStatus, HealthEvent};
use crate::render::{EntityState, IssueState, escape_text, human_time, rfc3339};

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

/// Compares the recorded `old` state with `event`.
pub fn compare(old: &IssueState, event: &HealthEvent) -> Comparison {
    let old_version = old.version();
    if old_version.is_some_and(|v| event.last_updated < v) {
        return Comparison::Stale;
    }
    let same_version = old_version == Some(event.last_updated);
    if let (true, Some((page, _))) = (same_version, event.page) {
        if old.pages.contains(&page) {
            return Comparison::Same;
        }
        let mut state = old.clone();
        merge_entities(&mut state, event);
        state.pages.push(page);
        state.pages.sort_unstable();
        return Comparison::MorePages { state };
    }

    let mut state = IssueState::from_event(event);
    if event.page.is_some() {
        // One page of a new version: earlier pages' entities still apply until AWS says
        // otherwise, so merge instead of replacing.
        state.entities = old.entities.clone();
        state.more = old.more;
        merge_entities(&mut state, event);
    }
    let changes = changes(old, &state, event.page.is_none());
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

/// The comment posted for a later version: what changed, and the new description when it
/// changed. Starts with a hidden `opsbot:health-update` marker naming the version.
pub fn render_comment(event: &HealthEvent, from_version: &str, changes: &[Change]) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "<!-- opsbot:health-update {{\"v\":\"{}\"}} -->",
        rfc3339(event.last_updated)
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
    for change in changes {
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
        let _ = writeln!(c, "{line}");
    }
    if changes.contains(&Change::Description) {
        let _ = write!(
            c,
            "\n<details><summary>Latest description</summary>\n\n{}\n\n</details>\n",
            escape_text(event.description.trim())
        );
    }
    c
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::event::parse_input_bytes;

    fn fixture(name: &str) -> HealthEvent {
        let path = format!(
            "{}/../../tests/fixtures/health/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        parse_input_bytes(&std::fs::read(path).unwrap())
            .events
            .remove(0)
    }

    #[test]
    fn redelivery_is_same_and_older_is_stale() {
        let first = fixture("ec2_instance_retirement");
        let state = IssueState::from_event(&first);
        assert_eq!(compare(&state, &first), Comparison::Same);
        let update = fixture("ec2_instance_retirement_update");
        let newer = IssueState::from_event(&update);
        assert_eq!(compare(&newer, &first), Comparison::Stale);
    }

    #[test]
    fn update_lists_every_change() {
        let old = IssueState::from_event(&fixture("ec2_instance_retirement"));
        let update = fixture("ec2_instance_retirement_update");
        let Comparison::Changed {
            changes,
            state,
            from_version,
        } = compare(&old, &update)
        else {
            panic!("expected a change")
        };
        assert_eq!(state, IssueState::from_event(&update));
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
        let open = IssueState::from_event(&fixture("ec2_instance_retirement_update"));
        let closed_event = fixture("ec2_instance_retirement_closed");
        let Comparison::Changed {
            changes,
            from_version,
            state,
        } = compare(&open, &closed_event)
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
        } = compare(&state, &reopened)
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
        let old = IssueState::from_event(&event);
        let mut later = event.clone();
        later.last_updated += time::Duration::hours(1);
        let Comparison::Changed { changes, .. } = compare(&old, &later) else {
            panic!()
        };
        assert!(changes.is_empty());
        assert!(render_comment(&later, &old.v, &changes).contains("Only the last-updated time"));
    }

    #[test]
    fn pages_merge_silently_and_redelivered_pages_are_same() {
        let mut page1 = fixture("rds_maintenance");
        page1.page = Some((1, 2));
        let state = IssueState::from_event(&page1);
        assert_eq!(state.pages, vec![1]);
        let mut page2 = page1.clone();
        page2.page = Some((2, 2));
        page2.entities[0].value = "orders-staging".into();
        let Comparison::MorePages { state: merged } = compare(&state, &page2) else {
            panic!()
        };
        assert_eq!(merged.entities.len(), 4);
        assert_eq!(merged.pages, vec![1, 2]);
        assert_eq!(compare(&merged, &page2), Comparison::Same);
        assert_eq!(compare(&merged, &page1), Comparison::Same);

        // Page 1 of a later version does not report page 2's entities as removed.
        let mut next = page1.clone();
        next.last_updated += time::Duration::hours(1);
        next.entities.truncate(1);
        let Comparison::Changed { changes, state, .. } = compare(&merged, &next) else {
            panic!()
        };
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(state.entities.len(), 4);
        assert_eq!(state.pages, vec![1]);
    }
}
