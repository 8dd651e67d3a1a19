//! A socket address packed into 24 bytes instead of `SocketAddr`'s 32, so
//! that every connection's shared state stays in a smaller allocation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// An IPv4 or IPv6 address and port (an IPv6 scope id is kept; flow info,
/// which replies never need, is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedAddr {
    ip: [u8; 16],
    scope_id: u32,
    port: u16,
    v6: bool,
}

impl From<SocketAddr> for PackedAddr {
    fn from(address: SocketAddr) -> Self {
        match address {
            SocketAddr::V4(v4) => {
                PackedAddr { ip: v4.ip().to_ipv6_mapped().octets(), scope_id: 0, port: v4.port(), v6: false }
            }
            SocketAddr::V6(v6) => {
                PackedAddr { ip: v6.ip().octets(), scope_id: v6.scope_id(), port: v6.port(), v6: true }
            }
        }
    }
}

impl From<PackedAddr> for SocketAddr {
    fn from(packed: PackedAddr) -> Self {
        let v6 = Ipv6Addr::from(packed.ip);
        match (packed.v6, v6.to_ipv4_mapped()) {
            (false, Some(v4)) => SocketAddr::new(IpAddr::V4(v4), packed.port),
            (false, None) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), packed.port),
            (true, _) => SocketAddr::V6(SocketAddrV6::new(v6, packed.port, 0, packed.scope_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_packing() {
        for text in ["127.0.0.1:8080", "10.1.2.3:1", "[::1]:7070", "[fe80::1%3]:9", "[::ffff:1.2.3.4]:5"] {
            let address: SocketAddr = text.parse().expect("address");
            assert_eq!(SocketAddr::from(PackedAddr::from(address)), address, "{text}");
        }
        assert_eq!(std::mem::size_of::<PackedAddr>(), 24);
    }
}
