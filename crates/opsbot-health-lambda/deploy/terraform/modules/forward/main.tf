# opsbot-health rule: an EventBridge rule on aws.health (the main module's pattern) with one
# target, retried for 24 hours, and a dead-letter queue for what EventBridge could not
# deliver. The main module uses it for its own rule (target: the function, or the SNS events
# topic; its shared DLQ). Deployed alone in one more region, it forwards every matching
# event to the main region's default event bus, where the main module's rule hands it to
# the function. Once per region, with a provider for that region:
#
#   module "opsbot_health_forward_eu_west_1" {
#     source        = ".../deploy/terraform/modules/forward"
#     providers     = { aws = aws.eu_west_1 }
#     target_arn    = module.opsbot_health.event_bus_arn
#     role_arn      = module.opsbot_health.forward_role_arn
#     event_pattern = module.opsbot_health.event_pattern
#   }
#
# Events EventBridge cannot forward after its retries land in this region's dead-letter
# queue (`dead_letter_queue_url`); replay them with `opsbot health replay --queue-url URL`.

data "aws_region" "current" {}

locals {
  dead_letter_queue_arn = var.create_dead_letter_queue ? aws_sqs_queue.dlq[0].arn : var.dead_letter_queue_arn
}

resource "aws_cloudwatch_event_rule" "rule" {
  name          = coalesce(var.rule_name, "${var.name}-forward")
  description   = coalesce(var.rule_description, "AWS Health events of ${data.aws_region.current.name} to the opsbot bus")
  event_pattern = var.event_pattern
  tags          = var.tags
}

resource "aws_sqs_queue" "dlq" {
  count                     = var.create_dead_letter_queue ? 1 : 0
  name                      = "${var.name}-forward-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

data "aws_iam_policy_document" "dlq" {
  count = var.create_dead_letter_queue ? 1 : 0
  statement {
    sid       = "EventBridgeForwardingFailures"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq[0].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.rule.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  count     = var.create_dead_letter_queue ? 1 : 0
  queue_url = aws_sqs_queue.dlq[0].id
  policy    = data.aws_iam_policy_document.dlq[0].json
}

resource "aws_cloudwatch_event_target" "target" {
  rule      = aws_cloudwatch_event_rule.rule.name
  target_id = var.target_id
  arn       = var.target_arn
  role_arn  = var.role_arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }

  dead_letter_config {
    arn = local.dead_letter_queue_arn
  }

  lifecycle {
    precondition {
      condition     = var.create_dead_letter_queue || var.dead_letter_queue_arn != null
      error_message = "Give dead_letter_queue_arn when create_dead_letter_queue is false."
    }
  }
}

# The resources' names before this module also carried the main module's rule.
moved {
  from = aws_cloudwatch_event_rule.forward
  to   = aws_cloudwatch_event_rule.rule
}

moved {
  from = aws_cloudwatch_event_target.bus
  to   = aws_cloudwatch_event_target.target
}
