//! The storage writer thread: the one place that assigns `seq`, writes,
//! fsyncs and trims.
//!
//! It takes whatever is queued (up to [`MAX_GROUP`]) as one group, assigns
//! each message the next `seq` of its log, and commits the group in one
//! transaction. In `always` mode that transaction's fsync is shared by every
//! message in it: while one fsync runs, the next group gathers, which is
//! group commit. Only after the commit does the [`Sink`] see the group, so a
//! message is fanned out and acked only once stored, and `seq` has no gaps:
//! a failed group consumes no `seq`.
//!
//! A backend that never waits on a device (memory) skips the queue: the
//! submitter takes the writer's lock and commits its one message in place,
//! and the sink sees it on the same thread (see `docs/ARCHITECTURE.md`,
//! "A memory commit happens where it is sent"). The thread then only
//! persists cursors, answers probes and runs retention while nobody sends.
//!
//! Retention runs here too, between groups, in steps of at most
//! [`TRIM_STEP`] messages, so a large trim never stalls publishers for long.
//! Besides the bounds by count and age, an inbox keeps only the newest
//! `inbox_max_per_sender` DMs of each sender, so one sender cannot push
//! everyone else's DMs out; what that removes is reported to the [`Sink`]
//! (counted and logged) and leaves a mark (`dropped_through`) that makes a
//! fetch from before it say `recovered: false`.

use super::deliver::{Forward, Outcome};
use super::{
    Backend, Catalog, Group, LogKey, LogKind, LogMeta, NewMessage, StoreError, SubmitError, SyncMode, WriterOptions,
};
use crate::util::{lock, unix_ms};
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most messages in one group commit.
const MAX_GROUP: usize = 4096;
/// Most messages deleted by one retention step.
const TRIM_STEP: u64 = 1000;
/// How often age retention looks at every log, at most (and at least
/// twice per the shortest age bound).
const AGE_SWEEP_EVERY: Duration = Duration::from_secs(5);

/// A message waiting to be stored.
#[derive(Debug)]
pub struct Submission<T> {
    pub key: LogKey,
    pub from: Arc<str>,
    pub body: Box<RawValue>,
    /// Returned with the commit (who to ack).
    pub ticket: T,
}

/// A stored message, handed to the [`Sink`] in `seq` order per log.
#[derive(Debug)]
pub struct Committed<T> {
    pub key: LogKey,
    pub log: u64,
    pub epoch: u64,
    pub seq: u64,
    pub ts: u64,
    pub from: Arc<str>,
    pub body: Box<RawValue>,
    pub ticket: T,
}

/// DMs an inbox no longer holds because their sender has newer ones there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub inbox: Arc<str>,
    pub sender: Arc<str>,
    /// How many were removed, and the newest `seq` among them.
    pub removed: u64,
    pub through: u64,
}

/// Receives the outcome of every group, on the writer thread.
pub trait Sink<T>: Send + Sync {
    /// The group is stored: fan it out and ack it, in order.
    fn committed(&self, group: Vec<Committed<T>>);
    /// The group could not be stored; nothing of it was.
    fn failed(&self, group: Vec<Submission<T>>, error: &StoreError);
    /// Stored DMs were removed by `inbox_max_per_sender`.
    fn pruned(&self, pruned: &Pruned);
}

/// Who waits for a write probe's outcome.
pub type ProbeAnswer = Box<dyn FnOnce(Result<(), String>) + Send>;

pub(super) enum Input<T> {
    Append(Submission<T>),
    /// An inbox cursor moved; persist it with the next group.
    Cursor(Arc<str>),
    /// `/readyz` asks whether the backend can write; answered after the
    /// group gathered with it is committed.
    Probe(ProbeAnswer),
}

pub(super) struct Writer<T> {
    backend: Box<dyn Backend>,
    options: WriterOptions,
    catalog: Arc<Mutex<Catalog>>,
    sink: Forward<T>,
    next_log_id: u64,
    /// Logs over their count bound after a commit, still to be trimmed.
    over_count: HashSet<LogKey>,
    /// Inboxes and senders that may be over `inbox_max_per_sender`.
    over_sender: HashSet<(Arc<str>, Arc<str>)>,
    dirty_cursors: HashSet<Arc<str>>,
    unsynced_since: Option<Instant>,
    last_age_sweep: Instant,
    /// Body bytes waiting in the channel (the hub's bound on them).
    queued_bytes: Arc<AtomicUsize>,
    /// Storage is closing: no more commits in place.
    closed: bool,
}

