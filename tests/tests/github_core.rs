//! The shared GitHub client (octocrab underneath) against the fake GitHub over HTTP:
//! issues with labels, App authentication, retries, the retry budget, an `/api/v3`
//! prefix, pagination, and search lag.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use opsbot_core::github::models::{IssuePatch, IssueQuery, NewIssue, TreeEntry};
use opsbot_core::github::{Credentials, GitHub, GitHubSettings, RepoRef, RetryPolicy};
use opsbot_tests::fake_github::{
    FailureRule, FakeGitHub, FakeOptions, TEST_APP_PRIVATE_KEY, TEST_TOKEN,
};
use secrecy::SecretString;

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        budget: Duration::from_secs(5),
    }
}

fn token_settings(fake: &FakeGitHub) -> GitHubSettings {
    GitHubSettings {
        api_url: fake.url(),
        repository: Some(RepoRef::new("acme", "infra")),
        credentials: Credentials::Token(SecretString::from(TEST_TOKEN)),
        retry: fast_retry(),
    }
}

fn repo() -> RepoRef {
    RepoRef::new("acme", "infra")
}

#[tokio::test]
async fn creates_reads_updates_an_issue_with_labels() {
    let fake = FakeGitHub::start().await;
    fake.create_repo("acme/infra");
    let gh = GitHub::connect(&token_settings(&fake)).await.unwrap();

    let created = gh
        .create_issue(
            &repo(),
            &NewIssue {
                title: "EC2 instance retirement".into(),
                body: "body".into(),
                labels: vec!["aws-health".into(), "ec2".into()],
                assignees: vec!["alice".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(created.number, 1);
    assert!(created.has_label("aws-health") && created.has_label("ec2"));

    let read = gh.issue(&repo(), created.number).await.unwrap();
    assert_eq!(read.title, "EC2 instance retirement");
    assert_eq!(read.assignees[0].login, "alice");

    let closed = gh
        .update_issue(
            &repo(),
            1,
            &IssuePatch {
                state: Some("closed".into()),
                labels: Some(vec!["aws-health".into(), "resolved".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(closed.state, "closed");
    assert!(closed.has_label("resolved") && !closed.has_label("ec2"));

    gh.create_comment(&repo(), 1, "status: closed")
        .await
        .unwrap();
    let comments = gh.list_comments(&repo(), 1).await.unwrap();
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].body.as_deref(), Some("status: closed"));

    let by_label = gh
        .list_issues(
            &repo(),
            &IssueQuery {
                labels: vec!["resolved".into()],
                state: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        by_label.iter().map(|i| i.number).collect::<Vec<_>>(),
        vec![1]
    );

    // The fake saw exactly the calls made, with our auth.
    let fake_issue = &fake.issues("acme/infra")[0];
    assert_eq!(fake_issue.state, "closed");
    assert_eq!(fake_issue.comments, vec!["status: closed".to_string()]);
    assert_eq!(gh.requests_sent(), fake.requests().len() as u64);
}

#[tokio::test]
async fn authenticates_as_an_app_via_jwt_and_installation_token() {
    let fake = FakeGitHub::start().await;
    fake.create_repo("acme/infra");
    fake.create_repo("acme/other");
    fake.add_installation(77, &["acme/infra"]);
    let settings = GitHubSettings {
        credentials: Credentials::App {
            app_id: 4242,
            private_key_pem: SecretString::from(TEST_APP_PRIVATE_KEY),
            installation_id: None,
        },
        ..token_settings(&fake)
    };
    let gh = GitHub::connect(&settings).await.unwrap();
    let issue = gh
        .create_issue(
            &repo(),
            &NewIssue {
                title: "from the App".into(),
                body: String::new(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(issue.user.unwrap().login, "opsbot[bot]");

    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths[0], "/repos/acme/infra/installation");
    assert_eq!(paths[1], "/app/installations/77/access_tokens");
    assert_eq!(paths[2], "/repos/acme/infra/issues");

    // Clones share the installation token: no second token request.
    let clone = gh.clone();
    clone.repository(&repo()).await.unwrap();
    let token_requests = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/access_tokens"))
        .count();
    assert_eq!(token_requests, 1);

    // The installation token is scoped to the installation's repositories.
    let err = gh
        .repository(&RepoRef::new("acme", "other"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));

    // A JWT signed with another key is refused.
    let wrong = GitHubSettings {
        credentials: Credentials::App {
            app_id: 999,
            private_key_pem: SecretString::from(TEST_APP_PRIVATE_KEY),
            installation_id: None,
        },
        ..token_settings(&fake)
    };
    let err = GitHub::connect(&wrong).await.unwrap_err().to_string();
    assert!(
        err.contains("find the App installation for acme/infra"),
        "{err}"
    );
    assert!(err.contains("401"), "{err}");
}

#[tokio::test]
async fn survives_a_502_and_a_secondary_rate_limit() {
    let fake = FakeGitHub::start().await;
    fake.create_repo("acme/infra");
    let gh = GitHub::connect(&token_settings(&fake)).await.unwrap();
    fake.fail_next(FailureRule::bad_gateway("/issues", 1));
    fake.fail_next(FailureRule::secondary_rate_limit("/issues", 1, 1));

    let started = Instant::now();
    let issue = gh
        .create_issue(
            &repo(),
            &NewIssue {
                title: "after two failures".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(issue.number, 1);
    // Honoured Retry-After: 1.
    assert!(started.elapsed() >= Duration::from_secs(1));
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![502, 403, 201]);
    assert_eq!(fake.issues("acme/infra").len(), 1);
}

#[tokio::test]
async fn fails_with_a_clear_error_after_the_retry_budget() {
    let fake = FakeGitHub::start().await;
    fake.create_repo("acme/infra");
    let gh = GitHub::connect(&token_settings(&fake)).await.unwrap();
    fake.fail_next(FailureRule::bad_gateway("/issues", 4));
    let err = gh
        .create_issue(
            &repo(),
            &NewIssue {
                title: "never".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("create issue in acme/infra: gave up after 4 attempts"),
        "{text}"
    );
    assert!(text.contains("502"), "{text}");
    assert_eq!(err.status(), Some(502));
    assert_eq!(fake.requests().len(), 4);

    // A rate limit asking for more than the budget fails at once, without sleeping.
    fake.fail_next(FailureRule::secondary_rate_limit("/labels", 5, 3600));
    let started = Instant::now();
    let err = gh
        .ensure_label(&repo(), "x", "ffffff", "")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("asks to wait 3600 s"), "{err}");

    // A plain 404 is not retried.
    let before = fake.requests().len();
    let err = gh.issue(&repo(), 999).await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(fake.requests().len(), before + 1);
}

#[tokio::test]
async fn works_under_an_api_v3_prefix_with_pagination() {
    let fake = FakeGitHub::start_with(FakeOptions {
        prefix: "/api/v3".into(),
        ..Default::default()
    })
    .await;
    fake.create_repo("acme/infra");
    assert!(fake.url().ends_with("/api/v3"));
    let gh = GitHub::connect(&token_settings(&fake)).await.unwrap();
    for n in 0..130 {
        gh.create_issue(
            &repo(),
            &NewIssue {
                title: format!("issue {n}"),
                labels: vec!["bulk".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let all = gh
        .list_issues(
            &repo(),
            &IssueQuery {
                labels: vec!["bulk".into()],
                state: Some("open".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 130);
    assert_eq!(all[0].title, "issue 0");
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.path.starts_with("/api/v3/"))
    );
    assert!(fake.requests().iter().any(|r| r.path.contains("page=2")));
}

#[tokio::test]
async fn search_lags_but_label_listing_does_not() {
    let fake = FakeGitHub::start_with(FakeOptions {
        search_lag: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    fake.create_repo("acme/infra");
    let gh = GitHub::connect(&token_settings(&fake)).await.unwrap();
    gh.create_issue(
        &repo(),
        &NewIssue {
            title: "fresh".into(),
            labels: vec!["k:1".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let found = gh
        .search_issues("repo:acme/infra is:issue fresh")
        .await
        .unwrap();
    assert!(found.is_empty(), "search index should lag");
    let listed = gh
        .list_issues(
            &repo(),
            &IssueQuery {
                labels: vec!["k:1".into()],
                state: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    fake.set_search_lag(Duration::ZERO);
    let found = gh
        .search_issues("repo:acme/infra is:issue fresh")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn git_data_commit_branch_and_pull_request() {
    let fake = FakeGitHub::start().await;
    fake.create_repo("acme/infra");
    fake.commit_files(
        "acme/infra",
        "main",
        &[("main.tf", "terraform {}\n")],
        "add tf",
    );
    let gh = GitHub::connect(&token_settings(&fake)).await.unwrap();
    let r = repo();
    let main = gh.git_ref(&r, "heads/main").await.unwrap().unwrap();
    let base = gh.git_commit(&r, &main.object.sha).await.unwrap();
    let blob = gh
        .create_blob(&r, b"terraform { required_version = \"1.9.8\" }\n")
        .await
        .unwrap();
    let tree = gh
        .create_tree(
            &r,
            Some(&base.tree.sha),
            &[TreeEntry::file_with_blob("main.tf", &blob)],
        )
        .await
        .unwrap();
    let commit = gh
        .create_commit(
            &r,
            "Bump terraform",
            &tree.sha,
            std::slice::from_ref(&main.object.sha),
        )
        .await
        .unwrap();
    gh.create_ref(&r, "refs/heads/opsbot/bump", &commit.sha)
        .await
        .unwrap();
    assert!(gh.git_ref(&r, "heads/opsbot/bump").await.unwrap().is_some());
    assert!(gh.git_ref(&r, "heads/nope").await.unwrap().is_none());

    let file = gh
        .file(&r, "main.tf", "opsbot/bump")
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8(file.bytes).unwrap().contains("1.9.8"));

    let cmp = gh.compare(&r, "main", "opsbot/bump").await.unwrap();
    assert_eq!(cmp.total_commits, 1);
    assert_eq!(cmp.files[0].filename, "main.tf");
    assert!(
        cmp.files[0]
            .patch
            .as_deref()
            .unwrap()
            .contains("+terraform { required_version")
    );

    let pr = gh
        .create_pull(
            &r,
            &opsbot_core::github::models::NewPullRequest {
                title: "Bump".into(),
                head: "opsbot/bump".into(),
                base: "main".into(),
                body: "b".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dup = gh
        .create_pull(
            &r,
            &opsbot_core::github::models::NewPullRequest {
                title: "Bump again".into(),
                head: "opsbot/bump".into(),
                base: "main".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(dup.status(), Some(422));
    let open = gh
        .list_pulls(&r, "open", Some("acme:opsbot/bump"))
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].number, pr.number);
    // Pull requests are not issues for list_issues.
    assert!(
        gh.list_issues(&r, &IssueQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
}
