#!/usr/bin/env bash
# Lints what GitHub Actions runs: every workflow and action file against the GitHub Actions
# schemas (check-jsonschema's vendored copies of SchemaStore's), and the shell in them
# (each `run:` block, with `${{ ... }}` expressions replaced by a placeholder, and
# scripts/*.sh) with shellcheck. Needs check-jsonschema (PyPI), shellcheck (Debian) and
# PyYAML; .ci/run installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

workflows=(.github/workflows/*.yml workflows/*.yml)
actions=(action.yml .github/actions/*/action.yml)

echo "== check-jsonschema: ${#workflows[@]} workflows, ${#actions[@]} actions"
check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}"
check-jsonschema --builtin-schema vendor.github-actions "${actions[@]}"

echo "== shellcheck: scripts"
shellcheck .ci/run .ci/*.sh scripts/*.sh

echo "== shellcheck: run blocks"
blocks="$(mktemp -d)"
trap 'rm -rf "$blocks"' EXIT
python3 - "$blocks" "${workflows[@]}" "${actions[@]}" <<'PY'
import re, sys, yaml

out, files = sys.argv[1], sys.argv[2:]
n = 0

def shell_of(step, default):
    shell = step.get("shell") or default or "bash"
    return "sh" if shell.split()[0] == "sh" else "bash" if shell.split()[0] == "bash" else None

def emit(path, where, step, default_shell):
    global n
    run = step.get("run")
    if not isinstance(run, str):
        return
    shell = shell_of(step, default_shell)
    if shell is None:  # pwsh, python, cmd: not shell
        return
    # An expression is substituted before the shell sees it: stand in a plain word.
    body = re.sub(r"\$\{\{.*?\}\}", "GITHUB_EXPRESSION", run, flags=re.S)
    n += 1
    name = f"{out}/{n:03d}.{shell}"
    with open(name, "w") as f:
        f.write(f"#!/usr/bin/env {shell}\n# {path}: {where}\n{body}")

for path in files:
    doc = yaml.safe_load(open(path))
    if "runs" in doc:  # an action
        for i, step in enumerate(doc["runs"].get("steps", [])):
            emit(path, f"step {step.get('name', i)}", step, None)
        continue
    wf_shell = ((doc.get("defaults") or {}).get("run") or {}).get("shell")
    for job_id, job in (doc.get("jobs") or {}).items():
        job_shell = ((job.get("defaults") or {}).get("run") or {}).get("shell") or wf_shell
        for i, step in enumerate(job.get("steps", []) or []):
            emit(path, f"job {job_id}, step {step.get('name', i)}", step, job_shell)
PY
status=0
for f in "$blocks"/[0-9]*; do
  severity=style
  # dist writes release.yml (scripts/dist-generate.sh): hold its shell to warnings and errors.
  if sed -n '2p' "$f" | grep -q '^# .github/workflows/release.yml:'; then severity=warning; fi
  if ! shellcheck --severity="$severity" "$f" >"$f.out" 2>&1; then
    sed -n '2p' "$f" | sed 's/^# /shellcheck failed in /'
    cat "$f.out"
    status=1
  fi
done
echo "checked $(find "$blocks" -name '[0-9]*.*sh' | wc -l) run blocks"
exit "$status"
