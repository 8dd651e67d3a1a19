//! The operator's commands against a real server: `switchboard
//! connections` prints the connection table like `ss` (or its JSON), with
//! the API key from the flag or the environment; `switchboard healthcheck`
//! exits 0 on a live server and 1 on a dead address.

mod support;

use serde_json::{json, Value};
use std::process::{Command, Output};
use support::Server;
use switchboard_client::Connection;

const KEY: &str = "operator-key-0123456789";

/// A server with one API key, from a config file in `dir`.
fn keyed_server(dir: &tempfile::TempDir) -> Server {
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, format!("[[auth.api_keys]]\nname = \"ops\"\nkey = \"{KEY}\"\n")).expect("config");
    Server::start([std::ffi::OsString::from("--config"), config.into(), "--storage".into(), "memory".into()])
}

fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_remove("SWITCHBOARD_API_KEY")
        .output()
        .expect("run switchboard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_prints_the_table_like_ss_with_the_api_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = keyed_server(&dir);
    let mut alice = Connection::connect(&server.url("alice")).await.expect("connect");
    assert_eq!(alice.join("lobby").await.expect("join")["ok"], json!(true));
    let _bob = Connection::connect(&server.url("bob")).await.expect("connect");
    let url = format!("http://{}", server.http);

    let shown = switchboard(&["connections", &url, "--api-key", KEY]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let table = text(&shown.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two connections:\n{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("TRANSPORT") && lines[0].ends_with("AGE"), "{table}");
    let alice_line = lines.iter().find(|line| line.contains("alice")).expect("alice's line");
    assert!(alice_line.contains("websocket") && alice_line.contains("lobby"), "{table}");
    let column = lines[0].find("USER").expect("USER");
    assert!(
        lines[1..].iter().all(|line| line[column..].starts_with("alice") || line[column..].starts_with("bob")),
        "{table}"
    );

    let raw = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["connections", &url, "--json", "--user", "alice"])
        .env("SWITCHBOARD_API_KEY", KEY)
        .output()
        .expect("run");
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    let parsed: Value = serde_json::from_slice(&raw.stdout).expect("the server's JSON");
    let rows = parsed["connections"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0]["user"].clone(), rows[0]["rooms"].clone()), (json!("alice"), json!(["lobby"])));

    let refused = switchboard(&["connections", &url]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("401"), "{}", text(&refused.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_says_whether_the_server_answers() {
    let server = Server::start(["--storage", "memory"]);
    let port = server.http.port().to_string();
    let alive = switchboard(&["healthcheck", &port]);
    assert!(alive.status.success(), "{}", text(&alive.stderr));
    assert_eq!(text(&alive.stdout).trim(), "ok");
    drop(server);
    let dead = switchboard(&["healthcheck", &port, "--timeout", "2s"]);
    assert_eq!(dead.status.code(), Some(1), "{}", text(&dead.stderr));
    assert!(text(&dead.stderr).starts_with("error: "), "{}", text(&dead.stderr));
}

/// `switchboard bench http` against a real server: every publish answered
/// 2xx in both modes, and the count matches what the server stored.
#[test]
fn bench_http_publishes_in_both_modes() {
    let server = Server::start(["--storage", "memory"]);
    let address = server.http.to_string();
    let mut published = 0;
    for mode in [None, Some("--new-connection")] {
        let mut args = vec!["bench", "http", "--server", &address, "-c", "4", "--duration", "0.5", "--json"];
        args.extend(mode);
        let output = switchboard(&args);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
        assert!(report["ok"].as_u64().is_some_and(|ok| ok > 4), "{report}");
        assert_eq!(report["refused"], json!({}), "{report}");
        assert_eq!(report["ok"], report["requests"], "{report}");
        published += report["ok"].as_u64().unwrap_or_default();
    }
    // The room's newest seq (healthcheck prints a GET's answer).
    let page = switchboard(&["healthcheck", &address, "--path", "/api/rooms/bench-http/messages?limit=1"]);
    assert!(page.status.success(), "{}", text(&page.stderr));
    let stored = text(&page.stdout);
    assert!(stored.contains(&format!("\"last_seq\":{published},")), "{published} published: {stored}");
}
