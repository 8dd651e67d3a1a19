//! Real `redis-server` processes for the cluster tests: one server on a
//! free port (kill -9 and restart it on the same port and data), or a
//! 3-master Redis Cluster. Every child is killed when its handle drops.
//!
//! Without `redis-server` on the PATH the tests skip with a notice, unless
//! `SWITCHBOARD_REQUIRE_EXTERNAL=1` (CI), where they fail. The same holds
//! for `valkey-server`, which the one test of `WAITAOF` needs: Debian 12's
//! Redis is 7.0, and `WAITAOF` came in 7.2 (Valkey 8 forked from 7.2.4).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a server may take to answer PING, or a cluster to form.
const STARTUP: Duration = Duration::from_secs(30);

/// The server program most tests run.
const REDIS: &str = "redis-server";
/// A server with `WAITAOF` (Redis 7.2's API); see the module doc.
const VALKEY: &str = "valkey-server";

/// Whether `redis-server` can run here; prints the skip notice when not,
/// and panics instead when the environment requires it.
pub fn redis_available(test: &str) -> bool {
    program_available(test, REDIS, "apt-get install redis-server")
}

fn program_available(test: &str, program: &str, install: &str) -> bool {
    let found = Command::new(program).arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !found {
        if std::env::var("SWITCHBOARD_REQUIRE_EXTERNAL").is_ok_and(|value| value == "1") {
            panic!("{test}: {program} is required (SWITCHBOARD_REQUIRE_EXTERNAL=1) but not found ({install})");
        }
        eprintln!("SKIPPED {test}: {program} not found ({install})");
    }
    found
}

/// One `redis-server` with AOF on (`appendfsync always`) in its own
/// directory, on a port it keeps across restarts.
pub struct RedisServer {
    program: &'static str,
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
    /// Arguments before the options (a configuration file).
    leading: Vec<String>,
    extra: Vec<String>,
}

impl RedisServer {
    /// A standalone server, or None (skip) when redis-server is missing.
    pub fn start(test: &str) -> Option<RedisServer> {
        redis_available(test).then(|| RedisServer::launch(Vec::new(), Vec::new(), false))
    }

    /// A Valkey master and its replica, both with AOF on; None (skip) when
    /// valkey-server is missing.
    pub fn start_valkey_pair(test: &str) -> Option<(RedisServer, RedisServer)> {
        let install = "apt-get install -t bookworm-backports valkey-server";
        if !program_available(test, VALKEY, install) {
            return None;
        }
        let master = RedisServer::launch_program(VALKEY, Vec::new(), Vec::new(), false);
        let replica_of = vec!["--replicaof".to_owned(), "127.0.0.1".to_owned(), master.port.to_string()];
        let replica = RedisServer::launch_program(VALKEY, Vec::new(), replica_of, false);
        wait_until("the replica to sync", || replica.cli(&["INFO", "replication"]).contains("master_link_status:up"));
        // After a full sync the replica rewrites its AOF; until then it
        // confirms nothing to WAITAOF.
        replica.wait_for_aof();
        Some((master, replica))
    }

    /// Waits until the AOF is on and no rewrite of it runs or waits.
    pub fn wait_for_aof(&self) {
        wait_until("the AOF to be written", || {
            let info = self.cli(&["INFO", "persistence"]);
            ["aof_enabled:1", "aof_rewrite_in_progress:0", "aof_rewrite_scheduled:0"]
                .iter()
                .all(|field| info.lines().any(|line| line.trim() == *field))
        });
    }

    /// Starts a server with `extra` arguments on a free port, retrying on a
    /// port another process took meanwhile.
    fn launch(leading: Vec<String>, extra: Vec<String>, needs_bus_port: bool) -> RedisServer {
        RedisServer::launch_program(REDIS, leading, extra, needs_bus_port)
    }

    fn launch_program(
        program: &'static str,
        leading: Vec<String>,
        extra: Vec<String>,
        needs_bus_port: bool,
    ) -> RedisServer {
        let dir = TempDir::new().expect("temporary directory");
        let mut server = RedisServer { program, child: None, port: 0, dir, leading, extra };
        for _ in 0..10 {
            server.port = free_port(needs_bus_port);
            if server.spawn() {
                return server;
            }
        }
        panic!("{program} did not start on any of 10 free ports: {}", server.log());
    }

