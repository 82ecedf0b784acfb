//! Release assets for the fake GitHub: what `scripts/install.sh` reads.
//!
//! `GET /repos/{o}/{r}/releases/tags/{tag}` answers the release with its `assets`
//! (`id`, `name`, `size`, `digest`, `url`, `browser_download_url`, as GitHub lists them);
//! `GET /repos/{o}/{r}/releases/assets/{id}` answers the asset's JSON, or its bytes when
//! asked with `Accept: application/octet-stream` (GitHub answers that with a redirect to
//! its download host; the fake serves the bytes itself). Unknown tags and assets are 404.
//! The bytes are kept with the repository's blobs under `release-asset:{id}`, a key no git
//! object id can take.

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Caller, FakeGitHub, Inner, error};

fn blob_key(id: u64) -> String {
    format!("release-asset:{id}")
}

impl FakeGitHub {
    /// Attaches `bytes` as asset `name` to the release tagged `tag` of `repo` (created
    /// with [`FakeGitHub::add_release`]); returns the asset id. Panics when the release
    /// does not exist (a test set-up error).
    pub fn add_release_asset(&self, repo: &str, tag: &str, name: &str, bytes: Vec<u8>) -> u64 {
        let mut g = self.lock();
        let id = g.next_id();
        let base = g.base_url.clone();
        let server = base
            .split_once("://")
            .map(|(scheme, rest)| {
                let host = rest.split('/').next().unwrap_or(rest);
                format!("{scheme}://{host}")
            })
            .unwrap_or_default();
        let r = g
            .repos
            .get_mut(repo)
            .unwrap_or_else(|| panic!("no repo {repo}"));
        let digest = hex::encode(Sha256::digest(&bytes));
        let size = bytes.len();
        r.blobs.insert(blob_key(id), bytes);
        let release = r
            .releases
            .iter_mut()
            .find(|rel| rel["tag_name"] == tag)
            .unwrap_or_else(|| panic!("no release {tag} in {repo}"));
        let asset = json!({
            "id": id,
            "name": name,
            "label": "",
            "state": "uploaded",
            "content_type": "application/octet-stream",
            "size": size,
            "digest": format!("sha256:{digest}"),
            "url": format!("{base}/repos/{repo}/releases/assets/{id}"),
            "browser_download_url": format!("{server}/{repo}/releases/download/{tag}/{name}"),
        });
        match release.get_mut("assets").and_then(Value::as_array_mut) {
            Some(assets) => assets.push(asset),
            None => release["assets"] = json!([asset]),
        }
        id
    }
}

/// Answers the release-by-tag and asset routes; `None` for every other request.
pub(crate) fn route(
    g: &Inner,
    caller: &Caller,
    method: &Method,
    seg: &[String],
    headers: &HeaderMap,
) -> Option<Response> {
    let s: Vec<&str> = seg.iter().map(String::as_str).collect();
    let ["repos", o, r, "releases", rest @ ..] = s.as_slice() else {
        return None;
    };
    if method != Method::GET || !matches!(rest, ["tags", _] | ["assets", _]) {
        return None;
    }
    let full = format!("{o}/{r}");
    if let Caller::Installation(id) = caller
        && !g
            .installations
            .get(id)
            .is_some_and(|repos| repos.contains(&full))
    {
        return Some(error(
            StatusCode::NOT_FOUND,
            "Not Found (not installed on this repository)",
        ));
    }
    let not_found = || Some(error(StatusCode::NOT_FOUND, "Not Found"));
    let Some(repo) = g.repos.get(&full) else {
        return not_found();
    };
    match rest {
        ["tags", tag] => match repo.releases.iter().find(|rel| rel["tag_name"] == *tag) {
            Some(rel) => {
                let mut rel = rel.clone();
                if rel.get("assets").is_none() {
                    rel["assets"] = json!([]);
                }
                Some((StatusCode::OK, axum::Json(rel)).into_response())
            }
            None => not_found(),
        },
        ["assets", id] => {
            let id: u64 = id.parse().ok()?;
            let asset = repo
                .releases
                .iter()
                .filter_map(|rel| rel.get("assets").and_then(Value::as_array))
                .flatten()
                .find(|a| a["id"] == id)?;
            let wants_bytes = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/octet-stream"));
            if !wants_bytes {
                return Some((StatusCode::OK, axum::Json(asset.clone())).into_response());
            }
            let bytes = repo.blobs.get(&blob_key(id))?.clone();
            Some(
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    bytes,
                )
                    .into_response(),
            )
        }
        _ => None,
    }
}
