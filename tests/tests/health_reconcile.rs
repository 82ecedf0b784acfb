//! `reconcile` end to end: aws-sdk-health against the fake AWS Health API (Smithy RPC v2
//! CBOR over HTTP on 127.0.0.1, paginated), then filing through the GitHub adapter into the fake
//! GitHub. Also checks that an issue filed from an EventBridge delivery is recognised by
//! reconcile (same key, same version → nothing to do), that reconcile closes issues whose
//! close event was missed (in the window, and by ARN for older ones), never blanks a
//! description AWS could not return (`failedSet`), fails over from us-east-1 to us-east-2,
//! and reminds open scheduled changes once before they start.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use opsbot_core::github::{Credentials, GitHub, GitHubSettings, RepoRef, RetryPolicy};
use opsbot_health::github::GitHubTracker;
use opsbot_health::reconcile::{
    HealthApi, HealthEndpoint, ReconcileQuery, ReconcileReport, fetch_events, reconcile,
};
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
    regional_client(fake, "us-east-1")
}

/// A client for one regional endpoint (signing for `region`), retrying a little, fast.
fn regional_client(fake: &FakeHealth, region: &str) -> aws_sdk_health::Client {
    let config = aws_sdk_health::Config::builder()
        .behavior_version(aws_sdk_health::config::BehaviorVersion::latest())
        .region(aws_sdk_health::config::Region::new(region.to_string()))
        .retry_config(
            aws_sdk_health::config::retry::RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(std::time::Duration::from_millis(10)),
        )
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
    service_with(github, HealthConfig::default()).await
}

