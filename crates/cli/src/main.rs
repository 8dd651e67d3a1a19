//! The `switchboard` command. It parses flags, sets up logging, binds and
//! dispatches subcommands; everything else lives in `switchboard-server`,
//! `switchboard-bench` for `bench`, and `switchboard-client` for the
//! client commands (`chat`, `send`, `tail`).

mod alloc;
mod chat;
mod connect;
mod connections;
mod health;
mod http;
mod logs;
mod send;
mod tail;
mod token;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard_server::config::listen::parse_listen_address;
use switchboard_server::store::sqlite::Sqlite;
use switchboard_server::store::SyncMode;
use switchboard_server::{Config, Listeners};
use tokio::net::{TcpListener, UdpSocket};

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "A real-time messaging server: rooms, DMs and presence over WebSocket"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (flags > SWITCHBOARD_* env > config file > defaults).
    Serve(ServeArgs),
    /// Print the default configuration file, every option explained.
    Config,
    /// Mint a JWT for token mode (development and tests) with the configured
    /// secret or a private key.
    Token(token::TokenArgs),
    /// Load generator scenarios. Against token mode, set
    /// SWITCHBOARD_BENCH_TOKEN_SECRET (HS256) or SWITCHBOARD_BENCH_TOKEN_KEY
    /// (a private key PEM) and each connection presents a token for its name.
    #[command(subcommand)]
    Bench(switchboard_bench::Scenario),
    /// Operate on stored history (with the server stopped).
    #[command(subcommand)]
    History(HistoryCommand),
    /// Ask a running server's /healthz: exit 0 when it answers 200 (for
    /// container and supervisor health checks).
    Healthcheck(health::HealthArgs),
    /// Print a running server's connection table like `ss`: each
    /// connection's id, file descriptor, transport, peer, user, rooms,
    /// bytes in and out, queued bytes and age.
    Connections(connections::ConnectionsArgs),
    /// Chat in the terminal: line editing and history, names in colour, the
    /// text mode's slash commands, and recovery across server restarts.
    Chat(chat::ChatArgs),
    /// Send messages to a room from a script: TEXT, or each line of
    /// standard input with `-`, each stored before the next is sent.
    Send(send::SendArgs),
    /// Print a room's events as NDJSON (one JSON object a line), following
    /// it across server restarts.
    Tail(tail::TailArgs),
}

