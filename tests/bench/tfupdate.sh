#!/usr/bin/env bash
# Benchmark `opsbot tfupdate` with the release binary against the fake registry and fake
# GitHub on 127.0.0.1. Prints median times and request counts.
#   files: a generated repository of 2,000 .tf files over 200 modules: bump Terraform and
#          one provider.
#   roots: one repository with 60 Terraform roots (3 providers and a lock file each): one
#          `opsbot tfupdate pr` run updates every pin and lock file, one registry request
#          per distinct lookup (asserted), per PR grouping `none` and `all`.
#   tests/bench/tfupdate.sh [files|roots]      (default: both)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p opsbot
OPSBOT_BIN="$PWD/target/release/opsbot" cargo bench -p opsbot-tests --bench tfupdate -- "$@"
