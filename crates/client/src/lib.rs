//! A client for Switchboard, the real-time messaging server: chat rooms,
//! direct messages and presence over WebSocket (`ws://`, `wss://`) or raw
//! TCP JSON lines (`tcp://`, `tls://`), in open mode (a name) or token mode
//! (a JWT). The protocol is docs/PROTOCOL.md in the repository.
//!
//! [`Client`] is what programs use: typed commands that wait for their
//! answer, and one stream of [`Event`]s. When the connection drops it
//! reconnects by itself (exponential backoff with full jitter,
//! [`Backoff`]), rejoins every room from the last message it saw, and
//! resends the `send`s and `dm`s that were not acknowledged: each carries an
//! idempotency key, so the server stores it once. A room whose missed
//! messages could not all be replayed (the server's history no longer
//! reaches back, or was lost) is reported as [`Event::Recovered`] with
//! `recovered: false`.
//!
//! ```no_run
//! use switchboard_client::{Client, Event};
//!
//! # async fn chat() -> Result<(), switchboard_client::Error> {
//! let (client, mut events) = Client::builder("ws://127.0.0.1:8080/ws").name("alice").connect().await?;
//! client.join("lobby").await?;
//! let ack = client.send("lobby", serde_json::json!({"text": "hello"})).await?;
//! println!("stored as message {}", ack.seq);
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Message(message) => println!("[{}] {}: {}", message.room, message.from, message.body),
//!         Event::Reconnecting { delay, .. } => println!("reconnecting in {delay:?}…"),
//!         Event::Recovered(recovery) if !recovery.recovered => println!("some messages were missed for good"),
//!         Event::Closed { reason } => {
//!             println!("closed: {reason}");
//!             break;
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Read the events while commands are waiting for answers (from another
//! task, or with `tokio::select!`): the stream holds a bounded number, and
//! when it is full the client stops reading the connection.
//!
//! [`Connection`] is the protocol bare: one connection, commands and events
//! as JSON values, no reconnects. The server's own tests use it to say
//! exactly what goes over the wire.
//!
//! # Modules
//! - [`wire`]: the commands, events and replies as types.
//! - [`Error`] keeps the server's refusals ([`ServerError`], with the wire
//!   code) apart from connection failures.

mod backoff;
mod client;
mod connection;
mod driver;
mod endpoint;
mod error;
mod link;
pub mod wire;

pub use backoff::{Backoff, Jitter};
pub use client::{Client, ClientBuilder, ConnectionState, Event, Events, Position, Recovery};
pub use connection::Connection;
pub use endpoint::{default_tls, tls_trusting_pem, Credentials, Endpoint, Scheme};
pub use error::{Close, Error, ServerError};
pub use link::Stream;
pub use switchboard_protocol::{CloseCode, ErrorCode};
pub use tokio_tungstenite::tungstenite;
pub use wire::{Ack, DirectMessage, Hello, HistoryPage, Joined, Message, Presence, PresenceChange};
