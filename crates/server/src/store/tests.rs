//! The writer with real backends: `seq` assignment, failed groups,
//! retention and reopening a SQLite directory.

use super::memory::Memory;
use super::sqlite::Sqlite;
use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};

/// Reports every outcome as `Ok(seq)` or `Err(ticket)`, and the thread
/// that handed over the last commit.
struct Outcomes(Mutex<Sender<Result<(u64, u64), u32>>>, Mutex<Option<std::thread::ThreadId>>);

impl Sink<u32> for Outcomes {
    fn committed(&self, group: Vec<Committed<u32>>) {
        *lock(&self.1) = Some(std::thread::current().id());
        for message in group {
            let _ = lock(&self.0).send(Ok((message.seq, message.epoch)));
        }
    }
    fn failed(&self, group: Vec<Submission<u32>>, _: &StoreError) {
        for submission in group {
            let _ = lock(&self.0).send(Err(submission.ticket));
        }
    }
    fn pruned(&self, _: &Pruned) {}
}

/// Memory storage that runs `before_commit` first; its error fails the commit.
struct Hooked<F: FnMut() -> Result<(), StoreError> + Send> {
    inner: Memory,
    before_commit: F,
}

impl<F: FnMut() -> Result<(), StoreError> + Send> Backend for Hooked<F> {
    fn load(&mut self) -> Result<Vec<(LogKey, LogMeta)>, StoreError> {
        self.inner.load()
    }
    fn commit(&mut self, group: &Group<'_>) -> Result<(), StoreError> {
        (self.before_commit)()?;
        self.inner.commit(group)
    }
    fn trim(&mut self, log: u64, through: u64) -> Result<Trimmed, StoreError> {
        self.inner.trim(log, through)
    }
    fn trim_sender(&mut self, log: u64, sender: &str, keep: u64) -> Result<Trimmed, StoreError> {
        self.inner.trim_sender(log, sender, keep)
    }
    fn expired_through(&mut self, log: u64, cutoff: u64, scan: usize) -> Result<Option<u64>, StoreError> {
        self.inner.expired_through(log, cutoff, scan)
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn reader(&self) -> Arc<dyn Reader> {
        self.inner.reader()
    }
}

fn options(room_max_messages: u64, room_max_age: Duration) -> WriterOptions {
    WriterOptions {
        sync: SyncMode::Always,
        batch_interval: Duration::from_millis(5),
        room_max_messages,
        room_max_age,
        inbox_max_messages: 10,
        inbox_max_age: Duration::from_secs(3600),
        inbox_max_per_sender: 0,
        queue_capacity: 1024,
        queue_bytes: 1 << 20,
    }
}

type Started = (Storage<u32>, Arc<Outcomes>, Receiver<Result<(u64, u64), u32>>);

fn start(backend: Box<dyn Backend>, room_max_messages: u64) -> Started {
    start_with(backend, options(room_max_messages, Duration::from_secs(3600)))
}

fn start_with(backend: Box<dyn Backend>, options: WriterOptions) -> Started {
    let (sender, receiver) = channel();
    let sink = Arc::new(Outcomes(Mutex::new(sender), Mutex::new(None)));
    let storage = Loaded::load(backend).expect("load").start(options, Arc::clone(&sink) as Arc<dyn Sink<u32>>);
    (storage, sink, receiver)
}

fn submit(storage: &Storage<u32>, kind: LogKind, name: &str, ticket: u32) {
    let body = RawValue::from_string(format!("{{\"n\":{ticket}}}")).expect("json");
    let submission = Submission { key: LogKey { kind, name: Arc::from(name) }, from: Arc::from("alice"), body, ticket };
    storage.submit(submission).expect("queued");
}

fn next(outcomes: &Receiver<Result<(u64, u64), u32>>) -> Result<(u64, u64), u32> {
    outcomes.recv_timeout(Duration::from_secs(10)).expect("an outcome")
}

#[test]
fn a_failed_group_consumes_no_seq() {
    let failing = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&failing);
    let fail_while_set = move || match flag.load(Ordering::SeqCst) {
        true => Err(StoreError::Sync(std::io::Error::other("disk on fire"))),
        false => Ok(()),
    };
    let backend = Hooked { inner: Memory::new(), before_commit: fail_while_set };
    let (storage, _sink, outcomes) = start(Box::new(backend), 100);
    submit(&storage, LogKind::Room, "r", 1);
    let (first, epoch) = next(&outcomes).expect("stored");
    failing.store(true, Ordering::SeqCst);
    submit(&storage, LogKind::Room, "r", 2);
    assert_eq!(next(&outcomes), Err(2), "the failure is reported with its ticket");
    failing.store(false, Ordering::SeqCst);
    submit(&storage, LogKind::Room, "r", 3);
    assert_eq!(next(&outcomes), Ok((first + 1, epoch)), "no gap where the failed message would have been");
    submit(&storage, LogKind::Inbox, "r", 4);
    let (inbox_seq, inbox_epoch) = next(&outcomes).expect("stored");
    assert_eq!(inbox_seq, 1, "an inbox named like a room is a separate log");
    assert_ne!(inbox_epoch, epoch);
    storage.close();
}

