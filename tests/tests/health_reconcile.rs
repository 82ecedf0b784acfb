//! `reconcile` end to end: aws-sdk-health against the fake AWS Health API (JSON 1.1 over
//! HTTP on 127.0.0.1, paginated), then filing through the GitHub adapter into the fake
//! GitHub. Also checks that an issue filed from an EventBridge delivery is recognised by
//! reconcile (same key, same version → nothing to do).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use opsbot_core::github::{Credentials, GitHub, GitHubSettings, RepoRef, RetryPolicy};
use opsbot_health::github::GitHubTracker;
use opsbot_health::reconcile::{ReconcileQuery, fetch_events};
use opsbot_health::service::EventResult;
use opsbot_health::{HealthConfig, HealthService, NoNotifier};
use opsbot_tests::fake_github::{FakeGitHub, TEST_TOKEN};
use opsbot_tests::fake_health::{FakeEntity, FakeHealth, FakeHealthEvent};
use secrecy::SecretString;
use time::OffsetDateTime;

const REPO: &str = "acme/ops";
/// 2025-07-10T00:00:00Z: "now" for every query here.
const NOW: i64 = 1_752_105_600;
const DAY: i64 = 86_400;

fn health_client(fake: &FakeHealth) -> aws_sdk_health::Client {
    let config = aws_sdk_health::Config::builder()
        .behavior_version(aws_sdk_health::config::BehaviorVersion::latest())
        .region(aws_sdk_health::config::Region::new("us-east-1"))
        .endpoint_url(fake.url())
        .credentials_provider(aws_sdk_health::config::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_health::Client::from_conf(config)
}

async fn service(github: &FakeGitHub) -> HealthService<GitHubTracker, NoNotifier> {
    let settings = GitHubSettings {
        api_url: github.url(),
        repository: Some(RepoRef::new("acme", "ops")),
        credentials: Credentials::Token(SecretString::from(TEST_TOKEN)),
        retry: RetryPolicy::none(),
    };
    HealthService {
        tracker: GitHubTracker::new(GitHub::connect(&settings).await.unwrap()),
        notifier: NoNotifier,
        config: HealthConfig::default(),
        default_repo: Some(REPO.into()),
    }
}

fn query(organization: bool) -> ReconcileQuery {
    ReconcileQuery {
        days: 14,
        organization,
        account: Some("123456789012".into()),
        now: OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
    }
}

fn event(
    arn_suffix: &str,
    service: &str,
    code: &str,
    status: &str,
    updated: i64,
) -> FakeHealthEvent {
    FakeHealthEvent {
        arn: format!("arn:aws:health:us-east-1::event/{service}/{code}/{code}_{arn_suffix}"),
        service: service.into(),
        event_type_code: code.into(),
        category: "scheduledChange".into(),
        scope: "ACCOUNT_SPECIFIC".into(),
        region: "us-east-1".into(),
        start: Some(NOW + 7 * DAY),
        end: None,
        last_updated: updated,
        status: status.into(),
        description: format!("{code} for {arn_suffix}"),
        metadata: BTreeMap::new(),
        accounts: vec![],
        entities: vec![],
    }
}

fn entity(value: &str) -> FakeEntity {
    FakeEntity {
        value: value.into(),
        account: Some("123456789012".into()),
        status: Some("PENDING".into()),
        tags: BTreeMap::from([("team".to_string(), "payments".to_string())]),
    }
}

async fn reconcile(
    svc: &HealthService<GitHubTracker, NoNotifier>,
    fake: &FakeHealth,
    organization: bool,
) -> Vec<(String, &'static str)> {
    let events = fetch_events(&health_client(fake), &query(organization))
        .await
        .unwrap();
    let mut out = Vec::new();
    for e in &events {
        match svc.handle_event(e).await {
            EventResult::Filed { outcome, .. } => out.push((e.event_type_code.clone(), outcome)),
            other => panic!("{other:?}"),
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn reconcile_files_missing_events_once_and_updates_changed_ones() {
    let health = FakeHealth::start().await;
    health.set_page_size(1); // every listing takes several pages
    let mut ec2 = event(
        "1",
        "EC2",
        "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
        "open",
        NOW - DAY,
    );
    ec2.entities = vec![entity("i-0aaa"), entity("i-0bbb")];
    health.add_event(ec2.clone());
    let mut rds = event(
        "2",
        "RDS",
        "AWS_RDS_MAINTENANCE_SCHEDULED",
        "upcoming",
        NOW - 2 * DAY,
    );
    rds.entities = vec![entity("orders-prod")];
    health.add_event(rds);
    // Not fetched: closed, and too old.
    health.add_event(event(
        "3",
        "EC2",
        "AWS_EC2_OPERATIONAL_ISSUE",
        "closed",
        NOW - DAY,
    ));
    health.add_event(event(
        "4",
        "S3",
        "AWS_S3_OPERATIONAL_NOTIFICATION",
        "open",
        NOW - 30 * DAY,
    ));

    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let svc = service(&github).await;

    let first = reconcile(&svc, &health, false).await;
    assert_eq!(
        first,
        [
            (
                "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED".to_string(),
                "created"
            ),
            ("AWS_RDS_MAINTENANCE_SCHEDULED".to_string(), "created"),
        ]
    );
    let issues = github.issues(REPO);
    assert_eq!(issues.len(), 2);
    let ec2_issue = issues.iter().find(|i| i.title.contains("EC2")).unwrap();
    assert!(ec2_issue.body.contains("`i-0bbb`"));
    assert!(ec2_issue.body.contains("| Account | 123456789012 |"));
    assert!(
        ec2_issue
            .body
            .contains("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED for 1")
    );
    assert!(ec2_issue.body.contains("`team=payments`"));
    assert!(ec2_issue.body.contains("| PENDING |"));

    // Pagination was used, and the detail/entity calls were made.
    let calls = health.calls();
    assert!(
        calls.iter().filter(|c| *c == "DescribeEvents").count() >= 2,
        "{calls:?}"
    );
    assert!(calls.contains(&"DescribeEventDetails".to_string()));
    assert!(calls.contains(&"DescribeAffectedEntities".to_string()));

    // Running again changes nothing.
    let second = reconcile(&svc, &health, false).await;
    assert!(second.iter().all(|(_, o)| *o == "unchanged"), "{second:?}");
    assert_eq!(github.issues(REPO).len(), 2);

    // The EC2 event moves on: one comment, body updated.
    ec2.last_updated = NOW - 3600;
    ec2.entities[0].status = Some("IMPAIRED".into());
    health.update_event(ec2);
    let third = reconcile(&svc, &health, false).await;
    assert!(third.contains(&(
        "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED".to_string(),
        "updated"
    )));
    let ec2_issue = github
        .issues(REPO)
        .into_iter()
        .find(|i| i.title.contains("EC2"))
        .unwrap();
    assert_eq!(ec2_issue.comments.len(), 1);
    assert!(ec2_issue.comments[0].contains("- `i-0aaa`: PENDING → IMPAIRED"));
}

#[tokio::test]
async fn organizational_reconcile_matches_eventbridge_deliveries() {
    // The org-view fixture as EventBridge delivers it…
    let fixture_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/health/org_instance_stop.json"
    );
    let delivered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_path).unwrap()).unwrap();
    let d = &delivered["detail"];
    let ts = |s: &serde_json::Value| {
        opsbot_health::event::parse_time(s.as_str().unwrap())
            .unwrap()
            .unix_timestamp()
    };
    // …and the same event as the Health API's organizational view reports it, affecting a
    // second account too.
    let org_event = FakeHealthEvent {
        arn: d["eventArn"].as_str().unwrap().into(),
        service: "EC2".into(),
        event_type_code: d["eventTypeCode"].as_str().unwrap().into(),
        category: "scheduledChange".into(),
        scope: "ACCOUNT_SPECIFIC".into(),
        region: "us-west-2".into(),
        start: Some(ts(&d["startTime"])),
        end: None,
        last_updated: ts(&d["lastUpdatedTime"]),
        status: "upcoming".into(),
        description: d["eventDescription"][0]["latestDescription"]
            .as_str()
            .unwrap()
            .into(),
        metadata: BTreeMap::new(),
        accounts: vec!["210987654321".into(), "333344445555".into()],
        entities: vec![
            FakeEntity {
                value: "i-0badc0ffee0ddf00d".into(),
                account: Some("210987654321".into()),
                status: None,
                tags: BTreeMap::from([("Name".to_string(), "batch-worker".to_string())]),
            },
            FakeEntity {
                value: "i-0333333333333333a".into(),
                account: Some("333344445555".into()),
                status: None,
                tags: BTreeMap::new(),
            },
        ],
    };
    let health = FakeHealth::start().await;
    health.add_event(org_event);
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let svc = service(&github).await;

    let report = svc.handle(&delivered).await;
    assert!(!report.failed(), "{report:?}");
    assert_eq!(github.issues(REPO).len(), 1);

    let outcomes = reconcile(&svc, &health, true).await;
    let mut o: Vec<&str> = outcomes.iter().map(|(_, o)| *o).collect();
    o.sort();
    assert_eq!(
        o,
        ["created", "unchanged"],
        "the delivered account is recognised"
    );
    let issues = github.issues(REPO);
    assert_eq!(issues.len(), 2);
    let second = issues
        .iter()
        .find(|i| i.title.contains("333344445555"))
        .unwrap();
    assert!(second.body.contains("`i-0333333333333333a`"));
    assert!(!second.body.contains("i-0badc0ffee0ddf00d"));
    let calls = health.calls();
    for op in [
        "DescribeEventsForOrganization",
        "DescribeAffectedAccountsForOrganization",
        "DescribeEventDetailsForOrganization",
        "DescribeAffectedEntitiesForOrganization",
    ] {
        assert!(calls.iter().any(|c| c == op), "{op} not called: {calls:?}");
    }
}

#[tokio::test]
async fn health_api_errors_are_reported_with_the_operation() {
    let health = FakeHealth::start().await;
    let config = aws_sdk_health::Config::builder()
        .behavior_version(aws_sdk_health::config::BehaviorVersion::latest())
        .region(aws_sdk_health::config::Region::new("us-east-1"))
        .endpoint_url(format!("{}/", health.url()))
        .credentials_provider(aws_sdk_health::config::Credentials::new(
            "AKID", "SECRET", None, None, "test",
        ))
        .build();
    let client = aws_sdk_health::Client::from_conf(config);
    health.set_page_size(1);
    health.add_event(event("1", "EC2", "AWS_EC2_X", "open", NOW - DAY));
    health.add_event(event("2", "EC2", "AWS_EC2_Y", "open", NOW - DAY));
    // Works with a valid client…
    assert_eq!(fetch_events(&client, &query(false)).await.unwrap().len(), 2);
    // …and a broken endpoint gives an error naming the call.
    let dead = aws_sdk_health::Config::builder()
        .behavior_version(aws_sdk_health::config::BehaviorVersion::latest())
        .region(aws_sdk_health::config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(aws_sdk_health::config::Credentials::new(
            "AKID", "SECRET", None, None, "test",
        ))
        .retry_config(aws_sdk_health::config::retry::RetryConfig::disabled())
        .build();
    let err = fetch_events(&aws_sdk_health::Client::from_conf(dead), &query(false))
        .await
        .unwrap_err();
    assert_eq!(err.operation, "DescribeEvents");
    assert!(
        err.to_string().starts_with("AWS Health DescribeEvents: "),
        "{err}"
    );
}
