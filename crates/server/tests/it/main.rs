//! Integration tests: a real server on port 0, real sockets, real clients.
//! One test binary with shared helpers in `support`.

mod abuse;
mod abuse_inbox;
mod abuse_ip;
mod abuse_raw;
mod auth;
mod auth_raw;
mod chat;
mod closes;
mod coalesce;
mod codes;
mod compression;
mod faulty;
mod history;
mod lifecycle;
mod limits;
mod raw;
mod registry;
mod shutdown;
mod sse;
mod sse_auth;
mod sse_client;
mod support;
mod text;
mod tls;
