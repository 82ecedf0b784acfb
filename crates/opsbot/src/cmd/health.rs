//! `opsbot health`: the Lambda's logic from the command line (`handle`), and the safety net
//! for missed deliveries (`reconcile`). Wiring only; the work is in `opsbot-health`.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use opsbot_core::github::GitHub;
use opsbot_health::event::HealthEvent;
use opsbot_health::github::GitHubTracker;
use opsbot_health::reconcile::{HealthApi, ReconcileQuery, caller_account};
use opsbot_health::render::IssueState;
use opsbot_health::service::EventResult;
use opsbot_health::sns::SnsNotifier;
use opsbot_health::{
    HealthConfig, HealthService, InvocationReport, IssueAction, IssuePlan, RouteDecision,
    SAMPLE_EVENT, parse_input_bytes,
};

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(subcommand)]
    pub command: HealthCommand,
}

#[derive(Debug, Subcommand)]
pub enum HealthCommand {
    /// File a Lambda payload (an EventBridge event, SNS/SQS records, or an array of those)
    /// exactly as the Lambda would.
    Handle(HandleArgs),
    /// Find open and upcoming events of the last N days with the AWS Health API and file or
    /// update those whose issue is missing or out of date (missed deliveries).
    Reconcile(ReconcileArgs),
    /// Drain a dead-letter queue (SQS): file every message through the Lambda's handler
    /// and delete each one only once it is filed. Messages that fail stay in the queue.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`): the Lambda's
    /// on-failure destination, or the EventBridge target's DLQ.
    #[arg(long, value_name = "URL")]
    pub queue_url: String,

    /// Stop after this many messages.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<usize>,

