//! opsbot-tfupdate: bumps Terraform, provider and module version pins in `.tf` files
//! (tfupdate-compatible, format-preserving), looks versions up in Terraform registries and
//! GitHub releases, refreshes `.terraform.lock.hcl` hashes, and plans the daily PR job.
//!
//! Pure logic (`constraint`, `pins`, `rewrite`, `module_source`, `plan`) is separate from
//! I/O (`walk` for files, `registry` for HTTP, `lock` for downloads).

pub mod bump;
pub mod constraint;
pub mod github;
pub mod hash;
pub mod lock;
pub mod module_source;
pub mod pins;
pub mod plan;
pub mod pr;
pub mod registry;
pub mod release;
pub mod rewrite;
pub mod signature;
pub mod walk;

pub use constraint::{Style, TfVersion};
pub use pins::{ParseError, Pin, PinKind, ProviderAddress};
pub use rewrite::{FileRewrite, PinNote, PinRewrite, ProviderSpec, Target};
