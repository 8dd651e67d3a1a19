//! The Switchboard wire protocol, with no IO: everything here works on byte
//! slices and can be fuzzed without a socket.
//!
//! # Layout
//! - [`ws`]: RFC 6455 framing. A server-side decoder that validates every rule
//!   (masking, reserved bits, control frames, fragmentation, UTF-8, size limit)
//!   and an encoder that frames a payload once so many sockets can share it.
//! - [`handshake`]: the pieces of the HTTP/1.1 Upgrade that are not HTTP parsing
//!   (key validation, the accept hash, the extension offer).
//! - [`deflate`]: permessage-deflate (RFC 7692): choosing an offer, compressing
//!   a server message once for every subscriber, inflating a client message
//!   under the size limit.
//! - [`sse`]: Server-Sent Events followers: the request (rooms, resume
//!   position, token) and the event stream's format (ids, events).
//! - [`command`]: client commands (`join`, `send`, ...) parsed from JSON with a
//!   clear error for each way they can be wrong.
//! - [`event`]: server events and replies, serialized straight into a frame.
//! - [`text`]: the human text mode of the raw TCP transport (telnet, nc).
//! - [`codes`]: the wire error codes and WebSocket close codes that clients see.
//!   They are kept apart from any internal error type on purpose.

pub mod codes;
pub mod command;
pub mod deflate;
pub mod event;
pub mod handshake;
pub mod sse;
pub mod text;
pub mod ws;

pub use codes::{CloseCode, ErrorCode};
pub use command::{Command, CommandError, RequestId};
