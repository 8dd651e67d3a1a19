//! `switchboard tail URL --room R [--since N] [--count N]`: a room's events
//! as NDJSON on stdout, one JSON object a line, flushed line by line, for
//! scripts and pipes (`| jq`, `| grep`).
//!
//! Messages keep the protocol's shape (`{"ev":"msg","room","seq","from",
//! "ts","body"}`, `dm`, `join`, `leave`), so a script reads what the
//! protocol documents. Like `tail -F` it follows across server restarts:
//! the client library reconnects and rejoins from the last `seq` it
//! printed, so each message is printed once, in order; a gap it could not
//! fill is a line of its own (`{"ev":"recovered","recovered":false}`), never
//! silence. How the connection fares goes to stderr.

use crate::connect::{backoff, connect, reconnecting, Failure, Identity, Kind};
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use switchboard_client::{Event, Joined};

#[derive(clap::Args, Debug)]
#[command(after_help = crate::exit_status_help!(
    "--count messages were printed, or standard output was closed (| head); \
without --retries tail does not exit when the server goes away: it reconnects and catches up"
))]
pub struct TailArgs {
    /// The server: ws://HOST:PORT/ws, wss://..., tcp://HOST:PORT or tls://...
    url: String,
    /// The room to follow.
    #[arg(long)]
    room: String,
    /// First print the stored messages after this seq (0: all that are kept).
    #[arg(long)]
    since: Option<u64>,
    /// Exit after this many messages (msg and dm lines).
    #[arg(long)]
    count: Option<u64>,
    /// Give up after N reconnect attempts in a row (exit status 6); by
    /// default tail reconnects for ever.
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    #[command(flatten)]
    identity: Identity,
}

/// One line of output.
#[derive(Debug, Serialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
enum Line<'a> {
    Msg {
        room: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        from: &'a str,
        ts: u64,
        body: &'a Value,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        volatile: bool,
    },
    Dm {
        from: &'a str,
        to: &'a str,
        seq: u64,
        ts: u64,
        body: &'a Value,
    },
    Join {
        room: &'a str,
        user: &'a str,
    },
    Leave {
        room: &'a str,
        user: &'a str,
    },
    /// After a reconnect (or a `--since` the history no longer reaches):
    /// whether every missed message was printed.
    Recovered {
        room: Option<&'a str>,
        recovered: bool,
        replayed: u64,
        epoch_changed: bool,
    },
    /// The server took the room away (a refreshed token no longer allows it).
    Removed {
        room: &'a str,
        code: &'a str,
        reason: &'a str,
    },
}

impl<'a> Line<'a> {
    /// The line an event prints, if any (connection states go to stderr).
    fn of(event: &'a Event) -> Option<Line<'a>> {
        Some(match event {
            Event::Message(m) => {
                Line::Msg { room: &m.room, seq: m.seq, from: &m.from, ts: m.ts, body: &m.body, volatile: m.volatile }
            }
            Event::Direct(d) => Line::Dm { from: &d.from, to: &d.to, seq: d.seq, ts: d.ts, body: &d.body },
            Event::UserJoined(change) => Line::Join { room: &change.room, user: &change.user },
            Event::UserLeft(change) => Line::Leave { room: &change.room, user: &change.user },
            Event::Recovered(r) => Line::Recovered {
                room: r.room.as_deref(),
                recovered: r.recovered,
                replayed: r.replayed,
                epoch_changed: r.epoch_changed,
            },
            Event::Removed(removed) => {
                Line::Removed { room: &removed.room, code: &removed.code, reason: &removed.reason }
            }
            _ => return None,
        })
    }

    fn is_message(&self) -> bool {
        matches!(self, Line::Msg { .. } | Line::Dm { .. })
    }
}

pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(tail(args))?;
    Ok(())
}

async fn tail(args: TailArgs) -> Result<(), Failure> {
    let (client, mut events) = connect(&args.url, &args.identity, backoff(args.retries)).await?;
    let joined = match args.since {
        Some(since) => client.join_since(&args.room, since, None).await,
        None => client.join(&args.room).await,
    };
    let joined = joined.map_err(|error| Failure::command(&format!("joining {}", args.room), error))?;
    let outcome = follow(&args, &joined, &mut events).await;
    client.close().await;
    outcome
}

/// Prints events until `--count` messages, a closed stdout, or a client
/// that stopped for good.
async fn follow(args: &TailArgs, joined: &Joined, events: &mut switchboard_client::Events) -> Result<(), Failure> {
    if joined.recovered == Some(false) {
        let gap = Line::Recovered { room: Some(&joined.room), recovered: false, replayed: 0, epoch_changed: false };
        if !print(&gap)? {
            return Ok(());
        }
    }
    let mut messages = 0u64;
    while args.count.is_none_or(|count| messages < count) {
        let Some(event) = events.next().await else { break };
        match &event {
            Event::Closed { reason } => {
                return Err(Failure::new(Kind::Lost, format!("connection lost for good: {reason}")));
            }
            Event::Reconnecting { attempt, delay, reason } => {
                eprintln!("switchboard tail: {}", reconnecting(*attempt, *delay, reason));
            }
            Event::Connected { reconnected: true, .. } => eprintln!("switchboard tail: reconnected"),
            _ => {}
        }
        let Some(line) = Line::of(&event) else { continue };
        if !print(&line)? {
            return Ok(());
        }
        messages += u64::from(line.is_message());
    }
    Ok(())
}

/// Writes `line` and flushes it. False when stdout was closed (the reader
/// went away: nothing left to do).
fn print(line: &Line<'_>) -> Result<bool, Failure> {
    let mut text =
        serde_json::to_vec(line).map_err(|error| Failure::new(Kind::Io, format!("encoding a line: {error}")))?;
    text.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&text).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(Failure::new(Kind::Io, format!("writing standard output: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_client::{Message, Recovery};

    #[test]
    fn events_print_in_the_protocol_shape() {
        let body = json!({"text": "hi"});
        let message = Event::Message(Message {
            room: "lobby".into(),
            seq: Some(7),
            from: "bob".into(),
            ts: 5,
            body: body.clone(),
            volatile: false,
        });
        let line = serde_json::to_value(Line::of(&message)).expect("json");
        assert_eq!(line, json!({"ev":"msg","room":"lobby","seq":7,"from":"bob","ts":5,"body":{"text":"hi"}}));
        let gap = Event::Recovered(Recovery {
            room: Some("lobby".into()),
            recovered: false,
            replayed: 0,
            epoch_changed: true,
        });
        let line = serde_json::to_value(Line::of(&gap)).expect("json");
        assert_eq!(line["ev"], "recovered");
        assert_eq!((line["recovered"].as_bool(), line["epoch_changed"].as_bool()), (Some(false), Some(true)));
        assert!(Line::of(&Event::Closed { reason: "x".into() }).is_none());
    }
}
