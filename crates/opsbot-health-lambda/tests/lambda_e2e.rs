//! End to end: the real `opsbot-health-lambda` binary, driven through a local Lambda Runtime
//! API (`/2018-06-01/runtime/invocation/next`, `/response`, `/error`, `/init/error`), filing
//! issues in the fake GitHub and alerting through the fake SNS, all on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsbot_tests::fake_github::{FailureRule, FakeGitHub, FakeIssue, TEST_TOKEN};
use opsbot_tests::fake_sns::FakeSns;
use opsbot_tests::lambda_runtime::RuntimeApi;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_opsbot-health-lambda");
const REPO: &str = "acme/ops";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:opsbot-health-alerts";

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/health")
        .join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A running bootstrap process with its stderr collected.
struct Bootstrap {
    child: Child,
    logs: Arc<Mutex<String>>,
}

impl Bootstrap {
    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Peak resident memory (VmHWM) in KiB, from /proc.
    fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
    }
}

struct Env {
    github: FakeGitHub,
    sns: FakeSns,
    api: RuntimeApi,
}

impl Env {
    async fn start() -> Env {
        let github = FakeGitHub::start().await;
        github.create_repo(REPO);
        let sns = FakeSns::start(&[TOPIC]).await;
        let api = RuntimeApi::start().await;
        Env { github, sns, api }
    }

    fn command(&self, extra: &[(&str, &str)]) -> Command {
        // OPSBOT_HEALTH_BIN measures another build (the release binary) with the same tests.
        let bin = std::env::var("OPSBOT_HEALTH_BIN").unwrap_or_else(|_| BIN.to_string());
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .envs(self.api.lambda_env())
            .env("GITHUB_API_URL", self.github.url())
            .env("GITHUB_REPOSITORY", REPO)
            .env("GITHUB_TOKEN", TEST_TOKEN)
            .env("OPSBOT_GITHUB_MAX_ATTEMPTS", "3")
            .env("OPSBOT_GITHUB_BACKOFF_MS", "10")
            .env("OPSBOT_GITHUB_RETRY_BUDGET_SECS", "5")
            .env("OPSBOT_SNS_TOPIC_ARN", TOPIC)
            .env("AWS_ENDPOINT_URL", self.sns.url())
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_CONFIG_FILE", "/nonexistent/config")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn(&self, extra: &[(&str, &str)]) -> Bootstrap {
        let mut child = self.command(extra).spawn().expect("spawn the bootstrap");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Bootstrap { child, logs }
    }

    fn issues(&self) -> Vec<FakeIssue> {
        self.github.issues(REPO)
    }

    fn github_requests(&self) -> usize {
        self.github.requests().len()
    }
}

