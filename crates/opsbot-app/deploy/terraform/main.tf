# opsbot-app on AWS: the GitHub App's webhooks, scanned at any scale.
#
#   GitHub ──► function URL ──► NAME-ingest ──► SQS NAME-jobs ──► NAME-worker ──► GitHub check run
#              (auth NONE: the      verifies X-Hub-Signature-256,   │ event source mapping,
#               signature is the    queues the job, answers 202     │ ReportBatchItemFailures
#               authentication)                                     ▼
#                                        after max_receive_count: NAME-dlq
#   NAME-worker ──► DynamoDB NAME-deliveries: one conditional put per delivery id (TTL
#                   expires_at), so a delivery is scanned once whatever redelivers it.
#
#   EventBridge NAME-redeliver (redeliver_schedule, e.g. every 5 minutes) ──► NAME-worker:
#                   the redelivery sweep (`opsbot app redeliver`): lists the App's recent
#                   deliveries and asks GitHub to send again the ones the ingest refused
#                   (503) or never answered, and the accepted ones that never got a check
#                   run (a message lost to the DLQ). Each attempt is asked for once across
#                   every sweep (a conditional put on `redeliver#ID` in the same table).
#
# Each function gets only what it uses, on the exact resources: the ingest sends to the
# queue and reads the webhook secret; the worker consumes the queue, writes the table and
# reads the App's private key. Secrets are read from Secrets Manager at cold start, never
# put in the environment or in Terraform state.

data "aws_caller_identity" "current" {}

locals {
  common_env = merge({ RUST_LOG = "info" }, var.extra_environment)

  webhook_secret_resource = split("#", var.webhook_secret_arn)[0]
  private_key_resource    = split("#", var.github_app_private_key_secret_arn)[0]

  # AWS recommends a visibility timeout of at least six times the function timeout, so
  # a message is not handed to a second worker while the first still runs it.
  visibility_timeout = var.worker_timeout * 6
}

# ---- queue, dead letters, delivery ledger ----------------------------------------------

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600 # 14 days: time to fix GitHub access and redrive
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_sqs_queue" "jobs" {
  name                       = "${var.name}-jobs"
  visibility_timeout_seconds = local.visibility_timeout
  message_retention_seconds  = 345600 # 4 days
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.jobs.arn]
  })
}

