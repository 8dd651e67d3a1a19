//! The raw TCP codec: newline-delimited, in one of two modes chosen by the
//! first line. A JSON object starts JSON-lines mode: the same commands and
//! events as WebSocket, one per line, optionally opened by
//! `{"op":"hello","name":..}`. Anything else starts human text mode for
//! telnet and nc: typed commands (`switchboard_protocol::text`) in,
//! readable lines out (rendered by the hub when it queues them).
//!
//! A partial line followed by a pause counts as a line, so a client that
//! sends without a newline and waits for an answer still gets one.
//!
//! The first line must arrive within `tcp_options.first_line_timeout`, or
//! the connection is closed with 1008: a silent socket (or one that
//! trickles bytes without a newline) cannot hold a slot forever. Its
//! deadline shares the partial line's timer, so no connection holds a
//! second one.
//!
//! A connection that has sent nothing for `tcp_options.greeting_delay`
//! is sent one greeting line (a person in nc would otherwise face a
//! silent screen). Programs send their first line at once and never see
//! it; the line is a JSON event, so one that waits can read and skip it.
//! The same timer again.
//!
//! A raw TCP connection is counted in `connections_accepted_total` when
//! its first line decides its mode (`tcp_json` or `tcp_text`), or as
//! `tcp_json` when it ends before any (it was served as JSON lines).

use super::stream::Codec;
use crate::auth::AuthError;
use crate::guard::rate::Verdict;
use crate::guard::reason;
use crate::hub::conn::Transport;
use crate::session::Session;
use bytes::{Bytes, BytesMut};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_protocol::command::{self, Command, Request};
use switchboard_protocol::event::{self, Encoded, Framing};
use switchboard_protocol::text::{self, Input};
use switchboard_protocol::{CloseCode, ErrorCode};
use tokio::time::Sleep;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No first line yet, and no greeting sent.
    Undecided,
    /// No first line yet; the greeting went out.
    Greeted,
    Json,
    Text,
}

impl Mode {
    fn undecided(self) -> bool {
        matches!(self, Mode::Undecided | Mode::Greeted)
    }
}

/// Line state of one raw TCP connection.
#[derive(Debug)]
pub(crate) struct TcpCodec {
    mode: Mode,
    /// While undecided: the hub's clock (milliseconds, wrapping) by which
    /// the first line must be complete. Beside `mode`, in its padding.
    first_line_by: u32,
    /// An unterminated line, kept only until its newline or pause arrives.
    partial: Option<Box<BytesMut>>,
    /// Runs while `partial` waits (when it fires, the partial is a line)
    /// and until the first line (when it fires then, the time is up).
    pause: Option<Pin<Box<Sleep>>>,
}

impl TcpCodec {
    /// A codec for a connection accepted now, which has until the policy's
    /// first-line timeout to send its first line.
    pub fn new(session: &Session) -> Self {
        let hub = session.hub();
        let timeout = hub.policy().guard.first_line_timeout;
        let first_line_by = hub.now_ms().wrapping_add(timeout.as_millis() as u64) as u32;
        let mut codec = TcpCodec { mode: Mode::Undecided, first_line_by, partial: None, pause: None };
        codec.arm(session);
        codec
    }

    fn keep_partial(&mut self, bytes: &[u8], session: &Session) -> Result<(), CloseCode> {
        let limits = session.hub().limits();
        let partial = self.partial.get_or_insert_with(Box::default);
        if partial.len() + bytes.len() > limits.max_message_size {
            return Err(CloseCode::TooBig);
        }
        partial.extend_from_slice(bytes);
        self.arm(session);
        Ok(())
    }

    /// Sets the timer: the partial line's pause, the greeting's time or
    /// the first line's deadline, whichever comes first; none when none
    /// applies.
    fn arm(&mut self, session: &Session) {
        let pause = self.partial.as_ref().map(|_| session.hub().limits().partial_line_pause);
        let wait = match (self.mode, pause) {
            (mode, pause) if mode.undecided() => {
                let left = self.first_line_left(session);
                let first = pause.or_else(|| self.greeting_left(session)).map_or(left, |wait| wait.min(left));
                Some(first)
            }
            (_, pause) => pause,
        };
        self.pause = wait.map(|wait| Box::pin(tokio::time::sleep(wait)));
    }

    /// Time until the greeting is due, while it is still to be sent and the
    /// client has sent nothing of a line (a partial line is someone typing
    /// or a program sending: no greeting); `None` when off or not due.
    fn greeting_left(&self, session: &Session) -> Option<Duration> {
        let delay = session.hub().limits().greeting_delay;
        if self.mode != Mode::Undecided || self.partial.is_some() || delay.is_zero() {
            return None;
        }
        let timeout = session.hub().policy().guard.first_line_timeout;
        let waited = timeout.saturating_sub(self.first_line_left(session));
        Some(delay.saturating_sub(waited))
    }

