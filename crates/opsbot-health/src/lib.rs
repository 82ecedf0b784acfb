//! opsbot-health: AWS Health events → GitHub issues. Pure logic (the event model and input
//! parser, rendering, diffing, planning and routing) is kept apart from the adapters that act
//! (GitHub through opsbot-core, SNS, the AWS Health API for `reconcile`).

pub mod apply;
pub mod diff;
pub mod event;
pub mod github;
pub mod plan;
pub mod reconcile;
pub mod render;
pub mod replay;
pub mod route;
pub mod service;
pub mod sns;
#[cfg(test)]
mod test_support;

pub use apply::{IssueTracker, MemoryTracker, file_event};
pub use event::{
    HealthEvent, InputError, OrgIssues, ParsedInput, issue_key, parse_input, parse_input_bytes,
};
pub use plan::{ExistingIssue, IssueAction, IssuePlan, plan};
pub use render::{IssueDraft, IssueState, key_label};
pub use route::{HealthConfig, RouteDecision, Target};
pub use service::{HealthService, InvocationReport, NoNotifier, Notifier};

/// A realistic event (EC2 instance retirement) for `opsbot health handle --dry-run` without
/// a file: what a newcomer runs first.
pub const SAMPLE_EVENT: &str = include_str!("../samples/ec2_instance_retirement.json");
