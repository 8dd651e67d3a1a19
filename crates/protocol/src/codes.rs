//! Wire-visible codes: what a client may branch on. Internal errors map onto
//! these at the edge; nothing else leaks to the wire.

use std::fmt;

/// Error codes carried in `{"ok":false,"code":..}` replies and `error` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame was not valid JSON, or not a JSON object.
    BadJson,
    /// The `op` field names no known command.
    UnknownOp,
    /// A field is missing, has the wrong type, or is out of range.
    BadRequest,
    /// A room name is empty, too long or has control characters.
    BadRoom,
    /// A user name is empty, too long or has characters outside `[A-Za-z0-9_.@-]`.
    BadUser,
    /// The command needs the connection to be a member of the room.
    NotMember,
    /// The message could not be stored; it was not delivered either.
    StorageFailed,
    /// Too many messages wait to be stored; retry later.
    Overloaded,
    /// The server is shutting down and takes no new work.
    ShuttingDown,
    /// A line or datagram over the size limit.
    TooLarge,
    /// A UDP datagram without a valid session (send `hello` first).
    NoSession,
    /// Too many datagrams from one address.
    RateLimited,
}

impl ErrorCode {
    /// The stable string used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadRoom => "bad_room",
            ErrorCode::BadUser => "bad_user",
            ErrorCode::NotMember => "not_member",
            ErrorCode::StorageFailed => "storage_failed",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NoSession => "no_session",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the server sends. 1xxx are RFC 6455; 4xxx are ours.
/// No failure of the server's own closes a connection, so there is no 1011
/// here; a peer's code without a name here is echoed as [`CloseCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: orderly close, echoed when the client closes first.
    Normal,
    /// 1001: the server is shutting down. Reconnect to another node or later.
    GoingAway,
    /// 1002: the peer broke RFC 6455 framing rules. Do not retry unchanged.
    Protocol,
    /// 1007: a text frame or close reason was not valid UTF-8.
    InvalidPayload,
    /// 1009: a message was over the configured size limit.
    TooBig,
    /// 4001: nothing arrived within the idle timeout (pings went unanswered).
    IdleTimeout,
    /// 4008: the outbound queue went over its byte bound. Reconnect and recover.
    SlowConsumer,
    /// Any other code, as received from a peer.
    Other(u16),
}

impl CloseCode {
    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::Protocol => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::TooBig => 1009,
            CloseCode::IdleTimeout => 4001,
            CloseCode::SlowConsumer => 4008,
            CloseCode::Other(code) => code,
        }
    }

    /// The code for a number: a named variant when there is one.
    pub fn from_u16(code: u16) -> CloseCode {
        const NAMED: [CloseCode; 7] = [
            CloseCode::Normal,
            CloseCode::GoingAway,
            CloseCode::Protocol,
            CloseCode::InvalidPayload,
            CloseCode::TooBig,
            CloseCode::IdleTimeout,
            CloseCode::SlowConsumer,
        ];
        NAMED.into_iter().find(|named| named.as_u16() == code).unwrap_or(CloseCode::Other(code))
    }

    /// The short reason text sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "",
            CloseCode::GoingAway => "server shutting down",
            CloseCode::Protocol => "protocol error",
            CloseCode::InvalidPayload => "invalid utf-8",
            CloseCode::TooBig => "message too big",
            CloseCode::IdleTimeout => "idle timeout",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::Other(_) => "",
        }
    }

    /// Whether a peer may legally send this code in a close frame (RFC 6455 7.4).
    pub fn is_valid_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}
