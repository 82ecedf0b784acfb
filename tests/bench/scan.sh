#!/usr/bin/env bash
# Benchmark of `opsbot scan` against ripgrep (same files, the rules' keywords), secretlint
# (npm, recommended preset) and detect-secrets (PyPI): medians, MB/s, ratios, recall on
# planted real-format credentials and false positives on harmless look-alike lines; then
# `--staged` on a 100-line change in a 50,000-file repository and peak memory.
#
#   tests/bench/scan.sh            # RUNS=5 for fast tools, SLOW_RUNS=3 for secretlint/detect-secrets
#
# Installs what is missing: ripgrep and GNU time (apt), secretlint (npm, into the cache dir),
# detect-secrets (pip). Everything it builds lives in $OPSBOT_BENCH_DIR (~/.cache/opsbot-bench).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH_DIR="${OPSBOT_BENCH_DIR:-$HOME/.cache/opsbot-bench}"
RUNS="${RUNS:-5}"
SLOW_RUNS="${SLOW_RUNS:-3}"
CORPUS_MB="${CORPUS_MB:-12}"
mkdir -p "$BENCH_DIR"

need_apt=()
command -v rg >/dev/null || need_apt+=(ripgrep)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v git >/dev/null || need_apt+=(git)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} (apt)" >&2
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ ! -x "$BENCH_DIR/npm/node_modules/.bin/secretlint" ]; then
  echo "installing secretlint (npm)" >&2
  mkdir -p "$BENCH_DIR/npm"
  (cd "$BENCH_DIR/npm" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install --no-audit --no-fund --silent secretlint @secretlint/secretlint-rule-preset-recommend >/dev/null)
fi
if ! command -v detect-secrets >/dev/null; then
  echo "installing detect-secrets (pip)" >&2
  python3 -m pip install --quiet detect-secrets
fi

echo "building opsbot (release)" >&2
(cd "$ROOT" && cargo build --release -q -p opsbot)
OPSBOT="$ROOT/target/release/opsbot"

export ROOT BENCH_DIR RUNS SLOW_RUNS CORPUS_MB OPSBOT
exec python3 "$ROOT/tests/bench/scan_bench.py"
