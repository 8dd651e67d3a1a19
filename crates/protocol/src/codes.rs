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
    /// Too many commands, bytes or datagrams: slow down.
    RateLimited,
    /// Token mode: no token was presented (or a name was, instead of one).
    TokenRequired,
    /// The token is not a JWT (three base64url parts of JSON).
    TokenMalformed,
    /// The token's signature does not verify with any configured key, or its
    /// algorithm does not fit the key.
    TokenInvalidSignature,
    /// The token's `exp` has passed.
    TokenExpired,
    /// The token's `nbf` or `iat` lies in the future.
    TokenNotYetValid,
    /// The token's `aud` is not `auth.jwt_audience`.
    TokenWrongAudience,
    /// The token's `iss` is not `auth.jwt_issuer`.
    TokenWrongIssuer,
    /// A claim is missing or invalid (`sub`, `exp`, `info`, `rooms`).
    TokenInvalidClaims,
    /// A refreshed token names another user than the connection's.
    TokenUserMismatch,
    /// Token mode: names come from tokens, not from `?name=`, `/nick` or `hello`.
    NameNotAllowed,
    /// The token does not allow this command in this room.
    Forbidden,
    /// A browser page from an origin `auth.allowed_origins` does not list.
    OriginNotAllowed,
    /// The HTTP API needs `Authorization: Bearer <API key>`.
    ApiKeyRequired,
    /// The presented API key is not one of `auth.api_keys`.
    ApiKeyInvalid,
    /// HTTP (404): no route has this path.
    NotFound,
    /// HTTP (405): the path exists but not with this method (`Allow` lists those it has).
    MethodNotAllowed,
    /// HTTP (415): a request body that is not `application/json`.
    UnsupportedMediaType,
    /// HTTP (503 from `/readyz`): the server cannot take work (storage not writable, shutting down).
    NotReady,
    /// A cluster node cannot reach Redis, so the message was not stored, or could not confirm it
    /// was stored as configured, so it may have been: retry with the same idempotency key (HTTP 503).
    Unavailable,
}

