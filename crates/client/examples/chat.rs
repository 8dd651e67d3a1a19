//! A tiny chat: joins a room, prints what is said there, and says each line
//! typed on standard input. It survives server restarts: watch it print
//! "reconnecting" and then the messages it missed.
//!
//! ```sh
//! cargo run --release -- serve &
//! cargo run -p switchboard-client --example chat -- ws://127.0.0.1:8080/ws alice lobby
//! cargo run -p switchboard-client --example chat -- tcp://127.0.0.1:7070 bob lobby
//! ```

use switchboard_client::{Client, Event};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), switchboard_client::Error> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:8080/ws".into());
    let name = args.next().unwrap_or_else(|| "guest".into());
    let room = args.next().unwrap_or_else(|| "lobby".into());

    let (client, mut events) = Client::builder(&url).name(&name).connect().await?;
    let joined = client.join(&room).await?;
    println!("* joined {room} (message {} is the newest); type a line and press Enter", joined.seq);

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(text)) if !text.trim().is_empty() => {
                    // Answered once stored; resent by itself if the connection drops first.
                    if let Err(error) = client.send(&room, serde_json::json!({ "text": text })).await {
                        eprintln!("! not sent: {error}");
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
            event = events.next() => match event {
                Some(event) => show(event),
                None => break,
            },
        }
    }
    client.close().await;
    Ok(())
}

fn show(event: Event) {
    match event {
        Event::Message(message) => {
            let text = message.body.get("text").and_then(|text| text.as_str()).map(str::to_owned);
            println!("[{}] {}: {}", message.room, message.from, text.unwrap_or_else(|| message.body.to_string()));
        }
        Event::Direct(direct) => println!("[dm] {}: {}", direct.from, direct.body),
        Event::UserJoined(change) => println!("* {} joined {}", change.user, change.room),
        Event::UserLeft(change) => println!("* {} left {}", change.user, change.room),
        Event::Reconnecting { attempt, delay, reason } => {
            println!("* reconnecting (attempt {attempt}, in {delay:.1?}): {reason}");
        }
        Event::Connected { hello, reconnected: true } => println!("* connected again as {}", hello.user),
        Event::Recovered(recovery) if recovery.recovered => {
            println!("* caught up: {} missed message(s) replayed", recovery.replayed);
        }
        Event::Recovered(_) => println!("! some messages were missed for good (history lost or trimmed)"),
        Event::Closed { reason } => println!("* closed: {reason}"),
        _ => {}
    }
}
