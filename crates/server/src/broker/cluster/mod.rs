//! The broker of a node in a cluster on Redis: [`crate::cluster`]'s engine
//! behind the [`Broker`] seam.
//!
//! - **Publish.** One script in Redis assigns the message its `seq` (and
//!   the log's epoch), appends it to the log's stream and publishes it to
//!   the log's channel; the publisher is answered once the script returned.
//!   A log's publishes go to Redis in the order they were accepted, so a
//!   connection's sends keep their order: one script at a time per log,
//!   each carrying every publish that queued while the previous one ran.
//!   While Redis is unreachable, publishing is refused at once
//!   ([`PublishError::Unavailable`], or [`Unstored::Unavailable`] for those
//!   already queued), never acked falsely.
//! - **Deliver.** The node subscribes to a room's channel when the room
//!   gets its first member here, and to a user's inbox channel when the user
//!   connects here. Each subscribed log has a [`slot::Slot`] that delivers
//!   its messages exactly once and in `seq` order, whichever way they come:
//!   the channel, the publisher's own answer (so a sender sees their message
//!   without waiting for the channel's copy), or a read of the stream that
//!   fills a gap.
//! - **Repair.** When the subscription comes back after Redis was lost (or
//!   the subscriber dropped pushes), every slot compares its position with
//!   the log's in Redis and reads what it missed; a log whose epoch changed
//!   (Redis lost it) has its members resynchronise ([`Deliveries::history_reset`]).
//!
//! The tasks: [`control`] owns the subscriber (subscriptions, pushes,
//! repairs); each log with publishes waiting has a task that sends them in
//! batches, in turn; fills run on tasks of their own.

mod control;
pub mod presence;
mod reader;
mod slot;

use super::{Broker, Deliveries, Lookup, Pending, Publication, PublishError, Stored, Unstored};
use crate::cluster::{ClusterError, Engine, Outgoing as ClusterOutgoing, Subscriber, SubscriberEvent};
use crate::metrics::{DropReason, Metrics};
use crate::store::{LogKey, LogKind, LogMeta, ProbeAnswer, Reader, StoreError, StoredMessage};
use crate::util::lock;
use slot::{Arrival, Next, Slot};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages read from a stream per round trip when filling a gap.
const FILL_PAGE: usize = 500;

/// The logs this node is subscribed to, by key and by this node's id.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    by_key: HashMap<LogKey, Arc<Slot>>,
    by_id: HashMap<u64, LogKey>,
    next_id: u64,
}

/// What the control task is asked to do.
#[derive(Debug)]
enum Control {
    Subscribe(Arc<Slot>),
    Unsubscribe(LogKey),
}

/// A cluster node's broker; see the module docs.
pub struct ClusterBroker<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    reader: Arc<dyn Reader>,
}

struct Shared<T> {
    engine: Engine,
    deliveries: Weak<dyn Deliveries<T>>,
    slots: Arc<Mutex<Slots>>,
    control: mpsc::UnboundedSender<Control>,
    /// Whether Redis answers (the subscription is live and the last
    /// command did not find it unreachable).
    up: AtomicBool,
    closed: AtomicBool,
    metrics: Arc<Metrics>,
    /// How long a join may wait for its room's subscription.
    wait_limit: Duration,
    /// Publishes accepted and not answered yet (see [`MAX_IN_FLIGHT`]).
    in_flight: AtomicUsize,
    /// Per log, the publishes waiting for the one in Redis now: a log's
    /// publishes go one at a time, in the order they were accepted.
    queues: Mutex<HashMap<LogKey, VecDeque<Queued<T>>>>,
}

/// A publication waiting for its log's previous one, with its scope.
type Queued<T> = (Publication<T>, Option<String>);

/// Most publishes a node has accepted and not answered; past it a publish
/// is refused (`overloaded`), so the queues stay bounded.
const MAX_IN_FLIGHT: usize = 16_384;

/// Most messages one publish script carries, and most bytes of bodies
/// (past the first message): a script blocks Redis while it runs.
const BATCH_MESSAGES: usize = 256;
const BATCH_BYTES: usize = 256 * 1024;

impl<T: Send + 'static> std::fmt::Debug for ClusterBroker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let node = self.shared.engine.keys().node_id().to_owned();
        f.debug_struct("ClusterBroker").field("node", &node).finish_non_exhaustive()
    }
}

/// A cluster broker whose subscriber is open, waiting for the hub.
#[derive(Debug)]
pub struct Prepared {
    engine: Engine,
    subscriber: Subscriber,
    events: mpsc::Receiver<SubscriberEvent>,
}

