output "rule_arn" {
  description = "The rule."
  value       = aws_cloudwatch_event_rule.rule.arn
}

output "rule_name" {
  description = "The rule's name."
  value       = aws_cloudwatch_event_rule.rule.name
}

output "dead_letter_queue_url" {
  description = "Events this rule could not deliver (null when the queue was given, not created)."
  value       = var.create_dead_letter_queue ? aws_sqs_queue.dlq[0].id : null
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue the rule's target uses."
  value       = local.dead_letter_queue_arn
}
