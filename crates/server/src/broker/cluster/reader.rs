//! Range reads of a cluster's logs for replays and `history` pages: the
//! hub reads by this node's log id (blocking, from `spawn_blocking`), the
//! reader finds the log's key and reads its stream in Redis. A log this
//! node does not follow is read through a [`KeyReader`] bound to its key.

use super::Slots;
use crate::cluster::{ClusterError, Engine};
use crate::store::{LogKey, Reader, StoreError, StoredMessage};
use crate::util::lock;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(super) struct ClusterReader {
    engine: Engine,
    slots: Arc<Mutex<Slots>>,
    runtime: tokio::runtime::Handle,
}

impl ClusterReader {
    /// A reader over `engine`; call from within the runtime.
    pub fn new(engine: Engine, slots: Arc<Mutex<Slots>>) -> Self {
        ClusterReader { engine, slots, runtime: tokio::runtime::Handle::current() }
    }

    fn key(&self, log: u64) -> Result<LogKey, StoreError> {
        lock(&self.slots).by_id.get(&log).cloned().ok_or(StoreError::Unsubscribed { log })
    }
}

fn unavailable(error: ClusterError) -> StoreError {
    StoreError::Broker(error.to_string())
}

impl Reader for ClusterReader {
    fn after(&self, log: u64, after: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let key = self.key(log)?;
        self.runtime.block_on(self.engine.after(&key, after, limit)).map_err(unavailable)
    }

    fn before(&self, log: u64, before: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let key = self.key(log)?;
        self.runtime.block_on(self.engine.before(&key, before, limit)).map_err(unavailable)
    }
}

/// Reads one log, whatever id it is asked for (a log this node does not
/// follow has none).
#[derive(Debug)]
pub(super) struct KeyReader {
    engine: Engine,
    key: LogKey,
    runtime: tokio::runtime::Handle,
}

impl KeyReader {
    /// A reader of `key`; call from within the runtime.
    pub fn new(engine: Engine, key: LogKey) -> Self {
        KeyReader { engine, key, runtime: tokio::runtime::Handle::current() }
    }
}

impl Reader for KeyReader {
    fn after(&self, _log: u64, after: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.runtime.block_on(self.engine.after(&self.key, after, limit)).map_err(unavailable)
    }

    fn before(&self, _log: u64, before: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.runtime.block_on(self.engine.before(&self.key, before, limit)).map_err(unavailable)
    }
}
