//! Runs the fake Terraform registry standalone for manual trials (the README's "try it"):
//!
//! ```text
//! cargo run -p opsbot-tests --bin fake-registry > /tmp/fake-registry.env &
//! . /tmp/fake-registry.env      # OPSBOT_TF_REGISTRY_URL=http://127.0.0.1:PORT
//! ```
//!
//! It serves, on a free 127.0.0.1 port until killed, hashicorp/aws 5.70.0 and 5.80.0,
//! hashicorp/random 3.6.0 and 3.6.3 (signed packages for linux_amd64, linux_arm64,
//! darwin_arm64) and the module terraform-aws-modules/vpc/aws 5.13.0 and 5.16.0, and prints
//! the variable to export as a shell line on stdout. State lives in memory only.

use std::io::Write as _;

use opsbot_tests::fake_registry::FakeRegistry;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let registry = FakeRegistry::start().await;
    let platforms = ["linux_amd64", "linux_arm64", "darwin_arm64"];
    for version in ["5.70.0", "5.80.0"] {
        registry.add_provider("hashicorp", "aws", version, &platforms);
    }
    for version in ["3.6.0", "3.6.3"] {
        registry.add_provider("hashicorp", "random", version, &platforms);
    }
    for version in ["5.13.0", "5.16.0"] {
        registry.add_module("terraform-aws-modules", "vpc", "aws", version);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "export OPSBOT_TF_REGISTRY_URL={}", registry.url())?;
    out.flush()?;
    drop(out);
    eprintln!(
        "fake Terraform registry on {} (hashicorp/aws 5.70.0 5.80.0, hashicorp/random 3.6.0 \
         3.6.3, terraform-aws-modules/vpc/aws 5.13.0 5.16.0); Ctrl-C to stop",
        registry.url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
