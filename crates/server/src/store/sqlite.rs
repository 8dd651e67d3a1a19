//! The embedded SQLite backend (the default): one database file in WAL
//! mode inside the data directory, written by the writer thread alone and
//! read by a small pool of reading connections (`query_only`).
//!
//! Durability per sync mode (the promises are in `docs/ARCHITECTURE.md`):
//! `always` runs with `synchronous=FULL`, so every commit fsyncs the WAL;
//! `batch` and `none` run with `synchronous=NORMAL`, and `batch` fsyncs the
//! WAL file itself every `batch_interval`.

use super::{Backend, Group, LogKey, LogKind, LogMeta, Reader, StoreError, StoredMessage, SyncMode, Trimmed};
use crate::util::lock;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::value::RawValue;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "switchboard.sqlite3";
/// Held (with an exclusive `flock`) by the process using the directory.
pub const LOCK_FILE: &str = "LOCK";
/// `BOOT_ID SYNC_MODE running|clean`: how the last run ended.
pub const STATE_FILE: &str = "STATE";
/// Written and removed by every write probe (`/readyz`).
const PROBE_FILE: &str = "READY-PROBE";
/// `PRAGMA user_version` of the schema below. Version 1 lacked
/// `logs.dropped_through`, which opening adds.
const SCHEMA_VERSION: i64 = 2;
/// Page size of a new database. Every room appends at its own place in the
/// table, so a group commit dirties one tail page per room and the WAL
/// takes whole pages: 1 KiB pages write a quarter of what the 4 KiB default
/// does for small messages (measured in docs/BENCHMARKS.md).
const PAGE_SIZE: u32 = 1024;
/// WAL pages (about 40 MiB) between checkpoints. A checkpoint runs inside
/// a commit on the writer thread; rarer ones let a page rewritten by many
/// groups be copied to the database once.
const CHECKPOINT_PAGES: u32 = 40_000;
/// Idle reader connections kept for reuse.
const READER_POOL: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    name TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    dropped_through INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, name)
);
CREATE TABLE IF NOT EXISTS messages (
    log INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (log, seq)
) WITHOUT ROWID;
";

/// The SQLite backend over one data directory.
#[derive(Debug)]
pub struct Sqlite {
    path: PathBuf,
    db: Connection,
    /// The WAL file, fsynced directly in `batch` mode. Opened for each
    /// sync: SQLite deletes it when the last connection closes cleanly and
    /// creates it again at the first write.
    wal: Option<PathBuf>,
    reader: Arc<SqliteReader>,
    /// Where `STATE` is written; `None` for offline tools, which leave it.
    state: Option<(PathBuf, String)>,
    /// Keeps the directory's lock for as long as the backend lives.
    _lock: File,
}

/// This boot of the machine (changes at every reboot).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_or_else(|_| "unknown".into(), |id| id.trim().into())
}

fn sync_name(sync: SyncMode) -> &'static str {
    match sync {
        SyncMode::Always => "always",
        SyncMode::Batch => "batch",
        SyncMode::None => "none",
    }
}

/// Whether the previous run may have lost acked messages: it did not stop
/// cleanly, did not fsync every commit, and the machine rebooted since.
fn tail_may_be_lost(previous: &str, boot: &str) -> bool {
    let fields: Vec<&str> = previous.split_whitespace().collect();
    matches!(fields[..], [was_boot, sync, "running"] if sync != "always" && was_boot != boot)
}

fn write_state(path: &Path, line: &str) -> std::io::Result<()> {
    let file = File::create(path)?;
    std::io::Write::write_all(&mut &file, line.as_bytes())?;
    file.sync_all()
}

/// Takes the data directory's lock file, creating the directory if needed.
pub fn lock_directory(dir: &Path) -> Result<File, StoreError> {
    let io = |error| StoreError::Directory { path: dir.to_owned(), error };
    std::fs::create_dir_all(dir).map_err(io)?;
    let lock = File::options().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE)).map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked { path: dir.to_owned() }),
        Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

