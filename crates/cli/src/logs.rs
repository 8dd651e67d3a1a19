//! The server's log: where it goes, how it looks, and how a fatal error
//! ends it.
//!
//! Logs go to stderr (stdout stays for what a command prints), as text for
//! people or as JSON lines for collectors (`--log-format json`). Colours
//! only when stderr is a terminal and `NO_COLOR` is not set: a file, a pipe,
//! journald or `docker logs` get plain text.

use clap::ValueEnum;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line: timestamp, level, message and fields at
    /// the top level, the connection's span as `span`.
    Json,
}

/// Installs the global subscriber: level from `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).with_ansi(colours()).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_span_list(false).init(),
    }
}

/// Whether text logs may be coloured (<https://no-color.org>).
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Reports the error that ends the command, once and on one line: each
/// cause in the chain once, joined by `: ` (the server's errors carry their
/// causes in their messages and do not repeat them as sources). Through the
/// log when it is set up, so that it is the log's last line in its format.
pub fn fatal(error: &anyhow::Error, logging: bool) {
    if logging {
        tracing::error!("switchboard stopped: {error:#}");
    } else {
        eprintln!("error: {error:#}");
    }
}
