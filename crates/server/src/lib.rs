//! The Switchboard server as a library: `run(config, listeners, shutdown)`,
//! or `run_with_backend` over a storage backend of the caller's.
//!
//! # Layout
//! - [`config`]: the configuration and its layered loading.
//! - [`auth`]: identity: verifying tokens, room permissions, token expiry,
//!   API keys and allowed origins.
//! - [`policy`]: what SIGHUP may change while serving, swapped in whole.
//! - [`guard`]: abuse limits per connection and per client address.
//! - [`server`]: [`run`], the accept loop, admission and shutdown.
//! - [`transport`]: how bytes arrive: the front door of the HTTP port,
//!   hyper for plain HTTP, and the connection driver of WebSocket and raw TCP.
//! - [`api`]: the HTTP API (axum): publish, history, presence, health,
//!   metrics and its OpenAPI document.
//! - [`web`]: the chat page at `/` and the dashboard at `/dashboard`
//!   (HTML, CSS and JavaScript embedded in the binary).
//! - [`session`]: one client's protocol state; commands in, hub calls out.
//! - [`hub`]: rooms, presence, users and connections; routing and fan-out.
//! - [`broker`]: the seam that orders, stores and carries stored messages
//!   (`seq`, history, delivery to every node with members); the local
//!   broker over [`store`].
//! - [`cluster`]: the Redis engine of a cluster (scripts, keys, the
//!   subscriber, presence in Redis), behind `broker::cluster`.
//! - [`store`]: room histories and DM inboxes (SQLite or memory), the
//!   writer thread with group commit, and retention.
//! - [`metrics`]: counters and gauges for `/metrics`.
//! - [`limits`]: the open-files limit and the connection limit it implies.
//! - [`trim`]: returns the heap's free pages to the system after a burst.
//! - [`tls`]: the certificate and key, and the rustls configurations that
//!   present the one in force.
//!
//! One message's path: socket → `transport::websocket` (decode) →
//! `session` (parse command) → `hub::Hub::publish` (frame once, queue the
//! same `Bytes` for every member) → each member's `transport::websocket`
//! task (one vectored write) → socket. `docs/ARCHITECTURE.md` draws it.

pub mod api;
pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod guard;
pub mod hub;
pub mod idempotency;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod session;
pub mod store;
pub mod tls;
pub mod transport;
pub mod trim;
mod util;
pub mod web;

pub use config::Config;
pub use server::{run, run_with_backend, run_with_reload, Listeners, ServerError};
