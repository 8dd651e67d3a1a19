//! TLS settings: the certificate chain and private key of `[tls]`, loaded
//! into the reloadable policy (`crate::policy`), and the rustls server
//! configurations, whose certificate resolver presents whatever key the
//! policy holds at each handshake. So a SIGHUP that loads new PEM files
//! changes the certificate of the next handshake and touches no open
//! connection; files that do not load leave the policy, and so the
//! certificate, as they were.
//!
//! rustls runs on aws-lc-rs, the crypto library jsonwebtoken already uses.
//! Whether TLS is on is decided at start: the listeners' configurations are
//! built once, in [`Acceptors::new`].

use crate::config;
use crate::policy::PolicyCell;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// A `[tls]` setting that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {setting} {path}: {error}")]
    Read { setting: &'static str, path: PathBuf, error: std::io::Error },
    #[error("tls.cert {path} is not a PEM certificate chain: {error}")]
    BadCertificate { path: PathBuf, error: pem::Error },
    #[error("tls.cert {0} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    #[error("tls.key {path} holds no private key in PEM (PKCS#8, PKCS#1 or SEC1): {error}")]
    BadKey { path: PathBuf, error: pem::Error },
    #[error("tls.key {key} cannot serve tls.cert {cert}: {error}")]
    Unusable { cert: PathBuf, key: PathBuf, error: rustls::Error },
    #[error("setting up TLS: {0}")]
    Setup(rustls::Error),
}

/// The crypto provider every TLS configuration here uses.
fn provider() -> CryptoProvider {
    aws_lc_rs::default_provider()
}

/// Reads and checks `[tls]`'s files: a certificate chain (leaf first) and
/// the private key of its leaf, both PEM. Fails on unreadable or malformed
/// files and on a key that does not match the certificate.
pub fn load_certified_key(tls: &config::Tls) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read(&tls.cert, "tls.cert")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::BadCertificate { path: tls.cert.clone(), error })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(tls.cert.clone()));
    }
    let key_pem = read(&tls.key, "tls.key")?;
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::BadKey { path: tls.key.clone(), error })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|error| TlsError::Unusable {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        error,
    })?;
    Ok(Arc::new(certified))
}

fn read(path: &Path, setting: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read { setting, path: path.to_owned(), error })
}

/// Presents the policy's certificate at each handshake.
#[derive(Debug)]
struct FromPolicy(Arc<PolicyCell>);

impl ResolvesServerCert for FromPolicy {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // None (no key loaded) aborts the handshake; the policy of a server
        // that started with TLS always has one (see `server::apply_reloads`).
        self.0.load().tls.clone()
    }
}

/// The TLS configurations of the two stream listeners, sharing one resolver.
#[derive(Clone)]
pub struct Acceptors {
    /// HTTPS and WSS on the HTTP port (ALPN `http/1.1`).
    pub http: TlsAcceptor,
    /// TLS on the raw TCP port (no ALPN).
    pub tcp: TlsAcceptor,
}

impl fmt::Debug for Acceptors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acceptors")
    }
}

impl Acceptors {
    /// Configurations that present the certificate in `policy` at each
    /// handshake.
    pub fn new(policy: Arc<PolicyCell>) -> Result<Acceptors, TlsError> {
        let resolver: Arc<dyn ResolvesServerCert> = Arc::new(FromPolicy(policy));
        Ok(Acceptors {
            http: server_config(Arc::clone(&resolver), vec![b"http/1.1".to_vec()])?,
            tcp: server_config(resolver, Vec::new())?,
        })
    }
}

fn server_config(resolver: Arc<dyn ResolvesServerCert>, alpn: Vec<Vec<u8>>) -> Result<TlsAcceptor, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[tls]` pointing at files in `dir` holding `cert` and `key`.
    fn files(dir: &Path, cert: &str, key: &str) -> config::Tls {
        let tls = config::Tls { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&tls.cert, cert).expect("write cert");
        std::fs::write(&tls.key, key).expect("write key");
        tls
    }

    fn made() -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    #[test]
    fn a_certificate_and_its_key_load() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = made();
        let loaded = load_certified_key(&files(dir.path(), &cert, &key)).expect("loads");
        assert_eq!(loaded.cert.len(), 1);
    }

    #[test]
    fn what_cannot_serve_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().expect("dir");
        let ((cert, key), (_, other_key)) = (made(), made());
        let error = load_certified_key(&files(dir.path(), &cert, &other_key)).expect_err("another key");
        assert!(matches!(error, TlsError::Unusable { .. }), "{error}");
        let broken = "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n";
        let error = load_certified_key(&files(dir.path(), broken, &key)).expect_err("broken certificate");
        assert!(error.to_string().contains("cert.pem"), "{error}");
        let error = load_certified_key(&files(dir.path(), "no PEM here", &key)).expect_err("no certificate");
        assert!(matches!(error, TlsError::NoCertificate(_)), "{error}");
        let error = load_certified_key(&files(dir.path(), &cert, &cert)).expect_err("a certificate as key");
        assert!(matches!(error, TlsError::BadKey { .. }), "{error}");
        let missing = config::Tls { cert: dir.path().join("missing.pem"), key: dir.path().join("key.pem") };
        let error = load_certified_key(&missing).expect_err("missing file");
        assert!(error.to_string().contains("missing.pem"), "{error}");
    }
}
