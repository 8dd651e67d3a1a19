//! The byte streams the connection driver ([`super::stream`]) runs on: a
//! plain `TcpStream`, or TLS over one ([`super::tls_socket::TlsSocket`]).
//!
//! The driver needs five things from a stream, and only these: readiness
//! in each direction, a non-blocking read of application bytes, one
//! vectored write of application bytes, and an orderly end of our
//! direction. For `TcpStream` each is the call the driver made before
//! there was a trait (`try_read`, one `sendmsg`, `shutdown(Write)`), and
//! always inlined, so the plain path compiles to what it was.

use super::tls_socket::TlsSocket;
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// What the connection driver reads from and writes to.
pub(crate) trait Socket: Send + 'static {
    /// Ready when a read may make progress (the waker is registered otherwise).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Ready when a write may make progress (the waker is registered otherwise).
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads application bytes into `buffer`: `Ok(0)` at the end of the
    /// peer's input, `WouldBlock` (readiness cleared) when none are ready.
    fn try_read(&mut self, buffer: &mut [u8]) -> io::Result<usize>;
    /// Writes application bytes from `slices`; returns how many it took.
    /// `WouldBlock` (readiness cleared) when it can take none.
    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Sends what the socket holds of bytes it already took (TLS records).
    /// `WouldBlock` until all of it is out.
    fn flush(&mut self) -> io::Result<()>;
    /// Ends our direction once everything taken is sent. `WouldBlock` means
    /// bytes are still on their way: call again once writable.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl Socket for TcpStream {
    #[inline(always)]
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    #[inline(always)]
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }

    #[inline(always)]
    fn try_read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buffer)
    }

    /// One `sendmsg` with every slice. Not `writev`: on a socket, `sendmsg`
    /// skips the file layer's position lock and iterator set-up, which is
    /// measurable when a fan-out makes a thousand writes per message.
    #[inline(always)]
    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        send_vectored(self, slices)
    }

    #[inline(always)]
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        // Nothing to wait for; a peer that already left makes this fail, harmlessly.
        let _ = socket2::SockRef::from(&*self).shutdown(std::net::Shutdown::Write);
        Ok(())
    }
}

/// One `sendmsg` of `slices` on `stream`, clearing its write readiness on
/// `WouldBlock`.
#[inline(always)]
pub(crate) fn send_vectored(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    stream.try_io(tokio::io::Interest::WRITABLE, || socket2::SockRef::from(stream).send_vectored(slices))
}

/// A connection as accepted (plain, or TLS once tokio-rustls completed the
/// handshake), before the driver takes it over.
pub(crate) trait Accepted: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// What the driver runs on.
    type Socket: Socket;
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
    /// The driver's socket, and application bytes already decrypted but
    /// not yet read, which the driver must take as read.
    fn into_socket(self) -> io::Result<(Self::Socket, Bytes)>;
}

impl Accepted for TcpStream {
    type Socket = TcpStream;

    fn tcp(&self) -> &TcpStream {
        self
    }

    fn into_socket(self) -> io::Result<(TcpStream, Bytes)> {
        Ok((self, Bytes::new()))
    }
}

impl Accepted for TlsStream<TcpStream> {
    type Socket = TlsSocket;

    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }

    fn into_socket(self) -> io::Result<(TlsSocket, Bytes)> {
        let (tcp, tls) = self.into_inner();
        TlsSocket::new(tcp, tls)
    }
}
