//! The `$connect` authorizer: one test per bad token, the JWKS cache's refetch, rate limit and
//! failure rules, where the token comes from, and the policy API Gateway receives.
//!
//! Run: `cargo test -p matchgate-lambdas --test authorizer`. Time only moves when a test moves
//! its [`ManualClock`]; keys are generated once per run, none is committed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use matchgate_lambdas::adapters::memory::ManualClock;
use matchgate_lambdas::authorizer::{
    AuthError, AuthorizerConfig, AuthorizerLambdaError, AuthorizerResponse, Effect, Identity, JWKS_MAX_AGE,
    JWKS_REFETCH_INTERVAL, JWKS_RETRY_INTERVAL, JwksCache, JwksSource, MAX_TOKEN_BYTES, SUBPROTOCOL, StaticJwksSource,
    Verifier, authorize, handle, looks_like_jwt, parse_jwks_leniently, token_from_request,
};
use matchgate_lambdas::ports::Role;
use serde_json::{Value, json};

const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEfGhI";
const CLIENT_ID: &str = "5v3ekdm9bbn0fh8q4ntv1r2fls";
/// 2023-11-14T22:13:20Z, in milliseconds.
const T0_MS: i64 = 1_700_000_000_000;
const T0: i64 = T0_MS / 1000;
const ONE_HOUR: i64 = 3600;
const PLAYER: &str = "4c5a2f0e-1b7d-4e3a-9d8e-2f6b7c1a9e00";

// ---------------------------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------------------------

/// An RSA signing key as an issuer holds it.
struct TestKey {
    kid: &'static str,
    pem: String,
    n: String,
    e: String,
    spki_der: Vec<u8>,
}

impl TestKey {
    fn generate(kid: &'static str) -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let pkcs8 = pair.as_der().expect("PKCS#8");
        let pem = pem("PRIVATE KEY", pkcs8.as_ref());
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let spki: aws_lc_rs::encoding::PublicKeyX509Der<'_> = public.as_der().expect("SPKI");
        Self { kid, pem, n, e, spki_der: spki.as_ref().to_vec() }
    }

    /// The same key published under another `kid`.
    fn renamed(&self, kid: &'static str) -> Self {
        Self { kid, pem: self.pem.clone(), n: self.n.clone(), e: self.e.clone(), spki_der: self.spki_der.clone() }
    }

    fn jwk(&self) -> Value {
        json!({ "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": self.n, "e": self.e })
    }

    /// Signs `claims` with RS256 under this key's `kid`.
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.to_owned());
        self.sign_with(&header, claims)
    }

    fn sign_with(&self, header: &Header, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(self.pem.as_bytes()).expect("encoding key");
        jsonwebtoken::encode(header, claims, &key).expect("sign")
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// Key generation costs a little even in aws-lc; three keys serve every test.
struct Keys {
    current: TestKey,
    /// An attacker's key, or the issuer's next key after a rotation.
    other: TestKey,
    third: TestKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        current: TestKey::generate("key-2023-11"),
        other: TestKey::generate("key-2024-05"),
        third: TestKey::generate("key-2024-11"),
    })
}

fn jwks(keys: &[&TestKey]) -> JwkSet {
    serde_json::from_value(json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })).unwrap()
}

/// Claims of a Cognito ID token for [`PLAYER`], issued at [`T0`] for an hour.
fn id_claims() -> Value {
    json!({
        "sub": PLAYER,
        "email_verified": true,
        "iss": ISSUER,
        "cognito:username": "alice",
        "origin_jti": "2b3e6a4c-5d1f-4b7a-8c9e-0f1a2b3c4d5e",
        "aud": CLIENT_ID,
        "event_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        "token_use": "id",
        "auth_time": T0,
        "exp": T0 + ONE_HOUR,
        "iat": T0,
        "jti": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
        "email": "alice@example.com"
    })
}