impl<T> std::fmt::Debug for Writer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Writer<T> {
    pub(super) fn new(
        backend: Box<dyn Backend>,
        options: WriterOptions,
        catalog: Arc<Mutex<Catalog>>,
        sink: Forward<T>,
        queued_bytes: Arc<AtomicUsize>,
    ) -> Self {
        let next_log_id = lock(&catalog).iter().map(|(_, _, meta)| meta.id).max().unwrap_or(0) + 1;
        Writer {
            backend,
            options,
            catalog,
            sink,
            next_log_id,
            over_count: HashSet::new(),
            over_sender: HashSet::new(),
            dirty_cursors: HashSet::new(),
            unsynced_since: None,
            last_age_sweep: Instant::now(),
            queued_bytes,
            closed: false,
        }
    }

    /// Runs until every sender is gone, then commits what is left, syncs
    /// and returns. The writer sits behind `shared`'s lock: with a backend
    /// that commits in place, submitters commit through it too
    /// ([`Writer::commit_in_place`]), and this thread keeps the rest
    /// (cursors, probes, retention and batch fsyncs when idle).
    pub(super) fn run(shared: Arc<Mutex<Self>>, receiver: Receiver<Input<T>>) {
        loop {
            let wait = lock(&shared).idle_wait();
            let first = match receiver.recv_timeout(wait) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            lock(&shared).take(first, &receiver);
        }
        let mut writer = lock(&shared);
        if !writer.dirty_cursors.is_empty() {
            writer.commit(Vec::new());
        }
        if let Err(error) = writer.backend.sync() {
            tracing::error!(%error, "final storage sync failed");
        }
    }

    /// Commits `first` and whatever else is queued (up to [`MAX_GROUP`])
    /// as one group, answers the probes among them, then housekeeping.
    fn take(&mut self, first: Option<Input<T>>, receiver: &Receiver<Input<T>>) {
        let mut group = Vec::new();
        let mut probes = Vec::new();
        for input in first.into_iter().chain(std::iter::from_fn(|| receiver.try_recv().ok())) {
            match input {
                Input::Append(submission) => {
                    self.queued_bytes.fetch_sub(submission.body.get().len(), Ordering::AcqRel);
                    group.push(submission);
                }
                Input::Cursor(user) => {
                    self.dirty_cursors.insert(user);
                }
                Input::Probe(answer) => probes.push(answer),
            }
            if group.len() >= MAX_GROUP {
                break;
            }
        }
        if !group.is_empty() || !self.dirty_cursors.is_empty() {
            self.commit(group);
        }
        self.answer_probes(probes);
        self.housekeeping();
    }

    /// Commits one message on the caller's thread, its outcome handed to
    /// the sink before this returns (a backend that commits in place).
    pub(super) fn commit_in_place(&mut self, submission: Submission<T>) -> Result<(), SubmitError> {
        if self.closed {
            return Err(SubmitError::Closed);
        }
        self.commit(vec![submission]);
        self.housekeeping();
        Ok(())
    }

    /// Refuses every later [`Writer::commit_in_place`].
    pub(super) fn close(&mut self) {
        self.closed = true;
    }

    /// Runs one write probe for every probe that arrived with the last group.
    fn answer_probes(&mut self, probes: Vec<ProbeAnswer>) {
        if probes.is_empty() {
            return;
        }
        let outcome = self.backend.probe();
        if let Err(error) = &outcome {
            tracing::error!(%error, "storage write probe failed: /readyz answers 503");
        }
        let outcome = outcome.map_err(|error| error.to_string());
        for answer in probes {
            answer(outcome.clone());
        }
    }

    /// How long to wait for input before housekeeping is due.
    fn idle_wait(&self) -> Duration {
        let mut wait = self.age_sweep_every().saturating_sub(self.last_age_sweep.elapsed());
        if !self.over_count.is_empty() || !self.over_sender.is_empty() {
            wait = Duration::ZERO;
        }
        if let Some(since) = self.unsynced_since {
            wait = wait.min(self.options.batch_interval.saturating_sub(since.elapsed()));
        }
        wait
    }

