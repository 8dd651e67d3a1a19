//! The `switchboard` binary as the tests start it: serving on ephemeral
//! ports, its address read from its log (on stderr).

pub mod proxy;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the server may take to say where it listens.
const STARTUP: Duration = Duration::from_secs(30);

/// The `switchboard` binary serving on ephemeral ports, killed when dropped.
pub struct Server {
    child: Child,
    pub http: SocketAddr,
    /// Raw TCP (JSON lines or text).
    #[allow(dead_code)] // Not every test binary speaks raw TCP.
    pub tcp: SocketAddr,
}

impl Server {
    /// `switchboard serve` on port 0 with `flags` added.
    #[allow(dead_code)] // Not every test binary starts one without extra environment.
    pub fn start(flags: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Server {
        Server::start_with_env(flags, [("SWITCHBOARD_UNUSED", "")])
    }

    /// Like [`Server::start`], with `env` added to the environment.
    pub fn start_with_env(
        flags: impl IntoIterator<Item = impl AsRef<OsStr>>,
        env: impl IntoIterator<Item = (impl AsRef<OsStr>, impl AsRef<OsStr>)>,
    ) -> Server {
        Server::spawn("127.0.0.1:0", flags, env)
    }

    /// Like [`Server::start`], with HTTP and WebSocket on `http` (a
    /// restart on the port of a server that was killed).
    #[allow(dead_code)] // Only the restart tests need a given port.
    pub fn start_at(http: SocketAddr, flags: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Server {
        Server::spawn(&http.to_string(), flags, [("SWITCHBOARD_UNUSED", "")])
    }

    fn spawn(
        http: &str,
        flags: impl IntoIterator<Item = impl AsRef<OsStr>>,
        env: impl IntoIterator<Item = (impl AsRef<OsStr>, impl AsRef<OsStr>)>,
    ) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--http", http, "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"])
            .args(flags)
            .envs(env)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            // These tests send as fast as they can (the crash test keeps 200
            // sends in flight): per-connection rates have tests of their own.
            .env("SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND", "0")
            .env("SWITCHBOARD_LIMITS__BYTES_PER_SECOND", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchboard");
        let stderr = child.stderr.take().expect("stderr");
        let (found, address) = mpsc::channel();
        // Reads the whole log, so that the pipe never fills; each line is
        // shown with the test's output (captured unless it fails).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if line.contains("switchboard listening") {
                    let field = |name: &str| {
                        let value = line.split_whitespace().find_map(|word| word.strip_prefix(name));
                        value.and_then(|text| text.parse::<SocketAddr>().ok())
                    };
                    let _ = found.send(field("address=").zip(field("tcp=")));
                }
            }
        });
        let addresses = address.recv_timeout(STARTUP).expect("server logged its address");
        let (http, tcp) = addresses.expect("addresses parse");
        Server { child, http, tcp }
    }

    #[allow(dead_code)] // Not every test binary opens a client.
    pub fn url(&self, name: &str) -> String {
        format!("ws://{}/ws?name={name}", self.http)
    }

    /// SIGTERM: starts a graceful shutdown (not waited for).
    #[allow(dead_code)] // Only the cluster tests shut down gracefully.
    pub fn terminate(&mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|status| status.success()), "SIGTERM");
    }

    /// SIGKILL, and wait for the process to be gone.
    #[allow(dead_code)] // Only the crash tests kill.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