/// Claims of a Cognito access token for [`PLAYER`]: `client_id` instead of `aud`.
fn access_claims() -> Value {
    json!({
        "sub": PLAYER,
        "iss": ISSUER,
        "client_id": CLIENT_ID,
        "origin_jti": "2b3e6a4c-5d1f-4b7a-8c9e-0f1a2b3c4d5e",
        "event_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": T0,
        "exp": T0 + ONE_HOUR,
        "iat": T0,
        "jti": "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d",
        "username": "alice"
    })
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

// ---------------------------------------------------------------------------------------------
// A JWKS endpoint the test controls
// ---------------------------------------------------------------------------------------------

/// Serves whatever key set (or failure) the test sets, counting fetches.
struct TestJwks {
    answer: Mutex<Option<JwkSet>>,
    fetches: AtomicUsize,
}

impl TestJwks {
    fn serving(keys: &[&TestKey]) -> Arc<Self> {
        Arc::new(Self { answer: Mutex::new(Some(jwks(keys))), fetches: AtomicUsize::new(0) })
    }

    fn failing() -> Arc<Self> {
        Arc::new(Self { answer: Mutex::new(None), fetches: AtomicUsize::new(0) })
    }

    fn serve(&self, keys: &[&TestKey]) {
        *self.answer.lock().unwrap() = Some(jwks(keys));
    }

    fn fail(&self) {
        *self.answer.lock().unwrap() = None;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl JwksSource for TestJwks {
    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.answer.lock().unwrap().clone().ok_or(AuthError::JwksUnavailable)
    }
}

fn config() -> AuthorizerConfig {
    AuthorizerConfig {
        issuer: ISSUER.to_owned(),
        audience: vec![CLIENT_ID.to_owned()],
        token_use: None,
        leeway_secs: 60,
        observer_group: "observer".to_owned(),
        jwks_url: None,
    }
}

struct Harness {
    verifier: Verifier,
    jwks: Arc<TestJwks>,
    clock: Arc<ManualClock>,
}

impl Harness {
    fn new(jwks: Arc<TestJwks>) -> Self {
        Self::with_config(config(), jwks)
    }

    fn with_config(config: AuthorizerConfig, jwks: Arc<TestJwks>) -> Self {
        let clock = Arc::new(ManualClock::new(T0_MS));
        let cache = JwksCache::new(jwks.clone(), clock.clone());
        Self { verifier: Verifier::new(config, cache), jwks, clock }
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verifier.verify(token).await
    }

    /// Asserts that `token` is refused with `expected` and its status.
    async fn refuses(&self, token: &str, expected: AuthError, status: u16) {
        let error = self.verify(token).await.expect_err("the token must be refused");
        assert_eq!(error, expected);
        assert_eq!(error.status(), status, "{error}");
        let shown = format!("{error} {error:?}");
        if token.len() > 8 {
            assert!(!shown.contains(token), "the error shows the token");
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(!shown.contains(part), "the error shows part of the token");
            }
        }
    }
}

fn player() -> Identity {
    Identity { player_id: PLAYER.to_owned(), role: Role::Player }
}

// ---------------------------------------------------------------------------------------------
// Valid tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_id_token_is_a_player() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    assert_eq!(h.verify(&keys().current.sign(&id_claims())).await, Ok(player()));
}

#[tokio::test]
async fn a_valid_access_token_is_a_player() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    assert_eq!(h.verify(&keys().current.sign(&access_claims())).await, Ok(player()));
}

#[tokio::test]
async fn a_member_of_the_observer_group_is_an_observer() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let claims = with(id_claims(), json!({ "cognito:groups": ["designers", "observer"] }));
    let identity = h.verify(&keys().current.sign(&claims)).await.unwrap();
    assert_eq!(identity, Identity { player_id: PLAYER.to_owned(), role: Role::Observer });
    // Access tokens carry the groups too.
    let claims = with(access_claims(), json!({ "cognito:groups": ["observer"] }));
    assert_eq!(h.verify(&keys().current.sign(&claims)).await.unwrap().role, Role::Observer);
}

#[tokio::test]
async fn a_role_claim_of_observer_is_an_observer() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let observer = with(id_claims(), json!({ "role": "observer" }));
    assert_eq!(h.verify(&keys().current.sign(&observer)).await.unwrap().role, Role::Observer);
    // Any other role, or a group of another name, is a player.
    let other = with(id_claims(), json!({ "role": "admin", "cognito:groups": ["observers"] }));
    assert_eq!(h.verify(&keys().current.sign(&other)).await.unwrap().role, Role::Player);
}

#[tokio::test]
async fn the_player_id_is_sub_not_the_username() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let claims = with(id_claims(), json!({ "cognito:username": "mallory" }));
    assert_eq!(h.verify(&keys().current.sign(&claims)).await.unwrap().player_id, PLAYER);
}

#[tokio::test]
async fn clock_skew_within_the_leeway_is_tolerated() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let token = keys().current.sign(&id_claims());
    // Issued 30 s "in the future" by a fast issuer clock.
    let early = keys().current.sign(&with(id_claims(), json!({ "iat": T0 + 30, "nbf": T0 + 30 })));
    assert!(h.verify(&early).await.is_ok());
    // 59 s after expiry.
    h.advance(Duration::from_secs(ONE_HOUR as u64 + 59));
    assert!(h.verify(&token).await.is_ok());
}

// ---------------------------------------------------------------------------------------------
// One test per bad token
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_token_is_401() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    h.refuses("", AuthError::Missing, 401).await;
    h.refuses("   ", AuthError::Missing, 401).await;
    assert_eq!(h.jwks.fetches(), 0, "no JWKS fetch for nothing");
}

#[tokio::test]
async fn a_malformed_token_is_401() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let valid = keys().current.sign(&id_claims());
    let parts: Vec<&str> = valid.split('.').collect();
    for token in [
        "not-a-jwt".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d.e".to_owned(),
        "!!!.###.$$$".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        // A header that is not JSON.
        format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("RS256"), parts[1], parts[2]),
        // A payload that is not JSON, under a valid signature of something else.
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode("{not json"), parts[2]),
        "x".repeat(MAX_TOKEN_BYTES + 1),
    ] {
        let error = h.verify(&token).await.expect_err("malformed");
        // A tampered payload fails the signature check first; everything else is malformed.
        assert!(matches!(error, AuthError::Malformed | AuthError::BadSignature), "{error:?}");
        assert_eq!(error.status(), 401);
    }
    h.refuses("not-a-jwt", AuthError::Malformed, 401).await;
}

