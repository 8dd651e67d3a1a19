//! One log a cluster node is subscribed to: where the node stands in it
//! ([`Cursor`]), the messages that arrived ahead of their turn, and the
//! delivery of each message to the hub exactly once, in `seq` order,
//! whichever way it arrived (the log's channel, the publisher's own answer,
//! a read of the stream that fills a gap).
//!
//! Lock order: a slot's state, then whatever the hub takes to deliver (a
//! room, the directory, the users directory), then the broker's table of
//! slots (`mark_fanned_out`). Nothing holding the table takes a slot's
//! state.

use crate::broker::order::{Cursor, Verdict};
use crate::broker::{Deliveries, Delivery};
use crate::store::{LogKey, LogMeta, StoredMessage};
use crate::util::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::watch;

/// A message of the log and the epoch it was appended in.
#[derive(Debug)]
pub(super) struct Arrival {
    pub epoch: u64,
    pub message: StoredMessage,
}

/// Where a node stands in a log, and the `ts` of the message there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Delivered {
    pub epoch: u64,
    pub last: u64,
    /// 0: this node did not deliver the message at `last` (its position
    /// was read, or the log began again).
    pub last_ts: u64,
}

/// What the caller must do after offering a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Nothing,
    /// Read the stream after this `seq` and offer what it holds.
    Fill {
        after: u64,
    },
    /// The log began again in a new epoch: its members must resynchronise.
    Reset,
}

#[derive(Debug)]
pub(super) struct Slot {
    /// This node's number for the log (replays deduplicate by it).
    pub id: u64,
    pub key: LogKey,
    state: Mutex<State>,
    /// The newest `seq` fanned out here, set under the lock that orders
    /// fan-out with joins (see `Hub::mark_fanned_out`).
    fanned_out: AtomicU64,
    /// An inbox's delivery cursor in the current epoch: the DMs through
    /// this `seq` reached one of the user's connections (as read from Redis
    /// at start, and since marked here).
    delivered: AtomicU64,
    /// The cursor's epoch, readable without the state's lock (the hub marks
    /// an inbox delivered from within a delivery, under that lock).
    epoch: AtomicU64,
    /// True once the position is known (`start`).
    ready: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct State {
    /// `None` until the subscription is in place and the position read.
    cursor: Option<Cursor>,
    /// The oldest retained `seq` and its `ts`, as last read.
    first: (u64, u64),
    /// Messages that arrived ahead of their turn, by `seq`.
    waiting: BTreeMap<u64, Arrival>,
    /// A read of the stream is under way.
    filling: bool,
    /// The `ts` of the message at the cursor, when this node delivered it
    /// (0: unknown). A repair compares it with the stream's.
    last_ts: u64,
}

impl Slot {
    pub fn new(id: u64, key: LogKey) -> Self {
        let (fanned_out, delivered, epoch) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        Slot { id, key, state: Mutex::default(), fanned_out, delivered, epoch, ready: watch::Sender::new(false) }
    }

    /// A receiver that sees `true` once the position is known.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Sets the position read after subscribing: `epoch` (0: the log has
    /// no history yet), its newest `seq` and its oldest retained one. What
    /// arrived meanwhile at or before it is dropped (a joiner replays it
    /// from the stream); what came after is delivered.
    pub fn start<T>(&self, (epoch, top, first): (u64, u64, (u64, u64)), deliveries: &dyn Deliveries<T>) -> Next {
        let next = {
            let mut state = lock(&self.state);
            state.cursor = Some(Cursor::new(epoch, top));
            self.epoch.store(epoch, Ordering::Release);
            state.first = first;
            state.last_ts = 0;
            self.fanned_out.fetch_max(top, Ordering::AcqRel);
            self.drain(&mut state, deliveries)
        };
        self.ready.send_replace(true);
        next
    }

    /// Offers one message; delivers it (and whatever it unblocks) or keeps
    /// it for later.
    pub fn offer<T>(&self, arrival: Arrival, deliveries: &dyn Deliveries<T>) -> Next {
        let mut state = lock(&self.state);
        state.waiting.insert(arrival.message.seq, arrival);
        self.drain(&mut state, deliveries)
    }

    /// Delivers waiting messages while the first is the next one.
    fn drain<T>(&self, state: &mut State, deliveries: &dyn Deliveries<T>) -> Next {
        let Some(mut cursor) = state.cursor else { return Next::Nothing };
        let mut reset = false;
        while let Some(entry) = state.waiting.first_entry() {
            let (epoch, seq) = (entry.get().epoch, *entry.key());
            if cursor.epoch() == 0 {
                // The log had no history when its position was read.
                cursor.restart(epoch);
                self.epoch.store(epoch, Ordering::Release);
            }
            match cursor.offer(epoch, seq) {
                Verdict::Stale => {
                    entry.remove();
                }
                Verdict::Deliver => {
                    let arrival = entry.remove();
                    self.deliver(&arrival, deliveries);
                    cursor.advance(seq);
                    state.last_ts = arrival.message.ts;
                }
                Verdict::Gap { after } => {
                    state.cursor = Some(cursor);
                    if reset {
                        return Next::Reset;
                    }
                    if state.filling {
                        return Next::Nothing;
                    }
                    state.filling = true;
                    return Next::Fill { after };
                }
                Verdict::NewEpoch => {
                    // Its members are told to resynchronise (they rejoin and
                    // replay from the stream): go on from this message.
                    cursor = self.begin_epoch(state, epoch, seq - 1);
                    reset = true;
                }
            }
        }
        state.cursor = Some(cursor);
        if reset {
            Next::Reset
        } else {
            Next::Nothing
        }
    }

