//! The broker of a single node: its own storage writer ([`crate::store`],
//! SQLite or memory) assigns `seq`, and every stored message is delivered
//! on this node, then settled, in commit order. Subscriptions are nothing
//! to do: every log's messages are this node's.

use super::{Broker, Deliveries, Delivery, Lookup, Pending, PublishError, Stored, Unstored};
use crate::store::{
    Committed, Loaded, LogKind, LogMeta, ProbeAnswer, Pruned, Reader, Sink, Storage, StoreError, Submission,
    SubmitError, WriterOptions,
};
use std::sync::{Arc, Weak};

/// One node's broker over its storage writer.
pub struct LocalBroker<T: Send + 'static> {
    storage: Storage<T>,
}

impl<T: Send + 'static> std::fmt::Debug for LocalBroker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBroker").field("logs", &self.storage.log_count()).finish()
    }
}

impl<T: Send + 'static> LocalBroker<T> {
    /// Starts the storage writer of `loaded`, whose commits reach
    /// `deliveries` (the hub, which owns this broker: hence weak).
    pub fn start(loaded: Loaded, options: WriterOptions, deliveries: Weak<dyn Deliveries<T>>) -> Self {
        let sink: Arc<dyn Sink<T>> = Arc::new(Forwarder { deliveries });
        LocalBroker { storage: loaded.start(options, sink) }
    }
}

impl<T: Send + 'static> Broker<T> for LocalBroker<T> {
    fn publish(&self, publication: Submission<T>, _idempotency: Option<&str>) -> Result<(), PublishError> {
        self.storage.submit(publication).map_err(refused)
    }

    fn subscribe(&self, _kind: LogKind, _name: &Arc<str>) {}

    fn unsubscribe(&self, _kind: LogKind, _name: &str) {}

    fn pending(&self, _kind: LogKind, _name: &str) -> Option<Pending> {
        None
    }

    fn lookup(&self, _kind: LogKind, _name: &str) -> Lookup {
        Lookup::Here
    }

    fn meta(&self, kind: LogKind, name: &str) -> Option<LogMeta> {
        self.storage.meta(kind, name)
    }

    fn mark_fanned_out(&self, kind: LogKind, name: &str, seq: u64) {
        self.storage.mark_fanned_out(kind, name, seq);
    }

    fn mark_delivered(&self, user: &str, seq: u64) {
        self.storage.mark_delivered(user, seq);
    }

    fn reader(&self) -> Arc<dyn Reader> {
        self.storage.reader()
    }

    fn probe(&self, answer: ProbeAnswer) -> Result<(), PublishError> {
        self.storage.probe(answer).map_err(refused)
    }

    fn log_count(&self) -> usize {
        self.storage.log_count()
    }

    fn relay(&self, _room: &str, _event: &[u8]) {}

    fn close(&self) {
        self.storage.close();
    }
}

fn refused(error: SubmitError) -> PublishError {
    match error {
        SubmitError::Busy => PublishError::Busy,
        SubmitError::Closed => PublishError::Closed,
    }
}

/// The storage writer's sink: each committed message is delivered, then
/// settled, in commit order.
struct Forwarder<T> {
    deliveries: Weak<dyn Deliveries<T>>,
}

impl<T: Send> Sink<T> for Forwarder<T> {
    fn committed(&self, group: Vec<Committed<T>>) {
        let Some(deliveries) = self.deliveries.upgrade() else { return };
        for message in group {
            let delivery = Delivery {
                key: &message.key,
                log: message.log,
                epoch: message.epoch,
                seq: message.seq,
                ts: message.ts,
                from: &message.from,
                body: &message.body,
            };
            deliveries.deliver(&delivery);
            let stored = Stored { seq: message.seq, epoch: message.epoch, ts: message.ts };
            deliveries.settle(message.ticket, Ok(stored));
        }
    }

    fn failed(&self, group: Vec<Submission<T>>, error: &StoreError) {
        tracing::error!(%error, messages = group.len(), "storage commit failed: answering storage_failed");
        let Some(deliveries) = self.deliveries.upgrade() else { return };
        for submission in group {
            deliveries.settle(submission.ticket, Err(Unstored::StorageFailed));
        }
    }

    fn pruned(&self, pruned: &Pruned) {
        if let Some(deliveries) = self.deliveries.upgrade() {
            deliveries.pruned(pruned);
        }
    }
}
