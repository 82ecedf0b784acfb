//! The Health adapters over real HTTP: the GitHub tracker (label listing, create, converge)
//! against the fake GitHub, including two copies of one event filed at the same moment, and
//! the SNS notifier (aws-sdk-sns, query protocol) against the fake SNS.
#![allow(clippy::unwrap_used)]

use opsbot_core::github::{Credentials, GitHub, GitHubSettings, RepoRef, RetryPolicy};
use opsbot_health::apply::file_event;
use opsbot_health::github::GitHubTracker;
use opsbot_health::service::Notifier;
use opsbot_health::sns::SnsNotifier;
use opsbot_health::{HealthEvent, Target, parse_input_bytes};
use opsbot_tests::fake_github::{FakeGitHub, TEST_TOKEN};
use opsbot_tests::fake_sns::FakeSns;
use secrecy::SecretString;

const REPO: &str = "acme/ops";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:opsbot-health-alerts";

fn fixture(name: &str) -> HealthEvent {
    let path = format!("{}/fixtures/health/{name}.json", env!("CARGO_MANIFEST_DIR"));
    parse_input_bytes(&std::fs::read(path).unwrap())
        .events
        .remove(0)
}

async fn tracker(github: &FakeGitHub) -> GitHubTracker {
    let settings = GitHubSettings {
        api_url: github.url(),
        repository: Some(RepoRef::new("acme", "ops")),
        credentials: Credentials::Token(SecretString::from(TEST_TOKEN)),
        retry: RetryPolicy::none(),
    };
    GitHubTracker::new(GitHub::connect(&settings).await.unwrap())
}

fn target() -> Target {
    Target {
        repo: REPO.into(),
        labels: vec!["aws-health".into()],
        ..Target::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_copies_converge_on_one_open_issue() {
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let (a, b) = (tracker(&github).await, tracker(&github).await);
    let t = target();
    for name in [
        "rds_maintenance",
        "ec2_instance_retirement",
        "abuse_dos_report",
    ] {
        let event = fixture(name);
        let (x, y) = tokio::join!(file_event(&a, &t, &event), file_event(&b, &t, &event));
        let (x, y) = (x.unwrap(), y.unwrap());
        let mine: Vec<_> = github
            .issues(REPO)
            .into_iter()
            .filter(|i| i.body.contains(&event.arn))
            .collect();
        let open: Vec<_> = mine.iter().filter(|i| i.state == "open").collect();
        assert_eq!(open.len(), 1, "{name}: {mine:#?}");
        let lowest = mine.iter().map(|i| i.number).min().unwrap();
        assert_eq!(open[0].number, lowest);
        // Both copies report the surviving issue.
        assert_eq!(x.number, Some(lowest), "{x:?}");
        assert_eq!(y.number, Some(lowest), "{y:?}");
        // A redelivery afterwards is a no-op with one request.
        let before = github.requests().len();
        let again = file_event(&a, &t, &event).await.unwrap();
        assert_eq!(again.outcome, "unchanged");
        assert_eq!(github.requests().len() - before, 1);
    }
}

#[tokio::test]
async fn label_listing_finds_issues_search_has_not_indexed_yet() {
    // With a search index lagging by minutes, finding the issue still works: the tracker
    // lists by label, never searches.
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    github.set_search_lag(std::time::Duration::from_secs(600));
    let t = tracker(&github).await;
    let event = fixture("lambda_runtime_deprecation");
    assert_eq!(
        file_event(&t, &target(), &event).await.unwrap().outcome,
        "created"
    );
    assert_eq!(
        file_event(&t, &target(), &event).await.unwrap().outcome,
        "unchanged"
    );
    assert_eq!(github.issues(REPO).len(), 1);
    assert!(
        github
            .requests()
            .iter()
            .all(|r| !r.path.contains("/search/")),
        "{:?}",
        github.requests()
    );
}

fn sns_client(fake: &FakeSns) -> aws_sdk_sns::Client {
    let config = aws_sdk_sns::Config::builder()
        .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
        .region(aws_sdk_sns::config::Region::new("us-east-1"))
        .endpoint_url(fake.url())
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "AKIDEXAMPLE",
            "SECRET",
            None,
            None,
            "test",
        ))
        .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sns::Client::from_conf(config)
}

