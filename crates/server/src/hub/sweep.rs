//! The hub-wide keepalive: one pass over every WebSocket connection per
//! tick (the server's `keepalive` task), instead of a timer per connection.

use super::Hub;
use std::time::Duration;
use switchboard_protocol::event::Framing;
use switchboard_protocol::{ws, CloseCode};

impl Hub {
    /// One keepalive pass over WebSocket connections: pings those silent
    /// for `ping_interval` and closes those silent past `idle_timeout` with
    /// 4001. TCP relies on TCP keepalive and UDP sessions expire on their own.
    pub fn sweep_idle(&self, ping_interval: Duration, idle_timeout: Duration) {
        let now = self.now_ms();
        let ping = ws::encode(ws::OpCode::Ping, b"");
        for conn in self.connections() {
            if conn.transport.framing() != Framing::WebSocket {
                continue;
            }
            if conn.silent_for_ms(now) > idle_timeout.as_millis() as u64 {
                tracing::info!(conn = conn.id, user = %conn.user, "idle timeout, closing with 4001");
                conn.close(CloseCode::IdleTimeout, false);
            } else if conn.ping_due(now, ping_interval.as_millis() as u64) {
                self.queue_frame(&conn, ping.clone());
            }
        }
    }
}
