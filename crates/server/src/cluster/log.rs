//! Logs (room histories and DM inboxes) in Redis: the `publish` script that
//! assigns `seq`, and the reads of a log's meta and history ranges.
//!
//! A log's `seq` is gapless within an epoch and assigned by one script, so
//! for one log the order of `PUBLISH`es equals `seq` order. `ts` comes from
//! Redis's clock and never goes backwards within a log. The epoch changes
//! when the meta key is gone (expired, evicted, deleted, or lost with the
//! data): its history is then dropped with it. It also changes, keeping
//! the history, when a node finds the log went back in time ([`Engine::diverge`]).

use super::payload::{self, number, text};
use super::scripts::scripts;
use super::{bounded, ClusterError, Engine};
use crate::store::{new_epoch, LogKey, StoredMessage};
use redis::Value;
use serde_json::value::RawValue;
use std::time::Duration;

/// A message to append.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Who sent it.
    pub from: &'a str,
    /// The body as the client sent it (valid JSON).
    pub body: &'a RawValue,
    /// The caller's idempotency scope (who, target, key), if any: a repeat
    /// within `idempotency_window` gets the first answer and stores nothing.
    pub idempotency: Option<&'a str>,
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    pub epoch: u64,
    /// Milliseconds since the Unix epoch, on Redis's clock.
    pub ts: u64,
    /// An idempotency repeat: these are the first attempt's values.
    pub duplicate: bool,
}

/// What Redis knows about a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogInfo {
    pub epoch: u64,
    /// The newest `seq` (0 before the first message of this epoch).
    pub top_seq: u64,
    /// The oldest retained `seq`; `top_seq + 1` when nothing is retained.
    pub first_seq: u64,
    /// `ts` of the oldest retained message (0 when none).
    pub first_ts: u64,
    /// An inbox's delivery cursor: its DMs through this `seq` reached one
    /// of the user's connections on some node (0 for a room).
    pub delivered: u64,
}

impl Engine {
    /// Appends `message` to `log` and publishes it to the log's channel, in
    /// one script. Returns once Redis ran it: the ack may go out.
    pub async fn publish(&self, log: &LogKey, message: Outgoing<'_>) -> Result<Published, ClusterError> {
        let mut published = self.publish_batch(log, &[message]).await?;
        published.pop().ok_or_else(|| ClusterError::BadReply("publish answered no message".to_owned()))
    }

