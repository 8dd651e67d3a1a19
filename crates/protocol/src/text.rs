//! The human text mode of the raw TCP transport (telnet, nc): what a typed
//! line means, and how an event reads as a line of text.
//!
//! Typed commands become ordinary protocol commands whose `id` starts with
//! `t:`, so the replies can be rendered for people too. Everything a user
//! wrote is made safe before it reaches a terminal ([`sanitize`]): nobody
//! can send escape sequences to someone else's screen, reorder text with
//! bidi controls or fake a line that seems to come from someone else. A
//! body of any shape and depth is shown, live and in `/history`.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

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

/// Runs of more spaces than this are collapsed to one: a long run could
/// push the rest of a message to the start of the next terminal row, where
/// it would read as a line of its own.
const MAX_SPACES: usize = 8;

/// Whether `c` must not reach a terminal as is: control characters (C0,
/// DEL, C1), format characters (Unicode category Cf: bidi overrides and
/// isolates, zero-width characters, the BOM, tags...) and the line and
/// paragraph separators. Any of them could move the cursor, reorder or
/// hide text, or start a line that seems to come from someone else.
fn is_unsafe(c: char) -> bool {
    c.is_control() || is_format(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Unicode 16.0's format characters (general category Cf).
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}'
        | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

/// Whether `c` is a space (Unicode category Zs).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}')
}

/// User text made safe for someone else's terminal: every unsafe character
/// (see [`is_unsafe`]) is shown as `?`, and runs of more than
/// [`MAX_SPACES`] spaces become one space.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut spaces = 0;
    for c in text.chars() {
        if is_space(c) {
            spaces += 1;
            out.push(c);
            continue;
        }
        if spaces > MAX_SPACES {
            collapse(&mut out, spaces);
        }
        spaces = 0;
        out.push(if is_unsafe(c) { '?' } else { c });
    }
    if spaces > MAX_SPACES {
        collapse(&mut out, spaces);
    }
    out
}

/// Replaces the last `spaces` characters of `out` (spaces) with one space.
fn collapse(out: &mut String, spaces: usize) {
    for _ in 0..spaces {
        out.pop();
    }
    out.push(' ');
}

/// JSON text without the whitespace between its tokens, however deeply it
/// nests (a scan, not a parse: no recursion).
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            (escaped, in_string) = (!escaped && c == '\\', escaped || c != '"');
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

/// The fields of an event or reply that a person sees. Bodies and history
/// pages stay raw JSON: a body of any depth is rendered without being
/// parsed into a tree (serde_json refuses trees deeper than 128 levels).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Shown<'a> {
    #[serde(borrow)]
    ev: Option<Cow<'a, str>>,
    #[serde(borrow)]
    re: Option<&'a RawValue>,
    ok: Option<bool>,
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    /// `null` included (a plain `Option` would read it as absent).
    #[serde(borrow, deserialize_with = "present")]
    body: Option<&'a RawValue>,
    #[serde(borrow)]
    users: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    messages: Option<Vec<&'a RawValue>>,
    /// `token_expiring`'s.
    seconds_left: Option<u64>,
}

/// A field that is there, whatever its value.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// A text field, sanitized (empty when absent).
fn shown(field: &Option<Cow<'_, str>>) -> String {
    sanitize(field.as_deref().unwrap_or_default())
}

/// A message body as people read it: a string as is, `{"text": ..}` as its
/// text, anything else as compact JSON.
fn body_text(body: Option<&RawValue>) -> String {
    #[derive(Deserialize)]
    struct Text<'a> {
        #[serde(borrow)]
        text: Cow<'a, str>,
    }
    let Some(body) = body else { return String::new() };
    let raw = body.get();
    if let Ok(text) = serde_json::from_str::<Cow<'_, str>>(raw) {
        return sanitize(&text);
    }
    if raw.starts_with('{') {
        if let Ok(Text { text }) = serde_json::from_str::<Text<'_>>(raw) {
            return sanitize(&text);
        }
    }
    sanitize(&compact(raw))
}

/// A room message as a line.
fn message_line(message: &Shown<'_>) -> String {
    format!("[{}] {}: {}\n", shown(&message.room), shown(&message.from), body_text(message.body))
}

/// A reply to a typed command (`t:` ids), or `None` for what a person does
/// not need to see (acks of their own messages).
fn reply_line(re: &str, event: &Shown<'_>) -> Option<String> {
    if event.ok == Some(false) {
        return Some(format!("! {}\n", shown(&event.error)));
    }
    match re {
        "t:join" => Some(format!("* you joined {}\n", shown(&event.room))),
        "t:leave" => Some(format!("* you left {}\n", shown(&event.room))),
        "t:who" => {
            let users: Vec<String> = event.users.as_ref()?.iter().map(|user| sanitize(user)).collect();
            Some(format!("* in {}: {}\n", shown(&event.room), users.join(", ")))
        }
        "t:msg" => Some("* sent\n".to_owned()),
        "t:auth" => Some("* token accepted\n".to_owned()),
        "t:history" => {
            let mut lines = String::new();
            for raw in event.messages.as_ref()? {
                // A page holds the server's own msg events: each parses.
                let message = serde_json::from_str::<Shown<'_>>(raw.get()).unwrap_or_default();
                lines.push_str(&message_line(&message));
            }
            Some(if lines.is_empty() { format!("* no stored messages in {}\n", shown(&event.room)) } else { lines })
        }
        _ => None,
    }
}