#[tokio::test]
async fn a_token_without_kid_or_with_crit_is_malformed() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let no_kid = keys().current.sign_with(&Header::new(Algorithm::RS256), &id_claims());
    h.refuses(&no_kid, AuthError::Malformed, 401).await;
    let claims = URL_SAFE_NO_PAD.encode(id_claims().to_string());
    let header =
        URL_SAFE_NO_PAD.encode(json!({ "alg": "RS256", "kid": keys().current.kid, "crit": ["exp"] }).to_string());
    h.refuses(&format!("{header}.{claims}.c2lnbmF0dXJl"), AuthError::Malformed, 401).await;
}

#[tokio::test]
async fn a_signed_token_with_unusable_claims_is_malformed() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    for changes in [
        json!({ "exp": null }),
        json!({ "exp": "tomorrow" }),
        json!({ "sub": null }),
        json!({ "sub": "" }),
        json!({ "sub": "alice/../bob" }),
        json!({ "sub": "x".repeat(129) }),
    ] {
        h.refuses(&keys().current.sign(&with(id_claims(), changes)), AuthError::Malformed, 401).await;
    }
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let token = keys().current.sign(&id_claims());
    h.advance(Duration::from_secs(ONE_HOUR as u64 + 60));
    h.refuses(&token, AuthError::Expired, 401).await;
}

#[tokio::test]
async fn a_token_not_yet_valid_is_401() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let nbf = with(id_claims(), json!({ "nbf": T0 + 600, "exp": T0 + 600 + ONE_HOUR }));
    h.refuses(&keys().current.sign(&nbf), AuthError::NotYetValid, 401).await;
    // Cognito sets no nbf: an iat in the future counts the same.
    let iat = with(id_claims(), json!({ "iat": T0 + 600, "exp": T0 + 600 + ONE_HOUR }));
    h.refuses(&keys().current.sign(&iat), AuthError::NotYetValid, 401).await;
}

#[tokio::test]
async fn a_forged_token_signed_by_another_key_with_the_same_kid_is_401() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let forger = keys().other.renamed(keys().current.kid);
    // Even with claims that would otherwise be refused with 403 or as expired: the signature is
    // checked first, so a forger learns nothing about the claims.
    h.refuses(&forger.sign(&id_claims()), AuthError::BadSignature, 401).await;
    h.refuses(&forger.sign(&with(id_claims(), json!({ "iss": "https://evil.example" }))), AuthError::BadSignature, 401)
        .await;
    h.refuses(&forger.sign(&with(id_claims(), json!({ "exp": T0 - ONE_HOUR }))), AuthError::BadSignature, 401).await;
}

#[tokio::test]
async fn a_tampered_payload_is_401() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let token = keys().current.sign(&id_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let observer = URL_SAFE_NO_PAD.encode(with(id_claims(), json!({ "sub": "someone-else" })).to_string());
    h.refuses(&format!("{}.{observer}.{}", parts[0], parts[2]), AuthError::BadSignature, 401).await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_401() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let claims = URL_SAFE_NO_PAD.encode(id_claims().to_string());
    for alg in ["none", "None", "NONE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({ "alg": alg, "kid": keys().current.kid }).to_string());
        h.refuses(&format!("{header}.{claims}."), AuthError::BadSignature, 401).await;
        // With a signature copied from a real token.
        let real = keys().current.sign(&id_claims());
        let signature = real.rsplit('.').next().unwrap();
        h.refuses(&format!("{header}.{claims}.{signature}"), AuthError::BadSignature, 401).await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_401() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let key = &keys().current;
    let public_pem = pem("PUBLIC KEY", &key.spki_der);
    for secret in [public_pem.as_bytes(), key.spki_der.as_slice(), key.n.as_bytes()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some(key.kid.to_owned());
            let token = jsonwebtoken::encode(&header, &id_claims(), &EncodingKey::from_secret(secret)).unwrap();
            h.refuses(&token, AuthError::BadSignature, 401).await;
        }
    }
    // RS256 is the only algorithm: a PS256 signature by the right key is refused too.
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some(key.kid.to_owned());
    h.refuses(&key.sign_with(&header, &id_claims()), AuthError::BadSignature, 401).await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_403() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    for iss in
        [json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"), json!(format!("{ISSUER}/")), json!(null)]
    {
        h.refuses(&keys().current.sign(&with(id_claims(), json!({ "iss": iss }))), AuthError::WrongIssuer, 403).await;
    }
}

#[tokio::test]
async fn an_id_token_for_another_client_is_403() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    for aud in [json!("another-app-client"), json!(["another", "one"]), json!(null)] {
        h.refuses(&keys().current.sign(&with(id_claims(), json!({ "aud": aud }))), AuthError::WrongAudience, 403).await;
    }
    // An audience list naming our client is accepted.
    let listed = with(id_claims(), json!({ "aud": ["another", CLIENT_ID] }));
    assert!(h.verify(&keys().current.sign(&listed)).await.is_ok());
    // ID tokens are matched on aud, not client_id.
    let id_with_client_id = with(id_claims(), json!({ "aud": "another", "client_id": CLIENT_ID }));
    h.refuses(&keys().current.sign(&id_with_client_id), AuthError::WrongAudience, 403).await;
}

