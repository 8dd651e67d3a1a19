//! The in-memory backend (`--storage memory`): the same logs, sequences and
//! retention as SQLite, gone when the process ends. Every log gets a new
//! epoch at each start, so clients see `recovered: false` after a restart
//! instead of a silent gap.

use super::{Backend, Group, LogKey, LogMeta, Reader, StoreError, StoredMessage, Trimmed};
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

#[derive(Debug)]
struct Row {
    seq: u64,
    ts: u64,
    from: Arc<str>,
    body: Box<RawValue>,
}

type Logs = HashMap<u64, VecDeque<Row>>;

/// Logs in memory, shared by the writer and readers.
#[derive(Debug, Default)]
pub struct Memory {
    logs: Arc<RwLock<Logs>>,
}

impl Memory {
    pub fn new() -> Self {
        Memory::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Logs> {
        self.logs.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn oldest(rows: Option<&VecDeque<Row>>) -> Option<(u64, u64)> {
    rows.and_then(VecDeque::front).map(|row| (row.seq, row.ts))
}

impl Backend for Memory {
    fn load(&mut self) -> Result<Vec<(LogKey, LogMeta)>, StoreError> {
        Ok(Vec::new())
    }

    fn commits_in_place(&self) -> bool {
        true
    }

    fn commit(&mut self, group: &Group<'_>) -> Result<(), StoreError> {
        let mut logs = self.write();
        for message in group.messages {
            let row =
                Row { seq: message.seq, ts: message.ts, from: Arc::from(message.from), body: message.body.to_owned() };
            logs.entry(message.log).or_default().push_back(row);
        }
        Ok(())
    }

    fn trim(&mut self, log: u64, through: u64) -> Result<Trimmed, StoreError> {
        let mut logs = self.write();
        let mut trimmed = Trimmed::default();
        if let Some(rows) = logs.get_mut(&log) {
            while let Some(row) = rows.front().filter(|row| row.seq <= through) {
                (trimmed.removed, trimmed.through) = (trimmed.removed + 1, row.seq);
                rows.pop_front();
            }
        }
        trimmed.oldest = oldest(logs.get(&log));
        Ok(trimmed)
    }

    fn trim_sender(&mut self, log: u64, sender: &str, keep: u64) -> Result<Trimmed, StoreError> {
        let mut logs = self.write();
        let mut trimmed = Trimmed::default();
        if let Some(rows) = logs.get_mut(&log) {
            let theirs = rows.iter().rev().filter(|row| &*row.from == sender);
            if let Some(through) = theirs.map(|row| row.seq).nth(keep.max(1) as usize) {
                let before = rows.len();
                rows.retain(|row| &*row.from != sender || row.seq > through);
                (trimmed.removed, trimmed.through) = ((before - rows.len()) as u64, through);
            }
        }
        trimmed.oldest = oldest(logs.get(&log));
        Ok(trimmed)
    }

    fn expired_through(&mut self, log: u64, cutoff_ms: u64, scan: usize) -> Result<Option<u64>, StoreError> {
        let logs = self.logs.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let rows = logs.get(&log).into_iter().flatten().take(scan);
        Ok(rows.take_while(|row| row.ts < cutoff_ms).last().map(|row| row.seq))
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn reader(&self) -> Arc<dyn Reader> {
        Arc::new(MemoryReader { logs: Arc::clone(&self.logs) })
    }
}

#[derive(Debug)]
struct MemoryReader {
    logs: Arc<RwLock<Logs>>,
}

impl MemoryReader {
    fn copy<'a>(rows: impl Iterator<Item = &'a Row>) -> Vec<StoredMessage> {
        rows.map(|row| StoredMessage { seq: row.seq, ts: row.ts, from: row.from.to_string(), body: row.body.clone() })
            .collect()
    }
}

impl Reader for MemoryReader {
    fn after(&self, log: u64, after: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let logs = self.logs.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(rows) = logs.get(&log) else { return Ok(Vec::new()) };
        let start = rows.partition_point(|row| row.seq <= after);
        Ok(Self::copy(rows.range(start..).take(limit)))
    }

    fn before(&self, log: u64, before: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let logs = self.logs.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(rows) = logs.get(&log) else { return Ok(Vec::new()) };
        let end = rows.partition_point(|row| row.seq < before);
        Ok(Self::copy(rows.range(end.saturating_sub(limit)..end)))
    }
}
