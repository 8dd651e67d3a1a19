//! `switchboard chat` as a person uses it: a real process on a
//! pseudo-terminal (rexpect), typing lines and reading the screen, chatting
//! both ways with a WebSocket client of the client library, across a
//! SIGKILL of the server and a restart on the same port and data: the chat
//! says it is reconnecting, then shows the messages stored meanwhile, in
//! order, and that it recovered them.

mod support;

use rexpect::reader::Options;
use rexpect::session::PtySession;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::Server;
use switchboard_client::{Client, Connection, Event, Events};
use tokio::runtime::Runtime;

/// Every wait on the screen or on an event (reconnecting after a restart
/// included: the backoff's windows are 0.5, 1, 2, 4 and 8 s).
const PATIENCE: Duration = Duration::from_secs(60);

/// The server on SQLite in `data`.
fn storage(data: &Path) -> Vec<std::ffi::OsString> {
    vec!["--storage".into(), "sqlite".into(), "--data".into(), data.into()]
}

/// `switchboard chat URL --name alice` on a pseudo-terminal, colours off.
fn chat(url: &str) -> PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(["chat", url, "--name", "alice", "--room", "lobby"]).env("NO_COLOR", "1").env("TERM", "xterm");
    let timeout = u64::try_from(PATIENCE.as_millis()).expect("fits");
    let options = Options::default().timeout_ms(Some(timeout)).strip_ansi_escape_codes(true);
    rexpect::session::spawn_with_options(command, options).expect("the chat starts on a pty")
}

/// Waits until the chat's screen shows `text` (after what was seen before).
fn shows(chat: &mut PtySession, text: &str) {
    if let Err(error) = chat.exp_string(text) {
        panic!("the chat did not show {text:?}: {error}");
    }
}

/// Types `line` and Enter.
fn types(chat: &mut PtySession, line: &str) {
    chat.send_line(line).expect("typing");
}

/// The next event of `events` that `wanted` accepts (others skipped).
fn next_event(runtime: &Runtime, events: &mut Events, wanted: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + PATIENCE;
    runtime.block_on(async {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, events.next()).await.expect("the event in time");
            let event = event.expect("the client runs");
            if wanted(&event) {
                return event;
            }
        }
    })
}

/// Whether `event` is a message or DM from alice (bob also hears his own).
fn from_alice(event: &Event) -> bool {
    text_of(event).is_some_and(|(from, _)| from == "alice")
}

fn text_of(event: &Event) -> Option<(&str, &str)> {
    match event {
        Event::Message(message) => Some((message.from.as_str(), message.body["text"].as_str()?)),
        Event::Direct(direct) => Some((direct.from.as_str(), direct.body["text"].as_str()?)),
        _ => None,
    }
}

/// Stores `texts` in lobby from carol on a server of its own on `data`, on
/// another port than `avoid` (where the chat keeps trying), then kills it.
fn stored_meanwhile(runtime: &Runtime, data: &Path, avoid: SocketAddr, texts: &[&str]) {
    let mut interim = Server::start(storage(data));
    while interim.http.port() == avoid.port() {
        interim.kill();
        interim = Server::start(storage(data));
    }
    runtime.block_on(async {
        let mut carol = Connection::connect(&interim.url("carol")).await.expect("carol connects");
        assert_eq!(carol.join("lobby").await.expect("join")["ok"], json!(true));
        for text in texts {
            let ack = carol.send("lobby", json!({ "text": text })).await.expect("send");
            assert_eq!(ack["ok"], json!(true), "stored: {ack}");
        }
    });
    interim.kill();
}

#[test]
fn the_chat_talks_with_a_websocket_client_and_recovers_across_a_restart() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let data = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(storage(data.path()));
    let port = server.http;
    let url = format!("ws://{port}/ws");
    let (bob, mut bob_events) = runtime.block_on(Client::builder(&url).name("bob").connect()).expect("bob connects");
    runtime.block_on(bob.join("lobby")).expect("bob joins");

    let mut alice = chat(&url);
    shows(&mut alice, "you joined lobby");
    next_event(&runtime, &mut bob_events, |event| matches!(event, Event::UserJoined(change) if change.user == "alice"));

    // Both ways, and the slash commands.
    runtime.block_on(bob.send("lobby", json!({"text": "hello alice"}))).expect("bob sends");
    shows(&mut alice, "[lobby] bob: hello alice");
    types(&mut alice, "hi bob, from a terminal");
    let heard = next_event(&runtime, &mut bob_events, from_alice);
    assert_eq!(text_of(&heard), Some(("alice", "hi bob, from a terminal")));
    shows(&mut alice, "[lobby] alice: hi bob, from a terminal");
    types(&mut alice, "/who");
    shows(&mut alice, "* in lobby: alice, bob");
    types(&mut alice, "/msg bob psst");
    let direct = next_event(&runtime, &mut bob_events, from_alice);
    assert!(matches!(direct, Event::Direct(_)), "{direct:?}");
    assert_eq!(text_of(&direct), Some(("alice", "psst")));
    shows(&mut alice, "[dm to bob] alice: psst");

    // The server dies; while the chat cannot reach it, two messages are stored.
    server.kill();
    // rexpect reads bytes as Latin-1: ASCII only in what is awaited.
    shows(&mut alice, "* reconnecting");
    stored_meanwhile(&runtime, data.path(), port, &["missed one", "missed two"]);
    let _server = Server::start_at(port, storage(data.path()));
    shows(&mut alice, "[lobby] carol: missed one");
    shows(&mut alice, "[lobby] carol: missed two");
    shows(&mut alice, "reconnected to lobby (recovered 2 missed)");

    // And both ways again, once bob is back too.
    next_event(
        &runtime,
        &mut bob_events,
        |event| matches!(event, Event::Recovered(r) if r.room.as_deref() == Some("lobby")),
    );
    runtime.block_on(bob.send("lobby", json!({"text": "welcome back"}))).expect("bob sends");
    shows(&mut alice, "[lobby] bob: welcome back");
    types(&mut alice, "thanks");
    let heard = next_event(&runtime, &mut bob_events, from_alice);
    assert_eq!(text_of(&heard), Some(("alice", "thanks")));

    types(&mut alice, "/quit");
    alice.exp_eof().expect("the chat ends");
    let status = alice.process_mut().wait().expect("status");
    assert!(matches!(status, rexpect::process::WaitStatus::Exited(_, 0)), "{status:?}");
}
