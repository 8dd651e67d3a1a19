//! What the client commands (`chat`, `send`, `tail`) share: who to be on
//! the server (`--name`, `--token`, `--ca`), connecting with the client
//! library, and how each way of failing becomes an exit status that a
//! script can branch on ([`Failure`], [`Kind`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use switchboard_client::{Backoff, Client, CloseCode, Error, Events};

/// A command's `--help` section on exit statuses: what 0 means for it,
/// then the statuses every client command shares (the README lists them
/// too, and [`Kind::status`] is where they are decided).
#[macro_export]
macro_rules! exit_status_help {
    ($success:literal) => {
        concat!(
            "Exit status:\n  0  ",
            $success,
            "\n",
            "  1  any other failure (reading standard input, writing standard output)\n",
            "  2  usage: bad flags, an unusable URL or CA file, a line that is not JSON with --json\n",
            "  3  cannot connect: nothing answers at the URL, TLS or the WebSocket upgrade failed\n",
            "  4  authentication refused: the server refused the token (or the name) at connect\n",
            "  5  the server refused the room or a message (forbidden, not_member, too_large, ...),\n",
            "     or a message was not acknowledged in time and may not be stored\n",
            "  6  the connection was lost mid-way and not regained (--retries ran out, or a reconnect was refused)",
        )
    };
}

/// Who to be on the server.
#[derive(clap::Args, Debug, Clone)]
pub struct Identity {
    /// The name to use (open mode); without it the server names you guest-N.
    #[arg(long, conflicts_with = "token")]
    pub name: Option<String>,
    /// A JWT (token mode): your name is its `sub`. Also read from
    /// SWITCHBOARD_TOKEN, which other users cannot see in `ps`.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust only this CA (PEM) for wss:// and tls:// (default: the public roots).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
}

/// Ways a client command fails, each with its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reading standard input or writing standard output failed.
    Io,
    /// Bad flags, URL, CA file or input.
    Usage,
    /// Nothing answered at the URL, or TLS or the upgrade failed.
    Unreachable,
    /// The server refused the credentials at connect.
    AuthRefused,
    /// The server refused a command, or a message may not be stored.
    Refused,
    /// The connection dropped and reconnecting gave up (or was refused).
    Lost,
}

impl Kind {
    /// The process's exit status (`exit_status_help!` says the same).
    pub fn status(self) -> u8 {
        match self {
            Kind::Io => 1,
            Kind::Usage => 2,
            Kind::Unreachable => 3,
            Kind::AuthRefused => 4,
            Kind::Refused => 5,
            Kind::Lost => 6,
        }
    }
}

/// Why a client command stopped: its kind (the exit status) and the line
/// printed on stderr.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into() }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.status())
    }

    /// The same failure, its message prefixed with `context` (`line 3: `).
    pub fn context(self, context: &str) -> Failure {
        Failure { kind: self.kind, message: format!("{context}: {}", self.message) }
    }

    /// A failure to connect: a refusal of who the client says it is
    /// (a token error, a name not allowed, HTTP 401 or 403, close 4003) is
    /// [`Kind::AuthRefused`]; anything else on the way is
    /// [`Kind::Unreachable`].
    pub fn connecting(error: Error) -> Failure {
        let kind = match &error {
            Error::Config(_) => Kind::Usage,
            // At connect the server refuses only the credentials.
            Error::Server(_) => Kind::AuthRefused,
            Error::Connect { status: Some(401 | 403), .. } => Kind::AuthRefused,
            Error::Closed(Some(close)) if close.code == CloseCode::Unauthorized => Kind::AuthRefused,
            _ => Kind::Unreachable,
        };
        Failure::new(kind, error.to_string())
    }

    /// A command's failure, `what` saying which command (`joining lobby`).
    pub fn command(what: &str, error: Error) -> Failure {
        let kind = match &error {
            Error::Config(_) => Kind::Usage,
            Error::Server(_) | Error::Unacknowledged { .. } => Kind::Refused,
            _ => Kind::Lost,
        };
        Failure::new(kind, format!("{what}: {error}"))
    }
}

/// The `--retries` flag's policy: the client library's backoff (500 ms
/// doubling to 30 s, full jitter), giving up after `retries` failed
/// attempts in a row, or never.
pub fn backoff(retries: Option<u32>) -> Backoff {
    Backoff { max_attempts: retries, ..Backoff::default() }
}

/// The client's `Reconnecting` event for people: why, and when the
/// attempt starts.
pub fn reconnecting(attempt: u32, delay: Duration, reason: &str) -> String {
    let reason = switchboard_protocol::text::sanitize(reason);
    format!("reconnecting… (attempt {attempt} in {:.1} s; {reason})", delay.as_secs_f64())
}

/// Connects to `url` as `identity`, reconnecting after drops by `backoff`.
pub async fn connect(url: &str, identity: &Identity, backoff: Backoff) -> Result<(Client, Events), Failure> {
    let mut builder = Client::builder(url).backoff(backoff);
    if let Some(name) = &identity.name {
        builder = builder.name(name);
    }
    if let Some(token) = &identity.token {
        builder = builder.token(token);
    }
    if let Some(path) = &identity.ca {
        let pem = std::fs::read(path)
            .map_err(|error| Failure::new(Kind::Usage, format!("reading {}: {error}", path.display())))?;
        builder = builder.tls(switchboard_client::tls_trusting_pem(&pem).map_err(Failure::connecting)?);
    }
    builder.connect().await.map_err(Failure::connecting)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_client::{Close, ServerError};

    fn refusal(code: &str) -> Error {
        Error::Server(ServerError { code: code.into(), message: "no".into() })
    }

    #[test]
    fn each_way_of_failing_to_connect_has_its_status() {
        let status = |error| Failure::connecting(error).kind.status();
        assert_eq!(status(refusal("token_expired")), 4);
        assert_eq!(status(Error::Connect { url: "u".into(), status: Some(401), reason: "r".into() }), 4);
        let unauthorized = Close { code: CloseCode::Unauthorized, reason: String::new() };
        assert_eq!(status(Error::Closed(Some(unauthorized))), 4);
        assert_eq!(status(Error::Connect { url: "u".into(), status: Some(404), reason: "r".into() }), 3);
        assert_eq!(status(Error::Connect { url: "u".into(), status: None, reason: "refused".into() }), 3);
        assert_eq!(status(Error::Timeout(Duration::from_secs(1))), 3);
        assert_eq!(status(Error::Config("bad".into())), 2);
    }

    #[test]
    fn each_way_a_command_fails_has_its_status() {
        let status = |error| Failure::command("sending", error).kind.status();
        assert_eq!(status(refusal("forbidden")), 5);
        assert_eq!(status(Error::Unacknowledged { op: "send", key: "k".into() }), 5);
        assert_eq!(status(Error::ClientClosed), 6);
        assert_eq!(status(Error::Disconnected { op: "join" }), 6);
        assert_eq!(status(Error::Config("bad".into())), 2);
        let failure = Failure::command("joining lobby", refusal("forbidden")).context("line 3");
        assert_eq!(failure.to_string(), "line 3: joining lobby: the server refused: forbidden: no");
        assert_eq!(failure.kind, Kind::Refused);
    }
}
