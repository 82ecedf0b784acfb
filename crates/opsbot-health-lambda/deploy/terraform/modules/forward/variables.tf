variable "name" {
  description = "Prefix of the resources (the main module's `name`)."
  type        = string
  default     = "opsbot-health"
}

variable "target_event_bus_arn" {
  description = "The main module's `event_bus_arn` (the default bus of the function's region)."
  type        = string
}

variable "role_arn" {
  description = "The main module's `forward_role_arn` (events:PutEvents on that bus)."
  type        = string
}

variable "event_pattern" {
  description = "The main module's `event_pattern`, so backup copies are filtered the same way everywhere."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
