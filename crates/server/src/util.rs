//! Small things every module needs alike: locking a mutex whatever a
//! panicking thread left behind, the wall clock in milliseconds, and
//! `From` for error variants that carry their cause in their message.

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

/// `impl From<$cause> for $error` building `$variant`, for an error variant
/// whose message already includes its cause's (`#[error("storage: {0}")]`).
/// thiserror's `#[from]` would also return the cause from
/// `Error::source`, and a printed chain (`{:#}`, anyhow's report) would then
/// name it twice; every error here says its cause in its message and does
/// not return it as a source (docs/ARCHITECTURE.md, "Errors name each cause
/// once").
macro_rules! from_cause {
    ($error:ty, $variant:path, $cause:ty) => {
        impl From<$cause> for $error {
            fn from(cause: $cause) -> Self {
                $variant(cause)
            }
        }
    };
}
pub(crate) use from_cause;
