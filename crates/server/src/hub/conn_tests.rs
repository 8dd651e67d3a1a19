//! Unit tests of the connection queue and the replay hold.

use super::*;
use std::task::Waker;

fn conn() -> Conn {
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    Conn::new(1, Arc::from("alice"), peer, Transport::WebSocket, 0)
}

fn poll(conn: &Conn) -> Poll<Outgoing> {
    conn.poll_outgoing(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn overflow_drops_the_queue_and_requests_slow_consumer_close() {
    let conn = conn();
    assert_eq!(conn.enqueue(Bytes::from_static(&[0; 6]), 10), Enqueued::Queued);
    assert_eq!(conn.enqueue(Bytes::from_static(&[0; 4]), 10), Enqueued::Queued);
    assert_eq!(conn.enqueue(Bytes::from_static(&[0; 1]), 10), Enqueued::Overflow { dropped: 3 });
    assert_eq!(conn.queued_bytes(), 0);
    assert_eq!(conn.enqueue(Bytes::from_static(&[0; 1]), 10), Enqueued::Closed);
    assert_eq!(poll(&conn), Poll::Ready(Outgoing::Close(CloseCode::SlowConsumer)));
}

#[test]
fn a_partly_written_frame_survives_a_discard() {
    let conn = conn();
    conn.enqueue(Bytes::from_static(b"abcdef"), 100);
    conn.enqueue(Bytes::from_static(b"ghi"), 100);
    conn.consume(2);
    assert_eq!(conn.queued_bytes(), 7);
    assert_eq!(conn.close(CloseCode::SlowConsumer, true), 1);
    let mut out = [Bytes::new(), Bytes::new()];
    assert_eq!(conn.peek(&mut out), 1);
    assert_eq!(&out[0][..], b"cdef", "the rest of the head is still sent");
    assert_eq!(conn.queued_bytes(), 4);
}

#[test]
fn peek_and_consume_walk_the_queue() {
    let conn = conn();
    conn.enqueue(Bytes::from_static(b"one"), 100);
    conn.enqueue(Bytes::from_static(b"two"), 100);
    let mut out = [Bytes::new(), Bytes::new(), Bytes::new()];
    assert_eq!(conn.peek(&mut out), 2);
    conn.consume(4);
    assert_eq!(conn.peek(&mut out), 1);
    assert_eq!(&out[0][..], b"wo");
    conn.consume(2);
    assert!(conn.is_drained());
    assert_eq!(conn.queued_bytes(), 0);
    assert_eq!(poll(&conn), Poll::Pending);
}

#[test]
fn a_moved_queue_keeps_its_partly_written_head() {
    let (old, new) = (conn(), conn());
    old.enqueue(Bytes::from_static(b"abcdef"), 100);
    old.enqueue(Bytes::from_static(b"gh"), 100);
    old.consume(2);
    old.move_queue_to(&new);
    let mut out = [Bytes::new(), Bytes::new()];
    assert_eq!(new.peek(&mut out), 2);
    assert_eq!((&out[0][..], &out[1][..]), (&b"cdef"[..], &b"gh"[..]), "the head resumes where it stopped");
    assert_eq!((new.queued_bytes(), old.queued_bytes()), (6, 0));
    assert!(old.is_drained());
}

fn drain(conn: &Conn) -> Vec<Bytes> {
    let mut out = vec![Bytes::new(); 16];
    let count = conn.peek(&mut out);
    conn.consume(out[..count].iter().map(Bytes::len).sum());
    out.truncate(count);
    out
}

#[test]
fn a_replay_goes_ahead_of_held_frames_and_drops_their_duplicates() {
    let conn = conn();
    conn.enqueue(Bytes::from_static(b"before"), 100);
    conn.begin_replay();
    conn.enqueue_stored(Bytes::from_static(b"live5"), 100, 1, 5);
    conn.enqueue(Bytes::from_static(b"ack"), 100);
    conn.enqueue_stored(Bytes::from_static(b"live6"), 100, 1, 6);
    conn.enqueue_stored(Bytes::from_static(b"other5"), 100, 2, 5);
    assert_eq!(drain(&conn), [&b"before"[..]], "live frames are held");
    conn.enqueue_replayed(Bytes::from_static(b"old4"), 100);
    conn.enqueue_replayed(Bytes::from_static(b"old5"), 100);
    assert_eq!(conn.queued_bytes(), 8 + 5 + 3 + 5 + 6, "held frames count toward the bound");
    assert_eq!(conn.end_replay(1, 5), 0);
    let order: Vec<Bytes> = drain(&conn);
    assert_eq!(order, [&b"old4"[..], b"old5", b"ack", b"live6", b"other5"]);
    assert_eq!(conn.queued_bytes(), 0);
}

#[test]
fn held_frames_are_not_released_after_a_close() {
    let conn = conn();
    conn.begin_replay();
    conn.enqueue_stored(Bytes::from_static(b"live"), 100, 1, 9);
    conn.close(CloseCode::GoingAway, false);
    assert_eq!(conn.end_replay(1, 3), 1, "dropped, since the close frame may follow at any time");
    assert_eq!(poll(&conn), Poll::Ready(Outgoing::Close(CloseCode::GoingAway)));
}

#[test]
fn graceful_close_keeps_queued_frames() {
    let conn = conn();
    conn.enqueue(Bytes::from_static(b"last words"), 100);
    assert_eq!(conn.close(CloseCode::GoingAway, false), 0);
    assert_eq!(poll(&conn), Poll::Ready(Outgoing::Frames));
    conn.consume(10);
    assert_eq!(poll(&conn), Poll::Ready(Outgoing::Close(CloseCode::GoingAway)));
}

#[test]
fn a_connection_heard_after_the_sweep_read_the_clock_is_not_silent() {
    let conn = conn();
    conn.heard(10_005);
    assert_eq!(conn.silent_for_ms(10_000), 0, "heard 5 ms after `now`: no silence");
    assert_eq!(conn.silent_for_ms(10_105), 100);
    // Across the u32 wrap of the millisecond clock too.
    conn.heard(u64::from(u32::MAX) - 10);
    assert_eq!(conn.silent_for_ms(u64::from(u32::MAX) + 20), 30);
}

#[test]
fn gather_copies_small_frames_from_where_the_head_stopped() {
    let conn = conn();
    conn.enqueue(Bytes::from_static(b"abcdef"), 10_000);
    conn.enqueue(Bytes::from_static(b"gh"), 10_000);
    conn.consume(2);
    let mut out = Vec::with_capacity(64);
    assert_eq!(conn.gather(&mut out, 64), Gathered::Copied { frames: 2 });
    assert_eq!(out, b"cdefgh");
    conn.consume(out.len());
    assert_eq!(conn.gather(&mut out, 64), Gathered::Nothing);
    assert!(out.is_empty(), "the buffer is cleared even when nothing is copied");
}

#[test]
fn gather_stops_at_the_buffer_the_frame_limit_and_a_large_frame() {
    let conn = conn();
    let large = Bytes::from(vec![7; GATHER_FRAME_MAX + 1]);
    for frame in [&b"one"[..], b"two", b"three"] {
        conn.enqueue(Bytes::copy_from_slice(frame), 10_000);
    }
    conn.enqueue(large.clone(), 10_000);
    conn.enqueue(Bytes::from_static(b"after"), 10_000);
    let mut small = Vec::with_capacity(8);
    assert_eq!(conn.gather(&mut small, 64), Gathered::Copied { frames: 2 }, "a third frame would not fit");
    assert_eq!(small, b"onetwo");
    let mut out = Vec::with_capacity(16 * 1024);
    assert_eq!(conn.gather(&mut out, 1), Gathered::Copied { frames: 1 });
    assert_eq!(conn.gather(&mut out, 64), Gathered::Copied { frames: 3 }, "stops before the large frame");
    assert_eq!(out, b"onetwothree");
    conn.consume(out.len());
    assert_eq!(conn.gather(&mut out, 64), Gathered::HeadTooLarge);
    let mut handles = vec![Bytes::new(); 4];
    assert_eq!(conn.peek(&mut handles), 2, "the large head is written by reference, with what follows");
    assert_eq!(handles[0], large);
}

struct CountWakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_task_waiting_for_the_clock_is_woken_by_an_answer_only() {
    let conn = conn();
    let wakes = Arc::new(CountWakes(std::sync::atomic::AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&wakes));
    conn.enqueue(Bytes::from_static(b"fan-out"), 100);
    assert!(conn.wait_unless_reply(&waker), "only fan-out frames: wait for the clock");
    conn.enqueue(Bytes::from_static(b"more"), 100);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "more fan-out does not wake a waiting task");
    conn.enqueue_reply(Bytes::from_static(b"ack"), 100);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "an answer does");
    assert!(!conn.wait_unless_reply(&waker), "with an answer queued, write now");
    let mut out = Vec::with_capacity(64);
    assert_eq!(conn.gather(&mut out, 64), Gathered::Copied { frames: 3 });
    assert_eq!(out, b"fan-outmoreack", "the answer keeps its place behind earlier frames");
    conn.consume(out.len());
    conn.enqueue(Bytes::from_static(b"next"), 100);
    assert!(conn.wait_unless_reply(&waker), "the answer went out with that write");
}

