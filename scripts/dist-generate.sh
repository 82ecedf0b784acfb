#!/usr/bin/env bash
# Regenerates .github/workflows/release.yml from dist-workspace.toml with dist
# (`cargo install --locked cargo-dist`), then applies the two fixes dist 0.34 needs:
#  - custom jobs are rendered as `uses: $/.github/workflows/X.yml`; a local reusable
#    workflow is `./.github/workflows/X.yml`;
#  - the Lambda job (custom-release-lambda) attests its zips, so it needs `id-token` and
#    `attestations`, which a called workflow cannot grant itself.
set -euo pipefail
cd "$(dirname "$0")/.."
wf=.github/workflows/release.yml
# `allow-dirty = ["ci"]` (so the release run accepts the fixed file) also stops
# `dist generate`: generate from a copy of the config without it.
cp dist-workspace.toml "$wf.config-backup"
trap 'mv "$wf.config-backup" dist-workspace.toml' EXIT
grep -v '^allow-dirty' "$wf.config-backup" > dist-workspace.toml
dist generate --mode ci
python3 - "$wf" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
text = text.replace("uses: $/.github/workflows/", "uses: ./.github/workflows/")
job = "  custom-release-lambda:\n"
perms = ('    permissions:\n      "attestations": "write"\n      "contents": "read"\n'
         '      "id-token": "write"\n')
if job in text and job + perms not in text:
    text = text.replace(job, job + perms, 1)
open(path, "w").write(text)
PY
echo "regenerated $wf"
