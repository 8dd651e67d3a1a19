//! The idempotency window of the publish endpoints. A publish carrying an
//! `idempotency_key` that was seen within `api.idempotency_window` gets the
//! first request's answer and stores nothing new; a duplicate that arrives
//! while the first is still being stored waits for it. A first request that
//! fails is not remembered (nothing was stored), so its retry runs anew.
//!
//! Keys are scoped by caller (the API key's name), target (room or user)
//! and key. At most `api.idempotency_max_keys` are held: past that the
//! oldest are forgotten before their window ends, counted in
//! `limit_hits_total{reason="api_idempotency_evicted"}`.

use crate::metrics::Metrics;
use crate::util::lock;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The answer a first request gave: its status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

type Slot = Arc<OnceCell<Answer>>;

/// Recent idempotency keys and their answers.
#[derive(Debug)]
pub struct Window {
    window: Duration,
    max_keys: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    slots: HashMap<Arc<str>, Slot>,
    /// Keys in the order they were first seen, with when.
    order: VecDeque<(Instant, Arc<str>)>,
}

impl Window {
    pub fn new(window: Duration, max_keys: usize) -> Window {
        Window { window, max_keys, held: Mutex::default() }
    }

    /// Runs `first` unless `scope` was seen within the window: returns the
    /// answer and whether it is a replay of an earlier request's.
    pub async fn run<E, F>(&self, scope: String, metrics: &Metrics, first: F) -> Result<(Answer, bool), E>
    where
        F: Future<Output = Result<Answer, E>>,
    {
        let slot = self.slot(scope, metrics);
        let mut ran = false;
        let answer = slot
            .get_or_try_init(|| {
                ran = true;
                first
            })
            .await?;
        Ok((answer.clone(), !ran))
    }

    /// The slot of `scope`, made if it is new; expired keys are dropped first.
    fn slot(&self, scope: String, metrics: &Metrics) -> Slot {
        let now = Instant::now();
        let mut held = lock(&self.held);
        while let Some((seen, _)) = held.order.front() {
            if now.duration_since(*seen) < self.window {
                break;
            }
            if let Some((_, key)) = held.order.pop_front() {
                held.slots.remove(&key);
            }
        }
        if let Some(slot) = held.slots.get(scope.as_str()) {
            return Arc::clone(slot);
        }
        while held.slots.len() >= self.max_keys {
            let Some((_, key)) = held.order.pop_front() else { break };
            held.slots.remove(&key);
            metrics.limit_hit(crate::guard::reason::API_IDEMPOTENCY_EVICTED);
        }
        let key: Arc<str> = Arc::from(scope);
        let slot = Slot::default();
        held.slots.insert(Arc::clone(&key), Arc::clone(&slot));
        held.order.push_back((now, key));
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Answer {
        Answer { status: 201, body: body.into() }
    }

    #[tokio::test]
    async fn a_key_answers_once_within_its_window_and_failures_are_not_kept() {
        let metrics = Metrics::default();
        let window = Window::new(Duration::from_secs(60), 2);
        let first = window.run::<(), _>("k".into(), &metrics, async { Ok(answer("1")) }).await;
        assert_eq!(first.map(|(a, replay)| (a.body, replay)), Ok(("1".into(), false)));
        let again = window.run::<(), _>("k".into(), &metrics, async { Ok(answer("2")) }).await;
        assert_eq!(again.map(|(a, replay)| (a.body, replay)), Ok(("1".into(), true)));
        let failed = window.run::<&str, _>("f".into(), &metrics, async { Err("no") }).await;
        assert_eq!(failed.map(|(a, _)| a.body), Err("no"));
        let retried = window.run::<&str, _>("f".into(), &metrics, async { Ok(answer("3")) }).await;
        assert_eq!(retried.map(|(a, replay)| (a.body, replay)), Ok(("3".into(), false)));
        // Two keys held: a third pushes the oldest ("k") out early.
        let _ = window.run::<(), _>("x".into(), &metrics, async { Ok(answer("4")) }).await;
        let evicted = window.run::<(), _>("k".into(), &metrics, async { Ok(answer("5")) }).await;
        assert_eq!(evicted.map(|(a, replay)| (a.body, replay)), Ok(("5".into(), false)));
    }

    #[tokio::test]
    async fn keys_expire_with_their_window() {
        let metrics = Metrics::default();
        let window = Window::new(Duration::from_millis(1), 10);
        let _ = window.run::<(), _>("k".into(), &metrics, async { Ok(answer("1")) }).await;
        let later = Instant::now() + Duration::from_millis(2);
        while Instant::now() < later {
            tokio::task::yield_now().await;
        }
        let after = window.run::<(), _>("k".into(), &metrics, async { Ok(answer("2")) }).await;
        assert_eq!(after.map(|(a, replay)| (a.body, replay)), Ok(("2".into(), false)));
    }
}
