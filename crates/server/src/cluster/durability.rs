//! Waiting, before an ack, for a published message to be as durable as
//! the configuration asks: on `wait_replicas` replicas (`WAIT`), and with
//! `wait_aof` also in the master's append-only file (`WAITAOF`, Redis 7.2
//! and later; checked when the engine connects). Without either, an ack
//! means the script ran on the master. On Redis Cluster the wait goes to
//! the master of the log's slot, over the connection the script used: it
//! waits for that connection's writes, ours among them.

use super::payload::number;
use super::{bounded, ClusterConfig, ClusterError, Engine};
use redis::Value;

impl Engine {
    /// Refuses a configuration this Redis cannot honour: `wait_aof` before
    /// 7.2 (on Redis Cluster, the node answering `INFO` stands for all).
    pub(super) async fn check_durability(&self) -> Result<(), ClusterError> {
        let config = self.config();
        if config.wait_aof {
            let mut conn = self.conn();
            let info: String =
                bounded(self.timeout(), None, redis::cmd("INFO").arg("server").query_async(&mut conn)).await?;
            let version = info.lines().find_map(|line| line.strip_prefix("redis_version:")).unwrap_or("").trim();
            if !supports_waitaof(version) {
                let why = format!("cluster.wait_aof needs Redis 7.2 or later (WAITAOF); this one is {version}");
                return Err(ClusterError::Config(why));
            }
        }
        Ok(())
    }

    /// Waits until what this connection wrote to `key`'s master is on
    /// `wait_replicas` replicas (and in the AOF with `wait_aof`), within
    /// half the command timeout; an error when fewer confirmed it.
    pub(super) async fn wait_durable(&self, key: &str) -> Result<(), ClusterError> {
        let config: &ClusterConfig = self.config();
        if config.wait_replicas == 0 && !config.wait_aof {
            return Ok(());
        }
        let within = (config.command_timeout / 2).as_millis().max(1) as u64;
        let mut conn = self.conn();
        let mut command = match config.wait_aof {
            true => redis::cmd("WAITAOF"),
            false => redis::cmd("WAIT"),
        };
        if config.wait_aof {
            command.arg(1);
        }
        command.arg(config.wait_replicas).arg(within);
        let reply: Value = bounded(self.timeout(), Some("wait"), conn.query_for_key(command, key)).await?;
        let (local, replicas) = match &reply {
            Value::Array(fields) if fields.len() == 2 => (number(&fields[0])?, number(&fields[1])?),
            other => (1, number(other)?),
        };
        if local < 1 || replicas < u64::from(config.wait_replicas) {
            return Err(ClusterError::NotDurable(format!(
                "the message is on {replicas} of {} replicas (and {local} local AOF) after {within} ms",
                config.wait_replicas
            )));
        }
        Ok(())
    }
}

/// Whether `version` (`MAJOR.MINOR.PATCH`) has `WAITAOF` (7.2 and later).
fn supports_waitaof(version: &str) -> bool {
    let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (7, 2)
}

#[cfg(test)]
mod tests {
    #[test]
    fn waitaof_arrived_in_7_2() {
        assert!(!super::supports_waitaof("7.0.15"));
        assert!(super::supports_waitaof("7.2.0"));
        assert!(super::supports_waitaof("8.0.1"));
        assert!(!super::supports_waitaof(""));
    }
}
