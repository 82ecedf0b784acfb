# The App in one region: create the two secrets first (the webhook secret you set in the
# App's settings, and the App's private key PEM), then `terraform apply` and paste the
# `webhook_url` output into the App's webhook URL.

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

provider "aws" {
  region = "eu-west-1"
}

module "opsbot_app" {
  source = "../.."

  zip_path                          = "${path.root}/opsbot-app-lambda-arm64.zip"
  github_app_id                     = "123456"
  webhook_secret_arn                = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:opsbot/webhook-secret-AbCdEf"
  github_app_private_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:opsbot/app-private-key-AbCdEf"

  # The redelivery sweep (the default; null turns it off).
  redeliver_schedule = "rate(5 minutes)"
}

output "webhook_url" {
  value = module.opsbot_app.webhook_url
}
