//! Per-server adapters: how the load generator joins a room, publishes and
//! keeps a connection alive on Switchboard and on each peer server in
//! `bench/peers/` (their wire formats are in `bench/peers/README.md`).
//!
//! Every adapter carries the same payload, `{"n":N,"t":MICROS,"pad":".."}`,
//! inside whatever envelope the server wants, and a delivery is found by
//! looking for that payload in what arrives, so one reader counts for all.

use super::common::CLOSE_EVENT;
use super::wsclient::WsConn;
use crate::signing::{self, SigningKey};
use anyhow::{bail, Context};
use memchr::memmem;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Token mode: set to have every Switchboard connection present a token
/// for its name instead of `?name=` (HS256 with this secret).
pub const TOKEN_SECRET_ENV: &str = "SWITCHBOARD_BENCH_TOKEN_SECRET";
/// Token mode with a private key (PEM: ES256, EdDSA or RS256).
pub const TOKEN_KEY_ENV: &str = "SWITCHBOARD_BENCH_TOKEN_KEY";
/// JSON put in every token's `info` claim (what a user's profile costs the
/// server per connection).
pub const TOKEN_INFO_ENV: &str = "SWITCHBOARD_BENCH_TOKEN_INFO";

/// Mints one token per connection name and keeps it, so that a name that
/// connects again (churn) costs the load generator nothing more.
struct Tokens {
    key: SigningKey,
    info: Option<serde_json::Value>,
    minted: Mutex<HashMap<String, String>>,
}

static TOKENS: OnceLock<Option<Tokens>> = OnceLock::new();

/// Reads the token settings from the environment (worker processes
/// inherit it); call once before connecting.
pub fn init_tokens() -> anyhow::Result<()> {
    let key = match (std::env::var(TOKEN_SECRET_ENV), std::env::var(TOKEN_KEY_ENV)) {
        (Ok(secret), _) => Some(SigningKey::hmac(secret.as_bytes())?),
        (_, Ok(path)) => {
            let pem = std::fs::read(&path).with_context(|| format!("reading {TOKEN_KEY_ENV}={path}"))?;
            Some(SigningKey::from_pem(&pem)?)
        }
        _ => None,
    };
    let info = match std::env::var(TOKEN_INFO_ENV) {
        Ok(info) => Some(serde_json::from_str(&info).with_context(|| format!("{TOKEN_INFO_ENV} is not JSON"))?),
        Err(_) => None,
    };
    let _ = TOKENS.set(key.map(|key| Tokens { key, info, minted: Mutex::default() }));
    Ok(())
}

