//! The control task of a cluster node: it owns the Redis subscriber,
//! subscribes and unsubscribes logs in the order the hub asked, reads each
//! new subscription's position, hands publications to their slots, and
//! repairs every slot when the subscription comes back after an outage.

use super::slot::{Arrival, Delivered, Next, Slot};
use super::{Control, Shared};
use crate::cluster::{LogInfo, Subscriber, SubscriberEvent};
use crate::store::LogKey;
use crate::util::lock;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often subscriptions that failed are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Most subscription requests taken in one batch.
const BATCH: usize = 512;

pub(super) async fn run<T: Send + 'static>(
    shared: Arc<Shared<T>>,
    subscriber: Subscriber,
    mut events: mpsc::Receiver<SubscriberEvent>,
    mut requests: mpsc::UnboundedReceiver<Control>,
) {
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed: Vec<Arc<Slot>> = Vec::new();
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { return };
                let mut batch = vec![request];
                while batch.len() < BATCH {
                    match requests.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                handle_requests(&shared, &subscriber, batch, &mut failed).await;
            }
            event = events.recv() => {
                let Some(event) = event else {
                    tracing::error!("the Redis subscriber stopped");
                    return;
                };
                on_event(&shared, event);
            }
            _ = retry.tick(), if !failed.is_empty() => {
                let again = std::mem::take(&mut failed);
                let requests = again.into_iter().map(Control::Subscribe).collect();
                handle_requests(&shared, &subscriber, requests, &mut failed).await;
            }
        }
    }
}

/// Subscribes and unsubscribes in order; a subscription that worked gets
/// its position read. Failures are kept in `failed` for a retry.
async fn handle_requests<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    subscriber: &Subscriber,
    batch: Vec<Control>,
    failed: &mut Vec<Arc<Slot>>,
) {
    let mut subscribes: Vec<Arc<Slot>> = Vec::new();
    for request in batch {
        match request {
            Control::Subscribe(slot) => subscribes.push(slot),
            Control::Unsubscribe(key) => {
                // A subscribe of the same log waiting in this batch goes first.
                subscribe(shared, subscriber, std::mem::take(&mut subscribes), failed).await;
                failed.retain(|slot| slot.key != key);
                if !is_current(shared, &key) {
                    if let Err(error) = subscriber.unsubscribe(std::slice::from_ref(&key)).await {
                        tracing::debug!(log = %key.name, %error, "unsubscribe failed; the channel's pushes are ignored");
                    }
                }
            }
        }
    }
    subscribe(shared, subscriber, subscribes, failed).await;
}

/// Whether the node has a slot for `key` now (it was subscribed again).
fn is_current<T>(shared: &Shared<T>, key: &LogKey) -> bool {
    lock(&shared.slots).by_key.contains_key(key)
}

async fn subscribe<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    subscriber: &Subscriber,
    slots: Vec<Arc<Slot>>,
    failed: &mut Vec<Arc<Slot>>,
) {
    // Only slots still in the table: a later unsubscribe replaced them.
    let slots: Vec<Arc<Slot>> = slots.into_iter().filter(|slot| is_current_slot(shared, slot)).collect();
    if slots.is_empty() {
        return;
    }
    let keys: Vec<LogKey> = slots.iter().map(|slot| slot.key.clone()).collect();
    if let Err(error) = subscriber.subscribe(&keys).await {
        shared.unreachable(&error);
        tracing::warn!(logs = keys.len(), %error, "cannot subscribe yet; retrying");
        failed.extend(slots);
        return;
    }
    for slot in slots {
        match shared.engine.meta(&slot.key).await {
            Ok(info) => start(shared, &slot, info),
            Err(error) => {
                shared.unreachable(&error);
                tracing::warn!(log = %slot.key.name, %error, "cannot read the log's position yet; retrying");
                failed.push(slot);
            }
        }
    }
}

fn is_current_slot<T>(shared: &Shared<T>, slot: &Arc<Slot>) -> bool {
    lock(&shared.slots).by_key.get(&slot.key).is_some_and(|current| Arc::ptr_eq(current, slot))
}

/// Sets a new subscription's position, or repairs a started one.
fn start<T: Send + 'static>(shared: &Arc<Shared<T>>, slot: &Arc<Slot>, info: Option<LogInfo>) {
    let Some(deliveries) = shared.deliveries.upgrade() else { return };
    let position = info.map_or((0, 0, (1, 0)), |info| (info.epoch, info.top_seq, (info.first_seq, info.first_ts)));
    let delivered = info.map_or(0, |info| info.delivered);
    let next = match slot.position() {
        None => {
            // Before `start` makes the slot ready: a waiting `hello` reads it.
            slot.note_delivered(delivered);
            slot.start(position, &*deliveries)
        }
        Some((epoch, last)) => {
            let next = repair(slot, (epoch, last), position);
            if slot.position().is_some_and(|(now, _)| now == position.0) {
                slot.note_delivered(delivered);
            }
            next
        }
    };
    shared.follow_up(slot, next);
}

