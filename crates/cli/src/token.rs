//! `switchboard token`: mints a JWT for development and tests with the
//! configured key, the way Centrifugo's `gentoken` does (signed by
//! `switchboard_bench::signing`, which the load generator's tokens use too).
//! The server never mints tokens; a real deployment's backend does, with
//! its own JWT library.

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_bench::signing::{mint, SigningKey};
use switchboard_server::Config;

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The user (`sub`).
    #[arg(long)]
    user: String,
    /// Rooms the token allows, `PATTERN=PERMISSIONS` (`chat.*=join,send`;
    /// permissions: join, send, history, presence). Repeat for more rules;
    /// without any, every room is allowed.
    #[arg(long = "room", value_name = "PATTERN=PERMISSIONS")]
    rooms: Vec<String>,
    /// Lifetime (`exp` = now + TTL), such as 30s, 15m, 1h, 7days.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Public JSON shown with the user in presence (`info`).
    #[arg(long)]
    info: Option<String>,
    /// Sign with this private key (PEM: RSA for RS256, EC P-256 for ES256,
    /// Ed25519 for EdDSA) instead of `auth.jwt_hmac_secret` (HS256).
    #[arg(long, value_name = "PEM")]
    private_key: Option<PathBuf>,
    /// Configuration file with the secret, audience and issuer (the
    /// environment is read as by `serve`: SWITCHBOARD_AUTH__JWT_HMAC_SECRET).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Prints a token for `args`.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), json!({}))?;
    let key = signing_key(&args, &config)?;
    let claims = claims(&args, &config, unix_now())?;
    println!("{}", mint(&claims, &key)?);
    Ok(())
}

fn signing_key(args: &TokenArgs, config: &Config) -> anyhow::Result<SigningKey> {
    if let Some(path) = &args.private_key {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return SigningKey::from_pem(&pem);
    }
    let secret = &config.auth.jwt_hmac_secret;
    if secret.is_empty() {
        bail!(
            "no key to sign with: set auth.jwt_hmac_secret (SWITCHBOARD_AUTH__JWT_HMAC_SECRET) or pass --private-key"
        );
    }
    SigningKey::hmac(secret.as_bytes())
}

/// The claims of the token `args` asks for, issued at `now`.
fn claims(args: &TokenArgs, config: &Config, now: u64) -> anyhow::Result<Value> {
    switchboard_protocol::command::validate_user(&args.user).map_err(anyhow::Error::msg)?;
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(args.user));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + args.ttl.as_secs().max(1)));
    if let Some(info) = &args.info {
        let info: Value = serde_json::from_str(info).context("--info is not JSON")?;
        claims.insert("info".into(), info);
    }
    if !args.rooms.is_empty() {
        let rules = args.rooms.iter().map(|rule| room_rule(rule)).collect::<anyhow::Result<Vec<_>>>()?;
        claims.insert("rooms".into(), Value::Array(rules));
    }
    if !config.auth.jwt_audience.is_empty() {
        claims.insert("aud".into(), json!(config.auth.jwt_audience));
    }
    if !config.auth.jwt_issuer.is_empty() {
        claims.insert("iss".into(), json!(config.auth.jwt_issuer));
    }
    Ok(Value::Object(claims))
}

/// `chat.*=join,send` as `{"match": "chat.*", "allow": ["join", "send"]}`.
fn room_rule(rule: &str) -> anyhow::Result<Value> {
    let Some((pattern, allow)) = rule.split_once('=') else {
        bail!("--room {rule:?}: expected PATTERN=PERMISSIONS, such as 'chat.*=join,send'");
    };
    let allow: Vec<&str> = allow.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if let Some(unknown) = allow.iter().find(|p| !["join", "send", "history", "presence"].contains(p)) {
        bail!("--room {rule:?}: unknown permission {unknown:?} (join, send, history, presence)");
    }
    Ok(json!({ "match": pattern, "allow": allow }))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        token: TokenArgs,
    }

    fn args(flags: &[&str]) -> TokenArgs {
        Cli::parse_from(std::iter::once("token").chain(flags.iter().copied())).token
    }

    #[test]
    fn flags_become_claims() {
        let mut config = Config::default();
        config.auth.jwt_audience = "chat".into();
        let args = args(&["--user", "alice", "--room", "chat.*=join,send", "--ttl", "15m", "--info", r#"{"n":1}"#]);
        let claims = claims(&args, &config, 1000).expect("claims");
        assert_eq!(
            claims,
            json!({"sub": "alice", "iat": 1000, "exp": 1900, "info": {"n": 1}, "aud": "chat",
                   "rooms": [{"match": "chat.*", "allow": ["join", "send"]}]})
        );
    }

    #[test]
    fn mistakes_are_reported() {
        let config = Config::default();
        assert!(claims(&args(&["--user", "al ice"]), &config, 0).is_err());
        let unknown = claims(&args(&["--user", "a", "--room", "x=fly"]), &config, 0).expect_err("fly");
        assert!(unknown.to_string().contains("fly"), "{unknown}");
        assert!(claims(&args(&["--user", "a", "--room", "x"]), &config, 0).is_err());
        assert!(claims(&args(&["--user", "a", "--info", "{nope"]), &config, 0).is_err());
        assert!(signing_key(&args(&["--user", "a"]), &config).is_err(), "no secret configured");
    }
}