#[derive(Subcommand)]
enum HistoryCommand {
    /// Delete a room's stored messages and give it a new epoch: clients
    /// rejoining with `since` get `recovered: false`.
    Reset {
        /// The room.
        room: String,
        /// Data directory.
        #[arg(long, default_value = "./switchboard-data")]
        data: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see `switchboard config`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// WebSocket and HTTP address; a bare port means 127.0.0.1 [default: 127.0.0.1:8080].
    #[arg(long, value_parser = parse_listen_address)]
    http: Option<SocketAddr>,
    /// Raw TCP address (JSON lines or text); a bare port means 127.0.0.1 [default: 127.0.0.1:7070].
    #[arg(long, value_parser = parse_listen_address)]
    tcp: Option<SocketAddr>,
    /// UDP address; a bare port means 127.0.0.1 [default: 127.0.0.1:7070].
    #[arg(long, value_parser = parse_listen_address)]
    udp: Option<SocketAddr>,
    /// Data directory of the SQLite storage [default: ./switchboard-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Storage backend: sqlite or memory [default: sqlite].
    #[arg(long, value_parser = ["sqlite", "memory"])]
    storage: Option<String>,
    /// When stored messages are fsynced: always, batch or none [default: always].
    #[arg(long, value_parser = ["always", "batch", "none"])]
    sync: Option<String>,
    /// Join a cluster of nodes serving the same rooms through Redis:
    /// redis://HOST:PORT, rediss://, redis+cluster://H1:P1,H2:P2 or
    /// redis+sentinel://H1:P1/MASTER (config `cluster.redis`).
    #[arg(long)]
    redis: Option<String>,
    /// PEM certificate chain: with --tls-key, serve HTTPS and WSS on the
    /// HTTP port and TLS on the raw TCP port (UDP stays plain). Reloaded on SIGHUP.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert's certificate.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log lines as text for people or JSON for collectors (to stderr).
    #[arg(long, value_enum, env = "SWITCHBOARD_LOG_FORMAT", default_value_t = logs::LogFormat::Text)]
    log_format: logs::LogFormat,
}

impl ServeArgs {
    /// The flags as a config layer: only flags that were given.
    fn overrides(&self) -> serde_json::Value {
        let mut layer = serde_json::Map::new();
        let mut set = |key: &str, value: Option<serde_json::Value>| {
            if let Some(value) = value {
                layer.insert(key.to_owned(), value);
            }
        };
        set("http", self.http.map(|a| json!(a)));
        set("tcp", self.tcp.map(|a| json!(a)));
        set("udp", self.udp.map(|a| json!(a)));
        set("data", self.data.as_ref().map(|d| json!(d)));
        let mut storage = serde_json::Map::new();
        if let Some(backend) = &self.storage {
            storage.insert("backend".into(), json!(backend));
        }
        if let Some(sync) = &self.sync {
            storage.insert("sync".into(), json!(sync));
        }
        if !storage.is_empty() {
            layer.insert("storage".into(), serde_json::Value::Object(storage));
        }
        if let Some(redis) = &self.redis {
            layer.insert("cluster".into(), json!({ "redis": redis }));
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            layer.insert("tls".into(), json!({"cert": cert, "key": key}));
        }
        serde_json::Value::Object(layer)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logging = match &cli.command {
        Command::Serve(args) => {
            logs::init(args.log_format);
            true
        }
        _ => false,
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            logs::fatal(&error, logging);
            // The client commands' failures have statuses of their own.
            error.downcast_ref::<connect::Failure>().map_or(ExitCode::FAILURE, connect::Failure::exit_code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Config => {
            print!("{}", switchboard_server::config::DEFAULT_TOML);
            Ok(())
        }
        Command::Serve(args) => serve(args),
        Command::Token(args) => token::run(args),
        Command::Bench(scenario) => switchboard_bench::run(scenario),
        Command::Healthcheck(args) => health::run(args),
        Command::Connections(args) => connections::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Send(args) => send::run(args),
        Command::Tail(args) => tail::run(args),
        Command::History(HistoryCommand::Reset { room, data }) => {
            let mut store = Sqlite::open(&data, SyncMode::Always)
                .with_context(|| format!("opening {} (is a server running on it?)", data.display()))?;
            match store.reset_room(&room)? {
                Some(epoch) => println!("room {room:?}: history deleted, new epoch {epoch}"),
                None => println!("room {room:?} has no stored history in {}", data.display()),
            }
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    switchboard_server::trim::set_release(alloc::purge);
    let config = Config::load(args.config.as_deref(), args.overrides())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let http = TcpListener::bind(config.http).await.with_context(|| format!("binding {}", config.http))?;
        let tcp = TcpListener::bind(config.tcp).await.with_context(|| format!("binding tcp {}", config.tcp))?;
        let udp = UdpSocket::bind(config.udp).await.with_context(|| format!("binding udp {}", config.udp))?;
        let listeners = Listeners { http, tcp: Some(tcp), udp: Some(udp) };
        let (reload, reloads) = tokio::sync::mpsc::channel(1);
        tokio::spawn(reload_on_sighup(args, reload));
        // On a worker thread, like every connection task: one allocator
        // arena instead of two interleaved ones.
        let server = switchboard_server::run_with_reload(config, listeners, shutdown_signal(), Some(reloads));
        tokio::spawn(server).await??;
        Ok(())
    })
}

/// On each SIGHUP, loads the configuration again (file, environment and
/// flags, as at start) and hands it to the server, which applies what can
/// change while serving. A file that does not load is reported and changes
/// nothing.
async fn reload_on_sighup(args: ServeArgs, reload: tokio::sync::mpsc::Sender<Config>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP; the configuration will not be reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        match Config::load(args.config.as_deref(), args.overrides()) {
            Ok(config) => {
                if reload.send(config).await.is_err() {
                    return;
                }
            }
            Err(error) => tracing::error!(%error, "configuration reload refused; the running configuration stays"),
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}
