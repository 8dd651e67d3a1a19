//! Two small things every module needs alike: locking a mutex whatever a
//! panicking thread left behind, and the wall clock in milliseconds.

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Locks `mutex`. A panic while it was held cannot leave the server's maps
/// or queues in a state that matters more than stopping would, so the
/// poison is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wall-clock milliseconds since the Unix epoch, for message `ts`.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
