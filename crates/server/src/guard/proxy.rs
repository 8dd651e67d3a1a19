//! Who the client is behind a proxy. A connection from an address in
//! `trusted_proxies` may name its client in `X-Forwarded-For` or
//! `Forwarded` (RFC 7239); from anyone else those headers are ignored,
//! since any client can send them.
//!
//! The list is read from the right (the hop nearest to us) and trusted
//! proxies are skipped: the first address that is not one of ours is the
//! client. A hop that cannot be read (`unknown`, an obfuscated name, junk)
//! stops the walk, and the nearest trusted proxy stays the client: a client
//! cannot hide behind a value we cannot check.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use switchboard_protocol::handshake::Forwarded;

/// The client's address: the forwarded one when `peer` is a trusted proxy
/// and the header names one, otherwise `peer` itself.
pub fn client_address(peer: SocketAddr, forwarded: Option<&Forwarded>, trusted: &[IpNet]) -> SocketAddr {
    if !is_trusted(peer.ip(), trusted) {
        return peer;
    }
    let hops: Vec<Option<SocketAddr>> = match forwarded {
        None => return peer,
        Some(Forwarded::XForwardedFor(list)) => list.split(',').map(parse_hop).collect(),
        Some(Forwarded::Forwarded(list)) => {
            list.split(',').map(|element| for_value(element).and_then(parse_hop)).collect()
        }
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(hop) = hop else { break };
        client = hop;
        if !is_trusted(hop.ip(), trusted) {
            break;
        }
    }
    client
}

/// Whether `ip` is one of `trusted`.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `for=` parameter of one `Forwarded` element, unquoted.
fn for_value(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"'))
    })
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<SocketAddr> {
    let hop = hop.trim();
    if let Ok(address) = hop.parse::<SocketAddr>() {
        return Some(SocketAddr::new(canonical(address.ip()), address.port()));
    }
    let bare = hop.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(hop);
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(canonical(ip), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|net| net.parse().expect("net")).collect()
    }

    fn xff(value: &str) -> Option<Forwarded> {
        Some(Forwarded::XForwardedFor(value.into()))
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().expect("addr");
        let header = xff("203.0.113.7");
        assert_eq!(client_address(peer, header.as_ref(), &[]), peer, "no trusted proxies");
        assert_eq!(client_address(peer, header.as_ref(), &nets(&["192.168.0.0/16"])), peer);
        let client = client_address(peer, header.as_ref(), &nets(&["10.0.0.0/8"]));
        assert_eq!(client, "203.0.113.7:0".parse().expect("addr"));
        assert_eq!(client_address(peer, None, &nets(&["10.0.0.0/8"])), peer, "no header");
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().expect("addr");
        let trusted = nets(&["10.0.0.0/8"]);
        // A client cannot pick its address by prepending to the list.
        let spoofed = xff("1.1.1.1, 203.0.113.7, 10.0.0.9");
        assert_eq!(client_address(peer, spoofed.as_ref(), &trusted).ip().to_string(), "203.0.113.7");
        let all_ours = xff("10.1.1.1, 10.0.0.9");
        assert_eq!(client_address(peer, all_ours.as_ref(), &trusted).ip().to_string(), "10.1.1.1");
        let junk = xff("203.0.113.7, unknown");
        assert_eq!(client_address(peer, junk.as_ref(), &trusted), peer, "an unreadable hop stops the walk");
    }

    #[test]
    fn rfc_7239_values_with_ports_quotes_and_brackets() {
        let peer: SocketAddr = "[::1]:4000".parse().expect("addr");
        let trusted = nets(&["::1/128"]);
        let header = Forwarded::Forwarded("for=192.0.2.43:47011;proto=https, For=\"[2001:db8:cafe::17]:4711\"".into());
        let client = client_address(peer, Some(&header), &trusted);
        assert_eq!(client, "[2001:db8:cafe::17]:4711".parse().expect("addr"));
        let mapped = xff("::ffff:198.51.100.1");
        assert_eq!(client_address(peer, mapped.as_ref(), &trusted).ip().to_string(), "198.51.100.1");
        let hidden = Forwarded::Forwarded("for=_hidden".into());
        assert_eq!(client_address(peer, Some(&hidden), &trusted), peer);
    }
}
