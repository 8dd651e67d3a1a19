//! Who is calling the HTTP API, and whether they may call it now.
//!
//! - [`Caller`], an extractor: checks `Authorization: Bearer <API key>`
//!   against `[[auth.api_keys]]` (401 `api_key_required`/`api_key_invalid`),
//!   then charges the request to its key's rate (429). The API is open, with
//!   no key needed, only when no API key is configured and the server runs in
//!   open mode (which, unless `auth.mode = "open"` says otherwise, means on
//!   loopback): the caller is then named `api` and limited per client address.
//! - [`Limiter`]: `api.requests_per_second` per API key, or per client
//!   address for the open API (addresses in `limits.exempt_networks` are not
//!   limited), with the token buckets of [`crate::guard::rate`].

use super::error::ApiError;
use super::ApiState;
use crate::guard::rate::{Budget, Verdict};
use crate::guard::reason;
use crate::hub::Hub;
use crate::util::lock;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use switchboard_protocol::handshake::Forwarded;
use switchboard_protocol::ErrorCode;

/// The name a caller of the open API (no key configured) publishes under.
pub const OPEN_CALLER: &str = "api";
/// Most buckets the limiter keeps; past it, those idle longest are forgotten.
const MAX_BUCKETS: usize = 65_536;

/// The TCP peer of the connection a request came on (set by
/// `transport::http` on every request).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// An authenticated caller of the API, already charged for this request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The API key's name, or [`OPEN_CALLER`] when the API is open.
    pub name: Arc<str>,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, ApiError> {
        let hub = &state.hub;
        let key = api_key(&parts.headers, hub, is_open(hub)).map_err(ApiError::Unauthorized)?;
        let client = client_address(parts, hub);
        let (name, bucket) = match key {
            Some(name) => (Arc::<str>::from(name.as_str()), Bucket::Key(name)),
            None => (Arc::from(OPEN_CALLER), Bucket::Address(client.ip())),
        };
        state.shared.limiter.charge(bucket, hub)?;
        Ok(Caller { name })
    }
}

/// Whether the API is open (no key needed): open mode with no API key
/// configured.
pub fn is_open(hub: &Hub) -> bool {
    let policy = hub.policy();
    !policy.token_mode() && policy.api_keys.is_empty()
}

/// The client's address: the peer, or the client a trusted proxy names.
fn client_address(parts: &Parts, hub: &Hub) -> SocketAddr {
    let peer = parts.extensions.get::<Peer>().map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |peer| peer.0);
    let header_text = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok());
    let forwarded = match (header_text("forwarded"), header_text("x-forwarded-for")) {
        (Some(list), _) => Some(Forwarded::Forwarded(list.to_owned())),
        (None, Some(list)) => Some(Forwarded::XForwardedFor(list.to_owned())),
        (None, None) => None,
    };
    crate::guard::proxy::client_address(peer, forwarded.as_ref(), &hub.policy().guard.trusted_proxies)
}

/// Checks `Authorization: Bearer` against the API keys unless `public`;
/// returns the key's name (`None` when public), or the code to refuse with
/// (counted in `auth_failures_total`).
pub fn api_key(headers: &HeaderMap, hub: &Hub, public: bool) -> Result<Option<String>, ErrorCode> {
    if public {
        return Ok(None);
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    let code = match presented.map(|key| hub.policy().api_keys.check(key).map(str::to_owned)) {
        Some(Some(name)) => return Ok(Some(name)),
        Some(None) => ErrorCode::ApiKeyInvalid,
        None => ErrorCode::ApiKeyRequired,
    };
    hub.metrics.auth_failed(code);
    Err(code)
}

/// What a request is charged to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Bucket {
    Key(String),
    Address(IpAddr),
}

/// Request rates per API key or client address.
#[derive(Debug, Default)]
pub struct Limiter {
    /// Each bucket and when it was last charged (the hub's clock).
    buckets: Mutex<HashMap<Bucket, (Budget, u64)>>,
}

impl Limiter {
    /// Charges one request; `RateLimited` (counted) when over the rate.
    fn charge(&self, bucket: Bucket, hub: &Hub) -> Result<(), ApiError> {
        let policy = hub.policy();
        let rates = policy.guard.api_rates;
        if rates.messages_per_second == 0 {
            return Ok(());
        }
        if let Bucket::Address(ip) = &bucket {
            if policy.guard.ip.exempt.iter().any(|net| net.contains(ip)) {
                return Ok(());
            }
        }
        let now = hub.now_ms();
        let verdict = {
            let mut buckets = lock(&self.buckets);
            if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&bucket) {
                // A bucket untouched for longer than it takes to refill is full: forgetting it changes nothing.
                let refill_ms = u64::from(rates.messages_burst) * 1000 / u64::from(rates.messages_per_second) + 1000;
                buckets.retain(|_, (_, last)| now.saturating_sub(*last) < refill_ms);
                if buckets.len() >= MAX_BUCKETS {
                    // All busy: memory stays bounded, at the price of fresh buckets for everyone.
                    tracing::warn!(buckets = buckets.len(), "API rate limiter full: every bucket starts again");
                    buckets.clear();
                }
            }
            let (budget, last) = buckets.entry(bucket).or_insert_with(|| (Budget::new(now), now));
            *last = now;
            budget.charge(0, now, &rates)
        };
        match verdict {
            Verdict::Admit => Ok(()),
            Verdict::Refuse(_) | Verdict::Close(_) => {
                hub.metrics.limit_hit(reason::API_RATE);
                Err(ApiError::RateLimited)
            }
        }
    }
}