    /// Sends the greeting if it is due.
    fn greet_if_due(&mut self, session: &Session) {
        if self.greeting_left(session) != Some(Duration::ZERO) {
            return;
        }
        self.mode = Mode::Greeted;
        let greeting =
            if session.hub().policy().token_mode() { event::TCP_GREETING_TOKEN } else { event::TCP_GREETING };
        session.hub().queue_frame(session.conn(), Bytes::from_static(greeting.as_bytes()));
    }

    /// Time left for the first line to complete.
    fn first_line_left(&self, session: &Session) -> Duration {
        let left = self.first_line_by.wrapping_sub(session.hub().now_ms() as u32);
        if left > u32::MAX / 2 {
            Duration::ZERO
        } else {
            Duration::from_millis(u64::from(left))
        }
    }

    fn on_line(&mut self, line: &[u8], session: &mut Session) -> Result<(), CloseCode> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            session.error_event(ErrorCode::BadJson, "line is not UTF-8");
            return Ok(());
        };
        if line.trim().is_empty() {
            return Ok(());
        }
        match self.mode {
            Mode::Json => session.handle(line),
            Mode::Text => on_text(line, session)?,
            Mode::Undecided | Mode::Greeted if line.trim_start().starts_with('{') => {
                self.mode = Mode::Json;
                session.hub().count_accepted(Transport::TcpJson);
                start_json(line, session)?;
            }
            Mode::Undecided | Mode::Greeted => {
                self.mode = Mode::Text;
                session.hub().count_accepted(Transport::TcpText);
                start_text(line, session)?;
            }
        }
        Ok(())
    }
}

impl Codec for TcpCodec {
    fn ingest(&mut self, data: &[u8], session: &mut Session) -> Result<(), CloseCode> {
        let max_line = session.hub().limits().max_message_size;
        let mut rest = data;
        if let Some(partial) = self.partial.take() {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                self.partial = Some(partial);
                return self.keep_partial(rest, session);
            };
            let mut line = *partial;
            if line.len() + end > max_line {
                return Err(CloseCode::TooBig);
            }
            line.extend_from_slice(&rest[..end]);
            self.on_line(&line, session)?;
            rest = &rest[end + 1..];
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if end > max_line {
                return Err(CloseCode::TooBig);
            }
            self.on_line(&rest[..end], session)?;
            rest = &rest[end + 1..];
        }
        if rest.is_empty() {
            self.arm(session);
            return Ok(());
        }
        self.keep_partial(rest, session)
    }

    fn close_frame(&self, code: CloseCode, reason: &str) -> Bytes {
        let close = Encoded::new(&event::Close::with_reason(code, reason));
        match self.mode {
            Mode::Text if code == CloseCode::Normal => Bytes::from_static(b"* bye\n"),
            Mode::Text => Bytes::from(text::render(close.json()).unwrap_or_default()),
            Mode::Json | Mode::Undecided | Mode::Greeted => close.framed(Framing::Line),
        }
    }

    fn reset(&mut self) {
        self.partial = None;
        self.pause = None;
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.pause {
            Some(pause) => pause.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }

    fn on_timer(&mut self, session: &mut Session) -> Result<(), CloseCode> {
        self.pause = None;
        if self.mode.undecided() && self.first_line_left(session).is_zero() {
            let conn = session.conn();
            tracing::info!(conn = conn.id, peer = %conn.peer(), "no first line in time, closing with 1008");
            session.hub().metrics.limit_hit(reason::TCP_FIRST_LINE);
            return Err(CloseCode::PolicyViolation);
        }
        self.greet_if_due(session);
        let result = match self.partial.take() {
            Some(line) => self.on_line(&line, session),
            None => Ok(()),
        };
        // An empty line decides nothing: the deadline still runs.
        if self.mode.undecided() {
            self.arm(session);
        }
        result
    }

    /// A connection that ends before its first line was served as JSON
    /// lines: it is counted as such (see the module's notes).
    fn on_end(&mut self, session: &Session) {
        if self.mode.undecided() {
            session.hub().count_accepted(Transport::TcpJson);
        }
    }

    /// `printf '...' | nc` sends its commands and shuts its side: every
    /// answer is still sent before the close line.
    fn drains_on_end_of_input(&self) -> bool {
        true
    }
}