impl Sqlite {
    /// Opens (or creates) the database in `dir`. A file that is not a
    /// switchboard database is reported, never replaced.
    pub fn open(dir: &Path, sync: SyncMode) -> Result<Sqlite, StoreError> {
        let lock = lock_directory(dir)?;
        let path = dir.join(DATABASE_FILE);
        let corrupt = |why: String| StoreError::Corrupt { path: path.clone(), why };
        let db = Connection::open(&path).map_err(|error| corrupt(error.to_string()))?;
        // Takes effect only when the file is new.
        db.execute_batch(&format!("PRAGMA page_size={PAGE_SIZE}")).map_err(|error| corrupt(error.to_string()))?;
        let mode: String = db
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(|error| corrupt(error.to_string()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(corrupt(format!("could not enable WAL mode (got {mode})")));
        }
        let synchronous = if sync == SyncMode::Always { "FULL" } else { "NORMAL" };
        db.execute_batch(&format!(
            "PRAGMA synchronous={synchronous}; PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}; \
             PRAGMA journal_size_limit={}; PRAGMA foreign_keys=OFF;",
            u64::from(CHECKPOINT_PAGES) * u64::from(PAGE_SIZE)
        ))?;
        let version: i64 = db.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        match version {
            0 => {
                db.execute_batch(SCHEMA).map_err(|error| corrupt(error.to_string()))?;
                db.execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION}"))?;
            }
            1 => db.execute_batch(&format!(
                "ALTER TABLE logs ADD COLUMN dropped_through INTEGER NOT NULL DEFAULT 0; \
                 PRAGMA user_version={SCHEMA_VERSION}"
            ))?,
            SCHEMA_VERSION => {}
            other => return Err(corrupt(format!("schema version {other} is not one this server knows"))),
        }
        let check: String = db.query_row("PRAGMA quick_check(1)", [], |row| row.get(0))?;
        if check != "ok" {
            return Err(corrupt(format!("integrity check failed: {check}")));
        }
        let wal = (sync == SyncMode::Batch).then(|| dir.join(format!("{DATABASE_FILE}-wal")));
        let reader = Arc::new(SqliteReader { path: path.clone(), idle: Mutex::default() });
        Ok(Sqlite { path, db, wal, reader, state: None, _lock: lock })
    }

    /// Opens the directory for a server run: like [`Sqlite::open`], and
    /// gives every log a new epoch if the previous run may have lost acked
    /// messages to a power loss (see `docs/ARCHITECTURE.md`). Records this
    /// run in `STATE` until [`Drop`] marks it clean.
    pub fn open_for_serving(dir: &Path, sync: SyncMode) -> Result<Sqlite, StoreError> {
        let mut store = Sqlite::open(dir, sync)?;
        let state = dir.join(STATE_FILE);
        let boot = boot_id();
        let previous = std::fs::read_to_string(&state).unwrap_or_default();
        if tail_may_be_lost(&previous, &boot) {
            let changed = store.db.execute("UPDATE logs SET epoch = (abs(random()) % 9007199254740991) + 1", [])?;
            tracing::warn!(
                logs = changed,
                previous = previous.trim(),
                "the machine restarted while the last run was storing without fsync per message: \
                 its newest acks may be lost, so every room and inbox starts a new epoch"
            );
        }
        let io = |error| StoreError::Directory { path: dir.to_owned(), error };
        write_state(&state, &format!("{boot} {} running\n", sync_name(sync))).map_err(io)?;
        store.state = Some((state, format!("{boot} {} clean\n", sync_name(sync))));
        Ok(store)
    }

    /// Deletes a room's history and gives it a new epoch (an operator's
    /// reset; the server must not be running on this directory).
    pub fn reset_room(&mut self, room: &str) -> Result<Option<u64>, StoreError> {
        let tx = self.db.transaction()?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM logs WHERE kind = ?1 AND name = ?2",
                params![LogKind::Room.code(), room],
                |row| row.get(0),
            )
            .optional()?;
        let Some(id) = id else { return Ok(None) };
        let epoch = super::new_epoch();
        tx.execute("DELETE FROM messages WHERE log = ?1", [id])?;
        tx.execute("UPDATE logs SET epoch = ?1, last_seq = 0, last_ts = 0 WHERE id = ?2", params![epoch as i64, id])?;
        tx.commit()?;
        Ok(Some(epoch))
    }

    /// `(seq, ts)` of `log`'s newest message.
    fn last_of(&self, log: u64) -> Result<Option<(u64, u64)>, StoreError> {
        self.edge_of("SELECT seq, ts FROM messages WHERE log = ?1 ORDER BY seq DESC LIMIT 1", log)
    }

    /// `(seq, ts)` of `log`'s oldest message.
    fn first_of(&self, log: u64) -> Result<Option<(u64, u64)>, StoreError> {
        self.edge_of("SELECT seq, ts FROM messages WHERE log = ?1 ORDER BY seq LIMIT 1", log)
    }

    fn edge_of(&self, query: &str, log: u64) -> Result<Option<(u64, u64)>, StoreError> {
        let row = self
            .db
            .prepare_cached(query)?
            .query_row([log as i64], |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)))
            .optional()?;
        Ok(row)
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        if let Some((path, line)) = &self.state {
            if let Err(error) = write_state(path, line) {
                tracing::error!(%error, "could not record a clean stop");
            }
        }
    }
}

