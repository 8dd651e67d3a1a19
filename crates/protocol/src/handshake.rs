//! The WebSocket opening handshake (RFC 6455 section 4) as a pure function
//! over the bytes of an HTTP/1.1 request head. HTTP syntax is parsed by
//! `httparse`; this module decides whether the request is an upgrade for
//! one of our WebSocket paths, validates it, and writes the answers.
//!
//! Requests for any other path are reported as [`Parsed::Other`] so the
//! caller can hand them, untouched, to a general HTTP server.

use crate::command;
use crate::deflate::{self, Agreed};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};
use std::fmt::Write as _;

/// The only protocol version this server speaks.
pub const VERSION: &str = "13";
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Most header lines an upgrade request may carry.
pub(crate) const MAX_HEADERS: usize = 32;

/// Which WebSocket endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/ws`: the JSON protocol.
    Protocol,
    /// `/ws/echo`: every message echoed back.
    Echo,
}

/// A valid upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    pub endpoint: Endpoint,
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
    /// Who asks: the name or token, the page, behind proxies the client.
    pub caller: Caller,
    /// Length of the request head; bytes after it are WebSocket frames.
    pub head_len: usize,
    /// The permessage-deflate offer we would accept, if the client made
    /// one; the server uses it only when compression is enabled.
    pub deflate: Option<Agreed>,
}

/// Who a request (an upgrade, an event stream) comes from, as it says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The `name` query parameter, validated as a user name.
    pub name: Option<String>,
    /// The token from `?token=` or `Authorization: Bearer` (the query wins).
    pub token: Option<String>,
    /// The `Origin` header: a browser names the page that sent the request.
    pub origin: Option<String>,
    /// The `Host` header.
    pub host: Option<String>,
    /// The client as a proxy reports it: the `X-Forwarded-For` header, or
    /// else `Forwarded`, as sent (believed only from trusted proxies).
    pub forwarded: Option<Forwarded>,
}

impl Caller {
    /// Reads the caller of a request for `target` (its path and query);
    /// `Err` is why its `name` is not a user name.
    pub(crate) fn read(target: &str, headers: &[httparse::Header<'_>]) -> Result<Caller, String> {
        let name = query_value(target, "name");
        if let Some(name) = &name {
            command::validate_user(name)?;
        }
        let token = query_value(target, "token").or_else(|| bearer(headers));
        let text = |name| header_values(headers, name).next().and_then(|value| std::str::from_utf8(value).ok());
        let (origin, host) = (text("origin").map(str::to_owned), text("host").map(str::to_owned));
        let forwarded = text("x-forwarded-for")
            .map(|value| Forwarded::XForwardedFor(value.to_owned()))
            .or_else(|| text("forwarded").map(|value| Forwarded::Forwarded(value.to_owned())));
        Ok(Caller { name, token, origin, host, forwarded })
    }
}

/// A proxy's report of the client it forwards for, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    /// `X-Forwarded-For: client, proxy1, ...`
    XForwardedFor(String),
    /// RFC 7239 `Forwarded: for=client;proto=https, ...`
    Forwarded(String),
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet.
    Incomplete,
    /// A request for another path: not ours to parse.
    Other,
    Upgrade(Upgrade),
}

/// Why an upgrade request was refused; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("request head is over {0} bytes")]
    HeadTooLarge(usize),
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    #[error("WebSocket upgrades use GET")]
    NotGet,
    #[error("expected a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)")]
    NotUpgrade,
    #[error("only WebSocket version 13 is supported")]
    Version,
    #[error("missing or malformed Sec-WebSocket-Key")]
    Key,
    #[error("invalid name: {0}")]
    Name(String),
}

impl HandshakeError {
    /// The HTTP status line's code and reason.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            HandshakeError::HeadTooLarge(_) => (431, "Request Header Fields Too Large"),
            HandshakeError::NotGet => (405, "Method Not Allowed"),
            HandshakeError::Version => (426, "Upgrade Required"),
            _ => (400, "Bad Request"),
        }
    }
}

