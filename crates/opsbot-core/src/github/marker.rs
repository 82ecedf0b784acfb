//! Hidden markers: an HTML comment in an issue or PR body that carries machine-readable
//! state (`<!-- opsbot:health {"key":"…"} -->`). GitHub renders nothing for it, and jobs
//! use it to recognise their own issues and pull requests and what they last wrote.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Renders `<!-- opsbot:<kind> <json> -->`. `--` inside the JSON is escaped so the
/// comment cannot be closed early by data.
pub fn render<T: Serialize>(kind: &str, state: &T) -> String {
    let json = serde_json::to_string(state).unwrap_or_else(|_| "null".to_string());
    format!("<!-- opsbot:{kind} {} -->", json.replace("--", "-\\u002d"))
}

/// Finds the first `kind` marker in `body` and decodes its state.
pub fn find<T: DeserializeOwned>(body: &str, kind: &str) -> Option<T> {
    let start_tag = format!("<!-- opsbot:{kind} ");
    let start = body.find(&start_tag)? + start_tag.len();
    let end = body[start..].find(" -->")? + start;
    serde_json::from_str(&body[start..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct State {
        key: String,
        v: u32,
    }

    #[test]
    fn round_trips_and_survives_comment_closers() {
        let s = State {
            key: "a --> b".into(),
            v: 3,
        };
        let body = format!("hello\n\n{}\n", render("health", &s));
        assert!(!body.contains("a -->"));
        assert_eq!(find::<State>(&body, "health"), Some(s));
        assert_eq!(find::<State>(&body, "tfupdate"), None);
        assert_eq!(
            find::<State>("<!-- opsbot:health {broken -->", "health"),
            None
        );
    }
}
