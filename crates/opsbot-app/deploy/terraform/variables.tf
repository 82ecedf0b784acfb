variable "name" {
  description = "Prefix of every resource this module creates (functions NAME-ingest and NAME-worker)."
  type        = string
  default     = "opsbot-app"
}

variable "zip_path" {
  description = "Path of the opsbot-app-lambda zip (`bootstrap`, released as opsbot-app-lambda-VERSION-arm64.zip). Both functions run it; OPSBOT_APP_ROLE picks the role."
  type        = string
}

variable "architecture" {
  description = "arm64 or x86_64, as the zip was built."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be \"arm64\" or \"x86_64\"."
  }
}

variable "github_app_id" {
  description = "The GitHub App's id (GITHUB_APP_ID). The App needs Checks: write, Contents: read, Pull requests: read."
  type        = string
}

variable "github_api_url" {
  description = "GITHUB_API_URL: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server."
  type        = string
  default     = "https://api.github.com"
}

variable "webhook_secret_arn" {
  description = "Secrets Manager secret (ARN, or `ARN#field` for one field of a JSON secret) holding the App's webhook secret. Only the ingest function may read it (GITHUB_WEBHOOK_SECRET_SECRET_ARN)."
  type        = string

  validation {
    condition     = startswith(var.webhook_secret_arn, "arn:")
    error_message = "webhook_secret_arn must be a Secrets Manager ARN (a name cannot be scoped in IAM)."
  }
}

variable "github_app_private_key_secret_arn" {
  description = "Secrets Manager secret (ARN, or `ARN#field`) holding the App's private key PEM. Only the worker may read it (GITHUB_APP_PRIVATE_KEY_SECRET_ARN)."
  type        = string

  validation {
    condition     = startswith(var.github_app_private_key_secret_arn, "arn:")
    error_message = "github_app_private_key_secret_arn must be a Secrets Manager ARN."
  }
}

variable "secrets_kms_key_arn" {
  description = "Customer managed KMS key encrypting the two secrets (null: the AWS managed aws/secretsmanager key, which needs no grant)."
  type        = string
  default     = null
}

variable "ingest_timeout" {
  description = "Seconds the ingest function may take (verify, queue, answer: well under GitHub's 10 s)."
  type        = number
  default     = 10
}

variable "worker_timeout" {
  description = "Seconds one worker invocation may take (a batch of scans; large pull requests take longer). Scans still running 10 s before the end are cancelled, their check runs completed as `cancelled`, and the messages retried."
  type        = number
  default     = 300

  validation {
    condition     = var.worker_timeout >= 30 && var.worker_timeout <= 900
    error_message = "worker_timeout must be between 30 and 900 seconds."
  }
}

variable "worker_memory_size" {
  description = "MB for the worker (the scanner is CPU bound; Lambda gives CPU in proportion)."
  type        = number
  default     = 1024
}

variable "batch_size" {
  description = "SQS messages per worker invocation (scanned concurrently)."
  type        = number
  default     = 5
}

variable "worker_max_concurrency" {
  description = "Worker invocations at once (event source mapping maximum_concurrency, 2-1000): bounds the load on GitHub's API."
  type        = number
  default     = 10

  validation {
    condition     = var.worker_max_concurrency >= 2 && var.worker_max_concurrency <= 1000
    error_message = "worker_max_concurrency must be between 2 and 1000."
  }
}

variable "max_receive_count" {
  description = "Deliveries of one job before it moves to the dead-letter queue."
  type        = number
  default     = 5
}

variable "dedup_ttl_seconds" {
  description = "How long delivery ids are remembered (GitHub redelivers for 3 days)."
  type        = number
  default     = 604800
}

variable "redeliver_schedule" {
  description = "EventBridge schedule of the redelivery sweep run by the worker (GitHub keeps deliveries 3 days and does not redeliver failed ones itself). null: no sweep (run `opsbot app redeliver` yourself)."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = var.redeliver_schedule == null || can(regex("^(rate|cron)\\(.+\\)$", var.redeliver_schedule))
    error_message = "redeliver_schedule must be an EventBridge rate(...) or cron(...) expression, or null."
  }
}

variable "redeliver_window_seconds" {
  description = "How far back each sweep looks at the App's deliveries (longer than the schedule's period, so a sweep that failed is covered by the next)."
  type        = number
  default     = 3600

  validation {
    condition     = var.redeliver_window_seconds >= 300 && var.redeliver_window_seconds <= 259200
    error_message = "redeliver_window_seconds must be between 300 and 259200 (GitHub keeps 3 days)."
  }
}

variable "redeliver_grace_seconds" {
  description = "An accepted delivery younger than this is not checked for its check run yet (its job may still be queued): above the queue's usual backlog."
  type        = number
  default     = 600
}

variable "log_retention_days" {
  type    = number
  default = 30
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the functions' environment (null: the AWS managed key)."
  type        = string
  default     = null
}

variable "extra_environment" {
  description = "More environment variables for both functions (e.g. RUST_LOG). Never secrets."
  type        = map(string)
  default     = {}
}

variable "tags" {
  type    = map(string)
  default = {}
}
