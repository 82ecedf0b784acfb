//! The fake GitHub as the sender of an App's webhooks, and the App's delivery log.
//!
//! [`FakeGitHub::set_webhook`] points the App's hook at a URL with a secret;
//! [`FakeGitHub::deliver_webhook`] then signs a payload (`X-Hub-Signature-256`), POSTs it
//! with GitHub's headers and records the delivery with the status it got (0 when no
//! answer came within GitHub's 10 s), as GitHub does. The App's endpoints:
//!
//! - `GET /app/hook/deliveries` — newest first, `per_page` (max 100), paged with an
//!   opaque `cursor` in a `Link: rel="next"` header;
//! - `GET /app/hook/deliveries/{id}` — one delivery with its request headers and payload;
//! - `POST /app/hook/deliveries/{id}/attempts` — 202, then the same payload is sent again
//!   in the background with the same GUID, recorded as a new delivery with
//!   `redelivery: true`.
//!
//! All three require the App's JWT, as on GitHub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Caller, FakeGitHub, Inner, error};

/// GitHub gives a webhook receiver 10 s to answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The App's hook and its deliveries.
#[derive(Debug, Default)]
pub struct Hook {
    target: Option<(String, String)>,
    deliveries: Vec<DeliveryRec>,
    next_id: u64,
    /// `POST …/attempts` calls per GUID.
    redelivery_requests: HashMap<String, u32>,
    outbox: Option<tokio::sync::mpsc::UnboundedSender<Outgoing>>,
}

#[derive(Debug, Clone)]
struct DeliveryRec {
    id: u64,
    guid: String,
    event: String,
    action: Option<String>,
    payload: Vec<u8>,
    status_code: u16,
    delivered_at: String,
    redelivery: bool,
    duration: f64,
    installation_id: Option<u64>,
    repository_id: Option<u64>,
}

#[derive(Debug)]
struct Outgoing {
    guid: String,
    event: String,
    payload: Vec<u8>,
}

/// One recorded delivery, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDelivery {
    pub id: u64,
    pub guid: String,
    pub event: String,
    pub status_code: u16,
    pub redelivery: bool,
    /// The body the receiver answered (JSON for opsbot), for tests.
    pub response: String,
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh GUID (random enough for tests, shaped as GitHub's).
fn new_guid(n: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let x = (nanos as u64) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-11ef-{:04x}-{:012x}",
        (x >> 32) as u32,
        (x >> 16) as u16,
        (n & 0xffff) as u16,
        x & 0xffff_ffff_ffff
    )
}

/// Signs and POSTs one delivery; returns (status, response body, seconds). 0 = no answer.
async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    guid: &str,
    event: &str,
    payload: &[u8],
) -> (u16, String, f64) {
    let started = Instant::now();
    let signature = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(payload);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    };
    let result = client
        .post(url)
        .timeout(DELIVERY_TIMEOUT)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/fake")
        .header("x-github-event", event)
        .header("x-github-delivery", guid)
        .header("x-github-hook-installation-target-type", "integration")
        .header("x-hub-signature-256", signature)
        .body(payload.to_vec())
        .send()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            (status, body, elapsed)
        }
        Err(_) => (0, String::new(), elapsed),
    }
}

fn record(
    g: &mut Inner,
    guid: &str,
    event: &str,
    payload: &[u8],
    status: u16,
    duration: f64,
    redelivery: bool,
) -> u64 {
    let parsed: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    g.hook.next_id += 1;
    let id = 90_000_000 + g.hook.next_id;
    g.hook.deliveries.push(DeliveryRec {
        id,
        guid: guid.to_string(),
        event: event.to_string(),
        action: parsed["action"].as_str().map(str::to_string),
        payload: payload.to_vec(),
        status_code: status,
        delivered_at: super::state::now_rfc3339(),
        redelivery,
        duration,
        installation_id: parsed["installation"]["id"].as_u64(),
        repository_id: parsed["repository"]["id"].as_u64(),
    });
    id
}

