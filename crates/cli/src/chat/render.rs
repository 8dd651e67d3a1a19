//! How `switchboard chat` shows things: the client library's events and the
//! answers to typed commands as lines of text, in the raw TCP human mode's
//! shapes (`[room] name: text`, `[dm] name: text`, `* ...` for news,
//! `! ...` for refusals), with each name in a colour of its own.
//!
//! Everything another user wrote (names, rooms, bodies) goes through the
//! protocol crate's `sanitize` before it reaches the terminal: nobody can
//! move the cursor, reorder text or fake a line. Colour is only added here,
//! after sanitizing, and only when [`Palette`] allows it.

use serde_json::Value;
use std::io::IsTerminal;
use switchboard_client::{DirectMessage, Event, Message, Recovery};
use switchboard_protocol::text::sanitize;

/// Foreground colours names are drawn in (SGR codes): the six hues in their
/// normal and bright forms, less dark blue, which is hard to read on the
/// dark backgrounds most terminals have.
const NAME_COLOURS: [u8; 11] = [31, 32, 33, 35, 36, 91, 92, 93, 94, 95, 96];

/// Whether and how to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    colour: bool,
}

impl Palette {
    /// Colour when standard output is a terminal and `NO_COLOR` is unset or
    /// empty (<https://no-color.org>).
    pub fn detect() -> Palette {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Palette::new(std::io::stdout().is_terminal() && !no_color)
    }

    pub fn new(colour: bool) -> Palette {
        Palette { colour }
    }

    /// `text` (already safe) in SGR `code`, or as it is without colour.
    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A user's name, sanitized, in its colour.
    pub fn name(&self, name: &str) -> String {
        self.paint(&name_colour(name).to_string(), &sanitize(name))
    }

    /// News from the chat itself: `* text`, dimmed.
    pub fn notice(&self, text: &str) -> String {
        self.paint("2", &format!("* {text}"))
    }

    /// How the connection stands (reconnecting): `* text`, in bold yellow.
    pub fn status(&self, text: &str) -> String {
        self.paint("1;33", &format!("* {text}"))
    }

    /// A refusal or a problem: `! text`, in bold red.
    pub fn warning(&self, text: &str) -> String {
        self.paint("1;31", &format!("! {text}"))
    }
}

/// The SGR colour of `name`: the same for a name in every chat and every
/// run (FNV-1a of its bytes, not the standard library's seeded hasher).
pub fn name_colour(name: &str) -> u8 {
    let hash = name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    let index = usize::try_from(hash % NAME_COLOURS.len() as u64).unwrap_or_default();
    NAME_COLOURS[index]
}

/// A message body as people read it: a string as it is, `{"text": ..}` as
/// its text, anything else as compact JSON; sanitized.
pub fn body_text(body: &Value) -> String {
    match body {
        Value::String(text) => sanitize(text),
        Value::Object(fields) => match fields.get("text") {
            Some(Value::String(text)) => sanitize(text),
            _ => sanitize(&body.to_string()),
        },
        other => sanitize(&other.to_string()),
    }
}

/// `[room] name: text`.
pub fn message(palette: Palette, message: &Message) -> String {
    format!("[{}] {}: {}", sanitize(&message.room), palette.name(&message.from), body_text(&message.body))
}

/// `[dm] name: text`, a direct message received.
pub fn direct(palette: Palette, direct: &DirectMessage) -> String {
    format!("[dm] {}: {}", palette.name(&direct.from), body_text(&direct.body))
}

/// `[dm to bob] alice: text`, a direct message this chat sent (the server
/// does not echo DMs to their sender).
pub fn direct_sent(palette: Palette, me: &str, to: &str, text: &str) -> String {
    format!("[dm to {}] {}: {}", palette.name(to), palette.name(me), sanitize(text))
}

/// `* in room: alice, bob`.
pub fn who(palette: Palette, room: &str, users: &[String]) -> String {
    let names: Vec<String> = users.iter().map(|user| palette.name(user)).collect();
    palette.notice(&format!("in {}: {}", sanitize(room), names.join(", ")))
}

/// `* rooms: a, b` (or `none`).
pub fn rooms(palette: Palette, rooms: &[String]) -> String {
    let names: Vec<String> = rooms.iter().map(|room| sanitize(room)).collect();
    palette.notice(&format!("rooms: {}", if names.is_empty() { "none".to_owned() } else { names.join(", ") }))
}

/// How a reconnect caught a room (or the DM inbox) up: `reconnected to
/// lobby (recovered 2 missed)`, or a warning that messages were missed for
/// good (`recovered:false`).
pub fn recovery(palette: Palette, recovery: &Recovery) -> String {
    let what = match &recovery.room {
        Some(room) => sanitize(room),
        None => "your direct messages".to_owned(),
    };
    if recovery.recovered {
        return palette.notice(&format!("reconnected to {what} (recovered {} missed)", recovery.replayed));
    }
    let why = if recovery.epoch_changed {
        "its history was reset or lost: numbering starts over"
    } else {
        "the stored history no longer reaches back that far"
    };
    palette.warning(&format!("reconnected to {what} (recovered:false: {why}; messages sent meanwhile may be missing)"))
}

