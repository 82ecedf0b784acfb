//! One way to say what an AWS SDK call failed with, for every job's error messages.
//!
//! The SDKs' `DisplayErrorContext` ends with the `Debug` dump of the whole error (metadata,
//! extras, request id maps), which buries the one line a reader needs. [`message`] gives the
//! service's own code and message for an answer (`ResourceNotFoundException: Requested
//! resource not found (HTTP 400, request id …)`), and the chain of causes for a call that got
//! no answer (`dispatch failure: io error: … Connection refused (os error 111)`).

use std::error::Error;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A one-line description of `err` for logs and error messages (no `Debug` dump).
pub fn message<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: Error + ProvideErrorMetadata + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let status = service.raw().status().as_u16();
            let mut out = match (e.code(), e.message()) {
                (Some(code), Some(text)) => format!("{code}: {text}"),
                (Some(code), None) => code.to_string(),
                (None, Some(text)) => text.to_string(),
                (None, None) => chain(e),
            };
            out.push_str(&format!(" (HTTP {status}"));
            if let Some(id) = e.meta().extra("aws_request_id") {
                out.push_str(&format!(", request id {id}"));
            }
            out.push(')');
            out
        }
        other => chain(other),
    }
}

/// `err` and its sources, each by its `Display`, joined with `: ` (a cause whose text the
/// previous one already ends with is not repeated).
fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::result::{ConnectorError, ServiceError};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    #[derive(Debug)]
    struct Modeled(ErrorMetadata);
    impl std::fmt::Display for Modeled {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ResourceNotFoundException")
        }
    }
    impl Error for Modeled {}
    impl ProvideErrorMetadata for Modeled {
        fn meta(&self) -> &ErrorMetadata {
            &self.0
        }
    }

    #[test]
    fn a_service_answer_is_its_code_message_status_and_request_id() {
        let meta = ErrorMetadata::builder()
            .code("ResourceNotFoundException")
            .message("Requested resource not found")
            .custom("aws_request_id", "7d9c")
            .build();
        let raw = HttpResponse::new(
            StatusCode::try_from(400).expect("a valid status"),
            SdkBody::empty(),
        );
        let err: SdkError<Modeled, HttpResponse> = SdkError::ServiceError(
            ServiceError::builder()
                .source(Modeled(meta))
                .raw(raw)
                .build(),
        );
        assert_eq!(
            message(&err),
            "ResourceNotFoundException: Requested resource not found (HTTP 400, request id 7d9c)"
        );
        assert!(!message(&err).contains("ErrorMetadata"), "no Debug dump");
    }

    #[test]
    fn no_answer_is_the_chain_of_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let err: SdkError<Modeled, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(io)));
        let text = message(&err);
        assert!(text.starts_with("dispatch failure"), "{text}");
        assert!(text.ends_with("Connection refused"), "{text}");
        assert!(!text.contains("ConnectorError {"), "no Debug dump: {text}");
    }
}
