//! `switchboard send` and `switchboard tail` as scripts use them: real
//! processes on pipes against a real server, read line by line, and the
//! exit statuses their `--help` documents (0 done, 2 usage, 3 cannot
//! connect, 4 authentication refused, 5 the server refused the room or a
//! message, 6 the connection lost for good); and a line whose ack was lost
//! with its connection, resent after the reconnect and stored once.

mod support;

use serde_json::{json, Value};
use std::ffi::OsStr;
use std::fmt::Debug;
use std::process::{ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use support::proxy::Proxy;
use support::Server;
use switchboard_client::Connection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const PATIENCE: Duration = Duration::from_secs(30);
const SECRET: &str = "a-cli-test-secret-of-32-bytes-ok";

/// `switchboard ARGS` with stdin, stdout and stderr as given (stderr piped).
fn switchboard<S: AsRef<OsStr>>(args: &[S], stdin: Stdio, stdout: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("switchboard starts")
}

/// Runs `switchboard ARGS` to its end with `input` on stdin; its status and stderr.
async fn run<S: AsRef<OsStr>>(args: &[S], input: &str) -> (ExitStatus, String) {
    let mut child = switchboard(args, Stdio::piped(), Stdio::null());
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("writing stdin");
    drop(stdin);
    let output =
        tokio::time::timeout(PATIENCE, child.wait_with_output()).await.expect("it ends in time").expect("output");
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The exit status `switchboard ARGS` ends with (checking its stderr says
/// `because`, when given).
async fn status_of<S: AsRef<OsStr> + Debug>(args: &[S], because: Option<&str>) -> i32 {
    let (status, stderr) = run(args, "").await;
    if let Some(because) = because {
        assert!(stderr.contains(because), "{args:?}: {stderr:?} should say {because:?}");
    }
    status.code().unwrap_or_else(|| panic!("{args:?} ended by a signal: {stderr}"))
}

/// The next NDJSON `msg` line on tail's stdout (other events skipped).
async fn next_message(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next_line()).await.expect("a line in time").expect("stdout");
        let line = line.expect("tail printed a message before it ended");
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|error| panic!("not JSON: {line:?}: {error}"));
        assert!(event.is_object(), "one JSON object a line: {line}");
        if event["ev"] == "msg" {
            return event;
        }
    }
}

/// Reads `watcher`'s events until `seen` says every awaited one came.
async fn watch(watcher: &mut Connection, mut seen: impl FnMut(&Value) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = watcher.next_event_within(left).await.expect("the awaited events in time");
        if seen(&event) {
            return;
        }
    }
}

/// Whether `event` is a join of `user`.
fn joined(event: &Value, user: &str) -> bool {
    event["ev"] == "join" && event["user"] == user
}

/// Whether `event` is a message saying `text`.
fn said(event: &Value, text: &str) -> bool {
    event["ev"] == "msg" && event["body"]["text"] == text
}

/// A process's end, in time.
async fn ended(child: Child) -> Output {
    tokio::time::timeout(PATIENCE, child.wait_with_output()).await.expect("it ends in time").expect("output")
}

