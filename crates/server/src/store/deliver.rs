//! Hands the writer's outcomes to the [`Sink`], in commit order, one of two
//! ways:
//! - on a thread of its own ([`Forward::start`]), so the writer can start
//!   the next group's transaction and fsync while the hub fans the previous
//!   group out and acks it (SQLite);
//! - in place ([`Forward::in_place`]), on the thread that committed, when
//!   the backend never waits on a device ([`Backend::commits_in_place`](super::Backend::commits_in_place)):
//!   there is no fsync to overlap, and a hop to another thread would cost
//!   more than the fan-out it moves.
//!
//! The channel to the delivering thread is bounded: a hub that falls behind
//! makes the writer wait, and the storage queue in front of the writer then
//! fills and refuses with `overloaded`, as it would for a slow disk.

use super::{Committed, Pruned, Sink, StoreError, Submission};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Groups that may wait for the hub.
const PENDING_GROUPS: usize = 16;

pub(super) enum Outcome<T> {
    Committed(Vec<Committed<T>>),
    Failed(Vec<Submission<T>>, StoreError),
    /// DMs removed from an inbox by `inbox_max_per_sender`.
    Pruned(Pruned),
}

/// The writer's end: passes outcomes on in commit order.
pub(super) enum Forward<T> {
    /// To the delivering thread.
    Thread(SyncSender<Outcome<T>>),
    /// Straight to the sink, on the caller's thread.
    InPlace(Arc<dyn Sink<T>>),
}

impl<T: Send + 'static> Forward<T> {
    /// Starts the delivering thread for `sink`.
    pub(super) fn start(sink: Arc<dyn Sink<T>>) -> std::io::Result<(Forward<T>, JoinHandle<()>)> {
        let (outcomes, receiver) = mpsc::sync_channel(PENDING_GROUPS);
        let thread =
            std::thread::Builder::new().name("storage-deliver".into()).spawn(move || deliver(&sink, receiver))?;
        Ok((Forward::Thread(outcomes), thread))
    }

    /// Hands every outcome to `sink` at once, on the committing thread.
    pub(super) fn in_place(sink: Arc<dyn Sink<T>>) -> Forward<T> {
        Forward::InPlace(sink)
    }

    /// Passes an outcome on; to a thread, waiting while the hub is
    /// `PENDING_GROUPS` behind.
    pub(super) fn send(&self, outcome: Outcome<T>) {
        match self {
            Forward::Thread(outcomes) => {
                if outcomes.send(outcome).is_err() {
                    tracing::error!("the storage delivery thread is gone; a stored group is not fanned out");
                }
            }
            Forward::InPlace(sink) => hand(sink, outcome),
        }
    }
}

fn deliver<T>(sink: &Arc<dyn Sink<T>>, outcomes: Receiver<Outcome<T>>) {
    for outcome in outcomes {
        hand(sink, outcome);
    }
}

fn hand<T>(sink: &Arc<dyn Sink<T>>, outcome: Outcome<T>) {
    match outcome {
        Outcome::Committed(group) => sink.committed(group),
        Outcome::Failed(group, error) => sink.failed(group, &error),
        Outcome::Pruned(pruned) => sink.pruned(&pruned),
    }
}