/// The token for `name`, minted on first use (valid for a day).
fn token_for(tokens: &Tokens, name: &str) -> String {
    let mut minted = tokens.minted.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(token) = minted.get(name) {
        return token.clone();
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut claims = serde_json::json!({"sub": name, "exp": now + 86_400});
    if let Some(info) = &tokens.info {
        claims["info"] = info.clone();
    }
    let token = signing::mint(&claims, &tokens.key).unwrap_or_default();
    minted.insert(name.to_owned(), token.clone());
    token
}

/// The server a scenario talks to.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Switchboard's JSON protocol at `/ws` (`join`, then `send`).
    Switchboard,
    /// The `ws` README's broadcast server: every message goes to every client.
    NodeWs,
    /// The Socket.IO chat: Engine.IO v4 packets, `chat message` events.
    Socketio,
    /// Python `websockets` with `broadcast()`: like node-ws.
    PythonWebsockets,
    /// axum's chat example: the first message is the user name.
    AxumChat,
    /// nats-server's WebSocket listener: the NATS text protocol.
    Nats,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Switchboard => "switchboard",
            Target::NodeWs => "node-ws",
            Target::Socketio => "socketio",
            Target::PythonWebsockets => "python-websockets",
            Target::AxumChat => "axum-chat",
            Target::Nats => "nats",
        }
    }

    /// The request path of a connection named `name` (used where the
    /// server takes the name from the URL; Switchboard in token mode takes
    /// a token for it, see [`init_tokens`]).
    pub fn path(self, name: &str) -> String {
        match self {
            Target::Switchboard => match TOKENS.get().and_then(Option::as_ref) {
                Some(tokens) => format!("/ws?token={}", token_for(tokens, name)),
                None => format!("/ws?name={name}"),
            },
            Target::Socketio => "/socket.io/?EIO=4&transport=websocket".to_owned(),
            Target::AxumChat => "/websocket".to_owned(),
            Target::NodeWs | Target::PythonWebsockets | Target::Nats => "/".to_owned(),
        }
    }

    /// The request path of a Server-Sent Events follower of `room` named
    /// `name` (Switchboard only; `room` as it may stand in a path).
    pub fn follow_path(self, name: &str, room: &str) -> anyhow::Result<String> {
        if self != Target::Switchboard {
            bail!("--sse: only Switchboard serves Server-Sent Events");
        }
        Ok(match TOKENS.get().and_then(Option::as_ref) {
            Some(tokens) => format!("/api/rooms/{room}/events?token={}", token_for(tokens, name)),
            None => format!("/api/rooms/{room}/events?name={name}"),
        })
    }

    /// After the WebSocket handshake: whatever makes `conn` receive what is
    /// published to `room`, done and confirmed.
    pub async fn join(self, conn: &mut WsConn, name: &str, room: &str) -> anyhow::Result<()> {
        match self {
            Target::Switchboard => {
                let join = serde_json::json!({"op": "join", "room": room, "id": 1}).to_string();
                conn.send_text(join.as_bytes()).await?;
                conn.expect(|text| {
                    if memmem::find(text, b"\"re\":1").is_none() {
                        return Ok(None);
                    }
                    if memmem::find(text, b"\"ok\":true").is_none() {
                        bail!("join refused: {}", String::from_utf8_lossy(text));
                    }
                    Ok(Some(()))
                })
                .await
            }
            Target::NodeWs | Target::PythonWebsockets => Ok(()),
            Target::Socketio => {
                conn.expect(|text| Ok(text.starts_with(b"0{").then_some(()))).await?;
                conn.send_text(b"40").await?;
                conn.expect(|text| Ok(text.starts_with(b"40").then_some(()))).await
            }
            Target::AxumChat => {
                conn.send_text(name.as_bytes()).await?;
                let joined = format!("{name} joined.");
                conn.expect(|text| Ok((text == joined.as_bytes()).then_some(()))).await
            }
            Target::Nats => {
                conn.expect(|text| Ok(text.starts_with(b"INFO").then_some(()))).await?;
                let subscribe = format!("CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {room} 1\r\nPING\r\n");
                conn.send_text(subscribe.as_bytes()).await?;
                conn.expect(|text| {
                    if text.starts_with(b"-ERR") {
                        bail!("NATS refused: {}", String::from_utf8_lossy(text).trim());
                    }
                    Ok(memmem::find(text, b"PONG\r\n").map(|_| ()))
                })
                .await
            }
        }
    }

    /// Appends the message that publishes `payload` (a JSON object) to `room`.
    /// `volatile` asks Switchboard not to store it (the peers store nothing).
    pub fn publish(self, out: &mut Vec<u8>, room: &str, payload: &[u8], volatile: bool) {
        match self {
            Target::Switchboard => {
                out.extend_from_slice(b"{\"op\":\"send\",\"room\":\"");
                out.extend_from_slice(room.as_bytes());
                out.extend_from_slice(if volatile { b"\",\"volatile\":true,\"body\":" } else { b"\",\"body\":" });
                out.extend_from_slice(payload);
                out.push(b'}');
            }
            Target::NodeWs | Target::PythonWebsockets | Target::AxumChat => out.extend_from_slice(payload),
            Target::Socketio => {
                out.extend_from_slice(b"42[\"chat message\",");
                out.extend_from_slice(payload);
                out.push(b']');
            }
            Target::Nats => {
                out.extend_from_slice(format!("PUB {room} {}\r\n", payload.len()).as_bytes());
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The answer an application-level keepalive in `text` needs, if any
    /// (Engine.IO's ping `2`, NATS's `PING`). WebSocket pings are answered
    /// by the client itself.
    pub fn keepalive(self, text: &[u8]) -> Option<&'static [u8]> {
        match self {
            Target::Socketio if text == b"2" => Some(b"3"),
            Target::Nats if text.starts_with(b"PING\r\n") || memmem::find(text, b"\r\nPING\r\n").is_some() => {
                Some(b"PONG\r\n")
            }
            _ => None,
        }
    }

    /// Why the server is ending this connection, if `text` says so.
    pub fn closing(self, text: &[u8]) -> Option<String> {
        let closing = match self {
            Target::Switchboard => CLOSE_EVENT.find(text).is_some(),
            Target::Socketio => text == b"1" || text.starts_with(b"41"),
            Target::Nats => text.starts_with(b"-ERR"),
            Target::NodeWs | Target::PythonWebsockets | Target::AxumChat => false,
        };
        closing.then(|| String::from_utf8_lossy(text).trim().to_owned())
    }
}
