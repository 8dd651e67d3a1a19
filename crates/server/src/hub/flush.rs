//! The hub's flush clock: write coalescing for fan-out.
//!
//! Time is cut into windows (`[delivery] write_window`, 5 ms by default). A
//! connection that has frames others published to it, and already wrote in
//! the current window, does not write again at once: it parks its waker here
//! and the clock wakes every parked connection together at the start of the
//! next window. Under load each write then carries every frame of a window,
//! so the system calls per delivery fall with the rate instead of rising
//! with it; after a quiet spell (no write yet in this window) a frame goes
//! out at once, so light traffic gets no added latency. A connection's own
//! replies never wait: they are written right after the read that caused
//! them (see `transport::stream`).
//!
//! One clock task serves the whole hub and runs only while connections are
//! parked, so an idle server has no timer running and idle connections hold
//! no timer at all.

use crate::util::lock;
use std::sync::Mutex;
use std::task::Waker;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Hands out window numbers and wakes parked connections when one ends.
#[derive(Debug)]
pub struct FlushClock {
    start: Instant,
    window: Duration,
    parked: Mutex<Vec<Waker>>,
    /// Tells the clock task that the first connection parked.
    first_parked: Notify,
}

impl FlushClock {
    /// A clock with windows of `window`; zero turns coalescing off.
    pub fn new(window: Duration) -> Self {
        FlushClock { start: Instant::now(), window, parked: Mutex::default(), first_parked: Notify::new() }
    }

    /// Whether writes are coalesced at all.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    /// The current window's number (wrapping; compared only for equality).
    pub fn window(&self) -> u32 {
        if self.window.is_zero() {
            return 0;
        }
        (self.start.elapsed().as_nanos() / self.window.as_nanos()) as u32
    }

    /// Parks `waker` until the current window ends.
    pub fn park(&self, waker: &Waker) {
        let mut parked = lock(&self.parked);
        let first = parked.is_empty();
        parked.push(waker.clone());
        drop(parked);
        if first {
            self.first_parked.notify_one();
        }
    }

    /// The clock task: while anything is parked, wakes it all at the start
    /// of each window. Returns when `stop` fires (parked connections are
    /// woken then too, so none waits for a clock that is gone).
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut woken = Vec::new();
        // `stop` must not be polled again once it fired: leave both loops.
        'run: loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = self.first_parked.notified() => {}
            }
            loop {
                let next = self.start + self.window * (self.window() + 1);
                tokio::select! {
                    _ = &mut stop => break 'run,
                    _ = tokio::time::sleep_until(next.into()) => {}
                }
                std::mem::swap(&mut *lock(&self.parked), &mut woken);
                if woken.is_empty() {
                    break;
                }
                woken.drain(..).for_each(Waker::wake);
            }
        }
        std::mem::take(&mut *lock(&self.parked)).into_iter().for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn parked_wakers_are_woken_in_the_next_window_and_the_clock_then_rests() {
        let clock = Arc::new(FlushClock::new(Duration::from_millis(5)));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let clock = Arc::clone(&clock);
            async move { clock.run(async { drop(stop_rx.await) }).await }
        });
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let parked_in = clock.window();
        clock.park(&waker);
        clock.park(&waker);
        while count.0.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        assert_ne!(clock.window(), parked_in, "woken only once the window ended");
        assert!(lock(&clock.parked).is_empty());
        // Parking again after a rest works too.
        clock.park(&waker);
        while count.0.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        drop(stop_tx);
        task.await.expect("the clock stops");
    }

    #[test]
    fn a_zero_window_is_off() {
        let clock = FlushClock::new(Duration::ZERO);
        assert!(!clock.enabled());
        assert_eq!(clock.window(), 0);
    }
}
