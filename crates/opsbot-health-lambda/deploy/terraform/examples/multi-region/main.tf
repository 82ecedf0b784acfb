# The function in eu-west-1, events of eu-central-1 and global events (us-east-1)
# forwarded to it, backup copies (us-west-2) deduplicated. `terraform validate` checks
# this wiring in CI (crates/opsbot-health-lambda/deploy/check.sh).

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

variable "zip_path" {
  type = string
}

provider "aws" {
  region = "eu-west-1"
}

provider "aws" {
  alias  = "eu_central_1"
  region = "eu-central-1"
}

provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"
}

provider "aws" {
  alias  = "us_west_2"
  region = "us-west-2"
}

module "opsbot_health" {
  source                            = "../.."
  zip_path                          = var.zip_path
  github_repository                 = "acme/ops"
  github_app_id                     = "123456"
  github_app_private_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:opsbot/github-app-AbCdEf"
  forwarded_regions                 = ["eu-central-1", "us-east-1", "us-west-2"]
  backup_events                     = "deduplicate"
  delivery                          = "sns"
  alert_emails                      = ["sre@example.com"]
}

module "forward_eu_central_1" {
  source        = "../../modules/forward"
  providers     = { aws = aws.eu_central_1 }
  target_arn    = module.opsbot_health.event_bus_arn
  role_arn      = module.opsbot_health.forward_role_arn
  event_pattern = module.opsbot_health.event_pattern
}

module "forward_us_east_1" {
  source        = "../../modules/forward"
  providers     = { aws = aws.us_east_1 }
  target_arn    = module.opsbot_health.event_bus_arn
  role_arn      = module.opsbot_health.forward_role_arn
  event_pattern = module.opsbot_health.event_pattern
}

module "forward_us_west_2" {
  source        = "../../modules/forward"
  providers     = { aws = aws.us_west_2 }
  target_arn    = module.opsbot_health.event_bus_arn
  role_arn      = module.opsbot_health.forward_role_arn
  event_pattern = module.opsbot_health.event_pattern
}
