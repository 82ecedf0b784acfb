output "function_name" {
  description = "The Lambda function's name."
  value       = aws_lambda_function.health.function_name
}

output "function_arn" {
  description = "The Lambda function's ARN."
  value       = aws_lambda_function.health.arn
}

output "event_rule_arn" {
  description = "The EventBridge rule on aws.health."
  value       = module.rule.rule_arn
}

output "alerts_topic_arn" {
  description = "SNS topic opsbot publishes to when an event could not be filed (OPSBOT_SNS_TOPIC_ARN)."
  value       = aws_sns_topic.alerts.arn
}

output "events_topic_arn" {
  description = "SNS topic carrying the Health events when delivery = \"sns\" (null otherwise)."
  value       = local.via_sns ? aws_sns_topic.events[0].arn : null
}

output "dead_letter_queue_url" {
  description = "SQS queue holding events that could not be delivered or filed."
  value       = aws_sqs_queue.dlq.id
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "event_bus_arn" {
  description = "This region's default event bus: the target of every modules/forward rule."
  value       = "arn:${local.partition}:events:${local.region}:${local.account}:event-bus/default"
}

output "forward_role_arn" {
  description = "IAM role modules/forward rules use to put events on event_bus_arn (null without forwarded_regions)."
  value       = length(var.forwarded_regions) > 0 ? aws_iam_role.forward[0].arn : null
}

output "event_pattern" {
  description = "The event pattern (JSON) of the rule here; pass it to modules/forward so every region filters alike."
  value       = local.event_pattern
}
