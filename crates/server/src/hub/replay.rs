//! Reading stored messages back: the replay that follows a `join` or
//! `inbox` with `since`, and `history` pages.
//!
//! The switch from replay to live has no gap and no duplicate:
//! 1. before the connection becomes a member, [`Conn::begin_replay`] starts
//!    holding its live frames back (each stored one tagged `(log, seq)`);
//! 2. the replay reads storage page by page. A message is fanned out only
//!    after it is committed, so every message not caught live by the hold
//!    is already in storage when the first page is read;
//! 3. [`Conn::end_replay`] drops held copies of what was replayed and
//!    releases the rest behind it.
//!
//! Replayed frames go ahead of held ones and are paced by the connection's
//! queue: a replay waits while more than half the queue bound is unsent.

use super::conn::Conn;
use super::{Hub, HubError};
use crate::metrics::DropReason;
use crate::store::{LogKey, LogKind, StoreError, StoredMessage};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use switchboard_protocol::event::{self, Encoded};

/// Messages read per storage round trip during a replay.
const REPLAY_PAGE: usize = 256;
/// Most messages one `history` reply carries.
pub const HISTORY_MAX_LIMIT: u64 = 500;
/// Messages in a `history` reply when no `limit` is given.
pub const HISTORY_DEFAULT_LIMIT: u64 = 50;

/// The messages one `history` call returns, oldest first.
#[derive(Serialize)]
struct HistoryReply<'a> {
    room: &'a str,
    epoch: Option<u64>,
    messages: Vec<event::RoomMessage<'a>>,
    /// Whether older messages are retained (page on with `before`).
    more: bool,
}

/// One stored message as the event a live subscriber would have received.
fn stored_event(key: &LogKey, message: &StoredMessage) -> Encoded {
    let (name, body, from, seq, ts) = (&*key.name, &*message.body, &*message.from, message.seq, message.ts);
    match key.kind {
        LogKind::Room => {
            Encoded::new(&event::RoomMessage { ev: "msg", room: name, seq: Some(seq), from, ts, body, volatile: None })
        }
        LogKind::Inbox => Encoded::new(&event::DirectMessage { ev: "dm", from, to: name, seq, ts, body }),
    }
}

impl Hub {
    /// Reads a page on the blocking pool, once more after a failure.
    async fn read_after(&self, log: u64, after: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let mut result = Err(StoreError::Stopped);
        for attempt in 1..=2 {
            let reader = self.broker.reader();
            let read = tokio::task::spawn_blocking(move || reader.after(log, after, limit));
            result = read.await.unwrap_or(Err(StoreError::Stopped));
            match &result {
                Err(error) if attempt == 1 => tracing::warn!(%error, log, after, "replay read failed; retrying once"),
                _ => break,
            }
        }
        result
    }

    /// Queues `event` ahead of held frames, waiting for queue room first.
    async fn queue_replayed(&self, conn: &Conn, event: &Encoded) {
        let below = self.limits.outbound_queue_bytes / 2;
        std::future::poll_fn(|cx| conn.poll_replay_room(cx, below)).await;
        self.deliver_replayed(conn, event);
    }

    /// Queues `answer` (the join or inbox answer) ahead of held frames.
    pub fn reply_before_replay(&self, conn: &Conn, answer: &Encoded) {
        self.deliver_replayed(conn, answer);
    }

    fn deliver_replayed(&self, conn: &Conn, event: &Encoded) {
        if let Some(frame) = self.frame_for(conn, event) {
            self.account(conn, conn.enqueue_replayed(frame, self.limits.outbound_queue_bytes));
        }
    }

