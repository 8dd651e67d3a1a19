//! The chat's side of the connection: runs typed commands on the client
//! library's [`Client`] and shows their answers, shows the library's events,
//! and sends what is said, in the order it was typed.
//!
//! Two tasks: [`Session::run`] runs typed commands one at a time, in the
//! order they were typed, each finished before the next starts (a line
//! typed after `/join ops` is said in `ops`, and one typed before `/leave`
//! is said before leaving); [`show_events`] prints what arrives. A message
//! said while the client is reconnecting waits in the library's queue and
//! is sent (or resent, with its idempotency key, so it is stored once) when
//! the connection is back; the commands typed after it wait for it, while
//! typing goes on. Reconnecting, rejoining with `since` and `epoch`, and saying
//! `recovered: false` are the library's: the chat only shows them.

use super::command::{ChatCommand, HELP};
use super::render::{self, Palette};
use super::terminal::Output;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use switchboard_client::{Client, Error, Event, Events};
use switchboard_protocol::text::sanitize;
use tokio::sync::mpsc;

/// What the terminal thread and the tasks share.
#[derive(Debug, Default)]
pub struct Shared {
    /// The room plain lines are said in (the prompt shows it).
    current: Mutex<Option<String>>,
    /// The person is leaving: the client's closing is not news.
    quitting: AtomicBool,
    /// The client stopped for good (refused on reconnecting).
    closed: AtomicBool,
}

impl Shared {
    pub fn current(&self) -> Option<String> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_current(&self, room: Option<String>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = room;
    }

    pub fn quit(&self) {
        self.quitting.store(true, Ordering::SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A typed command, and where to say it is done (for the commands whose
/// answer changes the prompt).
pub type Request = (ChatCommand, Option<std::sync::mpsc::SyncSender<()>>);

/// Runs typed commands.
#[derive(Debug)]
pub struct Session {
    client: Client,
    output: Output,
    palette: Palette,
    shared: Arc<Shared>,
    /// Who the server says this chat is (DMs are shown as from them).
    me: String,
}

impl Session {
    pub fn new(client: Client, output: Output, palette: Palette, shared: Arc<Shared>) -> Session {
        let me = client.hello().map(|hello| hello.user).unwrap_or_default();
        Session { client, output, palette, shared, me }
    }

    /// Runs each command as it comes, and says when it is done (the
    /// terminal waits for the ones that change the prompt).
    pub async fn run(self, mut commands: mpsc::Receiver<Request>) {
        while let Some((command, done)) = commands.recv().await {
            self.handle(command).await;
            if let Some(done) = done {
                let _ = done.send(());
            }
        }
    }

    pub async fn handle(&self, command: ChatCommand) {
        match command {
            ChatCommand::Say(text) => self.say(&text).await,
            ChatCommand::Msg { to, text } => self.direct(&to, &text).await,
            ChatCommand::Join(room) => self.join(&room).await,
            ChatCommand::Leave(room) => self.leave(room).await,
            ChatCommand::Who => self.who().await,
            ChatCommand::Rooms => self.rooms().await,
            ChatCommand::History(count) => self.history(count).await,
            ChatCommand::Auth(token) => match self.client.auth(&token).await {
                Ok(_) => self.output.show(self.palette.notice("token accepted")).await,
                Err(error) => self.refused(&error).await,
            },
            ChatCommand::Help => self.output.show(self.palette.notice(HELP.trim_start_matches("* "))).await,
            ChatCommand::Invalid(why) => self.warn(&why).await,
            ChatCommand::Quit | ChatCommand::Empty => {}
        }
    }

    /// The current room, if any.
    fn in_room(&self) -> Option<String> {
        self.shared.current()
    }

    /// Says `text` in the current room; the server's echo shows it, once
    /// it is stored.
    async fn say(&self, text: &str) {
        let Some(room) = self.in_room() else { return self.warn("join a room first: /join ROOM").await };
        if let Err(error) = self.client.send(&room, json!({ "text": text })).await {
            self.not_sent(&room, &error).await;
        }
    }

    /// Sends a DM and, since the server does not echo DMs to their sender,
    /// shows it once it is stored.
    async fn direct(&self, to: &str, text: &str) {
        match self.client.dm(to, json!({ "text": text })).await {
            Ok(_) => self.output.show(render::direct_sent(self.palette, &self.me, to, text)).await,
            Err(error) => self.not_sent(to, &error).await,
        }
    }

    async fn not_sent(&self, to: &str, error: &Error) {
        self.warn(&format!("not sent to {}: {}", sanitize(to), sanitize(&error.to_string()))).await;
    }

    async fn join(&self, room: &str) {
        match self.client.join(room).await {
            Ok(joined) => {
                self.shared.set_current(Some(joined.room.clone()));
                let stored = if joined.seq == 0 {
                    String::new()
                } else {
                    format!(" ({} messages so far; /history to read)", joined.seq)
                };
                self.output.show(self.palette.notice(&format!("you joined {}{stored}", sanitize(&joined.room)))).await;
            }
            Err(error) => self.refused(&error).await,
        }
    }

    async fn leave(&self, room: Option<String>) {
        let Some(room) = room.or_else(|| self.in_room()) else {
            return self.warn("join a room first: /join ROOM").await;
        };
        let left = self.client.leave(&room).await;
        // Left or not, the client no longer rejoins it.
        if self.in_room().as_deref() == Some(room.as_str()) {
            self.shared.set_current(self.client.joined().pop());
        }
        match left {
            Ok(()) => self.output.show(self.palette.notice(&format!("you left {}", sanitize(&room)))).await,
            Err(error) => self.refused(&error).await,
        }
    }

    async fn who(&self) {
        let Some(room) = self.in_room() else { return self.warn("join a room first: /join ROOM").await };
        match self.client.presence(&room).await {
            Ok(presence) => self.output.show(render::who(self.palette, &presence.room, &presence.users)).await,
            Err(error) => self.refused(&error).await,
        }
    }

    async fn rooms(&self) {
        match self.client.rooms().await {
            Ok(rooms) => self.output.show(render::rooms(self.palette, &rooms)).await,
            Err(error) => self.refused(&error).await,
        }
    }

    async fn history(&self, count: Option<u64>) {
        let Some(room) = self.in_room() else { return self.warn("join a room first: /join ROOM").await };
        match self.client.history(&room, None, count).await {
            Ok(page) if page.messages.is_empty() => {
                self.output.show(self.palette.notice(&format!("no stored messages in {}", sanitize(&room)))).await;
            }
            Ok(page) => {
                let lines: Vec<String> =
                    page.messages.iter().map(|message| render::message(self.palette, message)).collect();
                self.output.show(lines.join("\n")).await;
            }
            Err(error) => self.refused(&error).await,
        }
    }

    async fn refused(&self, error: &Error) {
        self.warn(&sanitize(&error.to_string())).await;
    }

    async fn warn(&self, text: &str) {
        self.output.show(self.palette.warning(text)).await;
    }
}

/// Shows the client's events until it stops.
pub async fn show_events(mut events: Events, client: Client, output: Output, palette: Palette, shared: Arc<Shared>) {
    while let Some(event) = events.next().await {
        match &event {
            Event::Removed(removed) if shared.current().as_deref() == Some(removed.room.as_str()) => {
                shared.set_current(client.joined().pop());
            }
            Event::Closed { .. } if shared.quitting.load(Ordering::SeqCst) => return,
            Event::Closed { .. } => shared.closed.store(true, Ordering::SeqCst),
            _ => {}
        }
        if let Some(line) = render::event(palette, &event) {
            output.show(line).await;
        }
    }
}
