//! One open connection, whatever its transport: a WebSocket (`ws://`,
//! `wss://`) or raw TCP JSON lines (`tcp://`, `tls://`). It sends command
//! texts and reads JSON values, and turns every way a connection ends (a
//! close frame, TCP's close line, a reset, end of stream) into
//! [`Error::Closed`] or a transport error. Receiving is cancel-safe, so a
//! caller may `select!` on it.

use crate::endpoint::{Endpoint, Scheme};
use crate::error::{Close, Error};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::pin::Pin;
use std::task::{Context, Poll};
use switchboard_protocol::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};

/// Longest line accepted from a raw TCP server (the server's own limit on
/// what it sends is its `limits.max_message_size` for message bodies).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// A TCP stream, encrypted or not.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// An open connection.
#[derive(Debug)]
pub enum Link {
    WebSocket(Box<WebSocketStream<Stream>>),
    Lines(Framed<Stream, LinesCodec>),
}

impl Link {
    /// Connects and reads the server's `hello`, which it returns. Over raw
    /// TCP the first line is a `hello` command with the name or token.
    pub async fn open(endpoint: &Endpoint) -> Result<(Link, Value), Error> {
        let stream = connect_stream(endpoint).await?;
        let mut link = if endpoint.scheme.is_websocket() {
            Link::WebSocket(Box::new(upgrade(endpoint, stream).await?))
        } else {
            let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
            let credentials = &endpoint.credentials;
            let mut hello = json!({"op": "hello"});
            if let Some(token) = &credentials.token {
                hello["token"] = json!(token);
            } else if let Some(name) = &credentials.name {
                hello["name"] = json!(name);
            }
            lines.send(hello.to_string()).await.map_err(line_error)?;
            Link::Lines(lines)
        };
        let hello = link.recv().await?;
        match hello["ev"].as_str() {
            Some("hello") => Ok((link, hello)),
            // Raw TCP answers a refused token with an error line, then closes.
            Some("error") => Err(Error::Server(crate::wire::server_error(&hello))),
            _ => Err(Error::Connect {
                url: endpoint.url.clone(),
                status: None,
                reason: format!("expected a hello, got {hello}"),
            }),
        }
    }

    /// Sends one command's JSON text.
    pub async fn send(&mut self, text: String) -> Result<(), Error> {
        match self {
            Link::WebSocket(socket) => socket.send(Message::text(text)).await.map_err(Error::from),
            Link::Lines(lines) => lines.send(text).await.map_err(line_error),
        }
    }

    /// The next JSON value from the server. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Value, Error> {
        match self {
            Link::WebSocket(socket) => loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
                    Some(Ok(Message::Binary(bytes))) => return Ok(serde_json::from_slice(&bytes)?),
                    Some(Ok(Message::Close(frame))) => return Err(Error::Closed(frame.map(close_of))),
                    // Pings are answered by tungstenite on the next read or write.
                    Some(Ok(_)) => {}
                    Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) | None => {
                        return Err(Error::Closed(None));
                    }
                    Some(Err(error)) => return Err(error.into()),
                }
            },
            Link::Lines(lines) => loop {
                let line = match lines.next().await {
                    Some(Ok(line)) => line,
                    Some(Err(error)) => return Err(line_error(error)),
                    None => return Err(Error::Closed(None)),
                };
                if line.trim().is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(&line)?;
                if value["ev"] == "close" {
                    let code = value["code"].as_u64().and_then(|code| u16::try_from(code).ok()).unwrap_or(1006);
                    let reason = value["reason"].as_str().unwrap_or_default().to_owned();
                    return Err(Error::Closed(Some(Close { code: CloseCode::from_u16(code), reason })));
                }
                return Ok(value);
            },
        }
    }

    /// Closes politely: a close frame (then waits briefly for the
    /// server's), or a shut-down write side.
    pub async fn close(&mut self) -> Result<(), Error> {
        match self {
            Link::WebSocket(socket) => {
                SinkExt::close(socket).await?;
                while let Some(Ok(_)) = socket.next().await {}
            }
            Link::Lines(lines) => {
                let stream = lines.get_mut();
                tokio::io::AsyncWriteExt::shutdown(stream).await?;
            }
        }
        Ok(())
    }
}

fn close_of(frame: CloseFrame<'_>) -> Close {
    Close { code: CloseCode::from_u16(u16::from(frame.code)), reason: frame.reason.into_owned() }
}

fn line_error(error: LinesCodecError) -> Error {
    match error {
        LinesCodecError::Io(error) => Error::Io(error),
        LinesCodecError::MaxLineLengthExceeded => Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the server sent a line over {MAX_LINE} bytes"),
        )),
    }
}

async fn connect_stream(endpoint: &Endpoint) -> Result<Stream, Error> {
    let failed = |reason: String| Error::Connect { url: endpoint.url.clone(), status: None, reason };
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await.map_err(|e| failed(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = endpoint.tls.clone().filter(|_| endpoint.scheme.is_secure()) else {
        return Ok(Stream::Plain(tcp));
    };
    let connector = tokio_rustls::TlsConnector::from(tls);
    let stream = connector.connect(endpoint.server_name()?, tcp).await.map_err(|e| failed(format!("TLS: {e}")))?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// The WebSocket upgrade, with the token as `Authorization: Bearer`.
async fn upgrade(endpoint: &Endpoint, stream: Stream) -> Result<WebSocketStream<Stream>, Error> {
    let scheme = if endpoint.scheme == Scheme::Wss { "wss" } else { "ws" };
    let host = if endpoint.host.contains(':') { format!("[{}]", endpoint.host) } else { endpoint.host.clone() };
    let target = format!("{scheme}://{host}:{}{}", endpoint.port, endpoint.path_and_query);
    let failed = |status: Option<u16>, reason: String| Error::Connect { url: endpoint.url.clone(), status, reason };
    let mut request = target.into_client_request().map_err(|error| failed(None, error.to_string()))?;
    if let Some(token) = &endpoint.credentials.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::Config("the token has characters a header cannot carry".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            // 401 and 403 carry {"code", "error"}: the token's refusal.
            if let Ok(refusal) = serde_json::from_str::<Value>(&body) {
                if refusal["code"].is_string() {
                    return Err(Error::Server(crate::wire::server_error(&refusal)));
                }
            }
            Err(failed(Some(status), format!("HTTP {status} {}", body.trim())))
        }
        Err(error) => Err(failed(None, error.to_string())),
    }
}