    /// Assigns `seq`s, commits, and hands the group to the sink.
    fn commit(&mut self, group: Vec<Submission<T>>) {
        let (touched, new_logs, assigned) = self.assign(&group);
        let cursors: Vec<(u64, u64)> = {
            let catalog = lock(&self.catalog);
            let metas = self.dirty_cursors.iter().filter_map(|user| catalog.get(LogKind::Inbox, user));
            metas.map(|meta| (meta.id, meta.delivered)).collect()
        };
        let messages: Vec<NewMessage<'_>> = group
            .iter()
            .zip(&assigned)
            .map(|(submission, &(log, _, seq, ts))| NewMessage {
                log,
                seq,
                ts,
                from: &submission.from,
                body: &submission.body,
            })
            .collect();
        let result = self.backend.commit(&Group { new_logs: &new_logs, messages: &messages, cursors: &cursors });
        drop(messages);
        match result {
            Ok(()) => self.after_commit(group, assigned, touched),
            Err(error) => {
                tracing::error!(%error, messages = group.len(), "storage commit failed; the group is refused");
                // Logs created by the failed group do not exist: reuse nothing.
                self.sink.send(Outcome::Failed(group, error));
            }
        }
    }

    /// Gives every message the next `seq` (and a non-decreasing `ts`) of its
    /// log, creating logs as needed. Returns the touched logs' new state,
    /// the logs created, and `(log, epoch, seq, ts)` per message.
    #[allow(clippy::type_complexity)]
    fn assign(
        &mut self,
        group: &[Submission<T>],
    ) -> (HashMap<LogKey, LogMeta>, Vec<(LogKey, LogMeta)>, Vec<(u64, u64, u64, u64)>) {
        let now = unix_ms();
        let mut touched: HashMap<LogKey, LogMeta> = HashMap::new();
        let mut new_logs = Vec::new();
        let mut assigned = Vec::with_capacity(group.len());
        let catalog = lock(&self.catalog);
        for submission in group {
            let meta = touched.entry(submission.key.clone()).or_insert_with(|| {
                catalog.get(submission.key.kind, &submission.key.name).unwrap_or_else(|| {
                    let meta = LogMeta::new(self.next_log_id, super::new_epoch());
                    self.next_log_id += 1;
                    new_logs.push((submission.key.clone(), meta));
                    meta
                })
            });
            meta.last_seq += 1;
            meta.last_ts = meta.last_ts.max(now);
            if meta.first_ts == 0 {
                meta.first_ts = meta.last_ts;
            }
            assigned.push((meta.id, meta.epoch, meta.last_seq, meta.last_ts));
        }
        (touched, new_logs, assigned)
    }

    fn after_commit(
        &mut self,
        group: Vec<Submission<T>>,
        assigned: Vec<(u64, u64, u64, u64)>,
        touched: HashMap<LogKey, LogMeta>,
    ) {
        self.dirty_cursors.clear();
        if self.options.sync == SyncMode::Batch && !assigned.is_empty() && self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
        {
            let mut catalog = lock(&self.catalog);
            for (key, meta) in &touched {
                // The hub moves these two; keep what it set.
                let (delivered, fanned_out) =
                    catalog.get(key.kind, &key.name).map_or((0, 0), |current| (current.delivered, current.fanned_out));
                catalog.insert(key, LogMeta { delivered: delivered.max(meta.delivered), fanned_out, ..*meta });
                if meta.retained() > self.max_messages(key.kind) {
                    self.over_count.insert(key.clone());
                }
            }
        }
        // An inbox with more DMs than one sender may keep may hold too many of someone's.
        let per_sender = self.options.inbox_max_per_sender;
        for submission in group.iter().filter(|submission| submission.key.kind == LogKind::Inbox) {
            let retained = touched.get(&submission.key).map_or(0, LogMeta::retained);
            if per_sender > 0 && retained > per_sender {
                self.over_sender.insert((Arc::clone(&submission.key.name), Arc::clone(&submission.from)));
            }
        }
        let committed = group
            .into_iter()
            .zip(assigned)
            .map(|(submission, (log, epoch, seq, ts))| Committed {
                key: submission.key,
                log,
                epoch,
                seq,
                ts,
                from: submission.from,
                body: submission.body,
                ticket: submission.ticket,
            })
            .collect::<Vec<_>>();
        if !committed.is_empty() {
            self.sink.send(Outcome::Committed(committed));
        }
    }

