//! The human text mode of the raw TCP transport (telnet, nc): what a typed
//! line means, and how an event reads as a line of text.
//!
//! Typed commands become ordinary protocol commands whose `id` starts with
//! `t:`, so the replies can be rendered for people too. Everything a user
//! wrote is stripped of control characters before it reaches a terminal,
//! so nobody can send escape sequences to someone else's screen.

use serde_json::Value;

/// The greeting and help, sent when a connection turns out to be human.
pub const HELP: &str = "\
* welcome to switchboard. commands:
*   /nick NAME       choose your name (before joining rooms; open mode)
*   /auth TOKEN      present your token (first, on servers in token mode; again to refresh it)
*   /join ROOM       join a room; plain lines are said there
*   /leave           leave the current room
*   /msg USER TEXT   direct message
*   /who             who is in the current room
*   /rooms           rooms on this server
*   /history [N]     recent messages in the current room
*   /quit            leave (or type bye)
";

/// What a typed line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    Nick(&'a str),
    Auth(&'a str),
    Join(&'a str),
    Leave,
    Msg {
        to: &'a str,
        text: &'a str,
    },
    Who,
    Rooms,
    History(Option<u64>),
    Quit,
    Help,
    /// A plain line, said in the current room.
    Say(&'a str),
    /// A slash command that is unknown or misses its argument.
    Invalid(String),
}

/// Reads one line (without its newline).
pub fn parse_input(line: &str) -> Input<'_> {
    let line = line.trim();
    if line == "bye" {
        return Input::Quit;
    }
    let Some(command) = line.strip_prefix('/') else {
        return Input::Say(line);
    };
    let (name, rest) = command.split_once(char::is_whitespace).unwrap_or((command, ""));
    let rest = rest.trim();
    let needs = |what: &str| Input::Invalid(format!("usage: /{name} {what}"));
    match (name, rest) {
        ("nick", "") => needs("NAME"),
        ("nick", name) => Input::Nick(name),
        ("auth", "") => needs("TOKEN"),
        ("auth", token) => Input::Auth(token),
        ("join", "") => needs("ROOM"),
        ("join", room) => Input::Join(room),
        ("leave", _) => Input::Leave,
        ("msg", rest) => match rest.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Input::Msg { to, text: text.trim() },
            _ => needs("USER TEXT"),
        },
        ("who", _) => Input::Who,
        ("rooms", _) => Input::Rooms,
        ("history", "") => Input::History(None),
        ("history", count) => match count.parse() {
            Ok(count) => Input::History(Some(count)),
            Err(_) => needs("[N]"),
        },
        ("quit", _) => Input::Quit,
        ("help", _) => Input::Help,
        (other, _) => Input::Invalid(format!("unknown command /{other}; try /help")),
    }
}

