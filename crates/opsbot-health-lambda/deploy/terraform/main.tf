# opsbot-health: AWS Health events → GitHub issues.
#
#   EventBridge rule (source aws.health) ──► [SNS events topic] ──► Lambda (arm64, provided.al2023)
#        │ delivery failures                                          │ failed after retries
#        └────────────────────────► SQS dead-letter queue ◄───────────┘
#   Lambda ──► SNS alerts topic (events it could not file) ──► e-mail / chat
#   other regions: modules/forward (a rule per region) ──► this region's default event bus
#
# AWS Health delivers each event to EventBridge in the event's own region, global events in
# us-east-1, and public events also to a backup region (us-west-2; us-east-1 for us-west-2)
# with `detail.backupEvent = "true"`. Deploy this module once in the main region and
# `modules/forward` in every other region you run in (and us-east-1 for global events);
# see README.md. Backup copies are dropped, or let through and deduplicated by the
# function's event key (`backup_events`).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name

  # Credentials are never Lambda environment values: the function reads them from Secrets
  # Manager or SSM Parameter Store at cold start (opsbot-core's secret_source).
  secret_env = merge(
    var.github_token_secret_arn == null ? {} : { GITHUB_TOKEN_SECRET_ARN = var.github_token_secret_arn },
    var.github_token_ssm_parameter == null ? {} : { GITHUB_TOKEN_SSM_PARAMETER = var.github_token_ssm_parameter },
    var.github_app_private_key_secret_arn == null ? {} : { GITHUB_APP_PRIVATE_KEY_SECRET_ARN = var.github_app_private_key_secret_arn },
    var.github_app_private_key_ssm_parameter == null ? {} : { GITHUB_APP_PRIVATE_KEY_SSM_PARAMETER = var.github_app_private_key_ssm_parameter },
  )
  github_env = merge(
    {
      GITHUB_API_URL                  = var.github_api_url
      GITHUB_REPOSITORY               = var.github_repository
      OPSBOT_SNS_TOPIC_ARN            = aws_sns_topic.alerts.arn
      OPSBOT_GITHUB_RETRY_BUDGET_SECS = tostring(var.github_retry_budget_secs)
      RUST_LOG                        = "info"
    },
    var.github_app_id == null ? {} : { GITHUB_APP_ID = var.github_app_id },
    var.github_app_installation_id == null ? {} : { GITHUB_APP_INSTALLATION_ID = var.github_app_installation_id },
    local.secret_env,
    var.extra_environment,
  )
  via_sns = var.delivery == "sns"

  # IAM resources for the secrets (a `#field` suffix selects a JSON field, not a resource).
  secret_arns = compact([
    var.github_token_secret_arn == null ? "" : split("#", var.github_token_secret_arn)[0],
    var.github_app_private_key_secret_arn == null ? "" : split("#", var.github_app_private_key_secret_arn)[0],
  ])
  ssm_parameter_arns = [
    for name in compact([
      var.github_token_ssm_parameter == null ? "" : var.github_token_ssm_parameter,
      var.github_app_private_key_ssm_parameter == null ? "" : var.github_app_private_key_ssm_parameter,
    ]) : startswith(name, "arn:") ? name : "arn:${local.partition}:ssm:${local.region}:${local.account}:parameter/${trimprefix(name, "/")}"
  ]

  # Regions whose events reach this function: this one and every forwarding region.
  covered_regions = distinct(concat([local.region], var.forwarded_regions))

  # The one event pattern, used here and by every modules/forward rule. Primary copies
  # carry backupEvent "false" or none; backup copies "true".
  primary_copy = { backupEvent = [{ exists = false }, "false"] }
  pattern_base = {
    source        = ["aws.health"]
    "detail-type" = ["AWS Health Event", "AWS Health Abuse Event"]
  }
  event_pattern = var.backup_events == "drop" ? jsonencode(merge(local.pattern_base, {
    detail = local.primary_copy
    })) : jsonencode(merge(local.pattern_base, {
    "$or" = [
      { detail = local.primary_copy },
      # A backup copy of an event in a covered region (or a global one): filed once, as the
      # function keys it like the primary copy (same ARN, same version: a redelivery).
      { detail = { backupEvent = ["true"], eventRegion = concat(local.covered_regions, ["global"]) } },
    ]
  }))
}

check "global_events_covered" {
  assert {
    condition     = local.region == "us-east-1" || contains(var.forwarded_regions, "us-east-1")
    error_message = "Global AWS Health events (IAM, billing, account notices…) are delivered in us-east-1 only: deploy modules/forward there and list \"us-east-1\" in forwarded_regions."
  }
}

check "backup_region_covered" {
  assert {
    condition     = var.backup_events == "drop" || contains(local.covered_regions, "us-west-2")
    error_message = "backup_events = \"deduplicate\" receives backup copies in us-west-2: deploy modules/forward there and list it in forwarded_regions."
  }
}