    fn max_messages(&self, kind: LogKind) -> u64 {
        match kind {
            LogKind::Room => self.options.room_max_messages,
            LogKind::Inbox => self.options.inbox_max_messages,
        }
    }

    fn max_age(&self, kind: LogKind) -> Duration {
        match kind {
            LogKind::Room => self.options.room_max_age,
            LogKind::Inbox => self.options.inbox_max_age,
        }
    }

    /// Batch-mode fsync, one count-retention step per log over its bound,
    /// and the periodic age sweep.
    fn housekeeping(&mut self) {
        if let Some(since) = self.unsynced_since {
            if since.elapsed() >= self.options.batch_interval {
                match self.backend.sync() {
                    Ok(()) => self.unsynced_since = None,
                    Err(error) => tracing::error!(%error, "batch fsync failed; retrying"),
                }
            }
        }
        for key in std::mem::take(&mut self.over_count) {
            let Some(meta) = lock(&self.catalog).get(key.kind, &key.name) else { continue };
            let excess = meta.retained().saturating_sub(self.max_messages(key.kind));
            if excess > 0 {
                let through = meta.first_seq - 1 + excess.min(TRIM_STEP);
                self.trim(&key, meta.id, through);
                if excess > TRIM_STEP {
                    self.over_count.insert(key);
                }
            }
        }
        for (inbox, sender) in std::mem::take(&mut self.over_sender) {
            self.trim_sender(inbox, sender);
        }
        if self.last_age_sweep.elapsed() >= self.age_sweep_every() {
            self.last_age_sweep = Instant::now();
            self.sweep_expired();
        }
    }

    /// Removes `sender`'s DMs in `inbox` but the newest `inbox_max_per_sender`.
    fn trim_sender(&mut self, inbox: Arc<str>, sender: Arc<str>) {
        let Some(meta) = lock(&self.catalog).get(LogKind::Inbox, &inbox) else { return };
        let trimmed = match self.backend.trim_sender(meta.id, &sender, self.options.inbox_max_per_sender) {
            Ok(trimmed) if trimmed.removed > 0 => trimmed,
            Ok(_) => return,
            Err(error) => return tracing::error!(%error, log = meta.id, "per-sender inbox retention failed"),
        };
        if let Some(meta) = lock(&self.catalog).get_mut(LogKind::Inbox, &inbox) {
            meta.removed(trimmed.removed, trimmed.oldest);
            meta.dropped_through = meta.dropped_through.max(trimmed.through);
        }
        let pruned = Pruned { inbox, sender, removed: trimmed.removed, through: trimmed.through };
        self.sink.send(Outcome::Pruned(pruned));
    }

    fn age_sweep_every(&self) -> Duration {
        let shortest = self.options.room_max_age.min(self.options.inbox_max_age);
        (shortest / 2).clamp(Duration::from_millis(10), AGE_SWEEP_EVERY)
    }

    /// Age retention: one step for every log whose oldest message expired.
    fn sweep_expired(&mut self) {
        let now = unix_ms();
        let expired: Vec<(LogKey, LogMeta, u64)> = lock(&self.catalog)
            .iter()
            .filter_map(|(kind, name, meta)| {
                let cutoff = now.saturating_sub(self.max_age(kind).as_millis() as u64);
                let key = LogKey { kind, name: Arc::clone(name) };
                (meta.retained() > 0 && meta.first_ts < cutoff).then_some((key, *meta, cutoff))
            })
            .collect();
        for (key, meta, cutoff) in expired {
            match self.backend.expired_through(meta.id, cutoff, TRIM_STEP as usize) {
                Ok(Some(through)) => self.trim(&key, meta.id, through),
                Ok(None) => {}
                Err(error) => tracing::error!(%error, log = meta.id, "age retention scan failed"),
            }
        }
    }

    fn trim(&mut self, key: &LogKey, log: u64, through: u64) {
        match self.backend.trim(log, through) {
            Ok(trimmed) => {
                let mut catalog = lock(&self.catalog);
                if let Some(meta) = catalog.get_mut(key.kind, &key.name) {
                    meta.removed(trimmed.removed, trimmed.oldest);
                }
            }
            Err(error) => tracing::error!(%error, log, through, "retention trim failed"),
        }
    }
}
