//! Pure planning: given an event, its target and the issues found under its key label, decide
//! which GitHub actions bring the issue up to date.
//!
//! Invariants:
//! - the *primary* issue of a key is the lowest-numbered issue whose marker carries that key
//!   (open or closed); every other one is a duplicate and is closed when open;
//! - a version already recorded, or an older one, changes nothing (redeliveries are no-ops);
//! - a later version posts exactly one comment and rewrites the body; `closed` closes the
//!   issue, a closed → open/upcoming transition reopens it;
//! - the entities (pages, accounts) of one version are a union over every issue and page
//!   log of the key: converging never picks one copy over another.
//!
//! The key is [`crate::event::issue_key`] (through [`Target::key`]): the one key function.

use serde::Serialize;

use crate::diff::{Comparison, compare, render_comment, union_states};
use crate::event::HealthEvent;
use crate::render::{IssueDraft, IssueState, render_body, render_issue, render_page_log};
use crate::route::Target;

/// Whether a GitHub issue is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueOpenState {
    Open,
    Closed,
}

/// An issue found under the event's key label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingIssue {
    pub number: u64,
    pub state: IssueOpenState,
    pub title: String,
    pub body: String,
}

impl ExistingIssue {
    /// The marker state, when the body still carries one.
    pub fn marker(&self) -> Option<IssueState> {
        IssueState::from_body(&self.body)
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum IssueAction {
    /// Open an issue; `then_close` when the event was already closed on first sight (it is
    /// still recorded, as a closed issue).
    Create {
        draft: IssueDraft,
        then_close: bool,
    },
    /// Post a comment, unless one with the same marker is there already (`version`: the
    /// update comment of that version; `None`: a comment with the same text).
    Comment {
        number: u64,
        body: String,
        version: Option<String>,
    },
    /// Append what this page (or account) brings to the issue's page log, a comment that
    /// concurrent writers cannot overwrite; the body is then rebuilt from the log.
    LogDelivery {
        number: u64,
        body: String,
    },
    UpdateBody {
        number: u64,
        body: String,
    },
    Close {
        number: u64,
    },
    Reopen {
        number: u64,
    },
    /// Close an extra issue for the same key, pointing at the primary one.
    CloseDuplicate {
        number: u64,
        primary: u64,
    },
    Noop {
        reason: String,
    },
}

/// The plan for one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuePlan {
    pub key: String,
    pub repo: String,
    /// The issue the event lives in, when one exists already.
    pub primary: Option<u64>,
    pub actions: Vec<IssueAction>,
    /// Rebuild the body from every copy and page log of this version after acting, until
    /// it holds them all (paged events and per-event grouping).
    pub settle: bool,
}

impl IssuePlan {
    /// True when the plan changes nothing on GitHub.
    pub fn is_noop(&self) -> bool {
        self.actions
            .iter()
            .all(|a| matches!(a, IssueAction::Noop { .. }))
    }

    /// A one-word summary for logs: created, updated, closed, reopened, unchanged.
    pub fn summary(&self) -> &'static str {
        let has = |f: fn(&IssueAction) -> bool| self.actions.iter().any(f);
        if has(|a| matches!(a, IssueAction::Create { .. })) {
            "created"
        } else if has(|a| matches!(a, IssueAction::Close { .. })) {
            "closed"
        } else if has(|a| matches!(a, IssueAction::Reopen { .. })) {
            "reopened"
        } else if has(|a| {
            matches!(
                a,
                IssueAction::Comment { .. } | IssueAction::UpdateBody { .. }
            )
        }) {
            "updated"
        } else if has(|a| matches!(a, IssueAction::CloseDuplicate { .. })) {
            "deduplicated"
        } else {
            "unchanged"
        }
    }
}

/// Issues that belong to `key` (the label is short; the marker holds the full key), sorted by
/// number. Issues with the label but no readable marker count as the key's too: the label is
/// deterministic and only opsbot sets it.
pub fn issues_for_key<'a>(key: &str, issues: &'a [ExistingIssue]) -> Vec<&'a ExistingIssue> {
    let mut mine: Vec<&ExistingIssue> = issues
        .iter()
        .filter(|i| i.marker().is_none_or(|m| m.key == key))
        .collect();
    mine.sort_by_key(|i| i.number);
    mine
}