impl Backend for Sqlite {
    fn load(&mut self) -> Result<Vec<(LogKey, LogMeta)>, StoreError> {
        let mut logs = Vec::new();
        let mut statement =
            self.db.prepare("SELECT id, kind, name, epoch, last_seq, last_ts, delivered, dropped_through FROM logs")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let kind: i64 = row.get(1)?;
            let Some(kind) = LogKind::from_code(kind) else {
                return Err(StoreError::Corrupt { path: self.path.clone(), why: format!("unknown log kind {kind}") });
            };
            let name: String = row.get(2)?;
            let meta = LogMeta {
                id: row.get::<_, i64>(0)? as u64,
                epoch: row.get::<_, i64>(3)? as u64,
                first_seq: 0,
                first_ts: 0,
                last_seq: row.get::<_, i64>(4)? as u64,
                last_ts: row.get::<_, i64>(5)? as u64,
                delivered: row.get::<_, i64>(6)? as u64,
                fanned_out: 0,
                holes: 0,
                dropped_through: row.get::<_, i64>(7)? as u64,
            };
            logs.push((LogKey { kind, name: Arc::from(name) }, meta));
        }
        drop(rows);
        drop(statement);
        for (key, meta) in &mut logs {
            if let Some((seq, ts)) = self.last_of(meta.id)? {
                meta.last_seq = meta.last_seq.max(seq);
                meta.last_ts = meta.last_ts.max(ts);
            }
            let (first_seq, first_ts) = self.first_of(meta.id)?.unwrap_or((meta.last_seq + 1, 0));
            meta.first_seq = first_seq;
            meta.first_ts = first_ts;
            // Stored before this start: nothing of it is still on its way.
            meta.fanned_out = meta.last_seq;
            if key.kind == LogKind::Inbox && meta.dropped_through > 0 {
                let rows: i64 = self
                    .db
                    .prepare_cached("SELECT count(*) FROM messages WHERE log = ?1")?
                    .query_row([meta.id as i64], |row| row.get(0))?;
                meta.holes = (meta.last_seq + 1).saturating_sub(meta.first_seq).saturating_sub(rows as u64);
            }
        }
        Ok(logs)
    }

    fn commit(&mut self, group: &Group<'_>) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        {
            let mut new_log = tx.prepare_cached(
                "INSERT INTO logs (id, kind, name, epoch, last_seq, last_ts, delivered) VALUES (?1, ?2, ?3, ?4, 0, 0, 0)",
            )?;
            for (key, meta) in group.new_logs {
                new_log.execute(params![meta.id as i64, key.kind.code(), &*key.name, meta.epoch as i64])?;
            }
            let mut insert =
                tx.prepare_cached("INSERT INTO messages (log, seq, ts, sender, body) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for message in group.messages {
                insert.execute(params![
                    message.log as i64,
                    message.seq as i64,
                    message.ts as i64,
                    message.from,
                    message.body.get()
                ])?;
            }
            // A log's newest seq is its newest row's; `logs.last_seq` only
            // keeps it when retention deletes every row (see `trim`).
            let mut cursor = tx.prepare_cached("UPDATE logs SET delivered = ?1 WHERE id = ?2")?;
            for &(log, delivered) in group.cursors {
                cursor.execute(params![delivered as i64, log as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn trim(&mut self, log: u64, through: u64) -> Result<Trimmed, StoreError> {
        // Keep the newest seq and ts in `logs`, in case no row is left.
        let newest = self.last_of(log)?;
        let tx = self.db.transaction()?;
        if let Some((seq, ts)) = newest {
            tx.prepare_cached(
                "UPDATE logs SET last_seq = max(last_seq, ?2), last_ts = max(last_ts, ?3) WHERE id = ?1",
            )?
            .execute(params![log as i64, seq as i64, ts as i64])?;
        }
        let removed = tx
            .prepare_cached("DELETE FROM messages WHERE log = ?1 AND seq <= ?2")?
            .execute(params![log as i64, through as i64])?;
        tx.commit()?;
        Ok(Trimmed { removed: removed as u64, through, oldest: self.first_of(log)? })
    }

    fn trim_sender(&mut self, log: u64, sender: &str, keep: u64) -> Result<Trimmed, StoreError> {
        let tx = self.db.transaction()?;
        let through: Option<i64> = tx
            .prepare_cached(
                "SELECT seq FROM messages WHERE log = ?1 AND sender = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3",
            )?
            .query_row(params![log as i64, sender, keep.max(1) as i64], |row| row.get(0))
            .optional()?;
        let Some(through) = through else { return Ok(Trimmed::default()) };
        let removed = tx
            .prepare_cached("DELETE FROM messages WHERE log = ?1 AND sender = ?2 AND seq <= ?3")?
            .execute(params![log as i64, sender, through])?;
        tx.prepare_cached("UPDATE logs SET dropped_through = max(dropped_through, ?2) WHERE id = ?1")?
            .execute(params![log as i64, through])?;
        tx.commit()?;
        Ok(Trimmed { removed: removed as u64, through: through as u64, oldest: self.first_of(log)? })
    }

    fn expired_through(&mut self, log: u64, cutoff_ms: u64, scan: usize) -> Result<Option<u64>, StoreError> {
        let through: Option<i64> = self
            .db
            .prepare_cached(
                "SELECT max(seq) FROM (SELECT seq, ts FROM messages WHERE log = ?1 ORDER BY seq LIMIT ?2) WHERE ts < ?3",
            )?
            .query_row(params![log as i64, scan as i64, cutoff_ms as i64], |row| row.get(0))?;
        Ok(through.map(|seq| seq as u64))
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let Some(wal) = &self.wal else { return Ok(()) };
        match File::open(wal) {
            Ok(file) => file.sync_data().map_err(StoreError::Sync),
            // No WAL yet: nothing was written since it was last removed.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(StoreError::Sync(error)),
        }
    }

    /// A real write of the database (its header page, rewritten with the
    /// same schema version: one WAL frame, synced as a commit is), then a
    /// file created, synced and removed in the data directory, as a new WAL
    /// or a checkpoint would need. Either fails on a full disk, a read-only
    /// file system, or a data directory that is gone or replaced.
    fn probe(&mut self) -> Result<(), StoreError> {
        self.db.execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION}"))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let io = |error| StoreError::Directory { path: dir.to_owned(), error };
        let probe = dir.join(PROBE_FILE);
        let file = File::create(&probe).map_err(io)?;
        std::io::Write::write_all(&mut &file, b"probe\n").map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::remove_file(&probe).map_err(io)
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::clone(&self.reader) as Arc<dyn Reader>
    }
}

/// Reading connections (`query_only`), opened on demand and pooled. WAL mode lets them
/// read a consistent snapshot while the writer commits.
#[derive(Debug)]
pub struct SqliteReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    fn with<R>(&self, read: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let pooled = lock(&self.idle).pop();
        let db = match pooled {
            Some(db) => db,
            // Read-write, though only ever used to read: a read-only
            // connection cannot rebuild the WAL index when it needs it.
            None => {
                let db = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
                db.execute_batch("PRAGMA query_only=1")?;
                db
            }
        };
        let result = read(&db);
        let mut idle = lock(&self.idle);
        if idle.len() < READER_POOL {
            idle.push(db);
        }
        result
    }
}

fn collect(log: u64, rows: &mut rusqlite::Rows<'_>) -> Result<Vec<StoredMessage>, StoreError> {
    let mut messages = Vec::new();
    while let Some(row) = rows.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        let body: String = row.get(3)?;
        let body =
            RawValue::from_string(body).map_err(|error| StoreError::BadRow { log, seq, why: error.to_string() })?;
        messages.push(StoredMessage { seq, ts: row.get::<_, i64>(1)? as u64, from: row.get(2)?, body });
    }
    Ok(messages)
}

