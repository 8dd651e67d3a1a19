//! `switchboard token` mints what `switchboard serve` in token mode accepts.

mod support;

use serde_json::json;
use std::process::Command;
use support::Server;
use switchboard_client::Connection;

const SECRET: &str = "a-cli-test-secret-of-32-bytes-ok";

/// Runs `switchboard token` with `flags`, the secret in the environment
/// when `with_secret`; returns the exit status, stdout and stderr.
fn mint(flags: &[&str], with_secret: bool) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.arg("token").args(flags).env("NO_COLOR", "1");
    if with_secret {
        command.env("SWITCHBOARD_AUTH__JWT_HMAC_SECRET", SECRET);
    }
    let output = command.output().expect("runs");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8");
    (output.status.success(), text(output.stdout), text(output.stderr))
}

#[tokio::test]
async fn a_minted_token_names_its_user_and_limits_its_rooms() {
    let server = Server::start_with_env(["--storage", "memory"], [("SWITCHBOARD_AUTH__JWT_HMAC_SECRET", SECRET)]);
    let flags = ["--user", "alice", "--room", "chat.*=join,send", "--ttl", "5m", "--info", r#"{"name":"Alice"}"#];
    let (ok, token, stderr) = mint(&flags, true);
    assert!(ok, "{stderr}");
    let url = format!("ws://{}/ws?token={}", server.http, token.trim());
    let mut alice = Connection::connect(&url).await.expect("the server accepts the token");
    assert_eq!(alice.user, "alice");
    assert_eq!(alice.join("chat.lobby").await.expect("reply")["ok"], json!(true));
    assert_eq!(alice.join("ops").await.expect("reply")["code"], json!("forbidden"));
}

#[test]
fn minting_without_a_key_fails_with_a_clear_message() {
    let (ok, stdout, stderr) = mint(&["--user", "alice"], false);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("auth.jwt_hmac_secret"), "{stderr}");
    let (ok, _, stderr) = mint(&["--user", "alice", "--room", "x=fly"], true);
    assert!(!ok && stderr.contains("fly"), "{stderr}");
}
