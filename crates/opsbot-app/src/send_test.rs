//! `opsbot app send-test`: signs a webhook payload (for instance one of GitHub's examples)
//! with the App's webhook secret and POSTs it to a running server with GitHub's headers,
//! so a local trial needs no GitHub.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use crate::signature::sign;

#[derive(Debug, thiserror::Error)]
pub enum SendTestError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}: cannot tell the event from the file name; pass --event (files are named <event>.<action>.json)"
    )]
    NoEvent { path: String },
    #[error("POST {url}: {message}")]
    Send { url: String, message: String },
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentDelivery {
    pub delivery: String,
    pub event: String,
    pub status: u16,
    pub body: String,
}

/// `push.with-new-branch.json` → `push`.
pub fn event_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let event = name.split('.').next()?;
    (!event.is_empty() && event != name).then(|| event.to_owned())
}

/// Sends the file's bytes unchanged, signed, to `url`.
pub async fn send_file(
    url: &str,
    secret: &SecretString,
    path: &Path,
    event: Option<&str>,
) -> Result<SentDelivery, SendTestError> {
    let body = std::fs::read(path).map_err(|source| SendTestError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let event = match event {
        Some(e) => e.to_owned(),
        None => event_from_file_name(path).ok_or_else(|| SendTestError::NoEvent {
            path: path.display().to_string(),
        })?,
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let delivery = format!("send-test-{nanos:x}");
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/opsbot-send-test")
        .header("x-github-event", &event)
        .header("x-github-delivery", &delivery)
        .header(
            "x-hub-signature-256",
            sign(secret.expose_secret().as_bytes(), &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| SendTestError::Send {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Ok(SentDelivery {
        delivery,
        event,
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_comes_from_the_file_name() {
        assert_eq!(
            event_from_file_name(Path::new("/x/push.with-new-branch.json")).as_deref(),
            Some("push")
        );
        assert_eq!(
            event_from_file_name(Path::new("pull_request.opened.json")).as_deref(),
            Some("pull_request")
        );
        assert_eq!(event_from_file_name(Path::new("payload")), None);
    }
}