    /// Starts the process and waits for PING; false when it exited (port
    /// taken).
    fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("log file");
        let child = Command::new(self.program)
            .args(&self.leading)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().expect("try_wait").is_some() {
                    self.child = None;
                    return false;
                }
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} on port {} did not answer PING within {STARTUP:?}: {}", self.program, self.port, self.log());
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory (AOF).
    pub fn restart(&mut self) {
        self.kill9();
        assert!(self.spawn(), "{} could not restart on port {}: {}", self.program, self.port, self.log());
    }

    /// Runs `redis-cli` against this server; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// Runs `redis-cli <args>` every 10 ms, without blocking the runtime,
    /// until its output satisfies `done`; panics after [`STARTUP`].
    pub async fn cli_until(&self, args: &[&str], done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + STARTUP;
        while !done(&self.cli(args)) {
            assert!(Instant::now() < deadline, "waited {STARTUP:?} for redis-cli {args:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A copy of the data directory as it is now (the AOF is written on
    /// every command, `appendfsync always`).
    pub fn snapshot(&self) -> TempDir {
        let copy = TempDir::new().expect("temporary directory");
        copy_dir(self.dir.path(), copy.path());
        copy
    }

    /// SIGKILL, then starts again on `snapshot`'s data: Redis goes back to
    /// that moment, as after a failover to a replica that lagged.
    pub fn restart_from(&mut self, snapshot: &TempDir) {
        self.kill9();
        let appendonly = self.dir.path().join("appendonlydir");
        let _ = std::fs::remove_dir_all(&appendonly);
        copy_dir(snapshot.path(), self.dir.path());
        assert!(self.spawn(), "{} could not restart on port {}: {}", self.program, self.port, self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A 3-master Redis Cluster (no replicas).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three `--cluster-enabled` servers and joins them with
    /// `redis-cli --cluster create`; None (skip) when redis-server is
    /// missing.
    pub fn start(test: &str) -> Option<RedisCluster> {
        RedisCluster::start_with_replicas(test, 0)
    }

    /// Three masters with `replicas` replicas each, every replica in sync.
    pub fn start_with_replicas(test: &str, replicas: usize) -> Option<RedisCluster> {
        if !redis_available(test) {
            return None;
        }
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| {
                let extra = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ];
                RedisServer::launch(Vec::new(), extra.iter().map(|arg| arg.to_string()).collect(), true)
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)));
        let replicas = replicas.to_string();
        let output = create
            .args(["--cluster-replicas", &replicas, "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(output.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&output.stdout));
        wait_until("cluster_state:ok", || {
            nodes.iter().all(|node| node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        wait_until("every replica in sync", || {
            nodes.iter().all(|node| {
                let info = node.cli(&["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        });
        Some(RedisCluster { nodes })
    }

    /// The index in `nodes` of a replica of the master that holds `key`.
    pub fn replica_of_key(&self, key: &str) -> usize {
        let slot: u16 = self.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]).trim().parse().expect("a slot");
        let table = self.nodes[0].cli(&["CLUSTER", "NODES"]);
        let rows: Vec<Vec<&str>> = table.lines().map(|line| line.split_whitespace().collect()).collect();
        let holds = |ranges: &[&str]| {
            ranges.iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                (low.parse().unwrap_or(u16::MAX)..=high.parse().unwrap_or(0)).contains(&slot)
            })
        };
        let master = rows.iter().find(|row| row[2].contains("master") && holds(&row[8..])).expect("the slot's master");
        let replica = rows.iter().find(|row| row[3] == master[0]).expect("a replica of it");
        let port: u16 = replica[1].split(['@', ':']).nth(1).and_then(|p| p.parse().ok()).expect("its port");
        self.nodes.iter().position(|node| node.port == port).expect("one of ours")
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

/// A master, its replica and one Sentinel watching them (`mymaster`,
/// quorum 1, down after 1 s).
pub struct RedisSentinelSet {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
    _config: TempDir,
}

impl RedisSentinelSet {
    /// Starts the three once the replica is in sync and the Sentinel knows
    /// it; None (skip) when redis-server is missing.
    pub fn start(test: &str) -> Option<RedisSentinelSet> {
        if !redis_available(test) {
            return None;
        }
        let master = RedisServer::launch(Vec::new(), Vec::new(), false);
        let replica_of = vec!["--replicaof".to_owned(), "127.0.0.1".to_owned(), master.port.to_string()];
        let replica = RedisServer::launch(Vec::new(), replica_of, false);
        wait_until("the replica to sync", || replica.cli(&["INFO", "replication"]).contains("master_link_status:up"));
        let config = TempDir::new().expect("temporary directory");
        let file = config.path().join("sentinel.conf");
        let watch = format!(
            "sentinel monitor mymaster 127.0.0.1 {} 1\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 3000\n",
            master.port
        );
        std::fs::write(&file, watch).expect("write sentinel.conf");
        let leading = vec![file.to_string_lossy().into_owned()];
        let sentinel = RedisServer::launch(leading, vec!["--sentinel".to_owned()], false);
        let replica_port = format!("{}", replica.port);
        wait_until("the sentinel to know the replica", || {
            sentinel.cli(&["SENTINEL", "REPLICAS", "mymaster"]).lines().any(|line| line.trim() == replica_port)
        });
        Some(RedisSentinelSet { master, replica, sentinel, _config: config })
    }

    /// `redis+sentinel://127.0.0.1:<sentinel port>/mymaster`.
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/mymaster", self.sentinel.port)
    }

    /// Waits until the replica has everything the master wrote.
    pub fn wait_for_replica(&self) {
        let offset = |server: &RedisServer, field: &str| {
            let info = server.cli(&["INFO", "replication"]);
            info.lines().find_map(|line| line.strip_prefix(field).map(|v| v.trim().to_owned())).unwrap_or_default()
        };
        wait_until("the replica to catch up", || {
            let wanted = offset(&self.master, "master_repl_offset:");
            !wanted.is_empty() && offset(&self.replica, "slave_repl_offset:") == wanted
        });
    }
}

/// Polls `done` every 20 ms until it holds; panics after [`STARTUP`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + STARTUP;
    while !done() {
        assert!(Instant::now() < deadline, "waited {STARTUP:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `redis-cli -p <port> <args>`; its standard output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().expect("run redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Copies `from`'s contents into `to` (`cp -a`).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = Command::new("cp").arg("-a").arg(from.join(".")).arg(to).status().expect("run cp");
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

/// A port nobody listens on now (and, for cluster nodes, whose bus port,
/// 10000 above, is free too).
fn free_port(needs_bus_port: bool) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let port = listener.local_addr().expect("local addr").port();
        if !needs_bus_port {
            return port;
        }
        if port <= 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// Whether a server on `port` answers PING with PONG (not LOADING).
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    matches!(stream.read(&mut reply), Ok(n) if reply[..n].starts_with(b"+PONG"))
}

/// A TCP proxy in front of Redis that can freeze one of its connections:
/// the sockets stay open but nothing passes any more, as when a
/// subscription dies quietly behind a failover or a middlebox.
pub struct FreezingProxy {
    pub port: u16,
    frozen: std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>>>,
    /// While set, connections are closed as soon as they are accepted.
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pipes: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    /// Listens on a free port and forwards every connection to `upstream`.
    pub async fn start(upstream: u16) -> FreezingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let port = listener.local_addr().expect("local addr").port();
        let frozen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pipes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (connections, refusing, running) =
            (std::sync::Arc::clone(&frozen), std::sync::Arc::clone(&cut), std::sync::Arc::clone(&pipes));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refusing.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                connections.lock().expect("proxy lock").push(std::sync::Arc::clone(&flag));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let mut running = running.lock().expect("proxy lock");
                running.push(tokio::spawn(pipe(client_read, server_write, std::sync::Arc::clone(&flag))));
                running.push(tokio::spawn(pipe(server_read, client_write, flag)));
            }
        });
        FreezingProxy { port, frozen, cut, pipes, task }
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the `index`th connection (0: the first accepted).
    pub fn freeze(&self, index: usize) {
        let connections = self.frozen.lock().expect("proxy lock");
        connections[index].store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes every connection and refuses new ones until [`Self::mend`]:
    /// the node is cut off from Redis.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for pipe in self.pipes.lock().expect("proxy lock").drain(..) {
            pipe.abort();
        }
    }

    /// Lets connections through again.
    pub fn mend(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.frozen.lock().expect("proxy lock").len()
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` until either closes; once `frozen`, swallows it.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(read) = from.read(&mut buffer).await {
        if read == 0 {
            return;
        }
        if !frozen.load(std::sync::atomic::Ordering::SeqCst) && to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