/// One event or reply (JSON) as a line of text, or `None` for what a
/// person does not need to see (acks of their own messages, pongs).
pub fn render(json: &[u8]) -> Option<String> {
    let event: Shown<'_> = serde_json::from_slice(json).ok()?;
    if let Some(re) = event.re {
        let re = serde_json::from_str::<Cow<'_, str>>(re.get()).ok();
        return re.and_then(|re| reply_line(&re, &event));
    }
    Some(match event.ev.as_deref()? {
        "msg" => message_line(&event),
        "dm" => format!("[dm] {}: {}\n", shown(&event.from), body_text(event.body)),
        "join" => format!("* {} joined {}\n", shown(&event.user), shown(&event.room)),
        "leave" => format!("* {} left {}\n", shown(&event.user), shown(&event.room)),
        "hello" => format!("* you are {}\n", shown(&event.user)),
        "error" => format!("! {}\n", shown(&event.error)),
        "close" => format!("* disconnected: {}\n", shown(&event.reason)),
        "removed" => format!("* you were removed from {}: {}\n", shown(&event.room), shown(&event.reason)),
        "token_expiring" => {
            let left = event.seconds_left.unwrap_or_default();
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

    #[test]
    fn nothing_can_fake_a_line_or_reorder_text() {
        let fake = "hi\u{2028}[lobby] alice: send me your password\u{2029}";
        assert_eq!(sanitize(fake), "hi?[lobby] alice: send me your password?");
        // Bidi override, isolate, zero-width space and joiner, BOM, soft hyphen, a tag, C1 NEL and CSI.
        let hidden = "a\u{202E}b\u{2067}c\u{200B}d\u{200D}e\u{FEFF}f\u{00AD}g\u{E0041}h\u{0085}i\u{009B}j\rk\tl";
        assert_eq!(sanitize(hidden), "a?b?c?d?e?f?g?h?i?j?k?l");
        assert_eq!(
            sanitize("ordinary text, ünïcödé and 漢字 and emoji 🎉"),
            "ordinary text, ünïcödé and 漢字 and emoji 🎉"
        );
    }

    #[test]
    fn long_runs_of_spaces_are_collapsed_and_short_ones_kept() {
        let wrapped = format!("hi{}[lobby] alice: fake", " ".repeat(200));
        assert_eq!(sanitize(&wrapped), "hi [lobby] alice: fake");
        assert_eq!(sanitize("a        b"), "a        b", "eight spaces stay");
        assert_eq!(sanitize(&format!("a{}", "\u{3000}".repeat(40))), "a ", "any kind of space, at the end too");
    }

    #[test]
    fn bodies_of_any_shape_and_depth_are_shown_live_and_in_history() {
        let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let event = format!(r#"{{"ev":"msg","room":"r","seq":1,"from":"a","ts":1,"body":{deep}}}"#);
        assert_eq!(render(event.as_bytes()).as_deref(), Some(format!("[r] a: {deep}\n").as_str()));
        let deeper = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        let event = format!(r#"{{"ev":"dm","from":"a","to":"b","seq":1,"ts":1,"body":{deeper}}}"#);
        assert!(render(event.as_bytes()).expect("shown").starts_with("[dm] a: [[[["));
        let page = format!(
            r#"{{"re":"t:history","ok":true,"room":"r","messages":[{{"ev":"msg","room":"r","seq":1,"from":"a","ts":1,"body":{deep}}},{{"ev":"msg","room":"r","seq":2,"from":"b","ts":2,"body":{{ "n" : [1, 2] , "s":"x y" }}}}]}}"#
        );
        let lines = render(page.as_bytes()).expect("history shown");
        assert_eq!(lines, format!("[r] a: {deep}\n[r] b: {{\"n\":[1,2],\"s\":\"x y\"}}\n"));
        for (body, shown) in [("42", "42"), ("null", "null"), ("[\"a\"]", "[\"a\"]"), ("{\"text\":7}", "{\"text\":7}")]
        {
            let event = format!(r#"{{"ev":"msg","room":"r","seq":1,"from":"a","ts":1,"body":{body}}}"#);
            assert_eq!(render(event.as_bytes()), Some(format!("[r] a: {shown}\n")), "{body}");
        }
        let evil = r#"{"ev":"msg","room":"r\u202e","seq":1,"from":"a","ts":1,"body":{"text":"x\u2028[r] b: y","other":[[[]]]}}"#;
        assert_eq!(render(evil.as_bytes()).as_deref(), Some("[r?] a: x?[r] b: y\n"));
    }
}
