variable "name" {
  description = "Name of the function and prefix of every resource this module creates."
  type        = string
  default     = "opsbot-health"
}

variable "zip_path" {
  description = "Path of the deployment zip holding `bootstrap` (built by workflows/health-lambda-build.yml: opsbot-health-lambda for aarch64-unknown-linux-gnu, renamed bootstrap; add opsbot.toml beside it to configure routing)."
  type        = string
}

variable "github_repository" {
  description = "Default target repository (owner/name), GITHUB_REPOSITORY. Routes in opsbot.toml may send events elsewhere."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "github_api_url" {
  description = "GITHUB_API_URL: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server."
  type        = string
  default     = "https://api.github.com"
}

variable "github_token_secret_arn" {
  description = "Secrets Manager secret (ARN; `ARN#field` for one field of a JSON secret) holding a token with issues:write on the target repositories. The function reads it at cold start (GITHUB_TOKEN_SECRET_ARN); the value is never in the function's environment or in Terraform state."
  type        = string
  default     = null
}

variable "github_token_ssm_parameter" {
  description = "SSM Parameter Store SecureString (name or ARN) holding the token, read with decryption at cold start (GITHUB_TOKEN_SSM_PARAMETER)."
  type        = string
  default     = null
}

variable "github_app_id" {
  description = "GitHub App id (GITHUB_APP_ID); the App needs Issues: read & write."
  type        = string
  default     = null
}

variable "github_app_private_key_secret_arn" {
  description = "Secrets Manager secret (ARN, or `ARN#field`) holding the App's private key PEM (GITHUB_APP_PRIVATE_KEY_SECRET_ARN); set github_app_id too."
  type        = string
  default     = null
}

variable "github_app_private_key_ssm_parameter" {
  description = "SSM SecureString (name or ARN) holding the App's private key PEM (GITHUB_APP_PRIVATE_KEY_SSM_PARAMETER); set github_app_id too."
  type        = string
  default     = null
}

variable "secrets_kms_key_arn" {
  description = "Customer managed KMS key encrypting the secret or SecureString above (null: the AWS managed aws/secretsmanager or aws/ssm key, which needs no grant)."
  type        = string
  default     = null
}

variable "github_app_installation_id" {
  description = "Installation id (GITHUB_APP_INSTALLATION_ID); looked up from github_repository when null (one extra API call at cold start)."
  type        = string
  default     = null
}

variable "delivery" {
  description = "How events reach the function: \"direct\" (EventBridge rule → Lambda) or \"sns\" (EventBridge rule → SNS topic → Lambda, so other subscribers can share the feed)."
  type        = string
  default     = "direct"

  validation {
    condition     = contains(["direct", "sns"], var.delivery)
    error_message = "delivery must be \"direct\" or \"sns\"."
  }
}

variable "forwarded_regions" {
  description = "Regions where you deploy modules/forward (a rule that forwards aws.health to this region's bus). Include us-east-1 for global events when this region is another one. Creates the forwarding IAM role and widens the backup filter to these regions."
  type        = list(string)
  default     = []
}

variable "backup_events" {
  description = "Backup copies of public events (`detail.backupEvent = \"true\"`, delivered in us-west-2 or us-east-1 besides the event's own region): \"drop\" them in every rule, or \"deduplicate\": let copies of covered regions' events through, and the function files them once (same key and version as the primary copy: a redelivery). Needs us-west-2 covered."
  type        = string
  default     = "drop"

  validation {
    condition     = contains(["drop", "deduplicate"], var.backup_events)
    error_message = "backup_events must be \"drop\" or \"deduplicate\"."
  }
}

variable "sns_kms_key_arn" {
  description = "With delivery = \"sns\": customer managed KMS key for the events topic; its key policy must let events.amazonaws.com use kms:GenerateDataKey* and kms:Decrypt. Null: the module creates one (EventBridge cannot publish to a topic under the AWS managed alias/aws/sns key)."
  type        = string
  default     = null
}

variable "alert_emails" {
  description = "E-mail addresses subscribed to the alerts topic (events that could not be filed, unusable input). Each must confirm the subscription."
  type        = list(string)
  default     = []
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions. 1 serialises filing (no duplicate races, gentle on GitHub's secondary rate limits; async invocations wait, they are not lost). -1 for no reservation: duplicates are still converged."
  type        = number
  default     = 1
}

variable "memory_size" {
  description = "Memory in MB. The function peaks well under 64 MB."
  type        = number
  default     = 128
}

variable "timeout" {
  description = "Function timeout in seconds. Keep it above the GitHub retry budget times the calls per event."
  type        = number
  default     = 120
}

variable "github_retry_budget_secs" {
  description = "OPSBOT_GITHUB_RETRY_BUDGET_SECS: total time one GitHub call may spend retrying before the invocation fails (and AWS retries it)."
  type        = number
  default     = 20
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention."
  type        = number
  default     = 30
}

variable "kms_key_arn" {
  description = "KMS key for the function's environment variables (null: the AWS managed key)."
  type        = string
  default     = null
}

variable "extra_environment" {
  description = "More environment variables, e.g. OPSBOT__HEALTH__REPO or RUST_LOG."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
