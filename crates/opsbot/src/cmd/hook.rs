//! `opsbot hook install|uninstall`: a plain git `pre-commit` hook that runs
//! `opsbot scan --staged`, for people who do not use the pre-commit framework (they use
//! `.pre-commit-hooks.yaml` instead). The hook directory comes from
//! `git rev-parse --git-path hooks`, so `core.hooksPath` and worktrees are honoured.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::GlobalArgs;

/// Marks a hook file as written by opsbot (so it may be replaced or removed).
const MARKER: &str = "# opsbot-hook: pre-commit";

#[derive(Debug, Args)]
pub struct HookArgs {
    #[command(subcommand)]
    pub command: HookCommand,
}

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Write a git pre-commit hook that blocks commits adding secrets.
    Install(InstallArgs),
    /// Remove the hook written by `opsbot hook install` (restoring a saved one).
    Uninstall(RepoArg),
}

#[derive(Debug, Args)]
pub struct RepoArg {
    /// The repository (any directory inside it).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Replace a pre-commit hook opsbot did not write (it is kept as `pre-commit.opsbot-backup`).
    #[arg(long)]
    pub force: bool,
}

pub async fn run(_global: &GlobalArgs, args: HookArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        HookCommand::Install(a) => install(&a.repo.repo, a.force),
        HookCommand::Uninstall(a) => uninstall(&a.repo),
    }
}

/// The hooks directory git uses for `repo`.
fn hooks_dir(repo: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--git-path", "hooks"])
        .output()
        .context("cannot run git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "{} is not inside a git repository: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let rel = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(if rel.is_absolute() {
        rel
    } else {
        repo.join(rel)
    })
}

/// The hook script. `fallback` is the opsbot that installed it, used when `opsbot` is not
/// on PATH (GUI git clients often have a minimal PATH).
fn hook_script(fallback: Option<&Path>) -> String {
    let fallback = fallback
        .and_then(Path::to_str)
        .map(|p| format!("'{}'", p.replace('\'', r"'\''")))
        .unwrap_or_else(|| "''".to_owned());
    format!(
        "#!/bin/sh\n\
         {MARKER}\n\
         # Installed by `opsbot hook install`; remove with `opsbot hook uninstall`.\n\
         # Blocks the commit when the staged changes add a secret. Bypass once (after\n\
         # checking!) with `git commit --no-verify`, or mark a false positive `opsbot:allow`.\n\
         opsbot_bin=opsbot\n\
         if ! command -v opsbot >/dev/null 2>&1; then\n\
         \x20 opsbot_bin={fallback}\n\
         \x20 if [ -z \"$opsbot_bin\" ] || [ ! -x \"$opsbot_bin\" ]; then\n\
         \x20   echo \"opsbot pre-commit hook: opsbot is not on PATH (install it, or run 'opsbot hook uninstall')\" >&2\n\
         \x20   exit 1\n\
         \x20 fi\n\
         fi\n\
         exec \"$opsbot_bin\" scan --staged\n"
    )
}

fn install(repo: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let dir = hooks_dir(repo)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let hook = dir.join("pre-commit");
    if let Ok(existing) = std::fs::read_to_string(&hook)
        && !existing.contains(MARKER)
    {
        if !force {
            bail!(
                "{} already exists and was not written by opsbot; run `opsbot hook install --force` to replace it (it is kept as pre-commit.opsbot-backup), or call `opsbot scan --staged` from it",
                hook.display()
            );
        }
        let backup = dir.join("pre-commit.opsbot-backup");
        std::fs::rename(&hook, &backup)
            .with_context(|| format!("cannot move {} to {}", hook.display(), backup.display()))?;
        eprintln!("opsbot: saved the previous hook as {}", backup.display());
    }
    let exe = std::env::current_exe().ok();
    // Write beside, then rename: never a half-written hook.
    let tmp = dir.join(".pre-commit.opsbot-tmp");
    std::fs::write(&tmp, hook_script(exe.as_deref()))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    make_executable(&tmp)?;
    std::fs::rename(&tmp, &hook).with_context(|| format!("cannot write {}", hook.display()))?;
    println!("installed {} (runs `opsbot scan --staged`)", hook.display());
    Ok(ExitCode::SUCCESS)
}

fn uninstall(repo: &Path) -> anyhow::Result<ExitCode> {
    let dir = hooks_dir(repo)?;
    let hook = dir.join("pre-commit");
    match std::fs::read_to_string(&hook) {
        Ok(text) if text.contains(MARKER) => {
            std::fs::remove_file(&hook)
                .with_context(|| format!("cannot remove {}", hook.display()))?;
            let backup = dir.join("pre-commit.opsbot-backup");
            if backup.exists() {
                std::fs::rename(&backup, &hook)
                    .with_context(|| format!("cannot restore {}", backup.display()))?;
                println!(
                    "removed the opsbot hook and restored the previous {}",
                    hook.display()
                );
            } else {
                println!("removed {}", hook.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => bail!("{} was not written by opsbot; left as is", hook.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no pre-commit hook in {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", hook.display())),
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_runs_the_staged_scan_and_quotes_the_fallback() {
        let s = hook_script(Some(Path::new("/opt/it's/opsbot")));
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains(MARKER));
        assert!(s.contains("exec \"$opsbot_bin\" scan --staged"));
        assert!(s.contains(r"opsbot_bin='/opt/it'\''s/opsbot'"));
        assert!(hook_script(None).contains("opsbot_bin=''"));
    }
}
