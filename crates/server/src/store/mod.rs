//! Durable message storage: every room's history and every user's DM
//! inbox, each an append-only *log* with a gapless `seq` and an `epoch`.
//!
//! The module owns three things:
//! - the [`Backend`] and [`Reader`] traits, implemented by SQLite (the
//!   default, [`sqlite`]) and by memory ([`memory`]);
//! - the [`Catalog`]: what the server keeps in memory about every log
//!   (epoch, first and last `seq`), so that `join`, `hello` and `history`
//!   decide `recovered` without touching the disk;
//! - the writer thread ([`writer`]): the only place that assigns `seq`,
//!   writes, fsyncs (group commit) and enforces retention. It hands every
//!   committed group to a [`Sink`] (the local broker's, which passes it on
//!   to the hub: fan-out, then the ack).
//!
//! The traits are blocking and batch-shaped: a group commit is one call,
//! which a Redis backend maps onto one `MULTI`/`EXEC` pipeline, and reads
//! are ranges by `seq` (`XRANGE`/`XREVRANGE`).

mod deliver;
pub mod memory;
pub mod sqlite;
mod writer;

use crate::util::lock;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

pub use writer::{Committed, ProbeAnswer, Pruned, Sink, Submission};

/// Which kind of log: a room's history or a user's inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    Room,
    Inbox,
}

impl LogKind {
    /// The number stored on disk.
    pub fn code(self) -> i64 {
        match self {
            LogKind::Room => 0,
            LogKind::Inbox => 1,
        }
    }

    pub fn from_code(code: i64) -> Option<LogKind> {
        match code {
            0 => Some(LogKind::Room),
            1 => Some(LogKind::Inbox),
            _ => None,
        }
    }
}

/// A log's identity: a room name or a user name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogKey {
    pub kind: LogKind,
    pub name: Arc<str>,
}

impl LogKey {
    /// A room's history.
    pub fn room(name: &str) -> Self {
        LogKey { kind: LogKind::Room, name: Arc::from(name) }
    }
}

/// What the server keeps in memory about one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogMeta {
    /// Storage id, unique across kinds.
    pub id: u64,
    /// Changes whenever the log's history is lost or reset.
    pub epoch: u64,
    /// Oldest retained `seq`; `last_seq + 1` when nothing is retained.
    pub first_seq: u64,
    /// `ts` of the oldest retained message (0 when none).
    pub first_ts: u64,
    /// Newest committed `seq` (0 before the first message).
    pub last_seq: u64,
    /// `ts` of the newest message, so `ts` never goes backwards in a log.
    pub last_ts: u64,
    /// Inboxes: the newest `seq` queued to one of the user's connections.
    pub delivered: u64,
    /// The newest `seq` the hub has fanned out. Every message up to it
    /// reached the members of that moment; every later one will reach the
    /// members of when it is fanned out. A replay stops here.
    pub fanned_out: u64,
    /// Messages missing between `first_seq` and `last_seq`: inbox DMs
    /// removed by `storage.inbox_max_per_sender` (rooms have none).
    pub holes: u64,
    /// The newest `seq` such a removal took (0: none), so that a fetch
    /// from before it says `recovered: false`.
    pub dropped_through: u64,
}

impl LogMeta {
    /// A new, empty log.
    pub fn new(id: u64, epoch: u64) -> Self {
        LogMeta {
            id,
            epoch,
            first_seq: 1,
            first_ts: 0,
            last_seq: 0,
            last_ts: 0,
            delivered: 0,
            fanned_out: 0,
            holes: 0,
            dropped_through: 0,
        }
    }

    /// How many messages are retained.
    pub fn retained(&self) -> u64 {
        (self.last_seq + 1).saturating_sub(self.first_seq).saturating_sub(self.holes)
    }

    /// Records that `removed` messages were deleted and the oldest left is
    /// `oldest` (none: the log is empty): `first_seq` moves up and the
    /// holes it passes are no longer holes.
    pub fn removed(&mut self, removed: u64, oldest: Option<(u64, u64)>) {
        let (first_seq, first_ts) = oldest.unwrap_or((self.last_seq + 1, 0));
        let first_seq = self.first_seq.max(first_seq);
        self.holes = (self.holes + removed).saturating_sub(first_seq - self.first_seq);
        (self.first_seq, self.first_ts) = (first_seq, first_ts);
    }
}

/// What a deletion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trimmed {
    /// Messages deleted.
    pub removed: u64,
    /// The newest `seq` deleted (0: none).
    pub through: u64,
    /// `(seq, ts)` of the oldest message left, if any.
    pub oldest: Option<(u64, u64)>,
}

