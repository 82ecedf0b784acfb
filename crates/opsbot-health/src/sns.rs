//! The SNS adapter: alerts for events that could not be filed, and optional notices for new
//! issues, published with aws-sdk-sns to `OPSBOT_SNS_TOPIC_ARN`. The SDK reads the endpoint
//! override (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SNS`) like every AWS SDK does.

use aws_config::BehaviorVersion;

use crate::service::{Notifier, NotifyError};

/// Publishes to one SNS topic.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsNotifier {
    /// A notifier with a client from the standard AWS configuration chain (environment,
    /// Lambda role…). The region defaults to the topic's own region when none is configured.
    pub async fn from_env(topic_arn: &str) -> SnsNotifier {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            && let Some(region) = topic_region(topic_arn)
        {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        let config = loader.load().await;
        SnsNotifier::new(aws_sdk_sns::Client::new(&config), topic_arn)
    }

    pub fn new(client: aws_sdk_sns::Client, topic_arn: &str) -> SnsNotifier {
        SnsNotifier {
            client,
            topic_arn: topic_arn.to_string(),
        }
    }
}

/// `arn:aws:sns:REGION:ACCOUNT:NAME` → `REGION`.
pub fn topic_region(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("sns"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), NotifyError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map_err(|err| {
                NotifyError(format!(
                    "SNS publish to {}: {}",
                    self.topic_arn,
                    opsbot_core::aws_error::message(&err)
                ))
            })?;
        Ok(())
    }

    fn topic_arn(&self) -> Option<&str> {
        Some(&self.topic_arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_topic_arn() {
        assert_eq!(
            topic_region("arn:aws:sns:eu-west-1:123456789012:alerts"),
            Some("eu-west-1")
        );
        assert_eq!(topic_region("nope"), None);
    }
}
