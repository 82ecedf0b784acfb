//! Runs the fake Terraform registry standalone for manual trials (the README's "try it"):
//!
//! ```text
//! cargo run -p opsbot-tests --bin fake-registry > /tmp/fake-registry.env &
//! . /tmp/fake-registry.env      # OPSBOT_TF_REGISTRY_URL=http://127.0.0.1:PORT
//! ```
//!
//! It serves, on a free 127.0.0.1 port until killed, hashicorp/aws 5.70.0 and 5.80.0,
//! hashicorp/random 3.6.0 and 3.6.3, hashicorp/null 3.2.1 and 3.2.2 (signed packages for
//! linux_amd64, linux_arm64, darwin_arm64) and the module terraform-aws-modules/vpc/aws
//! 5.13.0 and 5.16.0, and prints the variables to export as shell lines on stdout. State
//! lives in memory only.
//!
//! With `--https` it also serves the same registry as `registry.terraform.io` and
//! `registry.opentofu.org` through an HTTPS proxy on 127.0.0.1 ([`TlsFront`]) and prints
//! `HTTPS_PROXY` and `SSL_CERT_FILE` too, so `terraform providers lock`, `tofu` or
//! tfupdate can be pointed at it without any other switch.

use std::io::Write as _;

use opsbot_tests::fake_registry::{FakeRegistry, TlsFront};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let https = std::env::args().skip(1).any(|a| a == "--https");
    let registry = FakeRegistry::start().await;
    let platforms = ["linux_amd64", "linux_arm64", "darwin_arm64"];
    for version in ["5.70.0", "5.80.0"] {
        registry.add_provider("hashicorp", "aws", version, &platforms);
    }
    for version in ["3.6.0", "3.6.3"] {
        registry.add_provider("hashicorp", "random", version, &platforms);
    }
    for version in ["3.2.1", "3.2.2"] {
        registry.add_provider("hashicorp", "null", version, &platforms);
    }
    for version in ["5.13.0", "5.16.0"] {
        registry.add_module("terraform-aws-modules", "vpc", "aws", version);
    }
    let front = if https {
        let front = TlsFront::start(&[
            ("registry.terraform.io", &registry),
            ("registry.opentofu.org", &registry),
        ])
        .await
        .map_err(std::io::Error::other)?;
        Some(front)
    } else {
        None
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "export OPSBOT_TF_REGISTRY_URL={}", registry.url())?;
    if let Some(front) = &front {
        for (k, v) in front.client_env() {
            writeln!(out, "export {k}='{v}'")?;
        }
    }
    out.flush()?;
    drop(out);
    eprintln!(
        "fake Terraform registry on {} (hashicorp/aws 5.70.0 5.80.0, hashicorp/random 3.6.0 \
         3.6.3, hashicorp/null 3.2.1 3.2.2, terraform-aws-modules/vpc/aws 5.13.0 5.16.0){}; \
         Ctrl-C to stop",
        registry.url(),
        if front.is_some() {
            ", also as https://registry.terraform.io and https://registry.opentofu.org through HTTPS_PROXY"
        } else {
            ""
        }
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
