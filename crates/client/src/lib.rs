//! A small Switchboard client over WebSocket: connect, send commands, read
//! events as JSON values. Used by the tests and the CLI.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use tokio_tungstenite::tungstenite;

/// Client failures. Each message includes its cause's, which is therefore
/// not also returned by `Error::source` (a printed chain names it once).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    WebSocket(tungstenite::Error),
    #[error("server sent invalid JSON: {0}")]
    Json(serde_json::Error),
    #[error("connection closed{}", .0.as_ref().map(|f| format!(" with {} {}", f.code, f.reason)).unwrap_or_default())]
    Closed(Option<CloseFrame<'static>>),
    #[error("timed out after {0:?} waiting for the server")]
    Timeout(Duration),
}

impl From<tungstenite::Error> for ClientError {
    fn from(error: tungstenite::Error) -> Self {
        ClientError::WebSocket(error)
    }
}

impl From<serde_json::Error> for ClientError {
    fn from(error: serde_json::Error) -> Self {
        ClientError::Json(error)
    }
}

/// An open connection to a Switchboard server.
#[derive(Debug)]
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events that arrived while waiting for a reply, in arrival order.
    backlog: VecDeque<Value>,
    /// The `hello` greeting's user and conn.
    pub user: String,
    pub conn: u64,
    /// The whole `hello` event (it also says how many DMs are waiting).
    pub hello: Value,
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8080/ws?name=alice`) and
    /// waits for the `hello`.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        let (socket, _) = tokio_tungstenite::connect_async(url).await?;
        let mut client =
            Client { socket, next_id: 0, backlog: VecDeque::new(), user: String::new(), conn: 0, hello: Value::Null };
        let hello = client.next_event().await?;
        client.user = hello["user"].as_str().unwrap_or_default().to_owned();
        client.conn = hello["conn"].as_u64().unwrap_or_default();
        client.hello = hello;
        Ok(client)
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), ClientError> {
        self.socket.send(Message::text(text.into())).await?;
        Ok(())
    }

    /// Sends `command` with a fresh `id` and returns the reply to it. Events
    /// that arrive before the reply stay queued for [`Client::next_event`].
    pub async fn request(&mut self, mut command: Value) -> Result<Value, ClientError> {
        self.next_id += 1;
        let id = self.next_id;
        command["id"] = json!(id);
        self.send_text(command.to_string()).await?;
        loop {
            let event = self.read_event().await?;
            if event["re"] == json!(id) {
                return Ok(event);
            }
            self.backlog.push_back(event);
        }
    }

    /// Joins `room` and returns the reply.
    pub async fn join(&mut self, room: &str) -> Result<Value, ClientError> {
        self.request(json!({"op": "join", "room": room})).await
    }

    /// Publishes `body` to `room` and returns the reply.
    pub async fn send(&mut self, room: &str, body: Value) -> Result<Value, ClientError> {
        self.request(json!({"op": "send", "room": room, "body": body})).await
    }

    /// The next JSON event (pings are answered by the library).
    pub async fn next_event(&mut self) -> Result<Value, ClientError> {
        match self.backlog.pop_front() {
            Some(event) => Ok(event),
            None => self.read_event().await,
        }
    }

    async fn read_event(&mut self) -> Result<Value, ClientError> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
                Some(Ok(Message::Close(frame))) => return Err(ClientError::Closed(frame)),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => return Err(ClientError::Closed(None)),
            }
        }
    }

    /// Like [`Client::next_event`], failing after `limit`.
    pub async fn next_event_within(&mut self, limit: Duration) -> Result<Value, ClientError> {
        tokio::time::timeout(limit, self.next_event()).await.map_err(|_| ClientError::Timeout(limit))?
    }

    /// Closes politely.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.socket.close(None).await?;
        while let Some(Ok(_)) = self.socket.next().await {}
        Ok(())
    }

    /// The underlying socket, for tests that need raw frames.
    pub fn socket(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.socket
    }
}
