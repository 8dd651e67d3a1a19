//! Hands committed groups to the [`Sink`] on a thread of its own, in
//! commit order, so the writer can start the next group's transaction and
//! fsync while the hub fans the previous group out and acks it.
//!
//! The channel between them is bounded: a hub that falls behind makes the
//! writer wait, and the storage queue in front of the writer then fills and
//! refuses with `overloaded`, as it would for a slow disk.

use super::{Committed, Pruned, Sink, StoreError, Submission};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Weak;
use std::thread::JoinHandle;

/// Groups that may wait for the hub.
const PENDING_GROUPS: usize = 16;

pub(super) enum Outcome<T> {
    Committed(Vec<Committed<T>>),
    Failed(Vec<Submission<T>>, StoreError),
    /// DMs removed from an inbox by `inbox_max_per_sender`.
    Pruned(Pruned),
}

/// The writer's end: sends outcomes in commit order.
pub(super) struct Forward<T> {
    outcomes: SyncSender<Outcome<T>>,
}

impl<T: Send + 'static> Forward<T> {
    /// Starts the delivering thread for `sink`.
    pub(super) fn start(sink: Weak<dyn Sink<T>>) -> std::io::Result<(Forward<T>, JoinHandle<()>)> {
        let (outcomes, receiver) = mpsc::sync_channel(PENDING_GROUPS);
        let thread =
            std::thread::Builder::new().name("storage-deliver".into()).spawn(move || deliver(&sink, receiver))?;
        Ok((Forward { outcomes }, thread))
    }

    /// Queues an outcome, waiting while the hub is `PENDING_GROUPS` behind.
    pub(super) fn send(&self, outcome: Outcome<T>) {
        if self.outcomes.send(outcome).is_err() {
            tracing::error!("the storage delivery thread is gone; a stored group is not fanned out");
        }
    }
}

fn deliver<T>(sink: &Weak<dyn Sink<T>>, outcomes: Receiver<Outcome<T>>) {
    for outcome in outcomes {
        let Some(sink) = sink.upgrade() else { continue };
        match outcome {
            Outcome::Committed(group) => sink.committed(group),
            Outcome::Failed(group, error) => sink.failed(group, &error),
            Outcome::Pruned(pruned) => sink.pruned(&pruned),
        }
    }
}
