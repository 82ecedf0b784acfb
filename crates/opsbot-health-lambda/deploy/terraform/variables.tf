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

variable "github_token" {
  description = "A token with issues:write on the target repositories (GITHUB_TOKEN). Leave null when using a GitHub App. Stored in the function's environment (encrypted with kms_key_arn when given) and in Terraform state: prefer the App."
  type        = string
  default     = null
  sensitive   = true
}

variable "github_app_id" {
  description = "GitHub App id (GITHUB_APP_ID); the App needs Issues: read & write."
  type        = string
  default     = null
}

variable "github_app_private_key" {
  description = "The App's private key, PEM (GITHUB_APP_PRIVATE_KEY)."
  type        = string
  default     = null
  sensitive   = true
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
