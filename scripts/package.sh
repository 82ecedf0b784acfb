#!/usr/bin/env bash
# Packs release artifacts the way .github/workflows/release.yml publishes them, and the way
# scripts/install.sh expects them (the release job and the local dry run call this script).
#
#   scripts/package.sh cli TARGET BINARY OUTDIR
#       → OUTDIR/opsbot-TARGET.tar.gz (.zip for Windows targets) holding
#         opsbot-TARGET/{opsbot[.exe],README.md,LICENSE-MIT,LICENSE-APACHE}
#   scripts/package.sh lambda NAME ARCH BOOTSTRAP OUTDIR [FILE...]
#       → OUTDIR/NAME-ARCH.zip holding `bootstrap` (and FILE... beside it), for the
#         provided.al2023 runtime
#   scripts/package.sh sums OUTDIR
#       → OUTDIR/SHA256SUMS over every other file in OUTDIR (`sha256sum -c` format)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "package.sh: error: $*" >&2; exit 1; }

sha256_lines() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$@"; else shasum -a 256 "$@"; fi
}

zip_dir() {
  # zip_dir DIR OUT.zip: the contents of DIR, paths relative to DIR.
  local dir="$1" out="$2"
  rm -f "$out"
  if command -v zip >/dev/null 2>&1; then
    (cd "$dir" && zip -q -r -X "$out" .)
  elif command -v 7z >/dev/null 2>&1; then
    (cd "$dir" && 7z a -tzip -bd "$out" . >/dev/null)
  else
    python3 -c 'import os,sys,zipfile
d,out=sys.argv[1],sys.argv[2]
with zipfile.ZipFile(out,"w",zipfile.ZIP_DEFLATED) as z:
    for base,_,files in os.walk(d):
        for f in sorted(files):
            p=os.path.join(base,f)
            i=zipfile.ZipInfo.from_file(p,os.path.relpath(p,d))
            i.compress_type=zipfile.ZIP_DEFLATED
            with open(p,"rb") as fh: z.writestr(i,fh.read())' "$dir" "$out"
  fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  cli)
    [ $# -eq 3 ] || die "usage: package.sh cli TARGET BINARY OUTDIR"
    target="$1" binary="$2" out="$3"
    [ -f "$binary" ] || die "no binary at $binary"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    stage="$(mktemp -d)"
    trap 'rm -rf "$stage"' EXIT
    name="opsbot-$target"
    mkdir -p "$stage/$name"
    case "$target" in *windows*) exe=opsbot.exe ;; *) exe=opsbot ;; esac
    cp "$binary" "$stage/$name/$exe"
    chmod 755 "$stage/$name/$exe"
    cp "$root/README.md" "$root/LICENSE-MIT" "$root/LICENSE-APACHE" "$stage/$name/"
    case "$target" in
      *windows*) zip_dir "$stage" "$out/$name.zip"; echo "$out/$name.zip" ;;
      *) tar -C "$stage" -czf "$out/$name.tar.gz" "$name"; echo "$out/$name.tar.gz" ;;
    esac
    ;;
  lambda)
    [ $# -ge 4 ] || die "usage: package.sh lambda NAME ARCH BOOTSTRAP OUTDIR [FILE...]"
    name="$1" arch="$2" bootstrap="$3" out="$4"
    shift 4
    [ -f "$bootstrap" ] || die "no bootstrap at $bootstrap"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    stage="$(mktemp -d)"
    trap 'rm -rf "$stage"' EXIT
    cp "$bootstrap" "$stage/bootstrap"
    chmod 755 "$stage/bootstrap"
    for f in "$@"; do
      cp "$f" "$stage/"
      chmod 755 "$stage/$(basename "$f")"
    done
    zip_dir "$stage" "$out/$name-$arch.zip"
    echo "$out/$name-$arch.zip"
    ;;
  sums)
    [ $# -eq 1 ] || die "usage: package.sh sums OUTDIR"
    cd "$1"
    files=()
    for f in *; do
      [ -f "$f" ] && [ "$f" != SHA256SUMS ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || die "nothing to checksum in $1"
    sha256_lines "${files[@]}" > SHA256SUMS
    cat SHA256SUMS
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2
    ;;
esac