resource "aws_dynamodb_table" "deliveries" {
  name         = "${var.name}-deliveries"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "delivery_id"

  attribute {
    name = "delivery_id"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  server_side_encryption {
    enabled = true
  }

  tags = var.tags
}

# ---- roles ------------------------------------------------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_cloudwatch_log_group" "ingest" {
  name              = "/aws/lambda/${var.name}-ingest"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = "/aws/lambda/${var.name}-worker"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_iam_role" "ingest" {
  name               = "${var.name}-ingest"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role" "worker" {
  name               = "${var.name}-worker"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

# The ingest: its logs, SendMessage on the jobs queue, the webhook secret. No GitHub key,
# no table.
data "aws_iam_policy_document" "ingest" {
  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.ingest.arn}:*"]
  }
  statement {
    sid       = "QueueJobs"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.jobs.arn]
  }
  statement {
    sid       = "ReadWebhookSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.webhook_secret_resource]
  }
  dynamic "statement" {
    for_each = compact([var.kms_key_arn, var.secrets_kms_key_arn])
    content {
      sid       = "Decrypt${statement.key}"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

# The worker: its logs, consuming the jobs queue (the event source mapping polls with the
# function's role), the delivery ledger's item calls, the App's private key.
data "aws_iam_policy_document" "worker" {
  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.worker.arn}:*"]
  }
  statement {
    sid = "ConsumeJobs"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.jobs.arn]
  }
  # The ledger's item calls; BatchGetItem: the redelivery sweep reads which deliveries are
  # done, instead of their check runs on GitHub.
  statement {
    sid = "DeliveryLedger"
    actions = [
      "dynamodb:PutItem",
      "dynamodb:GetItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:BatchGetItem",
      "dynamodb:DescribeTable",
    ]
    resources = [aws_dynamodb_table.deliveries.arn]
  }
  statement {
    sid       = "ReadAppPrivateKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.private_key_resource]
  }
  dynamic "statement" {
    for_each = compact([var.kms_key_arn, var.secrets_kms_key_arn])
    content {
      sid       = "Decrypt${statement.key}"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "ingest" {
  name   = "${var.name}-ingest"
  role   = aws_iam_role.ingest.id
  policy = data.aws_iam_policy_document.ingest.json
}

resource "aws_iam_role_policy" "worker" {
  name   = "${var.name}-worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}

# ---- the functions ----------------------------------------------------------------------

resource "aws_lambda_function" "ingest" {
  function_name    = "${var.name}-ingest"
  description      = "opsbot GitHub App: verify webhook signatures, queue scan jobs"
  role             = aws_iam_role.ingest.arn
  filename         = var.zip_path
  source_code_hash = filebase64sha256(var.zip_path)
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  memory_size      = 256
  timeout          = var.ingest_timeout
  kms_key_arn      = var.kms_key_arn

  environment {
    variables = merge(local.common_env, {
      OPSBOT_APP_ROLE                  = "ingest"
      OPSBOT_APP_QUEUE_URL             = aws_sqs_queue.jobs.url
      GITHUB_WEBHOOK_SECRET_SECRET_ARN = var.webhook_secret_arn
    })
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.ingest.name
  }

  tags       = var.tags
  depends_on = [aws_iam_role_policy.ingest]
}

# No IAM auth: GitHub cannot sign AWS requests. Every delivery is authenticated by its
# HMAC signature before anything is parsed or queued.
resource "aws_lambda_function_url" "ingest" {
  function_name      = aws_lambda_function.ingest.function_name
  authorization_type = "NONE"
}

resource "aws_lambda_permission" "function_url" {
  statement_id           = "AllowPublicFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.ingest.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_function" "worker" {
  function_name    = "${var.name}-worker"
  description      = "opsbot GitHub App: scan queued jobs once per delivery, report check runs"
  role             = aws_iam_role.worker.arn
  filename         = var.zip_path
  source_code_hash = filebase64sha256(var.zip_path)
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  memory_size      = var.worker_memory_size
  timeout          = var.worker_timeout
  kms_key_arn      = var.kms_key_arn

  environment {
    variables = merge(local.common_env, {
      OPSBOT_APP_ROLE                   = "worker"
      OPSBOT_APP_DEDUP_TABLE            = aws_dynamodb_table.deliveries.name
      OPSBOT_APP_DEDUP_TTL_SECS         = tostring(var.dedup_ttl_seconds)
      GITHUB_API_URL                    = var.github_api_url
      GITHUB_APP_ID                     = var.github_app_id
      GITHUB_APP_PRIVATE_KEY_SECRET_ARN = var.github_app_private_key_secret_arn
      OPSBOT_APP_REDELIVER_WINDOW_SECS  = tostring(var.redeliver_window_seconds)
      OPSBOT_APP_REDELIVER_GRACE_SECS   = tostring(var.redeliver_grace_seconds)
    })
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.worker.name
  }

  tags       = var.tags
  depends_on = [aws_iam_role_policy.worker]
}

# Only the failed messages of a batch come back (the worker answers batchItemFailures);
# after max_receive_count they move to the DLQ.
resource "aws_lambda_event_source_mapping" "jobs" {
  event_source_arn        = aws_sqs_queue.jobs.arn
  function_name           = aws_lambda_function.worker.arn
  batch_size              = var.batch_size
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.worker_max_concurrency
  }

  depends_on = [aws_iam_role_policy.worker]
}

# ---- nothing lost: the redelivery sweep -------------------------------------------------

# GitHub does not redeliver a failed delivery by itself. The worker sweeps on a schedule
# (the scheduled event goes to the same function: same App key, same table, no new role).
# An invocation that fails is retried by EventBridge's async invoke; an overlapping or
# retried sweep asks GitHub for nothing twice.
resource "aws_cloudwatch_event_rule" "redeliver" {
  count               = var.redeliver_schedule == null ? 0 : 1
  name                = "${var.name}-redeliver"
  description         = "opsbot GitHub App: ask GitHub to redeliver failed and unscanned webhook deliveries"
  schedule_expression = var.redeliver_schedule
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "redeliver" {
  count     = var.redeliver_schedule == null ? 0 : 1
  rule      = aws_cloudwatch_event_rule.redeliver[0].name
  target_id = "worker"
  arn       = aws_lambda_function.worker.arn

  retry_policy {
    maximum_event_age_in_seconds = 300
    maximum_retry_attempts       = 2
  }
}

resource "aws_lambda_permission" "redeliver" {
  count         = var.redeliver_schedule == null ? 0 : 1
  statement_id  = "AllowRedeliverySchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.worker.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.redeliver[0].arn
}
