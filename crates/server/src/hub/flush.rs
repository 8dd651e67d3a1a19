//! The hub's flush clock: write coalescing for fan-out.
//!
//! Time is cut into windows (`[delivery] write_window`, 5 ms by default). A
//! connection that has frames others published to it, and already wrote in
//! the current window, does not write again at once: it parks its waker here
//! and the clock wakes it at the start of a later window, together with every
//! other connection due then. Under load each write then carries every frame
//! of its windows, so the system calls per delivery fall with the rate
//! instead of rising with it; after a quiet spell (no write yet in this
//! window) a frame goes out at once, so light traffic gets no added latency.
//! A connection's own answers never wait: those made while reading are
//! written right after the read (see `transport::stream`), and those that
//! come later (a stored message's ack, a history page) wake the task past
//! the clock ([`crate::hub::conn::Conn::enqueue_reply`]).
//!
//! How many windows a connection waits between writes is its *span*, kept
//! by the connection and adjusted here after each write ([`FlushClock::next_span`]):
//! a write that carried at least [`GROW_FRAMES_PER_WINDOW`] frames per window
//! of span doubles it, up to `write_window_max`; one that carried fewer than
//! [`SHRINK_FRAMES_PER_WINDOW`] per window halves it, and a connection that
//! was quiet for two spans starts again from one window. So only a connection
//! receiving more than about 800 frames a second (with 5 ms windows) waits
//! longer than one window, and it falls back as soon as its traffic does, the
//! way network cards moderate interrupts only under load.
//!
//! One clock task serves the whole hub and runs only while connections are
//! parked, so an idle server has no timer running and idle connections hold
//! no timer at all.

use crate::util::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::Waker;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A write carrying at least this many frames per window of its span
/// doubles the span.
pub const GROW_FRAMES_PER_WINDOW: usize = 4;
/// A write carrying fewer than this many frames per window of its span
/// halves the span.
pub const SHRINK_FRAMES_PER_WINDOW: usize = 2;
/// The longest span, in windows: a write takes at most 64 frames (see
/// `transport::stream`), which is what growing past 16 windows would need.
const MAX_SPAN: u8 = 16;

/// Hands out window numbers and wakes parked connections when their window
/// comes.
#[derive(Debug)]
pub struct FlushClock {
    start: Instant,
    /// The window's length in nanoseconds; 0 turns coalescing off.
    window_nanos: u64,
    /// The longest span a connection may grow to (1: spans never grow).
    max_span: u8,
    /// Parked wakers with the window each waits for.
    parked: Mutex<Vec<(u32, Waker)>>,
    /// Tells the clock task that the first connection parked.
    first_parked: Notify,
    /// Windows the clock task has woken up for (tests check that it rests).
    passes: AtomicU64,
}

impl FlushClock {
    /// A clock with windows of `window` (zero turns coalescing off) that
    /// lets a busy connection's span grow to `window_max`.
    pub fn new(window: Duration, window_max: Duration) -> Self {
        let window_nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let max_span = match window_nanos {
            0 => 1,
            nanos => (window_max.as_nanos() / u128::from(nanos)).clamp(1, u128::from(MAX_SPAN)) as u8,
        };
        FlushClock {
            start: Instant::now(),
            window_nanos,
            max_span,
            parked: Mutex::default(),
            first_parked: Notify::new(),
            passes: AtomicU64::new(0),
        }
    }

    /// Whether writes are coalesced at all.
    pub fn enabled(&self) -> bool {
        self.window_nanos != 0
    }

    /// The current window's number (wrapping; compared with wrapping
    /// arithmetic only).
    pub fn window(&self) -> u32 {
        // In u64 (584 years of nanoseconds): a u128 division is a libcall,
        // and this runs on every write.
        let elapsed = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        elapsed.checked_div(self.window_nanos).unwrap_or(0) as u32
    }

    /// The span a connection keeps after a write that carried `frames`
    /// frames with span `span`, `since` windows after its previous write
    /// (see the module docs). A connection quiet for two spans or more
    /// starts again from one window: its traffic fell.
    pub fn next_span(&self, span: u8, frames: usize, since: u32) -> u8 {
        if since >= 2 * u32::from(span) {
            return if frames >= GROW_FRAMES_PER_WINDOW { 2.min(self.max_span) } else { 1 };
        }
        let windows = usize::from(span);
        if frames >= GROW_FRAMES_PER_WINDOW * windows {
            span.saturating_mul(2).min(self.max_span)
        } else if frames < SHRINK_FRAMES_PER_WINDOW * windows {
            (span / 2).max(1)
        } else {
            span
        }
    }

