output "rule_arn" {
  description = "The forwarding rule."
  value       = aws_cloudwatch_event_rule.forward.arn
}

output "dead_letter_queue_url" {
  description = "Events this region could not forward."
  value       = aws_sqs_queue.dlq.id
}