check "one_github_credential" {
  assert {
    condition = (
      (var.github_token_secret_arn != null ? 1 : 0) + (var.github_token_ssm_parameter != null ? 1 : 0) +
      (var.github_app_private_key_secret_arn != null ? 1 : 0) + (var.github_app_private_key_ssm_parameter != null ? 1 : 0)
    ) == 1
    error_message = "Give exactly one of github_token_secret_arn, github_token_ssm_parameter, github_app_private_key_secret_arn, github_app_private_key_ssm_parameter."
  }
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
      values   = [module.rule.rule_arn]
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
  dynamic "statement" {
    for_each = length(local.secret_arns) == 0 ? [] : [1]
    content {
      sid       = "ReadGitHubSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secret_arns
    }
  }
  dynamic "statement" {
    for_each = length(local.ssm_parameter_arns) == 0 ? [] : [1]
    content {
      sid       = "ReadGitHubParameter"
      actions   = ["ssm:GetParameter"]
      resources = local.ssm_parameter_arns
    }
  }
  dynamic "statement" {
    for_each = var.secrets_kms_key_arn == null ? [] : [1]
    content {
      sid       = "DecryptGitHubSecret"
      actions   = ["kms:Decrypt"]
      resources = [var.secrets_kms_key_arn]
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

# The rule and its one target (the function, or the SNS events topic), with the same
# retries and dead-letter handling as every forwarding rule: modules/forward, given this
# module's DLQ (whose policy lets the rule send to it).
module "rule" {
  source = "./modules/forward"

  name                     = var.name
  rule_name                = "${var.name}-events"
  rule_description         = "Every AWS Health event (and abuse event) to opsbot"
  event_pattern            = local.event_pattern
  target_id                = local.via_sns ? "opsbot-health-sns" : "opsbot-health-lambda"
  target_arn               = local.via_sns ? aws_sns_topic.events[0].arn : aws_lambda_function.health.arn
  create_dead_letter_queue = false
  dead_letter_queue_arn    = aws_sqs_queue.dlq.arn
  tags                     = var.tags
}

moved {
  from = aws_cloudwatch_event_rule.health
  to   = module.rule.aws_cloudwatch_event_rule.rule
}

# Forwarded events from modules/forward in other regions arrive on this region's default
# bus and match the rule above like local ones. This role lets those rules put them here.
data "aws_iam_policy_document" "forward_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "forward" {
  count              = length(var.forwarded_regions) > 0 ? 1 : 0
  name               = "${var.name}-forward"
  assume_role_policy = data.aws_iam_policy_document.forward_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "forward" {
  statement {
    sid       = "PutEventsOnTheMainBus"
    actions   = ["events:PutEvents"]
    resources = ["arn:${local.partition}:events:${local.region}:${local.account}:event-bus/default"]
  }
}

resource "aws_iam_role_policy" "forward" {
  count  = length(var.forwarded_regions) > 0 ? 1 : 0
  name   = "${var.name}-forward"
  role   = aws_iam_role.forward[0].id
  policy = data.aws_iam_policy_document.forward.json
}

resource "aws_lambda_permission" "eventbridge" {
  count          = local.via_sns ? 0 : 1
  statement_id   = "AllowEventBridge"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.health.function_name
  principal      = "events.amazonaws.com"
  source_arn     = module.rule.rule_arn
  source_account = data.aws_caller_identity.current.account_id
}

# delivery = "sns": EventBridge → SNS topic → Lambda. EventBridge cannot publish to a topic
# encrypted with the AWS managed key (alias/aws/sns: its key policy cannot be changed), so
# the events topic uses a customer managed key that lets EventBridge encrypt.
data "aws_iam_policy_document" "sns_key" {
  count = local.via_sns && var.sns_kms_key_arn == null ? 1 : 0
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }
  statement {
    sid       = "EventBridgePublishesToTheTopic"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_kms_key" "sns" {
  count               = local.via_sns && var.sns_kms_key_arn == null ? 1 : 0
  description         = "${var.name}: SNS events topic (EventBridge publishes to it)"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.sns_key[0].json
  tags                = var.tags
}

resource "aws_kms_alias" "sns" {
  count         = local.via_sns && var.sns_kms_key_arn == null ? 1 : 0
  name          = "alias/${var.name}-events"
  target_key_id = aws_kms_key.sns[0].key_id
}

resource "aws_sns_topic" "events" {
  count             = local.via_sns ? 1 : 0
  name              = "${var.name}-events"
  kms_master_key_id = var.sns_kms_key_arn != null ? var.sns_kms_key_arn : aws_kms_key.sns[0].arn
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
      values   = [module.rule.rule_arn]
    }
  }
}

resource "aws_sns_topic_policy" "events" {
  count  = local.via_sns ? 1 : 0
  arn    = aws_sns_topic.events[0].arn
  policy = data.aws_iam_policy_document.events_topic[0].json
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