/// A stored message, read back.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub seq: u64,
    pub ts: u64,
    pub from: String,
    pub body: Box<RawValue>,
}

/// A message to write, its `seq` already assigned.
#[derive(Debug)]
pub struct NewMessage<'a> {
    pub log: u64,
    pub seq: u64,
    pub ts: u64,
    pub from: &'a str,
    /// The body as the client sent it (valid JSON).
    pub body: &'a RawValue,
}

/// Everything one group commit writes, atomically.
#[derive(Debug)]
pub struct Group<'a> {
    /// Logs created by this group.
    pub new_logs: &'a [(LogKey, LogMeta)],
    pub messages: &'a [NewMessage<'a>],
    /// `(log, delivered)` of inboxes whose delivery cursor moved.
    pub cursors: &'a [(u64, u64)],
}

/// A storage engine, driven by the writer thread alone.
pub trait Backend: Send {
    /// Every log's metadata, read once at start.
    fn load(&mut self) -> Result<Vec<(LogKey, LogMeta)>, StoreError>;
    /// Writes one group in one transaction. Returns once it is as durable
    /// as the backend's sync mode promises.
    fn commit(&mut self, group: &Group<'_>) -> Result<(), StoreError>;
    /// Deletes `log`'s messages with `seq <= through`.
    fn trim(&mut self, log: u64, through: u64) -> Result<Trimmed, StoreError>;
    /// Deletes `sender`'s messages in `log` but the newest `keep` (at least 1).
    fn trim_sender(&mut self, log: u64, sender: &str, keep: u64) -> Result<Trimmed, StoreError>;
    /// Among `log`'s `scan` oldest messages, the newest `seq` older than
    /// `cutoff_ms` (what age retention may delete).
    fn expired_through(&mut self, log: u64, cutoff_ms: u64, scan: usize) -> Result<Option<u64>, StoreError>;
    /// Forces everything committed so far to stable storage (`batch` mode).
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Proves the backend can still write (`/readyz`): what a commit needs,
    /// made durable as the sync mode promises, or the error that stops it.
    /// Memory always can.
    fn probe(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// A reader that may be used from any thread while the writer writes.
    fn reader(&self) -> Arc<dyn Reader>;
    /// Whether a commit is quick enough, and free of any wait on a device,
    /// to run on the submitter's thread instead of the writer's: no fsync to
    /// share, so a group commit would buy nothing for two thread hops.
    fn commits_in_place(&self) -> bool {
        false
    }
}

/// Range reads, safe to run concurrently with the writer (blocking: call
/// them from `spawn_blocking`).
pub trait Reader: Send + Sync + std::fmt::Debug {
    /// Up to `limit` messages with `seq > after`, oldest first.
    fn after(&self, log: u64, after: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError>;
    /// Up to `limit` messages with `seq < before`, oldest first (the newest
    /// `limit` of them).
    fn before(&self, log: u64, before: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError>;
}

/// Storage failures. None of these reach the wire as text: sessions answer
/// `storage_failed` and the details go to the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use data directory {path}: {error}")]
    Directory { path: PathBuf, error: std::io::Error },
    #[error("data directory {path} is in use by another switchboard process")]
    Locked { path: PathBuf },
    #[error("{path} is not a usable switchboard database: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("stored message {log}/{seq} has an invalid body: {why}")]
    BadRow { log: u64, seq: u64, why: String },
    #[error("fsync failed: {0}")]
    Sync(std::io::Error),
    #[error("the storage writer has stopped")]
    Stopped,
    #[error("the cluster's Redis: {0}")]
    Broker(String),
    #[error("log {log} is not subscribed on this node")]
    Unsubscribed { log: u64 },
}

crate::util::from_cause!(StoreError, StoreError::Sqlite, rusqlite::Error);

/// When a commit reaches stable storage. See `docs/ARCHITECTURE.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// fsync before the ack; concurrent sends share one fsync.
    #[default]
    Always,
    /// fsync at least every `batch_interval`; acks do not wait for it.
    Batch,
    /// Never fsync on our account; the OS writes back when it likes.
    None,
}

/// Retention and writer settings.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub sync: SyncMode,
    pub batch_interval: Duration,
    pub room_max_messages: u64,
    pub room_max_age: Duration,
    pub inbox_max_messages: u64,
    pub inbox_max_age: Duration,
    /// DMs from one sender an inbox keeps, the newest (0: no such bound).
    pub inbox_max_per_sender: u64,
    /// Submissions that may wait for the writer; more are refused.
    pub queue_capacity: usize,
    /// Body bytes that may wait for the writer; more are refused.
    pub queue_bytes: usize,
}

/// The in-memory index of every log, shared by the hub and the writer.
#[derive(Debug, Default)]
pub struct Catalog {
    rooms: HashMap<Arc<str>, LogMeta>,
    inboxes: HashMap<Arc<str>, LogMeta>,
}

impl Catalog {
    fn map(&self, kind: LogKind) -> &HashMap<Arc<str>, LogMeta> {
        match kind {
            LogKind::Room => &self.rooms,
            LogKind::Inbox => &self.inboxes,
        }
    }

