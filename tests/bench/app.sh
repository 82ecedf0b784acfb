#!/usr/bin/env bash
# Flood benchmark of the GitHub App server (issue 10), loopback only, bounded in count and time.
# Builds `opsbot` in release, then runs tests/bench/app.rs, which floods `opsbot app serve`
# with signed push deliveries against the in-process fake GitHub and prints deliveries/s,
# p50/p99 latency, peak RSS, time to drain, 202s that ended in a completed check run,
# slow-client behaviour and shutdown time.
#
#   tests/bench/app.sh                 # 10 s at 64 connections, 500 slow clients
#   APP_BENCH_SECS=20 tests/bench/app.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p opsbot
OPSBOT_BIN="$PWD/target/release/opsbot" cargo bench -p opsbot-tests --bench app
