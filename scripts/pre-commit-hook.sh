#!/usr/bin/env bash
# The `opsbot-scan-release` pre-commit hook (.pre-commit-hooks.yaml, `language: script`):
# runs `opsbot scan --staged` with the released opsbot binary of this checkout's version
# (the `rev:` pinned in .pre-commit-config.yaml). The first run downloads it with
# scripts/install.sh (checked against the release's SHA256SUMS) into
# ${OPSBOT_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/opsbot}/<version>/bin; later runs use that
# copy. An `opsbot` of the same version already on PATH is used as is.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$here/Cargo.toml" | head -n 1)"
[ -n "$version" ] || { echo "opsbot hook: no version in $here/Cargo.toml" >&2; exit 2; }

if command -v opsbot >/dev/null 2>&1 && [ "$(opsbot --version 2>/dev/null)" = "opsbot $version" ]; then
  exec opsbot scan --staged "$@"
fi

case "$(uname -s)" in MINGW*|MSYS*|CYGWIN*) exe=opsbot.exe ;; *) exe=opsbot ;; esac
bin_dir="${OPSBOT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/opsbot}/$version/bin"
if [ ! -x "$bin_dir/$exe" ]; then
  echo "opsbot hook: fetching opsbot $version (once)" >&2
  env -u GITHUB_PATH "$here/scripts/install.sh" --version "$version" --source-dir "$here" \
    --bin-dir "$bin_dir" >&2 || exit 2
fi
exec "$bin_dir/$exe" scan --staged "$@"
