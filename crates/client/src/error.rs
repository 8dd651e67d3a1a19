//! The client's errors. What the server refused (a wire error code from
//! docs/PROTOCOL.md, [`ServerError`]) is kept apart from what went wrong on
//! the way (connecting, the socket, TLS, a closed connection): a caller
//! branches on the first and retries or reports the second.

use std::fmt;
use std::time::Duration;
use switchboard_protocol::{CloseCode, ErrorCode};

/// A refusal from the server: `{"ok":false,"code":C,"error":TEXT}` or an
/// `error` event. `code` is the wire code; [`ServerError::known`] maps it
/// onto the codes this version knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The wire code, such as `not_member` (a newer server may send codes
    /// this version does not know: they are kept as sent).
    pub code: String,
    /// The server's explanation, for people.
    pub message: String,
}

impl ServerError {
    /// The code, if this version of the protocol knows it.
    pub fn known(&self) -> Option<ErrorCode> {
        ErrorCode::from_wire(&self.code)
    }

    /// Whether the code is `code`.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == code.as_str()
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ServerError {}

/// How the server ended a connection: a WebSocket close frame, or raw
/// TCP's last line `{"ev":"close","code":C,"reason":R}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The close code (docs/PROTOCOL.md, "Close codes").
    pub code: CloseCode,
    pub reason: String,
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code.as_u16())?;
        if !self.reason.is_empty() {
            write!(f, " {}", self.reason)?;
        }
        Ok(())
    }
}

/// Everything a client call can fail with. Each message includes its
/// cause's, which is therefore not also returned by `Error::source` (a
/// printed chain names it once).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the command (or the token, at the handshake).
    #[error("the server refused: {0}")]
    Server(ServerError),
    /// The URL or an option cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Opening a connection failed: resolving, TCP, TLS, or an HTTP answer
    /// other than the upgrade (`status` then says which).
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, status: Option<u16>, reason: String },
    /// The socket failed under an open connection.
    #[error("connection failed: {0}")]
    Io(std::io::Error),
    /// The WebSocket layer failed under an open connection.
    #[error("websocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The server sent something that is not the protocol.
    #[error("server sent invalid JSON: {0}")]
    Json(serde_json::Error),
    /// The server closed the connection (with its close code, if it sent one).
    #[error("connection closed{}", .0.as_ref().map(|close| format!(" with {close}")).unwrap_or_default())]
    Closed(Option<Close>),
    /// A wait ran out.
    #[error("timed out after {0:?} waiting for the server")]
    Timeout(Duration),
    /// The connection dropped before the command was answered. It was not
    /// sent again because running it twice is not safe (only `send` and
    /// `dm`, which carry an idempotency key, are resent): the server may or
    /// may not have run it.
    #[error("the connection dropped before `{op}` was answered; it was not resent (it may or may not have run)")]
    Disconnected { op: &'static str },
    /// The client is reconnecting: the command was not sent (`send` and
    /// `dm` wait for the connection instead).
    #[error("not connected (reconnecting): `{op}` was not sent")]
    NotConnected { op: &'static str },
    /// A `send` or `dm` was not acknowledged before the connection dropped,
    /// and reconnecting took longer than the server remembers idempotency
    /// keys: resending could store it twice, so it was not resent.
    #[error(
        "`{op}` with idempotency key {key} was not acknowledged within the resend window; it may or may not be stored"
    )]
    Unacknowledged { op: &'static str, key: String },
    /// The client stopped: [`crate::Client::close`] was called, it gave up
    /// reconnecting, or the server refused it for good.
    #[error("the client is closed")]
    ClientClosed,
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Io(error)
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Json(error)
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket(Box::new(error))
    }
}

impl From<ServerError> for Error {
    fn from(error: ServerError) -> Self {
        Error::Server(error)
    }
}

impl Error {
    /// The server's refusal, if this is one.
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            Error::Server(refusal) => Some(refusal),
            _ => None,
        }
    }

    /// Whether connecting again cannot help: the server refused the
    /// credentials (a token error, a name in token mode, HTTP 401 or 403,
    /// close 4003) or the configuration is wrong.
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::Config(_) => true,
            Error::Server(refusal) => refusal.code.starts_with("token_") || refusal.is(ErrorCode::NameNotAllowed),
            Error::Connect { status: Some(status), .. } => matches!(status, 400 | 401 | 403 | 404 | 426),
            Error::Closed(Some(close)) => close.code == CloseCode::Unauthorized,
            _ => false,
        }
    }
}
