//! The web pages (`/` the chat, `/dashboard`, and the files under
//! `/assets/` they load) over HTTP: types, cache validators, the
//! Content-Security-Policy, HEAD, 304, 404s and 405s, and their place
//! outside the API's OpenAPI document. `api_stats.rs` tests the routes the
//! pages read; `e2e/` drives the pages in Chromium.

use crate::api_support::{with_key, Api};
use crate::auth::token_server;
use crate::support::TestServer;
use reqwest::Method;
use serde_json::json;
use switchboard_server::web::CONTENT_SECURITY_POLICY;

const PAGES: &[&str] = &["/", "/dashboard"];

/// The `/assets/...` files `text` refers to: `src`/`href` attributes of
/// HTML, and the relative imports (`from './x.js'`) of modules.
fn referenced(text: &str) -> Vec<String> {
    let attributes = text.split("=\"/assets/").skip(1).filter_map(|rest| rest.split('"').next());
    let imports = text.split("from './").skip(1).filter_map(|rest| rest.split('\'').next());
    attributes.chain(imports).map(|name| format!("/assets/{name}")).collect()
}

fn content_type_of(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "text/html; charset=utf-8",
    }
}

#[tokio::test]
async fn pages_and_every_file_they_load_are_served_with_their_type_validator_and_policy() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut files: Vec<String> = PAGES.iter().map(|page| (*page).to_owned()).collect();
    let mut index = 0;
    while index < files.len() {
        let path = files[index].clone();
        let answer = api.get(&path).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.header("content-type"), Some(content_type_of(&path)), "{path}");
        assert_eq!(answer.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{path}");
        let etag = answer.header("etag").unwrap_or_default();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "{path}: a strong ETag, not {etag:?}");
        let body = answer.body.as_str().unwrap_or_default().to_owned();
        for file in referenced(&body) {
            if !files.contains(&file) {
                files.push(file);
            }
        }
        index += 1;
    }
    assert!(files.len() >= 8, "the pages load their scripts, modules, style and icon: {files:?}");
    for page in PAGES {
        let answer = api.get(page).await;
        assert_eq!(answer.header("content-security-policy"), Some(CONTENT_SECURITY_POLICY), "{page}");
        assert_eq!(answer.header("x-frame-options"), Some("DENY"));
        assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
    }
    for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(CONTENT_SECURITY_POLICY.split("; ").any(|d| d == directive), "{directive}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"), "no inline script or style, no eval");
}

#[tokio::test]
async fn head_and_if_none_match_answer_without_a_body_and_unknown_files_get_404() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for path in ["/", "/dashboard", "/assets/chat.js", "/assets/site.css"] {
        let full = api.get(path).await;
        let length = full.body.as_str().map(str::len).unwrap_or_default();
        let head = api.send(api.request(Method::HEAD, path)).await;
        assert_eq!(head.status, 200, "HEAD {path}");
        assert_eq!(head.body, json!(""), "HEAD {path} has no body");
        assert_eq!(head.header("content-length"), Some(length.to_string().as_str()), "HEAD {path}");
        assert_eq!(head.header("etag"), full.header("etag"));
        assert_eq!(head.header("content-type"), full.header("content-type"));

        let etag = full.header("etag").unwrap_or_default().to_owned();
        let again = api.send(api.request(Method::GET, path).header("if-none-match", &etag)).await;
        assert_eq!((again.status, again.body.clone()), (304, json!("")), "GET {path} with its ETag");
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        let stale = api.send(api.request(Method::GET, path).header("if-none-match", "\"an-older-one\"")).await;
        assert_eq!(stale.status, 200);
    }
    for path in ["/assets/nope.js", "/assets/", "/assets/chat.js.map", "/assets/..%2FCargo.toml", "/dashboard/x"] {
        let answer = api.get(path).await;
        assert_eq!((answer.status, answer.code()), (404, "not_found"), "{path}: {answer:?}");
    }
    for path in ["/", "/dashboard", "/assets/chat.js"] {
        let answer = api.post(path, &json!({})).await;
        assert_eq!((answer.status, answer.code()), (405, "method_not_allowed"), "POST {path}");
        assert_eq!(answer.header("allow"), Some("GET, HEAD"));
    }
}

#[tokio::test]
async fn the_pages_are_not_in_the_api_document_but_their_data_routes_are() {
    let server = TestServer::start().await;
    let document = Api::new(&server).get("/api/openapi.json").await;
    let paths = document.body["paths"].as_object().cloned().unwrap_or_default();
    for page in ["/", "/dashboard", "/assets/{file}"] {
        assert!(!paths.contains_key(page), "{page} is a page for people, not an API route");
    }
    assert_eq!(paths["/api/info"]["get"]["security"], json!([]), "public");
    assert_eq!(paths["/api/stats"]["get"]["security"], json!([{ "apiKey": [] }]));
}

#[tokio::test]
async fn in_token_mode_the_pages_are_public_and_ask_for_credentials_themselves() {
    let server = token_server(with_key).await;
    let anonymous = Api::new(&server);
    for page in ["/", "/dashboard", "/assets/chat.js", "/assets/dashboard.js"] {
        let answer = anonymous.get(page).await;
        assert_eq!(answer.status, 200, "{page}: {answer:?}");
    }
    // What the pages read to know they must ask for a token and a key.
    let info = anonymous.get("/api/info").await;
    assert_eq!((info.body["auth"].clone(), info.body["api_key_required"].clone()), (json!("token"), json!(true)));
    assert_eq!(anonymous.get("/api/stats").await.status, 401);
}