#[tokio::test]
async fn an_access_token_for_another_client_id_is_403() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    h.refuses(
        &keys().current.sign(&with(access_claims(), json!({ "client_id": "another-app-client" }))),
        AuthError::WrongAudience,
        403,
    )
    .await;
    h.refuses(
        &keys().current.sign(&with(access_claims(), json!({ "client_id": null }))),
        AuthError::WrongAudience,
        403,
    )
    .await;
    // Access tokens are matched on client_id, not aud.
    let aud_only = with(access_claims(), json!({ "client_id": null, "aud": CLIENT_ID }));
    h.refuses(&keys().current.sign(&aud_only), AuthError::WrongAudience, 403).await;
}

#[tokio::test]
async fn a_token_of_the_wrong_token_use_is_403() {
    let id_only = AuthorizerConfig { token_use: Some("id".into()), ..config() };
    let h = Harness::with_config(id_only, TestJwks::serving(&[&keys().current]));
    h.refuses(&keys().current.sign(&access_claims()), AuthError::WrongTokenUse, 403).await;
    assert!(h.verify(&keys().current.sign(&id_claims())).await.is_ok());

    let access_only = AuthorizerConfig { token_use: Some("access".into()), ..config() };
    let h = Harness::with_config(access_only, TestJwks::serving(&[&keys().current]));
    h.refuses(&keys().current.sign(&id_claims()), AuthError::WrongTokenUse, 403).await;

    // Accepting either kind still requires one of them.
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    for token_use in [json!("refresh"), json!(""), json!(null)] {
        let claims = with(id_claims(), json!({ "token_use": token_use }));
        h.refuses(&keys().current.sign(&claims), AuthError::WrongTokenUse, 403).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The JWKS cache
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn keys_are_fetched_once_and_cached() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let token = keys().current.sign(&id_claims());
    for _ in 0..5 {
        h.verify(&token).await.unwrap();
        h.advance(Duration::from_secs(60));
    }
    assert_eq!(h.jwks.fetches(), 1);
}

#[tokio::test]
async fn an_unknown_kid_refetches_and_is_401_when_still_unknown() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    h.verify(&keys().current.sign(&id_claims())).await.unwrap();
    assert_eq!(h.jwks.fetches(), 1);
    h.advance(JWKS_REFETCH_INTERVAL);
    h.refuses(&keys().other.sign(&id_claims()), AuthError::UnknownKey, 401).await;
    assert_eq!(h.jwks.fetches(), 2, "the unknown kid triggered a refetch");
    // The known key still works, without another fetch.
    h.verify(&keys().current.sign(&id_claims())).await.unwrap();
    assert_eq!(h.jwks.fetches(), 2);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_a_minute() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    h.verify(&keys().current.sign(&id_claims())).await.unwrap();
    h.advance(JWKS_REFETCH_INTERVAL);
    let first = keys().other.sign(&id_claims());
    let second = keys().third.sign(&id_claims());
    h.refuses(&first, AuthError::UnknownKey, 401).await;
    assert_eq!(h.jwks.fetches(), 2);
    // A flood of made-up kids within the minute: no fetch at all.
    h.advance(Duration::from_secs(30));
    for _ in 0..10 {
        h.refuses(&second, AuthError::UnknownKey, 401).await;
        h.refuses(&first, AuthError::UnknownKey, 401).await;
    }
    assert_eq!(h.jwks.fetches(), 2);
    // A minute after the last fetch: one more.
    h.advance(Duration::from_secs(30));
    h.refuses(&second, AuthError::UnknownKey, 401).await;
    assert_eq!(h.jwks.fetches(), 3);
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_the_refetch() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    h.verify(&keys().current.sign(&id_claims())).await.unwrap();
    // The issuer publishes its next key and starts signing with it.
    h.jwks.serve(&[&keys().current, &keys().other]);
    h.advance(JWKS_REFETCH_INTERVAL);
    let rotated = keys().other.sign(&id_claims());
    assert_eq!(h.verify(&rotated).await, Ok(player()));
    assert_eq!(h.jwks.fetches(), 2);
    // Tokens signed with the previous key stay valid until they expire.
    assert_eq!(h.verify(&keys().current.sign(&id_claims())).await, Ok(player()));
    assert_eq!(h.jwks.fetches(), 2);
}

#[tokio::test]
async fn a_rotation_right_after_a_fetch_waits_for_the_refetch_interval() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    h.verify(&keys().current.sign(&id_claims())).await.unwrap();
    h.jwks.serve(&[&keys().current, &keys().other]);
    let rotated = keys().other.sign(&id_claims());
    h.refuses(&rotated, AuthError::UnknownKey, 401).await;
    h.advance(JWKS_REFETCH_INTERVAL);
    assert_eq!(h.verify(&rotated).await, Ok(player()));
}