#[test]
fn frames_held_during_a_replay_are_released_past_the_clock() {
    let conn = conn();
    let waker = Waker::noop();
    conn.begin_replay();
    conn.enqueue_replayed(Bytes::from_static(b"old"), 100);
    conn.enqueue_reply(Bytes::from_static(b"ack"), 100);
    let mut out = Vec::with_capacity(64);
    assert_eq!(conn.gather(&mut out, 64), Gathered::Copied { frames: 1 }, "the ack is held behind the replay");
    conn.consume(out.len());
    assert!(conn.wait_unless_reply(waker), "nothing of the answer is queued now");
    assert_eq!(conn.end_replay(1, 0), 0);
    assert!(!conn.wait_unless_reply(waker), "the released ack is written at once, not at the next window");
}

#[test]
fn a_drained_queue_gives_its_memory_back_and_next_time_reserves_what_the_last_write_took() {
    let conn = conn();
    for _ in 0..20 {
        conn.enqueue(Bytes::from_static(b"x"), 100);
    }
    let mut out = Vec::with_capacity(64);
    assert_eq!(conn.gather(&mut out, 64), Gathered::Copied { frames: 20 });
    conn.consume(out.len());
    assert_eq!(conn.lock().frames.capacity(), 0, "an idle connection holds no queue buffer");
    conn.enqueue(Bytes::from_static(b"y"), 100);
    assert!(conn.lock().frames.capacity() >= 20, "room for the next write's frames in one allocation");
}