/// The line an event of the client library shows, if any.
pub fn event(palette: Palette, event: &Event) -> Option<String> {
    Some(match event {
        Event::Message(received) => message(palette, received),
        Event::Direct(received) => direct(palette, received),
        Event::UserJoined(change) => {
            palette.notice(&format!("{} joined {}", palette.name(&change.user), sanitize(&change.room)))
        }
        Event::UserLeft(change) => {
            palette.notice(&format!("{} left {}", palette.name(&change.user), sanitize(&change.room)))
        }
        Event::Reconnecting { attempt, delay, reason } => {
            palette.status(&crate::connect::reconnecting(*attempt, *delay, reason))
        }
        Event::Connected { hello, reconnected: true } => {
            palette.notice(&format!("connected again as {}; catching up…", palette.name(&hello.user)))
        }
        Event::Recovered(caught_up) => recovery(palette, caught_up),
        Event::Removed(removed) => palette.warning(&format!(
            "you were removed from {} ({}): {}",
            sanitize(&removed.room),
            sanitize(&removed.code),
            sanitize(&removed.reason)
        )),
        Event::TokenExpiring(expiring) => {
            palette.warning(&format!("your token expires in {} s: /auth NEW_TOKEN", expiring.seconds_left))
        }
        Event::ServerError(refusal) => palette.warning(&sanitize(&refusal.to_string())),
        Event::Closed { reason } => {
            palette.warning(&format!("disconnected for good: {}; press Enter to leave", sanitize(reason)))
        }
        Event::Connected { reconnected: false, .. } | Event::Other(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn said(from: &str, body: Value) -> Event {
        Event::Message(Message { room: "lobby".into(), seq: Some(1), from: from.into(), ts: 1, body, volatile: false })
    }

    #[test]
    fn each_name_keeps_one_colour() {
        assert_eq!(name_colour("alice"), name_colour("alice"));
        let colours: std::collections::BTreeSet<u8> =
            ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"].map(name_colour).into();
        assert!(colours.len() >= 4, "names spread over the palette: {colours:?}");
        assert!(colours.iter().all(|colour| NAME_COLOURS.contains(colour)));
        // Pinned: a name's colour must not change between versions or runs.
        assert_eq!(name_colour(""), NAME_COLOURS[(0xcbf2_9ce4_8422_2325_u64 % 11) as usize]);
    }

    #[test]
    fn colour_only_when_allowed() {
        let line = event(Palette::new(true), &said("bob", json!({"text": "hi"}))).expect("a line");
        let code = name_colour("bob");
        assert_eq!(line, format!("[lobby] \x1b[{code}mbob\x1b[0m: hi"));
        let plain = event(Palette::new(false), &said("bob", json!({"text": "hi"}))).expect("a line");
        assert_eq!(plain, "[lobby] bob: hi");
        assert_eq!(Palette::new(false).warning("no"), "! no");
    }

    #[test]
    fn bodies_read_as_text_and_nobody_reaches_the_terminal_raw() {
        let plain = Palette::new(false);
        assert_eq!(body_text(&json!("plain")), "plain");
        assert_eq!(body_text(&json!({"text": "hi", "extra": 1})), "hi");
        assert_eq!(body_text(&json!({"n": [1, 2]})), r#"{"n":[1,2]}"#);
        let evil = said("mallory\u{1b}[2J", json!("x\u{202e}\n[lobby] bob: fake"));
        let line = event(plain, &evil).expect("a line");
        assert_eq!(line, "[lobby] mallory?[2J: x??[lobby] bob: fake");
        assert!(!line.contains('\n') && !line.contains('\u{1b}'));
    }

    #[test]
    fn connection_news_is_shown() {
        let plain = Palette::new(false);
        let reconnecting = Event::Reconnecting { attempt: 2, delay: Duration::from_millis(700), reason: "gone".into() };
        assert_eq!(event(plain, &reconnecting).expect("a line"), "* reconnecting… (attempt 2 in 0.7 s; gone)");
        let caught_up = Recovery { room: Some("lobby".into()), recovered: true, replayed: 2, epoch_changed: false };
        assert_eq!(recovery(plain, &caught_up), "* reconnected to lobby (recovered 2 missed)");
        let lost = Recovery { room: None, recovered: false, replayed: 0, epoch_changed: true };
        let line = recovery(plain, &lost);
        assert!(line.starts_with("! reconnected to your direct messages (recovered:false: "), "{line}");
        assert!(event(plain, &Event::Other(json!({"ev": "new"}))).is_none());
        assert_eq!(who(plain, "lobby", &["alice".into(), "bob".into()]), "* in lobby: alice, bob");
        assert_eq!(rooms(plain, &[]), "* rooms: none");
        assert_eq!(direct_sent(plain, "alice", "bob", "psst"), "[dm to bob] alice: psst");
    }
}