    /// Moves to `epoch` after its message `last`, forgetting what waits
    /// from other epochs.
    fn begin_epoch(&self, state: &mut State, epoch: u64, last: u64) -> Cursor {
        state.first = (1, 0);
        state.last_ts = 0;
        self.delivered.store(0, Ordering::Release);
        state.waiting.retain(|_, waiting| waiting.epoch == epoch);
        self.fanned_out.store(last, Ordering::Release);
        let cursor = Cursor::new(epoch, last);
        self.epoch.store(epoch, Ordering::Release);
        state.cursor = Some(cursor);
        cursor
    }

    /// The log is at `top` in another epoch than this node's (a repair
    /// found it): moves there; its members resynchronise.
    pub fn restart(&self, epoch: u64, top: u64) -> Next {
        let mut state = lock(&self.state);
        self.begin_epoch(&mut state, epoch, top);
        Next::Reset
    }

    /// Claims the fill of a gap: the `seq` to read after, unless a fill is
    /// under way (or the position is unknown).
    pub fn begin_fill(&self) -> Option<u64> {
        let mut state = lock(&self.state);
        let last = state.cursor.filter(|_| !state.filling)?.last();
        state.filling = true;
        Some(last)
    }

    fn deliver<T>(&self, arrival: &Arrival, deliveries: &dyn Deliveries<T>) {
        let message = &arrival.message;
        deliveries.deliver(&Delivery {
            key: &self.key,
            log: self.id,
            epoch: arrival.epoch,
            seq: message.seq,
            ts: message.ts,
            from: &message.from,
            body: &message.body,
        });
    }

    /// A fill read what the stream holds after `after` (in `epoch`):
    /// offers it all. Whatever the stream no longer has between `after` and
    /// the oldest message it returned (or, if it returned none, the first
    /// waiting one) was removed by retention: the cursor moves past it.
    /// Returns the next step and how many messages were skipped that way.
    pub fn filled<T>(
        &self,
        after: u64,
        epoch: u64,
        messages: Vec<StoredMessage>,
        deliveries: &dyn Deliveries<T>,
    ) -> (Next, u64) {
        let mut state = lock(&self.state);
        state.filling = false;
        let resume = messages.first().map(|message| message.seq).or_else(|| state.waiting.keys().next().copied());
        let mut skipped = 0;
        if let (Some(cursor), Some(resume)) = (state.cursor.as_mut(), resume) {
            if cursor.epoch() == epoch && cursor.last() == after && resume > after + 1 {
                skipped = resume - 1 - after;
                *cursor = Cursor::new(epoch, resume - 1);
            }
        }
        for message in messages {
            state.waiting.insert(message.seq, Arrival { epoch, message });
        }
        (self.drain(&mut state, deliveries), skipped)
    }

    /// A fill could not read: a later repair tries again.
    pub fn fill_failed(&self) {
        lock(&self.state).filling = false;
    }

    /// The log's epoch here (0 until known); takes no lock.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Moves the inbox's delivery cursor forward to `seq`; true when it
    /// moved (the caller records it in Redis). Takes no lock.
    pub fn note_delivered(&self, seq: u64) -> bool {
        self.delivered.fetch_max(seq, Ordering::AcqRel) < seq
    }

    /// Records that messages through `seq` were fanned out here.
    pub fn mark_fanned_out(&self, seq: u64) {
        self.fanned_out.fetch_max(seq, Ordering::AcqRel);
    }

    /// The node's position in the log, for a repair: `(epoch, last)`.
    pub fn position(&self) -> Option<(u64, u64)> {
        lock(&self.state).cursor.map(|cursor| (cursor.epoch(), cursor.last()))
    }

    /// [`Slot::position`] and the `ts` of the message at it, when this node
    /// delivered that message (else 0).
    pub fn delivered(&self) -> Option<Delivered> {
        let state = lock(&self.state);
        state.cursor.map(|cursor| Delivered { epoch: cursor.epoch(), last: cursor.last(), last_ts: state.last_ts })
    }

    /// What recovery needs, as the local catalog would say it: `None`
    /// while the position is unknown or the log has no history. At least
    /// `history_len` messages are retained (`XADD MAXLEN ~` never keeps
    /// fewer), so `first_seq` never claims more than the stream holds.
    pub fn meta(&self, history_len: u64) -> Option<LogMeta> {
        let state = lock(&self.state);
        let cursor = state.cursor?;
        if cursor.epoch() == 0 {
            return None;
        }
        let fanned_out = self.fanned_out.load(Ordering::Acquire);
        let surely_kept = cursor.last().saturating_sub(history_len) + 1;
        let first_seq = state.first.0.max(surely_kept).min(cursor.last() + 1);
        let first_ts = if first_seq == state.first.0 { state.first.1 } else { 0 };
        Some(LogMeta {
            first_seq,
            first_ts,
            last_seq: cursor.last(),
            fanned_out,
            delivered: self.delivered.load(Ordering::Acquire),
            ..LogMeta::new(self.id, cursor.epoch())
        })
    }
}
