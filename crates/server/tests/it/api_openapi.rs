//! `/api/openapi.json` against the router, both ways. The router and the
//! document are built from one route list (`api::MODULES`), and this test
//! checks the result over HTTP: every documented operation is served (its
//! request gets neither 404 nor 405), and on every documented path the
//! methods the document does not list are refused with 405, as is any path
//! it does not list with 404.
//!
//! Exactly the operations the document marks `x-served-by` (listed by name
//! in [`SERVED_ELSEWHERE`]: the front door's Server-Sent Events) are not
//! called here: they answer with a stream that never ends, and `sse.rs`
//! tests them over their own connections.

use crate::api_support::{with_key, Api};
use crate::support::TestServer;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The operations the document may list without this router serving them.
const SERVED_ELSEWHERE: &[&str] = &["GET /api/rooms/{room}/events", "GET /api/events"];

/// `path` with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{room}", "lobby").replace("{user}", "bob").replace("{id}", "1")
}

#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else() {
    let server = TestServer::with(with_key).await;
    let api = Api::keyed(&server);
    let document = api.get("/api/openapi.json").await;
    assert_eq!((document.status, document.body["openapi"].clone()), (200, json!("3.1.0")));
    let paths = document.body["paths"].as_object().cloned().unwrap_or_default();
    let mut elsewhere = BTreeSet::new();
    let mut served = 0;
    for (path, operations) in &paths {
        let operations = operations.as_object().cloned().unwrap_or_default();
        for (method, operation) in &operations {
            let name = format!("{} {path}", method.to_ascii_uppercase());
            assert!(operation["summary"].is_string() && operation["responses"].is_object(), "{name}: {operation}");
            if operation.get("x-served-by").is_some() {
                // An event stream never ends: `sse.rs` tests these on their own connections.
                elsewhere.insert(name);
                continue;
            }
            let answer = call(&api, method, path).await;
            assert!(![404, 405].contains(&answer.status), "{name}: {answer:?}");
            served += 1;
        }
        let only_elsewhere = operations.values().all(|operation| operation.get("x-served-by").is_some());
        for method in ["get", "post", "put", "patch", "delete"] {
            if operations.contains_key(method) || only_elsewhere {
                continue;
            }
            let answer = call(&api, method, path).await;
            assert_eq!(answer.status, 405, "{method} {path} is not documented: {answer:?}");
        }
    }
    let expected: BTreeSet<String> = SERVED_ELSEWHERE.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(elsewhere, expected, "the operations marked x-served-by");
    assert!(served >= 14, "{served} operations served: the document lost some");
    assert_eq!(api.get("/api/not-documented").await.status, 404);
}

async fn call(api: &Api, method: &str, path: &str) -> crate::api_support::Answer {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
    let mut request = api.request(method.clone(), &concrete(path));
    if method == Method::POST || method == Method::DELETE || method == Method::PUT || method == Method::PATCH {
        request = request.json(&json!({"body": 1}));
    }
    api.send(request).await
}

#[test]
fn concrete_paths_fill_every_parameter() {
    let filled: Value = json!(concrete("/api/users/{user}/connections/{id}/{room}"));
    assert_eq!(filled, json!("/api/users/bob/connections/1/lobby"));
}
