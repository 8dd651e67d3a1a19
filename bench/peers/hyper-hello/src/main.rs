//! Benchmark peer: hyper's "hello world" server (hyper's `examples/hello`),
//! HTTP/1.1 with keep-alive, answering every request with `Hello, World!`.
//! It reads each request's body to its end first, as a server that parses a
//! JSON body must, then answers. Nothing else: no routing, no JSON, no
//! storage. What it serves per CPU-second on one core is the ceiling an HTTP
//! API on the same hyper and tokio can reach on this machine.
//!
//!   hyper-hello-peer PORT        (listens on 127.0.0.1:PORT)

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole body, as any server that uses it does.
    let _ = request.into_body().collect().await;
    Ok(Response::new(Full::new(Bytes::from_static(b"Hello, World!"))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let port: u16 = std::env::args().nth(1).or_else(|| std::env::var("PORT").ok()).unwrap_or_else(|| "3000".into()).parse()?;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    eprintln!("hyper-hello listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(hello)).await;
        });
    }
}
