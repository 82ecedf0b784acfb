#!/usr/bin/env bash
# Runs the README's "Try it locally" commands as written (extracted from README.md's
# ```sh blocks of that section, build line excepted) and checks what each printed.
#
#   scripts/try-it.sh [--bin-dir DIR]...    # DIRs holding opsbot, fake-github, fake-registry
#
# Without --bin-dir: target/release (opsbot) and target/debug (the fakes), as the README
# builds them. Prints each check as PASS/FAIL and the elapsed time; exit 1 on any FAIL.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bins+=("$(cd "$2" && pwd)"); shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "try-it.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#bins[@]} -gt 0 ] || bins=("$root/target/release" "$root/target/debug")
for b in opsbot fake-github fake-registry; do
  found=""
  for d in "${bins[@]}"; do [ -x "$d/$b" ] && found=1; done
  [ -n "$found" ] || { echo "try-it.sh: no $b in ${bins[*]} (build it first)" >&2; exit 2; }
done

# The section's sh blocks, in order, without the build line and the PATH line (replaced
# by the bin dirs above).
section="$(awk '/^## Try it locally/{on=1; next} /^## /{on=0} on' "$root/README.md")"
script="$(printf '%s\n' "$section" | awk '/^```sh$/{b=1; next} /^```$/{b=0; next} b' \
  | grep -v '^cargo build ')"

work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
start=$(date +%s.%N)
# /tmp/opsbot-try in the README; a fresh directory here.
script="${script//\/tmp\/opsbot-try/$work/try}"
# The README's PATH line names target/release and target/debug: the bin dirs instead.
# shellcheck disable=SC2016 # the README's literal text, $PWD unexpanded, is what is replaced
script="${script//'$PWD/target/release:$PWD/target/debug'/$(IFS=:; echo "${bins[*]}")}"
(cd "$root" && bash -c "$script") >"$work/out.txt" 2>&1
rc=$?
end=$(date +%s.%N)
out="$(cat "$work/out.txt")"

fails=0
check() { # check NAME PATTERN (grep -E against everything the commands printed)
  if grep -qE -- "$2" <<<"$out"; then echo "PASS  $1"; else echo "FAIL  $1 (no /$2/)"; fails=$((fails+1)); fi
}
check "scan finds the planted token, masked, exit 1" 'github-pat-classic'
check "scan exit code 1" '^exit 1$'
check "scan masks the token" 'ghp_…'
if grep -q 'ghp_1a2B3c4D5e6F7g8H9i0J' <<<"$out"; then
  echo "FAIL  the token was printed in full"; fails=$((fails+1))
else
  echo "PASS  scan never prints the token"
fi
# shellcheck disable=SC2016 # a literal $schema in the pattern
check "scan --format sarif" '"version": "2.1.0"|"\$schema"'
check "health handle --dry-run (embedded sample)" 'dry.run|would (create|open)'
check "health handle rds_maintenance.json --dry-run" 'RDS'
check "tfupdate provider: aws 5.70.0 → 5.80.0, comment kept" 'version = "5.80.0" # pinned on purpose'
check "tfupdate module: vpc 5.13.0 → 5.16.0" 'version = "5.16.0"'
check "tfupdate lock: h1: and zh: hashes" '"h1:'
check "tfupdate lock: zh: lines" '"zh:'
check "app /healthz" 'ok|OK|healthy'
check "app ping, signed: 200" 'HTTP 200'
check "app ping, bad signature: 401" 'HTTP 401'
printf 'elapsed %.1f s (commands exit %s)\n' "$(echo "$end - $start" | bc)" "$rc"
if [ $fails -gt 0 ]; then
  echo "--- output of the README's commands"; echo "$out"
  exit 1
fi
