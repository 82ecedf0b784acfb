#!/usr/bin/env bash
# Benchmark of `opsbot scan --git --all` (history mode, issue 11) on a repository with a long,
# real history. Not part of `cargo test`.
#
#   tests/bench/history.sh [--runs N] [--repo DIR] [--crates "tokio regex ..."]
#
# Without --repo it builds (once, cached in ~/.cache/opsbot-bench/history-<crates>) a git
# repository whose history is the published history of real crates from crates.io: every
# released version of each crate, oldest first, committed on one branch per crate (the
# crates' own source trees, as their authors released them). Give --repo to time any other
# repository instead (a clone of your monorepo, say).
#
# Prints, as medians over N runs (default 5): opsbot's wall time and MB/s over the distinct
# file versions it scanned, and the time of `git cat-file --batch-all-objects --batch`
# (decompressing every object once: the floor any history scanner pays) with opsbot's ratio
# to it; with `kingfisher` on PATH or installed by `tests/conformance/secrets.sh --peers`
# (kingfisher-bin from PyPI), its time on the same repository too. Peak RSS of one opsbot run via /usr/bin/time when present.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=5
repo=""
crates="tokio regex serde_json clap"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --repo) repo="$2"; shift 2 ;;
    --crates) crates="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "history.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
bin="${OPSBOT_BIN:-$PWD/target/release/opsbot}"
if [ -z "${OPSBOT_BIN:-}" ]; then
  cargo build --release -q -p opsbot --no-default-features --features scan
fi

build_repo() {
  local dir="$1"
  local tmp="$dir.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  git -C "$tmp" init -q -b main
  export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.org
  export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.org
  git -C "$tmp" commit -q --allow-empty -m root
  for crate in $crates; do
    local prefix
    case ${#crate} in
      1) prefix="1" ;;
      2) prefix="2" ;;
      3) prefix="3/${crate:0:1}" ;;
      *) prefix="${crate:0:2}/${crate:2:2}" ;;
    esac
    # Released (not yanked) versions, in publication order as the index lists them.
    mapfile -t versions < <(curl -fsS "https://index.crates.io/$prefix/$crate" |
      python3 -c 'import json,sys
for l in sys.stdin:
    e=json.loads(l)
    if not e.get("yanked"): print(e["vers"])')
    echo "history.sh: $crate: ${#versions[@]} versions" >&2
    git -C "$tmp" checkout -q --orphan "$crate" main
    local n=0
    for v in "${versions[@]}"; do
      local f="$HOME/.cache/opsbot-bench/crates/$crate-$v.crate"
      mkdir -p "$(dirname "$f")"
      [ -s "$f" ] || curl -fsS -o "$f" "https://static.crates.io/crates/$crate/$crate-$v.crate" || continue
      git -C "$tmp" rm -rqf --ignore-unmatch . >/dev/null
      tar -xzf "$f" -C "$tmp" --strip-components=1 2>/dev/null || continue
      rm -f "$tmp/.cargo_vcs_info.json"
      git -C "$tmp" add -Af . >/dev/null
      git -C "$tmp" commit -q --allow-empty -m "$crate $v"
      n=$((n + 1))
      if [ $((n % 25)) -eq 0 ]; then echo "history.sh: $crate: $n/${#versions[@]}" >&2; fi
    done
  done
  git -C "$tmp" checkout -q main
  git -C "$tmp" gc -q
  mv "$tmp" "$dir"
}

if [ -z "$repo" ]; then
  repo="$HOME/.cache/opsbot-bench/history-$(echo "$crates" | tr ' ' '-')"
  [ -d "$repo/.git" ] || build_repo "$repo"
fi

commits=$(git -C "$repo" rev-list --all | wc -l)
pack=$(git -C "$repo" count-objects -vH | sed -n 's/^size-pack: //p')
echo "repository: $repo ($commits commits, pack $pack)"

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
time_of() { # prints seconds of one run of "$@", output discarded
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || true
  t1=$(date +%s.%N)
  calc "$t1 - $t0"
}
calc() { python3 -c "print(round($1, 3))"; }
ops_run() { (cd "$repo" && "$bin" scan --git --all --color never); }

# kingfisher from PyPI (kingfisher-bin), where tests/conformance/secrets.sh --peers put it
peers="${OPSBOT_PEERS_DIR:-$HOME/.cache/opsbot-peers}"
if ! command -v kingfisher >/dev/null && [ -x "$peers/venv/bin/kingfisher" ]; then
  PATH="$peers/venv/bin:$PATH"
fi

ops_times=()
git_times=()
kf_times=()
for _ in $(seq "$runs"); do
  ops_times+=("$(time_of ops_run)")
  git_times+=("$(time_of git -C "$repo" cat-file --batch-all-objects --batch)")
  if command -v kingfisher >/dev/null; then
    kf_times+=("$(time_of kingfisher scan "$repo" --git-history full --no-validate --no-update-check --format json)")
  fi
done
# MB scanned, from opsbot's own summary line
summary=$(cd "$repo" || exit; "$bin" scan --git --all -f json 2>&1 >/dev/null | grep 'history:')
mb=$(echo "$summary" | sed -n 's/.*version(s), \([0-9.]*\) MB.*/\1/p')
ops=$(printf '%s\n' "${ops_times[@]}" | median)
gitm=$(printf '%s\n' "${git_times[@]}" | median)
echo "$summary"
printf '%-44s %8s %10s %8s\n' "median of $runs runs" "seconds" "MB/s" "ratio"
printf '%-44s %8.2f %10.0f %8.2f\n' "git cat-file --batch-all-objects --batch" "$gitm" "$(calc "${mb:-0} / $gitm")" 1
printf '%-44s %8.2f %10.0f %8.2f\n' "opsbot scan --git --all" "$ops" "$(calc "${mb:-0} / $ops")" "$(calc "$ops / $gitm")"
if ((${#kf_times[@]})); then
  kf=$(printf '%s\n' "${kf_times[@]}" | median)
  printf '%-44s %8.2f %10s %8.2f\n' "kingfisher scan (git history)" "$kf" "-" "$(calc "$kf / $gitm")"
fi
if [ -x /usr/bin/time ]; then
  rss=$(cd "$repo" && /usr/bin/time -f '%M' "$bin" scan --git --all -f json 2>&1 >/dev/null | tail -1)
  echo "peak RSS of one opsbot run: $((rss / 1024)) MB"
fi
