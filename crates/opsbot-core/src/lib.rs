//! opsbot-core: what every opsbot job shares — configuration loading, logging setup and
//! the one GitHub client (octocrab underneath) with authentication, retries and the
//! markers jobs use to find their own issues and pull requests again.
//!
//! Invariant: this crate knows no job. Jobs depend on it, never the other way round.

#[cfg(feature = "aws")]
pub mod aws_error;
pub mod config;
pub mod github;
#[cfg(feature = "aws")]
pub mod secret_source;
pub mod telemetry;

pub use config::{Config, ConfigError};
#[cfg(feature = "github")]
pub use github::{GitHub, GitHubError};
pub use github::{GitHubSettings, RepoRef};
