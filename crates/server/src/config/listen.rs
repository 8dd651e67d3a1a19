//! Listener addresses as people write them: `HOST:PORT`, or a bare port,
//! which means that port on 127.0.0.1 (`--http 8080`, `http = 8080`,
//! `SWITCHBOARD_HTTP=8080`). A bare port binds loopback, like the defaults:
//! serving on every interface must be said with an address (`0.0.0.0:8080`).

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

/// What a listener address may look like, for error messages.
pub const EXPECTED: &str = "HOST:PORT (127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080) or a port (8080 means 127.0.0.1:8080)";

/// Parses `HOST:PORT` or a bare port (on 127.0.0.1).
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    text.parse().map_err(|_| format!("invalid address {text:?}: expected {EXPECTED}"))
}

/// `deserialize_with` for a listener address: a string as
/// [`parse_listen_address`] reads it, or a number (a port; figment reads
/// `SWITCHBOARD_HTTP=8080` and TOML's `http = 8080` as one).
pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    deserializer.deserialize_any(ListenVisitor)
}

struct ListenVisitor;

impl Visitor<'_> for ListenVisitor {
    type Value = SocketAddr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<SocketAddr, E> {
        parse_listen_address(text).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, port: u64) -> Result<SocketAddr, E> {
        let port = u16::try_from(port).map_err(|_| E::custom(format!("port {port} is over 65535")))?;
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    fn visit_i64<E: de::Error>(self, port: i64) -> Result<SocketAddr, E> {
        let port = u64::try_from(port).map_err(|_| E::custom(format!("port {port} is negative")))?;
        self.visit_u64(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_on_loopback_and_addresses_are_kept() {
        assert_eq!(parse_listen_address("8080"), Ok(SocketAddr::from(([127, 0, 0, 1], 8080))));
        assert_eq!(parse_listen_address("0.0.0.0:7070"), Ok(SocketAddr::from(([0, 0, 0, 0], 7070))));
        assert_eq!(parse_listen_address("[::1]:9"), Ok("[::1]:9".parse().expect("v6")));
        for bad in ["", "localhost", "70000", ":8080", "1.2.3.4"] {
            let error = parse_listen_address(bad).expect_err(bad);
            assert!(error.contains("a port (8080 means 127.0.0.1:8080)"), "{error}");
        }
    }
}