    /// Parks `waker` until window `until` starts.
    pub fn park(&self, waker: &Waker, until: u32) {
        let mut parked = lock(&self.parked);
        let first = parked.is_empty();
        parked.push((until, waker.clone()));
        drop(parked);
        if first {
            self.first_parked.notify_one();
        }
    }

    /// When the next window starts.
    fn next_window_start(&self) -> Instant {
        let elapsed = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Only ticks while something is parked, which needs a window.
        let window = self.window_nanos.max(1);
        let next = (elapsed / window + 1).saturating_mul(window);
        self.start + Duration::from_nanos(next)
    }

    /// The clock task: while anything is parked, wakes at the start of each
    /// window whatever waits for it. Returns when `stop` fires (parked
    /// connections are woken then too, so none waits for a clock that is
    /// gone).
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
                tokio::select! {
                    _ = &mut stop => break 'run,
                    _ = tokio::time::sleep_until(self.next_window_start().into()) => {}
                }
                self.passes.fetch_add(1, Ordering::Relaxed);
                let now = self.window();
                let mut parked = lock(&self.parked);
                // Due: `until` is `now` or earlier (wrapping; a span is short).
                woken.extend(parked.extract_if(.., |(until, _)| now.wrapping_sub(*until) < u32::MAX / 2));
                let rest = parked.is_empty();
                drop(parked);
                woken.drain(..).for_each(|(_, waker)| waker.wake());
                if rest {
                    break;
                }
            }
        }
        std::mem::take(&mut *lock(&self.parked)).into_iter().for_each(|(_, waker)| waker.wake());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    /// How long a test waits for a wake-up before it fails.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A waker that records when it was woken.
    #[derive(Default)]
    struct Woken {
        at: Mutex<Vec<Instant>>,
        notify: Notify,
    }

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            lock(&self.at).push(Instant::now());
            self.notify.notify_one();
        }
    }

    impl Woken {
        fn new() -> (Arc<Woken>, Waker) {
            let woken = Arc::new(Woken::default());
            let waker = Waker::from(Arc::clone(&woken));
            (woken, waker)
        }

        /// Waits until woken `count` times in all, failing after [`PATIENCE`].
        async fn until(&self, count: usize) {
            let woken = async {
                while lock(&self.at).len() < count {
                    self.notify.notified().await;
                }
            };
            tokio::time::timeout(PATIENCE, woken).await.expect("woken in time");
        }

        /// The clock's window at each wake-up.
        fn windows(&self, clock: &FlushClock) -> Vec<u32> {
            let window =
                |at: &Instant| (at.duration_since(clock.start).as_nanos() / u128::from(clock.window_nanos)) as u32;
            lock(&self.at).iter().map(window).collect()
        }
    }

    fn running(clock: &Arc<FlushClock>) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let clock = Arc::clone(clock);
            async move { clock.run(async { drop(stop_rx.await) }).await }
        });
        (stop_tx, task)
    }

    async fn stop(stop: tokio::sync::oneshot::Sender<()>, task: tokio::task::JoinHandle<()>) {
        drop(stop);
        tokio::time::timeout(PATIENCE, task).await.expect("the clock stops in time").expect("the clock task ends");
    }

    #[tokio::test]
    async fn parked_wakers_are_woken_in_the_next_window_and_the_clock_then_rests() {
        let clock = Arc::new(FlushClock::new(Duration::from_millis(5), Duration::from_millis(5)));
        let (stopping, task) = running(&clock);
        let (woken, waker) = Woken::new();
        let parked_in = clock.window();
        clock.park(&waker, parked_in.wrapping_add(1));
        clock.park(&waker, parked_in.wrapping_add(1));
        woken.until(2).await;
        let windows = woken.windows(&clock);
        assert!(
            windows.iter().all(|&w| w > parked_in),
            "woken only once the window ended: {windows:?} from {parked_in}"
        );
        assert!(lock(&clock.parked).is_empty());
        // Nothing is parked: however long it is left alone, the clock does
        // not wake again.
        let passes = clock.passes.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(clock.passes.load(Ordering::Relaxed), passes, "the clock rests while nothing is parked");
        // Parking again after a rest works too.
        clock.park(&waker, clock.window().wrapping_add(1));
        woken.until(3).await;
        stop(stopping, task).await;
    }

    #[tokio::test]
    async fn a_waker_parked_for_a_later_window_waits_for_it() {
        let clock = Arc::new(FlushClock::new(Duration::from_millis(20), Duration::from_millis(80)));
        let (stopping, task) = running(&clock);
        let (soon, soon_waker) = Woken::new();
        let (later, later_waker) = Woken::new();
        let parked_in = clock.window();
        clock.park(&later_waker, parked_in.wrapping_add(4));
        clock.park(&soon_waker, parked_in.wrapping_add(1));
        soon.until(1).await;
        later.until(1).await;
        // Each in its own window or after (later only if the machine stalled).
        let (soon, later) = (soon.windows(&clock)[0], later.windows(&clock)[0]);
        assert!(soon.wrapping_sub(parked_in) >= 1, "woken in window {soon}, parked in {parked_in} for the next");
        assert!(later.wrapping_sub(parked_in) >= 4, "woken in window {later}, parked in {parked_in} for +4");
        stop(stopping, task).await;
    }

    #[tokio::test]
    async fn stopping_the_clock_wakes_what_is_parked() {
        let clock = Arc::new(FlushClock::new(Duration::from_secs(60), Duration::from_secs(60)));
        let (stopping, task) = running(&clock);
        let (woken, waker) = Woken::new();
        clock.park(&waker, clock.window().wrapping_add(1));
        stop(stopping, task).await;
        assert_eq!(woken.windows(&clock), [0], "woken at once, in the first minute-long window");
    }

    #[test]
    fn a_busy_connection_s_span_doubles_up_to_the_most_and_halves_when_traffic_falls() {
        let clock = FlushClock::new(Duration::from_millis(5), Duration::from_millis(20));
        // 1,000 frames a second: 5 per 5 ms window, then 10 per two, 20 per four
        // (each write one span, or a window more, after the last).
        assert_eq!(clock.next_span(1, 5, 1), 2);
        assert_eq!(clock.next_span(2, 10, 3), 4);
        assert_eq!(clock.next_span(4, 20, 4), 4, "20 ms is the most");
        // 300 frames a second: 1 or 2 per window, no growth.
        assert_eq!(clock.next_span(1, 2, 1), 1);
        assert_eq!(clock.next_span(1, 3, 1), 1);
        // Traffic falls to 300 a second: 6 frames in four windows.
        assert_eq!(clock.next_span(4, 6, 4), 2);
        assert_eq!(clock.next_span(2, 3, 2), 1);
        // Between the two lines the span stays.
        assert_eq!(clock.next_span(4, 8, 5), 4);
        assert_eq!(clock.next_span(2, 7, 2), 2);
    }

    #[test]
    fn a_connection_quiet_for_two_spans_starts_again_from_one_window() {
        let clock = FlushClock::new(Duration::from_millis(5), Duration::from_millis(20));
        assert_eq!(clock.next_span(4, 1, 8), 1);
        assert_eq!(clock.next_span(4, 1, 1_000), 1);
        // A burst after the pause still counts, from one window.
        assert_eq!(clock.next_span(4, 30, 8), 2);
        // The clock's wrapping window numbers: a write "before" the last is long ago.
        assert_eq!(clock.next_span(4, 1, u32::MAX), 1);
    }

    #[test]
    fn spans_do_not_grow_when_the_most_is_one_window() {
        let clock = FlushClock::new(Duration::from_millis(5), Duration::from_millis(5));
        assert_eq!(clock.next_span(1, 64, 1), 1);
        assert_eq!(clock.next_span(1, 64, 100), 1);
        let below = FlushClock::new(Duration::from_millis(5), Duration::ZERO);
        assert_eq!(below.next_span(1, 64, 1), 1);
        let far = FlushClock::new(Duration::from_millis(1), Duration::from_secs(1));
        assert_eq!(far.max_span, MAX_SPAN);
    }

    #[test]
    fn a_zero_window_is_off() {
        let clock = FlushClock::new(Duration::ZERO, Duration::from_millis(20));
        assert!(!clock.enabled());
        assert_eq!(clock.window(), 0);
    }
}
