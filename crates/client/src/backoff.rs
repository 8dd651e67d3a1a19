//! When to try connecting again: exponential backoff with full jitter.
//! Attempt `n` (from 0) waits a uniformly random time in
//! `[0, min(cap, base * 2^n))`, so a thousand clients dropped by one server
//! restart spread their reconnects over the whole window instead of
//! arriving together (see "Exponential Backoff And Jitter", AWS
//! Architecture Blog, 2015). The random source is seedable, for tests and
//! reproducible runs.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::time::Duration;

/// The reconnect policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first attempt's window.
    pub base: Duration,
    /// No window grows past this.
    pub cap: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    /// 500 ms doubling to 30 s, forever.
    fn default() -> Self {
        Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(30), max_attempts: None }
    }
}

impl Backoff {
    /// The window of attempt `attempt` (from 0): `min(cap, base * 2^attempt)`.
    pub fn window(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// How long attempt `attempt` waits: uniform in `[0, window)`.
    pub fn delay(&self, attempt: u32, jitter: &mut Jitter) -> Duration {
        let window = self.window(attempt);
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(jitter.rng.random_range(0..nanos))
    }
}

/// The random source of the delays.
#[derive(Debug, Clone)]
pub struct Jitter {
    rng: SmallRng,
}

impl Jitter {
    /// Seeded from the operating system.
    pub fn from_entropy() -> Jitter {
        Jitter { rng: rand::make_rng() }
    }

    /// The same delays for the same seed.
    pub fn seeded(seed: u64) -> Jitter {
        Jitter { rng: SmallRng::seed_from_u64(seed) }
    }

    /// A random 128-bit value (idempotency keys).
    pub(crate) fn next_u128(&mut self) -> u128 {
        self.rng.random()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn windows_double_up_to_the_cap() {
        let backoff = Backoff { base: 100 * MS, cap: 1_000 * MS, max_attempts: None };
        let windows: Vec<u128> = (0..6).map(|attempt| backoff.window(attempt).as_millis()).collect();
        assert_eq!(windows, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(backoff.window(u32::MAX), 1_000 * MS, "no overflow");
        let mut jitter = Jitter::seeded(1);
        for attempt in 0..40 {
            let delay = backoff.delay(attempt, &mut jitter);
            assert!(delay < backoff.window(attempt), "attempt {attempt}: {delay:?}");
        }
        assert_eq!(Backoff { base: Duration::ZERO, ..backoff }.delay(0, &mut jitter), Duration::ZERO);
    }

    /// 1,000 clients of a restarted server draw their first retry: the
    /// delays cover the window evenly (no 100 ms bucket of the 1 s window
    /// holds more than 15 %, where 10 % is even), their mean is near half
    /// the window, and they are not all the same.
    #[test]
    fn a_thousand_first_retries_spread_over_the_window() {
        let backoff = Backoff { base: 1_000 * MS, cap: 30_000 * MS, max_attempts: None };
        let mut jitter = Jitter::seeded(20);
        let delays: Vec<Duration> = (0..1_000).map(|_| backoff.delay(0, &mut jitter)).collect();
        let mut buckets = [0usize; 10];
        for delay in &delays {
            assert!(*delay < 1_000 * MS);
            buckets[(delay.as_millis() / 100) as usize] += 1;
        }
        assert!(buckets.iter().all(|&count| count <= 150), "clumped: {buckets:?}");
        assert!(buckets.iter().all(|&count| count >= 50), "a hole in the window: {buckets:?}");
        let mean = delays.iter().sum::<Duration>() / 1_000;
        assert!((450 * MS..=550 * MS).contains(&mean), "mean {mean:?}");
        // Every client apart: at most a handful share a millisecond.
        let mut per_ms = std::collections::HashMap::new();
        for delay in &delays {
            *per_ms.entry(delay.as_millis()).or_insert(0) += 1;
        }
        assert!(per_ms.values().all(|&count| count <= 6), "a burst in one millisecond");
    }

    /// Clients each with their own generator (as each process would seed
    /// its own) spread as well, and a later attempt's window is wider.
    #[test]
    fn independent_clients_spread_and_later_attempts_wait_longer() {
        let backoff = Backoff { base: 1_000 * MS, cap: 30_000 * MS, max_attempts: None };
        let first: Vec<Duration> = (0..1_000).map(|seed| backoff.delay(0, &mut Jitter::seeded(seed))).collect();
        let mut buckets = [0usize; 10];
        for delay in &first {
            buckets[(delay.as_millis() / 100) as usize] += 1;
        }
        assert!(buckets.iter().all(|&count| (50..=150).contains(&count)), "{buckets:?}");
        let third: Vec<Duration> = (0..1_000).map(|seed| backoff.delay(2, &mut Jitter::seeded(seed))).collect();
        let mean_third = third.iter().sum::<Duration>() / 1_000;
        assert!((1_800 * MS..=2_200 * MS).contains(&mean_third), "attempt 2 spreads over 4 s: {mean_third:?}");
        assert_eq!(
            backoff.delay(3, &mut Jitter::seeded(9)),
            backoff.delay(3, &mut Jitter::seeded(9)),
            "a seed repeats its delays"
        );
    }
}
