//! WSS for the load generator: `--tls` opens every WebSocket through TLS
//! (rustls on aws-lc-rs, as the server), trusting the certificates in
//! `--ca FILE` or, with `--insecure`, any certificate, which is what a
//! loopback benchmark against a self-signed certificate needs.
//!
//! The client offers X25519 only, so every server it measures performs the
//! same key exchange (nats-server 2.9 has no post-quantum group; rustls
//! would otherwise pick X25519MLKEM768 against Switchboard).

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How the load generator reaches a server: plain `ws://` or `wss://`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Speak WSS: WebSocket over TLS.
    #[arg(long)]
    pub tls: bool,
    /// With --tls: trust the certificates in this PEM file (the server's
    /// self-signed certificate, or its CA).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<PathBuf>,
    /// With --tls: accept any certificate without checking it (loopback
    /// benchmarks only).
    #[arg(long, requires = "tls", conflicts_with = "ca")]
    pub insecure: bool,
    /// With --tls and --ca: the name the certificate must carry [default:
    /// the server's IP address].
    #[arg(long, requires = "ca")]
    pub server_name: Option<String>,
    #[arg(skip)]
    connector: OnceLock<Connector>,
}

/// The client configuration, built on first use.
#[derive(Clone)]
struct Connector(TlsConnector);

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

impl TlsArgs {
    /// TLS as an operator command asks for it: on for `https` URLs,
    /// presenting `server_name` (a host name; an IP address is used when
    /// `None`) and trusting `ca` or, when `insecure`, anything.
    pub fn for_https(https: bool, ca: Option<PathBuf>, insecure: bool, server_name: Option<String>) -> Self {
        TlsArgs { tls: https, ca, insecure, server_name, connector: OnceLock::new() }
    }

    /// The flags that say the same to a worker process.
    pub fn forwarded(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.tls {
            flags.push("--tls".to_owned());
        }
        if let Some(ca) = &self.ca {
            flags.extend(["--ca".to_owned(), ca.display().to_string()]);
        }
        if self.insecure {
            flags.push("--insecure".to_owned());
        }
        if let Some(name) = &self.server_name {
            flags.extend(["--server-name".to_owned(), name.clone()]);
        }
        flags
    }

    /// Opens TLS over `tcp` to `server` when `--tls` was given; the plain
    /// stream otherwise.
    pub async fn wrap(&self, tcp: TcpStream, server: SocketAddr) -> anyhow::Result<Stream> {
        if !self.tls {
            return Ok(Stream::Plain(tcp));
        }
        let name = match &self.server_name {
            Some(name) => ServerName::try_from(name.clone()).context("--server-name")?,
            None => ServerName::IpAddress(server.ip().into()),
        };
        let tls = self.connector()?.connect(name, tcp).await.context("TLS handshake")?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    fn connector(&self) -> anyhow::Result<&TlsConnector> {
        if let Some(connector) = self.connector.get() {
            return Ok(&connector.0);
        }
        let built = Connector(self.build()?);
        Ok(&self.connector.get_or_init(|| built).0)
    }

    fn build(&self) -> anyhow::Result<TlsConnector> {
        let mut provider = aws_lc_rs::default_provider();
        provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
        let provider = Arc::new(provider);
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .context("TLS versions")?;
        let config = match &self.ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for certificate in
                    CertificateDer::pem_file_iter(path).with_context(|| format!("reading {}", path.display()))?
                {
                    roots.add(certificate.with_context(|| format!("reading {}", path.display()))?)?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None if self.insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            None => anyhow::bail!("--tls needs --ca FILE (the certificate to trust) or --insecure"),
        };
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

/// Accepts every certificate, still checking that the handshake is signed
/// by the key the certificate names.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client connection, plain or TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