impl ClusterBroker<()> {
    /// Opens the subscriber over a connected `engine` (the first step:
    /// the hub the broker serves does not exist yet).
    pub async fn prepare(engine: Engine) -> Result<Prepared, ClusterError> {
        let (subscriber, events) = engine.subscriber().await?;
        Ok(Prepared { engine, subscriber, events })
    }
}

impl Prepared {
    /// Starts the broker for the hub behind `deliveries`: spawns the
    /// control task (call within the runtime).
    pub fn start<T: Send + 'static>(
        self,
        metrics: Arc<Metrics>,
        deliveries: Weak<dyn Deliveries<T>>,
    ) -> ClusterBroker<T> {
        let Prepared { engine, subscriber, events } = self;
        let (control, requests) = mpsc::unbounded_channel();
        let slots = Arc::new(Mutex::new(Slots::default()));
        let wait_limit = engine.config().command_timeout * 2;
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            deliveries,
            slots: Arc::clone(&slots),
            control,
            up: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            metrics,
            wait_limit,
            in_flight: AtomicUsize::new(0),
            queues: Mutex::default(),
        });
        tokio::spawn(control::run(Arc::clone(&shared), subscriber, events, requests));
        let reader = Arc::new(reader::ClusterReader::new(engine, slots));
        ClusterBroker { shared, reader }
    }
}

impl<T: Send + 'static> Shared<T> {
    fn slot(&self, key: &LogKey) -> Option<Arc<Slot>> {
        lock(&self.slots).by_key.get(key).cloned()
    }

    /// Offers a message to its log's slot (if the node is subscribed to it)
    /// and does what that calls for.
    fn arrive(self: &Arc<Self>, key: &LogKey, arrival: Arrival) {
        let (Some(slot), Some(deliveries)) = (self.slot(key), self.deliveries.upgrade()) else { return };
        let next = slot.offer(arrival, &*deliveries);
        self.follow_up(&slot, next);
    }

    /// Starts a fill or a reset, as a slot asked.
    fn follow_up(self: &Arc<Self>, slot: &Arc<Slot>, next: Next) {
        match next {
            Next::Nothing => {}
            Next::Fill { after } => {
                tokio::spawn(Arc::clone(self).fill(Arc::clone(slot), after));
            }
            Next::Reset => self.reset(slot),
        }
    }

    /// Reads what `slot` is missing after `after` from the stream, page by
    /// page, until the gap is closed.
    async fn fill(self: Arc<Self>, slot: Arc<Slot>, mut after: u64) {
        loop {
            let epoch = slot.position().map_or(0, |(epoch, _)| epoch);
            let read = self.engine.after(&slot.key, after, FILL_PAGE).await;
            let Some(deliveries) = self.deliveries.upgrade() else { return };
            let messages = match read {
                Ok(messages) => messages,
                Err(error) => {
                    self.unreachable(&error);
                    tracing::warn!(log = %slot.key.name, %error, "cannot read a gap from the stream; retrying at the next repair");
                    return slot.fill_failed();
                }
            };
            let (next, skipped) = slot.filled(after, epoch, messages, &*deliveries);
            if skipped > 0 {
                self.metrics.dropped(DropReason::ClusterGap, skipped as usize);
                tracing::warn!(log = %slot.key.name, after, skipped, "messages gone from the stream before this node read them");
            }
            match next {
                Next::Fill { after: next_after } => after = next_after,
                other => return self.follow_up(&slot, other),
            }
        }
    }

    /// The log began again in another epoch (Redis lost it): its members
    /// here resynchronise.
    fn reset(&self, slot: &Slot) {
        self.metrics.cluster_history_resets.inc();
        tracing::warn!(log = %slot.key.name, "the log's history was lost in Redis (new epoch): its members resynchronise");
        if let Some(deliveries) = self.deliveries.upgrade() {
            deliveries.history_reset(&slot.key);
        }
    }

    /// Notes that Redis did not answer.
    fn unreachable(&self, error: &ClusterError) {
        if error.is_unavailable() && self.set_up(false) {
            tracing::error!(%error, "Redis is unreachable: publishing fails until it answers again");
        }
    }

    /// Records whether Redis answers (`/metrics` too); true when it changed.
    fn set_up(&self, up: bool) -> bool {
        self.metrics.cluster_up.set(i64::from(up));
        self.up.swap(up, Ordering::AcqRel) != up
    }

    /// Publishes what `key`'s queue holds, in batches, until it is empty:
    /// Redis hands out a log's `seq`s in the order its messages were
    /// accepted, so a connection's sends stay in the order sent, as on one
    /// node. (Requests started together on the shared connection reach
    /// Redis in the order their tasks first run, which is not that order.)
    /// Whatever queued while a batch was in Redis goes in the next one, so
    /// a busy log takes one round trip per batch, not per message.
    async fn publish_in_order(self: Arc<Self>, key: LogKey) {
        loop {
            let batch = {
                let mut queues = lock(&self.queues);
                let Some(waiting) = queues.get_mut(&key) else { return };
                let batch = next_batch(waiting);
                if batch.is_empty() {
                    queues.remove(&key);
                    return;
                }
                batch
            };
            if self.up.load(Ordering::Acquire) {
                self.publish_batch(&key, batch).await;
            } else {
                // Queued behind one that found Redis unreachable: answered
                // now, not after a timeout each.
                tracing::warn!(log = %key.name, messages = batch.len(), "Redis unreachable: queued publishes answered unavailable, not sent");
                self.refuse(batch, Unstored::Unavailable);
            }
        }
    }

    /// Stores and publishes a log's `batch` in one script, then answers
    /// each publisher.
    async fn publish_batch(self: &Arc<Self>, key: &LogKey, batch: Vec<Queued<T>>) {
        let outgoing: Vec<_> = batch
            .iter()
            .map(|(publication, idempotency)| ClusterOutgoing {
                from: &publication.from,
                body: &publication.body,
                idempotency: idempotency.as_deref(),
            })
            .collect();
        let outcome = self.engine.publish_batch(key, &outgoing).await;
        drop(outgoing);
        let published = match outcome {
            Ok(published) => {
                self.metrics.cluster_publish_scripts.inc();
                published
            }
            Err(error) => {
                self.unreachable(&error);
                tracing::warn!(log = %key.name, %error, messages = batch.len(), "publish not confirmed: answering unavailable");
                return self.refuse(batch, Unstored::Unconfirmed);
            }
        };
        self.in_flight.fetch_sub(batch.len(), Ordering::AcqRel);
        let Some(deliveries) = self.deliveries.upgrade() else { return };
        for ((publication, _), published) in batch.into_iter().zip(published) {
            let Publication { from, body, ticket, .. } = publication;
            let stored = Stored { seq: published.seq, epoch: published.epoch, ts: published.ts };
            // A repeat (another node stored it first) was delivered then.
            if !published.duplicate {
                let message = StoredMessage { seq: published.seq, ts: published.ts, from: from.to_string(), body };
                self.arrive(key, Arrival { epoch: published.epoch, message });
            }
            deliveries.settle(ticket, Ok(stored));
        }
    }

    /// Answers each publisher in `batch` that its message was not stored
    /// (or not confirmed: `reason`).
    fn refuse(&self, batch: Vec<Queued<T>>, reason: Unstored) {
        self.in_flight.fetch_sub(batch.len(), Ordering::AcqRel);
        let Some(deliveries) = self.deliveries.upgrade() else { return };
        for (publication, _) in batch {
            deliveries.settle(publication.ticket, Err(reason));
        }
    }
}

