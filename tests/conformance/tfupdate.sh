#!/usr/bin/env bash
# Conformance: run every case of tfupdate's own table tests
# (${OPSBOT_CORPORA:-../shared/corpora}/tfupdate) through `opsbot tfupdate` and compare
# exit codes and files byte for byte. Lock rows use the fake registry behind an HTTPS
# front as registry.terraform.io / registry.opentofu.org. Prints a table per case file
# and every failure; skips with a message when the corpus is absent.
#   tests/conformance/tfupdate.sh [--filter SUBSTRING] [-v]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p opsbot
cargo run -q -p opsbot-tests --example tfupdate-conformance -- --opsbot target/debug/opsbot "$@"