fn seq_and_text(message: &Value) -> (u64, &str) {
    (message["seq"].as_u64().expect("seq"), message["body"]["text"].as_str().expect("text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_sent_from_stdin_reach_tail_as_ndjson_with_their_seq() {
    let server = Server::start(["--storage", "memory"]);
    let url = format!("ws://{}/ws", server.http);
    let mut watcher = Connection::connect(&server.url("watcher")).await.expect("connect");
    assert_eq!(watcher.join("pipes").await.expect("join")["ok"], json!(true));
    let args = ["tail", &url, "--room", "pipes", "--name", "reader", "--count", "3"];
    let mut tail = switchboard(&args, Stdio::null(), Stdio::piped());
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    // tail is in the room once the watcher sees it arrive.
    watch(&mut watcher, |event| joined(event, "reader")).await;

    let (status, stderr) = run(&["send", &url, "--room", "pipes", "--name", "writer", "one"], "").await;
    assert!(status.success(), "{stderr}");
    // Printed (and flushed) while tail still runs.
    assert_eq!(seq_and_text(&next_message(&mut lines).await), (1, "one"));
    let (status, stderr) = run(&["send", &url, "--room", "pipes", "--name", "writer", "-"], "two\n\nthree\r\n").await;
    assert!(status.success(), "{stderr}");
    let second = next_message(&mut lines).await;
    assert_eq!((seq_and_text(&second), &second["from"]), ((2, "two"), &json!("writer")));
    assert_eq!(seq_and_text(&next_message(&mut lines).await), (3, "three"));
    let status = tokio::time::timeout(PATIENCE, tail.wait()).await.expect("tail ends after --count").expect("status");
    assert!(status.success(), "tail exits 0 after --count messages: {status}");

    // --since replays what is stored after it, then --count ends it.
    let mut replay =
        switchboard(&["tail", &url, "--room", "pipes", "--since", "1", "--count", "2"], Stdio::null(), Stdio::piped());
    let mut lines = BufReader::new(replay.stdout.take().expect("stdout")).lines();
    assert_eq!(seq_and_text(&next_message(&mut lines).await), (2, "two"));
    assert_eq!(seq_and_text(&next_message(&mut lines).await), (3, "three"));
    let status = tokio::time::timeout(PATIENCE, replay.wait()).await.expect("in time").expect("status");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses_say_what_went_wrong() {
    let server = Server::start_with_env(["--storage", "memory"], [("SWITCHBOARD_AUTH__JWT_HMAC_SECRET", SECRET)]);
    let url = format!("ws://{}/ws", server.http);
    let mint = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["token", "--user", "bot", "--room", "feed=join", "--room", "news=join,send"])
        .env("SWITCHBOARD_AUTH__JWT_HMAC_SECRET", SECRET)
        .output()
        .expect("token runs");
    assert!(mint.status.success(), "{}", String::from_utf8_lossy(&mint.stderr));
    let token = String::from_utf8(mint.stdout).expect("utf-8").trim().to_owned();
    let bot_sends_to = |room: &str| ["send", &url, "--room", room, "--token", &token, "hello"].map(str::to_owned);

    assert_eq!(status_of(&bot_sends_to("news"), None).await, 0);
    assert_eq!(status_of(&bot_sends_to("feed"), Some("forbidden")).await, 5, "joined, may not send");
    assert_eq!(status_of(&bot_sends_to("secret"), Some("forbidden")).await, 5, "may not join");
    let tail_secret = ["tail", &url, "--room", "secret", "--token", &token];
    assert_eq!(status_of(&tail_secret, Some("forbidden")).await, 5, "tail may not join");
    let forged = ["send", &url, "--room", "news", "--token", "not-a-jwt", "hello"];
    assert_eq!(status_of(&forged, Some("token_malformed")).await, 4, "refused at connect");
    let named = ["send", &url, "--room", "news", "--name", "bot", "hello"];
    assert_eq!(status_of(&named, Some("name_not_allowed")).await, 4, "names come from tokens");
    let anonymous = ["send", &url, "--room", "news", "hello"];
    assert_eq!(status_of(&anonymous, Some("token_required")).await, 4, "token mode wants a token");
    assert_eq!(status_of(&["tail", &url, "--room", "news", "--token", "x"], Some("token_")).await, 4);
    assert_eq!(status_of(&["send", "http://127.0.0.1:1", "--room", "news", "x"], Some("scheme")).await, 2);
    assert_eq!(status_of(&["send", &url, "hello"], Some("--room")).await, 2, "clap's usage error");
    let not_json = ["send", &url, "--room", "news", "--token", &token, "--json", "{oops"];
    assert_eq!(status_of(&not_json, Some("not JSON")).await, 2);

    let mut down = Server::start(["--storage", "memory"]);
    let down_url = format!("ws://{}/ws", down.http);
    down.kill();
    assert_eq!(status_of(&["send", &down_url, "--room", "news", "hello"], Some("cannot connect")).await, 3);
    assert_eq!(status_of(&["tail", &down_url, "--room", "news"], Some("cannot connect")).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_for_good_ends_send_and_tail_with_status_6() {
    let mut server = Server::start(["--storage", "memory"]);
    let url = format!("ws://{}/ws", server.http);
    let mut watcher = Connection::connect(&server.url("watcher")).await.expect("connect");
    watcher.join("pipes").await.expect("join");
    let tail_args = ["tail", &url, "--room", "pipes", "--name", "reader", "--retries", "1"];
    let mut tail = switchboard(&tail_args, Stdio::null(), Stdio::piped());
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    watch(&mut watcher, |event| joined(event, "reader")).await;
    let send_args = ["send", &url, "--room", "pipes", "--name", "writer", "--retries", "1", "-"];
    let mut send = switchboard(&send_args, Stdio::piped(), Stdio::null());
    let mut stdin = send.stdin.take().expect("stdin");
    stdin.write_all(b"before\n").await.expect("writing stdin");
    // The first line is stored, and tail is following, before the server dies.
    assert_eq!(seq_and_text(&next_message(&mut lines).await), (1, "before"));

    server.kill();
    // send may be gone already (it gave up): then the line is not read at all.
    let _ = stdin.write_all(b"after\n").await;
    drop(stdin);
    let sent = ended(send).await;
    let stderr = String::from_utf8_lossy(&sent.stderr);
    assert_eq!(sent.status.code(), Some(6), "{stderr}");
    // Line 1 when its ack had not arrived before the kill (the watcher may see it first).
    assert!(stderr.contains(": sending to pipes: "), "names the line not known to be stored: {stderr}");
    let tailed = ended(tail).await;
    let stderr = String::from_utf8_lossy(&tailed.stderr);
    assert_eq!(tailed.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("gave up after 1 attempts"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_whose_ack_was_lost_is_resent_and_stored_once() {
    let server = Server::start(["--storage", "memory"]);
    // Raw TCP JSON lines: the proxy can see where the `send` command starts.
    let proxy = Proxy::start(server.tcp).await;
    let url = format!("tcp://{}", proxy.address);
    let mut watcher = Connection::connect(&server.url("watcher")).await.expect("connect");
    watcher.join("pipes").await.expect("join");
    let mut send =
        switchboard(&["send", &url, "--room", "pipes", "--name", "writer", "-"], Stdio::piped(), Stdio::null());
    let mut stdin = send.stdin.take().expect("stdin");
    watch(&mut watcher, |event| joined(event, "writer")).await;

    // Stored, but the ack never reaches send; then its connection drops.
    proxy.lose_replies_from(br#""op":"send""#);
    stdin.write_all(b"once\n").await.expect("writing stdin");
    watch(&mut watcher, |event| said(event, "once")).await;
    proxy.cut().await;
    // Read only after "once" is acknowledged: by the resend's answer.
    stdin.write_all(b"then\n").await.expect("writing stdin");
    drop(stdin);
    let sent = ended(send).await;
    let stderr = String::from_utf8_lossy(&sent.stderr);
    assert!(sent.status.success(), "{stderr}");
    assert!(stderr.contains("reconnected"), "the line was resent on a new connection: {stderr}");

    let page = watcher.request(json!({"op": "history", "room": "pipes"})).await.expect("history");
    let texts: Vec<&str> =
        page["messages"].as_array().expect("messages").iter().filter_map(|m| m["body"]["text"].as_str()).collect();
    assert_eq!(texts, ["once", "then"], "the resent line is stored once");
}
