//! Giving the heap's free pages back to the system after connections come
//! and go.
//!
//! glibc returns freed memory to the system only from the top of the heap.
//! A burst of connects leaves holes all through it (handshake buffers,
//! presence events, grown maps), and those pages stay resident though
//! nothing uses them: measured, 150–450 bytes per idle connection.
//! `malloc_trim(0)` releases every free whole page in every arena
//! (`MADV_DONTNEED`), wherever it lies.
//!
//! It walks every free chunk with each arena's lock held, so it runs only
//! when it can help and rarely: after the connection count changed and then
//! stayed still for half a second (a burst is over), at most once every
//! [`MIN_GAP`], and at least every [`MAX_GAP`] while connections keep
//! changing. Its duration is logged (`debug`, target `switchboard_server::trim`).

use crate::hub::Hub;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the connection count is looked at.
const TICK: Duration = Duration::from_millis(500);
/// The least time between two trims.
const MIN_GAP: Duration = Duration::from_secs(2);
/// A trim happens at least this often while connections keep changing.
const MAX_GAP: Duration = Duration::from_secs(60);

/// Decides when to trim from what the connection counters did.
#[derive(Debug)]
struct Policy {
    /// The counters at the previous tick.
    previous: (u64, usize),
    /// The counters when the heap was last trimmed.
    trimmed: (u64, usize),
    last_trim: Instant,
}

impl Policy {
    fn new(now: (u64, usize), at: Instant) -> Self {
        Policy { previous: now, trimmed: now, last_trim: at }
    }

    /// Whether to trim now, given the counters and the time; records a trim
    /// when it says yes.
    fn due(&mut self, counters: (u64, usize), at: Instant) -> bool {
        let settled = counters == self.previous;
        self.previous = counters;
        let since = at.saturating_duration_since(self.last_trim);
        let due = counters != self.trimmed && since >= MIN_GAP && (settled || since >= MAX_GAP);
        if due {
            self.trimmed = counters;
            self.last_trim = at;
        }
        due
    }
}

/// Trims the heap when connections have changed and settled, until `stop`.
pub(crate) async fn run(hub: Arc<Hub>, stop: CancellationToken) {
    let mut policy = Policy::new(hub.connection_counters(), Instant::now());
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if policy.due(hub.connection_counters(), Instant::now()) {
                    trim(hub.connection_count());
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// How free memory goes back to the system, when the binary's global
/// allocator is not glibc's malloc.
static RELEASE: OnceLock<fn() -> bool> = OnceLock::new();

/// Sets how free memory is returned to the system: a binary with its own
/// global allocator gives that allocator's purge here (the first call wins).
/// Without it, glibc's `malloc_trim(0)`.
pub fn set_release(release: fn() -> bool) {
    let _ = RELEASE.set(release);
}

fn trim(connections: usize) {
    let started = Instant::now();
    let released = RELEASE.get().map_or_else(malloc_trim, |release| release());
    tracing::debug!(connections, released, micros = started.elapsed().as_micros() as u64, "heap trimmed");
}

/// `malloc_trim(0)`: whether glibc released any memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn malloc_trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and only reorganises the
    // allocator's own free lists under its locks; it is safe to call from
    // any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators return memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_burst_has_settled_and_not_too_often() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut policy = Policy::new((1, 0), start);
        assert!(!policy.due((1, 0), at(10_000)), "nothing changed");
        assert!(!policy.due((500, 499), at(10_500)), "still changing");
        assert!(!policy.due((900, 899), at(11_000)), "still changing");
        assert!(policy.due((900, 899), at(11_500)), "settled");
        assert!(!policy.due((900, 899), at(12_000)), "nothing changed since");
        assert!(!policy.due((901, 900), at(12_500)));
        assert!(!policy.due((901, 900), at(13_000)), "settled, but within MIN_GAP");
        assert!(policy.due((901, 900), at(13_500)));
    }

    #[test]
    fn trims_during_endless_churn_every_max_gap() {
        let start = Instant::now();
        let mut policy = Policy::new((0, 0), start);
        let trims = (1..=130u64).filter(|&s| policy.due((s, 1), start + Duration::from_secs(s))).count();
        assert_eq!(trims, 2);
    }

    /// Frees 64 KiB runs between live blocks (holes of whole pages in the
    /// middle of the heap, which glibc alone never returns), then trims:
    /// pages go back to the system and the live blocks keep their bytes.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trimming_releases_free_pages_and_keeps_live_data() {
        const RUN: usize = 64;
        let mut blocks: Vec<Option<Vec<u8>>> = (0..RUN * 64).map(|i| Some(vec![(i % 251) as u8; 1024])).collect();
        for (i, block) in blocks.iter_mut().enumerate() {
            if (i / RUN).is_multiple_of(2) {
                *block = None;
            }
        }
        assert!(malloc_trim(), "glibc released no memory though 2 MiB of holes were free");
        for (i, block) in blocks.iter().enumerate() {
            if let Some(block) = block {
                assert!(block.iter().all(|&byte| byte == (i % 251) as u8), "block {i} changed");
            }
        }
    }
}
