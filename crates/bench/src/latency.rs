//! Latency samples from many member tasks into a few histograms: one per
//! worker thread that records. Members hand over each read's samples at
//! once; the histogram they go into is the thread's own, so it stays in
//! cache. (One histogram per member, 1000 of them, cost a cache miss per
//! sample: a fifth of the bench's CPU when it read a million deliveries a
//! second.)

use anyhow::Context;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

type Shard = Arc<Mutex<Histogram<u64>>>;

/// Distinguishes runs in one process (tests), whose threads may be reused.
static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's histogram, for the run it belongs to.
    static SHARD: RefCell<Option<(u64, Shard)>> = const { RefCell::new(None) };
}

/// An empty latency histogram, in microseconds from 1 µs to 60 s with two
/// significant digits.
pub(super) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 2).context("creating a latency histogram")
}

/// One run's latency histograms (see [`histogram`]).
#[derive(Debug)]
pub struct Latencies {
    run: u64,
    template: Histogram<u64>,
    shards: Mutex<Vec<Shard>>,
}

impl Latencies {
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let template = histogram()?;
        let run = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(Latencies { run, template, shards: Mutex::default() }))
    }

    /// Records `samples` (microseconds) into this thread's histogram.
    pub fn record(&self, samples: &[u64]) {
        if samples.is_empty() {
            return;
        }
        SHARD.with_borrow_mut(|slot| {
            if !matches!(slot, Some((run, _)) if *run == self.run) {
                let shard = Arc::new(Mutex::new(self.template.clone()));
                lock(&self.shards).push(Arc::clone(&shard));
                *slot = Some((self.run, shard));
            }
            if let Some((_, shard)) = slot {
                let mut histogram = lock(shard);
                for &sample in samples {
                    histogram.saturating_record(sample.max(1));
                }
            }
        });
    }

    /// Every thread's histogram, merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = self.template.clone();
        for shard in lock(&self.shards).iter() {
            if let Err(error) = all.add(&*lock(shard)) {
                eprintln!("could not merge a latency histogram: {error}");
            }
        }
        all
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_from_several_threads_are_merged() {
        let latencies = Latencies::new().expect("histograms");
        std::thread::scope(|scope| {
            for offset in 0..4u64 {
                let latencies = &latencies;
                scope.spawn(move || latencies.record(&[100 + offset, 0, 1000]));
            }
        });
        latencies.record(&[5000]);
        let merged = latencies.merged();
        assert_eq!((merged.len(), merged.min()), (13, 1));
        assert!(merged.equivalent(merged.max(), 5000), "two significant digits");
        assert!(Latencies::new().expect("histograms").merged().is_empty(), "a new run starts empty");
    }
}
