//! Tokens run out: a connection is warned `auth.expiry_warning` before its
//! token's `exp` (`{"ev":"token_expiring"}`) and closed with 4005 at `exp`
//! unless it sent a fresh token (`{"op":"auth"}`) meanwhile.
//!
//! One task serves every connection: a map from second to the connections
//! due then, so an idle connection costs one weak pointer here and no timer
//! of its own. A refresh changes only the connection's profile; the entry
//! already armed finds the later `exp` when it fires and re-arms itself, so
//! each connection has at most one entry. Entries of connections that
//! closed early are swept out every [`SWEEP_EVERY`].

use crate::hub::conn::Conn;
use crate::hub::Hub;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use switchboard_protocol::event::{self, Encoded};
use switchboard_protocol::CloseCode;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often entries of closed connections are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Connections by the second their next expiry step is due: the warning
/// (due before `exp`) or the close (due at `exp`); which one is read from
/// the connection's profile when it fires, so an entry is one pointer.
#[derive(Debug, Default)]
pub struct Expiries {
    due: Mutex<BTreeMap<u64, Vec<Weak<Conn>>>>,
    /// Wakes the task when an entry earlier than all others arrives.
    earlier: Notify,
}

impl Expiries {
    /// Starts watching `conn`, whose token expires at `expires_at` (Unix
    /// seconds), warning it `warning` before.
    pub fn watch(&self, conn: &Arc<Conn>, expires_at: u64, warning: Duration, now: u64) {
        // A token already inside its warning period is warned at once.
        self.arm(Arc::downgrade(conn), next_due(expires_at, warning, now));
    }

    fn arm(&self, conn: Weak<Conn>, at: u64) {
        let mut due = crate::util::lock(&self.due);
        let earliest = due.keys().next().is_none_or(|&first| at < first);
        due.entry(at).or_default().push(conn);
        drop(due);
        if earliest {
            self.earlier.notify_one();
        }
    }

    /// Takes every entry due at or before `now`.
    fn take_due(&self, now: u64) -> Vec<Weak<Conn>> {
        let mut due = crate::util::lock(&self.due);
        let later = due.split_off(&(now + 1));
        std::mem::replace(&mut *due, later).into_values().flatten().collect()
    }

    /// The second of the earliest entry.
    fn next_due(&self) -> Option<u64> {
        crate::util::lock(&self.due).keys().next().copied()
    }

    /// Removes entries whose connection is gone.
    fn sweep(&self) {
        let mut due = crate::util::lock(&self.due);
        due.retain(|_, entries| {
            entries.retain(|conn| conn.strong_count() > 0);
            !entries.is_empty()
        });
    }

    /// Watched connections, closed ones not yet swept included.
    pub fn len(&self) -> usize {
        crate::util::lock(&self.due).values().map(Vec::len).sum()
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Warns and closes connections as their tokens run out, until `stop`.
    pub async fn run(self: Arc<Self>, hub: Weak<Hub>, stop: CancellationToken) {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wait = match self.next_due() {
                Some(at) => until_second(at),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.earlier.notified() => continue,
                _ = sweep.tick() => { self.sweep(); continue; }
                () = stop.cancelled() => return,
            }
            let Some(hub) = hub.upgrade() else { return };
            let now = super::unix_now();
            for conn in self.take_due(now) {
                if let Some(conn) = conn.upgrade() {
                    self.fire(&hub, &conn, now);
                }
            }
        }
    }

    /// Takes the step due for `conn`: the close at `exp`; before it, the
    /// warning (then the close is armed); before the warning's time (a
    /// refresh moved `exp`), nothing but re-arming.
    fn fire(&self, hub: &Hub, conn: &Arc<Conn>, now: u64) {
        let Some(expires_at) = conn.profile().and_then(|profile| profile.expires_at()) else { return };
        if conn.is_closing() {
            return;
        }
        if now >= expires_at {
            tracing::info!(conn = conn.id, user = %conn.user, "token expired, closing with 4005");
            conn.close(CloseCode::TokenExpired, false);
            return;
        }
        let warning = hub.policy().auth.as_ref().map_or(Duration::ZERO, |auth| auth.expiry_warning);
        let due = next_due(expires_at, warning, now);
        if due == now {
            let warned = event::TokenExpiring { ev: "token_expiring", exp: expires_at, seconds_left: expires_at - now };
            hub.deliver_event(conn, &Encoded::new(&warned));
            self.arm(Arc::downgrade(conn), expires_at);
        } else {
            self.arm(Arc::downgrade(conn), due);
        }
    }
}

/// When a token expiring at `expires_at` is next due: its warning time, or
/// now if that has passed.
fn next_due(expires_at: u64, warning: Duration, now: u64) -> u64 {
    expires_at.saturating_sub(warning.as_secs()).max(now)
}

/// Time until Unix second `at` begins.
fn until_second(at: u64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(at).saturating_sub(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_is_due_before_exp_or_at_once_when_its_time_has_passed() {
        let warning = Duration::from_secs(30);
        assert_eq!(next_due(1_000, warning, 900), 970);
        assert_eq!(next_due(1_000, warning, 970), 970);
        assert_eq!(next_due(1_000, warning, 990), 990);
        assert_eq!(next_due(10, warning, 0), 0, "a token shorter than the warning");
    }
}
