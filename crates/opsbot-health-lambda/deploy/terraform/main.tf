# opsbot-health: AWS Health events → GitHub issues.
#
#   EventBridge rule (source aws.health) ──► [SNS events topic] ──► Lambda (arm64, provided.al2023)
#        │ delivery failures                                          │ failed after retries
#        └────────────────────────► SQS dead-letter queue ◄───────────┘
#   Lambda ──► SNS alerts topic (events it could not file) ──► e-mail / chat
#
# AWS Health delivers each event to EventBridge in the event's own region (global services
# in us-east-1). Use this module in your main region and forward the other regions' aws.health
# events to its default bus (see README.md), or use the organizational view from the
# management or delegated-admin account.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  github_env = merge(
    {
      GITHUB_API_URL                  = var.github_api_url
      GITHUB_REPOSITORY               = var.github_repository
      OPSBOT_SNS_TOPIC_ARN            = aws_sns_topic.alerts.arn
      OPSBOT_GITHUB_RETRY_BUDGET_SECS = tostring(var.github_retry_budget_secs)
      RUST_LOG                        = "info"
    },
    var.github_token == null ? {} : { GITHUB_TOKEN = var.github_token },
    var.github_app_id == null ? {} : { GITHUB_APP_ID = var.github_app_id },
    var.github_app_private_key == null ? {} : { GITHUB_APP_PRIVATE_KEY = var.github_app_private_key },
    var.github_app_installation_id == null ? {} : { GITHUB_APP_INSTALLATION_ID = var.github_app_installation_id },
    var.extra_environment,
  )
  via_sns = var.delivery == "sns"
}

# ---- dead letters and alerts ------------------------------------------------------------

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600 # 14 days: time to fix GitHub access and redrive
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "EventBridgeDeliveryFailures"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.health.arn]
    }
  }

  dynamic "statement" {
    for_each = local.via_sns ? [1] : []
    content {
      sid       = "SnsDeliveryFailures"
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.dlq.arn]
      principals {
        type        = "Service"
        identifiers = ["sns.amazonaws.com"]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = [aws_sns_topic.events[0].arn]
      }
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-alerts"
  kms_master_key_id = "alias/aws/sns"
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "alert_emails" {
  for_each  = toset(var.alert_emails)
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

# ---- the function ----------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "function" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

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

resource "aws_iam_role" "function" {
  name               = "${var.name}-function"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

# Least privilege: write its own logs, publish alerts, send failed invocations to the DLQ.
# Nothing else: GitHub is reached with the token or App key, not with AWS permissions.
data "aws_iam_policy_document" "function" {
  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function.arn}:*"]
  }
  statement {
    sid       = "Alerts"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }
  statement {
    sid       = "OnFailureDestination"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [1]
    content {
      sid       = "DecryptEnvironment"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "function" {
  name   = "${var.name}-function"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.function.json
}

resource "aws_lambda_function" "health" {
  function_name    = var.name
  description      = "AWS Health events to GitHub issues (opsbot)"
  role             = aws_iam_role.function.arn
  filename         = var.zip_path
  source_code_hash = filebase64sha256(var.zip_path)
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = ["arm64"]
  memory_size      = var.memory_size
  timeout          = var.timeout
  kms_key_arn      = var.kms_key_arn

  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = local.github_env
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function.name
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy.function]
}

# Asynchronous invocations (EventBridge, SNS): Lambda retries a failed invocation twice,
# then sends it to the DLQ. The function fails an invocation whenever GitHub stays down
# past its retry budget, so nothing is dropped silently.
resource "aws_lambda_function_event_invoke_config" "health" {
  function_name                = aws_lambda_function.health.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 21600

  destination_config {
    on_failure {
      destination = aws_sqs_queue.dlq.arn
    }
  }
}

# ---- the trigger -----------------------------------------------------------------------

resource "aws_cloudwatch_event_rule" "health" {
  name        = "${var.name}-events"
  description = "Every AWS Health event (and abuse event) to opsbot"
  event_pattern = jsonencode({
    source        = ["aws.health"]
    "detail-type" = ["AWS Health Event", "AWS Health Abuse Event"]
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "lambda" {
  count     = local.via_sns ? 0 : 1
  rule      = aws_cloudwatch_event_rule.health.name
  target_id = "opsbot-health-lambda"
  arn       = aws_lambda_function.health.arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }

  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }
}

resource "aws_lambda_permission" "eventbridge" {
  count          = local.via_sns ? 0 : 1
  statement_id   = "AllowEventBridge"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.health.function_name
  principal      = "events.amazonaws.com"
  source_arn     = aws_cloudwatch_event_rule.health.arn
  source_account = data.aws_caller_identity.current.account_id
}

# delivery = "sns": EventBridge → SNS topic → Lambda.
resource "aws_sns_topic" "events" {
  count             = local.via_sns ? 1 : 0
  name              = "${var.name}-events"
  kms_master_key_id = "alias/aws/sns"
  tags              = var.tags
}

data "aws_iam_policy_document" "events_topic" {
  count = local.via_sns ? 1 : 0
  statement {
    sid       = "EventBridgePublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.events[0].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.health.arn]
    }
  }
}

resource "aws_sns_topic_policy" "events" {
  count  = local.via_sns ? 1 : 0
  arn    = aws_sns_topic.events[0].arn
  policy = data.aws_iam_policy_document.events_topic[0].json
}

resource "aws_cloudwatch_event_target" "sns" {
  count     = local.via_sns ? 1 : 0
  rule      = aws_cloudwatch_event_rule.health.name
  target_id = "opsbot-health-sns"
  arn       = aws_sns_topic.events[0].arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }

  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }
}

resource "aws_sns_topic_subscription" "lambda" {
  count     = local.via_sns ? 1 : 0
  topic_arn = aws_sns_topic.events[0].arn
  protocol  = "lambda"
  endpoint  = aws_lambda_function.health.arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
  })
}

resource "aws_lambda_permission" "sns" {
  count         = local.via_sns ? 1 : 0
  statement_id  = "AllowSnsEvents"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.health.function_name
  principal     = "sns.amazonaws.com"
  source_arn    = aws_sns_topic.events[0].arn
}