#[test]
fn count_retention_trims_the_oldest() {
    let (storage, _sink, outcomes) = start(Box::new(Memory::new()), 5);
    for ticket in 0..12 {
        submit(&storage, LogKind::Room, "r", ticket);
        next(&outcomes).expect("stored");
    }
    storage.close();
    let meta = storage.meta(LogKind::Room, "r").expect("log");
    assert_eq!((meta.first_seq, meta.last_seq, meta.retained()), (8, 12, 5));
    let kept: Vec<u64> = storage.reader().after(meta.id, 0, 100).expect("read").iter().map(|m| m.seq).collect();
    assert_eq!(kept, [8, 9, 10, 11, 12]);
    let older: Vec<u64> = storage.reader().before(meta.id, 11, 2).expect("read").iter().map(|m| m.seq).collect();
    assert_eq!(older, [9, 10], "before returns the newest page, oldest first");
}

#[test]
fn sqlite_keeps_seq_epoch_and_bodies_across_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Sqlite::open(dir.path(), SyncMode::Batch).expect("open");
    assert!(matches!(Sqlite::open(dir.path(), SyncMode::Batch), Err(StoreError::Locked { .. })));
    let (storage, _sink, outcomes) = start(Box::new(backend), 100);
    for ticket in 0..3 {
        submit(&storage, LogKind::Room, "lobby", ticket);
    }
    submit(&storage, LogKind::Inbox, "bob", 9);
    let results: Vec<_> = (0..4).map(|_| next(&outcomes).expect("stored")).collect();
    storage.mark_delivered("bob", 1);
    storage.close();
    drop(storage);

    let (storage, _sink, outcomes) = start(Box::new(Sqlite::open(dir.path(), SyncMode::Always).expect("reopen")), 100);
    let room = storage.meta(LogKind::Room, "lobby").expect("room survives");
    assert_eq!((room.first_seq, room.last_seq, room.epoch), (1, 3, results[0].1));
    let inbox = storage.meta(LogKind::Inbox, "bob").expect("inbox survives");
    assert_eq!((inbox.last_seq, inbox.delivered), (1, 1), "the delivery cursor is persisted");
    let bodies: Vec<String> =
        storage.reader().after(room.id, 1, 10).expect("read").iter().map(|m| m.body.get().to_owned()).collect();
    assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":2}"#]);
    submit(&storage, LogKind::Room, "lobby", 7);
    assert_eq!(next(&outcomes), Ok((4, room.epoch)));
    storage.close();
}

