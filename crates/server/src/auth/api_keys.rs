//! API keys for the HTTP API (`Authorization: Bearer KEY`). Each key is
//! kept as its SHA-256 and a presented key is hashed and compared with
//! every configured hash in constant time, so neither the comparison's
//! timing nor the order of the list tells an attacker anything.

use crate::config::ApiKey;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured keys.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(name, _)| name)).finish()
    }
}

impl ApiKeys {
    /// The keys of `[[auth.api_keys]]`, already checked by the config.
    pub fn build(configured: &[ApiKey]) -> ApiKeys {
        let keys = configured
            .iter()
            .map(|key| {
                let hash = match key.key.is_empty() {
                    false => Sha256::digest(key.key.as_bytes()).into(),
                    true => decode_hex(&key.key_sha256),
                };
                (key.name.clone(), hash)
            })
            .collect();
        ApiKeys { keys }
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The name of the key `presented` is, if it is one. Every configured
    /// key is compared, whichever matches.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, key) in &self.keys {
            if bool::from(key.ct_eq(&hash)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// 64 hex digits as 32 bytes (the config checked the format; anything
/// else decodes to a hash no key has).
fn decode_hex(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = std::str::from_utf8(pair).ok().and_then(|pair| u8::from_str_radix(pair, 16).ok()).unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_as_given_or_by_their_hash_and_nothing_else() {
        let hashed = Sha256::digest(b"second-key-0123456789");
        let hex: String = hashed.iter().map(|byte| format!("{byte:02x}")).collect();
        let keys = ApiKeys::build(&[
            ApiKey { name: "backend".into(), key: "first-key-0123456789".into(), key_sha256: String::new() },
            ApiKey { name: "ops".into(), key: String::new(), key_sha256: hex.to_uppercase() },
        ]);
        assert_eq!(keys.check("first-key-0123456789"), Some("backend"));
        assert_eq!(keys.check("second-key-0123456789"), Some("ops"));
        assert_eq!(keys.check("first-key-012345678"), None);
        assert_eq!(keys.check(""), None);
        assert!(!format!("{keys:?}").contains("first-key"), "names only");
    }
}