/// The first JSON line: a `hello` names (open mode) or authenticates
/// (token mode) the client, who is then greeted. In open mode anything
/// else is a command from a guest, greeted first; in token mode anything
/// else, like a refused token, is answered and closes the connection.
fn start_json(line: &str, session: &mut Session) -> Result<(), CloseCode> {
    let request = command::parse(line);
    if let Ok(Request { id, command: Command::Hello { name, token } }) = request {
        session.admit(id, name, token.as_deref(), Transport::TcpJson).map_err(|_| CloseCode::Unauthorized)?;
        session.greet(None);
        return Ok(());
    }
    if session.hub().policy().token_mode() {
        let id = match &request {
            Ok(request) => request.id,
            Err(error) => error.id,
        };
        session.refused(id, &AuthError::Missing);
        return Err(CloseCode::Unauthorized);
    }
    session.greet(None);
    session.handle(line);
    Ok(())
}

/// The first line of a person: in token mode it must be `/auth TOKEN`;
/// in open mode it is their first command or line, as a guest.
fn start_text(line: &str, session: &mut Session) -> Result<(), CloseCode> {
    let user = Arc::clone(&session.conn().user);
    // Not in any room yet, so the rename cannot fail; from here on replies
    // are rendered for people.
    let _ = session.rename(user, Transport::TcpText);
    let token_mode = session.hub().policy().token_mode();
    if token_mode {
        let token = match text::parse_input(line) {
            Input::Auth(token) => Some(token),
            _ => None,
        };
        // A refusal is answered by `admit`.
        session.admit(None, None, token, Transport::TcpText).map_err(|_| CloseCode::Unauthorized)?;
    }
    say(session, text::HELP);
    session.greet(None);
    if !token_mode {
        on_text(line, session)?;
    }
    Ok(())
}

/// Queues a line of text exactly as given (text mode only).
fn say(session: &Session, line: &str) {
    session.hub().queue_frame(session.conn(), Bytes::copy_from_slice(line.as_bytes()));
}

/// The room plain lines are said in: the most recently joined.
fn current_room(session: &Session) -> Option<String> {
    session.rooms().last().map(str::to_owned)
}

/// Runs a typed command as the protocol command it stands for; the `t:`
/// ids let the hub render the replies for people.
fn on_text(line: &str, session: &mut Session) -> Result<(), CloseCode> {
    // Every typed line counts against the rates, whatever it stands for.
    let verdict = session.charge(line.len());
    if verdict != Verdict::Admit {
        session.refuse(None, verdict);
        return Ok(());
    }
    let in_room = |session: &mut Session, make: &dyn Fn(String) -> serde_json::Value| match current_room(session) {
        Some(room) => session.handle_admitted(&make(room).to_string()),
        None => say(session, "! join a room first: /join ROOM\n"),
    };
    match text::parse_input(line) {
        Input::Nick(_) if session.hub().policy().token_mode() => {
            say(session, &format!("! {}\n", AuthError::NameNotAllowed));
        }
        Input::Auth(token) => {
            session.handle_admitted(&json!({"op": "auth", "token": token, "id": "t:auth"}).to_string())
        }
        Input::Nick(name) => match command::validate_user(name) {
            Err(why) => say(session, &format!("! {why}\n")),
            Ok(()) => match session.rename(Arc::from(name), Transport::TcpText) {
                Ok(()) => say(session, &format!("* you are now {name}\n")),
                Err(why) => say(session, &format!("! {why}\n")),
            },
        },
        Input::Join(room) => session.handle_admitted(&json!({"op": "join", "room": room, "id": "t:join"}).to_string()),
        Input::Leave => in_room(session, &|room| json!({"op": "leave", "room": room, "id": "t:leave"})),
        Input::Msg { to, text } => {
            session.handle_admitted(&json!({"op": "dm", "to": to, "body": text, "id": "t:msg"}).to_string())
        }
        Input::Who => in_room(session, &|room| json!({"op": "presence", "room": room, "id": "t:who"})),
        Input::Rooms => {
            let names: Vec<String> = session.visible_rooms().iter().map(|name| text::sanitize(name)).collect();
            say(session, &format!("* rooms: {}\n", if names.is_empty() { "none".into() } else { names.join(", ") }));
        }
        Input::History(limit) => {
            in_room(session, &|room| json!({"op": "history", "room": room, "limit": limit, "id": "t:history"}))
        }
        Input::Quit => return Err(CloseCode::Normal),
        Input::Help => say(session, text::HELP),
        Input::Say(text) => in_room(session, &|room| json!({"op": "send", "room": room, "body": text, "id": "t:send"})),
        Input::Invalid(why) => say(session, &format!("! {why}\n")),
    }
    Ok(())
}
