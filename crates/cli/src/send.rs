//! `switchboard send URL --room R [TEXT | -]`: publishes messages from a
//! script or a pipe. With `-` (or no TEXT) each line of standard input is
//! one message, sent only once the one before it was acknowledged, that is
//! stored: when the command exits 0 every line is in the room's history, and
//! when it fails the message it names was the first one not known to be
//! stored.
//!
//! A connection lost on the way is retried for a short while (a script
//! should learn that the server is gone, not wait for ever: `--retries`);
//! the message waiting for its ack is resent with its idempotency key (the
//! client library gives each `send` one), so it is stored once either way.

use crate::connect::{backoff, connect, reconnecting, Failure, Identity, Kind};
use serde_json::{json, Value};
use switchboard_client::{Client, Event, Events};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(clap::Args, Debug)]
#[command(after_help = crate::exit_status_help!("every message was stored (acknowledged by the server)"))]
pub struct SendArgs {
    /// The server: ws://HOST:PORT/ws, wss://..., tcp://HOST:PORT or tls://...
    url: String,
    /// The room to send to (joined first).
    #[arg(long)]
    room: String,
    /// The message. `-`, or nothing, reads standard input: each line is a
    /// message (empty lines are skipped), acknowledged before the next is sent.
    text: Option<String>,
    /// Each message is a JSON value sent as the body as it is (otherwise
    /// the body is {"text": LINE}, as the chat and the web page send).
    #[arg(long)]
    json: bool,
    /// Reconnect attempts in a row before a lost connection is given up
    /// (exit status 6). The default 6 waits 31.5 s at most (about 16 s on
    /// average: each wait is random within its window).
    #[arg(long, value_name = "N", default_value_t = 6)]
    retries: u32,
    #[command(flatten)]
    identity: Identity,
}

pub fn run(args: SendArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(send(args))?;
    Ok(())
}

async fn send(args: SendArgs) -> Result<(), Failure> {
    let (client, events) = connect(&args.url, &args.identity, backoff(Some(args.retries))).await?;
    tokio::spawn(report_reconnects(events));
    let joined = client.join(&args.room).await;
    joined.map_err(|error| Failure::command(&format!("joining {}", args.room), error))?;
    let sent = match args.text.as_deref() {
        Some(text) if text != "-" => publish(&client, &args, text).await,
        _ => publish_lines(&client, &args).await,
    };
    client.close().await;
    sent
}

/// Sends each line of standard input, in order, one ack at a time.
async fn publish_lines(client: &Client, args: &SendArgs) -> Result<(), Failure> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut number = 0u64;
    loop {
        let line = lines.next_line().await;
        let line = line.map_err(|error| Failure::new(Kind::Io, format!("reading standard input: {error}")))?;
        let Some(line) = line else { return Ok(()) };
        number += 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        publish(client, args, line).await.map_err(|failure| failure.context(&format!("line {number}")))?;
    }
}

/// Sends one message and waits for its ack.
async fn publish(client: &Client, args: &SendArgs, text: &str) -> Result<(), Failure> {
    let body = if args.json {
        serde_json::from_str::<Value>(text).map_err(|error| Failure::new(Kind::Usage, format!("not JSON ({error})")))?
    } else {
        json!({ "text": text })
    };
    let sent = client.send(&args.room, body).await;
    sent.map(drop).map_err(|error| Failure::command(&format!("sending to {}", args.room), error))
}

/// Tells stderr when the connection drops and comes back (stdout stays
/// empty: a script reads the exit status).
async fn report_reconnects(mut events: Events) {
    while let Some(event) = events.next().await {
        match event {
            Event::Reconnecting { attempt, delay, reason } => {
                eprintln!("switchboard send: {}", reconnecting(attempt, delay, &reason));
            }
            Event::Connected { reconnected: true, .. } => eprintln!("switchboard send: reconnected"),
            _ => {}
        }
    }
}
