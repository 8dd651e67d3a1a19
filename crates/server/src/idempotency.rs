//! Idempotency windows: a message carrying an `idempotency_key` that was seen
//! within the window gets the first attempt's answer and stores nothing new;
//! a duplicate that arrives while the first is still being stored waits for
//! it. A first attempt that fails is not remembered (nothing was stored), so
//! its retry runs anew.
//!
//! Two windows use this module: the HTTP API's publish endpoints (scoped by
//! API key, answers are HTTP statuses and bodies) and the `send` and `dm`
//! commands of WebSocket, raw TCP and UDP clients (scoped by user, answers
//! are where the message was stored). A caller scopes its keys (who, which
//! target, the key) into one string. At most `max_keys` are held: past that
//! the oldest are forgotten before their window ends, counted in
//! `limit_hits_total{reason}` with the window's own reason.
//!
//! Two ways in: [`Window::run`] for an async first attempt (the API), and
//! [`Window::claim`] for a caller that submits synchronously and settles the
//! answer later from elsewhere (a session's `send`, acked by the storage
//! writer's commit).

use crate::metrics::Metrics;
use crate::util::lock;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Recent idempotency keys and their answers.
#[derive(Debug)]
pub struct Window<A> {
    window: Duration,
    max_keys: usize,
    /// The `limit_hits_total` reason of a key forgotten early.
    evicted_reason: &'static str,
    held: Mutex<Held<A>>,
}

/// A key's answer: `None` while its first attempt runs. The sender's side
/// lives in that attempt's [`First`]; dropped without an answer, the attempt
/// failed.
type Slot<A> = watch::Receiver<Option<A>>;

#[derive(Debug)]
struct Held<A> {
    /// Each key's slot, with when it was made (its entry in `order`).
    slots: HashMap<Arc<str>, (Instant, Slot<A>)>,
    /// Keys in the order their slots were made, with when.
    order: VecDeque<(Instant, Arc<str>)>,
}

impl<A> Default for Held<A> {
    fn default() -> Self {
        Held { slots: HashMap::new(), order: VecDeque::new() }
    }
}

/// What [`Window::claim`] found for a key.
#[derive(Debug)]
pub enum Claim<A> {
    /// The key is new (or its first attempt failed): the caller makes the
    /// first attempt and hands its answer to [`First::settle`].
    First(First<A>),
    /// The key was seen: its answer, now or once the first attempt ends.
    Seen(Seen<A>),
}

/// The right to answer a new key. Dropping it unsettled means the attempt
/// failed: waiting duplicates learn so, and the next use of the key runs anew.
#[derive(Debug)]
pub struct First<A> {
    answer: watch::Sender<Option<A>>,
}

impl<A> First<A> {
    /// Records the first attempt's answer for every duplicate within the window.
    pub fn settle(self, answer: A) {
        self.answer.send_replace(Some(answer));
    }
}

/// A duplicate's view of the first attempt.
#[derive(Debug)]
pub struct Seen<A> {
    slot: Slot<A>,
}

impl<A: Clone> Seen<A> {
    /// The first attempt's answer, if it has one already.
    pub fn ready(&self) -> Option<A> {
        self.slot.borrow().clone()
    }

    /// Waits for the first attempt: its answer, or `None` when it failed.
    pub async fn answer(mut self) -> Option<A> {
        self.slot.wait_for(Option::is_some).await.ok().and_then(|answer| answer.clone())
    }
}

impl<A: Clone> Window<A> {
    pub fn new(window: Duration, max_keys: usize, evicted_reason: &'static str) -> Window<A> {
        Window { window, max_keys, evicted_reason, held: Mutex::default() }
    }

    /// Runs `first` unless `scope` was seen within the window: returns the
    /// answer and whether it is a replay of an earlier attempt's. A
    /// duplicate of an attempt that fails runs its own.
    pub async fn run<E, F>(&self, scope: String, metrics: &Metrics, first: F) -> Result<(A, bool), E>
    where
        F: Future<Output = Result<A, E>>,
    {
        loop {
            let seen = match self.claim(scope.clone(), metrics) {
                Claim::First(slot) => {
                    let answer = first.await?;
                    slot.settle(answer.clone());
                    return Ok((answer, false));
                }
                Claim::Seen(seen) => seen,
            };
            if let Some(answer) = seen.answer().await {
                return Ok((answer, true));
            }
        }
    }