/// Waits (at most 10 s) until age retention emptied room `name`. Retention
/// reports nothing, so this watches the catalog.
fn wait_until_emptied(storage: &Storage<u32>, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while storage.meta(LogKind::Room, name).is_some_and(|meta| meta.retained() > 0) {
        assert!(std::time::Instant::now() < deadline, "expired messages were never removed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn age_retention_removes_expired_messages_without_new_sends() {
    let (storage, _sink, outcomes) = start_with(Box::new(Memory::new()), options(100, Duration::from_millis(100)));
    for ticket in 0..3 {
        submit(&storage, LogKind::Room, "r", ticket);
        next(&outcomes).expect("stored");
    }
    wait_until_emptied(&storage, "r");
    let meta = storage.meta(LogKind::Room, "r").expect("the log itself stays");
    assert_eq!((meta.first_seq, meta.last_seq), (4, 3), "seq continues after the log emptied");
    assert!(storage.reader().after(meta.id, 0, 10).expect("read").is_empty());
    storage.close();
}

#[test]
fn a_full_queue_refuses_by_count_and_by_bytes() {
    let (entered, in_commit) = channel();
    let (release, released) = channel();
    // Commits wait until the test lets them go.
    let gate = move || {
        let _ = entered.send(());
        let _ = released.recv();
        Ok(())
    };
    let backend = Hooked { inner: Memory::new(), before_commit: gate };
    let options = WriterOptions { queue_capacity: 2, queue_bytes: 20, ..options(100, Duration::from_secs(60)) };
    let (storage, _sink, outcomes) = start_with(Box::new(backend), options);
    let body = |text: &str| RawValue::from_string(format!("\"{text}\"")).expect("json");
    let offer = |text: &str, ticket| {
        let key = LogKey { kind: LogKind::Room, name: Arc::from("r") };
        storage.submit(Submission { key, from: Arc::from("a"), body: body(text), ticket })
    };
    offer("first", 0).expect("taken by the writer");
    in_commit.recv_timeout(Duration::from_secs(10)).expect("the writer is committing");
    offer("a", 1).expect("queued");
    offer("b", 2).expect("queued");
    assert_eq!(offer("c", 3), Err(SubmitError::Busy), "two messages wait: the count bound");
    release.send(()).expect("release");
    in_commit.recv_timeout(Duration::from_secs(10)).expect("second group");
    assert_eq!(offer("far too long for twenty bytes", 4), Err(SubmitError::Busy), "the byte bound");
    offer("ok", 5).expect("short bodies still fit");
    for _ in 0..3 {
        let _ = release.send(());
    }
    let stored: Vec<u64> = (0..4).map(|_| next(&outcomes).expect("stored").0).collect();
    assert_eq!(stored, [1, 2, 3, 4], "refused messages took no seq");
    drop(release);
    storage.close();
}

#[test]
fn sqlite_remembers_seq_when_retention_removed_every_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Sqlite::open(dir.path(), SyncMode::None).expect("open");
    let (storage, _sink, outcomes) = start_with(Box::new(backend), options(100, Duration::from_millis(100)));
    for ticket in 0..3 {
        submit(&storage, LogKind::Room, "r", ticket);
        next(&outcomes).expect("stored");
    }
    wait_until_emptied(&storage, "r");
    storage.close();
    drop(storage);
    let (storage, _sink, outcomes) = start(Box::new(Sqlite::open(dir.path(), SyncMode::None).expect("reopen")), 100);
    let meta = storage.meta(LogKind::Room, "r").expect("log");
    assert_eq!((meta.first_seq, meta.last_seq), (4, 3));
    submit(&storage, LogKind::Room, "r", 9);
    assert_eq!(next(&outcomes).map(|(seq, _)| seq), Ok(4), "seq continues, never reused");
    storage.close();
}

#[test]
fn memory_commits_in_place_and_refuses_after_close() {
    let (storage, sink, outcomes) = start(Box::new(Memory::new()), 100);
    submit(&storage, LogKind::Room, "r", 1);
    assert_eq!(*lock(&sink.1), Some(std::thread::current().id()), "handed over on the submitter's thread");
    // No thread hop: the sink saw the commit before `submit` returned.
    assert!(matches!(outcomes.try_recv(), Ok(Ok((1, _)))), "committed and handed over in place");
    submit(&storage, LogKind::Room, "r", 2);
    assert!(matches!(outcomes.try_recv(), Ok(Ok((2, _)))));
    storage.close();
    let key = LogKey { kind: LogKind::Room, name: Arc::from("r") };
    let body = RawValue::from_string("3".into()).expect("json");
    let late = storage.submit(Submission { key, from: Arc::from("alice"), body, ticket: 3 });
    assert_eq!(late, Err(SubmitError::Closed));
    assert!(outcomes.try_recv().is_err(), "nothing stored after close");
}

#[test]
fn a_backend_that_does_not_commit_in_place_hands_over_on_another_thread() {
    let (storage, sink, outcomes) = start(Box::new(Hooked { inner: Memory::new(), before_commit: || Ok(()) }), 100);
    let caller = std::thread::current().id();
    submit(&storage, LogKind::Room, "r", 1);
    assert_eq!(next(&outcomes).map(|(seq, _)| seq), Ok(1));
    assert_ne!(lock(&sink.1).expect("a commit was handed over"), caller, "fanned out on the delivery thread");
    storage.close();
}
