//! TLS under the connection driver, after the handshake: a `TcpStream` and
//! the rustls `ServerConnection` that tokio-rustls completed the handshake
//! with (`TlsStream::into_inner`). Reads decrypt into the caller's buffer
//! (the thread's shared read buffer); writes encrypt the gathered frames
//! into rustls and send the records with one `sendmsg`. Records rustls
//! could not send yet stay in it and keep the connection write-blocked
//! until they are out ([`Socket::flush`]).
//!
//! What a connection holds here beyond a plain one: the boxed
//! `ServerConnection` (its record keys and state) and the 4 KiB buffer
//! rustls reads records into, which it keeps once it has read
//! (docs/ARCHITECTURE.md has the measured cost).

use super::socket::{send_vectored, Socket};
use crate::metrics::Metrics;
use bytes::{Bytes, BytesMut};
use rustls::ServerConnection;
use std::io::{self, BufRead, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The first byte of every TLS connection: a handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Completes a TLS handshake by `deadline`. A client whose first byte is
/// not a TLS handshake is sent `plain_answer()` in plain text and closed.
/// Failures are logged at debug and counted as
/// `connections_refused_total{reason="tls_handshake"}`.
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    metrics: &Metrics,
    plain_answer: fn() -> String,
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    let failed = |why: &str| {
        metrics.refused("tls_handshake");
        tracing::debug!(%peer, why, "TLS handshake failed");
    };
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Err(_) => failed("nothing within the handshake timeout"),
        Ok(Ok(0)) => {}
        Ok(Err(error)) => tracing::debug!(%peer, %error, "read failed before the TLS handshake"),
        Ok(Ok(_)) if first[0] != HANDSHAKE_RECORD => {
            failed("not TLS: answered in plain text");
            super::front::refuse(stream, &plain_answer()).await;
        }
        Ok(Ok(_)) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(error)) => failed(&error.to_string()),
            Err(_) => failed("not complete within the handshake timeout"),
        },
    }
    None
}

/// A server-side TLS stream for the connection driver.
#[derive(Debug)]
pub(crate) struct TlsSocket {
    tcp: TcpStream,
    /// Boxed: rustls' connection is about a kilobyte, and the driver's
    /// future should not carry it inline.
    tls: Box<ServerConnection>,
}

impl TlsSocket {
    /// Takes over a completed handshake. Returns the socket and the
    /// plaintext rustls had already decrypted and not yet handed out,
    /// which the driver must treat as read (no readiness will announce it).
    pub fn new(tcp: TcpStream, tls: ServerConnection) -> io::Result<(TlsSocket, Bytes)> {
        let mut socket = TlsSocket { tcp, tls: Box::new(tls) };
        socket.tls.process_new_packets().map_err(io::Error::other)?;
        let mut buffered = BytesMut::new();
        loop {
            let mut reader = socket.tls.reader();
            let chunk = match reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                // A close already seen: the driver's first read reports it.
                Err(_) => break,
            };
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len();
            buffered.extend_from_slice(chunk);
            reader.consume(len);
        }
        Ok((socket, buffered.freeze()))
    }

    /// Writes queued TLS records until none are left or the socket is full.
    fn write_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut Writing(&self.tcp))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Decrypts what rustls has read; on a TLS error, sends rustls' alert
    /// if the socket takes it, and fails.
    fn process(&mut self) -> io::Result<()> {
        if let Err(error) = self.tls.process_new_packets() {
            let _ = self.write_records();
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(())
    }
}

impl Socket for TlsSocket {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    /// Fills `buffer` with plaintext: what rustls holds, then records read
    /// from the socket (rustls reads at most 4 KiB at a time), until the
    /// buffer is full or the socket has no more. Plaintext is only taken
    /// from the socket when rustls holds none, so none is left behind when
    /// the socket's readiness is cleared.
    fn try_read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buffer.len() {
            match self.tls.reader().read(&mut buffer[filled..]) {
                Ok(0) => return Ok(filled), // close_notify: the end, after what was read
                Ok(count) => {
                    filled += count;
                    continue;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // The TCP stream ended without close_notify. The protocols on
                // top frame their own messages, so this is an end like any other.
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(error) => return Err(error),
            }
            match self.tls.read_tls(&mut Reading(&self.tcp)) {
                Ok(0) => return Ok(filled),
                Ok(_) => self.process()?,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock && filled > 0 => return Ok(filled),
                Err(error) => return Err(error),
            }
        }
        Ok(filled)
    }

    /// Encrypts `slices` into rustls and sends the records. Records left
    /// over from an earlier write go first; while any remain, nothing new
    /// is taken (`WouldBlock`), so rustls holds at most one write's worth.
    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_records()?;
        let taken = self.tls.writer().write_vectored(slices)?;
        match self.write_records() {
            Err(error) if error.kind() != io::ErrorKind::WouldBlock => Err(error),
            _ => Ok(taken),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_records()
    }

    /// Sends close_notify after everything else, then shuts TCP's write
    /// side. rustls queues close_notify once however often this is called.
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        self.write_records()?;
        let _ = socket2::SockRef::from(&self.tcp).shutdown(std::net::Shutdown::Write);
        Ok(())
    }
}

/// `io::Read` for rustls over a non-blocking `TcpStream`.
struct Reading<'a>(&'a TcpStream);

impl Read for Reading<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buffer)
    }
}

/// `io::Write` for rustls over a non-blocking `TcpStream`, with `sendmsg`.
struct Writing<'a>(&'a TcpStream);

impl Write for Writing<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        send_vectored(self.0, &[IoSlice::new(buffer)])
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        send_vectored(self.0, slices)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio_rustls::client;

    /// A TLS connection over loopback: our side as a [`TlsSocket`], the
    /// client's through tokio-rustls, reading through a small receive buffer.
    async fn pair() -> (TlsSocket, client::TlsStream<TcpStream>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(made.cert.der().clone()).expect("trust anchor");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let (connected, accepted) =
            tokio::join!(socket.connect(listener.local_addr().expect("addr")), listener.accept());
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from("localhost").expect("name");
        let (ours, theirs) = tokio::join!(
            acceptor.accept(accepted.expect("accept").0),
            connector.connect(name, connected.expect("connect"))
        );
        let (tcp, tls) = ours.expect("server handshake").into_inner();
        let (socket, early) = TlsSocket::new(tcp, tls).expect("socket");
        assert!(early.is_empty());
        (socket, theirs.expect("client handshake"))
    }

    /// What the driver relies on: a write the socket could not finish
    /// leaves records in rustls, `flush` says so until they are out, and
    /// the close follows everything that was taken.
    #[tokio::test]
    async fn records_left_in_rustls_keep_the_socket_blocked_until_sent() {
        let (mut socket, mut client) = pair().await;
        let chunk = vec![b'x'; 16 * 1024];
        let mut taken = 0;
        loop {
            match socket.try_write_vectored(&[IoSlice::new(&chunk)]) {
                Ok(count) => taken += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => panic!("write failed: {error}"),
            }
        }
        assert_eq!(socket.flush().map_err(|error| error.kind()), Err(io::ErrorKind::WouldBlock));
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.map(|_| all)
        });
        let closing = async {
            loop {
                std::future::poll_fn(|cx| socket.poll_write_ready(cx)).await.expect("writable");
                match socket.shutdown_write() {
                    Ok(()) => return,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => panic!("close failed: {error}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), closing).await.expect("closed in time");
        let received = reader.await.expect("reader").expect("read to close_notify");
        assert_eq!(received.len(), taken);
        assert!(received.iter().all(|&byte| byte == b'x'));
    }
}