    /// Appends `messages` to `log` in this order and publishes each to the
    /// log's channel, in one script (one round trip, however many). Returns
    /// once Redis ran it (and the durability waits passed): every ack may go
    /// out. An error leaves each message unconfirmed: the script may have
    /// stored some before it failed.
    pub async fn publish_batch(&self, log: &LogKey, messages: &[Outgoing<'_>]) -> Result<Vec<Published>, ClusterError> {
        let keys = self.keys().log(log);
        let config = self.config();
        let ttl = match log.kind {
            crate::store::LogKind::Room => config.room_ttl,
            crate::store::LogKind::Inbox => config.inbox_ttl,
        };
        let mut call = scripts().publish.key(&keys.meta);
        call.key(&keys.stream);
        call.arg(new_epoch())
            .arg(config.history_max_len.max(1))
            .arg(ttl.map_or(0, whole_seconds))
            .arg(&keys.channel)
            .arg(self.keys().publish_command())
            .arg(log.kind.code())
            .arg(json_string(&log.name)?)
            .arg(whole_seconds(config.idempotency_window));
        for message in messages {
            if let Some(scope) = message.idempotency {
                call.key(keys.idempotency(scope));
            }
            call.arg(message.from)
                .arg(json_string(message.from)?)
                .arg(message.body.get())
                .arg(u8::from(message.idempotency.is_some()));
        }
        let mut conn = self.conn();
        let reply: Value = bounded(self.timeout(), Some("publish"), call.invoke_async(&mut conn)).await?;
        let published = publish_answers(&reply)?;
        if published.len() != messages.len() {
            return Err(ClusterError::BadReply(format!(
                "publish answered {} of {} messages",
                published.len(),
                messages.len()
            )));
        }
        self.wait_durable(&keys.meta).await?;
        Ok(published)
    }

    /// The log's epoch, newest and oldest retained `seq`; `None` when Redis
    /// has no such log (never written, expired or lost).
    pub async fn meta(&self, log: &LogKey) -> Result<Option<LogInfo>, ClusterError> {
        let keys = self.keys().log(log);
        let mut call = scripts().meta.key(&keys.meta);
        call.key(&keys.stream);
        let mut conn = self.conn();
        let reply: Value = bounded(self.timeout(), Some("meta"), call.invoke_async(&mut conn)).await?;
        let fields = match reply {
            Value::Nil => return Ok(None),
            Value::Array(fields) => fields,
            other => return Err(payload::bad("meta answer", &other)),
        };
        let [epoch, top, oldest, first_ts, delivered] = fields.as_slice() else {
            return Err(ClusterError::BadReply(format!("meta answer has {} fields", fields.len())));
        };
        let top_seq = number(top)?;
        let oldest = text(oldest)?;
        let (first_seq, first_ts) =
            if oldest.is_empty() { (top_seq + 1, 0) } else { (payload::stream_seq(&oldest)?, number(first_ts)?) };
        let delivered = number(delivered)?;
        Ok(Some(LogInfo { epoch: number(epoch)?, top_seq, first_seq, first_ts, delivered }))
    }

    /// Moves an inbox's delivery cursor in `epoch` forward to `seq`
    /// (never back). Returns the cursor now.
    pub async fn mark_delivered(&self, log: &LogKey, epoch: u64, seq: u64) -> Result<u64, ClusterError> {
        let keys = self.keys().log(log);
        let mut call = scripts().delivered.key(&keys.meta);
        call.arg(epoch).arg(seq);
        let mut conn = self.conn();
        bounded(self.timeout(), Some("delivered"), call.invoke_async(&mut conn)).await
    }

    /// Moves the log from `epoch` to a new one, keeping its stream and
    /// `seq`: a node found that Redis went back in time (a failover lost
    /// messages it had delivered, and the new master reuses their `seq`s).
    /// Returns the log's epoch now (another node may have moved it first);
    /// `None` when its meta is gone.
    pub async fn diverge(&self, log: &LogKey, epoch: u64) -> Result<Option<u64>, ClusterError> {
        let keys = self.keys().log(log);
        let mut call = scripts().diverge.key(&keys.meta);
        call.arg(epoch).arg(new_epoch());
        let mut conn = self.conn();
        let reply: Value = bounded(self.timeout(), Some("diverge"), call.invoke_async(&mut conn)).await?;
        match reply {
            Value::Nil => Ok(None),
            other => Ok(Some(number(&other)?)),
        }
    }

    /// Up to `limit` messages with `seq > after`, oldest first.
    pub async fn after(&self, log: &LogKey, after: u64, limit: usize) -> Result<Vec<StoredMessage>, ClusterError> {
        if limit == 0 || after == u64::MAX {
            return Ok(Vec::new());
        }
        let stream = self.keys().log(log).stream;
        let mut command = redis::cmd("XRANGE");
        command.arg(&stream).arg(format!("{}-0", after + 1)).arg("+").arg("COUNT").arg(limit);
        let mut conn = self.conn();
        payload::entries(bounded(self.timeout(), None, command.query_async(&mut conn)).await?)
    }

    /// Up to `limit` messages with `seq < before`, oldest first (the newest
    /// `limit` of them).
    pub async fn before(&self, log: &LogKey, before: u64, limit: usize) -> Result<Vec<StoredMessage>, ClusterError> {
        if limit == 0 || before <= 1 {
            return Ok(Vec::new());
        }
        let stream = self.keys().log(log).stream;
        let mut command = redis::cmd("XREVRANGE");
        command.arg(&stream).arg(format!("{}-0", before - 1)).arg("-").arg("COUNT").arg(limit);
        let mut conn = self.conn();
        let mut messages = payload::entries(bounded(self.timeout(), None, command.query_async(&mut conn)).await?)?;
        messages.reverse();
        Ok(messages)
    }
}

/// The publish script's answer: `{seq, epoch, ts, duplicate}` per message.
fn publish_answers(reply: &Value) -> Result<Vec<Published>, ClusterError> {
    let Value::Array(answers) = reply else {
        return Err(payload::bad("publish answer", reply));
    };
    let one = |answer: &Value| match answer {
        Value::Array(fields) => match fields.as_slice() {
            [seq, epoch, ts, duplicate] => Ok(Published {
                seq: number(seq)?,
                epoch: number(epoch)?,
                ts: number(ts)?,
                duplicate: number(duplicate)? == 1,
            }),
            _ => Err(payload::bad("publish answer", answer)),
        },
        _ => Err(payload::bad("publish answer", answer)),
    };
    answers.iter().map(one).collect()
}

/// `text` as a JSON string (quoted and escaped).
fn json_string(text: &str) -> Result<String, ClusterError> {
    serde_json::to_string(text).map_err(|error| ClusterError::BadReply(error.to_string()))
}

/// A duration as whole seconds, at least 1 (Redis refuses `EX 0`).
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs().max(1)
}