#[tokio::test]
async fn a_failing_jwks_fetch_refuses_every_token() {
    let h = Harness::new(TestJwks::failing());
    h.refuses(&keys().current.sign(&id_claims()), AuthError::JwksUnavailable, 500).await;
    assert_eq!(h.jwks.fetches(), 1);
    // Still failing, and not retried before the retry interval.
    h.refuses(&keys().current.sign(&id_claims()), AuthError::JwksUnavailable, 500).await;
    assert_eq!(h.jwks.fetches(), 1);
    // Once the issuer answers again, the next retry lets players in.
    h.jwks.serve(&[&keys().current]);
    h.advance(JWKS_RETRY_INTERVAL);
    assert_eq!(h.verify(&keys().current.sign(&id_claims())).await, Ok(player()));
    assert_eq!(h.jwks.fetches(), 2);
}

#[tokio::test]
async fn an_unknown_kid_while_the_jwks_is_down_is_refused() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    h.verify(&keys().current.sign(&id_claims())).await.unwrap();
    h.jwks.fail();
    h.advance(JWKS_REFETCH_INTERVAL);
    h.refuses(&keys().other.sign(&id_claims()), AuthError::JwksUnavailable, 500).await;
    assert_eq!(h.jwks.fetches(), 2);
    // The key fetched before the outage still verifies.
    assert_eq!(h.verify(&keys().current.sign(&id_claims())).await, Ok(player()));
}

#[tokio::test]
async fn old_keys_are_refreshed_and_a_withdrawn_key_stops_working() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let token_at =
        |at: i64| keys().current.sign(&with(id_claims(), json!({ "iat": at, "exp": at + ONE_HOUR, "auth_time": at })));
    h.verify(&token_at(T0)).await.unwrap();
    // The refresh after JWKS_MAX_AGE failing keeps the keys that are cached.
    h.jwks.fail();
    h.advance(JWKS_MAX_AGE);
    let later = T0 + JWKS_MAX_AGE.as_secs() as i64;
    assert_eq!(h.verify(&token_at(later)).await, Ok(player()));
    assert_eq!(h.jwks.fetches(), 2);
    // The issuer withdraws the key: the next refresh drops it.
    h.jwks.serve(&[&keys().other]);
    h.advance(JWKS_REFETCH_INTERVAL);
    let later = later + JWKS_REFETCH_INTERVAL.as_secs() as i64;
    h.refuses(&token_at(later), AuthError::UnknownKey, 401).await;
    assert_eq!(h.jwks.fetches(), 3);
}