/// What a started slot at `(epoch, last)` must do to catch up with the
/// log's position in Redis.
fn repair(slot: &Slot, (epoch, last): (u64, u64), (log_epoch, top, _): (u64, u64, (u64, u64))) -> Next {
    // An epoch of 0: Redis has no history of the log at all any more. A top
    // below what was delivered here: Redis went back in time and its meta
    // vanished before `went_back` could move it to a new epoch; the `seq`s
    // it hands out next were delivered here already, for other messages.
    if epoch != 0 && (log_epoch != epoch || top < last) {
        return slot.restart(log_epoch, top);
    }
    match (top > last).then(|| slot.begin_fill()).flatten() {
        Some(after) => Next::Fill { after },
        None => Next::Nothing,
    }
}

fn on_event<T: Send + 'static>(shared: &Arc<Shared<T>>, event: SubscriberEvent) {
    match event {
        SubscriberEvent::Publication(publication) => {
            let arrival = Arrival { epoch: publication.epoch, message: publication.message };
            shared.arrive(&publication.log, arrival);
        }
        SubscriberEvent::Relayed(relayed) => {
            // The sending node delivered it to its own members already.
            if relayed.origin != shared.engine.keys().node_id() {
                if let Some(deliveries) = shared.deliveries.upgrade() {
                    deliveries.relayed(&relayed.log.name, relayed.event.get().as_bytes(), relayed.except.as_deref());
                }
            }
        }
        SubscriberEvent::Lost(reason) => {
            shared.set_up(false);
            tracing::error!(?reason, "the Redis subscription is down: publishing fails until it is back");
        }
        SubscriberEvent::Resubscribed => {
            shared.set_up(true);
            tracing::info!("the Redis subscription is back: repairing every log");
            repair_all(shared);
        }
        // A command that failed marked Redis unreachable while the
        // subscription stayed up (nothing to repair): the echo proves it
        // answers again.
        SubscriberEvent::Alive => {
            if shared.set_up(true) {
                tracing::info!("Redis answers again (the probe's echo came back): publishing resumes");
            }
        }
        SubscriberEvent::Dropped(count) => {
            shared.metrics.cluster_pushes_dropped.inc_by(count);
            tracing::warn!(count, "the subscriber dropped pushes: repairing every log");
            repair_all(shared);
        }
    }
}

/// Reads every started log's position and fills what was missed. A log
/// whose subscription never started (it failed) has no position yet: the
/// retry timer starts it.
fn repair_all<T: Send + 'static>(shared: &Arc<Shared<T>>) {
    let slots: Vec<Arc<Slot>> = lock(&shared.slots).by_key.values().cloned().collect();
    for slot in slots {
        let Some(delivered) = slot.delivered() else { continue };
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            match shared.engine.meta(&slot.key).await {
                Ok(Some(info)) if went_back(&shared, &slot, delivered, &info).await => {}
                Ok(info) => start(&shared, &slot, info),
                Err(error) => {
                    shared.unreachable(&error);
                    tracing::warn!(log = %slot.key.name, %error, "repair could not read the log's position");
                }
            }
        });
    }
}

/// Whether Redis went back in time for this log, and if so moves it to a
/// new epoch (in Redis and here: its members resynchronise). That is a
/// failover to a replica that had not received the newest messages: the
/// log's newest `seq` is below what this node delivered, or the new master
/// reused the `seq` delivered here last for another message (its `ts`
/// differs). Without the new epoch, nodes and clients would take the new
/// master's messages for those they had. True also when the check could
/// not be made (Redis failed again: the next repair makes it).
async fn went_back<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    slot: &Arc<Slot>,
    here: Delivered,
    info: &LogInfo,
) -> bool {
    if here.epoch == 0 || info.epoch != here.epoch || here.last == 0 {
        return false;
    }
    // Not behind: the message at `last` must be the one delivered here
    // (unknown when this node did not deliver it: nothing to compare).
    if info.top_seq >= here.last {
        if here.last_ts == 0 {
            return false;
        }
        match shared.engine.after(&slot.key, here.last - 1, 1).await {
            Ok(messages) if messages.first().is_some_and(|m| m.seq == here.last && m.ts != here.last_ts) => {}
            Ok(_) => return false,
            Err(error) => {
                shared.unreachable(&error);
                tracing::warn!(log = %slot.key.name, %error, "repair could not read the log's newest message");
                return true;
            }
        }
    }
    match shared.engine.diverge(&slot.key, here.epoch).await {
        Ok(Some(epoch)) => {
            tracing::warn!(log = %slot.key.name, delivered = here.last, top = info.top_seq, epoch,
                "Redis lost messages this node delivered (a failover?): the log goes on in a new epoch");
            let next = slot.restart(epoch, info.top_seq);
            shared.follow_up(slot, next);
            true
        }
        // The meta is gone: the next publish starts a new epoch anyway.
        Ok(None) => false,
        Err(error) => {
            shared.unreachable(&error);
            tracing::warn!(log = %slot.key.name, %error, "repair could not move the log to a new epoch");
            true
        }
    }
}
