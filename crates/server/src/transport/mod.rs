//! Transports: how bytes reach the hub. Each owns its sockets and framing
//! and hands complete commands to a [`crate::session::Session`].

pub(crate) mod http;
pub mod websocket;
