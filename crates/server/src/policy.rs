//! The settings SIGHUP may change while the server runs: how clients prove
//! who they are, which origins and API keys are accepted, who may read
//! `/metrics`, the TLS certificate and the abuse limits
//! ([`crate::guard::Rules`]). They are built from a [`Config`] in one fallible step
//! ([`Policy::build`]) and swapped in whole ([`PolicyCell::replace`]), so a
//! broken file changes nothing: the server logs why and keeps the policy it
//! runs with. Connections keep what they were admitted with; new
//! connections and later commands see the new policy.
//!
//! Reading the policy is a lock-free load (`arc_swap`), cheap enough for a
//! check on every command.

use crate::auth::{ApiKeys, AuthError, Authenticator, Identity, Origins};
use crate::config::Config;
use arc_swap::{ArcSwap, Guard};
use std::net::SocketAddr;
use std::sync::Arc;

/// Why a configuration cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "open mode trusts every name as given, and {0} is not a loopback address: set a JWT key \
         (auth.jwt_hmac_secret or auth.jwt_public_key) for token mode, or say auth.mode = \"open\" \
         (SWITCHBOARD_AUTH__MODE=open) to serve open mode there on purpose"
    )]
    OpenModeNotLoopback(SocketAddr),
    #[error("auth: {0}")]
    Auth(crate::auth::AuthSetupError),
    #[error("tls: {0}")]
    Tls(crate::tls::TlsError),
}

crate::util::from_cause!(PolicyError, PolicyError::Auth, crate::auth::AuthSetupError);
crate::util::from_cause!(PolicyError, PolicyError::Tls, crate::tls::TlsError);

/// Everything a reload may change, built and checked as one.
#[derive(Debug)]
pub struct Policy {
    /// Verifies tokens; `None` in open mode.
    pub auth: Option<Authenticator>,
    /// Keys for the HTTP API.
    pub api_keys: ApiKeys,
    /// Where browser upgrades may come from.
    pub origins: Origins,
    /// Whether `/metrics` is readable without an API key in token mode.
    pub metrics_public: bool,
    /// The certificate chain and key TLS handshakes present; `None` when
    /// `[tls]` is not set.
    pub tls: Option<Arc<rustls::sign::CertifiedKey>>,
    /// Rate limits, per-address limits, trusted proxies, timeouts.
    pub guard: crate::guard::Rules,
}

impl Policy {
    /// Builds the policy `config` asks for, for a server listening on
    /// `listening`. Fails, changing nothing, on a key or certificate that
    /// cannot be read or on open mode where it was not asked for explicitly.
    pub fn build(config: &Config, listening: &[SocketAddr]) -> Result<Policy, PolicyError> {
        let auth = &config.auth;
        let token_mode = auth.token_mode();
        if !token_mode && auth.mode != crate::config::AuthMode::Open {
            if let Some(exposed) = listening.iter().find(|address| !address.ip().is_loopback()) {
                return Err(PolicyError::OpenModeNotLoopback(*exposed));
            }
        }
        Ok(Policy {
            auth: token_mode.then(|| Authenticator::build(auth)).transpose()?,
            api_keys: ApiKeys::build(&auth.api_keys),
            origins: Origins::build(&auth.allowed_origins).map_err(crate::auth::AuthSetupError::from)?,
            metrics_public: config.metrics.public || !token_mode,
            tls: config.tls.enabled().then(|| crate::tls::load_certified_key(&config.tls)).transpose()?,
            guard: crate::guard::Rules::from_config(config),
        })
    }

    /// Whether clients must present tokens.
    pub fn token_mode(&self) -> bool {
        self.auth.is_some()
    }

    /// Who a new client is, from the name and token it presented: in token
    /// mode the token's user (a name is refused), in open mode the name as
    /// given (a token is not needed and not read).
    pub fn admit(&self, name: Option<String>, token: Option<&str>) -> Result<Admission, AuthError> {
        let Some(auth) = &self.auth else { return Ok(Admission::Named(name)) };
        if name.is_some() {
            return Err(AuthError::NameNotAllowed);
        }
        auth.verify(token.ok_or(AuthError::Missing)?).map(Admission::Verified)
    }
}

/// A client let in by [`Policy::admit`].
#[derive(Debug)]
pub enum Admission {
    /// Open mode: the name asked for, or none (a guest).
    Named(Option<String>),
    /// Token mode: the token's user and profile.
    Verified(Identity),
}

/// The policy in force, replaced whole on reload.
#[derive(Debug)]
pub struct PolicyCell {
    current: ArcSwap<Policy>,
}

impl PolicyCell {
    pub fn new(policy: Policy) -> Self {
        PolicyCell { current: ArcSwap::from_pointee(policy) }
    }

    /// The policy now; hold the guard only briefly (never across an await).
    pub fn load(&self) -> Guard<Arc<Policy>> {
        self.current.load()
    }

    /// Puts `policy` in force for every later check.
    pub fn replace(&self, policy: Policy) {
        self.current.store(Arc::new(policy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;

    fn at(address: &str) -> Vec<SocketAddr> {
        vec![address.parse().expect("address")]
    }

    #[test]
    fn open_mode_serves_loopback_only_unless_asked_for_by_name() {
        let mut config = Config::default();
        assert!(Policy::build(&config, &at("127.0.0.1:8080")).is_ok());
        assert!(Policy::build(&config, &at("[::1]:8080")).is_ok());
        let error = Policy::build(&config, &at("0.0.0.0:8080")).expect_err("exposed");
        let message = error.to_string();
        assert!(message.contains("0.0.0.0:8080") && message.contains("auth.mode = \"open\""), "{message}");
        config.auth.mode = AuthMode::Open;
        assert!(!Policy::build(&config, &at("0.0.0.0:8080")).expect("explicit").token_mode());
        config.auth.mode = AuthMode::Auto;
        config.auth.jwt_hmac_secret = "a-secret-of-thirty-two-bytes-yes".into();
        assert!(Policy::build(&config, &at("0.0.0.0:8080")).expect("token mode").token_mode());
    }

    #[test]
    fn admission_follows_the_mode() {
        let open = Policy::build(&Config::default(), &[]).expect("open");
        assert!(matches!(open.admit(Some("alice".into()), None), Ok(Admission::Named(Some(name))) if name == "alice"));
        assert!(matches!(open.admit(None, Some("ignored")), Ok(Admission::Named(None))));
        let mut config = Config::default();
        config.auth.jwt_hmac_secret = "a-secret-of-thirty-two-bytes-yes".into();
        let token = Policy::build(&config, &[]).expect("token");
        assert_eq!(token.admit(Some("alice".into()), Some("t")).expect_err("named"), AuthError::NameNotAllowed);
        assert_eq!(token.admit(None, None).expect_err("none"), AuthError::Missing);
    }
}
