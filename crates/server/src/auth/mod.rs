//! Identity: who a client is and what it may do. Every transport calls the
//! [`Authenticator`] with the client's token before its session starts
//! (WebSocket at the upgrade, raw TCP and UDP on their first command), and
//! sessions ask a connection's [`Profile`] before each command on a room.
//!
//! - this module: verifying a JWT into an [`Identity`] (user and profile);
//! - [`rules`]: the `rooms` claim and its patterns;
//! - [`expiry`]: closing connections whose token ran out;
//! - [`api_keys`]: keys for the HTTP API;
//! - [`origin`]: which web pages may open WebSockets.
//!
//! Open mode has no authenticator: names are trusted as given and the
//! rooms' rules are membership alone (see `docs/SECURITY.md`).

mod api_keys;
pub mod expiry;
mod origin;
pub mod rules;

pub use api_keys::ApiKeys;
pub use origin::{BadOrigin, Origins};
pub use rules::{Permission, RoomRules};

use crate::config::Auth;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_protocol::{command, ErrorCode};

/// Largest `info` claim kept, in bytes of JSON: it is held by every
/// connection of the user and sent with each of their presence events.
pub const MAX_INFO_BYTES: usize = 1024;
/// How far in the future `nbf` and `iat` may lie: the issuer's clock may
/// run a little ahead of ours.
const CLOCK_SKEW_SECS: u64 = 5;

/// A configured key or secret that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("reading auth.jwt_public_key {path}: {error}")]
    ReadKey { path: String, error: std::io::Error },
    #[error("auth.jwt_public_key {0} holds no RSA, EC (P-256) or Ed25519 public key in PEM")]
    BadKey(String),
    #[error("auth.jwt_hmac_secret could not be used: {0}")]
    BadSecret(String),
    #[error(transparent)]
    Origin(#[from] BadOrigin),
}

/// Why a token was refused. Each names its wire code; the message never
/// says anything about the keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this server needs a token: pass ?token= or Authorization: Bearer (WebSocket), hello's token (TCP, UDP) or /auth TOKEN (text)")]
    Missing,
    #[error("names come from tokens on this server: leave out the name and present a token")]
    NameNotAllowed,
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token's claims are invalid: {0}")]
    BadClaims(String),
    #[error("the token is for another user than this connection's")]
    OtherUser,
}

impl AuthError {
    /// The code clients branch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::TokenRequired,
            AuthError::NameNotAllowed => ErrorCode::NameNotAllowed,
            AuthError::Malformed => ErrorCode::TokenMalformed,
            AuthError::BadSignature => ErrorCode::TokenInvalidSignature,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::NotYetValid => ErrorCode::TokenNotYetValid,
            AuthError::WrongAudience => ErrorCode::TokenWrongAudience,
            AuthError::WrongIssuer => ErrorCode::TokenWrongIssuer,
            AuthError::BadClaims(_) => ErrorCode::TokenInvalidClaims,
            AuthError::OtherUser => ErrorCode::TokenUserMismatch,
        }
    }

    fn from_jwt(kind: &ErrorKind) -> AuthError {
        match kind {
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
                AuthError::BadSignature
            }
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::MissingRequiredClaim(claim) => AuthError::BadClaims(format!("`{claim}` is required")),
            ErrorKind::InvalidClaimFormat(claim) => AuthError::BadClaims(format!("`{claim}` has the wrong type")),
            ErrorKind::Json(error) if error.is_data() => AuthError::BadClaims(error.to_string()),
            _ => AuthError::Malformed,
        }
    }
}

/// What a verified token says about its user, kept by each of the user's
/// connections (shared, so a refresh swaps it whole). 32 bytes, so that
/// with the `Arc`'s counts it takes a 48-byte allocation (the `info` text,
/// when there is one, takes its own): every idle connection in token mode
/// holds one.
#[derive(Debug, Default)]
pub struct Profile {
    /// Public JSON shown with the user in presence.
    info: Option<Box<RawValue>>,
    /// Room permissions; `None`: every room. Boxed: a thin pointer.
    rooms: Option<Box<RoomRules>>,
    /// `exp`, in Unix seconds (never 0: that token would have expired).
    expires_at: Option<NonZeroU64>,
}

impl Profile {
    pub fn new(info: Option<Box<RawValue>>, rooms: Option<RoomRules>, expires_at: Option<u64>) -> Profile {
        Profile { info, rooms: rooms.map(Box::new), expires_at: expires_at.and_then(NonZeroU64::new) }
    }

    /// Whether this token allows `permission` in `room`.
    pub fn allows(&self, room: &str, permission: Permission) -> bool {
        self.rooms.as_ref().is_none_or(|rules| rules.allows(room, permission))
    }

    /// The token's public `info`.
    pub fn info(&self) -> Option<&RawValue> {
        self.info.as_deref()
    }

    /// The token's `exp`, in Unix seconds.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at.map(NonZeroU64::get)
    }
}

