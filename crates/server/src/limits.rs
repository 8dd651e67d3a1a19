//! Process limits: the open-files limit, which bounds how many connections
//! one server can hold.

/// File descriptors kept back for listeners, logs, storage and the runtime.
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-files limit to the hard limit and returns the
/// soft limit now in force (or the current one if it cannot be raised).
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The connection limit: the configured one (0 = no own limit), capped by
/// what the open-files limit leaves after the reserve.
pub fn max_connections(configured: usize, open_files: u64) -> usize {
    let by_files = open_files.saturating_sub(RESERVED_FDS).max(1) as usize;
    match configured {
        0 => by_files,
        configured => configured.min(by_files),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limit_leaves_a_reserve() {
        assert_eq!(max_connections(0, 20_000), 19_936);
        assert_eq!(max_connections(100, 20_000), 100);
        assert_eq!(max_connections(50_000, 20_000), 19_936);
    }
}
