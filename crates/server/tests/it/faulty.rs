//! A storage backend that fails or stalls when a test says so: the
//! server's own in-memory backend behind switches, handed to the server
//! with `switchboard_server::run_with_backend`. The tests run as root, so
//! file permissions cannot make SQLite fail; this is how `storage_failed`
//! (a commit or a read that fails) and the storage drain at shutdown (a
//! commit still running) are provoked. See docs/ARCHITECTURE.md, "Testing".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use switchboard_server::store::memory::Memory;
use switchboard_server::store::{Backend, Group, LogKey, LogMeta, Reader, StoreError, StoredMessage, Trimmed};

/// The switches, shared between a test and its backend.
#[derive(Debug, Default)]
pub struct Faults {
    fail_commits: AtomicBool,
    fail_reads: AtomicBool,
    gate: Mutex<Gate>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Gate {
    closed: bool,
    /// Commits waiting at the closed gate.
    waiting: usize,
}

impl Faults {
    /// A backend whose faults `self` switches.
    pub fn backend(self: &Arc<Self>) -> Box<dyn Backend> {
        Box::new(Faulty { inner: Memory::new(), faults: Arc::clone(self) })
    }

    /// Every commit from now on fails (nothing of it is stored), or none.
    pub fn fail_commits(&self, fail: bool) {
        self.fail_commits.store(fail, Ordering::SeqCst);
    }

    /// Every range read from now on fails, or none.
    pub fn fail_reads(&self, fail: bool) {
        self.fail_reads.store(fail, Ordering::SeqCst);
    }

    /// Commits wait until [`Stall`] is dropped or released.
    pub fn stall(self: &Arc<Self>) -> Stall {
        self.gate.lock().expect("gate").closed = true;
        Stall(Arc::clone(self))
    }

    /// Waits (on a blocking thread) until a commit is held at the gate.
    pub async fn until_a_commit_waits(self: &Arc<Self>) {
        let faults = Arc::clone(self);
        let waited = tokio::task::spawn_blocking(move || {
            let gate = faults.gate.lock().expect("gate");
            let (_gate, timeout) = faults
                .changed
                .wait_timeout_while(gate, Duration::from_secs(10), |gate| gate.waiting == 0)
                .expect("gate");
            !timeout.timed_out()
        });
        assert!(waited.await.expect("waiting thread"), "no commit reached the stalled storage within 10 s");
    }

    fn pass_gate(&self) {
        let mut gate = self.gate.lock().expect("gate");
        gate.waiting += 1;
        self.changed.notify_all();
        while gate.closed {
            gate = self.changed.wait(gate).expect("gate");
        }
        gate.waiting -= 1;
    }

    fn injected() -> StoreError {
        StoreError::Sync(std::io::Error::other("failure injected by the test"))
    }
}

/// Holds storage commits until released or dropped (so a failing test
/// never leaves the storage thread stuck).
pub struct Stall(Arc<Faults>);

impl Stall {
    pub fn release(self) {}
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.0.gate.lock().expect("gate").closed = false;
        self.0.changed.notify_all();
    }
}

struct Faulty {
    inner: Memory,
    faults: Arc<Faults>,
}

impl Backend for Faulty {
    fn load(&mut self) -> Result<Vec<(LogKey, LogMeta)>, StoreError> {
        self.inner.load()
    }

    fn commit(&mut self, group: &Group<'_>) -> Result<(), StoreError> {
        self.faults.pass_gate();
        if self.faults.fail_commits.load(Ordering::SeqCst) {
            return Err(Faults::injected());
        }
        self.inner.commit(group)
    }

    fn trim(&mut self, log: u64, through: u64) -> Result<Trimmed, StoreError> {
        self.inner.trim(log, through)
    }

    fn trim_sender(&mut self, log: u64, sender: &str, keep: u64) -> Result<Trimmed, StoreError> {
        self.inner.trim_sender(log, sender, keep)
    }

    fn expired_through(&mut self, log: u64, cutoff_ms: u64, scan: usize) -> Result<Option<u64>, StoreError> {
        self.inner.expired_through(log, cutoff_ms, scan)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.inner.sync()
    }

    /// Fails while commits fail, as a real backend's write would.
    fn probe(&mut self) -> Result<(), StoreError> {
        if self.faults.fail_commits.load(Ordering::SeqCst) {
            return Err(Faults::injected());
        }
        self.inner.probe()
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::new(FaultyReader { inner: self.inner.reader(), faults: Arc::clone(&self.faults) })
    }
}

#[derive(Debug)]
struct FaultyReader {
    inner: Arc<dyn Reader>,
    faults: Arc<Faults>,
}

impl FaultyReader {
    fn check(&self) -> Result<(), StoreError> {
        if self.faults.fail_reads.load(Ordering::SeqCst) {
            return Err(Faults::injected());
        }
        Ok(())
    }
}

impl Reader for FaultyReader {
    fn after(&self, log: u64, after: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.check()?;
        self.inner.after(log, after, limit)
    }

    fn before(&self, log: u64, before: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.check()?;
        self.inner.before(log, before, limit)
    }
}