/// Closes every open issue of `key` but the lowest-numbered one.
pub fn converge(key: &str, issues: &[ExistingIssue]) -> Vec<IssueAction> {
    let mine = issues_for_key(key, issues);
    let Some((primary, rest)) = mine.split_first() else {
        return Vec::new();
    };
    rest.iter()
        .filter(|i| i.state == IssueOpenState::Open)
        .map(|i| IssueAction::CloseDuplicate {
            number: i.number,
            primary: primary.number,
        })
        .collect()
}

/// The state of `primary` united with the other issues of the key that record the same
/// version (copies created at once for the pages of one event).
pub fn united_state(key: &str, primary: &IssueState, others: &[&ExistingIssue]) -> IssueState {
    let mut united = primary.clone();
    for other in others {
        if let Some(m) = other.marker()
            && m.key == key
            && m.v == primary.v
        {
            union_states(&mut united, &m);
        }
    }
    united
}

/// Decides what to do for `event` given the issues listed under its key label.
pub fn plan(event: &HealthEvent, target: &Target, existing: &[ExistingIssue]) -> IssuePlan {
    let key = target.key(event);
    let grouping = target.grouping;
    let mut actions = converge(&key, existing);
    let mine = issues_for_key(&key, existing);
    let merging = event.page.is_some() || grouping == crate::event::OrgIssues::PerEvent;
    let mut out = IssuePlan {
        key: key.clone(),
        repo: target.repo.clone(),
        primary: mine.first().map(|i| i.number),
        actions: Vec::new(),
        settle: false,
    };

    let Some(primary) = mine.first() else {
        let state = IssueState::from_event(event, grouping);
        out.actions.push(IssueAction::Create {
            draft: render_issue(event, &state, target),
            then_close: event.status.is_closed(),
        });
        out.settle = merging;
        return out;
    };
    let number = primary.number;
    let is_open = primary.state == IssueOpenState::Open;

    match primary.marker() {
        None => {
            // The marker was edited away: restore it from this delivery, without a comment.
            let state = IssueState::from_event(event, grouping);
            actions.push(IssueAction::UpdateBody {
                number,
                body: render_body(event, &state),
            });
        }
        Some(recorded) => {
            let old = united_state(&key, &recorded, &mine[1..]);
            match compare(&old, event, grouping) {
                Comparison::Same if old != recorded => {
                    // Copies of this version hold more than the primary: converge unites them.
                    actions.push(IssueAction::UpdateBody {
                        number,
                        body: render_body(event, &old),
                    });
                    out.settle = true;
                }
                Comparison::Same => actions.push(IssueAction::Noop {
                    reason: format!("#{number} already shows version {}", old.v),
                }),
                Comparison::Stale => actions.push(IssueAction::Noop {
                    reason: format!(
                        "delivered version is older than version {} on #{number}",
                        old.v
                    ),
                }),
                Comparison::MorePages { state } => {
                    actions.push(IssueAction::LogDelivery {
                        number,
                        body: render_page_log(event, &IssueState::from_event(event, grouping)),
                    });
                    actions.push(IssueAction::UpdateBody {
                        number,
                        body: render_body(event, &state),
                    });
                    out.settle = true;
                }
                Comparison::Changed {
                    from_version,
                    changes,
                    state,
                } => {
                    actions.push(IssueAction::Comment {
                        number,
                        body: render_comment(event, &from_version, &changes),
                        version: Some(state.v.clone()),
                    });
                    actions.push(IssueAction::UpdateBody {
                        number,
                        body: render_body(event, &state),
                    });
                    if event.status.is_closed() && is_open {
                        actions.push(IssueAction::Close { number });
                    } else if !event.status.is_closed() && old.status.is_closed() && !is_open {
                        actions.push(IssueAction::Reopen { number });
                    }
                }
            }
        }
    }
    out.actions = actions;
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::event::OrgIssues;
    use crate::render::key_label;
    use crate::test_support::{fixture, target};

    fn issue_for(event: &HealthEvent, number: u64, state: IssueOpenState) -> ExistingIssue {
        let draft = render_issue(
            event,
            &IssueState::from_event(event, OrgIssues::PerAccount),
            &target(),
        );
        ExistingIssue {
            number,
            state,
            title: draft.title,
            body: draft.body,
        }
    }

    #[test]
    fn new_event_creates_one_issue_with_the_key_label() {
        let event = fixture("ec2_instance_retirement");
        let plan = plan(&event, &target(), &[]);
        assert_eq!(plan.summary(), "created");
        assert_eq!(plan.actions.len(), 1);
        let IssueAction::Create { draft, then_close } = &plan.actions[0] else {
            panic!()
        };
        assert!(draft.labels.contains(&key_label(&target().key(&event))));
        assert!(!then_close);
    }

    #[test]
    fn redelivery_is_a_noop() {
        let event = fixture("ec2_instance_retirement");
        let existing = [issue_for(&event, 7, IssueOpenState::Open)];
        let plan = plan(&event, &target(), &existing);
        assert!(plan.is_noop(), "{plan:?}");
        assert_eq!(plan.primary, Some(7));
    }

    #[test]
    fn update_comments_and_rewrites_body_close_closes_reopen_reopens() {
        let first = fixture("ec2_instance_retirement");
        let update = fixture("ec2_instance_retirement_update");
        let existing = [issue_for(&first, 7, IssueOpenState::Open)];
        let p = plan(&update, &target(), &existing);
        assert_eq!(p.summary(), "updated");
        assert!(matches!(
            p.actions[0],
            IssueAction::Comment { number: 7, .. }
        ));
        assert!(matches!(
            p.actions[1],
            IssueAction::UpdateBody { number: 7, .. }
        ));
        assert_eq!(p.actions.len(), 2);

        let existing = [issue_for(&update, 7, IssueOpenState::Open)];
        let closed = fixture("ec2_instance_retirement_closed");
        let p = plan(&closed, &target(), &existing);
        assert_eq!(p.summary(), "closed");
        assert_eq!(p.actions.len(), 3);
        assert_eq!(p.actions[2], IssueAction::Close { number: 7 });

        let existing = [issue_for(&closed, 7, IssueOpenState::Closed)];
        let reopened = fixture("ec2_instance_retirement_reopened");
        let p = plan(&reopened, &target(), &existing);
        assert_eq!(p.summary(), "reopened");
        assert_eq!(p.actions[2], IssueAction::Reopen { number: 7 });

        // A human closed the issue while the event is still open: comment, don't reopen.
        let existing = [issue_for(&first, 7, IssueOpenState::Closed)];
        let p = plan(&update, &target(), &existing);
        assert_eq!(p.actions.len(), 2);
    }

    #[test]
    fn duplicates_converge_on_the_lowest_number() {
        let event = fixture("rds_maintenance");
        let other = fixture("ec2_operational_issue");
        let existing = [
            issue_for(&event, 12, IssueOpenState::Open),
            issue_for(&event, 9, IssueOpenState::Open),
            issue_for(&event, 15, IssueOpenState::Closed),
            // Same short label, different full key: not ours.
            issue_for(&other, 3, IssueOpenState::Open),
        ];
        let actions = converge(&target().key(&event), &existing);
        assert_eq!(
            actions,
            vec![IssueAction::CloseDuplicate {
                number: 12,
                primary: 9
            }]
        );
        let p = plan(&event, &target(), &existing);
        assert_eq!(p.primary, Some(9));
        assert_eq!(p.actions.len(), 2);
        assert!(matches!(p.actions[1], IssueAction::Noop { .. }));
    }

    #[test]
    fn closed_on_first_sight_is_created_closed_and_lost_marker_is_restored() {
        let closed = fixture("ec2_instance_retirement_closed");
        let p = plan(&closed, &target(), &[]);
        assert_eq!(p.actions.len(), 1);
        assert!(matches!(
            p.actions[0],
            IssueAction::Create {
                then_close: true,
                ..
            }
        ));

        let event = fixture("rds_maintenance");
        let existing = [ExistingIssue {
            number: 4,
            state: IssueOpenState::Open,
            title: "edited".into(),
            body: "someone rewrote this".into(),
        }];
        let p = plan(&event, &target(), &existing);
        assert!(matches!(
            p.actions[0],
            IssueAction::UpdateBody { number: 4, .. }
        ));
    }
}