#[tokio::test]
async fn sns_notifier_publishes_and_reports_failures() {
    let sns = FakeSns::start(&[TOPIC]).await;
    let notifier = SnsNotifier::new(sns_client(&sns), TOPIC);
    notifier
        .publish(
            "opsbot: could not file",
            "Event ARN: arn:aws:health:…\nError: 502 & <boom>",
        )
        .await
        .unwrap();
    let sent = sns.published();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].topic_arn, TOPIC);
    assert_eq!(sent[0].subject.as_deref(), Some("opsbot: could not file"));
    assert_eq!(
        sent[0].message,
        "Event ARN: arn:aws:health:…\nError: 502 & <boom>"
    );

    sns.fail_next(1);
    let err = notifier.publish("s", "m").await.unwrap_err();
    assert!(err.to_string().contains(TOPIC), "{err}");
    let missing = SnsNotifier::new(sns_client(&sns), "arn:aws:sns:us-east-1:123456789012:nope");
    let err = missing.publish("s", "m").await.unwrap_err();
    assert!(err.to_string().contains("NotFound"), "{err}");
}

// ---- issue 9 ---------------------------------------------------------------------------

use opsbot_health::service::EventResult;
use opsbot_health::{HealthConfig, HealthService, NoNotifier, OrgIssues};
use serde_json::{Value, json};

fn service_with(
    tracker: GitHubTracker,
    config: HealthConfig,
) -> HealthService<GitHubTracker, NoNotifier> {
    HealthService {
        tracker,
        notifier: NoNotifier,
        config,
        default_repo: Some(REPO.into()),
    }
}

const MEMBER: &str = "111111111111";
const MANAGEMENT: &str = "999999999999";
/// 2025-07-10T00:00:00Z.
const NOW: i64 = 1_752_105_600;

/// One event as EventBridge delivers it to `receiving` about `affected`.
fn delivered(receiving: &str, affected: &str) -> Value {
    json!({
        "version": "0", "id": format!("delivery-{receiving}"), "detail-type": "AWS Health Event",
        "source": "aws.health", "account": receiving, "time": "2025-07-09T12:00:00Z",
        "region": "us-east-1", "resources": ["i-0123456789abcdef0"],
        "detail": {
            "eventArn": "arn:aws:health:us-east-1::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED_onekey",
            "service": "EC2", "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
            "eventTypeCategory": "scheduledChange", "eventScopeCode": "ACCOUNT_SPECIFIC",
            "startTime": "Thu, 17 Jul 2025 00:00:00 GMT",
            "lastUpdatedTime": "Wed, 09 Jul 2025 12:00:00 GMT",
            "statusCode": "upcoming", "eventRegion": "us-east-1",
            "eventDescription": [{"language": "en_US", "latestDescription": "Your instance will be retired."}],
            "affectedEntities": [{"entityValue": "i-0123456789abcdef0", "status": "PENDING"}],
            "affectedAccount": affected
        }
    })
}

fn in_health_api(accounts: &[&str]) -> opsbot_tests::fake_health::FakeHealthEvent {
    use opsbot_tests::fake_health::{FakeEntity, FakeHealthEvent};
    let e = delivered(MEMBER, MEMBER);
    let d = &e["detail"];
    FakeHealthEvent {
        arn: d["eventArn"].as_str().unwrap().into(),
        service: "EC2".into(),
        event_type_code: d["eventTypeCode"].as_str().unwrap().into(),
        category: "scheduledChange".into(),
        scope: "ACCOUNT_SPECIFIC".into(),
        region: "us-east-1".into(),
        start: Some(1_752_710_400),
        end: None,
        last_updated: 1_752_062_400,
        status: "upcoming".into(),
        description: "Your instance will be retired.".into(),
        metadata: Default::default(),
        accounts: accounts.iter().map(|a| a.to_string()).collect(),
        entities: accounts
            .iter()
            .map(|a| FakeEntity {
                value: "i-0123456789abcdef0".into(),
                account: Some(a.to_string()),
                status: Some("PENDING".into()),
                tags: Default::default(),
            })
            .collect(),
    }
}

