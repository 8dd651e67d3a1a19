//! Per-connection rate limits: two token buckets (commands and command
//! bytes per second, each with a burst) and a count of refusals, in 16
//! bytes that live in the connection's [`crate::session::Session`].
//!
//! Tokens are fixed-point integers (thousandths of a command; bytes) and
//! the refill stamp is the hub's millisecond clock truncated to 32 bits:
//! an idle connection must not pay for a float pair and an `Instant`.

/// The per-connection rates in force (from `[limits]`); a rate of 0 turns
/// its bucket off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub messages_per_second: u32,
    pub messages_burst: u32,
    pub bytes_per_second: u32,
    pub bytes_burst: u32,
    /// Refusals since the buckets were last full that close the connection (0: never).
    pub refusals_before_close: u16,
}

impl Rates {
    /// Rates that never refuse anything.
    pub const UNLIMITED: Rates = Rates {
        messages_per_second: 0,
        messages_burst: 0,
        bytes_per_second: 0,
        bytes_burst: 0,
        refusals_before_close: 0,
    };
}

/// Which bucket was empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Messages,
    Bytes,
}

/// What to do with one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Refuse it with `rate_limited`.
    Refuse(Exceeded),
    /// Refuse it and close the connection with 1008: the client kept on.
    Close(Exceeded),
}

/// Thousandths of a command: the unit of the command bucket, so that a
/// refill of a few milliseconds at a low rate is not rounded away.
const MILLI: u64 = 1000;

/// One connection's buckets.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// When the buckets were last refilled (the hub's clock, wrapping).
    stamp_ms: u32,
    milli_messages: u32,
    bytes: u32,
    /// Refused commands since the buckets were last full: a client that
    /// backs off long enough to refill them is forgiven; one that keeps
    /// sending past its rate is not, however slowly the server reads it.
    strikes: u16,
}

impl Budget {
    /// Full buckets (whatever the rates: a refill caps them at the burst).
    pub fn new(now_ms: u64) -> Budget {
        Budget { stamp_ms: now_ms as u32, milli_messages: u32::MAX, bytes: u32::MAX, strikes: 0 }
    }

    /// Charges one command of `bytes` bytes at `now_ms` (the hub's clock).
    pub fn charge(&mut self, bytes: usize, now_ms: u64, rates: &Rates) -> Verdict {
        let now = now_ms as u32;
        // A stamp ahead of now (it cannot be, but wrapping says so) refills nothing.
        let elapsed = match now.wrapping_sub(self.stamp_ms) {
            gap if gap > u32::MAX / 2 => 0,
            gap => u64::from(gap),
        };
        self.stamp_ms = now;
        let messages_cap = (u64::from(rates.messages_burst) * MILLI).min(u64::from(u32::MAX));
        let messages =
            (u64::from(self.milli_messages) + elapsed * u64::from(rates.messages_per_second)).min(messages_cap);
        let bytes_cap = u64::from(rates.bytes_burst);
        let byte_tokens = (u64::from(self.bytes) + elapsed * u64::from(rates.bytes_per_second) / 1000).min(bytes_cap);
        let cost = bytes as u64;
        let full = (rates.messages_per_second == 0 || messages == messages_cap)
            && (rates.bytes_per_second == 0 || byte_tokens == bytes_cap);
        let exceeded = if rates.messages_per_second > 0 && messages < MILLI {
            Some(Exceeded::Messages)
        } else if rates.bytes_per_second > 0 && byte_tokens < cost {
            Some(Exceeded::Bytes)
        } else {
            None
        };
        let Some(exceeded) = exceeded else {
            self.milli_messages = messages.saturating_sub(MILLI) as u32;
            self.bytes = byte_tokens.saturating_sub(cost) as u32;
            if full {
                self.strikes = 0;
            }
            return Verdict::Admit;
        };
        (self.milli_messages, self.bytes) = (messages as u32, byte_tokens as u32);
        self.strikes = self.strikes.saturating_add(1);
        if rates.refusals_before_close > 0 && self.strikes >= rates.refusals_before_close {
            Verdict::Close(exceeded)
        } else {
            Verdict::Refuse(exceeded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: Rates = Rates {
        messages_per_second: 10,
        messages_burst: 5,
        bytes_per_second: 1000,
        bytes_burst: 500,
        refusals_before_close: 3,
    };

    #[test]
    fn it_fits_the_room_left_in_a_connection_task() {
        assert!(std::mem::size_of::<Budget>() <= 16);
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let mut budget = Budget::new(0);
        for _ in 0..5 {
            assert_eq!(budget.charge(10, 0, &RATES), Verdict::Admit);
        }
        assert_eq!(budget.charge(10, 0, &RATES), Verdict::Refuse(Exceeded::Messages));
        // 10 a second: one more after 100 ms, not after 99.
        assert_eq!(budget.charge(10, 99, &RATES), Verdict::Refuse(Exceeded::Messages));
        assert_eq!(budget.charge(10, 100, &RATES), Verdict::Admit);
    }

    #[test]
    fn bytes_are_a_bucket_of_their_own() {
        let mut budget = Budget::new(1_000);
        assert_eq!(budget.charge(400, 1_000, &RATES), Verdict::Admit);
        assert_eq!(budget.charge(200, 1_000, &RATES), Verdict::Refuse(Exceeded::Bytes));
        // 1000 bytes a second: 100 more bytes after 100 ms.
        assert_eq!(budget.charge(200, 1_100, &RATES), Verdict::Admit);
    }

    #[test]
    fn refusals_close_unless_the_client_backs_off_until_its_buckets_refill() {
        let mut budget = Budget::new(0);
        let rates = Rates { messages_burst: 2, ..RATES };
        assert_eq!(budget.charge(1, 0, &rates), Verdict::Admit);
        assert_eq!(budget.charge(1, 0, &rates), Verdict::Admit);
        assert_eq!(budget.charge(1, 0, &rates), Verdict::Refuse(Exceeded::Messages));
        // Admitted at the rate, but never quiet long enough to refill: no forgiveness.
        assert_eq!(budget.charge(1, 100, &rates), Verdict::Admit);
        assert_eq!(budget.charge(1, 100, &rates), Verdict::Refuse(Exceeded::Messages));
        // Quiet for 300 ms: both buckets are full again, and the slate is clean.
        assert_eq!(budget.charge(1, 400, &rates), Verdict::Admit);
        assert_eq!(budget.charge(1, 400, &rates), Verdict::Admit);
        assert_eq!(budget.charge(1, 400, &rates), Verdict::Refuse(Exceeded::Messages));
        assert_eq!(budget.charge(1, 400, &rates), Verdict::Refuse(Exceeded::Messages));
        assert_eq!(budget.charge(1, 400, &rates), Verdict::Close(Exceeded::Messages));
    }

    #[test]
    fn zero_rates_limit_nothing_and_a_wrapped_clock_is_harmless() {
        let mut budget = Budget::new(u64::from(u32::MAX) - 5);
        for _ in 0..10_000 {
            assert_eq!(budget.charge(1 << 20, 0, &Rates::UNLIMITED), Verdict::Admit);
        }
        let mut budget = Budget::new(u64::from(u32::MAX) - 5);
        let rates = Rates { messages_burst: 1, ..RATES };
        assert_eq!(budget.charge(1, u64::from(u32::MAX) - 5, &rates), Verdict::Admit);
        // 100 ms later across the 32-bit wrap: refilled.
        assert_eq!(budget.charge(1, u64::from(u32::MAX) + 95, &rates), Verdict::Admit);
    }
}
