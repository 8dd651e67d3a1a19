//! Health over HTTP: `/healthz` (liveness), `/readyz` (the storage takes a
//! real write; 503 `not_ready` naming why otherwise, including when the
//! data directory is gone from under a running SQLite server) and
//! `/metrics` counting requests by route template.

use crate::api_support::Api;
use crate::faulty::Faults;
use crate::support::TestServer;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use switchboard_server::config::StorageBackend;

#[tokio::test]
async fn healthz_is_ok_and_readyz_reports_each_check() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let health = api.get("/healthz").await;
    assert_eq!((health.status, health.body.clone()), (200, json!("ok\n")));
    let ready = api.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body, json!({"status": "ready", "checks": {"storage": "ok"}}));
    let counted = "switchboard_http_requests_total{route=\"/readyz\",method=\"GET\",status=\"200\"}";
    assert_eq!(server.metric(counted).await, 1.0);
}

/// A SQLite server whose data directory is replaced by a file while it
/// runs: the open database still answers, but nothing can be created in
/// the directory any more (a new WAL, a checkpoint, the next start), so the
/// server is not ready. Root ignores permissions; it cannot create a file
/// inside a file. Put back, the directory is ready again.
#[tokio::test]
async fn readyz_fails_while_the_data_directory_is_unusable() {
    let temp = tempfile::tempdir().expect("tempdir");
    let data = temp.path().join("data");
    let server = TestServer::with(|config| {
        config.storage.backend = StorageBackend::Sqlite;
        config.data = data.clone();
    })
    .await;
    let api = Api::new(&server);
    assert_eq!(api.get("/readyz").await.status, 200);
    let aside = temp.path().join("aside");
    std::fs::rename(&data, &aside).expect("move the data directory away");
    std::fs::write(&data, b"not a directory").expect("a file in its place");
    let failing = api.get("/readyz").await;
    assert_eq!((failing.status, failing.code()), (503, "not_ready"), "{failing:?}");
    let reason = failing.body["error"].as_str().unwrap_or_default();
    assert!(reason.starts_with("storage: ") && reason.contains("data directory"), "{reason}");
    assert_eq!(failing.body["checks"]["storage"].as_str(), Some(&reason["storage: ".len()..]));
    std::fs::remove_file(&data).expect("remove the file");
    std::fs::rename(&aside, &data).expect("put the directory back");
    assert_eq!(api.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn readyz_fails_when_storage_cannot_write_or_does_not_answer_in_time() {
    let faults = Arc::new(Faults::default());
    let server =
        TestServer::with_backend(faults.backend(), |config| config.api.ready_timeout = Duration::from_millis(300))
            .await;
    let api = Api::new(&server);
    faults.fail_commits(true);
    let failing = api.get("/readyz").await;
    assert_eq!((failing.status, failing.code()), (503, "not_ready"));
    assert!(failing.body["error"].as_str().unwrap_or_default().contains("injected"), "{failing:?}");
    faults.fail_commits(false);
    assert_eq!(api.get("/readyz").await.status, 200);

    // A commit that never ends: the probe waits behind it and times out.
    let stall = faults.stall();
    let publish = tokio::spawn({
        let api = Api::new(&server);
        async move { api.post("/api/rooms/r/messages", &json!({"body": "slow"})).await }
    });
    faults.until_a_commit_waits().await;
    let stuck = api.get("/readyz").await;
    assert_eq!(stuck.code(), "not_ready");
    assert!(stuck.body["error"].as_str().unwrap_or_default().contains("api.ready_timeout"), "{stuck:?}");
    stall.release();
    assert_eq!(publish.await.expect("publish").status, 201);
    assert_eq!(api.get("/readyz").await.status, 200);
}
