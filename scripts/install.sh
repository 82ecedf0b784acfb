#!/usr/bin/env bash
# Installs a released opsbot binary (or downloads one release asset), verified against the
# release's SHA256SUMS. Used by action.yml, workflows/*.yml and the deploy instructions.
#
#   scripts/install.sh [--version X.Y.Z|latest] [--bin-dir DIR] [--source-dir DIR]
#                      [--skip-if-installed]
#   scripts/install.sh --version X.Y.Z --asset opsbot-health-lambda-arm64.zip --dest DIR
#
# 1. Looks the release up through the GitHub REST API ($GITHUB_API_URL, default
#    https://api.github.com; GitHub Enterprise: https://HOST/api/v3), tag v$VERSION of
#    $OPSBOT_REPO (default opsbot/opsbot). $GITHUB_TOKEN is sent when set (private
#    mirrors, higher rate limits).
# 2. Downloads the archive for this OS and CPU (opsbot-<target>.tar.gz, .zip on Windows)
#    and SHA256SUMS, and refuses to go on (exit 1) when the archive's SHA-256 is not the one
#    SHA256SUMS lists, or when either file is missing from the release.
# 3. Unpacks `opsbot` into the bin dir (default ~/.local/bin; in GitHub Actions a tool-cache
#    directory that is added to $GITHUB_PATH) and runs `opsbot --version`.
#    --skip-if-installed: nothing to do when `opsbot` on PATH already is that version.
#
# Only when the release does not exist at all (404) does it build instead: `cargo install`
# from --source-dir (the action's own checkout), else from the tag on GitHub. Set
# $OPSBOT_FALLBACK to run another command instead ($OPSBOT_BIN_DIR and $OPSBOT_VERSION are
# exported to it); OPSBOT_FALLBACK=none turns the fallback off.
set -euo pipefail

repo="${OPSBOT_REPO:-opsbot/opsbot}"
api="${GITHUB_API_URL:-https://api.github.com}"
api="${api%/}"
version="${OPSBOT_VERSION:-}"
bin_dir="${OPSBOT_BIN_DIR:-}"
source_dir=""
asset=""
dest="."
target="${OPSBOT_TARGET:-}"
skip_if_installed=""

die() {
  echo "opsbot install: error: $*" >&2
  if [ -n "${GITHUB_ACTIONS:-}" ]; then echo "::error title=opsbot install::$*"; fi
  exit 1
}
say() { echo "opsbot install: $*" >&2; }

usage() {
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="${2:?--version needs a value}"; shift 2 ;;
    --bin-dir) bin_dir="${2:?--bin-dir needs a value}"; shift 2 ;;
    --source-dir) source_dir="${2:?--source-dir needs a value}"; shift 2 ;;
    --asset) asset="${2:?--asset needs a value}"; shift 2 ;;
    --dest) dest="${2:?--dest needs a value}"; shift 2 ;;
    --repo) repo="${2:?--repo needs a value}"; shift 2 ;;
    --target) target="${2:?--target needs a value}"; shift 2 ;;
    --skip-if-installed) skip_if_installed=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

# The version of the source tree next to this script (the action's own ref) by default.
if [ -z "$version" ]; then
  manifest="${source_dir:-$(cd "$(dirname "$0")/.." && pwd)}/Cargo.toml"
  if [ -f "$manifest" ]; then
    version="$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$manifest" | head -n 1)"
  fi
  [ -n "$version" ] || die "no --version given and none found in $manifest"
fi
version="${version#v}"

if [ -n "$skip_if_installed" ] && [ -z "$asset" ] && command -v opsbot >/dev/null 2>&1; then
  have="$(opsbot --version 2>/dev/null || true)"
  if [ "$have" = "opsbot $version" ]; then
    say "using $(command -v opsbot) ($have)"
    exit 0
  fi
fi

detect_target() {
  local os arch
  os="$(uname -s)"
  arch="$(uname -m)"
  case "$arch" in
    x86_64|amd64|X64) arch=x86_64 ;;
    aarch64|arm64|ARM64) arch=aarch64 ;;
    *) die "no opsbot release for CPU '$arch' (x86_64 and arm64 are built); set OPSBOT_TARGET or build with cargo" ;;
  esac
  case "$os" in
    Linux) echo "$arch-unknown-linux-gnu" ;;
    Darwin) echo "$arch-apple-darwin" ;;
    MINGW*|MSYS*|CYGWIN*|Windows_NT) echo "x86_64-pc-windows-msvc" ;;
    *) die "no opsbot release for OS '$os'; set OPSBOT_TARGET or build with cargo" ;;
  esac
}

curl_api() {
  # curl_api URL OUTFILE [ACCEPT] → prints the HTTP status; the body goes to OUTFILE.
  local url="$1" out="$2" accept="${3:-application/vnd.github+json}"
  local args=(--silent --show-error --location --retry 3 --retry-delay 2
    --connect-timeout 20 --output "$out" --write-out '%{http_code}'
    -H "Accept: $accept" -H "X-GitHub-Api-Version: 2022-11-28")
  if [ -n "${GITHUB_TOKEN:-}" ]; then
    args+=(-H "Authorization: Bearer $GITHUB_TOKEN")
  fi
  curl "${args[@]}" "$url" || echo "000"
}

# asset_id RELEASE_JSON NAME → the asset's id, empty when the release has no such asset.
asset_id() {
  if command -v jq >/dev/null 2>&1; then
    jq -r --arg n "$2" '.assets[]? | select(.name == $n) | .id' "$1" | head -n 1
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json,sys
for a in json.load(open(sys.argv[1])).get("assets", []):
    if a.get("name") == sys.argv[2]:
        print(a["id"]); break' "$1" "$2"
  else
    die "need jq or python3 to read the release listing"
  fi
}

