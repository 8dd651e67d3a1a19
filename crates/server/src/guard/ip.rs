//! Per-address limits: how many connections one client address holds
//! (WebSocket, raw TCP and UDP sessions together) and how many new ones it
//! may open per second. Addresses in `limits.exempt_networks` (loopback by
//! default) are not counted at all, so local benchmarks cost nothing here.
//!
//! IPv6 clients are counted per /64, the block one host usually gets: a
//! per-address count would let a single host take every slot.
//!
//! The table holds addresses with open connections and, for a second or
//! so, those that connected recently. It is bounded: past
//! [`MAX_TRACKED`] entries the idle ones are forgotten.

use super::proxy::canonical;
use crate::util::lock;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Entries past which idle addresses are forgotten.
const MAX_TRACKED: usize = 65_536;
/// Thousandths of a handshake, the unit of the handshake bucket.
const MILLI: u64 = 1000;

/// The per-address limits in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRules {
    /// Open connections per address (0: no limit).
    pub connections: u32,
    /// New connections per second per address (0: no limit) and at once.
    pub handshakes_per_second: u32,
    pub handshakes_burst: u32,
    /// Addresses not limited.
    pub exempt: Vec<IpNet>,
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpRefusal {
    #[error("too many connections from your address")]
    Connections,
    #[error("too many new connections from your address; retry in a second")]
    Handshakes,
}

impl IpRefusal {
    /// What the client is told (the same as `Display`, but `'static`).
    pub fn text(self) -> &'static str {
        match self {
            IpRefusal::Connections => "too many connections from your address",
            IpRefusal::Handshakes => "too many new connections from your address; retry in a second",
        }
    }
}

#[derive(Debug)]
struct Entry {
    connections: u32,
    milli_tokens: u64,
    stamp_ms: u64,
}

/// Open connections and handshake buckets per client address.
#[derive(Debug, Default)]
pub struct IpTable {
    entries: Mutex<HashMap<IpAddr, Entry>>,
    /// Entries in the table: releasing skips the lock while it is empty.
    tracked: AtomicUsize,
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

impl IpTable {
    /// Admits one new connection from `ip` at `now_ms` (the hub's clock):
    /// takes a handshake token and counts the connection. `Ok(true)` when
    /// counted (release it with [`IpTable::release`]), `Ok(false)` when the
    /// address is exempt.
    pub fn admit(&self, ip: IpAddr, rules: &IpRules, now_ms: u64) -> Result<bool, IpRefusal> {
        let ip = key(ip);
        if rules.exempt.iter().any(|net| net.contains(&ip))
            || (rules.connections == 0 && rules.handshakes_per_second == 0)
        {
            return Ok(false);
        }
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_TRACKED && !entries.contains_key(&ip) {
            self.forget_idle(&mut entries, rules, now_ms);
        }
        let cap = u64::from(rules.handshakes_burst) * MILLI;
        let entry = entries.entry(ip).or_insert(Entry { connections: 0, milli_tokens: cap, stamp_ms: now_ms });
        let elapsed = now_ms.saturating_sub(entry.stamp_ms);
        entry.milli_tokens = (entry.milli_tokens + elapsed * u64::from(rules.handshakes_per_second)).min(cap);
        entry.stamp_ms = now_ms;
        let refused = if rules.connections > 0 && entry.connections >= rules.connections {
            Some(IpRefusal::Connections)
        } else if rules.handshakes_per_second > 0 && entry.milli_tokens < MILLI {
            Some(IpRefusal::Handshakes)
        } else {
            None
        };
        if let Some(refusal) = refused {
            self.tracked.store(entries.len(), Ordering::Relaxed);
            return Err(refusal);
        }
        if rules.handshakes_per_second > 0 {
            entry.milli_tokens -= MILLI;
        }
        entry.connections += 1;
        self.tracked.store(entries.len(), Ordering::Relaxed);
        Ok(true)
    }

    /// A connection from `ip` ended. Harmless for an address that was
    /// never counted (exempt when it connected): nothing is below zero.
    pub fn release(&self, ip: IpAddr) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get_mut(&key(ip)) {
            entry.connections = entry.connections.saturating_sub(1);
        }
    }

    /// How many connections `ip` has counted (for tests and the table).
    pub fn connections(&self, ip: IpAddr) -> u32 {
        lock(&self.entries).get(&key(ip)).map_or(0, |entry| entry.connections)
    }

    /// Drops entries with no connection whose bucket refilled; if that is
    /// not enough, every entry with no connection.
    fn forget_idle(&self, entries: &mut HashMap<IpAddr, Entry>, rules: &IpRules, now_ms: u64) {
        let refill_ms = match rules.handshakes_per_second {
            0 => 0,
            rate => u64::from(rules.handshakes_burst) * 1000 / u64::from(rate),
        };
        entries.retain(|_, entry| entry.connections > 0 || now_ms.saturating_sub(entry.stamp_ms) < refill_ms);
        if entries.len() >= MAX_TRACKED {
            entries.retain(|_, entry| entry.connections > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> IpRules {
        IpRules {
            connections: 2,
            handshakes_per_second: 10,
            handshakes_burst: 3,
            exempt: vec!["127.0.0.0/8".parse().expect("net")],
        }
    }

    #[test]
    fn connections_are_counted_and_released() {
        let table = IpTable::default();
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        assert_eq!(table.admit(ip, &rules(), 0), Ok(true));
        assert_eq!(table.admit(ip, &rules(), 0), Ok(true));
        assert_eq!(table.admit(ip, &rules(), 0), Err(IpRefusal::Connections));
        table.release(ip);
        assert_eq!(table.connections(ip), 1);
        assert_eq!(table.admit(ip, &rules(), 0), Ok(true));
        let other: IpAddr = "203.0.113.8".parse().expect("ip");
        assert_eq!(table.admit(other, &rules(), 0), Ok(true), "another address has its own count");
    }

    #[test]
    fn handshakes_have_a_rate_and_loopback_is_exempt() {
        let table = IpTable::default();
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        let rules = IpRules { connections: 0, ..rules() };
        for _ in 0..3 {
            assert_eq!(table.admit(ip, &rules, 1_000), Ok(true));
        }
        assert_eq!(table.admit(ip, &rules, 1_000), Err(IpRefusal::Handshakes));
        assert_eq!(table.admit(ip, &rules, 1_100), Ok(true), "10 a second: one more after 100 ms");
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        for _ in 0..100 {
            assert_eq!(table.admit(local, &rules, 1_000), Ok(false));
        }
        table.release(local);
    }

    #[test]
    fn ipv6_hosts_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let table = IpTable::default();
        let rules = IpRules { connections: 1, ..rules() };
        let first: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert_eq!(table.admit(first, &rules, 0), Ok(true));
        assert_eq!(table.admit(same_64, &rules, 0), Err(IpRefusal::Connections));
        let v4: IpAddr = "192.0.2.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(table.admit(v4, &rules, 0), Ok(true));
        assert_eq!(table.admit(mapped, &rules, 0), Err(IpRefusal::Connections));
        let loopback_mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        assert_eq!(table.admit(loopback_mapped, &rules, 0), Ok(false));
    }
}
