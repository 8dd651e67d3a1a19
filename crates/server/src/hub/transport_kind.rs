//! What the hub knows of a connection's transport: its number and the
//! transport it arrived on, with the label metrics and logs use and the
//! framing its events are queued in.

use switchboard_protocol::event::Framing;

/// Server-wide unique connection number, shown to clients as `conn`.
pub type ConnId = u64;

/// The transport a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/ws`: the JSON protocol over WebSocket.
    WebSocket,
    /// `/ws/echo`: every message echoed back, no protocol.
    Echo,
    /// Raw TCP, one JSON value per line.
    TcpJson,
    /// Raw TCP for people: typed commands in, readable lines out.
    TcpText,
    /// UDP, one JSON command or event per datagram.
    Udp,
    /// A Server-Sent Events follower: queued as JSON lines, written as
    /// events (`transport::sse`). It sends no commands.
    Sse,
}

impl Transport {
    /// Every transport, in the order `/api/stats` lists them.
    pub const ALL: [Transport; 6] =
        [Transport::WebSocket, Transport::Sse, Transport::TcpJson, Transport::TcpText, Transport::Udp, Transport::Echo];

    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Echo => "echo",
            Transport::TcpJson => "tcp_json",
            Transport::TcpText => "tcp_text",
            Transport::Udp => "udp",
            Transport::Sse => "sse",
        }
    }

    /// How events are framed for this transport. Text mode receives JSON
    /// lines that the hub renders for people before queueing.
    pub fn framing(self) -> Framing {
        match self {
            Transport::WebSocket | Transport::Echo => Framing::WebSocket,
            Transport::TcpJson | Transport::TcpText | Transport::Sse => Framing::Line,
            Transport::Udp => Framing::Datagram,
        }
    }
}
