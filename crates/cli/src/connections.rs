//! `switchboard connections [URL]`: the server's connection table
//! (`GET /api/connections`) printed like `ss`: one connection a line in
//! aligned columns, sizes and ages for people; `--json` prints the answer
//! as the server gave it.

use crate::http::ServerArgs;
use anyhow::{bail, Context};
use hyper::Method;
use serde::Deserialize;
use std::fmt::Write as _;

#[derive(clap::Args, Debug)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The API key (one of the server's auth.api_keys).
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Only this user's connections.
    #[arg(long)]
    pub user: Option<String>,
    /// Only the members of this room.
    #[arg(long)]
    pub room: Option<String>,
    /// Print the server's JSON answer instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One row as the server sends it.
#[derive(Debug, Deserialize)]
pub struct Row {
    pub id: u64,
    pub fd: Option<i32>,
    pub transport: String,
    pub peer: String,
    pub user: String,
    pub rooms: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub queued_bytes: u64,
    pub age_ms: u64,
}

#[derive(Debug, Deserialize)]
struct Table {
    connections: Vec<Row>,
}

pub fn run(args: ConnectionsArgs) -> anyhow::Result<()> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(user) = &args.user {
        query.append_pair("user", user);
    }
    if let Some(room) = &args.room {
        query.append_pair("room", room);
    }
    let query = query.finish();
    let path = if query.is_empty() { "/api/connections".to_owned() } else { format!("/api/connections?{query}") };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = runtime.block_on(args.server.request(Method::GET, &path, args.api_key.as_deref(), None))?;
    if !answer.status.is_success() {
        bail!("{path} answered {}: {}", answer.status, answer.excerpt());
    }
    if args.json {
        println!("{}", String::from_utf8_lossy(&answer.body).trim_end());
        return Ok(());
    }
    let table: Table = serde_json::from_slice(&answer.body).context("the answer is not a connection table")?;
    print!("{}", render(&table.connections));
    Ok(())
}

const HEADERS: [&str; 10] = ["ID", "FD", "TRANSPORT", "PEER", "USER", "ROOMS", "IN", "OUT", "QUEUED", "AGE"];

/// The rows in aligned columns under a header line; numbers right-aligned.
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|row| {
            [
                row.id.to_string(),
                row.fd.map_or_else(|| "-".to_owned(), |fd| fd.to_string()),
                row.transport.clone(),
                row.peer.clone(),
                row.user.clone(),
                if row.rooms.is_empty() { "-".to_owned() } else { row.rooms.join(",") },
                size(row.bytes_in),
                size(row.bytes_out),
                size(row.queued_bytes),
                age(row.age_ms),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let headers = HEADERS.map(str::to_owned);
    for line in std::iter::once(&headers).chain(&cells) {
        let mut text = String::new();
        for (column, (cell, width)) in line.iter().zip(widths).enumerate() {
            let numeric = matches!(column, 0 | 1 | 6..=9);
            let pad = width - cell.chars().count();
            match (column, numeric) {
                (9, _) => text.push_str(&format!("{}{cell}", " ".repeat(pad))),
                (_, true) => text.push_str(&format!("{}{cell}  ", " ".repeat(pad))),
                (_, false) => text.push_str(&format!("{cell}{}  ", " ".repeat(pad))),
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    }
    out
}

/// Bytes for people: `512B`, `1.5K`, `12M`, `3.1G` (powers of 1024).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// An age for people: `850ms`, `42s`, `3m07s`, `5h02m`, `2d04h`.
pub fn age(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0 => format!("{ms}ms"),
        1..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        3600..=86_399 => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{:02}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_like_ss_and_ps() {
        assert_eq!(
            [size(0), size(1023), size(1536), size(10 * 1024 * 1024), size(5 << 30)],
            ["0B", "1023B", "1.5K", "10M", "5.0G"]
        );
        assert_eq!(
            [age(850), age(42_000), age(187_000), age(18_120_000), age(187_200_000)],
            ["850ms", "42s", "3m07s", "5h02m", "2d04h"]
        );
    }

    #[test]
    fn columns_line_up_under_their_headers() {
        let row = |id, user: &str, rooms: &[&str]| Row {
            id,
            fd: Some(12),
            transport: "websocket".into(),
            peer: "127.0.0.1:50000".into(),
            user: user.into(),
            rooms: rooms.iter().map(|room| (*room).to_owned()).collect(),
            bytes_in: 100,
            bytes_out: 123_456,
            queued_bytes: 0,
            age_ms: 61_000,
        };
        let table = render(&[row(1, "alice", &["lobby"]), row(12, "bartholomew", &[])]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        let user_column = lines[0].find("USER").expect("header");
        assert_eq!(lines[1].find("alice"), Some(user_column));
        assert_eq!(lines[2].find("bartholomew"), Some(user_column));
        assert!(lines[1].ends_with("1m01s") && lines[2].contains(" - "), "{table}");
        assert!(lines[1].contains("121K"), "{table}");
    }
}