asset_names() {
  if command -v jq >/dev/null 2>&1; then
    jq -r '[.assets[]?.name] | join(", ")' "$1"
  else
    python3 -c 'import json,sys; print(", ".join(a.get("name","") for a in json.load(open(sys.argv[1])).get("assets", [])))' "$1"
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    openssl dgst -sha256 -r "$1" | cut -d' ' -f1
  fi
}

work="$(mktemp -d "${TMPDIR:-/tmp}/opsbot-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT

run_fallback() {
  local reason="$1"
  if [ "${OPSBOT_FALLBACK:-}" = "none" ]; then
    die "$reason, and the cargo fallback is off (OPSBOT_FALLBACK=none)"
  fi
  say "$reason: building opsbot $version with cargo instead (slow)"
  export OPSBOT_VERSION="$version" OPSBOT_BIN_DIR="$bin_dir"
  if [ -n "${OPSBOT_FALLBACK:-}" ]; then
    bash -c "$OPSBOT_FALLBACK"
  else
    command -v cargo >/dev/null 2>&1 \
      || die "$reason, and cargo is not installed to build it (add a Rust toolchain step)"
    local root
    root="$(dirname "$bin_dir")"
    if [ -n "$source_dir" ] && [ -f "$source_dir/crates/opsbot/Cargo.toml" ]; then
      cargo install --locked --root "$root" --path "$source_dir/crates/opsbot"
    else
      cargo install --locked --root "$root" --git "https://github.com/$repo" --tag "v$version" opsbot
    fi
    if [ "$(basename "$bin_dir")" != bin ]; then
      mkdir -p "$bin_dir" && cp "$root/bin/opsbot"* "$bin_dir/"
    fi
  fi
}

if [ -z "$bin_dir" ]; then
  if [ -n "${RUNNER_TOOL_CACHE:-}" ]; then
    bin_dir="$RUNNER_TOOL_CACHE/opsbot/$version/bin"
  else
    bin_dir="$HOME/.local/bin"
  fi
fi

if [ -z "$asset" ]; then
  [ -n "$target" ] || target="$(detect_target)"
  case "$target" in
    *windows*) archive="opsbot-$target.zip"; exe=opsbot.exe ;;
    *) archive="opsbot-$target.tar.gz"; exe=opsbot ;;
  esac
  wanted="$archive"
else
  wanted="$asset"
fi

if [ "$version" = latest ]; then
  release_url="$api/repos/$repo/releases/latest"
else
  release_url="$api/repos/$repo/releases/tags/v$version"
fi
status="$(curl_api "$release_url" "$work/release.json")"
case "$status" in
  200) ;;
  404)
    if [ -n "$asset" ]; then
      die "no release v$version of $repo ($release_url answered 404): cannot download $asset"
    fi
    run_fallback "no release v$version of $repo at $api"
    if [ -n "${GITHUB_PATH:-}" ]; then echo "$bin_dir" >> "$GITHUB_PATH"; fi
    exit 0 ;;
  000) die "cannot reach $release_url" ;;
  *) die "GET $release_url answered HTTP $status: $(head -c 300 "$work/release.json" 2>/dev/null)" ;;
esac
if [ "$version" = latest ]; then
  version="$(sed -n 's/.*"tag_name" *: *"v\{0,1\}\([^"]*\)".*/\1/p' "$work/release.json" | head -n 1)"
fi

download() {
  # download NAME → $work/NAME, or die naming what the release has.
  local name="$1" id st
  id="$(asset_id "$work/release.json" "$name")"
  if [ -z "$id" ]; then
    die "release v$version of $repo has no asset '$name' (it has: $(asset_names "$work/release.json")); refusing to install"
  fi
  st="$(curl_api "$api/repos/$repo/releases/assets/$id" "$work/$name" application/octet-stream)"
  [ "$st" = 200 ] || die "downloading $name (asset $id) answered HTTP $st"
}

download SHA256SUMS
download "$wanted"
expected="$(awk -v n="$wanted" '{ f = $2; sub(/^\*/, "", f); if (f == n) { print $1; exit } }' "$work/SHA256SUMS")"
[ -n "$expected" ] || die "SHA256SUMS of v$version does not list $wanted; refusing to install"
actual="$(sha256_of "$work/$wanted")"
if [ "$actual" != "$expected" ]; then
  die "checksum mismatch for $wanted of v$version: SHA256SUMS says $expected, the download is $actual; refusing to install"
fi
say "verified $wanted (sha256 $actual)"

if [ -n "$asset" ]; then
  mkdir -p "$dest"
  mv "$work/$wanted" "$dest/$wanted"
  say "downloaded $dest/$wanted"
  exit 0
fi

mkdir -p "$work/unpack" "$bin_dir"
case "$archive" in
  *.zip)
    if command -v unzip >/dev/null 2>&1; then
      unzip -q "$work/$archive" -d "$work/unpack"
    else
      powershell -NoProfile -Command "Expand-Archive -Path '$work/$archive' -DestinationPath '$work/unpack'"
    fi ;;
  *) tar -xzf "$work/$archive" -C "$work/unpack" ;;
esac
found="$(find "$work/unpack" -type f -name "$exe" | head -n 1)"
[ -n "$found" ] || die "$archive holds no $exe"
cp "$found" "$bin_dir/$exe"
chmod 755 "$bin_dir/$exe"
if [ -n "${GITHUB_PATH:-}" ]; then
  echo "$bin_dir" >> "$GITHUB_PATH"
fi
say "installed $bin_dir/$exe: $("$bin_dir/$exe" --version)"
