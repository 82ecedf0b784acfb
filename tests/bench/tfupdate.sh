#!/usr/bin/env bash
# Benchmark `opsbot tfupdate` on a generated repository of 2,000 .tf files over 200
# modules: bump Terraform + one provider with the release binary against the fake
# registry and fake GitHub on 127.0.0.1. Prints median times and request counts.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p opsbot
OPSBOT_BIN="$PWD/target/release/opsbot" cargo bench -p opsbot-tests --bench tfupdate