fn outcome(response: &Value, i: usize) -> &str {
    response["events"][i]["outcome"].as_str().unwrap_or("?")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_redelivery_update_close_reopen() {
    let env = Env::start().await;
    let boot = env.spawn(&[]);

    // New event: list by label, create, list again (converge) = 3 requests.
    let before = env.github_requests();
    let res = env
        .api
        .invoke(fixture("ec2_instance_retirement"))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", boot.logs()));
    assert_eq!(outcome(&res, 0), "created", "{res}");
    let new_requests = env.github_requests() - before;
    let issues = env.issues();
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert_eq!(
        issue.title,
        "AWS Health: EC2 persistent instance retirement scheduled in eu-west-1"
    );
    assert!(issue.body.starts_with("<!-- opsbot:health {"));
    assert!(issue.body.contains("`i-0a1b2c3d4e5f60718`"));
    assert!(issue.body.contains("| Account | 123456789012 |"));
    assert!(issue.labels.contains(&"aws-health".to_string()));
    assert!(issue.labels.iter().any(|l| l.starts_with("health:")));
    assert_eq!(issue.state, "open");

    // Redelivery of the same version: one list, nothing else.
    let before = env.github_requests();
    let mut redelivered = fixture("ec2_instance_retirement");
    redelivered["id"] = json!("another-delivery-id");
    let res = env.api.invoke(redelivered).await.unwrap();
    assert_eq!(outcome(&res, 0), "unchanged");
    let redelivery_requests = env.github_requests() - before;
    assert_eq!(env.issues()[0].comments.len(), 0);

    // Later version: one comment naming the changes, body rewritten.
    let before = env.github_requests();
    let res = env
        .api
        .invoke(fixture("ec2_instance_retirement_update"))
        .await
        .unwrap();
    assert_eq!(outcome(&res, 0), "updated");
    let update_requests = env.github_requests() - before;
    let issue = env.issues().remove(0);
    assert_eq!(issue.comments.len(), 1);
    assert!(issue.comments[0].contains("- Status: `upcoming` → `open`"));
    assert!(
        issue.comments[0].contains("- No longer listed as affected (1): `i-0f9e8d7c6b5a49382`")
    );
    assert!(issue.body.contains("`i-07c6b5a4938271605`"));
    assert!(!issue.body.contains("`i-0f9e8d7c6b5a49382`"));

    // Redelivering the older version now is a no-op (out-of-order delivery).
    let res = env
        .api
        .invoke(fixture("ec2_instance_retirement"))
        .await
        .unwrap();
    assert_eq!(outcome(&res, 0), "unchanged");

    // statusCode closed: comment + close.
    let res = env
        .api
        .invoke(fixture("ec2_instance_retirement_closed"))
        .await
        .unwrap();
    assert_eq!(outcome(&res, 0), "closed");
    let issue = env.issues().remove(0);
    assert_eq!(issue.state, "closed");
    assert_eq!(issue.state_reason.as_deref(), Some("completed"));
    assert_eq!(issue.comments.len(), 2);
    assert!(issue.comments[1].contains("closed this event"));

    // Reopened event: reopen.
    let res = env
        .api
        .invoke(fixture("ec2_instance_retirement_reopened"))
        .await
        .unwrap();
    assert_eq!(outcome(&res, 0), "reopened");
    let issues = env.issues();
    assert_eq!(issues.len(), 1, "still exactly one issue");
    assert_eq!(issues[0].state, "open");
    assert_eq!(issues[0].comments.len(), 3);

    eprintln!(
        "github requests: new={new_requests} redelivery={redelivery_requests} update={update_requests}; peak RSS {:?} KiB",
        boot.peak_rss_kib()
    );
    assert!(new_requests <= 3, "new event took {new_requests} requests");
    assert!(
        redelivery_requests <= 2,
        "redelivery took {redelivery_requests}"
    );
    assert!(
        env.sns.published().is_empty(),
        "no alert when all went well"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_event_in_one_batch_files_one_issue_each() {
    let env = Env::start().await;
    let boot = env.spawn(&[]);
    let batch = json!([
        fixture("rds_maintenance"),
        fixture("ec2_operational_issue"),
        fixture("lambda_runtime_deprecation"),
        fixture("abuse_dos_report"),
        fixture("org_instance_stop"),
    ]);
    let res = env
        .api
        .invoke(batch.clone())
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", boot.logs()));
    for i in 0..5 {
        assert_eq!(outcome(&res, i), "created", "{res}");
    }
    let mut titles: Vec<String> = env.issues().into_iter().map(|i| i.title).collect();
    titles.sort();
    assert_eq!(
        titles,
        [
            "AWS Health abuse report: ABUSE dos report in global",
            "AWS Health: EC2 instance stop scheduled in us-west-2 (account 210987654321)",
            "AWS Health: EC2 operational issue in us-east-1",
            "AWS Health: LAMBDA runtime deprecation scheduled in eu-central-1",
            "AWS Health: RDS maintenance scheduled in us-east-1",
        ]
    );
    // The whole batch again: nothing new.
    let res = env.api.invoke(batch).await.unwrap();
    for i in 0..5 {
        assert_eq!(outcome(&res, i), "unchanged");
    }
    assert_eq!(env.issues().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_wrapped_input_is_unwrapped() {
    let env = Env::start().await;
    let boot = env.spawn(&[]);
    let res = env
        .api
        .invoke(fixture("sns_wrapped_rds_maintenance"))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", boot.logs()));
    assert_eq!(outcome(&res, 0), "created");
    // The same event delivered directly afterwards is the same issue.
    let res = env.api.invoke(fixture("rds_maintenance")).await.unwrap();
    assert_eq!(outcome(&res, 0), "unchanged");
    let issues = env.issues();
    assert_eq!(issues.len(), 1);
    assert!(issues[0].body.contains("`orders-prod-replica-1`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_fails_the_invocation_and_says_why() {
    let env = Env::start().await;
    let boot = env.spawn(&[]);
    let err = env
        .api
        .invoke(fixture("malformed_missing_arn"))
        .await
        .expect_err("a malformed event must fail the invocation");
    assert_eq!(err.error_type, "OpsbotHealth.InvocationFailed");
    assert!(
        err.error_message
            .contains("$.detail: missing field `eventArn`"),
        "{err:?}"
    );
    let err = env
        .api
        .invoke(json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}}))
        .await
        .unwrap_err();
    assert!(
        err.error_message
            .contains("$.source: expected `aws.health`"),
        "{err:?}"
    );
    let err = env.api.invoke(json!("hello")).await.unwrap_err();
    assert!(
        err.error_message
            .contains("expected a JSON object or array"),
        "{err:?}"
    );

    // A batch with one good and one bad event: the good one is filed, the invocation fails.
    let err = env
        .api
        .invoke(json!([fixture("rds_maintenance"), {"Records": [{"Sns": {"Message": "{oops"}}]}]))
        .await
        .unwrap_err();
    assert!(
        err.error_message
            .contains("$[1].Records[0].Sns.Message: not valid JSON"),
        "{err:?}"
    );
    assert_eq!(env.issues().len(), 1);

    // The process survived all of it (no panic) and still works.
    let res = env
        .api
        .invoke(fixture("ec2_operational_issue"))
        .await
        .unwrap();
    assert_eq!(outcome(&res, 0), "created");
    let logs = boot.logs();
    assert!(logs.contains("unusable input"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    // Unusable input is alerted on SNS too.
    assert!(
        env.sns
            .published()
            .iter()
            .any(|p| p.subject.as_deref() == Some("opsbot: unusable AWS Health input"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_gateway_storm_fails_the_invocation_alerts_and_the_retry_succeeds() {
    let env = Env::start().await;
    let boot = env.spawn(&[]);
    // Every attempt of the first call (3 attempts) gets a 502.
    env.github.fail_next(FailureRule::bad_gateway("/issues", 3));
    let event = fixture("lambda_runtime_deprecation");
    let err = env
        .api
        .invoke(event.clone())
        .await
        .expect_err("GitHub down: the invocation must fail so AWS retries it");
    assert_eq!(err.error_type, "OpsbotHealth.InvocationFailed");
    assert!(err.error_message.contains("502"), "{err:?}");
    assert!(env.issues().is_empty());
    let alerts = env.sns.published();
    assert_eq!(alerts.len(), 1, "{alerts:?}\n{}", boot.logs());
    assert_eq!(alerts[0].topic_arn, TOPIC);
    assert!(
        alerts[0]
            .message
            .contains("AWS_LAMBDA_RUNTIME_DEPRECATION_SCHEDULED_3c9a7e21"),
        "{}",
        alerts[0].message
    );
    assert!(alerts[0].message.contains("502"));

    // AWS retries the same event: GitHub is back, the issue is filed once.
    let res = env.api.invoke(event.clone()).await.unwrap();
    assert_eq!(outcome(&res, 0), "created");
    let res = env.api.invoke(event).await.unwrap();
    assert_eq!(outcome(&res, 0), "unchanged");
    assert_eq!(env.issues().len(), 1);
    assert_eq!(env.sns.published().len(), 1, "no alert for the success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_copies_end_with_one_open_issue() {
    let env = Env::start().await;
    let a = env.spawn(&[]);
    let b = env.spawn(&[]);
    assert!(
        env.api.wait_for_pollers(2, Duration::from_secs(20)).await,
        "both bootstraps should be polling\n{}\n{}",
        a.logs(),
        b.logs()
    );
    let names = [
        "rds_maintenance",
        "ec2_operational_issue",
        "lambda_runtime_deprecation",
        "org_instance_stop",
    ];
    let mut raced = 0;
    for name in names {
        assert!(env.api.wait_for_pollers(2, Duration::from_secs(20)).await);
        // The same event, delivered twice at once (EventBridge's at-least-once delivery
        // running two copies concurrently).
        let (_, first) = env.api.enqueue(fixture(name));
        let (_, second) = env.api.enqueue(fixture(name));
        let (x, y) = tokio::join!(first, second);
        for outcome in [x.unwrap(), y.unwrap()] {
            assert!(
                matches!(outcome, opsbot_tests::lambda_runtime::Outcome::Response(_)),
                "{outcome:?}"
            );
        }
        let created = env
            .issues()
            .into_iter()
            .filter(|i| {
                i.body
                    .contains(fixture(name)["detail"]["eventArn"].as_str().unwrap())
            })
            .collect::<Vec<_>>();
        let open: Vec<_> = created.iter().filter(|i| i.state == "open").collect();
        assert_eq!(open.len(), 1, "{name}: {created:#?}");
        if created.len() > 1 {
            raced += 1;
            // The survivor is the lowest-numbered one; the other is closed as a duplicate.
            let lowest = created.iter().map(|i| i.number).min().unwrap();
            assert_eq!(open[0].number, lowest);
            let dup = created.iter().find(|i| i.number != lowest).unwrap();
            assert_eq!(dup.state_reason.as_deref(), Some("not_planned"));
            let notes = dup
                .comments
                .iter()
                .filter(|c| c.contains(&format!("Duplicate of #{lowest}")))
                .count();
            assert_eq!(notes, 1, "{dup:#?}");
        }
    }
    eprintln!(
        "concurrent copies: {raced} of {} rounds created a duplicate that was converged",
        names.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_error_is_reported_to_the_runtime_api() {
    let env = Env::start().await;
    let dir = std::env::temp_dir().join(format!("opsbot-health-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("opsbot.toml");
    std::fs::write(&config, "[health]\nrepo = \"not a repo\"\n").unwrap();
    let mut boot = env.spawn(&[("OPSBOT_CONFIG", config.to_str().unwrap())]);
    let err = env
        .api
        .wait_init_error(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("no init error\n{}", boot.logs()));
    assert_eq!(err.error_type, "OpsbotHealth.InitError");
    assert!(
        err.error_message
            .contains("health.repo: `not a repo` is not a repository"),
        "{err:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), boot.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    assert_eq!(env.api.next_calls(), 0, "never asked for an event");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_from_opsbot_toml() {
    let env = Env::start().await;
    env.github.create_repo("acme/databases");
    let dir = std::env::temp_dir().join(format!("opsbot-health-route-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("opsbot.toml");
    std::fs::write(
        &config,
        r#"
[health]
notify_new_issues = true

[[health.ignore]]
categories = ["issue"]
services = ["EC2"]

[[health.routes]]
services = ["RDS"]
repo = "acme/databases"
labels = ["team:db"]
assignees = ["dba-oncall"]
"#,
    )
    .unwrap();
    let boot = env.spawn(&[("OPSBOT_CONFIG", config.to_str().unwrap())]);
    let res = env
        .api
        .invoke(json!([
            fixture("rds_maintenance"),
            fixture("ec2_operational_issue")
        ]))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", boot.logs()));
    assert_eq!(res["events"][0]["repo"], "acme/databases");
    assert_eq!(res["events"][1]["result"], "ignored");
    let db = env.github.issues("acme/databases");
    assert_eq!(db.len(), 1);
    assert!(db[0].labels.contains(&"team:db".to_string()));
    assert_eq!(db[0].assignees, ["dba-oncall"]);
    assert!(env.issues().is_empty(), "nothing in the default repo");
    let notices = env.sns.published();
    assert_eq!(notices.len(), 1);
    assert!(notices[0].message.contains("acme/databases#1"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Cold start: time from spawning the bootstrap to its first `invocation/next` call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_is_fast() {
    let env = Env::start().await;
    let mut samples = Vec::new();
    for _ in 0..5 {
        let since = Instant::now();
        let boot = env.spawn(&[]);
        let took = env
            .api
            .first_next_after(since, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("no /next call\n{}", boot.logs()));
        samples.push(took);
        drop(boot);
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    eprintln!("cold start (spawn → first /next), 5 runs: median {median:?}, all {samples:?}");
    assert!(median < Duration::from_secs(2), "{samples:?}");
}

/// The numbers the issue asks for, on whichever binary `OPSBOT_HEALTH_BIN` names (default:
/// the test build). Run on the release build:
/// `OPSBOT_HEALTH_BIN=$PWD/target/release/opsbot-health-lambda cargo test -p
/// opsbot-health-lambda --test lambda_e2e -- --ignored --nocapture measure`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn measure() {
    let env = Env::start().await;
    // Cold start: spawn → first invocation/next, 15 runs.
    let mut samples = Vec::new();
    for _ in 0..15 {
        let since = Instant::now();
        let boot = env.spawn(&[]);
        samples.push(
            env.api
                .first_next_after(since, Duration::from_secs(20))
                .await
                .unwrap(),
        );
        drop(boot);
    }
    samples.sort();
    let median = samples[samples.len() / 2];

    // A fresh Runtime API: killed bootstraps may still hold long-polls on the first one.
    drop(env);
    let env = Env::start().await;
    let boot = env.spawn(&[]);
    let count = |f: &FakeGitHub| f.requests().len();
    let before = count(&env.github);
    env.api
        .invoke(fixture("ec2_instance_retirement"))
        .await
        .unwrap();
    let new_event = count(&env.github) - before;
    let before = count(&env.github);
    env.api
        .invoke(fixture("ec2_instance_retirement"))
        .await
        .unwrap();
    let redelivery = count(&env.github) - before;
    let before = count(&env.github);
    env.api
        .invoke(fixture("ec2_instance_retirement_update"))
        .await
        .unwrap();
    let update = count(&env.github) - before;
    let before = count(&env.github);
    env.api
        .invoke(fixture("ec2_instance_retirement_closed"))
        .await
        .unwrap();
    let close = count(&env.github) - before;

    // Memory under a heavier load: every fixture, then an event with 1,000 entities.
    env.api
        .invoke(json!([
            fixture("rds_maintenance"),
            fixture("ec2_operational_issue"),
            fixture("lambda_runtime_deprecation"),
            fixture("abuse_dos_report"),
            fixture("org_instance_stop"),
        ]))
        .await
        .unwrap();
    let mut big = fixture("rds_maintenance");
    big["detail"]["eventArn"] =
        json!("arn:aws:health:us-east-1::event/RDS/AWS_RDS_MAINTENANCE_SCHEDULED/big");
    big["detail"]["affectedEntities"] = (0..1000)
        .map(|i| json!({"entityValue": format!("arn:aws:rds:us-east-1:123456789012:db:database-{i:04}"), "tags": {"env": "prod"}}))
        .collect();
    env.api.invoke(big).await.unwrap();
    let rss = boot.peak_rss_kib().unwrap_or(0);

    eprintln!(
        "binary: {}",
        std::env::var("OPSBOT_HEALTH_BIN").unwrap_or_else(|_| BIN.to_string())
    );
    eprintln!(
        "cold start (spawn → first /next), 15 runs: median {median:?}, min {:?}, max {:?}",
        samples[0],
        samples[samples.len() - 1]
    );
    eprintln!(
        "GitHub requests: new event {new_event}, redelivery {redelivery}, update {update}, close {close}"
    );
    eprintln!(
        "peak RSS (VmHWM): {} KiB = {:.1} MB",
        rss,
        rss as f64 / 1024.0
    );
    assert!(new_event <= 3 && redelivery <= 2);
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
}

// ---- issue 9: AWS's own samples, GitHub's limits, idempotent writes, pages -------------

use opsbot_tests::fake_github::limits::MAX_BODY_CHARS;

/// `${OPSBOT_CORPORA:-../shared/corpora}` (relative to the repository root).
fn corpora() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var("OPSBOT_CORPORA") {
        Ok(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Ok(dir) => root.join(dir),
        Err(_) => root.join("../shared/corpora"),
    }
}

use std::path::PathBuf;

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Every issue and comment the fake holds fits GitHub's limit (the fake refuses the rest,
/// so this also proves nothing was refused silently).
fn assert_within_limits(env: &Env) -> usize {
    let mut largest = 0;
    for issue in env.issues() {
        largest = largest.max(chars(&issue.body));
        for c in &issue.comments {
            largest = largest.max(chars(c));
        }
    }
    assert!(largest <= MAX_BODY_CHARS, "{largest}");
    assert!(
        env.github.requests().iter().all(|r| r.status != 422),
        "GitHub refused a write: {:?}",
        env.github
            .requests()
            .iter()
            .filter(|r| r.status == 422)
            .collect::<Vec<_>>()
    );
    largest
}

/// Corpus e2e: every sample in `aws-health` goes through the real bootstrap. Samples AWS
/// delivers are filed (one issue per event, within GitHub's limits, readable titles); the
/// rest are refused with a message that names where; a second pass changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_sample_goes_through_the_lambda() {
    let dir = corpora().join("aws-health");
    let Ok(listing) = std::fs::read_dir(&dir) else {
        eprintln!(
            "every_corpus_sample_goes_through_the_lambda: skipped: no corpus at {} (set OPSBOT_CORPORA)",
            dir.display()
        );
        return;
    };
    let mut files: Vec<PathBuf> = listing
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no samples in {}", dir.display());
    let env = Env::start().await;
    let boot = env.spawn(&[]);
    let (mut filed, mut refused) = (0, 0);
    let mut results = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let payload: Value = serde_json::from_slice(&std::fs::read(path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let delivered_form = payload.get("source").and_then(Value::as_str) == Some("aws.health")
            && payload.get("detail-type").is_some();
        match env.api.invoke(payload.clone()).await {
            Ok(res) => {
                let events = res["events"].as_array().cloned().unwrap_or_default();
                assert!(!events.is_empty(), "{name}: {res}");
                for e in &events {
                    assert_eq!(e["result"], "filed", "{name}: {e}");
                }
                filed += events.len();
                results.push((name, payload, res));
            }
            Err(err) => {
                assert!(
                    !delivered_form,
                    "{name}: an EventBridge-delivered Health event was refused: {err:?}\n{}",
                    boot.logs()
                );
                assert_eq!(err.error_type, "OpsbotHealth.InvocationFailed");
                assert!(
                    err.error_message.contains(": $"),
                    "{name}: the error names no location: {}",
                    err.error_message
                );
                refused += 1;
            }
        }
    }
    assert!(filed > 0 && refused > 0, "filed {filed}, refused {refused}");
    let issues = env.issues();
    let largest = assert_within_limits(&env);
    for issue in &issues {
        // AWS's account-view events name affectedAccount = account: not organizational.
        assert!(!issue.body.contains("#/organization/"), "{}", issue.title);
        assert!(!issue.title.contains("(account "), "{}", issue.title);
    }
    // Page coverage and the region from the ARN, wherever a sample calls for them.
    for (name, payload, res) in &results {
        let detail = &payload["detail"];
        let number = res["events"][0]["number"].as_u64().unwrap();
        let issue = issues.iter().find(|i| i.number == number).unwrap();
        if let Some(total) = detail["totalPages"].as_str().filter(|t| *t != "1") {
            assert!(issue.body.contains(&format!(" of {total}")), "{name}");
        }
        if detail.get("eventRegion").is_none()
            && let Some(region) = detail["eventArn"]
                .as_str()
                .and_then(|a| a.split(':').nth(3))
            && !region.is_empty()
        {
            assert!(
                issue.title.ends_with(&format!("in {region}")),
                "{name}: {}",
                issue.title
            );
        }
        if let Some(a) = detail["actionability"].as_str() {
            assert!(issue.body.contains(a), "{name}");
        }
    }
    // Everything again: redeliveries change nothing.
    let before = issues.len();
    for (name, payload, _) in &results {
        let res = env.api.invoke(payload.clone()).await.unwrap();
        for e in res["events"].as_array().unwrap() {
            assert_eq!(e["outcome"], "unchanged", "{name}: {e}");
        }
    }
    assert_eq!(env.issues().len(), before);
    eprintln!(
        "corpus: {} samples, {filed} events filed as {before} issues, {refused} refused; largest body {largest} chars",
        files.len()
    );
}

fn big_event(arn_suffix: &str, entities: usize, description_chars: usize) -> Value {
    let mut big = fixture("rds_maintenance");
    big["detail"]["eventArn"] = json!(format!(
        "arn:aws:health:us-east-1::event/RDS/AWS_RDS_MAINTENANCE_SCHEDULED/{arn_suffix}"
    ));
    big["detail"]["eventDescription"] = json!([{
        "language": "en_US",
        "latestDescription": "Maintenance <window> & details. ".repeat(description_chars / 32 + 1)
    }]);
    big["detail"]["affectedEntities"] = (0..entities)
        .map(|i| json!({"entityValue": format!("arn:aws:rds:us-east-1:123456789012:db:database-{i:04}"), "tags": {"env": "prod"}}))
        .collect();
    big
}

/// Finding 3: a 250-entity event with a 70k description is filed, an update with a 70k
/// description posts its comment, and everything fits GitHub's 65,536 characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_events_fit_githubs_limits() {
    let env = Env::start().await;
    let boot = env.spawn(&[]);
    let event = big_event("big250", 250, 70_000);
    let res = env
        .api
        .invoke(event.clone())
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", boot.logs()));
    assert_eq!(outcome(&res, 0), "created");
    let mut update = event.clone();
    update["detail"]["lastUpdatedTime"] = json!("Wed, 02 Apr 2025 08:00:00 GMT");
    update["detail"]["eventDescription"][0]["latestDescription"] =
        json!("Rescheduled: ".repeat(6_000));
    let res = env.api.invoke(update).await.unwrap();
    assert_eq!(outcome(&res, 0), "updated");
    let issue = env.issues().remove(0);
    assert_eq!(issue.comments.len(), 1);
    assert!(
        issue
            .body
            .contains("more; the full list is in the AWS Health Dashboard")
    );
    assert!(issue.comments[0].contains("more characters: the full text is in the AWS Health"));
    assert_within_limits(&env);
}

/// Finding 3, measured: the largest body written for a 1,000-entity event. Run:
/// `cargo test -p opsbot-health-lambda --test lambda_e2e -- --ignored --nocapture measure_1000_entities`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn measure_1000_entities() {
    let env = Env::start().await;
    let _boot = env.spawn(&[]);
    for (suffix, desc) in [("k1", 200), ("k1long", 70_000)] {
        env.api
            .invoke(big_event(suffix, 1_000, desc))
            .await
            .unwrap();
    }
    let sizes: Vec<(String, usize, usize)> = env
        .issues()
        .iter()
        .map(|i| (i.title.clone(), chars(&i.body), i.body.len()))
        .collect();
    for (t, c, b) in &sizes {
        eprintln!("1,000-entity event: body {c} characters ({b} bytes): {t}");
    }
    assert_within_limits(&env);
}

/// Finding 5: a create GitHub applied and answered 502 for is found by its label, not made
/// again; a comment applied-then-502 is found by its marker; a body update that fails
/// after its comment was posted does not post the comment again on retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_applied_then_answered_502_are_not_repeated() {
    let env = Env::start().await;
    let boot = env.spawn(&[]);
    env.github.fail_next(
        opsbot_tests::fake_github::FailureRule::applied_then_bad_gateway("/issues", 1)
            .only_method("POST"),
    );
    let res = env
        .api
        .invoke(fixture("ec2_instance_retirement"))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", boot.logs()));
    assert_eq!(res["events"][0]["number"], 1, "{res}");
    assert_eq!(env.issues().len(), 1, "no duplicate: {:#?}", env.issues());
    assert!(
        env.issues()[0].comments.is_empty(),
        "no 'Duplicate of' comment"
    );

    // The update's comment is applied, then 502: the retry finds it by its marker.
    env.github.fail_next(
        opsbot_tests::fake_github::FailureRule::applied_then_bad_gateway("/comments", 1)
            .only_method("POST"),
    );
    let res = env
        .api
        .invoke(fixture("ec2_instance_retirement_update"))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", boot.logs()));
    assert_eq!(outcome(&res, 0), "updated");
    assert_eq!(env.issues()[0].comments.len(), 1);

    // The body update fails after the comment was posted; AWS retries the invocation twice.
    env.github.fail_next(
        opsbot_tests::fake_github::FailureRule::bad_gateway("/issues/1", 3).only_method("PATCH"),
    );
    let closed = fixture("ec2_instance_retirement_closed");
    let err = env.api.invoke(closed.clone()).await.unwrap_err();
    assert!(err.error_message.contains("502"), "{err:?}");
    let res = env.api.invoke(closed.clone()).await.unwrap();
    assert_eq!(outcome(&res, 0), "closed");
    let res = env.api.invoke(closed).await.unwrap();
    assert_eq!(outcome(&res, 0), "unchanged");
    let issue = env.issues().remove(0);
    assert_eq!(issue.state, "closed");
    assert_eq!(
        issue.comments.len(),
        2,
        "one comment per version: {:#?}",
        issue.comments
    );
}

/// Finding 3: GitHub's own words reach our error message, and a 422 is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_says_what_github_said() {
    use opsbot_core::github::models::NewIssue;
    use opsbot_core::github::{Credentials, GitHub, GitHubSettings, RepoRef, RetryPolicy};
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let settings = GitHubSettings {
        api_url: github.url(),
        repository: Some(RepoRef::new("acme", "ops")),
        credentials: Credentials::Token(secrecy::SecretString::from(TEST_TOKEN)),
        retry: RetryPolicy::default(),
    };
    let client = GitHub::connect(&settings).await.unwrap();
    let err = client
        .create_issue(
            &RepoRef::new("acme", "ops"),
            &NewIssue {
                title: "too long".into(),
                body: "x".repeat(MAX_BODY_CHARS + 1),
                labels: vec![],
                assignees: vec![],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "create issue in acme/ops: GitHub answered 422: Validation Failed: body is too long (maximum is 65536 characters)"
    );
    assert_eq!(github.requests().len(), 1, "a 422 is never retried");
    assert!(github.issues(REPO).is_empty());
}

/// Finding 2: the pages of one large event delivered at the same moment to concurrent
/// invocations end in one issue listing the entities of every page (10 of 10 trials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pages_keep_every_entity() {
    let env = Env::start().await;
    let boots: Vec<Bootstrap> = (0..3).map(|_| env.spawn(&[])).collect();
    let mut kept = 0;
    for trial in 0..10 {
        assert!(
            env.api.wait_for_pollers(3, Duration::from_secs(20)).await,
            "{}",
            boots[0].logs()
        );
        let arn = format!(
            "arn:aws:health:us-west-2::event/EC2/AWS_EC2_INSTANCE_STORE_DRIVE_PERFORMANCE_DEGRADED/trial{trial}"
        );
        let mut waiting = Vec::new();
        for page in 1..=3 {
            let mut e = fixture("ec2_instance_retirement");
            e["detail"]["eventArn"] = json!(arn);
            e["detail"]["page"] = json!(page.to_string());
            e["detail"]["totalPages"] = json!("3");
            e["detail"]["affectedEntities"] = (0..3)
                .map(|i| json!({"entityValue": format!("i-{trial}{page}{i}0000000000"), "status": "IMPAIRED"}))
                .collect();
            waiting.push(env.api.enqueue(e).1);
        }
        for rx in waiting {
            let out = rx.await.unwrap();
            assert!(
                matches!(out, opsbot_tests::lambda_runtime::Outcome::Response(_)),
                "{out:?}"
            );
        }
        let mine: Vec<FakeIssue> = env
            .issues()
            .into_iter()
            .filter(|i| i.body.contains(&arn))
            .collect();
        let open: Vec<&FakeIssue> = mine.iter().filter(|i| i.state == "open").collect();
        assert_eq!(open.len(), 1, "trial {trial}: {mine:#?}");
        let listed = (1..=3)
            .flat_map(|p| (0..3).map(move |i| format!("`i-{trial}{p}{i}0000000000`")))
            .filter(|e| open[0].body.contains(e))
            .count();
        assert!(
            open[0].body.contains("All 3 pages"),
            "trial {trial}: {}",
            open[0].body
        );
        if listed == 9 {
            kept += 1;
        }
    }
    assert_eq!(kept, 10, "trials keeping all 9 entities");
}