/// Replaces control characters so user text cannot drive a terminal.
pub fn sanitize(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A message body as people read it: a string as is, `{"text": ..}` as its
/// text, anything else as compact JSON.
fn body_text(body: &Value) -> String {
    match body {
        Value::String(text) => sanitize(text),
        Value::Object(fields) => match fields.get("text") {
            Some(Value::String(text)) => sanitize(text),
            _ => sanitize(&body.to_string()),
        },
        other => sanitize(&other.to_string()),
    }
}

/// A room message as a line.
fn message_line(message: &Value) -> Option<String> {
    let field = |name: &str| sanitize(message[name].as_str().unwrap_or_default());
    Some(format!("[{}] {}: {}\n", field("room"), field("from"), body_text(&message["body"])))
}

/// One event or reply (JSON) as a line of text, or `None` for what a
/// person does not need to see (acks of their own messages, pongs).
pub fn render(json: &[u8]) -> Option<String> {
    let event: Value = serde_json::from_slice(json).ok()?;
    let field = |name: &str| sanitize(event[name].as_str().unwrap_or_default());
    if let Some(re) = event["re"].as_str() {
        if event["ok"] == Value::Bool(false) {
            return Some(format!("! {}\n", field("error")));
        }
        return match re {
            "t:join" => Some(format!("* you joined {}\n", field("room"))),
            "t:leave" => Some(format!("* you left {}\n", field("room"))),
            "t:who" => {
                let users: Vec<String> =
                    event["users"].as_array()?.iter().filter_map(Value::as_str).map(sanitize).collect();
                Some(format!("* in {}: {}\n", field("room"), users.join(", ")))
            }
            "t:msg" => Some("* sent\n".to_owned()),
            "t:auth" => Some("* token accepted\n".to_owned()),
            "t:history" => {
                let lines: String = event["messages"].as_array()?.iter().filter_map(message_line).collect();
                Some(if lines.is_empty() { format!("* no stored messages in {}\n", field("room")) } else { lines })
            }
            _ => None,
        };
    }
    Some(match event["ev"].as_str()? {
        "msg" => message_line(&event)?,
        "dm" => format!("[dm] {}: {}\n", field("from"), body_text(&event["body"])),
        "join" => format!("* {} joined {}\n", field("user"), field("room")),
        "leave" => format!("* {} left {}\n", field("user"), field("room")),
        "hello" => format!("* you are {}\n", field("user")),
        "error" => format!("! {}\n", field("error")),
        "close" => format!("* disconnected: {}\n", field("reason")),
        "removed" => format!("* you were removed from {}: {}\n", field("room"), field("reason")),
        "token_expiring" => {
            let left = event["seconds_left"].as_u64().unwrap_or_default();
            format!("* your token expires in {left} s: send /auth NEW_TOKEN\n")
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lines_become_inputs() {
        assert_eq!(parse_input("/nick alice"), Input::Nick("alice"));
        assert_eq!(parse_input("  /join   lobby "), Input::Join("lobby"));
        assert_eq!(parse_input("/msg bob see you at 5"), Input::Msg { to: "bob", text: "see you at 5" });
        assert_eq!(parse_input("/history 20"), Input::History(Some(20)));
        assert_eq!(parse_input("bye"), Input::Quit);
        assert_eq!(parse_input("/auth ey.J.x"), Input::Auth("ey.J.x"));
        assert!(matches!(parse_input("/auth"), Input::Invalid(usage) if usage.contains("TOKEN")));
        assert_eq!(parse_input("hello all"), Input::Say("hello all"));
        assert!(matches!(parse_input("/msg bob"), Input::Invalid(usage) if usage.contains("USER TEXT")));
        assert!(matches!(parse_input("/fly"), Input::Invalid(why) if why.contains("/help")));
    }

    #[test]
    fn events_read_as_lines_and_escapes_are_neutralized() {
        let msg = br#"{"ev":"msg","room":"lobby","seq":1,"from":"bob","ts":1,"body":"hi \u001b[2J"}"#;
        assert_eq!(render(msg).as_deref(), Some("[lobby] bob: hi ?[2J\n"));
        let object = br#"{"ev":"msg","room":"r","seq":2,"from":"ws","ts":1,"body":{"text":"from a browser"}}"#;
        assert_eq!(render(object).as_deref(), Some("[r] ws: from a browser\n"));
        let join = br#"{"ev":"join","room":"lobby","user":"carol"}"#;
        assert_eq!(render(join).as_deref(), Some("* carol joined lobby\n"));
        let who = br#"{"re":"t:who","ok":true,"room":"lobby","users":["alice","bob"]}"#;
        assert_eq!(render(who).as_deref(), Some("* in lobby: alice, bob\n"));
        let failed = br#"{"re":"t:send","ok":false,"code":"not_member","error":"join first"}"#;
        assert_eq!(render(failed).as_deref(), Some("! join first\n"));
        assert_eq!(render(br#"{"re":"t:send","ok":true,"seq":3,"ts":1}"#), None);
        let history = br#"{"re":"t:history","ok":true,"room":"r","messages":[
            {"ev":"msg","room":"r","seq":1,"from":"a","ts":1,"body":"one"},
            {"ev":"msg","room":"r","seq":2,"from":"b","ts":2,"body":"two"}]}"#;
        assert_eq!(render(history).as_deref(), Some("[r] a: one\n[r] b: two\n"));
        let empty = br#"{"re":"t:history","ok":true,"room":"r","messages":[]}"#;
        assert_eq!(render(empty).as_deref(), Some("* no stored messages in r\n"));
        let expiring = br#"{"ev":"token_expiring","exp":100,"seconds_left":30}"#;
        assert_eq!(render(expiring).as_deref(), Some("* your token expires in 30 s: send /auth NEW_TOKEN\n"));
        let removed = br#"{"ev":"removed","room":"ops","code":"forbidden","reason":"not allowed"}"#;
        assert_eq!(render(removed).as_deref(), Some("* you were removed from ops: not allowed\n"));
    }
}