/// Parses the start of a connection. `max_head` bounds the request head.
pub fn parse_request(input: &[u8], max_head: usize) -> Result<Parsed, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let status = match request.parse(input) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadTooLarge(max_head)),
        Err(error) => return Err(HandshakeError::Malformed(error.to_string())),
    };
    let endpoint = match request.path.map(|path| path.split('?').next().unwrap_or_default()) {
        None => return incomplete(input, max_head),
        Some("/ws") => Endpoint::Protocol,
        Some("/ws/echo") => Endpoint::Echo,
        Some(_) => return Ok(Parsed::Other),
    };
    let httparse::Status::Complete(head_len) = status else {
        return incomplete(input, max_head);
    };
    if head_len > max_head {
        return Err(HandshakeError::HeadTooLarge(max_head));
    }
    if request.method != Some("GET") {
        return Err(HandshakeError::NotGet);
    }
    let headers = &*request.headers;
    if !has_token(headers, "upgrade", "websocket") || !has_token(headers, "connection", "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    if header_values(headers, "sec-websocket-version").all(|value| value != VERSION.as_bytes()) {
        return Err(HandshakeError::Version);
    }
    let key = header_values(headers, "sec-websocket-key").next().filter(|key| is_valid_key(key));
    let accept = accept_key(key.ok_or(HandshakeError::Key)?);
    let caller = Caller::read(request.path.unwrap_or_default(), headers).map_err(HandshakeError::Name)?;
    let deflate = deflate::negotiate(header_values(headers, "sec-websocket-extensions"));
    Ok(Parsed::Upgrade(Upgrade { endpoint, accept, caller, head_len, deflate }))
}

/// The value of query parameter `key` in `path`, decoded.
pub(crate) fn query_value(path: &str, key: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    form_urlencoded::parse(query.as_bytes()).find(|(found, _)| found == key).map(|(_, value)| value.into_owned())
}

