#!/bin/sh
# `bootstrap` of the App's Lambda zip (provided.al2023): runs the opsbot binary packed beside
# it as the webhook server; with AWS_LAMBDA_RUNTIME_API set it serves the Lambda runtime.
exec "${LAMBDA_TASK_ROOT:-$(dirname "$0")}/opsbot" app serve "$@"
