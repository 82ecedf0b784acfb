#!/usr/bin/env bash
# Conformance: run every case of tfupdate's own table tests
# (${OPSBOT_CORPORA:-../shared/corpora}/tfupdate) through `opsbot tfupdate` and compare
# exit codes and files byte for byte. Lock rows use the fake registry behind an HTTPS
# front as registry.terraform.io / registry.opentofu.org. Prints a table per case file
# and every failure; skips with a message when the corpus is absent.
#   tests/conformance/tfupdate.sh [--filter SUBSTRING] [-v]
# OPSBOT_BIN=path runs that binary instead of building target/debug/opsbot.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${OPSBOT_BIN:-}" ]]; then
  # target/ may be shared with other builds (another feature set writes the same
  # target/debug/opsbot): run a private copy of the binary built here, checked to have
  # the `tfupdate` subcommand.
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  for _ in 1 2 3; do
    cargo build -q -p opsbot
    cp target/debug/opsbot "$tmp/opsbot"
    if "$tmp/opsbot" tfupdate --help >/dev/null 2>&1; then
      break
    fi
    rm -f "$tmp/opsbot"
  done
  [[ -x "$tmp/opsbot" ]] || { echo "tfupdate.sh: target/debug/opsbot has no tfupdate subcommand" >&2; exit 2; }
  OPSBOT_BIN="$tmp/opsbot"
fi
cargo run -q -p opsbot-tests --example tfupdate-conformance -- --opsbot "$OPSBOT_BIN" "$@"
