//! `opsbot config`: shows the configuration opsbot would use (file, GitHub endpoint,
//! repository, how it authenticates) and fails with a one-line error when any of it is
//! invalid. Secrets are never printed.

use std::process::ExitCode;

use clap::Args;
use opsbot_core::github::Credentials;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct ConfigArgs {}

pub async fn run(global: &GlobalArgs, _args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = global.config()?;
    let settings = super::github_settings()?;
    println!("config file:  {}", config.origin());
    println!("GitHub API:   {}", settings.api_url);
    println!(
        "repository:   {}",
        settings.repository.as_ref().map_or_else(
            || "(not set: GITHUB_REPOSITORY)".to_string(),
            ToString::to_string
        )
    );
    let auth = match &settings.credentials {
        Credentials::Token(_) => "token (GITHUB_TOKEN)".to_string(),
        Credentials::App {
            app_id,
            installation_id,
            ..
        } => match installation_id {
            Some(id) => format!("GitHub App {app_id}, installation {id}"),
            None => format!("GitHub App {app_id}, installation looked up from the repository"),
        },
        Credentials::Anonymous => {
            "none (set GITHUB_TOKEN or the GITHUB_APP_* variables)".to_string()
        }
    };
    println!("auth:         {auth}");
    println!(
        "retries:      up to {} attempts within {:?}",
        settings.retry.max_attempts, settings.retry.budget
    );
    Ok(ExitCode::SUCCESS)
}