/// Takes the oldest publications of a log's queue, as many as one script
/// should carry (at least one when any wait).
fn next_batch<T>(waiting: &mut VecDeque<Queued<T>>) -> Vec<Queued<T>> {
    let mut bytes = 0;
    let mut batch = Vec::new();
    while let Some((publication, _)) = waiting.front() {
        bytes += publication.body.get().len();
        if !batch.is_empty() && (batch.len() == BATCH_MESSAGES || bytes > BATCH_BYTES) {
            break;
        }
        batch.extend(waiting.pop_front());
    }
    batch
}

impl<T: Send + 'static> Broker<T> for ClusterBroker<T> {
    fn publish(&self, publication: Publication<T>, idempotency: Option<&str>) -> Result<(), PublishError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        if !self.shared.up.load(Ordering::Acquire) {
            return Err(PublishError::Unavailable);
        }
        if self.shared.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(PublishError::Busy);
        }
        let key = publication.key.clone();
        let queued = (publication, idempotency.map(ToOwned::to_owned));
        match lock(&self.shared.queues).entry(key) {
            Entry::Occupied(mut waiting) => waiting.get_mut().push_back(queued),
            Entry::Vacant(empty) => {
                let key = empty.key().clone();
                empty.insert(VecDeque::from([queued]));
                tokio::spawn(Arc::clone(&self.shared).publish_in_order(key));
            }
        }
        Ok(())
    }

    fn subscribe(&self, kind: LogKind, name: &Arc<str>) {
        let key = LogKey { kind, name: Arc::clone(name) };
        let slot = {
            let mut slots = lock(&self.shared.slots);
            slots.next_id += 1;
            let slot = Arc::new(Slot::new(slots.next_id, key.clone()));
            slots.by_id.insert(slot.id, key.clone());
            if let Some(old) = slots.by_key.insert(key, Arc::clone(&slot)) {
                slots.by_id.remove(&old.id);
            }
            slot
        };
        let _ = self.shared.control.send(Control::Subscribe(slot));
    }

    fn unsubscribe(&self, kind: LogKind, name: &str) {
        let key = LogKey { kind, name: Arc::from(name) };
        {
            let mut slots = lock(&self.shared.slots);
            if let Some(slot) = slots.by_key.remove(&key) {
                slots.by_id.remove(&slot.id);
            }
        }
        let _ = self.shared.control.send(Control::Unsubscribe(key));
    }

    fn pending(&self, kind: LogKind, name: &str) -> Option<Pending> {
        let slot = self.shared.slot(&LogKey { kind, name: Arc::from(name) })?;
        if slot.is_ready() {
            return None;
        }
        let (mut ready, limit) = (slot.readiness(), self.shared.wait_limit);
        Some(Box::pin(async move {
            // Past the limit the join is answered with what is known.
            let _ = tokio::time::timeout(limit, ready.wait_for(|ready| *ready)).await;
        }))
    }

    fn lookup(&self, kind: LogKind, name: &str) -> Lookup {
        let key = LogKey { kind, name: Arc::from(name) };
        if self.shared.slot(&key).is_some_and(|slot| slot.is_ready()) {
            return Lookup::Here;
        }
        let engine = self.shared.engine.clone();
        Lookup::Later(Box::pin(async move {
            let info = engine.meta(&key).await.map_err(|error| StoreError::Broker(error.to_string()))?;
            Ok(info.map(|info| {
                let meta = LogMeta {
                    first_seq: info.first_seq,
                    first_ts: info.first_ts,
                    last_seq: info.top_seq,
                    fanned_out: info.top_seq,
                    ..LogMeta::new(0, info.epoch)
                };
                let reader: Arc<dyn Reader> = Arc::new(reader::KeyReader::new(engine, key));
                (meta, reader)
            }))
        }))
    }

    fn meta(&self, kind: LogKind, name: &str) -> Option<LogMeta> {
        let slot = self.shared.slot(&LogKey { kind, name: Arc::from(name) })?;
        slot.meta(self.shared.engine.config().history_max_len)
    }

    fn mark_fanned_out(&self, kind: LogKind, name: &str, seq: u64) {
        if let Some(slot) = self.shared.slot(&LogKey { kind, name: Arc::from(name) }) {
            slot.mark_fanned_out(seq);
        }
    }

    fn mark_delivered(&self, user: &str, seq: u64) {
        let key = LogKey { kind: LogKind::Inbox, name: Arc::from(user) };
        // Called from within a delivery, under the slot's lock: only the
        // slot's lock-free parts.
        let Some(slot) = self.shared.slot(&key) else { return };
        let epoch = slot.epoch();
        if epoch == 0 || !slot.note_delivered(seq) {
            return;
        }
        // Shared with the other nodes, for the user's next `hello` anywhere.
        let engine = self.shared.engine.clone();
        tokio::spawn(async move {
            if let Err(error) = engine.mark_delivered(&key, epoch, seq).await {
                tracing::warn!(user = %key.name, seq, %error, "the inbox's delivery cursor was not recorded in Redis");
            }
        });
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::clone(&self.reader)
    }

    fn probe(&self, answer: ProbeAnswer) -> Result<(), PublishError> {
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let outcome = match shared.engine.ping().await {
                Ok(()) if shared.up.load(Ordering::Acquire) => Ok(()),
                Ok(()) => Err("Redis answers, but the subscription is not back yet".to_owned()),
                Err(error) => {
                    shared.unreachable(&error);
                    Err(format!("Redis: {error}"))
                }
            };
            answer(outcome);
        });
        Ok(())
    }

    fn log_count(&self) -> usize {
        lock(&self.shared.slots).by_key.len()
    }

    fn relay(&self, room: &str, event: &[u8]) {
        let (shared, key, event) = (Arc::clone(&self.shared), LogKey::room(room), event.to_vec());
        tokio::spawn(async move {
            if let Err(error) = shared.engine.broadcast(&key, &event, None).await {
                shared.unreachable(&error);
                shared.metrics.dropped(DropReason::ClusterUnavailable, 1);
                tracing::warn!(room = %key.name, %error, "a volatile message did not reach the other nodes");
            }
        });
    }

    fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}
