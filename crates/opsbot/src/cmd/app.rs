//! `opsbot app`: the GitHub App webhook server (`opsbot-app`) and its tools. Wiring only.
//!
//! As a server or container it listens on `--listen`; the first SIGTERM / Ctrl-C drains
//! (running scans get `[app] shutdown_deadline_secs`, default 20 s), a second stops at once
//! after the same clean-up (cancelled check runs completed as `cancelled`). Inside AWS
//! Lambda (`AWS_LAMBDA_RUNTIME_API` set; a function URL in front) the same binary serves
//! the Lambda runtime instead, scanning inside each request. `--ledger-table` puts the
//! delivery ledger and the sweep's record in DynamoDB, shared by replicas; `redeliver
//! --ledger-table` sweeps once against the same record ([`open_ledger`] opens it for both).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use opsbot_app::dynamodb::DynamoLedger;
use opsbot_app::{AppConfig, AppSettings, AppState, Mode, RedeliverySettings, Shutdown, Sweeper};

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct AppArgs {
    #[command(subcommand)]
    pub command: AppCommand,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Receive GitHub webhooks (push, pull_request, check re-runs) and report an
    /// "opsbot / secrets" check run.
    ///
    /// Needs GITHUB_WEBHOOK_SECRET and the App's GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY
    /// (or GITHUB_APP_PRIVATE_KEY_PATH); GITHUB_API_URL for GitHub Enterprise. Endpoints:
    /// POST /webhook (or /), GET /healthz. Bounded: when the queue is full a delivery is
    /// answered 503 with Retry-After, and the redelivery sweep (every 5 min) asks GitHub to
    /// send it again. Limits and timeouts: the `[app]` table of opsbot.toml.
    ///
    /// Delivery ids are de-duplicated in memory, per process, unless --ledger-table names a
    /// DynamoDB table shared by every replica: then a delivery GitHub sends again to another
    /// replica, or after a restart, is scanned once, and a replica that dies mid-scan
    /// leaves a claim that lapses after `[app] claim_lease_secs` (900); until then a
    /// redelivery of it is answered 503, and the sweep asks for it again.
    Serve(ServeArgs),
    /// Ask GitHub to redeliver the App's webhook deliveries that failed (no answer, 408,
    /// 429, 5xx) or were accepted but never scanned (a crash, a deploy), once each.
    ///
    /// Reads GET /app/hook/deliveries (paged by cursor) and calls
    /// POST /app/hook/deliveries/{id}/attempts. Needs the App credentials. Next to running
    /// replicas (by hand, from cron) give it their --ledger-table, so that it shares their
    /// record of what was asked for and scanned.
    Redeliver(RedeliverArgs),
    /// Sign a webhook payload file with GITHUB_WEBHOOK_SECRET and POST it to a running
    /// server, as GitHub would (for local trials).
    SendTest(SendTestArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (ignored in Lambda). Default: `[app] listen` in opsbot.toml,
    /// else 0.0.0.0:8080.
    #[arg(long, env = "OPSBOT_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// DynamoDB table shared by the replicas as the delivery ledger (scan each delivery id
    /// once, across replicas and restarts) and as the redelivery sweep's record (ask for
    /// each failed attempt once). Hash key `delivery_id` (string), TTL on `expires_at`: the
    /// table of the App's Terraform module. AWS region, credentials and AWS_ENDPOINT_URL
    /// come from the environment as the AWS SDK reads them; the table is checked
    /// (DescribeTable) at start-up. Without it: in memory, per process.
    #[arg(long, env = "OPSBOT_APP_LEDGER_TABLE", value_name = "NAME")]
    pub ledger_table: Option<String>,
}

#[derive(Debug, Args)]
pub struct RedeliverArgs {
    /// How far back to look: 90s, 30m, 6h, 3d (GitHub keeps deliveries for 3 days).
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub since: String,
    /// Successful deliveries younger than this are not checked for a finished scan yet.
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub grace: String,
    /// DynamoDB table of `opsbot app serve --ledger-table` (the replicas' delivery ledger
    /// and their redelivery sweep's record): an attempt some sweeper already asked GitHub to
    /// redeliver is not asked again, what this run asks for is recorded there, and
    /// deliveries the table knows were scanned are not looked up on GitHub. AWS region,
    /// credentials and AWS_ENDPOINT_URL come from the environment as the AWS SDK reads
    /// them; the table is checked (DescribeTable) first. Without it: this run's own record
    /// only, so it may ask again for what a running replica already asked for.
    #[arg(long, env = "OPSBOT_APP_LEDGER_TABLE", value_name = "NAME")]
    pub ledger_table: Option<String>,
}

#[derive(Debug, Args)]
pub struct SendTestArgs {
    /// The payload file, sent byte for byte (e.g. a GitHub example named
    /// `<event>.<action>.json`).
    pub file: PathBuf,
    /// Where the server listens.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080/webhook",
        value_name = "URL"
    )]
    pub url: String,
    /// X-GitHub-Event (default: the file name up to the first dot).
    #[arg(long)]
    pub event: Option<String>,
}

pub async fn run(global: &GlobalArgs, args: AppArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AppCommand::Serve(serve) => run_serve(global, serve).await,
        AppCommand::Redeliver(r) => run_redeliver(r).await,
        AppCommand::SendTest(t) => run_send_test(t).await,
    }
}