    /// Seconds a message stays hidden while it is filed; one that fails reappears after.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(i32).range(0..=43_200))]
    pub visibility_timeout: i32,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HandleArgs {
    /// The payload file (`-` for stdin). Without it, `--dry-run` uses a built-in sample
    /// (an EC2 instance retirement).
    #[arg(value_name = "EVENT.json")]
    pub event: Option<PathBuf>,

    /// Print the issue that would be opened or updated; do not contact GitHub or SNS.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Look at events last updated within this many days.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=90))]
    pub days: u32,

    /// Use the organizational view (from the management or a delegated-admin account).
    #[arg(long)]
    pub organization: bool,

    /// Regions of the AWS Health API endpoints, tried in order: the next one is used when
    /// a call cannot reach its endpoint or is answered 5xx or throttled (AWS Health is
    /// active in us-east-1, passive in us-east-2). Repeat or separate with commas.
    #[arg(long = "region", value_delimiter = ',', default_values_t = ["us-east-1".to_string(), "us-east-2".to_string()])]
    pub regions: Vec<String>,

    /// The receiving account (this account; the management account with
    /// --organization), part of each event's key like EventBridge's `account`. Asked of
    /// STS (GetCallerIdentity) when not given.
    #[arg(long, env = "OPSBOT_AWS_ACCOUNT_ID")]
    pub account: Option<String>,

    /// List the events found and the issues they would get; do not contact GitHub.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, args: HealthArgs) -> anyhow::Result<ExitCode> {
    let file = global.config()?;
    let config: HealthConfig = file.section("health")?;
    config.validate(file.origin())?;
    match args.command {
        HealthCommand::Handle(args) => handle(config, args).await,
        HealthCommand::Reconcile(args) => reconcile(config, args).await,
        HealthCommand::Replay(args) => replay(config, args).await,
    }
}

async fn replay(config: HealthConfig, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    use opsbot_health::replay::{ReplayOptions, replay, sqs_client};
    let service = live_service(config).await?;
    let sqs = sqs_client(&args.queue_url).await;
    let options = ReplayOptions {
        max_messages: args.max_messages,
        visibility_timeout_secs: args.visibility_timeout,
    };
    let json = args.json;
    let report = replay(&service, &sqs, &args.queue_url, &options, |m| {
        if !json {
            let what = if m.deleted { "deleted" } else { "KEPT" };
            eprintln!("opsbot: message {}: {what}: {}", m.message_id, m.summary);
        }
    })
    .await
    .context("cannot replay the queue")?;
    if json {
        emit(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        emit(&format!(
            "{} message(s) received, {} filed and deleted, {} kept in the queue\n",
            report.received, report.deleted, report.kept
        ))?;
    }
    Ok(if report.kept > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn default_repo() -> Option<String> {
    std::env::var("GITHUB_REPOSITORY")
        .ok()
        .filter(|r| !r.trim().is_empty())
}

async fn handle(config: HealthConfig, args: HandleArgs) -> anyhow::Result<ExitCode> {
    let source = match args.event.as_deref() {
        None => "the built-in sample".to_string(),
        Some(p) if p.as_os_str() == "-" => "stdin".to_string(),
        Some(p) => p.display().to_string(),
    };
    let bytes = match args.event.as_deref() {
        None if args.dry_run => {
            eprintln!("opsbot: no EVENT.json given; using the built-in sample event");
            SAMPLE_EVENT.as_bytes().to_vec()
        }
        None => {
            bail!("give an EVENT.json (or `-` for stdin); only --dry-run has a built-in sample")
        }
        Some(path) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read stdin")?;
            buf
        }
        Some(path) => std::fs::read(path).with_context(|| format!("{}", path.display()))?,
    };

    if args.dry_run {
        let parsed = parse_input_bytes(&bytes);
        let out: Vec<DryRun> = parsed.events.iter().map(|e| dry_run(&config, e)).collect();
        let errors: Vec<String> = parsed.errors.iter().map(|e| e.to_string()).collect();
        if args.json {
            let events: Vec<serde_json::Value> = out.iter().map(DryRun::to_json).collect();
            let doc = serde_json::json!({ "events": events, "input_errors": errors });
            emit(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
        } else {
            let mut text = String::new();
            for (i, item) in out.iter().enumerate() {
                item.print(i + 1, out.len(), &mut text);
            }
            emit(&text)?;
            for err in &errors {
                eprintln!("opsbot: unusable input in {source}: {err}");
            }
        }
        return Ok(if errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    let payload: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(err) => bail!("the payload is not valid JSON: {err}"),
    };
    let service = live_service(config).await?;
    let report = service.handle(&payload).await;
    print_report(&report, args.json)?;
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn live_service(
    config: HealthConfig,
) -> anyhow::Result<HealthService<GitHubTracker, Option<SnsNotifier>>> {
    opsbot_core::github::install_crypto_provider();
    let settings = super::github_settings()?;
    let github = GitHub::connect(&settings)
        .await
        .context("cannot connect to GitHub")?;
    let notifier = match std::env::var("OPSBOT_SNS_TOPIC_ARN") {
        Ok(topic) if !topic.trim().is_empty() => Some(SnsNotifier::from_env(topic.trim()).await),
        _ => None,
    };
    Ok(HealthService {
        tracker: GitHubTracker::new(github),
        notifier,
        config,
        default_repo: default_repo(),
    })
}

/// What `--dry-run` decides for one event: the plan against a repository with no issue for
/// it yet.
struct DryRun {
    event: HealthEvent,
    decision: RouteDecision,
    plan: Option<IssuePlan>,
}

fn dry_run(config: &HealthConfig, event: &HealthEvent) -> DryRun {
    let repo = default_repo().unwrap_or_else(|| PLACEHOLDER_REPO.to_string());
    let decision = config.route(event, Some(&repo));
    let plan = match &decision {
        RouteDecision::File(target) => Some(opsbot_health::plan(event, target, &[])),
        _ => None,
    };
    DryRun {
        event: event.clone(),
        decision,
        plan,
    }
}

const PLACEHOLDER_REPO: &str = "OWNER/REPO";

impl DryRun {
    fn to_json(&self) -> serde_json::Value {
        let e = &self.event;
        let mut item = serde_json::json!({
            "arn": e.arn,
            "service": e.service,
            "event_type_code": e.event_type_code,
            "status": e.status.as_str(),
        });
        match &self.decision {
            RouteDecision::Ignore { reason } => {
                item["decision"] = "ignore".into();
                item["reason"] = reason.clone().into();
            }
            RouteDecision::NoTarget => item["decision"] = "no_target".into(),
            RouteDecision::File(target) => {
                item["decision"] = "file".into();
                item["repo"] = target.repo.clone().into();
                item["key"] = target.key(e).into();
                item["state"] = serde_json::to_value(IssueState::from_event(e, target.grouping))
                    .unwrap_or_default();
                if let Some(plan) = &self.plan {
                    item["actions"] = serde_json::to_value(&plan.actions).unwrap_or_default();
                }
            }
        }
        item
    }

    fn print(&self, i: usize, n: usize, out: &mut String) {
        let e = &self.event;
        let _ = writeln!(
            out,
            "Event {i}/{n}: {} {} ({})\n  {}",
            e.service, e.event_type_code, e.status, e.arn
        );
        match &self.decision {
            RouteDecision::Ignore { reason } => {
                let _ = writeln!(out, "  ignored by configuration: {reason}");
            }
            RouteDecision::NoTarget => {
                let _ = writeln!(out, "  no target repository");
            }
            RouteDecision::File(target) => {
                let note = if target.repo == PLACEHOLDER_REPO {
                    " (set GITHUB_REPOSITORY or health.repo)"
                } else {
                    ""
                };
                for action in self.plan.iter().flat_map(|p| p.actions.iter()) {
                    let IssueAction::Create { draft, then_close } = action else {
                        continue;
                    };
                    let closing = if *then_close {
                        " and close it (the event is already closed)"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "  would open an issue in {}{note}{closing}",
                        target.repo
                    );
                    let _ = writeln!(out, "  title:     {}", draft.title);
                    let _ = writeln!(out, "  labels:    {}", draft.labels.join(", "));
                    let assignees = if draft.assignees.is_empty() {
                        "—".to_string()
                    } else {
                        draft.assignees.join(", ")
                    };
                    let _ = writeln!(out, "  assignees: {assignees}");
                    let _ = writeln!(out, "  ---- body ----");
                    for line in draft.body.lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                    let _ = writeln!(out, "  --------------");
                }
                let _ = writeln!(
                    out,
                    "  (dry run: GitHub not contacted. If the issue already exists, a redelivery \
                     of this version changes nothing and a later version adds one comment.)"
                );
            }
        }
    }
}

fn print_report(report: &InvocationReport, json: bool) -> anyhow::Result<()> {
    if json {
        return emit(&(serde_json::to_string_pretty(report)? + "\n"));
    }
    let mut out = String::new();
    for event in &report.events {
        let _ = match event {
            EventResult::Filed {
                arn,
                repo,
                number,
                outcome,
                ..
            } => {
                let number = number.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
                writeln!(out, "{outcome:<12} {repo}#{number} {arn}")
            }
            EventResult::Ignored { arn, reason } => {
                writeln!(out, "{:<12} {arn} ({reason})", "ignored")
            }
            EventResult::Failed { arn, error } => writeln!(out, "{:<12} {arn}: {error}", "FAILED"),
        };
    }
    for err in &report.input_errors {
        let _ = writeln!(out, "{:<12} {err}", "UNUSABLE");
    }
    emit(&out)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(err).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

async fn reconcile(config: HealthConfig, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let api = HealthApi::from_env(&args.regions).await;
    let account = match args.account.clone() {
        Some(account) => Some(account),
        None => Some(
            caller_account()
                .await
                .context("cannot tell which account this is (or pass --account)")?,
        ),
    };
    let query = ReconcileQuery::new(args.days, args.organization, account);
    if args.dry_run {
        let fetched = api
            .fetch_events(&query)
            .await
            .context("cannot read events from the AWS Health API")?;
        eprintln!(
            "opsbot: {} event(s) updated in the last {} day(s) (AWS Health in {}); {} could \
             not be described",
            fetched.events.len(),
            args.days,
            fetched.region,
            fetched.incomplete.len()
        );
        let items: Vec<DryRun> = fetched.events.iter().map(|e| dry_run(&config, e)).collect();
        if args.json {
            let docs: Vec<serde_json::Value> = items.iter().map(DryRun::to_json).collect();
            emit(&(serde_json::to_string_pretty(&docs)? + "\n"))?;
        } else {
            let mut text = String::new();
            for (i, item) in items.iter().enumerate() {
                item.print(i + 1, items.len(), &mut text);
            }
            emit(&text)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let service = live_service(config).await?;
    let report = opsbot_health::reconcile::reconcile(&service, &api, &query)
        .await
        .context("cannot read events from the AWS Health API")?;
    let failed = report.failed();
    if args.json {
        emit(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        let mut out = String::new();
        for h in &report.healed {
            let _ = writeln!(
                out,
                "{:<12} {}#{} {} (outside the window)",
                h.outcome, h.repo, h.number, h.arn
            );
        }
        for r in &report.reminders {
            let _ = writeln!(out, "{:<12} {r}", "reminded");
        }
        for i in &report.incomplete {
            let _ = writeln!(
                out,
                "{:<12} {} ({}): not filed this run",
                "INCOMPLETE", i.arn, i.error
            );
        }
        for e in &report.errors {
            let _ = writeln!(out, "{:<12} {e}", "FAILED");
        }
        eprintln!(
            "opsbot: {} event(s) in the window (AWS Health in {}), {} issue(s) healed, {} \
             reminder(s)",
            report.events.len(),
            report.region,
            report.healed.len(),
            report.reminders.len()
        );
        let events = InvocationReport {
            events: report.events,
            ..InvocationReport::default()
        };
        print_report(&events, false)?;
        emit(&out)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
