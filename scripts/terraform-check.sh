#!/usr/bin/env bash
# terraform-check.sh DEPLOY_DIR ROOT...: the one check of a Lambda's Terraform deploy directory.
# `terraform fmt -check` of DEPLOY_DIR/terraform always, then `terraform validate` of each ROOT
# (relative to DEPLOY_DIR) where the AWS provider can be installed. Providers come from the
# registry, or from a local mirror when OPSBOT_TF_PLUGIN_DIR (default /opt/tf-plugins if present)
# holds registry.terraform.io/hashicorp/aws/…. Without either, validate is SKIPPED and says so.
# Nothing is written into the repository: the module is copied to a temporary directory.
set -euo pipefail
deploy="$(cd "$1" && pwd)"
shift
tf="$deploy/terraform"

if ! command -v terraform >/dev/null; then
  echo "terraform-check.sh: SKIPPED: terraform is not on PATH (https://developer.hashicorp.com/terraform/install)"
  exit 0
fi

echo "== terraform fmt -check -recursive ($tf)"
terraform fmt -check -recursive -diff "$tf"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -R "$tf" "$work/terraform"

plugin_dir="${OPSBOT_TF_PLUGIN_DIR:-}"
if [[ -z "$plugin_dir" && -d /opt/tf-plugins ]]; then
  plugin_dir=/opt/tf-plugins
fi
if [[ -n "$plugin_dir" ]]; then
  # A CLI configuration that installs providers from the mirror only.
  cat >"$work/terraformrc" <<CFG
provider_installation {
  filesystem_mirror {
    path = "$plugin_dir"
  }
}
CFG
  export TF_CLI_CONFIG_FILE="$work/terraformrc"
fi
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1

status=0
for root in "$@"; do
  dir="$work/$root"
  echo "== terraform init -backend=false && terraform validate ($root)"
  if ! out="$(cd "$dir" && terraform init -backend=false -input=false -no-color 2>&1)"; then
    echo "terraform-check.sh: SKIPPED validate of $root: terraform init cannot install the AWS provider"
    echo "  (no network to registry.terraform.io and no mirror; set OPSBOT_TF_PLUGIN_DIR to a"
    echo "  directory laid out as registry.terraform.io/hashicorp/aws/VERSION/OS_ARCH/)."
    echo "$out" | grep -E "Error|error" | head -5 | sed 's/^/  /'
    continue
  fi
  if ! (cd "$dir" && terraform validate -no-color); then
    status=1
  fi
done
exit $status
