#!/usr/bin/env bash
# Checks the Health Lambda's Terraform: the module, the forwarder and the multi-region example, with scripts/terraform-check.sh
# (fmt always; validate where the AWS provider can be installed, else SKIPPED with the reason).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../../../scripts/terraform-check.sh" "$here" terraform terraform/modules/forward terraform/examples/multi-region
