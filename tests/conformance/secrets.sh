#!/usr/bin/env bash
# Conformance of `opsbot scan` on the peers' own rule examples (issue 11).
#
# Scans ${OPSBOT_CORPORA:-../shared/corpora}/secrets (positives/, negatives/, wrapped/; see its
# README for how a file counts: any finding in a file) and prints recall per source and per
# family, negatives flagged per source, and writes the list of misses and of flagged negatives
# to files whose paths it prints. Not part of `cargo test`. Skips (exit 0) when the corpus is
# absent.
#
#   tests/conformance/secrets.sh                    # opsbot only (builds target/release/opsbot)
#   tests/conformance/secrets.sh --quick            # opsbot only, totals + per source + families
#                                                   # with misses; no build if the binary exists
#   tests/conformance/secrets.sh --rules-dir rules  # use the rule files in DIR instead of the
#                                                   # rules built into the binary: edit, rerun,
#                                                   # no rebuild (opsbot --no-builtin-rules)
#   tests/conformance/secrets.sh --family slack     # only that family (repeatable; substring)
#   tests/conformance/secrets.sh --peers            # also secretlint, detect-secrets, kingfisher
#                                                   # (installed from npm/PyPI on first use), one
#                                                   # table for all
#
# Fast edit loop for rule authors (nothing rebuilt):
#   cargo run -q -p opsbot-scan --example check_rules -- rules   # examples, keyword warnings
#   target/debug/examples/check_rules rules                       # same, no rebuild once built
#   tests/conformance/secrets.sh --quick --rules-dir rules --family <family>
# A rule that fails its own examples makes `--rules-dir` stop with the file, rule id and
# problem (the same check as `cargo test -p opsbot-scan --test rules`).
#
# Environment:
#   OPSBOT_BIN        opsbot binary (default target/release/opsbot, built when missing or,
#                     without --quick, rebuilt with cargo build --release -p opsbot)
#   OPSBOT_CORPORA    corpora root (default ../shared/corpora relative to the repository)
#   OPSBOT_PEERS_DIR  where peers are installed (default ~/.cache/opsbot-peers; never the repo)
#   OPSBOT_CONFORMANCE_OUT  where reports go (default target/conformance)
#
# The table also counts negatives flagged without the ones whose text equals a positive of the
# corpus (one peer rule's negative that is another's positive: a scanner that finds the
# positive flags its twin); opsbot-flagged.tsv marks them (equals_a_positive).
#
# Output files (in OPSBOT_CONFORMANCE_OUT): opsbot-misses.tsv (file, family, peer rule, which
# peers find it), opsbot-flagged.tsv (negative, family, rules that fired, line), summary.md
# (the tables). Findings are masked by opsbot; this script never prints a secret.
#
# gitleaks and betterleaks are not run: the registries only offer third-party repackagings
# whose binaries cannot be checked against the upstream releases here. Their figures are in the
# corpus README.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CORPORA="${OPSBOT_CORPORA:-$ROOT/../shared/corpora}"
CORPUS="$CORPORA/secrets"
OUT="${OPSBOT_CONFORMANCE_OUT:-$ROOT/target/conformance}"
PEERS_DIR="${OPSBOT_PEERS_DIR:-$HOME/.cache/opsbot-peers}"

quick=0
peers=0
rules_dir=""
families=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --peers) peers=1 ;;
    --rules-dir) rules_dir="${2:?--rules-dir needs a directory}"; shift ;;
    --rules-dir=*) rules_dir="${1#--rules-dir=}" ;;
    --family) families+=("${2:?--family needs a name}"); shift ;;
    --family=*) families+=("${1#--family=}") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "secrets.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ ! -f "$CORPUS/manifest.tsv" ]; then
  echo "SKIP: secrets corpus not found at $CORPUS (set OPSBOT_CORPORA); nothing measured."
  exit 0
fi
CORPUS="$(cd "$CORPUS" && pwd)"

if [ -n "${OPSBOT_BIN:-}" ]; then
  BIN="$OPSBOT_BIN"
else
  BIN="$ROOT/target/release/opsbot"
  if [ $quick -eq 0 ] || [ ! -x "$BIN" ]; then
    echo "building opsbot (cargo build --release -p opsbot)" >&2
    if ! (cd "$ROOT" && cargo build --release -q -p opsbot); then
      echo "full build failed; building the scanner alone (--no-default-features --features scan)" >&2
      (cd "$ROOT" && cargo build --release -q -p opsbot --no-default-features --features scan)
    fi
  fi
fi
[ -x "$BIN" ] || { echo "secrets.sh: $BIN is not executable" >&2; exit 2; }
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
if [ -n "$rules_dir" ]; then
  rules_dir="$(cd "$rules_dir" && pwd)"
fi

# shellcheck source=tests/conformance/peers.sh
. "$ROOT/tests/conformance/peers.sh"
[ $peers -eq 1 ] && install_peers

mkdir -p "$OUT"
export ROOT CORPUS OUT PEERS_DIR BIN
export RULES_DIR="$rules_dir" QUICK="$quick" PEERS="$peers"
FAMILIES="$(IFS=,; echo "${families[*]:-}")"
export FAMILIES
exec python3 "$ROOT/tests/conformance/secrets.py"
