//! The one GitHub client every opsbot job uses.
//!
//! octocrab does authentication (token, App JWT, installation tokens that it refreshes),
//! base-URL handling (`/api/v3` prefixes for GitHub Enterprise) and the HTTP transport.
//! This module adds what octocrab leaves to callers: a bounded retry policy
//! ([`retry`]), errors that say which call failed and why ([`GitHubError`]), pagination
//! that keeps working under a path prefix, a request counter, and lenient models
//! ([`models`]) that only require the fields opsbot reads.

#[cfg(feature = "github")]
mod api;
#[cfg(feature = "github")]
mod client;
pub mod marker;
pub mod models;
pub mod retry;
pub mod settings;

#[cfg(feature = "github")]
pub use client::*;
pub use retry::RetryPolicy;
pub use settings::{Credentials, GitHubSettings, RepoRef, SettingsError};
