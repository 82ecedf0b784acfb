# opsbot-health forwarder: in one more region, a rule on aws.health (the main module's
# pattern) that puts every matching event on the main region's default event bus, where
# the main module's rule hands it to the function. Deploy once per region, with a provider
# for that region:
#
#   module "opsbot_health_forward_eu_west_1" {
#     source               = ".../deploy/terraform/modules/forward"
#     providers            = { aws = aws.eu_west_1 }
#     target_event_bus_arn = module.opsbot_health.event_bus_arn
#     role_arn             = module.opsbot_health.forward_role_arn
#     event_pattern        = module.opsbot_health.event_pattern
#   }
#
# Events EventBridge cannot forward after its retries land in this region's dead-letter
# queue (`dead_letter_queue_url`); replay them with `opsbot health replay --queue-url URL`.

data "aws_region" "current" {}

resource "aws_cloudwatch_event_rule" "forward" {
  name          = "${var.name}-forward"
  description   = "AWS Health events of ${data.aws_region.current.name} to the opsbot bus"
  event_pattern = var.event_pattern
  tags          = var.tags
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-forward-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "EventBridgeForwardingFailures"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.forward.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

resource "aws_cloudwatch_event_target" "bus" {
  rule      = aws_cloudwatch_event_rule.forward.name
  target_id = "opsbot-health-bus"
  arn       = var.target_event_bus_arn
  role_arn  = var.role_arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }

  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }
}
