//! The sections of the configuration that decide who may do what: identity
//! (`[auth]`: open or token mode, JWT keys, API keys, allowed origins),
//! encryption (`[tls]`) and who may read `/metrics` (`[metrics]`). Every
//! value here may change on SIGHUP without dropping connections (see
//! `crate::policy`). Secrets never appear in `Debug` output.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How clients are identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Token mode when a JWT key is configured, else open mode, which is
    /// then allowed on loopback addresses only.
    #[default]
    Auto,
    /// Names are trusted as given, on any address.
    Open,
    /// Every client presents a JWT; a key must be configured.
    Token,
}

/// `[auth]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub mode: AuthMode,
    /// HS256/384/512 secret; setting it switches token mode on.
    pub jwt_hmac_secret: String,
    /// A second HMAC secret still accepted, for rotating the first.
    pub jwt_hmac_previous_secret: String,
    /// A PEM file with an RSA, EC (P-256) or Ed25519 public key (RS256,
    /// ES256, EdDSA); empty: none.
    pub jwt_public_key: PathBuf,
    /// Required `aud`, when not empty.
    pub jwt_audience: String,
    /// Required `iss`, when not empty.
    pub jwt_issuer: String,
    /// Whether a token without `exp` is refused.
    pub jwt_require_exp: bool,
    /// How long before a token's `exp` the connection gets `token_expiring`.
    #[serde(with = "humantime_serde")]
    pub expiry_warning: Duration,
    /// Origins a browser upgrade may come from (`https://*.example.com`,
    /// `"*"`); empty: the page's own origin only.
    pub allowed_origins: Vec<String>,
    /// Keys for the HTTP API.
    pub api_keys: Vec<ApiKey>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            mode: AuthMode::Auto,
            jwt_hmac_secret: String::new(),
            jwt_hmac_previous_secret: String::new(),
            jwt_public_key: PathBuf::new(),
            jwt_audience: String::new(),
            jwt_issuer: String::new(),
            jwt_require_exp: true,
            expiry_warning: Duration::from_secs(30),
            allowed_origins: Vec::new(),
            api_keys: Vec::new(),
        }
    }
}

impl Auth {
    /// Whether any JWT verification key is configured.
    pub fn has_jwt_key(&self) -> bool {
        !self.jwt_hmac_secret.is_empty()
            || !self.jwt_hmac_previous_secret.is_empty()
            || !self.jwt_public_key.as_os_str().is_empty()
    }

    /// Whether clients must present tokens.
    pub fn token_mode(&self) -> bool {
        match self.mode {
            AuthMode::Auto => self.has_jwt_key(),
            AuthMode::Open => false,
            AuthMode::Token => true,
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("mode", &self.mode)
            .field("jwt_hmac_secret", &Redacted(&self.jwt_hmac_secret))
            .field("jwt_hmac_previous_secret", &Redacted(&self.jwt_hmac_previous_secret))
            .field("jwt_public_key", &self.jwt_public_key)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_require_exp", &self.jwt_require_exp)
            .field("expiry_warning", &self.expiry_warning)
            .field("allowed_origins", &self.allowed_origins)
            .field("api_keys", &self.api_keys)
            .finish()
    }
}

/// One `[[auth.api_keys]]` entry: a name (the publisher's identity) and the
/// key, given either as is or as the hex SHA-256 of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKey {
    pub name: String,
    pub key: String,
    pub key_sha256: String,
}

impl ApiKey {
    /// What is wrong with this entry, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is required".into());
        }
        match (self.key.is_empty(), self.key_sha256.is_empty()) {
            (true, true) | (false, false) => {
                Err(format!("`{}` needs exactly one of `key` and `key_sha256`", self.name))
            }
            (false, true) if self.key.len() < 16 => {
                Err(format!("`{}`: a key must be at least 16 characters", self.name))
            }
            (true, false) if self.key_sha256.len() != 64 || !self.key_sha256.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Err(format!("`{}`: key_sha256 must be 64 hex digits", self.name))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("key", &Redacted(&self.key))
            .field("key_sha256", &Redacted(&self.key_sha256))
            .finish()
    }
}

/// Shows whether a secret is set, never the secret.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "<redacted>" })
    }
}

/// `[tls]`: a certificate chain and its private key (PEM files). When both
/// are set, the HTTP port serves HTTPS and WSS and the TCP port TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty() || !self.key.as_os_str().is_empty()
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsOptions {
    /// In token mode `/metrics` needs an API key unless this is true.
    pub public: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let auth = Auth {
            jwt_hmac_secret: "hunter2-secret".into(),
            api_keys: vec![ApiKey { name: "backend".into(), key: "k-12345".into(), key_sha256: String::new() }],
            ..Auth::default()
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("k-12345"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("backend"), "{shown}");
    }

    #[test]
    fn a_jwt_key_switches_token_mode_on_unless_open_is_explicit() {
        let mut auth = Auth::default();
        assert!(!auth.token_mode());
        auth.jwt_public_key = PathBuf::from("key.pem");
        assert!(auth.token_mode());
        auth.mode = AuthMode::Open;
        assert!(!auth.token_mode());
    }
}
