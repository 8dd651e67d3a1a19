use super::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const NOW: u64 = 1_800_000_000;
const SECRET: &str = "a-test-secret-of-thirty-two-bytes!";

fn hmac(claims: &Value) -> String {
    sign(claims, Algorithm::HS256, &secret(SECRET.as_bytes()))
}

fn secret(bytes: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(bytes).expect("hmac key")
}

fn sign(claims: &Value, algorithm: Algorithm, key: &EncodingKey) -> String {
    encode(&Header::new(algorithm), claims, key).expect("sign")
}

fn authenticator(adjust: impl FnOnce(&mut Auth)) -> Authenticator {
    let mut auth = Auth { jwt_hmac_secret: SECRET.into(), ..Auth::default() };
    adjust(&mut auth);
    Authenticator::build(&auth).expect("keys")
}

fn verify(authenticator: &Authenticator, token: &str) -> Result<Identity, AuthError> {
    authenticator.verify_at(token, NOW)
}

#[test]
fn a_valid_token_names_its_user_with_info_rooms_and_expiry() {
    let token = hmac(&json!({
        "sub": "alice", "exp": NOW + 60, "info": {"name": "Alice"},
        "rooms": [{"match": "chat.*", "allow": ["join", "send"]}]
    }));
    let identity = verify(&authenticator(|_| {}), &token).expect("valid");
    assert_eq!(&*identity.user, "alice");
    assert_eq!(identity.profile.info().map(RawValue::get), Some(r#"{"name":"Alice"}"#));
    assert_eq!(identity.profile.expires_at(), Some(NOW + 60));
    assert!(identity.profile.allows("chat.x", Permission::Send));
    assert!(!identity.profile.allows("chat.x", Permission::History));
    assert!(!identity.profile.allows("ops", Permission::Join));
    let open = verify(&authenticator(|_| {}), &hmac(&json!({"sub": "bob", "exp": NOW + 1}))).expect("valid");
    assert!(open.profile.allows("anything", Permission::Presence), "no rooms claim: every room");
}

#[test]
fn each_way_a_token_fails_has_its_own_code() {
    let auth = authenticator(|_| {});
    let code = |token: &str| verify(&auth, token).map(|_| ()).map_err(|error| error.code().as_str());
    assert_eq!(code(""), Err("token_required"));
    assert_eq!(code("not.a.jwt"), Err("token_malformed"));
    assert_eq!(code("garbage"), Err("token_malformed"));
    let forged = sign(&json!({"sub": "alice", "exp": NOW + 60}), Algorithm::HS256, &secret(b"x"));
    assert_eq!(code(&forged), Err("token_invalid_signature"));
    assert_eq!(code(&hmac(&json!({"sub": "alice", "exp": NOW}))), Err("token_expired"), "exp is exclusive");
    assert_eq!(code(&hmac(&json!({"sub": "alice", "exp": NOW + 60, "nbf": NOW + 30}))), Err("token_not_yet_valid"));
    assert_eq!(code(&hmac(&json!({"sub": "alice", "exp": NOW + 60, "iat": NOW + 30}))), Err("token_not_yet_valid"));
    assert_eq!(code(&hmac(&json!({"sub": "alice", "exp": NOW + 60, "iat": NOW + 3}))), Ok(()), "clock skew");
    assert_eq!(code(&hmac(&json!({"exp": NOW + 60}))), Err("token_invalid_claims"));
    assert_eq!(code(&hmac(&json!({"sub": "al ice", "exp": NOW + 60}))), Err("token_invalid_claims"));
    assert_eq!(code(&hmac(&json!({"sub": "alice"}))), Err("token_invalid_claims"), "exp is required");
    assert_eq!(code(&hmac(&json!({"sub": "alice", "exp": "soon"}))), Err("token_invalid_claims"));
    let big = "x".repeat(MAX_INFO_BYTES);
    assert_eq!(code(&hmac(&json!({"sub": "alice", "exp": NOW + 60, "info": big}))), Err("token_invalid_claims"));
    let rooms = json!({"sub": "alice", "exp": NOW + 60, "rooms": [{"match": "x", "allow": ["fly"]}]});
    assert_eq!(code(&hmac(&rooms)), Err("token_invalid_claims"));
    let unsigned = format!("{}.", hmac(&json!({"sub": "alice", "exp": NOW + 60})).rsplit_once('.').expect("dot").0);
    assert_eq!(code(&unsigned), Err("token_invalid_signature"), "a signature left off");
}

#[test]
fn no_error_message_mentions_the_secret() {
    let auth = authenticator(|_| {});
    let forged = sign(&json!({"sub": "a", "exp": NOW + 60}), Algorithm::HS256, &secret(b"x"));
    for token in ["", "x.y.z", &forged, &hmac(&json!({"sub": "a"}))] {
        let error = verify(&auth, token).expect_err("refused").to_string();
        assert!(!error.contains(SECRET) && !error.contains("secret"), "{error}");
    }
}

#[test]
fn exp_is_optional_when_the_config_says_so_and_audience_and_issuer_are_enforced() {
    let lenient = authenticator(|auth| auth.jwt_require_exp = false);
    assert_eq!(verify(&lenient, &hmac(&json!({"sub": "alice"}))).expect("valid").profile.expires_at(), None);
    let strict = authenticator(|auth| {
        auth.jwt_audience = "chat".into();
        auth.jwt_issuer = "https://issuer.test".into();
    });
    let claims = |aud: &str, iss: &str| json!({"sub": "a", "exp": NOW + 9, "aud": aud, "iss": iss});
    assert!(verify(&strict, &hmac(&claims("chat", "https://issuer.test"))).is_ok());
    let wrong_aud = verify(&strict, &hmac(&claims("other", "https://issuer.test"))).expect_err("aud");
    assert_eq!(wrong_aud, AuthError::WrongAudience);
    let wrong_iss = verify(&strict, &hmac(&claims("chat", "https://evil.test"))).expect_err("iss");
    assert_eq!(wrong_iss, AuthError::WrongIssuer);
    let missing = verify(&strict, &hmac(&json!({"sub": "a", "exp": NOW + 9}))).expect_err("no aud");
    assert_eq!(missing.code(), ErrorCode::TokenInvalidClaims);
}

#[test]
fn the_previous_secret_is_accepted_during_rotation_and_other_algorithms_are_not() {
    let rotated = authenticator(|auth| {
        auth.jwt_hmac_previous_secret = SECRET.into();
        auth.jwt_hmac_secret = "the-new-secret-also-thirty-two-b".into();
    });
    let claims = json!({"sub": "alice", "exp": NOW + 60});
    assert!(verify(&rotated, &hmac(&claims)).is_ok(), "signed with the previous secret");
    let new = sign(&claims, Algorithm::HS512, &secret(b"the-new-secret-also-thirty-two-b"));
    assert!(verify(&rotated, &new).is_ok(), "HS512 with the new secret");
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let key = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("pem");
    assert_eq!(verify(&rotated, &sign(&claims, Algorithm::ES256, &key)).expect_err("ES256"), AuthError::BadSignature);
}

/// A token mode with only `public` as its key, from a PEM file.
fn with_public_key(public: &str) -> (Authenticator, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("key.pem");
    std::fs::write(&path, public).expect("write");
    let auth = Auth { jwt_public_key: path, ..Auth::default() };
    (Authenticator::build(&auth).expect("key"), dir)
}

#[test]
fn es256_and_eddsa_tokens_verify_with_their_public_keys() {
    let claims = json!({"sub": "alice", "exp": NOW + 60});
    for (algorithm, rcgen_alg) in
        [(Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256), (Algorithm::EdDSA, &rcgen::PKCS_ED25519)]
    {
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("key");
        let (auth, _dir) = with_public_key(&pair.public_key_pem());
        let key = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()),
            _ => EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()),
        }
        .expect("private pem");
        assert_eq!(&*verify(&auth, &sign(&claims, algorithm, &key)).expect("valid").user, "alice");
        let other = rcgen::KeyPair::generate_for(rcgen_alg).expect("key");
        let other_key = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()),
            _ => EncodingKey::from_ed_pem(other.serialize_pem().as_bytes()),
        }
        .expect("private pem");
        let forged = verify(&auth, &sign(&claims, algorithm, &other_key)).expect_err("other key");
        assert_eq!(forged, AuthError::BadSignature, "{algorithm:?}");
        // The classic confusion: the public key used as an HMAC secret.
        let confused = sign(&claims, Algorithm::HS256, &secret(pair.public_key_pem().as_bytes()));
        assert_eq!(verify(&auth, &confused).expect_err("HS256 with the public key"), AuthError::BadSignature);
    }
}

#[test]
fn unusable_key_files_are_reported() {
    let missing = Auth { jwt_public_key: "/nonexistent/key.pem".into(), ..Auth::default() };
    assert!(matches!(Authenticator::build(&missing), Err(AuthSetupError::ReadKey { .. })));
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("junk.pem");
    std::fs::write(&path, "not a key").expect("write");
    let junk = Auth { jwt_public_key: path, ..Auth::default() };
    assert!(matches!(Authenticator::build(&junk), Err(AuthSetupError::BadKey(_))));
}
