variable "name" {
  description = "Prefix of the resources (the main module's `name`)."
  type        = string
  default     = "opsbot-health"
}

variable "target_arn" {
  description = "Where the rule sends events: the main module's `event_bus_arn` (the default bus of the function's region) when forwarding; the function or the SNS events topic in the main module."
  type        = string
}

variable "role_arn" {
  description = "The main module's `forward_role_arn` (events:PutEvents on that bus) when forwarding; null for a function or topic target (their resource policies allow EventBridge)."
  type        = string
  default     = null
}

variable "event_pattern" {
  description = "The main module's `event_pattern`, so backup copies are filtered the same way everywhere."
  type        = string
}

variable "rule_name" {
  description = "Name of the rule; null: \"<name>-forward\"."
  type        = string
  default     = null
}

variable "rule_description" {
  description = "Description of the rule; null: names the region it forwards from."
  type        = string
  default     = null
}

variable "target_id" {
  description = "Id of the rule's target."
  type        = string
  default     = "opsbot-health-bus"
}

variable "create_dead_letter_queue" {
  description = "Create this rule's own dead-letter queue (\"<name>-forward-dlq\"); false: use dead_letter_queue_arn."
  type        = bool
  default     = true
}

variable "dead_letter_queue_arn" {
  description = "An existing dead-letter queue (its policy must let this rule send to it) when create_dead_letter_queue is false."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
