//! Request routing for the fake GitHub: one `match` over method and path segments.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::state::{CheckRunRec, CommentRec, IssueRec, PullRec, Repo, now_rfc3339};
use super::{Caller, Inner, error};

type Query = HashMap<String, String>;

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

fn created(value: Value) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn unprocessable(message: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

fn string_list(body: &Value, key: &str) -> Option<Vec<String>> {
    body.get(key).and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("name").and_then(Value::as_str).map(str::to_string),
                _ => None,
            })
            .collect()
    })
}

pub(crate) fn dispatch(
    g: &mut Inner,
    caller: &Caller,
    method: &Method,
    seg: &[String],
    query: &Query,
    body: Value,
) -> Response {
    let s: Vec<&str> = seg.iter().map(String::as_str).collect();
    let base = g.base_url.clone();

    // ---- the App's webhook deliveries (JWT) ----------------------------------------------
    if let Some(resp) = super::deliveries::route(g, caller, method.as_str(), &s, query) {
        return resp;
    }

    // ---- App endpoints (JWT) -----------------------------------------------------------
    match (method.as_str(), s.as_slice()) {
        ("GET", ["app"]) => {
            if *caller != Caller::App {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "A JSON web token could not be decoded",
                );
            }
            let id = g.opts.app.as_ref().map_or(0, |a| a.0);
            return ok(json!({ "id": id, "slug": "opsbot", "name": "opsbot" }));
        }
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            if *caller != Caller::App {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "A JSON web token could not be decoded",
                );
            }
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            if !g.installations.contains_key(&id) {
                return not_found();
            }
            let n = g.next_id();
            let token = format!("ghs_fakeInstallationToken{id}x{n:010}");
            g.installation_tokens.insert(token.clone(), id);
            let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
            let expires_at = expires
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            return created(json!({ "token": token, "expires_at": expires_at, "permissions": {} }));
        }
        ("GET", ["repos", o, r, "installation"]) => {
            if *caller != Caller::App {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "A JSON web token could not be decoded",
                );
            }
            let full = format!("{o}/{r}");
            let found = g
                .installations
                .iter()
                .find(|(_, repos)| repos.contains(&full))
                .map(|(id, _)| *id);
            let app_id = g.opts.app.as_ref().map_or(0, |a| a.0);
            return match found {
                Some(id) => ok(json!({ "id": id, "app_id": app_id, "account": { "login": o } })),
                None => not_found(),
            };
        }
        _ => {}
    }
    if *caller == Caller::App {
        return error(
            StatusCode::FORBIDDEN,
            "A JSON web token can only be used for App endpoints; use an installation token",
        );
    }

    // ---- search ------------------------------------------------------------------------
    if let ("GET", ["search", "issues"]) = (method.as_str(), s.as_slice()) {
        return search_issues(g, caller, query);
    }

    // ---- repository endpoints ----------------------------------------------------------
    let ["repos", o, r, rest @ ..] = s.as_slice() else {
        return not_found();
    };
    let full = format!("{o}/{r}");
    if let Caller::Installation(id) = caller {
        let allowed = g
            .installations
            .get(id)
            .is_some_and(|repos| repos.contains(&full));
        if !allowed {
            return error(
                StatusCode::NOT_FOUND,
                "Not Found (not installed on this repository)",
            );
        }
    }
    let next_id = g.next_id();
    let Some(repo) = g.repos.get_mut(&full) else {
        return not_found();
    };
    let m = method.as_str();
    match (m, rest) {
        ("GET", []) => ok(repo_json(&base, repo)),

        // ---- issues ----
        ("GET", ["issues"]) => {
            let state = query.get("state").map_or("open", String::as_str);
            let labels: Vec<&str> = query
                .get("labels")
                .map(|l| l.split(',').filter(|x| !x.is_empty()).collect())
                .unwrap_or_default();
            let mut list: Vec<&IssueRec> = repo
                .issues
                .values()
                .filter(|i| state == "all" || i.state == state)
                .filter(|i| labels.iter().all(|l| i.labels.iter().any(|x| x == l)))
                .collect();
            if query.get("direction").map(String::as_str) != Some("asc") {
                list.reverse();
            }
            let items: Vec<Value> = list
                .into_iter()
                .map(|i| issue_json(&base, repo, i))
                .collect();
            paginate(&base, &format!("/repos/{full}/issues"), query, items)
        }
        ("POST", ["issues"]) => {
            let Some(title) = str_field(&body, "title").filter(|t| !t.trim().is_empty()) else {
                return unprocessable("Validation Failed: title is missing");
            };
            let labels = string_list(&body, "labels").unwrap_or_default();
            for l in &labels {
                repo.labels
                    .entry(l.clone())
                    .or_insert_with(|| ("ededed".to_string(), String::new()));
            }
            let number = repo.next_number;
            repo.next_number += 1;
            let now = now_rfc3339();
            let rec = IssueRec {
                number,
                title: title.to_string(),
                body: str_field(&body, "body").map(str::to_string),
                state: "open".into(),
                state_reason: None,
                labels,
                assignees: string_list(&body, "assignees").unwrap_or_default(),
                created: std::time::Instant::now(),
                created_at: now.clone(),
                updated_at: now,
                is_pull: false,
                author: author(caller),
            };
            let out = issue_json(&base, repo, &rec);
            repo.issues.insert(number, rec);
            created(out)
        }
        ("GET", ["issues", n]) => match n.parse().ok().and_then(|n: u64| repo.issues.get(&n)) {
            Some(i) => ok(issue_json(&base, repo, i)),
            None => not_found(),
        },
        ("PATCH", ["issues", n]) => {
            let Some(i) = n.parse().ok().and_then(|n: u64| repo.issues.get_mut(&n)) else {
                return not_found();
            };
            apply_issue_patch(i, &body);
            let labels = i.labels.clone();
            let number = i.number;
            for l in labels {
                repo.labels
                    .entry(l)
                    .or_insert_with(|| ("ededed".to_string(), String::new()));
            }
            ok(issue_json(&base, repo, &repo.issues[&number]))
        }
        ("GET", ["issues", n, "comments"]) => {
            let Ok(n) = n.parse::<u64>() else {
                return not_found();
            };
            if !repo.issues.contains_key(&n) {
                return not_found();
            }
            let items: Vec<Value> = repo
                .comments
                .get(&n)
                .map(|cs| {
                    cs.iter()
                        .map(|c| comment_json(&base, &full, n, c))
                        .collect()
                })
                .unwrap_or_default();
            paginate(
                &base,
                &format!("/repos/{full}/issues/{n}/comments"),
                query,
                items,
            )
        }
        ("POST", ["issues", n, "comments"]) => {
            let Ok(n) = n.parse::<u64>() else {
                return not_found();
            };
            if !repo.issues.contains_key(&n) {
                return not_found();
            }
            let Some(text) = str_field(&body, "body") else {
                return unprocessable("Validation Failed: body is missing");
            };
            let c = CommentRec {
                id: next_id,
                body: text.to_string(),
                created_at: now_rfc3339(),
                author: author(caller),
            };
            let out = comment_json(&base, &full, n, &c);
            repo.comments.entry(n).or_default().push(c);
            created(out)
        }
        ("POST", ["issues", n, "labels"]) => {
            let Some(i) = n.parse().ok().and_then(|n: u64| repo.issues.get_mut(&n)) else {
                return not_found();
            };
            for l in string_list(&body, "labels").unwrap_or_default() {
                if !i.labels.contains(&l) {
                    i.labels.push(l.clone());
                }
                repo.labels
                    .entry(l)
                    .or_insert_with(|| ("ededed".to_string(), String::new()));
            }
            let labels: Vec<Value> = i.labels.iter().map(|l| json!({ "name": l })).collect();
            ok(Value::Array(labels))
        }
        ("GET", ["labels"]) => {
            let items = repo
                .labels
                .iter()
                .map(|(n, (c, d))| json!({ "name": n, "color": c, "description": d }))
                .collect();
            paginate(&base, &format!("/repos/{full}/labels"), query, items)
        }
        ("POST", ["labels"]) => {
            let Some(name) = str_field(&body, "name") else {
                return unprocessable("Validation Failed: name is missing");
            };
            if repo.labels.contains_key(name) {
                return unprocessable("Validation Failed: already_exists");
            }
            let color = str_field(&body, "color").unwrap_or("ededed").to_string();
            let desc = str_field(&body, "description").unwrap_or("").to_string();
            repo.labels
                .insert(name.to_string(), (color.clone(), desc.clone()));
            created(json!({ "name": name, "color": color, "description": desc }))
        }

        // ---- git data ----
        ("GET", ["git", "ref", name @ ..]) => {
            let full_ref = format!("refs/{}", name.join("/"));
            match repo.refs.get(&full_ref) {
                Some(sha) => ok(ref_json(&full_ref, sha)),
                None => not_found(),
            }
        }
        ("GET", ["git", "matching-refs", prefix @ ..]) => {
            let p = format!("refs/{}", prefix.join("/"));
            let items = repo
                .refs
                .iter()
                .filter(|(k, _)| k.starts_with(&p))
                .map(|(k, v)| ref_json(k, v))
                .collect();
            paginate(
                &base,
                &format!("/repos/{full}/git/matching-refs"),
                query,
                items,
            )
        }
        ("POST", ["git", "refs"]) => {
            let (Some(name), Some(sha)) = (str_field(&body, "ref"), str_field(&body, "sha")) else {
                return unprocessable("Validation Failed: ref and sha are required");
            };
            if !name.starts_with("refs/") || name.matches('/').count() < 2 {
                return unprocessable(
                    "Reference name must start with 'refs/' and have two slashes",
                );
            }
            if repo.refs.contains_key(name) {
                return unprocessable("Reference already exists");
            }
            if !repo.commits.contains_key(sha) {
                return unprocessable("Object does not exist");
            }
            repo.refs.insert(name.to_string(), sha.to_string());
            created(ref_json(name, sha))
        }
        ("PATCH", ["git", "refs", name @ ..]) => {
            let full_ref = format!("refs/{}", name.join("/"));
            let Some(current) = repo.refs.get(&full_ref).cloned() else {
                return unprocessable("Reference does not exist");
            };
            let Some(sha) = str_field(&body, "sha") else {
                return unprocessable("Validation Failed: sha is required");
            };
            if !repo.commits.contains_key(sha) {
                return unprocessable("Object does not exist");
            }
            let force = body.get("force").and_then(Value::as_bool).unwrap_or(false);
            let fast_forward = repo.merge_base(&current, sha).as_deref() == Some(current.as_str());
            if !force && !fast_forward {
                return unprocessable("Update is not a fast forward");
            }
            repo.refs.insert(full_ref.clone(), sha.to_string());
            ok(ref_json(&full_ref, sha))
        }
        ("DELETE", ["git", "refs", name @ ..]) => {
            let full_ref = format!("refs/{}", name.join("/"));
            match repo.refs.remove(&full_ref) {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => unprocessable("Reference does not exist"),
            }
        }
        ("POST", ["git", "blobs"]) => {
            let Some(content) = str_field(&body, "content") else {
                return unprocessable("Validation Failed: content is required");
            };
            let bytes = if str_field(&body, "encoding") == Some("base64") {
                match B64.decode(content.replace(['\n', '\r'], "")) {
                    Ok(b) => b,
                    Err(_) => return unprocessable("content is not valid Base64"),
                }
            } else {
                content.as_bytes().to_vec()
            };
            let sha = repo.put_blob(bytes);
            created(json!({ "sha": sha, "url": format!("{base}/repos/{full}/git/blobs/{sha}") }))
        }
        ("GET", ["git", "blobs", sha]) => match repo.blobs.get(*sha) {
            Some(b) => ok(json!({
                "sha": sha, "size": b.len(), "encoding": "base64", "content": B64.encode(b),
            })),
            None => not_found(),
        },
        ("POST", ["git", "trees"]) => create_tree(repo, &body),
        ("GET", ["git", "trees", sha]) => {
            let tree_sha = repo
                .commits
                .get(*sha)
                .map_or_else(|| sha.to_string(), |c| c.tree.clone());
            let Some(files) = repo.trees.get(&tree_sha) else {
                return not_found();
            };
            let mut entries: Vec<Value> = Vec::new();
            let mut dirs = std::collections::BTreeSet::new();
            for path in files.keys() {
                let parts: Vec<&str> = path.split('/').collect();
                for i in 1..parts.len() {
                    dirs.insert(parts[..i].join("/"));
                }
            }
            for d in dirs {
                entries.push(
                    json!({ "path": d, "mode": "040000", "type": "tree", "sha": "0".repeat(40) }),
                );
            }
            for (path, (mode, blob)) in files {
                let size = repo.blobs.get(blob).map_or(0, Vec::len);
                entries.push(json!({ "path": path, "mode": mode, "type": "blob", "sha": blob, "size": size }));
            }
            ok(json!({ "sha": tree_sha, "tree": entries, "truncated": false }))
        }
        ("POST", ["git", "commits"]) => {
            let (Some(message), Some(tree)) =
                (str_field(&body, "message"), str_field(&body, "tree"))
            else {
                return unprocessable("Validation Failed: message and tree are required");
            };
            if !repo.trees.contains_key(tree) {
                return unprocessable("Tree SHA does not exist");
            }
            let parents = string_list(&body, "parents").unwrap_or_default();
            if let Some(p) = parents.iter().find(|p| !repo.commits.contains_key(*p)) {
                return unprocessable(&format!("Parent SHA {p} does not exist"));
            }
            let sha = repo.put_commit(tree.to_string(), parents, message.to_string());
            created(commit_json(&base, repo, &sha))
        }
        ("GET", ["git", "commits", sha]) => {
            if repo.commits.contains_key(*sha) {
                ok(commit_json(&base, repo, sha))
            } else {
                not_found()
            }
        }

        // ---- contents, commits, compare ----
        ("GET", ["contents", path @ ..]) => {
            let reference = query
                .get("ref")
                .cloned()
                .unwrap_or_else(|| repo.default_branch.clone());
            let Some(commit) = repo.resolve(&reference) else {
                return not_found();
            };
            let Some(files) = repo.files_at(&commit) else {
                return not_found();
            };
            let path = path.join("/");
            if let Some((_, sha)) = files.get(&path) {
                let bytes = repo.blobs.get(sha).cloned().unwrap_or_default();
                return ok(json!({
                    "type": "file", "path": path, "name": path.rsplit('/').next(), "sha": sha,
                    "size": bytes.len(), "encoding": "base64", "content": B64.encode(&bytes),
                }));
            }
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            let mut seen = std::collections::BTreeMap::new();
            for (p, (_, sha)) in files {
                if let Some(rest) = p.strip_prefix(&prefix) {
                    let (name, kind) = match rest.split_once('/') {
                        Some((dir, _)) => (dir.to_string(), "dir"),
                        None => (rest.to_string(), "file"),
                    };
                    seen.entry(name.clone()).or_insert_with(|| {
                        json!({ "type": kind, "name": name, "path": format!("{prefix}{name}"), "sha": sha })
                    });
                }
            }
            if seen.is_empty() {
                not_found()
            } else {
                ok(Value::Array(seen.into_values().collect()))
            }
        }
        ("GET", ["commits", reference]) => match repo.resolve(reference) {
            Some(sha) => {
                let parent = repo.commits[&sha].parents.first().cloned();
                let files = parent
                    .map(|p| repo.diff_files(&p, &sha))
                    .unwrap_or_default();
                let mut c = commit_json(&base, repo, &sha);
                c["files"] = Value::Array(files);
                c["commit"] = json!({ "message": repo.commits[&sha].message });
                ok(c)
            }
            None => unprocessable(&format!("No commit found for SHA: {reference}")),
        },
        ("GET", ["commits", reference, "check-runs"]) => {
            let sha = repo
                .resolve(reference)
                .unwrap_or_else(|| reference.to_string());
            let runs: Vec<Value> = repo
                .check_runs
                .iter()
                .filter(|c| c.head_sha == sha)
                .map(|c| check_run_json(&base, &full, c))
                .collect();
            ok(json!({ "total_count": runs.len(), "check_runs": runs }))
        }
        ("GET", ["compare", spec]) => {
            let Some((b, h)) = spec.split_once("...").or_else(|| spec.split_once("..")) else {
                return not_found();
            };
            let (Some(b), Some(h)) = (repo.resolve(b), repo.resolve(h)) else {
                return not_found();
            };
            let merge_base = repo.merge_base(&b, &h).unwrap_or_else(|| b.clone());
            let all = repo.commits_between(&b, &h);
            // As GitHub: 250 commits unless paged (`page`/`per_page`); the files (at most
            // 300) only on the first page.
            let paged = query.contains_key("page");
            let per_page: usize = if paged {
                query
                    .get("per_page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(30usize)
                    .clamp(1, 100)
            } else {
                250
            };
            let page: usize = query
                .get("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1usize)
                .max(1);
            let commits: Vec<Value> = all
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|c| commit_json(&base, repo, c))
                .collect();
            let mut files = if page == 1 {
                repo.diff_files(&merge_base, &h)
            } else {
                Vec::new()
            };
            files.truncate(300);
            let status = if all.is_empty() { "identical" } else { "ahead" };
            ok(json!({
                "status": status, "ahead_by": all.len(), "behind_by": 0,
                "total_commits": all.len(), "commits": commits, "files": files,
                "merge_base_commit": { "sha": merge_base },
            }))
        }

        // ---- pull requests ----
        ("GET", ["pulls"]) => {
            let state = query.get("state").map_or("open", String::as_str);
            let head = query.get("head").cloned();
            let base_filter = query.get("base").cloned();
            let items: Vec<Value> = repo
                .pulls
                .values()
                .filter(|p| {
                    let i = &repo.issues[&p.number];
                    (state == "all" || i.state == state)
                        && head
                            .as_ref()
                            .is_none_or(|h| *h == format!("{}:{}", repo.owner, p.head_ref))
                        && base_filter.as_ref().is_none_or(|b| *b == p.base_ref)
                })
                .map(|p| pull_json(&base, repo, p))
                .collect();
            paginate(&base, &format!("/repos/{full}/pulls"), query, items)
        }
        ("POST", ["pulls"]) => create_pull(&base, repo, caller, &body),
        ("GET", ["pulls", n]) => match n.parse().ok().and_then(|n: u64| repo.pulls.get(&n)) {
            Some(p) => ok(pull_json(&base, repo, p)),
            None => not_found(),
        },
        ("PATCH", ["pulls", n]) => {
            let Some(number) = n.parse::<u64>().ok().filter(|n| repo.pulls.contains_key(n)) else {
                return not_found();
            };
            if let Some(i) = repo.issues.get_mut(&number) {
                apply_issue_patch(i, &body);
            }
            ok(pull_json(&base, repo, &repo.pulls[&number]))
        }
        ("GET", ["pulls", n, "files"]) => {
            let Some(p) = n.parse().ok().and_then(|n: u64| repo.pulls.get(&n)) else {
                return not_found();
            };
            let (Some(b), Some(h)) = (repo.resolve(&p.base_ref), repo.resolve(&p.head_ref)) else {
                return not_found();
            };
            let mb = repo.merge_base(&b, &h).unwrap_or(b);
            let items = repo.diff_files(&mb, &h);
            paginate(
                &base,
                &format!("/repos/{full}/pulls/{n}/files"),
                query,
                items,
            )
        }
        ("POST", ["pulls", n, "requested_reviewers"]) => {
            let Some(number) = n.parse::<u64>().ok().filter(|n| repo.pulls.contains_key(n)) else {
                return not_found();
            };
            let mut reviewers = string_list(&body, "reviewers").unwrap_or_default();
            reviewers.extend(
                string_list(&body, "team_reviewers")
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| format!("team:{t}")),
            );
            if let Some(p) = repo.pulls.get_mut(&number) {
                p.requested_reviewers.extend(reviewers);
            }
            created(pull_json(&base, repo, &repo.pulls[&number]))
        }

        // ---- checks ----
        ("POST", ["check-runs"]) => {
            let (Some(name), Some(head_sha)) =
                (str_field(&body, "name"), str_field(&body, "head_sha"))
            else {
                return unprocessable("Validation Failed: name and head_sha are required");
            };
            if !matches!(caller, Caller::Installation(_)) {
                return error(
                    StatusCode::FORBIDDEN,
                    "Resource not accessible by personal access token (check runs need a GitHub App)",
                );
            }
            let mut run = CheckRunRec {
                id: next_id,
                name: name.to_string(),
                head_sha: head_sha.to_string(),
                status: str_field(&body, "status").unwrap_or("queued").to_string(),
                conclusion: str_field(&body, "conclusion").map(str::to_string),
                external_id: str_field(&body, "external_id").map(str::to_string),
                title: None,
                summary: None,
                annotations: Vec::new(),
                annotation_batches: Vec::new(),
            };
            if let Err(resp) = apply_check_output(&mut run, &body) {
                return resp;
            }
            let out = check_run_json(&base, &full, &run);
            repo.check_runs.push(run);
            created(out)
        }
        ("PATCH", ["check-runs", id]) => {
            let Some(run) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| repo.check_runs.iter_mut().find(|c| c.id == id))
            else {
                return not_found();
            };
            if let Some(st) = str_field(&body, "status") {
                run.status = st.to_string();
            }
            if let Some(c) = str_field(&body, "conclusion") {
                run.conclusion = Some(c.to_string());
                run.status = "completed".to_string();
            }
            if let Err(resp) = apply_check_output(run, &body) {
                return resp;
            }
            ok(check_run_json(&base, &full, run))
        }
        ("GET", ["check-runs", id]) => {
            match id
                .parse::<u64>()
                .ok()
                .and_then(|id| repo.check_runs.iter().find(|c| c.id == id))
            {
                Some(run) => ok(check_run_json(&base, &full, run)),
                None => not_found(),
            }
        }
        ("GET", ["check-runs", id, "annotations"]) => {
            match id
                .parse::<u64>()
                .ok()
                .and_then(|id| repo.check_runs.iter().find(|c| c.id == id))
            {
                Some(run) => {
                    let items = run.annotations.clone();
                    paginate(
                        &base,
                        &format!("/repos/{full}/check-runs/{id}/annotations"),
                        query,
                        items,
                    )
                }
                None => not_found(),
            }
        }

        // ---- releases ----
        ("GET", ["releases"]) => {
            let items = repo.releases.clone();
            paginate(&base, &format!("/repos/{full}/releases"), query, items)
        }
        ("GET", ["releases", "latest"]) => {
            match repo.releases.iter().find(|r| {
                !r["prerelease"].as_bool().unwrap_or(false)
                    && !r["draft"].as_bool().unwrap_or(false)
            }) {
                Some(r) => ok(r.clone()),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn author(caller: &Caller) -> String {
    match caller {
        Caller::Installation(_) => "opsbot[bot]".to_string(),
        _ => "github-actions[bot]".to_string(),
    }
}

fn apply_issue_patch(i: &mut IssueRec, body: &Value) {
    if let Some(t) = str_field(body, "title") {
        i.title = t.to_string();
    }
    if let Some(b) = body.get("body") {
        i.body = b.as_str().map(str::to_string);
    }
    if let Some(st) = str_field(body, "state")
        && st != i.state
    {
        i.state = st.to_string();
        i.state_reason = if st == "closed" {
            Some(
                str_field(body, "state_reason")
                    .unwrap_or("completed")
                    .to_string(),
            )
        } else {
            Some("reopened".to_string())
        };
    }
    if let Some(l) = string_list(body, "labels") {
        i.labels = l;
    }
    if let Some(a) = string_list(body, "assignees") {
        i.assignees = a;
    }
    i.updated_at = now_rfc3339();
}

fn apply_check_output(run: &mut CheckRunRec, body: &Value) -> Result<(), Response> {
    let Some(output) = body.get("output") else {
        return Ok(());
    };
    if let Some(t) = str_field(output, "title") {
        run.title = Some(t.to_string());
    }
    if let Some(s) = str_field(output, "summary") {
        run.summary = Some(s.to_string());
    }
    if let Some(a) = output.get("annotations").and_then(Value::as_array) {
        if a.len() > 50 {
            return Err(unprocessable(
                "Validation Failed: only 50 annotations are allowed per request",
            ));
        }
        for ann in a {
            for key in [
                "path",
                "start_line",
                "end_line",
                "annotation_level",
                "message",
            ] {
                if ann.get(key).is_none() {
                    return Err(unprocessable(&format!(
                        "Validation Failed: annotation is missing `{key}`"
                    )));
                }
            }
        }
        run.annotation_batches.push(a.len());
        run.annotations.extend(a.iter().cloned());
    }
    Ok(())
}

fn create_tree(repo: &mut Repo, body: &Value) -> Response {
    let mut files = match str_field(body, "base_tree") {
        Some(b) => {
            let tree_sha = repo
                .commits
                .get(b)
                .map_or_else(|| b.to_string(), |c| c.tree.clone());
            match repo.trees.get(&tree_sha) {
                Some(t) => t.clone(),
                None => return unprocessable("base_tree does not exist"),
            }
        }
        None => BTreeMap::new(),
    };
    let Some(entries) = body.get("tree").and_then(Value::as_array) else {
        return unprocessable("Validation Failed: tree is required");
    };
    for e in entries {
        let Some(path) = str_field(e, "path") else {
            return unprocessable("Validation Failed: tree.path is required");
        };
        let mode = str_field(e, "mode").unwrap_or("100644").to_string();
        match (e.get("sha"), str_field(e, "content")) {
            (_, Some(content)) => {
                let sha = repo.put_blob(content.as_bytes().to_vec());
                files.insert(path.to_string(), (mode, sha));
            }
            (Some(Value::String(sha)), None) => {
                if !repo.blobs.contains_key(sha) {
                    return unprocessable(&format!("tree.sha {sha} is not a valid blob"));
                }
                files.insert(path.to_string(), (mode, sha.clone()));
            }
            (Some(Value::Null), None) => {
                files.remove(path);
            }
            _ => return unprocessable("Validation Failed: tree entries need sha or content"),
        }
    }
    let sha = repo.put_tree(files);
    let listing: Vec<Value> = repo.trees[&sha]
        .iter()
        .map(|(p, (m, s))| json!({ "path": p, "mode": m, "type": "blob", "sha": s }))
        .collect();
    created(json!({ "sha": sha, "tree": listing, "truncated": false }))
}

fn create_pull(base: &str, repo: &mut Repo, caller: &Caller, body: &Value) -> Response {
    let (Some(title), Some(head), Some(base_ref)) = (
        str_field(body, "title"),
        str_field(body, "head"),
        str_field(body, "base"),
    ) else {
        return unprocessable("Validation Failed: title, head and base are required");
    };
    let head_ref = head.rsplit(':').next().unwrap_or(head).to_string();
    let (Some(h), Some(b)) = (repo.resolve(&head_ref), repo.resolve(base_ref)) else {
        return unprocessable("Validation Failed: head or base does not exist");
    };
    if h == b || repo.commits_between(&b, &h).is_empty() {
        return unprocessable(&format!(
            "Validation Failed: No commits between {base_ref} and {head_ref}"
        ));
    }
    let exists = repo.pulls.values().any(|p| {
        p.head_ref == head_ref && p.base_ref == base_ref && repo.issues[&p.number].state == "open"
    });
    if exists {
        return unprocessable(&format!(
            "Validation Failed: A pull request already exists for {}:{head_ref}.",
            repo.owner
        ));
    }
    let number = repo.next_number;
    repo.next_number += 1;
    let now = now_rfc3339();
    repo.issues.insert(
        number,
        IssueRec {
            number,
            title: title.to_string(),
            body: str_field(body, "body").map(str::to_string),
            state: "open".into(),
            state_reason: None,
            labels: Vec::new(),
            assignees: Vec::new(),
            created: std::time::Instant::now(),
            created_at: now.clone(),
            updated_at: now,
            is_pull: true,
            author: author(caller),
        },
    );
    let p = PullRec {
        number,
        head_ref,
        base_ref: base_ref.to_string(),
        draft: body.get("draft").and_then(Value::as_bool).unwrap_or(false),
        merged: false,
        requested_reviewers: Vec::new(),
    };
    let out = pull_json(base, repo, &p);
    repo.pulls.insert(number, p);
    created(out)
}

fn search_issues(g: &Inner, caller: &Caller, query: &Query) -> Response {
    let q = query.get("q").cloned().unwrap_or_default();
    let mut repo_filter = None;
    let mut labels = Vec::new();
    let mut state = None;
    let mut kind = None;
    let mut words = Vec::new();
    let mut rest = q.as_str();
    while !rest.trim().is_empty() {
        rest = rest.trim_start();
        let (token, tail) = if let Some(stripped) = rest.strip_prefix('"') {
            match stripped.find('"') {
                Some(end) => (&stripped[..end], &stripped[end + 1..]),
                None => (stripped, ""),
            }
        } else {
            match rest.find(' ') {
                Some(end) => (&rest[..end], &rest[end..]),
                None => (rest, ""),
            }
        };
        rest = tail;
        if let Some(r) = token.strip_prefix("repo:") {
            repo_filter = Some(r.to_string());
        } else if let Some(l) = token.strip_prefix("label:") {
            labels.push(l.trim_matches('"').to_string());
        } else if let Some(s) = token.strip_prefix("state:").or_else(|| {
            token
                .strip_prefix("is:")
                .filter(|s| *s == "open" || *s == "closed")
        }) {
            state = Some(s.to_string());
        } else if let Some(k) = token
            .strip_prefix("is:")
            .or_else(|| token.strip_prefix("type:"))
        {
            kind = Some(k.to_string());
        } else if token.starts_with("in:") {
        } else if !token.is_empty() {
            words.push(token.to_lowercase());
        }
    }
    let lag = g.opts.search_lag;
    let mut items = Vec::new();
    for (full, repo) in &g.repos {
        if repo_filter.as_ref().is_some_and(|r| r != full) {
            continue;
        }
        if let Caller::Installation(id) = caller
            && !g
                .installations
                .get(id)
                .is_some_and(|repos| repos.contains(full))
        {
            continue;
        }
        for i in repo.issues.values() {
            let visible = i.created.elapsed() >= lag;
            let kind_ok = match kind.as_deref() {
                Some("issue") => !i.is_pull,
                Some("pr") => i.is_pull,
                _ => true,
            };
            let text = format!("{} {}", i.title, i.body.clone().unwrap_or_default()).to_lowercase();
            if visible
                && kind_ok
                && state.as_ref().is_none_or(|s| *s == i.state)
                && labels.iter().all(|l| i.labels.contains(l))
                && words.iter().all(|w| text.contains(w.as_str()))
            {
                items.push(issue_json(&g.base_url, repo, i));
            }
        }
    }
    ok(json!({ "total_count": items.len(), "incomplete_results": false, "items": items }))
}

fn paginate(base: &str, path: &str, query: &Query, items: Vec<Value>) -> Response {
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut resp = ok(Value::Array(slice));
    if page * per_page < total {
        let mut params: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.sort();
        params.push(("page".to_string(), (page + 1).to_string()));
        let qs: Vec<String> = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.replace('%', "%25")
                        .replace(',', "%2C")
                        .replace(' ', "%20")
                )
            })
            .collect();
        let link = format!("<{base}{path}?{}>; rel=\"next\"", qs.join("&"));
        if let Ok(v) = link.parse() {
            resp.headers_mut().insert("link", v);
        }
    }
    resp
}

