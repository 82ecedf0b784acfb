#!/usr/bin/env bash
# Checks that the crates publish and that `cargo install` works from the packaged crate,
# on the committed tree (HEAD exported with `git archive`, so uncommitted work in the
# checkout neither helps nor breaks it):
#
#   1. `cargo publish --workspace --exclude opsbot-tests --dry-run --locked`: packages every
#      crate in dependency order and builds each one from its .crate (verification on;
#      siblings resolve from the local packages, cargo >= 1.90);
#   2. the scanner's rules are inside the opsbot-scan package (`cargo package --list` and the
#      .crate itself hold every rules/*.toml);
#   3. `cargo install` of the unpacked opsbot .crate, its opsbot-* dependencies patched to
#      their unpacked .crates (what crates.io would serve), then `opsbot --version` and a scan.
#
#   scripts/publish-check.sh [--target-dir DIR] [--skip-install] [--install-features LIST]
#
# --install-features scan installs the scanner-only build (`--no-default-features --features
# scan`: minutes instead of half an hour on 2 cores); step 1 has built every crate already.
# DIR (default: a temporary one) is reused between runs. Prints PASS/FAIL per step.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target=""
skip_install=""
install_features=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target-dir) target="$2"; shift 2 ;;
    --skip-install) skip_install=1; shift ;;
    --install-features) install_features=(--no-default-features --features "$2"); shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "publish-check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
[ -n "$target" ] || target="$work/target"
mkdir -p "$target"
export CARGO_TARGET_DIR="$target"

src="$work/src"
mkdir -p "$src"
git -C "$root" archive HEAD | tar -x -C "$src"
echo "publish-check: HEAD $(git -C "$root" rev-parse --short HEAD) in $src, target $target"
cd "$src" || exit 1
fails=0
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; fails=$((fails+1)); }

# cargo extracts the temporary registry that `publish --workspace` verifies against under
# $CARGO_HOME/registry/src/<hash>/ and never re-extracts a version it has: an earlier run
# of the same version would verify against stale sibling sources. Those copies are ours.
# (The default, a new temporary target dir, needs none of this.)
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
for d in "$cargo_home"/registry/src/* "$cargo_home"/registry/cache/*; do
  case "$(basename "$d")" in index.crates.io-*) continue ;; esac
  rm -rf "$d"/opsbot-*
done
rm -rf "$target/package"
# Registry crates are fingerprinted by name and version, not content: drop what earlier runs
# compiled of ours, or the verification would link the old build of a sibling.
for profile in "$target"/debug "$target"/release; do
  rm -rf "$profile"/.fingerprint/opsbot-* "$profile"/build/opsbot-* "$profile"/deps/*opsbot*
done

t0=$(date +%s)
if cargo publish --workspace --exclude opsbot-tests --dry-run --locked >"$work/publish.log" 2>&1; then
  pass "cargo publish --workspace --exclude opsbot-tests --dry-run --locked ($(( $(date +%s) - t0 )) s)"
  grep -E '^\s+(Packaged|Verifying|Uploading)' "$work/publish.log" | sed 's/^/      /'
else
  fail "cargo publish --dry-run"; tail -n 30 "$work/publish.log"
fi

want=$(find rules -maxdepth 1 -name '*.toml' | wc -l)
listed=$(cargo package -p opsbot-scan --list --locked 2>/dev/null | grep -cE '^rules/[^/]+\.toml$')
version=$(cargo metadata --no-deps --format-version 1 | python3 -c \
  'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="opsbot-scan"))')
# cargo >= 1.90 (`publish --workspace`) leaves the .crate files in package/tmp-crate/.
pkgdir="$target/package"
[ -f "$pkgdir/tmp-crate/opsbot-scan-$version.crate" ] && pkgdir="$pkgdir/tmp-crate"
crate="$pkgdir/opsbot-scan-$version.crate"
in_crate=$( [ -f "$crate" ] && tar -tzf "$crate" | grep -cE '^opsbot-scan-[^/]+/rules/[^/]+\.toml$' || echo 0)
if [ "$listed" -eq "$want" ] && [ "$in_crate" -eq "$want" ]; then
  pass "opsbot-scan package holds all $want rules/*.toml (listed $listed, in the .crate $in_crate)"
else
  fail "opsbot-scan rules: $want in rules/, $listed listed, $in_crate in $crate"
fi

if [ -n "$skip_install" ]; then
  echo "SKIP  cargo install from the packaged crate (--skip-install)"
else
  unpacked="$work/unpacked"
  mkdir -p "$unpacked"
  patches=()
  for c in "$pkgdir"/opsbot*-"$version".crate; do
    tar -xzf "$c" -C "$unpacked"
    name="$(basename "$c" "-$version.crate")"
    [ "$name" = opsbot ] || patches+=(--config "patch.crates-io.$name.path=\"$unpacked/$name-$version\"")
  done
  # The workspace's release profile (lto, strip) does not travel in a package: give it
  # here so the binary matches the released one and the dependencies built above are reused.
  t0=$(date +%s)
  if cargo install --offline --path "$unpacked/opsbot-$version" --root "$work/installed" \
      "${patches[@]}" "${install_features[@]}" \
      --config 'profile.release.lto="thin"' --config 'profile.release.codegen-units=4' \
      --config 'profile.release.strip="symbols"' >"$work/install.log" 2>&1 \
    && "$work/installed/bin/opsbot" --version >"$work/version.txt" \
    && echo "nothing here" >"$work/clean.txt" && "$work/installed/bin/opsbot" scan "$work/clean.txt" >/dev/null; then
    pass "cargo install --path <unpacked opsbot-$version.crate> (patched to the packaged siblings): $(cat "$work/version.txt"), $(stat -c %s "$work/installed/bin/opsbot") bytes, scan exit 0 ($(( $(date +%s) - t0 )) s)"
  else
    fail "cargo install from the packaged crate"; tail -n 30 "$work/install.log"
  fi
fi
if [ "$fails" -ne 0 ]; then
  echo "publish-check: $fails failed"
  exit 1
fi
echo "publish-check: all passed"
