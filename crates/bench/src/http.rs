//! `switchboard bench http`: C clients, each with one HTTP request in
//! flight, for a duration: requests per second, request latency and (given
//! --pid) the server's CPU. By default each request publishes a message
//! (`POST /api/rooms/ROOM/messages`, a JSON body of --size bytes); the same
//! requests go to any HTTP server (`--path`), such as the `hyper-hello` peer
//! that gives the machine's ceiling. Keep-alive (one connection per client,
//! reused) or `--new-connection` (a connection per request, closed by the
//! server: `Connection: close`, so the TIME_WAIT is the server's).

use super::common::{payload, source_ip};
use super::latency::histogram;
use super::measure::{Latency, Usage};
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;

#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Server address (host:port of its HTTP listener).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub server: SocketAddr,
    /// The request's path [default: /api/rooms/ROOM/messages].
    #[arg(long)]
    pub path: Option<String>,
    /// The room published to (with the default path).
    #[arg(long, default_value = "bench-http")]
    pub room: String,
    /// Publish volatile messages (delivered, not stored).
    #[arg(long)]
    pub volatile: bool,
    /// Clients, each with one request in flight.
    #[arg(long, short = 'c', default_value_t = 50)]
    pub clients: usize,
    /// A new connection for every request instead of keep-alive.
    #[arg(long)]
    pub new_connection: bool,
    /// Seconds to run for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Size of the message body in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) to spread connections over.
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// API key, sent as `Authorization: Bearer`.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Server process id, to measure its CPU time over the run.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What one client did.
struct Done {
    ok: u64,
    /// Answers that were not 2xx, by status.
    refused: BTreeMap<u16, u64>,
    histogram: hdrhistogram::Histogram<u64>,
}

pub async fn run(args: &HttpArgs) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let before = Usage::read(args.pid, None)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration.max(0.0));
    let tasks: Vec<_> = (0..args.clients).map(|index| tokio::spawn(client(args.clone(), index, deadline))).collect();
    let mut total = Done { ok: 0, refused: BTreeMap::new(), histogram: histogram()? };
    for task in tasks {
        let done = task.await.context("a client task failed")??;
        total.ok += done.ok;
        for (status, count) in done.refused {
            *total.refused.entry(status).or_default() += count;
        }
        total.histogram.add(&done.histogram)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = Usage::read(args.pid, None)?.since(before).process;
    print(args, &total, seconds, cpu)
}

/// A new connection from this client's source address, handshaken.
async fn connect(server: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(server).await.with_context(|| format!("connecting to {server}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Requests until `deadline`, one at a time.
async fn client(args: HttpArgs, index: usize, deadline: Instant) -> anyhow::Result<Done> {
    let mut done = Done { ok: 0, refused: BTreeMap::new(), histogram: histogram()? };
    let source = source_ip(args.server, index, args.sources);
    let path = args.path.clone().unwrap_or_else(|| format!("/api/rooms/{}/messages", args.room));
    let host = args.server.to_string();
    let mut kept: Option<SendRequest<Full<Bytes>>> = None;
    let (mut body, mut n) = (Vec::new(), 0u64);
    while Instant::now() < deadline {
        n += 1;
        let sent = Instant::now();
        body.clear();
        body.extend_from_slice(b"{\"body\":");
        payload(&mut body, n, super::common::now_micros(), args.size);
        body.extend_from_slice(if args.volatile { b",\"volatile\":true}" } else { b"}" });
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path.as_str())
            .header(header::HOST, host.as_str())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = &args.api_key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        if args.new_connection {
            request = request.header(header::CONNECTION, "close");
        }
        let request = request.body(Full::new(Bytes::copy_from_slice(&body)))?;
        let mut sender = match kept.take() {
            Some(sender) => sender,
            None => connect(args.server, source).await?,
        };
        sender.ready().await.context("the connection closed")?;
        let response = sender.send_request(request).await.context("sending a request")?;
        let status = response.status();
        response.into_body().collect().await.context("reading an answer")?;
        done.histogram.saturating_record((sent.elapsed().as_micros() as u64).max(1));
        if status.is_success() {
            done.ok += 1;
        } else {
            *done.refused.entry(status.as_u16()).or_default() += 1;
        }
        if !args.new_connection {
            kept = Some(sender);
        }
    }
    Ok(done)
}

fn print(args: &HttpArgs, total: &Done, seconds: f64, cpu: Option<f64>) -> anyhow::Result<()> {
    let requests = total.ok + total.refused.values().sum::<u64>();
    let rate = total.ok as f64 / seconds;
    let latency = Latency::from_micros(&total.histogram);
    let per_cpu = cpu.map(|cpu| total.ok as f64 / cpu);
    let mode = if args.new_connection { "new connection per request" } else { "keep-alive" };
    let path = args.path.clone().unwrap_or_else(|| format!("/api/rooms/{}/messages", args.room));
    if args.json {
        let report = serde_json::json!({
            "scenario": "http",
            "path": path,
            "mode": mode,
            "clients": args.clients,
            "size": args.size,
            "volatile": args.volatile,
            "seconds": seconds,
            "requests": requests,
            "ok": total.ok,
            "refused": total.refused,
            "ok_per_second": rate,
            "latency_ms": latency,
            "server_cpu_seconds": cpu,
            "ok_per_cpu_second": per_cpu,
        });
        println!("{report}");
        return Ok(());
    }
    println!("http POST {path} against {} ({mode}): {} clients, {} B", args.server, args.clients, args.size);
    println!("{} answered 2xx in {seconds:.2}s: {rate:.0}/s", total.ok);
    if !total.refused.is_empty() {
        println!("refused: {:?} (by status)", total.refused);
    }
    if let Some(l) = latency {
        println!("request ms: {l}");
    }
    if let (Some(cpu), Some(per_cpu)) = (cpu, per_cpu) {
        println!("server CPU {cpu:.2}s, {per_cpu:.0} requests per CPU-second");
    }
    Ok(())
}