#[tokio::test]
async fn unusable_jwks_entries_are_ignored() {
    let set = parse_jwks_leniently(
        json!({ "keys": [
            { "kty": "RSA", "alg": "RS256", "use": "enc", "kid": "encryption", "n": keys().current.n, "e": keys().current.e },
            { "kty": "oct", "alg": "HS256", "kid": "symmetric", "k": URL_SAFE_NO_PAD.encode("secret") },
            { "kty": "RSA", "alg": "RS256", "use": "sig", "kid": "no-modulus" },
            { "kty": "XYZ", "kid": "from-the-future" },
            keys().other.jwk(),
        ]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let h = Harness::new(Arc::new(TestJwks { answer: Mutex::new(Some(set)), fetches: AtomicUsize::new(0) }));
    // A public RSA key published for encryption must not verify signatures.
    h.refuses(&keys().current.renamed("encryption").sign(&id_claims()), AuthError::UnknownKey, 401).await;
    // An HMAC secret in the JWKS is never a verification key.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("symmetric".into());
    let hs = jsonwebtoken::encode(&header, &id_claims(), &EncodingKey::from_secret(b"secret")).unwrap();
    h.refuses(&hs, AuthError::BadSignature, 401).await;
    // The good key beside them works.
    assert_eq!(h.verify(&keys().other.sign(&id_claims())).await, Ok(player()));
}

#[tokio::test]
async fn the_static_source_serves_a_jwks_document() {
    let document = json!({ "keys": [keys().current.jwk()] });
    let source = StaticJwksSource::from_json(&document).unwrap();
    let verifier = Verifier::new(config(), JwksCache::new(Arc::new(source), Arc::new(ManualClock::new(T0_MS + 1000))));
    assert_eq!(verifier.verify(&keys().current.sign(&id_claims())).await, Ok(player()));
}

// ---------------------------------------------------------------------------------------------
// Where the token comes from
// ---------------------------------------------------------------------------------------------

#[test]
fn the_token_comes_from_the_query_string() {
    let token = keys().current.sign(&id_claims());
    assert_eq!(token_from_request(Some(&token), None), Some((token.clone(), None)));
    // The client may offer subprotocols too: one of them must be selected.
    assert_eq!(token_from_request(Some(&token), Some("matchgate.v1")), Some((token.clone(), Some(SUBPROTOCOL.into()))));
    assert_eq!(token_from_request(Some(""), None), None);
    assert_eq!(token_from_request(None, None), None);
}

#[test]
fn the_token_comes_from_sec_websocket_protocol() {
    let token = keys().current.sign(&id_claims());
    assert!(looks_like_jwt(&token));
    // What a browser sends for `new WebSocket(url, ["matchgate.v1", token])`.
    let header = format!("matchgate.v1, {token}");
    assert_eq!(token_from_request(None, Some(&header)), Some((token.clone(), Some("matchgate.v1".into()))));
    // Order does not matter, and matchgate.v1 is preferred over other offered subprotocols.
    let header = format!("{token},chat,  matchgate.v1");
    assert_eq!(token_from_request(None, Some(&header)), Some((token.clone(), Some("matchgate.v1".into()))));
    // Without matchgate.v1, the first other entry is selected; with none, nothing is.
    let header = format!("chat, {token}");
    assert_eq!(token_from_request(None, Some(&header)), Some((token.clone(), Some("chat".into()))));
    assert_eq!(token_from_request(None, Some(&token)), Some((token.clone(), None)));
    // Subprotocols without a token are no token.
    assert_eq!(token_from_request(None, Some("matchgate.v1, chat")), None);
    // The query string wins over the header.
    let other = keys().other.sign(&id_claims());
    assert_eq!(token_from_request(Some(&other), Some(&header)), Some((other, Some("chat".into()))));
}

#[test]
fn only_jwt_shaped_entries_are_tokens() {
    assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
    assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."), "unsigned tokens are found, to be refused");
    for entry in ["matchgate.v1", "graphql-ws", "a.b.c", "eyJ.eyJ", "eyJh.eyJ.c.d", "eyJh..c", "eyJh.e+J.c", ""] {
        assert!(!looks_like_jwt(entry), "{entry}");
    }
}

// ---------------------------------------------------------------------------------------------
// The Lambda handler and API Gateway's event
// ---------------------------------------------------------------------------------------------

/// The input API Gateway sends a WebSocket API's REQUEST authorizer, modeled on the example in
/// "Control access to WebSocket APIs with AWS Lambda REQUEST authorizers" (API Gateway developer
/// guide). Tests put the token in `queryStringParameters` or `Sec-WebSocket-Protocol`.
const CONNECT_AUTHORIZER_EVENT: &str = r#"{
    "type": "REQUEST",
    "methodArn": "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/prod/$connect",
    "headers": {
        "Connection": "upgrade",
        "content-length": "0",
        "Host": "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com",
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Upgrade": "websocket",
        "X-Amzn-Trace-Id": "Root=1-6554f1a0-3c2b1a0f9e8d7c6b5a4f3e2d",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https"
    },
    "multiValueHeaders": {
        "Connection": ["upgrade"],
        "content-length": ["0"],
        "Host": ["a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"],
        "Sec-WebSocket-Extensions": ["permessage-deflate; client_max_window_bits"],
        "Sec-WebSocket-Key": ["dGhlIHNhbXBsZSBub25jZQ=="],
        "Sec-WebSocket-Version": ["13"],
        "Upgrade": ["websocket"],
        "X-Amzn-Trace-Id": ["Root=1-6554f1a0-3c2b1a0f9e8d7c6b5a4f3e2d"],
        "X-Forwarded-For": ["203.0.113.7"],
        "X-Forwarded-Port": ["443"],
        "X-Forwarded-Proto": ["https"]
    },
    "queryStringParameters": {},
    "multiValueQueryStringParameters": {},
    "stageVariables": {},
    "requestContext": {
        "routeKey": "$connect",
        "eventType": "CONNECT",
        "extendedRequestId": "OcKbPFSwDoEFkvQ=",
        "requestTime": "14/Nov/2023:22:13:20 +0000",
        "messageDirection": "IN",
        "stage": "prod",
        "connectedAt": 1700000000000,
        "requestTimeEpoch": 1700000000000,
        "identity": {
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            "sourceIp": "203.0.113.7"
        },
        "requestId": "OcKbPFSwDoEFkvQ=",
        "domainName": "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com",
        "connectionId": "OcKbPeXXDoECJnw=",
        "apiId": "a1b2c3d4e5"
    }
}"#;

const METHOD_ARN: &str = "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/prod/$connect";

fn connect_event(query_token: Option<&str>, protocols: Option<&str>) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let mut event: Value = serde_json::from_str(CONNECT_AUTHORIZER_EVENT).unwrap();
    if let Some(token) = query_token {
        event["queryStringParameters"]["token"] = json!(token);
        event["multiValueQueryStringParameters"]["token"] = json!([token]);
    }
    if let Some(protocols) = protocols {
        event["headers"]["Sec-WebSocket-Protocol"] = json!(protocols);
        event["multiValueHeaders"]["Sec-WebSocket-Protocol"] = json!([protocols]);
    }
    serde_json::from_value(event).expect("API Gateway's REQUEST authorizer event")
}

#[test]
fn the_event_fixture_round_trips() {
    let parsed = connect_event(Some("t"), Some("matchgate.v1"));
    assert_eq!(parsed.type_.as_deref(), Some("REQUEST"));
    assert_eq!(parsed.method_arn.as_deref(), Some(METHOD_ARN));
    assert_eq!(parsed.request_context.other.get("connectionId"), Some(&json!("OcKbPeXXDoECJnw=")));
    let reparsed: ApiGatewayCustomAuthorizerRequestTypeRequest =
        serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
    assert_eq!(parsed, reparsed);
}

#[tokio::test]
async fn the_authorizer_allows_with_the_policy_and_context_api_gateway_expects() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let token = keys().current.sign(&id_claims());
    let response = authorize(connect_event(Some(&token), None), &h.verifier).await.unwrap();
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({
            "principalId": PLAYER,
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{ "Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN }]
            },
            "context": { "playerId": PLAYER, "role": "player" }
        })
    );
    assert!(response.allows());
    // What every later route of the connection finds in requestContext.authorizer.
    let authorizer = response.request_context_authorizer();
    assert_eq!(authorizer.get("playerId"), Some(&json!(PLAYER)));
    assert_eq!(authorizer.get("principalId"), Some(&json!(PLAYER)));
    assert_eq!(authorizer.get("role"), Some(&json!("player")));
}