    fn map_mut(&mut self, kind: LogKind) -> &mut HashMap<Arc<str>, LogMeta> {
        match kind {
            LogKind::Room => &mut self.rooms,
            LogKind::Inbox => &mut self.inboxes,
        }
    }

    pub fn get(&self, kind: LogKind, name: &str) -> Option<LogMeta> {
        self.map(kind).get(name).copied()
    }

    fn insert(&mut self, key: &LogKey, meta: LogMeta) {
        self.map_mut(key.kind).insert(Arc::clone(&key.name), meta);
    }

    fn get_mut(&mut self, kind: LogKind, name: &str) -> Option<&mut LogMeta> {
        self.map_mut(kind).get_mut(name)
    }

    fn iter(&self) -> impl Iterator<Item = (LogKind, &Arc<str>, &LogMeta)> {
        let rooms = self.rooms.iter().map(|(name, meta)| (LogKind::Room, name, meta));
        rooms.chain(self.inboxes.iter().map(|(name, meta)| (LogKind::Inbox, name, meta)))
    }

    /// How many logs exist.
    pub fn len(&self) -> usize {
        self.rooms.len() + self.inboxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The hub's handle on storage: submit writes, read the catalog, read
/// ranges. `T` is what the hub needs back after a commit (who to ack).
#[derive(Debug)]
pub struct Storage<T: Send + 'static> {
    catalog: Arc<Mutex<Catalog>>,
    reader: Arc<dyn Reader>,
    /// Read-locked by every submit, write-locked once to close.
    sender: RwLock<Option<SyncSender<writer::Input<T>>>>,
    /// The writer, then the delivering thread: joined in that order.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The writer itself, when its backend commits in place: submitters
    /// commit through it instead of queueing.
    in_place: Option<Arc<Mutex<writer::Writer<T>>>>,
    /// Body bytes queued for the writer, and their bound.
    queued_bytes: Arc<AtomicUsize>,
    queue_bytes: usize,
}

/// Why a write was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the storage queue is full")]
    Busy,
    #[error("storage is closed")]
    Closed,
}

/// A backend whose catalog is loaded, ready to start its writer.
#[derive(Debug)]
pub struct Loaded {
    backend: Box<dyn Backend>,
    catalog: Catalog,
}

impl std::fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backend")
    }
}

impl Loaded {
    /// Reads every log's metadata from `backend`.
    pub fn load(mut backend: Box<dyn Backend>) -> Result<Loaded, StoreError> {
        let mut catalog = Catalog::default();
        for (key, meta) in backend.load()? {
            catalog.insert(&key, meta);
        }
        Ok(Loaded { backend, catalog })
    }

    /// Starts the writer thread, which reports commits to `sink` (through
    /// a delivering thread, unless the backend commits in place).
    pub fn start<T: Send + 'static>(self, options: WriterOptions, sink: Arc<dyn Sink<T>>) -> Storage<T> {
        let catalog = Arc::new(Mutex::new(self.catalog));
        let reader = self.backend.reader();
        let in_place = self.backend.commits_in_place();
        let (sender, receiver) = mpsc::sync_channel(options.queue_capacity);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let queue_bytes = options.queue_bytes;
        let forward = match in_place {
            true => Ok((deliver::Forward::in_place(sink), None)),
            false => deliver::Forward::start(sink).map(|(forward, deliverer)| (forward, Some(deliverer))),
        };
        let started = forward.and_then(|(forward, deliverer)| {
            let writer =
                writer::Writer::new(self.backend, options, Arc::clone(&catalog), forward, Arc::clone(&queued_bytes));
            let writer = Arc::new(Mutex::new(writer));
            let shared = Arc::clone(&writer);
            let name = "storage-writer".to_owned();
            let thread = std::thread::Builder::new().name(name).spawn(move || writer::Writer::run(shared, receiver))?;
            Ok((writer, std::iter::once(thread).chain(deliverer).collect()))
        });
        let (sender, in_place, threads) = match started {
            Ok((writer, threads)) => (Some(sender), in_place.then_some(writer), threads),
            Err(error) => {
                tracing::error!(%error, "cannot start the storage threads; every send will fail");
                (None, None, Vec::new())
            }
        };
        Storage {
            catalog,
            reader,
            sender: RwLock::new(sender),
            threads: Mutex::new(threads),
            in_place,
            queued_bytes,
            queue_bytes,
        }
    }
}