impl Reader for SqliteReader {
    fn after(&self, log: u64, after: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.with(|db| {
            let mut statement = db.prepare_cached(
                "SELECT seq, ts, sender, body FROM messages WHERE log = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let messages = collect(log, &mut statement.query(params![log as i64, after as i64, limit as i64])?);
            messages
        })
    }

    fn before(&self, log: u64, before: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let mut messages = self.with(|db| {
            let mut statement = db.prepare_cached(
                "SELECT seq, ts, sender, body FROM messages WHERE log = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
            )?;
            let before = before.min(i64::MAX as u64) as i64;
            let messages = collect(log, &mut statement.query(params![log as i64, before, limit as i64])?);
            messages
        })?;
        messages.reverse();
        Ok(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewMessage;

    fn epochs(dir: &Path) -> Vec<u64> {
        let mut store = Sqlite::open(dir, SyncMode::Always).expect("open");
        store.load().expect("load").iter().map(|(_, meta)| meta.epoch).collect()
    }

    #[test]
    fn a_reboot_after_an_unclean_unsynced_run_changes_every_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Sqlite::open_for_serving(dir.path(), SyncMode::Batch).expect("open");
        let key = LogKey { kind: LogKind::Room, name: Arc::from("r") };
        let meta = LogMeta::new(1, 77);
        store.commit(&Group { new_logs: &[(key, meta)], messages: &[], cursors: &[] }).expect("commit");
        drop(store);
        let mut reopened =
            Sqlite::open_for_serving(dir.path(), SyncMode::Batch).expect("batch mode opens a closed directory");
        reopened.sync().expect("a sync with no WAL file is fine");
        drop(reopened);
        let state = dir.path().join(STATE_FILE);
        assert!(std::fs::read_to_string(&state).expect("state").ends_with("batch clean\n"));
        assert_eq!(epochs(dir.path()), [77], "a clean stop keeps epochs");

        for (previous, changes) in [
            ("other-boot always running", false),
            (format!("{} batch running", boot_id()).as_str(), false),
            ("other-boot none clean", false),
            ("other-boot batch running", true),
        ] {
            std::fs::write(&state, previous).expect("write state");
            drop(Sqlite::open_for_serving(dir.path(), SyncMode::Always).expect("open"));
            let now = epochs(dir.path());
            assert_eq!(now != [77], changes, "after `{previous}`: {now:?}");
        }
    }

    #[test]
    fn per_sender_removal_persists_its_mark_and_the_holes_are_counted_again_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Sqlite::open(dir.path(), SyncMode::Always).expect("open");
        let key = LogKey { kind: LogKind::Inbox, name: Arc::from("bob") };
        let body = RawValue::from_string("1".into()).expect("json");
        let senders = ["spam", "alice", "spam", "spam", "alice", "spam"];
        let messages: Vec<NewMessage<'_>> = senders
            .iter()
            .enumerate()
            .map(|(i, from)| NewMessage { log: 1, seq: i as u64 + 1, ts: 1, from, body: &body })
            .collect();
        let group = Group { new_logs: &[(key, LogMeta::new(1, 9))], messages: &messages, cursors: &[] };
        store.commit(&group).expect("commit");
        // spam sent seq 1, 3, 4, 6: keeping 1 removes 1, 3 and 4.
        let trimmed = store.trim_sender(1, "spam", 1).expect("trim");
        assert_eq!((trimmed.removed, trimmed.through, trimmed.oldest), (3, 4, Some((2, 1))));
        assert_eq!(store.trim_sender(1, "alice", 2).expect("nothing to do"), Trimmed::default());
        drop(store);
        let mut reopened = Sqlite::open(dir.path(), SyncMode::Always).expect("reopen");
        let (_, meta) = reopened.load().expect("load").pop().expect("the inbox");
        assert_eq!((meta.first_seq, meta.last_seq, meta.dropped_through), (2, 6, 4));
        assert_eq!((meta.holes, meta.retained()), (2, 3), "seq 3 and 4 are gone from 2..=6");
    }

    #[test]
    fn a_version_1_database_gains_the_column_and_keeps_its_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Connection::open(dir.path().join(DATABASE_FILE)).expect("create");
            let old = SCHEMA.replace("    dropped_through INTEGER NOT NULL DEFAULT 0,\n", "");
            db.execute_batch(&format!("PRAGMA journal_mode=WAL; {old} PRAGMA user_version=1;")).expect("v1 schema");
            db.execute("INSERT INTO logs VALUES (1, 1, 'bob', 5, 3, 0, 0)", []).expect("a v1 row");
        }
        let mut store = Sqlite::open(dir.path(), SyncMode::Always).expect("open a v1 database");
        let (key, meta) = store.load().expect("load").pop().expect("the inbox");
        assert_eq!((&*key.name, meta.epoch, meta.last_seq, meta.dropped_through), ("bob", 5, 3, 0));
    }
}