#[tokio::test]
async fn the_authorizer_reads_the_token_from_sec_websocket_protocol() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let observer = keys().current.sign(&with(id_claims(), json!({ "cognito:groups": ["observer"] })));
    let event = connect_event(None, Some(&format!("{SUBPROTOCOL}, {observer}")));
    let response = authorize(event, &h.verifier).await.unwrap();
    assert_eq!(response.context.get("role").map(String::as_str), Some("observer"));
    assert_eq!(response.context.get("playerId").map(String::as_str), Some(PLAYER));
}

#[tokio::test]
async fn the_authorizer_refuses_a_handshake_without_a_token() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    let refused = authorize(connect_event(None, Some(SUBPROTOCOL)), &h.verifier).await.unwrap_err();
    assert_eq!(refused, AuthError::Missing);
    // An event without methodArn is not an authorizer event.
    let mut event = connect_event(Some(&keys().current.sign(&id_claims())), None);
    event.method_arn = None;
    assert_eq!(authorize(event, &h.verifier).await.unwrap_err(), AuthError::BadEvent);
}

#[tokio::test]
async fn the_lambda_answers_401_as_unauthorized_403_as_deny_and_500_as_an_error() {
    let h = Harness::new(TestJwks::serving(&[&keys().current]));
    // 401: the error message API Gateway turns into 401.
    let expired = keys().current.sign(&with(id_claims(), json!({ "exp": T0 - ONE_HOUR })));
    let error = handle(connect_event(Some(&expired), None), &h.verifier).await.unwrap_err();
    assert_eq!(error, AuthorizerLambdaError::Unauthorized);
    assert_eq!(error.to_string(), "Unauthorized");
    let error = handle(connect_event(None, None), &h.verifier).await.unwrap_err();
    assert_eq!(error, AuthorizerLambdaError::Unauthorized);
    // 403: a Deny policy, without context.
    let foreign = keys().current.sign(&with(id_claims(), json!({ "aud": "another-app-client" })));
    let deny = handle(connect_event(Some(&foreign), None), &h.verifier).await.unwrap();
    assert!(!deny.allows());
    assert_eq!(deny.policy_document.statement[0].effect, Effect::Deny);
    assert_eq!(deny.policy_document.statement[0].resource, METHOD_ARN);
    assert!(deny.context.is_empty());
    // 500: any other error.
    let down = Harness::new(TestJwks::failing());
    let token = keys().current.sign(&id_claims());
    let error = handle(connect_event(Some(&token), None), &down.verifier).await.unwrap_err();
    assert_eq!(error, AuthorizerLambdaError::Unavailable);
    assert_ne!(error.to_string(), "Unauthorized");
    // Allowed: the same policy as authorize.
    let allowed = handle(connect_event(Some(&token), None), &h.verifier).await.unwrap();
    assert_eq!(allowed, AuthorizerResponse::allow(&player(), METHOD_ARN));
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn the_config_reads_the_environment_the_sam_template_sets() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    };
    let config = AuthorizerConfig::from_lookup(env(&[
        ("JWKS_URL", "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEfGhI/.well-known/jwks.json"),
        ("TOKEN_ISSUER", ISSUER),
        ("TOKEN_AUDIENCE", "client-a, client-b,"),
    ]))
    .unwrap();
    assert_eq!(config.issuer, ISSUER);
    assert_eq!(config.audience, ["client-a", "client-b"]);
    assert_eq!(config.token_use, None);
    assert_eq!(config.leeway_secs, 60);
    assert_eq!(config.observer_group, "observer");
    assert_eq!(config.jwks_url(), format!("{ISSUER}/.well-known/jwks.json"));

    let config = AuthorizerConfig::from_lookup(env(&[
        ("TOKEN_ISSUER", ISSUER),
        ("TOKEN_AUDIENCE", CLIENT_ID),
        ("TOKEN_USE", "access"),
        ("TOKEN_LEEWAY_SECS", "5"),
        ("OBSERVER_GROUP", "designers"),
    ]))
    .unwrap();
    assert_eq!(config.token_use.as_deref(), Some("access"));
    assert_eq!(config.leeway_secs, 5);
    assert_eq!(config.observer_group, "designers");
    assert_eq!(config.jwks_url(), format!("{ISSUER}/.well-known/jwks.json"), "Cognito's JWKS URL by default");

    assert!(AuthorizerConfig::from_lookup(env(&[("TOKEN_AUDIENCE", CLIENT_ID)])).is_err());
    assert!(AuthorizerConfig::from_lookup(env(&[("TOKEN_ISSUER", ISSUER)])).is_err());
    assert!(AuthorizerConfig::from_lookup(env(&[("TOKEN_ISSUER", ISSUER), ("TOKEN_AUDIENCE", " , ")])).is_err());
    let bad_use = env(&[("TOKEN_ISSUER", ISSUER), ("TOKEN_AUDIENCE", CLIENT_ID), ("TOKEN_USE", "refresh")]);
    assert!(AuthorizerConfig::from_lookup(bad_use).is_err());
}