/// A verified client.
#[derive(Debug)]
pub struct Identity {
    pub user: Arc<str>,
    pub profile: Arc<Profile>,
}

/// The claims read from a token; standard time claims are checked here,
/// not by the JWT library, so that each failure has its own code.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    info: Option<Box<RawValue>>,
    rooms: Option<Box<RawValue>>,
}

/// Verifies tokens with the configured keys.
pub struct Authenticator {
    /// Tried in order: the HMAC secret, the previous one, the public key.
    keys: Vec<(DecodingKey, Validation)>,
    require_exp: bool,
    /// How long before `exp` a connection is warned.
    pub expiry_warning: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

impl Authenticator {
    /// The keys `[auth]` configures (at least one: token mode).
    pub fn build(auth: &Auth) -> Result<Authenticator, AuthSetupError> {
        let mut keys = Vec::new();
        for secret in [&auth.jwt_hmac_secret, &auth.jwt_hmac_previous_secret] {
            if !secret.is_empty() {
                let key = DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|error| AuthSetupError::BadSecret(error.to_string()))?;
                keys.push((key, validation(&[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512], auth)));
            }
        }
        if !auth.jwt_public_key.as_os_str().is_empty() {
            keys.push(public_key(auth)?);
        }
        Ok(Authenticator { keys, require_exp: auth.jwt_require_exp, expiry_warning: auth.expiry_warning })
    }

    /// Verifies `token` and reads its identity, at `now` (Unix seconds).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        let claims = self.verified_claims(token.trim())?;
        let user = claims.sub.ok_or_else(|| AuthError::BadClaims("`sub` is required".into()))?;
        command::validate_user(&user).map_err(|why| AuthError::BadClaims(format!("`sub`: {why}")))?;
        match claims.exp {
            None if self.require_exp => return Err(AuthError::BadClaims("`exp` is required".into())),
            Some(exp) if exp <= now => return Err(AuthError::Expired),
            _ => {}
        }
        let future = |claim: Option<u64>| claim.is_some_and(|at| at > now + CLOCK_SKEW_SECS);
        if future(claims.nbf) || future(claims.iat) {
            return Err(AuthError::NotYetValid);
        }
        if claims.info.as_ref().is_some_and(|info| info.get().len() > MAX_INFO_BYTES) {
            return Err(AuthError::BadClaims(format!("`info` is over {MAX_INFO_BYTES} bytes")));
        }
        let rooms = claims.rooms.as_deref().map(RoomRules::parse).transpose().map_err(AuthError::BadClaims)?;
        let profile = Profile::new(claims.info, rooms, claims.exp);
        Ok(Identity { user: Arc::from(user), profile: Arc::new(profile) })
    }

    /// Verifies `token` now.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_at(token, unix_now())
    }

    /// The claims of the first key that verifies the token; a signature
    /// failure with one key tries the next (rotation), any other failure
    /// is final.
    fn verified_claims(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let mut failure = AuthError::BadSignature;
        for (key, validation) in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, validation) {
                Ok(data) => return Ok(data.claims),
                Err(error) => match AuthError::from_jwt(error.kind()) {
                    AuthError::BadSignature => failure = AuthError::BadSignature,
                    other => return Err(other),
                },
            }
        }
        Err(failure)
    }
}

/// The library's checks we want: signature, algorithm, `aud` and `iss`.
/// Time claims are ours ([`Authenticator::verify_at`]).
fn validation(algorithms: &[Algorithm], auth: &Auth) -> Validation {
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms.to_vec();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims.clear();
    validation.validate_aud = !auth.jwt_audience.is_empty();
    if !auth.jwt_audience.is_empty() {
        validation.set_audience(&[&auth.jwt_audience]);
        validation.required_spec_claims.insert("aud".into());
    }
    if !auth.jwt_issuer.is_empty() {
        validation.set_issuer(&[&auth.jwt_issuer]);
        validation.required_spec_claims.insert("iss".into());
    }
    validation
}

/// The public key file as a decoding key with the algorithms of its kind.
fn public_key(auth: &Auth) -> Result<(DecodingKey, Validation), AuthSetupError> {
    let path = auth.jwt_public_key.display().to_string();
    let pem =
        std::fs::read(&auth.jwt_public_key).map_err(|error| AuthSetupError::ReadKey { path: path.clone(), error })?;
    type Parse = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;
    let kinds: [(Parse, &[Algorithm]); 3] = [
        (DecodingKey::from_rsa_pem, &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512]),
        (DecodingKey::from_ec_pem, &[Algorithm::ES256, Algorithm::ES384]),
        (DecodingKey::from_ed_pem, &[Algorithm::EdDSA]),
    ];
    kinds
        .iter()
        .find_map(|(parse, algorithms)| parse(&pem).ok().map(|key| (key, validation(algorithms, auth))))
        .ok_or(AuthSetupError::BadKey(path))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
mod size {
    #[test]
    fn a_profile_fits_a_48_byte_allocation_with_its_counts() {
        assert!(std::mem::size_of::<super::Profile>() <= 32);
    }
}
