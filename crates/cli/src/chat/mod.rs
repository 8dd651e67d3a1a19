//! `switchboard chat [URL] --name N --room R`: an interactive chat in the
//! terminal on the client library. Lines are edited and recalled with
//! rustyline; incoming messages appear above the prompt; names have a
//! colour each; the raw TCP human mode's slash commands work the same here.
//! When the server goes away the chat says it is reconnecting, and once
//! back it shows what was missed, in order, and whether all of it was
//! recovered.
//!
//! The parts: [`command`] reads typed lines, [`render`] turns events and
//! answers into lines, [`session`] runs commands and shows events on the
//! client, [`terminal`] is the line editor and the printer. This file
//! starts them and ends them in order.

mod command;
mod render;
mod session;
mod terminal;

use crate::connect::{backoff, connect, Failure, Identity, Kind};
use command::ChatCommand;
use render::Palette;
use session::{Session, Shared};
use std::sync::Arc;
use std::time::Duration;
use switchboard_client::{Client, ConnectionState};
use switchboard_protocol::text::sanitize;
use terminal::Typed;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long the prompt waits for a `/join` or `/leave` to be answered
/// before it is drawn again (the answer is still shown when it comes).
const PROMPT_WAIT: Duration = Duration::from_secs(10);

/// Typed commands waiting for the ones before them (while reconnecting,
/// say); past this many, typing waits.
const COMMANDS_WAITING: usize = 1_024;

/// How long leaving waits for lines still being sent, then for the
/// connection to close.
const LEAVING: Duration = Duration::from_secs(5);

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Type a line to say it in the current room; /help lists the commands (/join, /leave, /msg, /who,
/rooms, /history, /auth, /quit). Names are coloured when standard output is a terminal and
NO_COLOR is not set. When the server goes away the chat reconnects by itself and shows what it
missed.

Exit status:
  0  you left with /quit, bye, Ctrl-D or Ctrl-C
  1  any other failure (the terminal)
  2  usage: bad flags, an unusable URL or CA file
  3  cannot connect: nothing answers at the URL, TLS or the WebSocket upgrade failed
  4  authentication refused: the server refused the token (or the name) at connect
  6  the connection was closed for good (the server refused a reconnect, such as an expired token)")]
pub struct ChatArgs {
    /// The server: ws://HOST:PORT/ws, wss://..., tcp://HOST:PORT or tls://...
    #[arg(default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// The room to join first (more with /join).
    #[arg(long, default_value = "lobby")]
    room: String,
    #[command(flatten)]
    identity: Identity,
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    // One worker for the client while this thread waits for typing.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let (client, events) = runtime.block_on(connect(&args.url, &args.identity, backoff(None)))?;
    let palette = Palette::detect();
    let mut editor = terminal::editor()?;
    let (output, printer) = terminal::start_printer(&mut editor)?;
    let shared = Arc::new(Shared::default());
    let user = client.hello().map(|hello| hello.user).unwrap_or_default();
    let url = sanitize(&args.url);
    output.show_blocking(
        palette.notice(&format!("connected to {url} as {}; /help lists the commands", palette.name(&user))),
    );

    let session = Session::new(client.clone(), output.clone(), palette, Arc::clone(&shared));
    runtime.spawn(session::show_events(events, client.clone(), output.clone(), palette, Arc::clone(&shared)));
    runtime.block_on(session.handle(ChatCommand::Join(args.room)));
    let (commands, requests) = mpsc::channel(COMMANDS_WAITING);
    let running = runtime.spawn(session.run(requests));

    let typed = type_lines(&mut editor, &shared, &commands, &client);
    shared.quit();
    drop((commands, output));
    leave(&runtime, running, &client);
    printer.flush();
    typed?;
    if shared.is_closed() {
        return Err(Failure::new(Kind::Lost, "the connection was closed for good").into());
    }
    Ok(())
}

/// Reads typed lines until the person leaves (or the client stopped for
/// good), handing each command to the session.
fn type_lines(
    editor: &mut rustyline::DefaultEditor,
    shared: &Shared,
    commands: &mpsc::Sender<session::Request>,
    client: &Client,
) -> Result<(), Failure> {
    while !shared.is_closed() {
        let prompt = match shared.current() {
            Some(room) => format!("{}> ", sanitize(&room)),
            None => "> ".to_owned(),
        };
        let Typed::Line(line) = terminal::read_line(editor, &prompt)? else { return Ok(()) };
        let command = command::parse(&line);
        match command {
            ChatCommand::Quit => return Ok(()),
            ChatCommand::Empty => continue,
            ChatCommand::Join(_) | ChatCommand::Leave(_) if client.state() == ConnectionState::Connected => {
                // The prompt shows the current room: draw it once the room
                // changed (or, with no answer yet, as it is: the answer is
                // shown when it comes).
                let (done, answered) = std::sync::mpsc::sync_channel(1);
                if commands.blocking_send((command, Some(done))).is_ok() {
                    let _ = answered.recv_timeout(PROMPT_WAIT);
                }
            }
            command => {
                let _ = commands.blocking_send((command, None));
            }
        }
    }
    Ok(())
}

/// Lets the commands and messages typed before leaving finish (for a
/// while), then closes the connection.
fn leave(runtime: &Runtime, running: JoinHandle<()>, client: &Client) {
    runtime.block_on(async {
        let _ = tokio::time::timeout(LEAVING, running).await;
        let _ = tokio::time::timeout(LEAVING, client.close()).await;
    });
}
