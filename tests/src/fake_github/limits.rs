//! GitHub's size limits on text fields, enforced with GitHub's own answer.
//!
//! GitHub refuses an issue, pull-request or comment body longer than 65,536 characters with
//! `422 Unprocessable Entity` and this body (the `resource` names what was written):
//!
//! ```json
//! {"message":"Validation Failed",
//!  "errors":[{"resource":"Issue","code":"custom","field":"body",
//!             "message":"body is too long (maximum is 65536 characters)"}],
//!  "documentation_url":"https://docs.github.com/rest/issues/issues#create-an-issue"}
//! ```

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The most characters GitHub accepts in an issue, pull-request or comment body.
pub const MAX_BODY_CHARS: usize = 65_536;

/// GitHub's 422 for a body over [`MAX_BODY_CHARS`], or `None` when the write fits (or is
/// not one of the writes GitHub limits this way).
pub(crate) fn check_body(method: &Method, segments: &[String], body: &Value) -> Option<Response> {
    if *method != Method::POST && *method != Method::PATCH {
        return None;
    }
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (resource, docs) = match (method.as_str(), s.as_slice()) {
        ("POST", ["repos", _, _, "issues"]) => ("Issue", "issues/issues#create-an-issue"),
        ("PATCH", ["repos", _, _, "issues", _]) => ("Issue", "issues/issues#update-an-issue"),
        ("POST", ["repos", _, _, "issues", _, "comments"]) => {
            ("IssueComment", "issues/comments#create-an-issue-comment")
        }
        ("PATCH", ["repos", _, _, "issues", "comments", _]) => {
            ("IssueComment", "issues/comments#update-an-issue-comment")
        }
        ("POST", ["repos", _, _, "pulls"]) => ("PullRequest", "pulls/pulls#create-a-pull-request"),
        ("PATCH", ["repos", _, _, "pulls", _]) => {
            ("PullRequest", "pulls/pulls#update-a-pull-request")
        }
        _ => return None,
    };
    let text = body.get("body").and_then(Value::as_str)?;
    if text.chars().count() <= MAX_BODY_CHARS {
        return None;
    }
    Some(too_long(resource, docs))
}

fn too_long(resource: &str, docs: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        [("content-type", "application/json; charset=utf-8")],
        json!({
            "message": "Validation Failed",
            "errors": [{
                "resource": resource,
                "code": "custom",
                "field": "body",
                "message": format!("body is too long (maximum is {MAX_BODY_CHARS} characters)"),
            }],
            "documentation_url": format!("https://docs.github.com/rest/{docs}"),
        })
        .to_string(),
    )
        .into_response()
}