    /// Claims `scope`: the first attempt's, or a duplicate's view of it.
    /// Expired keys are dropped first.
    pub fn claim(&self, scope: String, metrics: &Metrics) -> Claim<A> {
        let now = Instant::now();
        let mut held = lock(&self.held);
        while let Some((seen, _)) = held.order.front() {
            if now.duration_since(*seen) < self.window {
                break;
            }
            if let Some((made, key)) = held.order.pop_front() {
                held.forget(&key, made);
            }
        }
        if let Some((_, slot)) = held.slots.get(scope.as_str()) {
            // Its sender gone without an answer: the first attempt failed.
            let failed = slot.has_changed().is_err() && slot.borrow().is_none();
            if !failed {
                return Claim::Seen(Seen { slot: slot.clone() });
            }
        }
        while held.slots.len() >= self.max_keys {
            let Some((made, key)) = held.order.pop_front() else { break };
            if held.forget(&key, made) {
                metrics.limit_hit(self.evicted_reason);
            }
        }
        let key: Arc<str> = Arc::from(scope);
        let (answer, slot) = watch::channel(None);
        held.slots.insert(Arc::clone(&key), (now, slot));
        held.order.push_back((now, key));
        Claim::First(First { answer })
    }
}

impl<A> Held<A> {
    /// Removes `key`'s slot if it is the one made at `made` (a failed key
    /// claimed again has a newer slot and its own entry in `order`).
    fn forget(&mut self, key: &str, made: Instant) -> bool {
        let current = self.slots.get(key).is_some_and(|(when, _)| *when == made);
        if current {
            self.slots.remove(key);
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REASON: &str = "test_evicted";

    #[tokio::test]
    async fn a_key_answers_once_within_its_window_and_failures_are_not_kept() {
        let metrics = Metrics::default();
        let window = Window::<&str>::new(Duration::from_secs(60), 2, REASON);
        let first = window.run::<(), _>("k".into(), &metrics, async { Ok("1") }).await;
        assert_eq!(first, Ok(("1", false)));
        let again = window.run::<(), _>("k".into(), &metrics, async { Ok("2") }).await;
        assert_eq!(again, Ok(("1", true)));
        let failed = window.run::<&str, _>("f".into(), &metrics, async { Err("no") }).await;
        assert_eq!(failed, Err("no"));
        let retried = window.run::<&str, _>("f".into(), &metrics, async { Ok("3") }).await;
        assert_eq!(retried, Ok(("3", false)));
        // Two keys held: a third pushes the oldest ("k") out early.
        let _ = window.run::<(), _>("x".into(), &metrics, async { Ok("4") }).await;
        let evicted = window.run::<(), _>("k".into(), &metrics, async { Ok("5") }).await;
        assert_eq!(evicted, Ok(("5", false)));
    }

    #[tokio::test]
    async fn keys_expire_with_their_window() {
        let metrics = Metrics::default();
        let window = Window::<&str>::new(Duration::from_millis(1), 10, REASON);
        let _ = window.run::<(), _>("k".into(), &metrics, async { Ok("1") }).await;
        let later = Instant::now() + Duration::from_millis(2);
        while Instant::now() < later {
            tokio::task::yield_now().await;
        }
        let after = window.run::<(), _>("k".into(), &metrics, async { Ok("2") }).await;
        assert_eq!(after, Ok(("2", false)));
    }

    #[tokio::test]
    async fn a_claimed_key_answers_its_duplicates_when_settled_and_frees_itself_when_dropped() {
        let metrics = Metrics::default();
        let window = Window::<u64>::new(Duration::from_secs(60), 10, REASON);
        let Claim::First(first) = window.claim("k".into(), &metrics) else { panic!("a new key") };
        let Claim::Seen(waiting) = window.claim("k".into(), &metrics) else { panic!("in flight") };
        assert_eq!(waiting.ready(), None, "not answered yet");
        let waiter = tokio::spawn(waiting.answer());
        first.settle(7);
        assert_eq!(waiter.await.expect("joined"), Some(7));
        let Claim::Seen(seen) = window.claim("k".into(), &metrics) else { panic!("answered") };
        assert_eq!(seen.ready(), Some(7));

        let Claim::First(failing) = window.claim("f".into(), &metrics) else { panic!("a new key") };
        let Claim::Seen(waiting) = window.claim("f".into(), &metrics) else { panic!("in flight") };
        drop(failing);
        assert_eq!(waiting.answer().await, None, "the first attempt failed");
        assert!(matches!(window.claim("f".into(), &metrics), Claim::First(_)), "a failed key runs anew");
    }
}
