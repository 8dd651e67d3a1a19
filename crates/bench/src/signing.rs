//! Signing JWTs for token mode: the key and algorithm a token is signed
//! with, and the signature. The load generator mints a token per
//! connection name with it (`target`), and `switchboard token` mints one
//! for development and tests. The server never mints tokens; a real
//! deployment's backend does, with its own JWT library.

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// A key to sign with and its algorithm.
pub struct SigningKey {
    algorithm: Algorithm,
    key: EncodingKey,
}

impl SigningKey {
    /// HS256 with `secret`.
    pub fn hmac(secret: &[u8]) -> anyhow::Result<SigningKey> {
        Ok(SigningKey { algorithm: Algorithm::HS256, key: EncodingKey::from_secret(secret)? })
    }

    /// RS256, ES256 or EdDSA, from a private key in PEM.
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<SigningKey> {
        type Parse = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;
        let kinds: [(Parse, Algorithm); 3] = [
            (EncodingKey::from_ec_pem, Algorithm::ES256),
            (EncodingKey::from_ed_pem, Algorithm::EdDSA),
            (EncodingKey::from_rsa_pem, Algorithm::RS256),
        ];
        kinds
            .iter()
            .find_map(|(parse, algorithm)| parse(pem).ok().map(|key| SigningKey { algorithm: *algorithm, key }))
            .context("the private key is not an EC (P-256), Ed25519 or RSA key in PEM")
    }
}

impl std::fmt::Debug for SigningKey {
    /// The algorithm only: the key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

/// Signs `claims`.
pub fn mint(claims: &Value, key: &SigningKey) -> anyhow::Result<String> {
    Ok(jsonwebtoken::encode(&Header::new(key.algorithm), claims, &key.key)?)
}