impl ErrorCode {
    /// Every code, in the order of docs/PROTOCOL.md's table (a test checks
    /// the two against each other).
    pub const ALL: [ErrorCode; 31] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownOp,
        ErrorCode::BadRequest,
        ErrorCode::BadRoom,
        ErrorCode::BadUser,
        ErrorCode::NotMember,
        ErrorCode::StorageFailed,
        ErrorCode::Overloaded,
        ErrorCode::ShuttingDown,
        ErrorCode::TooLarge,
        ErrorCode::NoSession,
        ErrorCode::RateLimited,
        ErrorCode::Forbidden,
        ErrorCode::TokenRequired,
        ErrorCode::NameNotAllowed,
        ErrorCode::TokenMalformed,
        ErrorCode::TokenInvalidSignature,
        ErrorCode::TokenExpired,
        ErrorCode::TokenNotYetValid,
        ErrorCode::TokenWrongAudience,
        ErrorCode::TokenWrongIssuer,
        ErrorCode::TokenInvalidClaims,
        ErrorCode::TokenUserMismatch,
        ErrorCode::OriginNotAllowed,
        ErrorCode::ApiKeyRequired,
        ErrorCode::ApiKeyInvalid,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::NotReady,
        ErrorCode::Unavailable,
    ];

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
            ErrorCode::TokenRequired => "token_required",
            ErrorCode::TokenMalformed => "token_malformed",
            ErrorCode::TokenInvalidSignature => "token_invalid_signature",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenNotYetValid => "token_not_yet_valid",
            ErrorCode::TokenWrongAudience => "token_wrong_audience",
            ErrorCode::TokenWrongIssuer => "token_wrong_issuer",
            ErrorCode::TokenInvalidClaims => "token_invalid_claims",
            ErrorCode::TokenUserMismatch => "token_user_mismatch",
            ErrorCode::NameNotAllowed => "name_not_allowed",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::ApiKeyRequired => "api_key_required",
            ErrorCode::ApiKeyInvalid => "api_key_invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The code a wire string names, for clients reading replies; `None`
    /// for a code this version does not know (a newer server's).
    pub fn from_wire(code: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|known| known.as_str() == code)
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
    /// 1008: the client broke a limit of the server's policy and kept on
    /// (rates, unfinished messages, silence before the first line, pings
    /// while not reading). Reconnect later and slow down.
    PolicyViolation,
    /// 1009: a message was over the configured size limit.
    TooBig,
    /// 4001: nothing arrived within the idle timeout (pings went unanswered).
    IdleTimeout,
    /// 4003: raw TCP or UDP: the first command did not authenticate.
    Unauthorized,
    /// 4005: the connection's token expired and was not refreshed.
    TokenExpired,
    /// 4008: the outbound queue went over its byte bound. Reconnect and recover.
    SlowConsumer,
    /// 4010: an operator closed the connection (`DELETE /api/connections/{id}`);
    /// the close carries their reason when they gave one.
    Kicked,
    /// 4012: a cluster's Redis lost a room's history (or the user's inbox):
    /// reconnect and rejoin with `since`, which answers `recovered: false`.
    HistoryReset,
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
            CloseCode::PolicyViolation => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::IdleTimeout => 4001,
            CloseCode::Unauthorized => 4003,
            CloseCode::TokenExpired => 4005,
            CloseCode::SlowConsumer => 4008,
            CloseCode::Kicked => 4010,
            CloseCode::HistoryReset => 4012,
            CloseCode::Other(code) => code,
        }
    }

    /// Every named code (all but [`CloseCode::Other`]).
    pub const NAMED: [CloseCode; 12] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::Protocol,
        CloseCode::InvalidPayload,
        CloseCode::PolicyViolation,
        CloseCode::TooBig,
        CloseCode::IdleTimeout,
        CloseCode::Unauthorized,
        CloseCode::TokenExpired,
        CloseCode::SlowConsumer,
        CloseCode::Kicked,
        CloseCode::HistoryReset,
    ];

    /// The code for a number: a named variant when there is one.
    pub fn from_u16(code: u16) -> CloseCode {
        Self::NAMED.into_iter().find(|named| named.as_u16() == code).unwrap_or(CloseCode::Other(code))
    }

    /// The short reason text sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "",
            CloseCode::GoingAway => "server shutting down",
            CloseCode::Protocol => "protocol error",
            CloseCode::InvalidPayload => "invalid utf-8",
            CloseCode::PolicyViolation => "policy violation",
            CloseCode::TooBig => "message too big",
            CloseCode::IdleTimeout => "idle timeout",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::TokenExpired => "token expired",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::Kicked => "kicked by an operator",
            CloseCode::HistoryReset => "history lost: rejoin with since",
            CloseCode::Other(_) => "",
        }
    }

    /// Whether a peer may legally send this code in a close frame (RFC 6455 7.4).
    pub fn is_valid_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A variant added to either enum fails to compile here until it is
    /// given a place in `ALL` or `NAMED`, which the registry of tested codes
    /// (crates/server/tests/it/registry.rs) compares with docs/PROTOCOL.md.
    #[test]
    fn every_variant_is_listed() {
        let error_index = |code: ErrorCode| match code {
            ErrorCode::BadJson => 0,
            ErrorCode::UnknownOp => 1,
            ErrorCode::BadRequest => 2,
            ErrorCode::BadRoom => 3,
            ErrorCode::BadUser => 4,
            ErrorCode::NotMember => 5,
            ErrorCode::StorageFailed => 6,
            ErrorCode::Overloaded => 7,
            ErrorCode::ShuttingDown => 8,
            ErrorCode::TooLarge => 9,
            ErrorCode::NoSession => 10,
            ErrorCode::RateLimited => 11,
            ErrorCode::Forbidden => 12,
            ErrorCode::TokenRequired => 13,
            ErrorCode::NameNotAllowed => 14,
            ErrorCode::TokenMalformed => 15,
            ErrorCode::TokenInvalidSignature => 16,
            ErrorCode::TokenExpired => 17,
            ErrorCode::TokenNotYetValid => 18,
            ErrorCode::TokenWrongAudience => 19,
            ErrorCode::TokenWrongIssuer => 20,
            ErrorCode::TokenInvalidClaims => 21,
            ErrorCode::TokenUserMismatch => 22,
            ErrorCode::OriginNotAllowed => 23,
            ErrorCode::ApiKeyRequired => 24,
            ErrorCode::ApiKeyInvalid => 25,
            ErrorCode::NotFound => 26,
            ErrorCode::MethodNotAllowed => 27,
            ErrorCode::UnsupportedMediaType => 28,
            ErrorCode::NotReady => 29,
            ErrorCode::Unavailable => 30,
        };
        for (index, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(error_index(code), index, "{code}");
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        }
        let close_index = |code: CloseCode| match code {
            CloseCode::Normal => 0,
            CloseCode::GoingAway => 1,
            CloseCode::Protocol => 2,
            CloseCode::InvalidPayload => 3,
            CloseCode::PolicyViolation => 4,
            CloseCode::TooBig => 5,
            CloseCode::IdleTimeout => 6,
            CloseCode::Unauthorized => 7,
            CloseCode::TokenExpired => 8,
            CloseCode::SlowConsumer => 9,
            CloseCode::Kicked => 10,
            CloseCode::HistoryReset => 11,
            CloseCode::Other(_) => usize::MAX,
        };
        for (index, code) in CloseCode::NAMED.into_iter().enumerate() {
            assert_eq!(close_index(code), index, "{code:?}");
            assert_eq!(CloseCode::from_u16(code.as_u16()), code);
        }
    }
}