fn health_client(fake: &opsbot_tests::fake_health::FakeHealth) -> aws_sdk_health::Client {
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

fn outcomes(report: &opsbot_health::InvocationReport) -> Vec<&'static str> {
    report
        .events
        .iter()
        .map(|e| match e {
            EventResult::Filed { outcome, .. } => *outcome,
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Finding 1: the same (event, affected account) through EventBridge in the account,
/// EventBridge in the management account, reconcile in the account view and reconcile in
/// the organizational view is one issue, titled and linked as an account-view event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_through_every_path() {
    use opsbot_health::reconcile::{ReconcileQuery, fetch_events};
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let svc = service_with(tracker(&github).await, HealthConfig::default());
    let fake = opsbot_tests::fake_health::FakeHealth::start().await;
    fake.add_event(in_health_api(&[MEMBER]));

    let r = svc.handle(&delivered(MEMBER, MEMBER)).await;
    assert_eq!(outcomes(&r), ["created"], "{r:?}");
    let r = svc.handle(&delivered(MANAGEMENT, MEMBER)).await;
    assert_eq!(
        outcomes(&r),
        ["unchanged"],
        "management account's EventBridge"
    );
    for (organization, receiving) in [(false, MEMBER), (true, MANAGEMENT)] {
        let q = ReconcileQuery {
            days: 14,
            organization,
            account: Some(receiving.into()),
            now: time::OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
        };
        let fetched = fetch_events(&health_client(&fake), &q).await.unwrap();
        assert_eq!(fetched.events.len(), 1, "{organization}");
        let result = svc.handle_event(&fetched.events[0]).await;
        let EventResult::Filed { outcome, .. } = result else {
            panic!("{result:?}")
        };
        assert_eq!(
            outcome, "unchanged",
            "reconcile, organization={organization}"
        );
    }
    let issues = github.issues(REPO);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert!(!issues[0].title.contains("(account"), "{}", issues[0].title);
    assert!(issues[0].body.contains("#/account/event-log"));
    assert!(issues[0].comments.is_empty());
}

/// Finding 1, the other grouping: one issue per event listing the affected accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_view_one_issue_per_event() {
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let config = HealthConfig {
        organization_issues: OrgIssues::PerEvent,
        ..HealthConfig::default()
    };
    let svc = service_with(tracker(&github).await, config);
    let r = svc.handle(&delivered(MANAGEMENT, MEMBER)).await;
    assert_eq!(outcomes(&r), ["created"]);
    let r = svc.handle(&delivered(MANAGEMENT, "222222222222")).await;
    assert_eq!(outcomes(&r), ["updated"]);
    let r = svc.handle(&delivered(MANAGEMENT, "222222222222")).await;
    assert_eq!(outcomes(&r), ["unchanged"]);
    let issues = github.issues(REPO);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert!(
        issues[0]
            .body
            .contains("| Affected accounts (2) | 111111111111, 222222222222 |"),
        "{}",
        issues[0].body
    );
    assert!(issues[0].body.contains("#/organization/event-log"));
    // Per account (the default): two issues, each titled with its account.
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let svc = service_with(tracker(&github).await, HealthConfig::default());
    svc.handle(&delivered(MANAGEMENT, MEMBER)).await;
    svc.handle(&delivered(MANAGEMENT, "222222222222")).await;
    let mut titles: Vec<String> = github.issues(REPO).into_iter().map(|i| i.title).collect();
    titles.sort();
    assert_eq!(titles.len(), 2);
    assert!(titles[0].ends_with("(account 111111111111)"), "{titles:?}");
}

/// Finding 4: `replay` drains a queue (moto's SQS) through the handler: a Lambda
/// destination record, the same EventBridge event behind SNS (raw delivery off), a direct
/// event; an unusable message stays in the queue, the others are deleted once filed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_drains_the_dead_letter_queue() {
    use opsbot_health::replay::{ReplayOptions, replay};
    let Some(moto) = opsbot_tests::moto::Moto::start("replay_drains_the_dead_letter_queue") else {
        return;
    };
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(config);
    let queue = sqs
        .create_queue()
        .queue_name("opsbot-health-dlq")
        .send()
        .await
        .unwrap();
    let url = queue.queue_url().unwrap().to_string();
    let event = |name: &str| -> Value {
        let path = format!("{}/fixtures/health/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let record = json!({
        "version": "1.0", "timestamp": "2025-04-01T16:21:00.000Z",
        "requestContext": {"requestId": "c0ffee", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:opsbot-health:$LATEST", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": event("rds_maintenance"),
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "OpsbotHealth.InvocationFailed", "errorMessage": "1 of the invocation's inputs failed"}
    });
    let notification = json!({
        "Type": "Notification", "MessageId": "5b3c8f1e", "TopicArn": "arn:aws:sns:us-east-1:123456789012:health",
        "Message": event("ec2_operational_issue").to_string(), "Timestamp": "2025-04-01T16:21:00.000Z",
        "SignatureVersion": "1"
    });
    for body in [
        record.to_string(),
        notification.to_string(),
        event("lambda_runtime_deprecation").to_string(),
        "{not json".to_string(),
    ] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let svc = service_with(tracker(&github).await, HealthConfig::default());
    let mut seen = 0;
    let report = replay(&svc, &sqs, &url, &ReplayOptions::default(), |_| seen += 1)
        .await
        .unwrap();
    assert_eq!(
        (report.received, report.deleted, report.kept),
        (4, 3, 1),
        "{report:#?}"
    );
    assert_eq!(seen, 4);
    assert_eq!(github.issues(REPO).len(), 3);
    // What is left is the unusable message, hidden for the visibility timeout.
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|a| a.get(&name))
            .map(String::as_str)
            .unwrap_or("?")
            .to_string()
    };
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "1"
    );
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
        "0"
    );
    // A second replay of a re-sent record files nothing new.
    sqs.send_message()
        .queue_url(&url)
        .message_body(record.to_string())
        .send()
        .await
        .unwrap();
    let report = replay(&svc, &sqs, &url, &ReplayOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!((report.received, report.deleted), (1, 1));
    assert!(
        report.messages[0].summary.starts_with("unchanged"),
        "{report:?}"
    );
    assert_eq!(github.issues(REPO).len(), 3);
}

