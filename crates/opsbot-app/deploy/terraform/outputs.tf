output "webhook_url" {
  description = "The App's webhook URL (the ingest function URL): set it in the App's settings with the webhook secret."
  value       = aws_lambda_function_url.ingest.function_url
}

output "ingest_function_name" {
  value = aws_lambda_function.ingest.function_name
}

output "worker_function_name" {
  value = aws_lambda_function.worker.function_name
}

output "jobs_queue_url" {
  value = aws_sqs_queue.jobs.url
}

output "dead_letter_queue_url" {
  description = "Jobs that failed max_receive_count times; redrive them to the jobs queue once GitHub is reachable again."
  value       = aws_sqs_queue.dlq.url
}

output "deliveries_table_name" {
  value = aws_dynamodb_table.deliveries.name
}

output "redeliver_rule_name" {
  description = "The EventBridge rule that runs the redelivery sweep (null when redeliver_schedule is null)."
  value       = one(aws_cloudwatch_event_rule.redeliver[*].name)
}
