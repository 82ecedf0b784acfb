//! `opsbot app serve`: the GitHub App webhook server (`opsbot-app`). Wiring only.
//!
//! As a server or container it listens on `--listen` and drains in-flight scans on
//! SIGTERM / Ctrl-C. Inside AWS Lambda (`AWS_LAMBDA_RUNTIME_API` set; a function URL in
//! front) the same binary serves the Lambda runtime instead, scanning inside each request.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use opsbot_app::{AppConfig, AppSettings, Mode};

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
    /// POST /webhook (or /), GET /healthz.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (ignored in Lambda). Default: `[app] listen` in opsbot.toml,
    /// else 0.0.0.0:8080.
    #[arg(long, env = "OPSBOT_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
}

pub async fn run(global: &GlobalArgs, args: AppArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AppCommand::Serve(serve) => run_serve(global, serve).await,
    }
}

async fn run_serve(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file: AppSettings = global.config()?.section("app")?;
    let secret = opsbot_app::webhook_secret_from_env()?;
    let settings = super::github_settings()?;
    let mut config = AppConfig::new(secret);
    if let Some(n) = file.max_concurrent_scans {
        config.max_concurrent_scans = n;
    }
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| opsbot_app::DEFAULT_LISTEN.to_owned());
    if opsbot_app::in_lambda() {
        // Lambda freezes the process once the response is sent: scan within the request.
        config.mode = Mode::Inline;
        let state = opsbot_app::app_state(config, &settings)?;
        tracing::info!("serving GitHub webhooks through the Lambda runtime");
        opsbot_app::run_lambda(state)
            .await
            .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let state = opsbot_app::app_state(config, &settings)?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("listening address")?;
    tracing::info!(%addr, "serving GitHub webhooks on POST /webhook");
    eprintln!("opsbot app: listening on http://{addr} (POST /webhook, GET /healthz)");
    opsbot_app::serve_until(listener, state, shutdown_signal())
        .await
        .context("webhook server")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM (what container runtimes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested: finishing scans in flight");
}
