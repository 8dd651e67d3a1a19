//! Where and how to connect: a server URL (`ws://`, `wss://`, `tcp://`,
//! `tls://`) with the client's name or token, and the TLS settings for the
//! secure schemes.

use crate::error::Error;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use url::Url;

/// The transport a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// WebSocket (`ws://`).
    Ws,
    /// WebSocket over TLS (`wss://`).
    Wss,
    /// Raw TCP, JSON lines (`tcp://`).
    Tcp,
    /// Raw TCP over TLS, JSON lines (`tls://`).
    Tls,
}

impl Scheme {
    /// Whether the connection is encrypted.
    pub fn is_secure(self) -> bool {
        matches!(self, Scheme::Wss | Scheme::Tls)
    }

    /// Whether it speaks WebSocket (otherwise JSON lines).
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }
}

/// Who the client is: a name (open mode) or a token (token mode), or
/// neither (the server names it `guest-<conn>`).
#[derive(Clone, Default)]
pub struct Credentials {
    pub name: Option<String>,
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A token is a secret: never in logs.
        f.debug_struct("Credentials")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A server address and everything needed to open a connection to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL as given, for messages (a `token` query parameter removed).
    pub url: String,
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// WebSocket: the path and query of the upgrade request.
    pub path_and_query: String,
    pub credentials: Credentials,
    /// For `wss://` and `tls://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    /// Reads `url`. A WebSocket URL's path and query are sent as given (a
    /// URL without a path connects to `/ws`; `?name=` and `?token=` work as
    /// the server reads them). A raw TCP URL's `name` and `token` query
    /// parameters become the first line's `hello`.
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let parsed = Url::parse(url).map_err(|error| Error::Config(format!("`{url}` is not a URL: {error}")))?;
        let scheme = match parsed.scheme() {
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            other => {
                return Err(Error::Config(format!("unsupported scheme `{other}`: use ws, wss, tcp or tls")));
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Ipv6(address)) => address.to_string(),
            Some(host) => host.to_string(),
            None => return Err(Error::Config(format!("`{url}` has no host"))),
        };
        let port = parsed.port_or_known_default().ok_or_else(|| Error::Config(format!("`{url}` needs a port")))?;
        let mut credentials = Credentials::default();
        if !scheme.is_websocket() {
            for (key, value) in parsed.query_pairs() {
                match &*key {
                    "name" => credentials.name = Some(value.into_owned()),
                    "token" => credentials.token = Some(value.into_owned()),
                    _ => {}
                }
            }
        }
        let path = if parsed.path().is_empty() || parsed.path() == "/" { "/ws" } else { parsed.path() };
        let path_and_query = match parsed.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        let tls = if scheme.is_secure() { Some(default_tls()?) } else { None };
        Ok(Endpoint { url: shown(&parsed), scheme, host, port, path_and_query, credentials, tls })
    }

    /// The same server as `name` (open mode): WebSocket's `?name=`, or raw
    /// TCP's `hello`.
    pub fn with_name(mut self, name: &str) -> Endpoint {
        if self.scheme.is_websocket() {
            let (path, query) = self.path_and_query.split_once('?').unwrap_or((&self.path_and_query, ""));
            let mut rewritten = url::form_urlencoded::Serializer::new(String::new());
            rewritten.extend_pairs(url::form_urlencoded::parse(query.as_bytes()).filter(|(key, _)| key != "name"));
            rewritten.append_pair("name", name);
            self.path_and_query = format!("{path}?{}", rewritten.finish());
        }
        self.credentials.name = Some(name.to_owned());
        self
    }

    /// The same server with `token` (token mode): WebSocket's
    /// `Authorization: Bearer` (not the URL, which logs keep), or raw TCP's
    /// `hello`.
    pub fn with_token(mut self, token: &str) -> Endpoint {
        self.credentials.token = Some(token.to_owned());
        self
    }

    /// The same server with this TLS configuration (for `wss://` and `tls://`).
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Endpoint {
        self.tls = Some(tls);
        self
    }

    /// The name to present in TLS (a DNS name or an IP address).
    pub(crate) fn server_name(&self) -> Result<ServerName<'static>, Error> {
        ServerName::try_from(self.host.clone())
            .map_err(|_| Error::Config(format!("`{}` is not a valid TLS server name", self.host)))
    }
}

/// `url` without a `token` query parameter, for messages and logs.
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    let kept: Vec<(String, String)> =
        url.query_pairs().filter(|(key, _)| key != "token").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if kept.is_empty() {
        shown.set_query(None);
    } else {
        shown.query_pairs_mut().clear().extend_pairs(kept);
    }
    shown.to_string()
}

/// TLS with Mozilla's root certificates (the `webpki-roots` crate).
pub fn default_tls() -> Result<Arc<rustls::ClientConfig>, Error> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    tls_with_roots(roots)
}

/// TLS that trusts only the certificates in `pem` (a private CA, or a
/// self-signed server certificate).
pub fn tls_trusting_pem(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> = rustls::pki_types::pem::PemObject::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|error| Error::Config(format!("cannot read the PEM certificates: {error}")))?;
    if certificates.is_empty() {
        return Err(Error::Config("no certificate in the PEM given".into()));
    }
    for certificate in certificates {
        roots.add(certificate).map_err(|error| Error::Config(format!("unusable certificate: {error}")))?;
    }
    tls_with_roots(roots)
}

fn tls_with_roots(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::Config(format!("TLS setup: {error}")))?;
    Ok(Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_transport_and_credentials() {
        let ws = Endpoint::parse("ws://127.0.0.1:8080").expect("ws");
        assert_eq!((ws.scheme, ws.port, ws.path_and_query.as_str()), (Scheme::Ws, 8080, "/ws"));
        let named = Endpoint::parse("ws://h:1/ws?x=1&name=a").expect("ws").with_name("bob");
        assert_eq!(named.path_and_query, "/ws?x=1&name=bob");
        let tcp = Endpoint::parse("tcp://[::1]:7070?name=dave&token=secret").expect("tcp");
        assert_eq!((tcp.host.as_str(), tcp.credentials.name.as_deref()), ("::1", Some("dave")));
        assert!(!tcp.url.contains("secret"), "{}", tcp.url);
        assert!(Endpoint::parse("wss://example.com").expect("wss").tls.is_some());
        assert_eq!(Endpoint::parse("wss://example.com").expect("wss").port, 443);
        assert!(Endpoint::parse("tcp://h").is_err(), "raw TCP needs a port");
        assert!(Endpoint::parse("http://h:1").is_err());
        assert!(!format!("{:?}", tcp.credentials).contains("secret"), "tokens stay out of logs");
    }
}
