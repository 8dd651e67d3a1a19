//! Integration tests: a real server on port 0, real sockets, real clients.
//! One test binary with shared helpers in `support`.

mod abuse;
mod abuse_inbox;
mod abuse_ip;
mod abuse_raw;
mod api_access;
mod api_connections;
mod api_health;
mod api_openapi;
mod api_publish;
mod api_read;
mod api_support;
mod auth;
mod auth_raw;
mod chat;
mod closes;
mod coalesce;
mod codes;
mod compression;
mod faulty;
mod history;
mod idempotent;
mod lifecycle;
mod limits;
mod newcomer;
mod raw;
mod registry;
mod scrape;
mod shutdown;
mod sse;
mod sse_auth;
mod sse_client;
mod support;
mod text;
mod tls;