    /// Replays `key`'s messages with `after < seq <= through` to `conn`,
    /// then a `replayed` event, then releases live frames. The connection
    /// has called [`Conn::begin_replay`] and counted the request
    /// ([`Conn::begin_request`]); both end here. Runs as its own task.
    pub fn spawn_replay(self: &Arc<Self>, conn: Arc<Conn>, key: LogKey, range: (u64, u64, u64)) {
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            hub.replay(&conn, key, range).await;
            conn.end_request();
        });
    }

    async fn replay(&self, conn: &Conn, key: LogKey, (log, after, through): (u64, u64, u64)) {
        let (mut last, mut count, mut whole) = (after, 0u64, true);
        while last < through && !conn.is_closing() {
            let limit = REPLAY_PAGE.min(usize::try_from(through - last).unwrap_or(REPLAY_PAGE));
            let page = match self.read_after(log, last, limit).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, conn = conn.id, log, "replay read failed; recovered:false");
                    whole = false;
                    break;
                }
            };
            for message in page.iter().take_while(|message| message.seq <= through) {
                if message.seq != last + 1 {
                    // Retention overtook a slow replay.
                    whole = false;
                }
                self.queue_replayed(conn, &stored_event(&key, message)).await;
                (last, count) = (message.seq, count + 1);
            }
            if page.len() < limit {
                // Retention removed the rest of the range.
                whole &= last >= through;
                break;
            }
        }
        self.metrics.messages_replayed.inc_by(count);
        let (room, inbox) = match key.kind {
            LogKind::Room => (Some(&*key.name), None),
            LogKind::Inbox => (None, Some(true)),
        };
        let done = event::Replayed { ev: "replayed", room, inbox, count, recovered: whole };
        self.queue_replayed(conn, &Encoded::new(&done)).await;
        let dropped = conn.end_replay(log, last);
        if dropped > 0 {
            self.metrics.dropped(DropReason::Closing, dropped);
        }
        if key.kind == LogKind::Inbox && count > 0 {
            self.inbox_delivered(&key.name, last);
        }
    }

    /// Answers `history`: up to `limit` messages of `room` before `before`
    /// (newest first chosen, sent oldest first), within half the outbound
    /// queue bound. Runs as its own task; the reply follows when read.
    pub fn spawn_history(
        self: &Arc<Self>,
        conn: Arc<Conn>,
        id: Option<Box<RawValue>>,
        room: String,
        before: Option<u64>,
        limit: Option<u64>,
    ) -> Result<(), HubError> {
        if !conn.begin_request(false) {
            self.metrics.dropped(DropReason::TooManyPending, 1);
            return Err(HubError::TooManyPending);
        }
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            hub.history(&conn, id, room, before, limit).await;
            conn.end_request();
        });
        Ok(())
    }

    async fn history(
        &self,
        conn: &Conn,
        id: Option<Box<RawValue>>,
        room: String,
        before: Option<u64>,
        limit: Option<u64>,
    ) {
        // Without an id nobody would read the answer.
        let Some(id) = id else { return };
        let meta = self.broker.meta(LogKind::Room, &room);
        let limit = limit.unwrap_or(HISTORY_DEFAULT_LIMIT).clamp(1, HISTORY_MAX_LIMIT) as usize;
        let page = match meta {
            Some(meta) => {
                let (reader, before) = (self.broker.reader(), before.unwrap_or(u64::MAX));
                let read = tokio::task::spawn_blocking(move || reader.before(meta.id, before, limit));
                read.await.unwrap_or(Err(StoreError::Stopped))
            }
            None => Ok(Vec::new()),
        };
        match page {
            Ok(page) => self.reply_history(conn, &id, &room, meta.map(|meta| (meta.epoch, meta.first_seq)), &page),
            Err(error) => {
                tracing::error!(%error, conn = conn.id, room, "history read failed");
                let text = "history could not be read";
                let reply = event::Error::new(Some(&id), switchboard_protocol::ErrorCode::StorageFailed, text);
                self.reply(conn, &Encoded::new(&reply));
            }
        }
    }

    fn reply_history(&self, conn: &Conn, id: &RawValue, room: &str, log: Option<(u64, u64)>, page: &[StoredMessage]) {
        let budget = self.limits.outbound_queue_bytes / 2;
        let (mut used, mut start) = (0, page.len());
        // The newest message always goes, so paging always moves on.
        while start > 0 && (start == page.len() || used + page[start - 1].body.get().len() + room.len() + 96 <= budget)
        {
            start -= 1;
            used += page[start].body.get().len() + room.len() + 96;
        }
        let kept = &page[start..];
        let messages = kept
            .iter()
            .map(|m| event::RoomMessage {
                ev: "msg",
                room,
                seq: Some(m.seq),
                from: &m.from,
                ts: m.ts,
                body: &m.body,
                volatile: None,
            })
            .collect();
        let more = match (kept.first(), log) {
            (Some(oldest), Some((_, first_seq))) => first_seq < oldest.seq,
            _ => false,
        };
        let data = HistoryReply { room, epoch: log.map(|(epoch, _)| epoch), messages, more };
        self.reply(conn, &Encoded::new(&event::Ok { re: id, ok: true, data }));
    }
}
