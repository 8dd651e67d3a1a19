//! [`Connection`]: one connection and nothing more, with commands and
//! events as JSON values. No reconnects, no typed events: the server's
//! tests use it to say exactly what goes over the wire, and programs that
//! want the protocol bare can too. [`crate::Client`] is the one that
//! reconnects.

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::link::{Link, Stream};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;

/// An open connection to a Switchboard server.
#[derive(Debug)]
pub struct Connection {
    link: Link,
    next_id: u64,
    /// Events that arrived while waiting for a reply, in arrival order.
    backlog: VecDeque<Value>,
    /// The `hello` greeting's user and conn.
    pub user: String,
    pub conn: u64,
    /// The whole `hello` event (it also says how many DMs are waiting).
    pub hello: Value,
}

impl Connection {
    /// Connects to `url` (`ws://127.0.0.1:8080/ws?name=alice`,
    /// `tcp://127.0.0.1:7070?name=alice`, `wss://`, `tls://`) and waits for
    /// the `hello`.
    pub async fn connect(url: &str) -> Result<Connection, Error> {
        Connection::open(&Endpoint::parse(url)?).await
    }

    /// Connects to `endpoint` and waits for the `hello`.
    pub async fn open(endpoint: &Endpoint) -> Result<Connection, Error> {
        let (link, hello) = Link::open(endpoint).await?;
        let user = hello["user"].as_str().unwrap_or_default().to_owned();
        let conn = hello["conn"].as_u64().unwrap_or_default();
        Ok(Connection { link, next_id: 0, backlog: VecDeque::new(), user, conn, hello })
    }

    /// Sends a raw text (a WebSocket text message, or a line over TCP).
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), Error> {
        self.link.send(text.into()).await
    }

    /// Sends `command` with a fresh `id` and returns the reply to it, failed
    /// or not. Events that arrive before the reply stay queued for
    /// [`Connection::next_event`].
    pub async fn request(&mut self, mut command: Value) -> Result<Value, Error> {
        self.next_id += 1;
        let id = self.next_id;
        command["id"] = json!(id);
        self.send_text(command.to_string()).await?;
        loop {
            let event = self.link.recv().await?;
            if event["re"] == json!(id) {
                return Ok(event);
            }
            self.backlog.push_back(event);
        }
    }

    /// Joins `room` and returns the reply.
    pub async fn join(&mut self, room: &str) -> Result<Value, Error> {
        self.request(json!({"op": "join", "room": room})).await
    }

    /// Publishes `body` to `room` and returns the reply.
    pub async fn send(&mut self, room: &str, body: Value) -> Result<Value, Error> {
        self.request(json!({"op": "send", "room": room, "body": body})).await
    }

    /// The next JSON event or reply (WebSocket pings are answered by the library).
    pub async fn next_event(&mut self) -> Result<Value, Error> {
        match self.backlog.pop_front() {
            Some(event) => Ok(event),
            None => self.link.recv().await,
        }
    }

    /// Like [`Connection::next_event`], failing after `limit`.
    pub async fn next_event_within(&mut self, limit: Duration) -> Result<Value, Error> {
        tokio::time::timeout(limit, self.next_event()).await.map_err(|_| Error::Timeout(limit))?
    }

    /// Closes politely.
    pub async fn close(mut self) -> Result<(), Error> {
        self.link.close().await
    }

    /// The WebSocket underneath, for tests that need raw frames (`None`
    /// over raw TCP).
    pub fn socket(&mut self) -> Option<&mut WebSocketStream<Stream>> {
        match &mut self.link {
            Link::WebSocket(socket) => Some(socket),
            Link::Lines(_) => None,
        }
    }
}
