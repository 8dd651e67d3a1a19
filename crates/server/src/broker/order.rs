//! The order in which a node delivers one log's messages, whichever way
//! they reach it: the log's channel, the publisher's own answer, or a read
//! of the log's stream to fill a gap. A cluster broker keeps one
//! [`Cursor`] per log it is subscribed to and asks it about every message:
//! the next `seq` is delivered, a later one waits for the missing range to
//! be read first, and an earlier one was delivered already and is dropped.
//! So each node delivers each message once and in `seq` order, although
//! Redis pub/sub may lose messages while a subscription is reconnecting.

/// What to do with a message of the log (see [`Cursor::offer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It is the next one: deliver it, then [`Cursor::advance`].
    Deliver,
    /// Messages after `after` and before this one are missing: read them
    /// from the log's stream and deliver them first.
    Gap { after: u64 },
    /// It was delivered already: drop it.
    Stale,
    /// The log's history began again (its epoch changed: Redis lost it):
    /// members must be told that what they had cannot be continued, and
    /// the cursor starts over with [`Cursor::restart`].
    NewEpoch,
}

/// The last message of a log delivered on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    epoch: u64,
    last: u64,
}

impl Cursor {
    /// A cursor after message `last` of the log in `epoch` (0 before the
    /// first message).
    pub fn new(epoch: u64, last: u64) -> Self {
        Cursor { epoch, last }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The newest `seq` delivered.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Decides what to do with message `seq` of the log in `epoch`.
    pub fn offer(&self, epoch: u64, seq: u64) -> Verdict {
        if epoch != self.epoch {
            Verdict::NewEpoch
        } else if seq <= self.last {
            Verdict::Stale
        } else if seq == self.last + 1 {
            Verdict::Deliver
        } else {
            Verdict::Gap { after: self.last }
        }
    }

    /// Records that message `seq` was delivered (only ever the next one).
    pub fn advance(&mut self, seq: u64) {
        debug_assert_eq!(seq, self.last + 1, "messages are delivered in order");
        self.last = self.last.max(seq);
    }

    /// Starts over in `epoch`, before its first message.
    pub fn restart(&mut self, epoch: u64) {
        *self = Cursor { epoch, last: 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_message_is_delivered_a_repeat_dropped_and_a_later_one_waits_for_the_gap() {
        let mut cursor = Cursor::new(7, 10);
        assert_eq!(cursor.offer(7, 11), Verdict::Deliver);
        cursor.advance(11);
        assert_eq!(cursor.offer(7, 11), Verdict::Stale, "the channel's copy of the publisher's own message");
        assert_eq!(cursor.offer(7, 3), Verdict::Stale);
        assert_eq!(cursor.offer(7, 15), Verdict::Gap { after: 11 });
        for seq in 12..=15 {
            assert_eq!(cursor.offer(7, seq), Verdict::Deliver, "filled in order");
            cursor.advance(seq);
        }
        assert_eq!(cursor.last(), 15);
    }

    #[test]
    fn another_epoch_starts_the_log_over() {
        let mut cursor = Cursor::new(7, 10);
        assert_eq!(cursor.offer(8, 1), Verdict::NewEpoch);
        assert_eq!(cursor.offer(8, 11), Verdict::NewEpoch, "even past the old position");
        cursor.restart(8);
        assert_eq!((cursor.epoch(), cursor.last()), (8, 0));
        assert_eq!(cursor.offer(8, 2), Verdict::Gap { after: 0 });
        assert_eq!(cursor.offer(8, 1), Verdict::Deliver);
    }
}