/// The alert for an event that could not be filed, published with aws-sdk-sns to moto's
/// SNS and read back from an SQS queue subscribed to the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_alert_through_moto_sns() {
    let Some(moto) = opsbot_tests::moto::Moto::start("failure_alert_through_moto_sns") else {
        return;
    };
    let creds = aws_sdk_sns::config::Credentials::new("testing", "testing", None, None, "test");
    let sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::Config::builder()
            .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
            .region(aws_sdk_sns::config::Region::new("us-east-1"))
            .endpoint_url(moto.endpoint())
            .credentials_provider(creds.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(moto.endpoint())
            .credentials_provider(creds)
            .build(),
    );
    let topic = sns
        .create_topic()
        .name("opsbot-health-alerts")
        .send()
        .await
        .unwrap();
    let topic = topic.topic_arn().unwrap().to_string();
    let queue = sqs
        .create_queue()
        .queue_name("alerts")
        .send()
        .await
        .unwrap();
    let url = queue.queue_url().unwrap().to_string();
    let queue_arn = "arn:aws:sqs:us-east-1:123456789012:alerts";
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .unwrap();
    let github = FakeGitHub::start().await; // no repository: filing fails with a 404
    let svc = HealthService {
        tracker: tracker(&github).await,
        notifier: SnsNotifier::new(sns.clone(), &topic),
        config: HealthConfig::default(),
        default_repo: Some(REPO.into()),
    };
    let path = format!(
        "{}/fixtures/health/rds_maintenance.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let payload: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let report = svc.handle(&payload).await;
    assert!(report.failed());
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let body = got.messages()[0].body().unwrap();
    let note: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        note["Subject"],
        "opsbot: could not file AWS Health event RDS AWS_RDS_MAINTENANCE_SCHEDULED"
    );
    let message = note["Message"].as_str().unwrap();
    assert!(
        message.contains("AWS_RDS_MAINTENANCE_SCHEDULED"),
        "{message}"
    );
    assert!(message.contains("404"), "{message}");
}