impl FakeGitHub {
    /// Points the App's webhook at `url` (e.g. `http://127.0.0.1:8080/webhook`), signed
    /// with `secret`, and starts the sender that carries out redelivery requests.
    pub fn set_webhook(&self, url: &str, secret: &str) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
        {
            let mut g = self.lock();
            g.hook.target = Some((url.to_string(), secret.to_string()));
            g.hook.outbox = Some(tx);
        }
        let inner: Arc<Mutex<Inner>> = self.inner.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while let Some(out) = rx.recv().await {
                let Some((url, secret)) = lock(&inner).hook.target.clone() else {
                    continue;
                };
                let (status, _, secs) =
                    send(&client, &url, &secret, &out.guid, &out.event, &out.payload).await;
                let mut g = lock(&inner);
                record(
                    &mut g,
                    &out.guid,
                    &out.event,
                    &out.payload,
                    status,
                    secs,
                    true,
                );
            }
        });
    }

    /// Sends `payload` as event `event` to the App's webhook with a new GUID, records it,
    /// and returns the recorded delivery. Panics when no webhook is set.
    pub async fn deliver_webhook(&self, event: &str, payload: &[u8]) -> FakeDelivery {
        let (url, secret, guid) = {
            let mut g = self.lock();
            let Some((url, secret)) = g.hook.target.clone() else {
                panic!("fake GitHub: set_webhook first");
            };
            g.hook.next_id += 1;
            let n = g.hook.next_id;
            (url, secret, new_guid(n))
        };
        let client = reqwest::Client::new();
        let (status, response, secs) = send(&client, &url, &secret, &guid, event, payload).await;
        let id = {
            let mut g = self.lock();
            record(&mut g, &guid, event, payload, status, secs, false)
        };
        FakeDelivery {
            id,
            guid,
            event: event.to_string(),
            status_code: status,
            redelivery: false,
            response,
        }
    }

    /// Every delivery attempt, oldest first.
    pub fn deliveries(&self) -> Vec<FakeDelivery> {
        self.lock()
            .hook
            .deliveries
            .iter()
            .map(|d| FakeDelivery {
                id: d.id,
                guid: d.guid.clone(),
                event: d.event.clone(),
                status_code: d.status_code,
                redelivery: d.redelivery,
                response: String::new(),
            })
            .collect()
    }

    /// How many times redelivery of `guid` was requested.
    pub fn redelivery_requests(&self, guid: &str) -> u32 {
        self.lock()
            .hook
            .redelivery_requests
            .get(guid)
            .copied()
            .unwrap_or(0)
    }
}

fn summary_json(d: &DeliveryRec) -> Value {
    json!({
        "id": d.id, "guid": d.guid, "delivered_at": d.delivered_at, "redelivery": d.redelivery,
        "duration": d.duration,
        "status": if (200..300).contains(&d.status_code) { "OK".to_string() } else if d.status_code == 0 { "timed out".to_string() } else { format!("Invalid HTTP Response: {}", d.status_code) },
        "status_code": d.status_code, "event": d.event, "action": d.action,
        "installation_id": d.installation_id, "repository_id": d.repository_id,
    })
}

/// The App's delivery endpoints; `None` when the path is not one of them.
pub(crate) fn route(
    g: &mut Inner,
    caller: &Caller,
    method: &str,
    seg: &[&str],
    query: &HashMap<String, String>,
) -> Option<Response> {
    let rest = match seg {
        ["app", "hook", "deliveries", rest @ ..] => rest,
        _ => return None,
    };
    if *caller != Caller::App {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        ));
    }
    let base = g.base_url.clone();
    Some(match (method, rest) {
        ("GET", []) => {
            let per_page = query
                .get("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            // Newest first; the cursor is the id to continue from (exclusive).
            let cursor = query
                .get("cursor")
                .and_then(|c| c.strip_prefix("v1_"))
                .and_then(|c| c.parse::<u64>().ok());
            let list: Vec<&DeliveryRec> = g
                .hook
                .deliveries
                .iter()
                .rev()
                .filter(|d| cursor.is_none_or(|c| d.id < c))
                .collect();
            let page: Vec<Value> = list
                .iter()
                .take(per_page)
                .map(|d| summary_json(d))
                .collect();
            let mut resp = (StatusCode::OK, axum::Json(Value::Array(page))).into_response();
            if list.len() > per_page
                && let Some(last) = list.get(per_page - 1)
            {
                let link = format!(
                    "<{base}/app/hook/deliveries?per_page={per_page}&cursor=v1_{}>; rel=\"next\"",
                    last.id
                );
                if let Ok(v) = link.parse() {
                    resp.headers_mut().insert("link", v);
                }
            }
            resp
        }
        ("GET", [id]) => {
            let Some(d) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| g.hook.deliveries.iter().find(|d| d.id == id))
            else {
                return Some(error(StatusCode::NOT_FOUND, "Not Found"));
            };
            let mut v = summary_json(d);
            v["request"] = json!({
                "headers": { "X-GitHub-Event": d.event, "X-GitHub-Delivery": d.guid, "Content-Type": "application/json" },
                "payload": serde_json::from_slice::<Value>(&d.payload).unwrap_or(Value::Null),
            });
            v["response"] = json!({ "headers": {}, "payload": null });
            (StatusCode::OK, axum::Json(v)).into_response()
        }
        ("POST", [id, "attempts"]) => {
            let Some(d) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| g.hook.deliveries.iter().find(|d| d.id == id))
                .cloned()
            else {
                return Some(error(StatusCode::NOT_FOUND, "Not Found"));
            };
            *g.hook
                .redelivery_requests
                .entry(d.guid.clone())
                .or_default() += 1;
            if let Some(tx) = &g.hook.outbox {
                let _ = tx.send(Outgoing {
                    guid: d.guid,
                    event: d.event,
                    payload: d.payload,
                });
            }
            (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    })
}
