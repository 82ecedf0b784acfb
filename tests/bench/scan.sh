#!/usr/bin/env bash
# Benchmark of `opsbot scan` against ripgrep (same files: the rules' keywords, and `rg -c ''`,
# every line a match, ripgrep reading every byte: the floor of any search) and the peers
# where installed (secretlint, detect-secrets, kingfisher): medians, MB/s, ratios, recall on
# planted real-format credentials and false positives on harmless look-alike lines; then
# `--staged` on a 100-line change in a 50,000-file repository and peak memory (corpus,
# keyword-dense files, a 100 MB single line), ending with one table of issue 11's targets.
#
#   tests/bench/scan.sh            # RUNS=5 for fast tools, SLOW_RUNS=3 for the peers
#   OPSBOT_BIN=/path/to/opsbot tests/bench/scan.sh   # time that binary, build nothing
#   BIG_TREE=/some/tree tests/bench/scan.sh          # large-tree run (default: cargo registry)
#   SKIP_PEERS=1 tests/bench/scan.sh                 # opsbot and ripgrep only
#
# Installs what is missing of ripgrep and GNU time (apt); peers only with INSTALL_PEERS=1.
# Everything it writes lives in $OPSBOT_BENCH_DIR (~/.cache/opsbot-bench).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH_DIR="${OPSBOT_BENCH_DIR:-$HOME/.cache/opsbot-bench}"
RUNS="${RUNS:-5}"
SLOW_RUNS="${SLOW_RUNS:-3}"
CORPUS_MB="${CORPUS_MB:-12}"
mkdir -p "$BENCH_DIR"

PEERS_DIR="${OPSBOT_PEERS_DIR:-$HOME/.cache/opsbot-peers}"

need_apt=()
command -v rg >/dev/null || need_apt+=(ripgrep)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v git >/dev/null || need_apt+=(git)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} (apt)" >&2
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Peers are compared where installed (the conformance runner's $PEERS_DIR, $BENCH_DIR or
# PATH); INSTALL_PEERS=1 installs the missing ones (secretlint from npm, detect-secrets and
# kingfisher-bin from PyPI) into $PEERS_DIR, as `tests/conformance/secrets.sh --peers` does.
if [ "${INSTALL_PEERS:-0}" = 1 ]; then
  # shellcheck source=tests/conformance/peers.sh
  . "$ROOT/tests/conformance/peers.sh"
  install_peers
fi

# OPSBOT_BIN: a binary already built; otherwise the scanner-only release build.
if [ -n "${OPSBOT_BIN:-}" ]; then
  OPSBOT="$OPSBOT_BIN"
else
  echo "building opsbot (release, scanner only)" >&2
  (cd "$ROOT" && cargo build --release -q -p opsbot --no-default-features --features scan)
  OPSBOT="${CARGO_TARGET_DIR:-$ROOT/target}/release/opsbot"
fi

export ROOT BENCH_DIR PEERS_DIR RUNS SLOW_RUNS CORPUS_MB OPSBOT
exec python3 "$ROOT/tests/bench/scan_bench.py"
