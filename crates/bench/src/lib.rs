//! The load generator behind `switchboard bench`: its scenarios as a clap
//! subcommand ([`Scenario`]) and [`run`], which the binary dispatches to.
//! `idle` and `fanout` start worker processes of the running executable
//! with `bench idle|fanout ... --worker FIRST:COUNT`, so the binary that
//! calls [`run`] must route its `bench` subcommand here.
//!
//! The scenarios: `idle` measures what an idle, joined WebSocket (or,
//! with `--sse`, Server-Sent Events follower) costs the server; `fanout`,
//! `echo` and `churn` measure delivery, round trips and connection
//! turnover over WebSocket, against Switchboard or a peer server (see
//! `target`); `tcp-fanout` and `udp-relay` measure delivery rate, loss and
//! latency on the raw transports (and `tcp-fanout` the same load against
//! redis pub/sub); `stored` and `replay` measure storage: acked sends and
//! replay after `join` with `since`; `http` measures HTTP publishes (or
//! any HTTP server's requests).
//!
//! Against a server in token mode, set `SWITCHBOARD_BENCH_TOKEN_SECRET`
//! (HS256) or `SWITCHBOARD_BENCH_TOKEN_KEY` (a private key in PEM: ES256,
//! EdDSA, RS256): each WebSocket connection then presents a token for its
//! name, minted once per name before it connects, with
//! `SWITCHBOARD_BENCH_TOKEN_INFO` (JSON) as its `info` claim if set.

mod churn;
mod common;
mod echo;
mod fanout;
mod http;
mod idle;
mod latency;
mod lines;
mod measure;
mod replay;
pub mod signing;
mod sseclient;
mod stored;
mod target;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tls;
#[cfg(test)]
mod tests_ws;
pub mod tls;
mod udp;
mod workers;
mod wsclient;
mod wsfanout;

#[derive(clap::Subcommand, Debug)]
pub enum Scenario {
    /// Open N connections, join each to a room, hold them, and report the
    /// connect rate and (given --pid) the server's resident memory per connection.
    Idle(idle::IdleArgs),
    /// S subscribers in one room over WebSocket, P publishers at a total
    /// rate: deliveries/s, loss, latency and (given --pid) server CPU, against
    /// Switchboard or a peer server (--target).
    Fanout(wsfanout::WsFanoutArgs),
    /// C connections, each sending a message and waiting for it to come
    /// back, for a duration: round trips/s and round-trip latency.
    Echo(echo::EchoArgs),
    /// K loops of connect, join and close: connections per second.
    Churn(churn::ChurnArgs),
    /// N subscribers on raw TCP, one publisher at a fixed rate: deliveries/s,
    /// loss, publish-to-receive latency and (given --pid) server CPU.
    TcpFanout(fanout::FanoutArgs),
    /// N UDP receivers in one room, one UDP sender at a fixed rate:
    /// relayed datagrams/s, loss, latency and (given --pid) server CPU.
    UdpRelay(udp::RelayArgs),
    /// P publishers on raw TCP, each in its own room (so fan-out does not
    /// dominate), one send outstanding each: acked (stored) messages/s,
    /// send-to-ack latency, errors and (given --pid) server CPU.
    Stored(stored::StoredArgs),
    /// Fill a fresh room with N stored messages, then time a `join` with
    /// `since: 0` until `replayed`, checking messages 1..=N arrive in order.
    Replay(replay::ReplayArgs),
    /// C HTTP clients publishing (POST /api/rooms/ROOM/messages), one
    /// request in flight each, keep-alive or a new connection per request:
    /// requests/s, latency and (given --pid) server CPU. --path sends the
    /// same requests to any HTTP server (the hyper-hello peer).
    Http(http::HttpArgs),
}

pub fn run(scenario: Scenario) -> anyhow::Result<()> {
    // Every scenario holds sockets: take the whole allowance, and refuse at
    // once (not after connecting thousands) what one process cannot hold.
    // `idle` and `fanout` spread their connections over worker processes.
    let (open_files, room) = common::socket_allowance();
    if let Some(sockets) = scenario.sockets_in_one_process() {
        anyhow::ensure!(
            sockets <= room,
            "{sockets} connections exceed what one process may open here ({room} with an open-files limit of \
             {open_files}); `bench idle` and `bench fanout` spread connections over worker processes"
        );
    }
    target::init_tokens()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match scenario {
        Scenario::Idle(args) => runtime.block_on(idle::run(args)),
        Scenario::Echo(args) => runtime.block_on(echo::run(&args)),
        Scenario::Churn(args) => runtime.block_on(churn::run(&args)),
        Scenario::Fanout(args) => match args.worker {
            Some((first, count)) => runtime.block_on(workers::serve(&args, first, count)),
            None => runtime.block_on(wsfanout::run(&args))?.print(args.json),
        },
        Scenario::TcpFanout(args) => runtime.block_on(fanout::run(&args))?.print(args.json),
        Scenario::UdpRelay(args) => runtime.block_on(udp::run(&args))?.print(args.json),
        Scenario::Stored(args) => runtime.block_on(stored::run_stored(&args))?.print(args.json),
        Scenario::Replay(args) => runtime.block_on(replay::run_replay(&args))?.print(args.json),
        Scenario::Http(args) => runtime.block_on(http::run(&args)),
    }
}

impl Scenario {
    /// The sockets a scenario that runs in one process holds at once.
    fn sockets_in_one_process(&self) -> Option<usize> {
        match self {
            Scenario::Echo(args) => Some(args.connections),
            Scenario::Churn(args) => Some(args.concurrency),
            Scenario::TcpFanout(args) => Some(args.subscribers + 1),
            Scenario::UdpRelay(args) => Some(args.receivers + 1),
            Scenario::Stored(args) => Some(args.publishers),
            Scenario::Http(args) => Some(args.clients),
            Scenario::Idle(_) | Scenario::Fanout(_) | Scenario::Replay(_) => None,
        }
    }
}

/// A progress bar on standard error for `len` items called `what`; hidden
/// when the report is JSON or standard error is not a terminal.
fn progress(len: u64, what: &str, json: bool) -> anyhow::Result<indicatif::ProgressBar> {
    if json {
        return Ok(indicatif::ProgressBar::hidden());
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(indicatif::ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}}"))?);
    Ok(bar)
}
