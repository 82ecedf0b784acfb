#!/usr/bin/env bash
# Checks the App's Terraform: the module and its basic example, with scripts/terraform-check.sh
# (fmt always; validate where the AWS provider can be installed, else SKIPPED with the reason).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../../../scripts/terraform-check.sh" "$here" terraform terraform/examples/basic