impl<T: Send + 'static> Storage<T> {
    /// Queues a message for the next group commit, or, when the backend
    /// commits in place, commits it and hands it to the sink before
    /// returning. The caller holds no lock the sink takes.
    pub fn submit(&self, submission: Submission<T>) -> Result<(), SubmitError> {
        if let Some(writer) = &self.in_place {
            return lock(writer).commit_in_place(submission);
        }
        let bytes = submission.body.get().len();
        if self.queued_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes > self.queue_bytes {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(SubmitError::Busy);
        }
        let sender = self.sender.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = match sender.as_ref() {
            Some(sender) => sender.try_send(writer::Input::Append(submission)).map_err(|error| match error {
                TrySendError::Full(_) => SubmitError::Busy,
                TrySendError::Disconnected(_) => SubmitError::Closed,
            }),
            None => Err(SubmitError::Closed),
        };
        if result.is_err() {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
        result
    }

    /// Queues a write probe behind what the writer has to do; `answer`
    /// gets the backend's [`Backend::probe`] outcome on the writer thread.
    pub fn probe(&self, answer: writer::ProbeAnswer) -> Result<(), SubmitError> {
        let sender = self.sender.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        match sender.as_ref() {
            Some(sender) => sender.try_send(writer::Input::Probe(answer)).map_err(|error| match error {
                TrySendError::Full(_) => SubmitError::Busy,
                TrySendError::Disconnected(_) => SubmitError::Closed,
            }),
            None => Err(SubmitError::Closed),
        }
    }

    /// The log's metadata, if it exists.
    pub fn meta(&self, kind: LogKind, name: &str) -> Option<LogMeta> {
        lock(&self.catalog).get(kind, name)
    }

    /// Records that messages of a log through `seq` were fanned out. The
    /// caller holds the lock that orders fan-out with membership (the room's
    /// or the directory's, the users directory for inboxes).
    pub fn mark_fanned_out(&self, kind: LogKind, name: &str, seq: u64) {
        if let Some(meta) = lock(&self.catalog).get_mut(kind, name) {
            meta.fanned_out = meta.fanned_out.max(seq);
        }
    }

    /// Records that an inbox's messages through `seq` were queued to one of
    /// its user's connections (persisted with the next group).
    pub fn mark_delivered(&self, user: &str, seq: u64) {
        let mut catalog = lock(&self.catalog);
        if let Some(meta) = catalog.get_mut(LogKind::Inbox, user) {
            if meta.delivered < seq {
                meta.delivered = seq;
                drop(catalog);
                if let Some(sender) = self.sender.read().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref() {
                    // A full queue only delays persisting the cursor.
                    let _ = sender.try_send(writer::Input::Cursor(Arc::from(user)));
                }
            }
        }
    }

    pub fn reader(&self) -> Arc<dyn Reader> {
        Arc::clone(&self.reader)
    }

    /// How many logs exist.
    pub fn log_count(&self) -> usize {
        lock(&self.catalog).len()
    }

    /// Commits what is queued, syncs, and stops the writer. Later
    /// submissions fail with [`SubmitError::Closed`].
    pub fn close(&self) {
        drop(self.sender.write().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
        if let Some(writer) = &self.in_place {
            // Waits for a commit in progress; none starts after it.
            lock(writer).close();
        }
        // The writer commits what is queued and drops its end of the
        // delivery channel; the delivering thread then hands over the rest.
        for thread in std::mem::take(&mut *lock(&self.threads)) {
            if thread.join().is_err() {
                tracing::error!("a storage thread panicked");
            }
        }
    }
}

/// A fresh epoch: random, non-zero, below 2^53 so JavaScript reads it exactly.
pub fn new_epoch() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
        bytes = (nanos as u64).to_le_bytes();
    }
    (u64::from_le_bytes(bytes) & ((1 << 53) - 1)).max(1)
}

#[cfg(test)]
mod tests;