async fn service_with(
    github: &FakeGitHub,
    config: HealthConfig,
) -> HealthService<GitHubTracker, NoNotifier> {
    let settings = GitHubSettings {
        api_url: github.url(),
        repository: Some(RepoRef::new("acme", "ops")),
        credentials: Credentials::Token(SecretString::from(TEST_TOKEN)),
        retry: RetryPolicy::none(),
    };
    HealthService {
        tracker: GitHubTracker::new(GitHub::connect(&settings).await.unwrap()),
        notifier: NoNotifier,
        config,
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

async fn reconcile_pairs(
    svc: &HealthService<GitHubTracker, NoNotifier>,
    fake: &FakeHealth,
    organization: bool,
) -> Vec<(String, &'static str)> {
    let events = fetch_events(&health_client(fake), &query(organization))
        .await
        .unwrap()
        .events;
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
    // Closed within the window: recorded, as a closed issue. Too old: not fetched.
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

    let first = reconcile_pairs(&svc, &health, false).await;
    assert_eq!(
        first,
        [
            (
                "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED".to_string(),
                "created"
            ),
            ("AWS_EC2_OPERATIONAL_ISSUE".to_string(), "created"),
            ("AWS_RDS_MAINTENANCE_SCHEDULED".to_string(), "created"),
        ]
    );
    let issues = github.issues(REPO);
    assert_eq!(issues.len(), 3);
    assert!(
        issues
            .iter()
            .any(|i| i.title.to_lowercase().contains("operational") && i.state == "closed"),
        "{:?}",
        issues
            .iter()
            .map(|i| (&i.title, &i.state))
            .collect::<Vec<_>>()
    );
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
    let second = reconcile_pairs(&svc, &health, false).await;
    assert!(second.iter().all(|(_, o)| *o == "unchanged"), "{second:?}");
    assert_eq!(github.issues(REPO).len(), 3);

    // The EC2 event moves on: one comment, body updated.
    ec2.last_updated = NOW - 3600;
    ec2.entities[0].status = Some("IMPAIRED".into());
    health.update_event(ec2);
    let third = reconcile_pairs(&svc, &health, false).await;
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

    let outcomes = reconcile_pairs(&svc, &health, true).await;
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
    assert_eq!(
        fetch_events(&client, &query(false))
            .await
            .unwrap()
            .events
            .len(),
        2
    );
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

/// The fake answers as AWS Health does over Smithy RPC v2 CBOR: timestamps arrive as tag-1
/// epoch seconds, a modeled error as the SDK's typed error (`__type` names its shape), and a
/// request in another protocol (AWS JSON 1.1's `X-Amz-Target`) is turned away.
#[tokio::test]
async fn the_fake_speaks_rpc_v2_cbor() {
    use aws_sdk_health::error::ProvideErrorMetadata;
    let health = FakeHealth::start().await;
    let mut e = event("t", "EC2", "AWS_EC2_X", "open", NOW - DAY);
    e.end = Some(NOW + 8 * DAY);
    health.add_event(e.clone());
    let client = health_client(&health);

    let out = client.describe_events().send().await.unwrap();
    let got = &out.events()[0];
    assert_eq!(got.arn(), Some(e.arn.as_str()));
    assert_eq!(got.last_updated_time().map(|t| t.secs()), Some(NOW - DAY));
    assert_eq!(got.start_time().map(|t| t.secs()), e.start);
    assert_eq!(got.end_time().map(|t| t.secs()), e.end);

    let err = client
        .describe_events()
        .next_token("bogus")
        .send()
        .await
        .unwrap_err();
    let service = err.as_service_error().expect("a service error");
    assert!(service.is_invalid_pagination_token(), "{service:?}");
    assert_eq!(service.code(), Some("InvalidPaginationToken"));
    assert_eq!(service.message(), Some("invalid token bogus"));

    let http = reqwest::Client::new();
    let json = http
        .post(format!("{}/", health.url()))
        .header("x-amz-target", "AWSHealth_20160804.DescribeEvents")
        .header("content-type", "application/x-amz-json-1.1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 404);
    let unlabelled = http
        .post(format!(
            "{}/service/AWSHealth_20160804/operation/DescribeEvents",
            health.url()
        ))
        .header("content-type", "application/cbor")
        .body(vec![0xa0])
        .send()
        .await
        .unwrap();
    assert_eq!(unlabelled.status(), 400, "no Smithy-Protocol header");
    assert_eq!(unlabelled.headers()["smithy-protocol"], "rpc-v2-cbor");
    assert_eq!(health.calls(), ["DescribeEvents", "DescribeEvents"]);
}

fn api(fake: &FakeHealth) -> HealthApi {
    HealthApi::new(vec![HealthEndpoint {
        region: "us-east-1".into(),
        client: health_client(fake),
    }])
}

async fn run(
    svc: &HealthService<GitHubTracker, NoNotifier>,
    api: &HealthApi,
    q: &ReconcileQuery,
) -> ReconcileReport {
    let report = reconcile(svc, api, q).await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report
}

fn outcomes(report: &ReconcileReport) -> Vec<&'static str> {
    let mut o: Vec<&'static str> = report
        .events
        .iter()
        .map(|e| match e {
            EventResult::Filed { outcome, .. } => *outcome,
            other => panic!("{other:?}"),
        })
        .collect();
    o.sort();
    o
}

#[tokio::test]
async fn reconcile_closes_issues_whose_close_event_was_missed() {
    let health = FakeHealth::start().await;
    // Both events are open when first filed.
    let mut recent = event(
        "r",
        "EC2",
        "AWS_EC2_INSTANCE_STOP_SCHEDULED",
        "open",
        NOW - DAY,
    );
    recent.start = Some(NOW + 20 * DAY);
    let mut old = event(
        "o",
        "RDS",
        "AWS_RDS_MAINTENANCE_SCHEDULED",
        "open",
        NOW - 20 * DAY,
    );
    old.start = Some(NOW + 20 * DAY);
    health.add_event(recent.clone());
    health.add_event(old.clone());
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let svc = service(&github).await;
    let api = api(&health);

    // A first run 30 days wide files both.
    let wide = ReconcileQuery {
        days: 30,
        ..query(false)
    };
    let report = run(&svc, &api, &wide).await;
    assert_eq!(outcomes(&report), ["created", "created"]);

    // AWS closes both; the close deliveries never arrive. One closed within the window…
    recent.status = "closed".into();
    recent.last_updated = NOW - 3600;
    health.update_event(recent);
    // …one closed long ago, outside the 14-day window (still open on GitHub).
    old.status = "closed".into();
    old.last_updated = NOW - 19 * DAY;
    health.update_event(old);

    let report = run(&svc, &api, &query(false)).await;
    assert_eq!(outcomes(&report), ["closed"], "the window's close");
    assert_eq!(report.healed.len(), 1, "{:?}", report.healed);
    assert_eq!(report.healed[0].outcome, "closed");
    let issues = github.issues(REPO);
    assert_eq!(issues.len(), 2);
    for issue in &issues {
        assert_eq!(issue.state, "closed", "{}", issue.title);
        assert_eq!(issue.comments.len(), 1, "one comment says what changed");
        assert!(issue.body.contains("| Status | closed |"));
    }
    // The heal step asked for the old event by ARN, not by time window.
    let calls = health.calls();
    assert!(
        calls.iter().filter(|c| *c == "DescribeEvents").count() >= 2,
        "{calls:?}"
    );

    // Nothing left to heal: a further run changes nothing.
    let before = github.requests().len();
    let report = run(&svc, &api, &query(false)).await;
    assert_eq!(outcomes(&report), ["unchanged"]);
    assert!(report.healed.is_empty());
    assert!(
        github.requests().len() - before <= 2,
        "a list per run, no writes"
    );
}

#[tokio::test]
async fn failed_set_never_blanks_a_description() {
    let health = FakeHealth::start().await;
    let mut e = event(
        "f",
        "EC2",
        "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
        "open",
        NOW - DAY,
    );
    e.description = "The instance will be retired; stop and start it before then.".into();
    health.add_event(e.clone());
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let svc = service(&github).await;
    let api = api(&health);
    assert_eq!(outcomes(&run(&svc, &api, &query(false)).await), ["created"]);

    // AWS updates the event but cannot describe it in this run.
    e.last_updated = NOW - 60;
    health.update_event(e.clone());
    health.fail_details_for(&e.arn);
    let report = reconcile(&svc, &api, &query(false)).await.unwrap();
    assert!(report.events.is_empty(), "not filed: {:?}", report.events);
    assert_eq!(report.incomplete.len(), 1);
    assert_eq!(report.incomplete[0].arn, e.arn);
    assert!(report.incomplete[0].error.contains("InternalFailure"));
    assert!(report.failed(), "the run says it is incomplete");
    assert!(
        report.healed.is_empty(),
        "nor healed with a blank description"
    );
    let issue = &github.issues(REPO)[0];
    assert!(
        issue.body.contains("stop and start it before then"),
        "{}",
        issue.body
    );
    assert!(!issue.body.contains("AWS gave no description"));
    assert!(issue.comments.is_empty());
}

#[tokio::test]
async fn fails_over_from_us_east_1_to_us_east_2() {
    let active = FakeHealth::start().await;
    let passive = FakeHealth::start().await;
    active.set_unavailable(true);
    passive.add_event(event(
        "x",
        "EC2",
        "AWS_EC2_OPERATIONAL_ISSUE",
        "open",
        NOW - DAY,
    ));
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let svc = service(&github).await;
    let api = HealthApi::new(vec![
        HealthEndpoint {
            region: "us-east-1".into(),
            client: regional_client(&active, "us-east-1"),
        },
        HealthEndpoint {
            region: "us-east-2".into(),
            client: regional_client(&passive, "us-east-2"),
        },
    ]);
    assert_eq!(api.regions(), ["us-east-1", "us-east-2"]);
    let report = run(&svc, &api, &query(false)).await;
    assert_eq!(report.region, "us-east-2");
    assert_eq!(outcomes(&report), ["created"]);
    assert!(!active.calls().is_empty(), "us-east-1 was tried first");
    let regions = passive.signing_regions();
    assert!(!regions.is_empty());
    assert!(
        regions.iter().all(|r| r == "us-east-2"),
        "requests to us-east-2 are signed for us-east-2: {regions:?}"
    );

    // Both down: the error names the call and the last region.
    passive.set_unavailable(true);
    let err = reconcile(&svc, &api, &query(false)).await.unwrap_err();
    assert_eq!(err.region.as_deref(), Some("us-east-2"));
    assert!(
        err.to_string()
            .starts_with("AWS Health DescribeEvents (us-east-2): "),
        "{err}"
    );
    assert!(err.to_string().contains("ServiceUnavailable"), "{err}");
}

#[tokio::test]
async fn scheduled_changes_are_reminded_once_before_they_start() {
    let health = FakeHealth::start().await;
    let mut soon = event(
        "s",
        "RDS",
        "AWS_RDS_MAINTENANCE_SCHEDULED",
        "upcoming",
        NOW - DAY,
    );
    soon.start = Some(NOW + 2 * DAY);
    soon.entities = vec![entity("orders-prod")];
    let mut later = event(
        "l",
        "EC2",
        "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
        "upcoming",
        NOW - DAY,
    );
    later.start = Some(NOW + 10 * DAY);
    let mut issue = event("i", "EC2", "AWS_EC2_OPERATIONAL_ISSUE", "open", NOW - DAY);
    issue.category = "issue".into();
    issue.start = Some(NOW + DAY);
    health.add_event(soon.clone());
    health.add_event(later);
    health.add_event(issue);
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let config =
        HealthConfig::from_toml("[health]\nremind_days_before = 3\n", "opsbot.toml").unwrap();
    let svc = service_with(&github, config).await;
    let api = api(&health);

    let report = run(&svc, &api, &query(false)).await;
    assert_eq!(report.reminders.len(), 1, "{:?}", report.reminders);
    let reminded: Vec<_> = github
        .issues(REPO)
        .into_iter()
        .filter(|i| !i.comments.is_empty())
        .collect();
    assert_eq!(reminded.len(), 1);
    assert!(reminded[0].title.contains("RDS") || reminded[0].body.contains("RDS"));
    let comment = &reminded[0].comments[0];
    assert!(
        comment.contains("<!-- opsbot:health-reminder "),
        "{comment}"
    );
    assert!(comment.contains("starts in 2 days"), "{comment}");
    assert!(comment.contains("`orders-prod`"), "{comment}");

    // Daily runs do not repeat it…
    let report = run(&svc, &api, &query(false)).await;
    assert!(report.reminders.is_empty());
    let report = run(
        &svc,
        &api,
        &ReconcileQuery {
            now: OffsetDateTime::from_unix_timestamp(NOW + DAY).unwrap(),
            ..query(false)
        },
    )
    .await;
    assert!(report.reminders.is_empty());
    let total: usize = github.issues(REPO).iter().map(|i| i.comments.len()).sum();
    assert_eq!(total, 1);

    // …but a rescheduled change is reminded of its new start.
    soon.start = Some(NOW + 3 * DAY);
    soon.last_updated = NOW - 60;
    health.update_event(soon);
    let report = run(&svc, &api, &query(false)).await;
    assert_eq!(report.reminders.len(), 1);
    let rds = github
        .issues(REPO)
        .into_iter()
        .find(|i| i.comments.len() > 1)
        .unwrap();
    // The update's comment, then the reminder of the new start.
    assert_eq!(rds.comments.len(), 3, "{:?}", rds.comments);
    assert!(rds.comments[2].contains("starts in 3 days"));
}

#[tokio::test]
async fn account_view_reconcile_keys_like_eventbridge_in_the_account() {
    // AWS's account-view events name affectedAccount equal to the envelope's account.
    let fixture_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/health/ec2_instance_retirement.json"
    );
    let mut delivered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_path).unwrap()).unwrap();
    delivered["detail"]["affectedAccount"] = "123456789012".into();
    let d = delivered["detail"].clone();
    let ts = |s: &serde_json::Value| {
        opsbot_health::event::parse_time(s.as_str().unwrap())
            .unwrap()
            .unix_timestamp()
    };
    let updated = ts(&d["lastUpdatedTime"]);
    let same = FakeHealthEvent {
        arn: d["eventArn"].as_str().unwrap().into(),
        service: "EC2".into(),
        event_type_code: d["eventTypeCode"].as_str().unwrap().into(),
        category: "scheduledChange".into(),
        scope: "ACCOUNT_SPECIFIC".into(),
        region: "eu-west-1".into(),
        start: Some(ts(&d["startTime"])),
        end: None,
        last_updated: updated,
        status: "upcoming".into(),
        description: d["eventDescription"][0]["latestDescription"]
            .as_str()
            .unwrap()
            .into(),
        metadata: BTreeMap::new(),
        accounts: vec![],
        entities: d["affectedEntities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| FakeEntity {
                value: e["entityValue"].as_str().unwrap().into(),
                account: Some("123456789012".into()),
                status: None,
                tags: e["tags"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
            })
            .collect(),
    };
    let health = FakeHealth::start().await;
    health.add_event(same);
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let svc = service(&github).await;

    let report = svc.handle(&delivered).await;
    assert!(!report.failed(), "{report:?}");
    let q = ReconcileQuery {
        days: 7,
        organization: false,
        account: Some("123456789012".into()),
        now: OffsetDateTime::from_unix_timestamp(updated + 3600).unwrap(),
    };
    let report = run(&svc, &api(&health), &q).await;
    assert_eq!(
        outcomes(&report),
        ["unchanged"],
        "the same key, the same issue"
    );
    assert_eq!(github.issues(REPO).len(), 1);
}

#[tokio::test]
async fn the_receiving_account_comes_from_sts() {
    let Some(moto) = opsbot_tests::moto::Moto::start("the_receiving_account_comes_from_sts") else {
        return;
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_health::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let account = opsbot_health::reconcile::caller_account_with(&aws_sdk_sts::Client::new(&config))
        .await
        .unwrap();
    // moto's default account.
    assert_eq!(account, "123456789012");
}
