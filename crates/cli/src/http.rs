//! A small HTTP/1.1 client for the operator commands (`healthcheck`,
//! `connections`): one request on a connection of its own, plain or TLS
//! (`https://`, rustls as the server), bounded in time and in the size of
//! the answer. hyper's client connection does the HTTP.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::time::Duration;
use switchboard_bench::tls::TlsArgs;
use tokio::net::TcpStream;

/// The largest answer read (a connection table of ~50,000 rows).
pub const MAX_ANSWER: usize = 16 << 20;

/// Where a command reaches the server, and how to trust its certificate.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The server's HTTP address: a URL (http://HOST:PORT, https://...),
    /// HOST:PORT, or a bare port on 127.0.0.1.
    #[arg(default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// For https: trust the certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// For https: accept any certificate (a self-signed one on loopback).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// How long the whole request may take.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The body as text, for error messages (at most a line's worth).
    pub fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(200) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text.to_owned(),
        }
    }
}

/// The scheme, host and port of `url`, which may also be `HOST:PORT` or a
/// bare port (on 127.0.0.1), as the listener flags take them.
pub fn base(url: &str) -> anyhow::Result<Uri> {
    let url = url.trim().trim_end_matches('/');
    let full = if url.contains("://") {
        url.to_owned()
    } else if let Ok(port) = url.parse::<u16>() {
        format!("http://127.0.0.1:{port}")
    } else {
        format!("http://{url}")
    };
    let uri: Uri = full.parse().with_context(|| format!("{url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => bail!("{url:?}: only http:// and https:// URLs"),
    }
    if uri.host().is_none() {
        bail!("{url:?} names no host");
    }
    Ok(uri)
}

impl ServerArgs {
    /// Sends `method` to `path_and_query` under the server's URL, with an
    /// `Authorization: Bearer` header when `api_key` is given.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        api_key: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<Answer> {
        let base = base(&self.url)?;
        let work = self.exchange(&base, method, path_and_query, api_key, body);
        match tokio::time::timeout(self.timeout, work).await {
            Ok(answer) => answer.with_context(|| format!("asking {base}")),
            Err(_) => bail!("{base} did not answer within {}", humantime::format_duration(self.timeout)),
        }
    }

    async fn exchange(
        &self,
        base: &Uri,
        method: Method,
        path_and_query: &str,
        api_key: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<Answer> {
        let https = base.scheme_str() == Some("https");
        let host = base.host().unwrap_or("127.0.0.1").trim_start_matches('[').trim_end_matches(']');
        let port = base.port_u16().unwrap_or(if https { 443 } else { 80 });
        let address = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let tcp = TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
        let name = host.parse::<std::net::IpAddr>().is_err().then(|| host.to_owned());
        let tls = TlsArgs::for_https(https, self.ca.clone(), self.insecure, name);
        let stream = tls.wrap(tcp, address).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let authority = base.authority().map_or_else(|| host.to_owned(), |a| a.to_string());
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, concat!("switchboard/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = api_key {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(body.unwrap_or_default())).context("building the request")?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|error| anyhow::anyhow!("reading the answer: {error}"))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_written_as_for_the_listeners() {
        let shown = |url: &str| base(url).map(|uri| uri.to_string()).map_err(|error| error.to_string());
        assert_eq!(shown("8080"), Ok("http://127.0.0.1:8080/".to_owned()));
        assert_eq!(shown("10.0.0.5:9000"), Ok("http://10.0.0.5:9000/".to_owned()));
        assert_eq!(shown("https://chat.example:8443/"), Ok("https://chat.example:8443/".to_owned()));
        assert!(shown("ftp://x").is_err_and(|error| error.contains("only http")));
    }
}