async fn run_serve(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file: AppSettings = global.config()?.section("app")?;
    let secret = opsbot_app::webhook_secret_from_env()?;
    let settings = super::github_settings()?;
    let mut config = AppConfig::new(secret);
    config.redelivery = Some(RedeliverySettings::default());
    file.apply(&mut config);
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| opsbot_app::DEFAULT_LISTEN.to_owned());
    let ledger = open_ledger(args.ledger_table.as_deref()).await?;
    let state = |config: AppConfig| -> anyhow::Result<AppState> {
        let worker = opsbot_app::worker(&settings)?;
        Ok(match &ledger {
            Some(ledger) => AppState::with_shared_ledger(config, worker, ledger.clone()),
            None => AppState::new(config, worker),
        })
    };
    if opsbot_app::in_lambda() {
        // Lambda freezes the process once the response is sent: scan within the request.
        config.mode = Mode::Inline;
        config.redelivery = None;
        let state = state(config)?;
        tracing::info!("serving GitHub webhooks through the Lambda runtime");
        opsbot_app::run_lambda(state)
            .await
            .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let state = state(config)?;
    // Before the socket accepts anything: a SIGTERM that arrives once `/healthz` answers is
    // a drain, never the default action (killed).
    let signals = Signals::install();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("listening address")?;
    tracing::info!(%addr, "serving GitHub webhooks on POST /webhook");
    eprintln!("opsbot app: listening on http://{addr} (POST /webhook, GET /healthz)");
    let shutdown = Shutdown::default();
    tokio::spawn(watch_signals(signals, shutdown.clone()));
    opsbot_app::serve_with(listener, state, shutdown)
        .await
        .context("webhook server")?;
    Ok(ExitCode::SUCCESS)
}

/// The DynamoDB delivery ledger named by `--ledger-table` (checked with DescribeTable), or
/// `None` without one (a blank name is none). `serve` and `redeliver` both open it here.
async fn open_ledger(table: Option<&str>) -> anyhow::Result<Option<Arc<DynamoLedger>>> {
    let Some(table) = table.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let ledger = opsbot_app::dynamodb::connect_from_env(table)
        .await
        .context("--ledger-table")?;
    tracing::info!(table, "delivery ledger: DynamoDB (shared by replicas)");
    Ok(Some(Arc::new(ledger)))
}

async fn run_redeliver(args: RedeliverArgs) -> anyhow::Result<ExitCode> {
    let since = opsbot_app::redeliver::parse_duration(&args.since)
        .map_err(|e| anyhow::anyhow!("--since {e}"))?;
    let grace = opsbot_app::redeliver::parse_duration(&args.grace)
        .map_err(|e| anyhow::anyhow!("--grace {e}"))?;
    let settings = super::github_settings()?;
    let worker = opsbot_app::worker(&settings)?;
    let ledger = open_ledger(args.ledger_table.as_deref()).await?;
    let mut sweeper = Sweeper::new(
        worker.app().clone(),
        RedeliverySettings {
            grace,
            window: since,
            ..RedeliverySettings::default()
        },
    );
    if let Some(ledger) = &ledger {
        // The serve sweep's record: an attempt a replica (or an earlier run) asked for is
        // not asked again, and what this run asks for is recorded for them.
        sweeper = sweeper.with_log(ledger.clone());
    }
    eprintln!(
        "opsbot app redeliver: reading the App's deliveries of the last {}",
        args.since
    );
    // "Finished here": this process scans nothing. What replicas scanned, the sweeper reads
    // from the ledger itself (`RedeliveryLog::scanned`), as the serve sweep does beside its
    // own in-memory record.
    let report = sweeper
        .sweep(&worker, since, |_| false)
        .await
        .context("redelivery")?;
    println!(
        "{} deliveries listed ({} distinct), {} successful ones checked for a finished scan, {} redelivered",
        report.listed,
        report.distinct,
        report.verified,
        report.redelivered.len()
    );
    if let Some(ledger) = &ledger {
        println!(
            "ledger {}: {} known to be scanned (not read on GitHub), {} already asked for by another sweeper",
            ledger.table(),
            report.known_scanned,
            report.already_asked.len()
        );
    }
    for (guid, why) in &report.redelivered {
        println!("  redelivered {guid}: {why}");
    }
    for guid in &report.already_asked {
        println!("  not asked again {guid}: another sweeper already asked for this attempt");
    }
    for e in &report.errors {
        eprintln!("  error: {e}");
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run_send_test(args: SendTestArgs) -> anyhow::Result<ExitCode> {
    let secret = opsbot_app::webhook_secret_from_env()?;
    let sent =
        opsbot_app::send_test::send_file(&args.url, &secret, &args.file, args.event.as_deref())
            .await?;
    println!(
        "{} delivery {} → {} {}",
        sent.event, sent.delivery, sent.status, sent.body
    );
    Ok(if (200..300).contains(&sent.status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// SIGTERM and SIGINT, registered with the runtime as soon as this is made (a spawned
/// task registers only when it first runs, later than the server may already answer).
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next SIGTERM or SIGINT (Ctrl-C elsewhere).
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(&mut self.term) => {},
                () = next(&mut self.int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The first SIGTERM / Ctrl-C asks for a drain, the second for an immediate stop.
async fn watch_signals(mut signals: Signals, shutdown: Shutdown) {
    loop {
        signals.recv().await;
        if shutdown.requested.is_cancelled() {
            tracing::warn!("second shutdown request: cancelling running scans now");
            eprintln!("opsbot app: stopping now (running scans are completed as cancelled)");
        } else {
            tracing::info!("shutdown requested: finishing running scans");
            eprintln!("opsbot app: shutting down (a second signal stops at once)");
        }
        shutdown.request();
    }
}