fn repo_json(base: &str, r: &Repo) -> Value {
    json!({
        "id": r.id, "name": r.name, "full_name": r.full_name(), "private": true,
        "default_branch": r.default_branch, "owner": { "login": r.owner },
        "html_url": format!("{base}/{}", r.full_name()),
    })
}

fn issue_json(base: &str, r: &Repo, i: &IssueRec) -> Value {
    let kind = if i.is_pull { "pull" } else { "issues" };
    let mut v = json!({
        "id": i.number + 100_000, "number": i.number, "title": i.title, "body": i.body,
        "state": i.state, "state_reason": i.state_reason,
        "labels": i.labels.iter().map(|l| {
            let (color, desc) = r.labels.get(l).cloned().unwrap_or_default();
            json!({ "name": l, "color": color, "description": desc })
        }).collect::<Vec<_>>(),
        "assignees": i.assignees.iter().map(|a| json!({ "login": a })).collect::<Vec<_>>(),
        "user": { "login": i.author },
        "comments": r.comments.get(&i.number).map_or(0, Vec::len),
        "created_at": i.created_at, "updated_at": i.updated_at,
        "html_url": format!("{base}/{}/{kind}/{}", r.full_name(), i.number),
    });
    if i.is_pull {
        v["pull_request"] =
            json!({ "url": format!("{base}/repos/{}/pulls/{}", r.full_name(), i.number) });
    }
    v
}

