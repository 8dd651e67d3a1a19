//! One connection's outbound queue: the frames waiting to be written, the
//! waker of the task that writes them, and the live frames held back while
//! replayed history goes ahead of them. [`super::conn::Conn`] keeps it
//! under its lock and owns the rules (bounds, routes, wake-ups); this
//! module owns the bookkeeping of bytes and of a partly written head.

use bytes::Bytes;
use std::collections::VecDeque;
use std::task::Waker;

/// Frames wait here until they are written: the connection's task copies
/// the front frames into its thread's write buffer (or handles to them, when
/// large), writes them without holding the lock, then consumes what the
/// socket took. No second buffer exists per connection.
#[derive(Debug, Default)]
pub(super) struct Outbound {
    pub(super) frames: VecDeque<Bytes>,
    /// Bytes in `frames` not yet written (the bound applies to this).
    /// 32 bits: the configured bound is checked to fit (it keeps `Conn` in
    /// a smaller allocation class).
    pub(super) bytes: u32,
    /// Bytes of `frames[0]` already written. A partly written frame is
    /// never dropped: the close frame must follow a whole frame.
    pub(super) head_written: u32,
    pub(super) waker: Option<Waker>,
    /// Present only while a replay runs (boxed: idle connections pay 8 bytes).
    pub(super) hold: Option<Box<Hold>>,
}

/// Live frames held back while replayed history is queued ahead of them.
/// Their bytes count in `Outbound::bytes` too, so the bound covers both.
#[derive(Debug, Default)]
pub(super) struct Hold {
    /// Replays running on this connection.
    pub(super) replays: u32,
    pub(super) frames: VecDeque<HeldFrame>,
    pub(super) bytes: u32,
    /// Replay tasks waiting for the queue to drain (one per replay).
    pub(super) replay_wakers: Vec<Waker>,
}

#[derive(Debug)]
pub(super) struct HeldFrame {
    pub(super) frame: Bytes,
    /// `(log, seq)` of a stored message, so a replay can drop the live copy
    /// of a message it already sent.
    pub(super) tag: Option<(u64, u64)>,
}

impl Outbound {
    /// Keeps `waker` for the next push that needs the task (unless kept already).
    pub(super) fn keep_waker(&mut self, waker: &Waker) {
        match &self.waker {
            Some(kept) if kept.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }

    pub(super) fn push(&mut self, frame: Bytes) {
        self.bytes = self.bytes.saturating_add(len32(&frame));
        self.frames.push_back(frame);
    }

    /// Removes `written` bytes from the front of the queue. Returns how
    /// many frames it took if that emptied the queue (whose memory is then
    /// given back: an idle connection holds no queue buffer).
    pub(super) fn consume(&mut self, mut written: u32) -> Option<usize> {
        self.bytes = self.bytes.saturating_sub(written);
        let mut taken = 0;
        while let Some(head) = self.frames.front() {
            let left = len32(head) - self.head_written;
            if written < left {
                self.head_written += written;
                return None;
            }
            written -= left;
            self.head_written = 0;
            self.frames.pop_front();
            taken += 1;
        }
        self.frames = VecDeque::new();
        Some(taken)
    }

    /// Bytes in the write queue proper (not held).
    pub(super) fn queued_bytes(&self) -> u32 {
        self.bytes - self.hold.as_ref().map_or(0, |hold| hold.bytes)
    }

    /// Drops every queued frame except a partly written head; returns how
    /// many were dropped.
    pub(super) fn discard(&mut self) -> usize {
        let keep = usize::from(self.head_written > 0).min(self.frames.len());
        let mut dropped = self.frames.len() - keep;
        if let Some(hold) = &mut self.hold {
            dropped += hold.frames.len();
            hold.frames = VecDeque::new();
            hold.bytes = 0;
        }
        self.frames.truncate(keep);
        self.bytes = self.frames.front().map_or(0, |head| len32(head) - self.head_written);
        if self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
        dropped
    }
}

/// A frame's length as counted by the queue. Frames are bounded by the
/// message size limit, far below 4 GiB; saturate rather than wrap if not.
pub(super) fn len32(frame: &Bytes) -> u32 {
    u32::try_from(frame.len()).unwrap_or(u32::MAX)
}
