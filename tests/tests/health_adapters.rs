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
        assignees: vec![],
        route: None,
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