fn comment_json(base: &str, full: &str, number: u64, c: &CommentRec) -> Value {
    json!({
        "id": c.id, "body": c.body, "user": { "login": c.author }, "created_at": c.created_at,
        "html_url": format!("{base}/{full}/issues/{number}#issuecomment-{}", c.id),
    })
}

fn ref_json(name: &str, sha: &str) -> Value {
    json!({ "ref": name, "object": { "sha": sha, "type": "commit" } })
}

fn commit_json(base: &str, r: &Repo, sha: &str) -> Value {
    let c = &r.commits[sha];
    json!({
        "sha": sha, "message": c.message, "tree": { "sha": c.tree },
        "parents": c.parents.iter().map(|p| json!({ "sha": p })).collect::<Vec<_>>(),
        "html_url": format!("{base}/{}/commit/{sha}", r.full_name()),
    })
}

fn pull_json(base: &str, r: &Repo, p: &PullRec) -> Value {
    let i = &r.issues[&p.number];
    let sha_of = |b: &str| r.resolve(b).unwrap_or_default();
    json!({
        "number": p.number, "title": i.title, "body": i.body, "state": i.state,
        "draft": p.draft, "merged": p.merged,
        "labels": i.labels.iter().map(|l| json!({ "name": l })).collect::<Vec<_>>(),
        "user": { "login": i.author },
        "head": { "ref": p.head_ref, "sha": sha_of(&p.head_ref), "label": format!("{}:{}", r.owner, p.head_ref) },
        "base": { "ref": p.base_ref, "sha": sha_of(&p.base_ref), "label": format!("{}:{}", r.owner, p.base_ref) },
        "requested_reviewers": p.requested_reviewers.iter().map(|l| json!({ "login": l })).collect::<Vec<_>>(),
        "html_url": format!("{base}/{}/pull/{}", r.full_name(), p.number),
    })
}

fn check_run_json(base: &str, full: &str, c: &CheckRunRec) -> Value {
    json!({
        "id": c.id, "name": c.name, "head_sha": c.head_sha, "status": c.status,
        "conclusion": c.conclusion, "external_id": c.external_id,
        "output": { "title": c.title, "summary": c.summary, "annotations_count": c.annotations.len() },
        "html_url": format!("{base}/{full}/runs/{}", c.id),
    })
}