#[test]
fn the_https_source_refuses_plain_http_except_on_loopback() {
    use matchgate_lambdas::authorizer::HttpsJwksSource;
    assert!(HttpsJwksSource::new("http://issuer.example/.well-known/jwks.json").is_err());
    assert!(HttpsJwksSource::new("ftp://issuer.example/jwks.json").is_err());
    assert!(HttpsJwksSource::new("not a url").is_err());
    // Building the client needs root certificates, which a minimal container may lack; only the
    // URL rule is asserted here.
    for url in ["http://127.0.0.1:8080/.well-known/jwks.json", "http://localhost:8080/.well-known/jwks.json"] {
        if let Err(e) = HttpsJwksSource::new(url) {
            assert!(e.to_string().contains("root certificates"), "{url}: {e}");
        }
    }
}

#[test]
fn error_statuses_follow_one_rule() {
    use AuthError::*;
    for e in [Missing, Malformed, Expired, NotYetValid, BadSignature, UnknownKey] {
        assert_eq!((e.status(), e.gateway_message()), (401, "Unauthorized"), "{e:?}");
    }
    for e in [WrongIssuer, WrongAudience, WrongTokenUse] {
        assert_eq!((e.status(), e.gateway_message()), (403, "Forbidden"), "{e:?}");
    }
    for e in [JwksUnavailable, BadEvent] {
        assert_eq!(e.status(), 500, "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP(S) JWKS source, against a JWKS endpoint on loopback
// ---------------------------------------------------------------------------------------------

/// Serves every connection on a loopback port with one raw HTTP/1.1 response.
async fn serve_once_per_connection(status: &'static str, body: String) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
            });
        }
    });
    url
}

/// The HTTPS source, unless this machine has no root certificates to build its TLS client with.
fn https_source(url: &str) -> Option<matchgate_lambdas::authorizer::HttpsJwksSource> {
    match matchgate_lambdas::authorizer::HttpsJwksSource::new(url) {
        Ok(source) => Some(source),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[tokio::test]
async fn the_http_source_fetches_the_jwks_a_local_stack_serves() {
    let url = serve_once_per_connection("200 OK", json!({ "keys": [keys().current.jwk()] }).to_string()).await;
    let Some(source) = https_source(&url) else { return };
    let verifier = Verifier::new(config(), JwksCache::new(Arc::new(source), Arc::new(ManualClock::new(T0_MS))));
    assert_eq!(verifier.verify(&keys().current.sign(&id_claims())).await, Ok(player()));
}

#[tokio::test]
async fn the_http_source_fails_closed_on_errors_and_oversized_documents() {
    let error = serve_once_per_connection("503 Service Unavailable", "{}".to_owned()).await;
    let huge =
        serve_once_per_connection("200 OK", format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(100_000))).await;
    let not_json = serve_once_per_connection("200 OK", "<html>".to_owned()).await;
    for url in [error, huge, not_json] {
        let Some(source) = https_source(&url) else { return };
        assert_eq!(source.fetch().await.unwrap_err(), AuthError::JwksUnavailable, "{url}");
    }
    // Nothing listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap())
    };
    let Some(source) = https_source(&closed) else { return };
    assert_eq!(source.fetch().await.unwrap_err(), AuthError::JwksUnavailable);
}

#[test]
fn the_server_selects_a_subprotocol_that_is_never_the_token() {
    use matchgate_lambdas::authorizer::{offered_subprotocols, select_subprotocol};
    let token = keys().current.sign(&id_claims());
    assert_eq!(select_subprotocol(Some(&format!("{token}, matchgate.v1"))), Some(SUBPROTOCOL.into()));
    assert_eq!(select_subprotocol(Some(&format!("chat, {token}, matchgate.v1"))), Some(SUBPROTOCOL.into()));
    assert_eq!(select_subprotocol(Some(&format!("chat, {token}"))), Some("chat".into()));
    assert_eq!(select_subprotocol(Some(&token)), None);
    assert_eq!(select_subprotocol(None), None);
    // A repeated header: every line counts.
    let event = connect_event(None, None);
    let mut multi = event.multi_value_headers.clone();
    multi.append("sec-websocket-protocol", "matchgate.v1".parse().unwrap());
    multi.append("sec-websocket-protocol", token.parse().unwrap());
    assert_eq!(offered_subprotocols(&event.headers, &multi), Some(format!("matchgate.v1, {token}")));
    assert_eq!(offered_subprotocols(&event.headers, &event.multi_value_headers), None);
}

#[test]
fn the_lambda_runtime_reports_unauthorized_as_api_gateway_expects() {
    let diagnostic = lambda_runtime::Diagnostic::from(AuthorizerLambdaError::Unauthorized);
    assert_eq!(diagnostic.error_message, "Unauthorized");
}