/// The credentials of `Authorization: Bearer TOKEN`.
pub(crate) fn bearer(headers: &[httparse::Header<'_>]) -> Option<String> {
    let value = std::str::from_utf8(header_values(headers, "authorization").next()?).ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

pub(crate) fn header_values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// Whether a comma-separated header carries `token` (case-insensitive).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    header_values(headers, name)
        .filter_map(|value| std::str::from_utf8(value).ok())
        .any(|value| value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
}

fn incomplete(input: &[u8], max_head: usize) -> Result<Parsed, HandshakeError> {
    if input.len() > max_head {
        return Err(HandshakeError::HeadTooLarge(max_head));
    }
    Ok(Parsed::Incomplete)
}

/// A `Sec-WebSocket-Key` must be 16 random bytes in base64.
pub fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24 && STANDARD.decode(key).map(|raw| raw.len() == 16).unwrap_or(false)
}

/// The `Sec-WebSocket-Accept` value for a client key.
pub fn accept_key(key: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(key);
    hasher.update(GUID);
    STANDARD.encode(hasher.finalize())
}

/// The `101 Switching Protocols` answer, accepting `deflate` if given.
pub fn switching_protocols(accept: &str, deflate: Option<&Agreed>) -> String {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(agreed) = deflate {
        let _ = write!(out, "Sec-WebSocket-Extensions: {}\r\n", agreed.response());
    }
    out.push_str("\r\n");
    out
}

/// A complete plain-text HTTP answer that closes the connection.
pub fn refusal(code: u16, reason: &str, body: &str) -> String {
    let mut out =
        format!("HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n");
    if code == 426 {
        out.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    if code == 429 {
        out.push_str("Retry-After: 1\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n{body}\n", body.len() + 1);
    out
}

/// A complete HTTP answer with the body `{"code":CODE,"error":MESSAGE}`
/// (the same shape as protocol errors) that closes the connection.
pub fn refusal_json(status: u16, reason: &str, code: &str, message: &str) -> String {
    let body = serde_json::json!({ "code": code, "error": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "GET /ws?name=alice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn key_must_be_sixteen_bytes_of_base64() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"short"));
        assert!(!is_valid_key(b"!!!!!!!!!!!!!!!!!!!!!!!!"));
    }

    #[test]
    fn a_valid_upgrade_is_accepted_with_its_name() {
        let mut input = GOOD.as_bytes().to_vec();
        input.extend_from_slice(&[0x81, 0x80]);
        let Ok(Parsed::Upgrade(upgrade)) = parse_request(&input, 8192) else { panic!("not an upgrade") };
        assert_eq!(upgrade.endpoint, Endpoint::Protocol);
        assert_eq!(upgrade.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(upgrade.caller.name.as_deref(), Some("alice"));
        assert_eq!(upgrade.head_len, GOOD.len(), "frames after the head are left alone");
        assert_eq!(upgrade.deflate, None, "no extension offered");
        let caller = upgrade.caller;
        assert_eq!((caller.token, caller.origin, caller.host.as_deref()), (None, None, Some("x")));
    }

    #[test]
    fn tokens_origins_and_proxies_are_read_from_the_request() {
        let with = |extra: &str, path: &str| {
            let request = GOOD.replace("/ws?name=alice", path).replacen("\r\n", &format!("\r\n{extra}"), 1);
            let Ok(Parsed::Upgrade(upgrade)) = parse_request(request.as_bytes(), 8192) else {
                panic!("not an upgrade")
            };
            upgrade
        };
        let bearer = with("Authorization: Bearer abc.def.ghi\r\nOrigin: https://app.test\r\n", "/ws");
        assert_eq!(bearer.caller.token.as_deref(), Some("abc.def.ghi"));
        assert_eq!(bearer.caller.origin.as_deref(), Some("https://app.test"));
        let query = with("Authorization: Bearer header-token\r\n", "/ws?token=query%2Etoken");
        assert_eq!(query.caller.token.as_deref(), Some("query.token"), "the query wins");
        assert_eq!(with("Authorization: Basic abc\r\n", "/ws").caller.token, None);
        let proxied = with("Forwarded: for=192.0.2.60\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n", "/ws");
        assert_eq!(proxied.caller.forwarded, Some(Forwarded::XForwardedFor("203.0.113.7, 10.0.0.1".into())));
        let rfc = with("Forwarded: for=192.0.2.60;proto=https\r\n", "/ws");
        assert_eq!(rfc.caller.forwarded, Some(Forwarded::Forwarded("for=192.0.2.60;proto=https".into())));
    }

    #[test]
    fn a_deflate_offer_is_read_from_any_extensions_header_and_answered() {
        let offered = GOOD.replacen(
            "\r\n",
            "\r\nSec-WebSocket-Extensions: foo, permessage-deflate; server_max_window_bits=8\r\n\
             sec-websocket-extensions: permessage-deflate; client_no_context_takeover\r\n",
            1,
        );
        let Ok(Parsed::Upgrade(upgrade)) = parse_request(offered.as_bytes(), 8192) else { panic!("not an upgrade") };
        let agreed = upgrade.deflate.expect("the second header's offer");
        assert!(agreed.client_no_context_takeover);
        let answer = switching_protocols(&upgrade.accept, Some(&agreed));
        assert!(answer.ends_with(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n"
        ));
        assert!(!switching_protocols(&upgrade.accept, None).contains("Extensions"));
    }

    #[test]
    fn partial_heads_wait_and_other_paths_are_passed_on() {
        assert_eq!(parse_request(&GOOD.as_bytes()[..30], 8192), Ok(Parsed::Incomplete));
        assert_eq!(parse_request(b"GET /metr", 8192), Ok(Parsed::Incomplete));
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\nHo", 8192), Ok(Parsed::Other));
        assert_eq!(parse_request(b"GET /ws/echo HTTP/1.1\r\nX: y", 10), Err(HandshakeError::HeadTooLarge(10)));
    }

    #[test]
    fn each_defect_has_its_status() {
        let status = |request: String| parse_request(request.as_bytes(), 8192).map_err(|e| e.status().0);
        assert_eq!(status(GOOD.replace("GET", "POST")), Err(405));
        assert_eq!(status(GOOD.replace("Upgrade: websocket\r\n", "")), Err(400));
        assert_eq!(status(GOOD.replace("Version: 13", "Version: 8")), Err(426));
        assert_eq!(status(GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "nope")), Err(400));
        assert_eq!(status(GOOD.replace("name=alice", "name=al%20ice")), Err(400));
        assert_eq!(status("GET /ws HTTP/1.1\r\nBad Header\r\n\r\n".into()), Err(400));
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status(GOOD.replacen("\r\n", &format!("\r\n{many}"), 1)), Err(431));
    }

    #[test]
    fn json_refusals_carry_a_code_and_an_escaped_message() {
        let answer = refusal_json(401, "Unauthorized", "token_expired", "the \"token\" expired");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n") && head.contains("application/json"));
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        let parsed: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(parsed, serde_json::json!({"code": "token_expired", "error": "the \"token\" expired"}));
    }

    #[test]
    fn refusals_are_complete_http_answers() {
        let answer = refusal(426, "Upgrade Required", "only WebSocket version 13 is supported");
        assert!(answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(answer.ends_with("\r\n\r\nonly WebSocket version 13 is supported\n"));
    }
}
