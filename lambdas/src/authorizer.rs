//! The `$connect` REQUEST authorizer: finds the player's JWT in the handshake, verifies it against
//! the issuer's JWKS the way Cognito user pools issue tokens, and answers API Gateway with an IAM
//! policy and the context `{playerId, role}` that every later route of the connection receives.
//!
//! The same [`Verifier`] runs in the Lambda (keys fetched over HTTPS by [`HttpsJwksSource`]) and
//! inside the local stack's embedded mode (keys from the dev issuer through [`StaticJwksSource`]);
//! with `matchgate up --lambdas` the `mg-authorizer` binary itself runs, fetching the dev issuer's
//! keys from the stack over HTTP.
//!
//! # Where the token comes from
//! `?token=JWT`, or an entry of `Sec-WebSocket-Protocol`: browsers cannot set an `Authorization`
//! header on a WebSocket, but they can offer subprotocols. A client offers
//! `["matchgate.v1", JWT]`; an offered entry that has the shape of a compact JWS (three base64url
//! segments, the first starting with `eyJ`) is the token, and the server must select one of the
//! *other* entries (preferably [`SUBPROTOCOL`]) in its `101` answer, or browsers fail the handshake.
//! The token itself is never echoed. See [`token_from_request`].
//!
//! # Status codes
//! One rule: **401** when the caller could not be authenticated — no token, not a JWT, a bad or
//! disallowed signature, a key the issuer does not publish, outside its validity window — so a
//! client should get a fresh token. **403** only for a token whose signature *verified* against a
//! trusted key but that is not for this API: wrong `iss`, wrong `aud`/`client_id`, wrong
//! `token_use`; a new token from the same place will not help. (A forger never gets a 403: the
//! claims are looked at only after the signature checks out.) **500** when the authorizer itself
//! cannot decide — the JWKS cannot be fetched, or the event is not an authorizer event — and the
//! connection is refused all the same: the authorizer fails closed.
//!
//! In Lambda ([`handle`]) a 401 is the error `"Unauthorized"`, a 403 is a `Deny` policy and a 500
//! is any other error, which is how API Gateway turns authorizer outcomes into those statuses.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::ports::{Clock, Role};

/// The subprotocol matchgate clients offer next to their token, and the one the server selects.
pub const SUBPROTOCOL: &str = "matchgate.v1";

/// The query string parameter that carries the token.
pub const TOKEN_QUERY_PARAMETER: &str = "token";

/// The only signature algorithm accepted: what Cognito user pools (and the dev issuer) sign with.
/// Pinning it is what defeats `alg: none` and HS256-with-the-public-key confusion.
pub const ALGORITHM: Algorithm = Algorithm::RS256;

/// Longest token accepted. Cognito ID tokens are 1–2 KB (more with many groups); anything far
/// larger is refused before any base64 or JSON work.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// An unknown `kid` makes the cache refetch the JWKS at most this often, so a flood of tokens with
/// made-up key IDs cannot turn into a flood of requests to the issuer.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// While the cache holds no keys because the last fetch failed (a cold start during a network
/// blip), it retries this often instead, so one failed fetch does not refuse everyone for a minute.
pub const JWKS_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Keys older than this are refreshed on the next verification (within the refetch limit), so a
/// key the issuer withdrew stops being accepted. If that refresh fails, the cached keys still serve.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

/// A JWKS fetch that takes longer than this counts as failed.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JWKS document read (Cognito's holds two keys, about 1 KB).
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// Allowed clock skew between the issuer and us, unless `TOKEN_LEEWAY_SECS` says otherwise.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;

/// The Cognito group whose members connect as observers, unless `OBSERVER_GROUP` says otherwise.
pub const DEFAULT_OBSERVER_GROUP: &str = "observer";

/// What the verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Exact `iss`, e.g. `https://cognito-idp.REGION.amazonaws.com/POOL_ID`.
    pub issuer: String,
    /// Accepted app client IDs: `aud` of ID tokens, `client_id` of access tokens. Empty accepts
    /// nothing.
    pub audience: Vec<String>,
    /// `Some("id")` or `Some("access")` to accept one kind of Cognito token; `None` accepts either.
    pub token_use: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
    /// Members of this group (`cognito:groups`) connect as observers.
    pub observer_group: String,
    /// Where the issuer publishes its keys; `None` means `{issuer}/.well-known/jwks.json`, where
    /// Cognito publishes them.
    pub jwks_url: Option<String>,
}

/// A missing or unusable authorizer setting.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl AuthorizerConfig {
    /// Reads `TOKEN_ISSUER` (required), `TOKEN_AUDIENCE` (required, comma-separated),
    /// `JWKS_URL`, `TOKEN_USE` (`id`, `access`, or empty for either), `TOKEN_LEEWAY_SECS` and
    /// `OBSERVER_GROUP`.
    pub fn from_env() -> Result<Self, AuthConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) over any source of variables, for tests.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, AuthConfigError> {
        let get = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let issuer = get("TOKEN_ISSUER").ok_or(AuthConfigError::Missing("TOKEN_ISSUER"))?;
        let audience: Vec<String> = get("TOKEN_AUDIENCE")
            .ok_or(AuthConfigError::Missing("TOKEN_AUDIENCE"))?
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if audience.is_empty() {
            return Err(AuthConfigError::Missing("TOKEN_AUDIENCE"));
        }
        let token_use = match get("TOKEN_USE").as_deref() {
            None | Some("any") => None,
            Some(u @ ("id" | "access")) => Some(u.to_owned()),
            Some(other) => {
                return Err(AuthConfigError::Invalid {
                    name: "TOKEN_USE",
                    reason: format!("{other:?} is not \"id\", \"access\" or empty"),
                });
            }
        };
        let leeway_secs = match get("TOKEN_LEEWAY_SECS") {
            None => DEFAULT_LEEWAY_SECS,
            Some(s) => {
                s.parse().map_err(|e| AuthConfigError::Invalid { name: "TOKEN_LEEWAY_SECS", reason: format!("{e}") })?
            }
        };
        Ok(Self {
            issuer,
            audience,
            token_use,
            leeway_secs,
            observer_group: get("OBSERVER_GROUP").unwrap_or_else(|| DEFAULT_OBSERVER_GROUP.to_owned()),
            jwks_url: get("JWKS_URL"),
        })
    }

    /// The JWKS URL: `jwks_url`, or Cognito's `{issuer}/.well-known/jwks.json`.
    pub fn jwks_url(&self) -> String {
        match &self.jwks_url {
            Some(url) => url.clone(),
            None => format!("{}/.well-known/jwks.json", self.issuer.trim_end_matches('/')),
        }
    }
}

/// Why a connection was refused. The messages name the check that failed and never contain the
/// token, its claims or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token: pass ?token= or offer it in Sec-WebSocket-Protocol")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's signature is invalid or uses a disallowed algorithm")]
    BadSignature,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token was issued for another client")]
    WrongAudience,
    #[error("the token is not of an accepted token_use")]
    WrongTokenUse,
    #[error("the token is signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("the issuer's keys are unavailable")]
    JwksUnavailable,
    /// The Lambda was invoked with something other than a REQUEST authorizer event.
    #[error("not a REQUEST authorizer event")]
    BadEvent,
}

impl AuthError {
    /// The HTTP status the handshake is refused with; see the module documentation for the rule.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing
            | Self::Malformed
            | Self::Expired
            | Self::NotYetValid
            | Self::BadSignature
            | Self::UnknownKey => 401,
            Self::WrongIssuer | Self::WrongAudience | Self::WrongTokenUse => 403,
            Self::JwksUnavailable | Self::BadEvent => 500,
        }
    }

    /// The body API Gateway refuses a handshake with for this error's status.
    pub fn gateway_message(&self) -> &'static str {
        match self.status() {
            401 => "Unauthorized",
            403 => "Forbidden",
            _ => "Internal server error",
        }
    }
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`: immutable and unique in a Cognito user pool (a username can be
    /// reassigned after a user is deleted), and present in ID and access tokens alike.
    pub player_id: String,
    /// `Observer` when `cognito:groups` holds the observer group or a `role` claim says
    /// `observer` (the dev issuer sets both); otherwise `Player`.
    pub role: Role,
}

/// Player IDs the authorizer hands out: what GameLift takes as a player ID, restricted to
/// characters that are safe in URLs, logs and DynamoDB keys. Cognito `sub`s (UUIDs) qualify.
pub fn valid_player_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c))
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// Where the issuer's public keys come from.
#[async_trait]
pub trait JwksSource: Send + Sync {
    /// The current key set. Any failure is reported as [`AuthError::JwksUnavailable`]; details
    /// belong in the source's own logs.
    async fn fetch(&self) -> Result<JwkSet, AuthError>;
}

/// A fixed key set: the local stack's dev issuer, and tests.
#[derive(Debug, Clone)]
pub struct StaticJwksSource {
    keys: JwkSet,
}

impl StaticJwksSource {
    pub fn new(keys: JwkSet) -> Self {
        Self { keys }
    }

    /// From a JWKS document (`{"keys": [...]}`).
    pub fn from_json(jwks: &serde_json::Value) -> Result<Self, serde_json::Error> {
        Ok(Self::new(JwkSet::deserialize(jwks)?))
    }
}

#[async_trait]
impl JwksSource for StaticJwksSource {
    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        Ok(self.keys.clone())
    }
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<hyper::body::Bytes>,
>;

/// The issuer's JWKS over HTTPS (Cognito: `https://cognito-idp.REGION.amazonaws.com/POOL/.well-known/jwks.json`).
/// Plain `http://` is accepted only for loopback hosts, i.e. a local stack's dev issuer.
pub struct HttpsJwksSource {
    url: http::Uri,
    client: HttpsClient,
}

impl fmt::Debug for HttpsJwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsJwksSource").field("url", &self.url).finish_non_exhaustive()
    }
}

impl HttpsJwksSource {
    /// Builds the client with the platform's root certificates and the aws-lc crypto provider
    /// (the one the AWS SDK uses too).
    pub fn new(url: &str) -> Result<Self, AuthConfigError> {
        let invalid = |reason: String| AuthConfigError::Invalid { name: "JWKS_URL", reason };
        let uri: http::Uri = url.parse().map_err(|e| invalid(format!("{e}")))?;
        let host = uri.host().ok_or_else(|| invalid("no host".into()))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1") => {}
            _ => return Err(invalid("must be https:// (http:// only for localhost)".into())),
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| invalid(format!("no TLS root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(Self { url: uri, client })
    }

    async fn fetch_document(&self) -> Result<JwkSet, String> {
        use http_body_util::BodyExt as _;

        let request = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        parse_jwks_leniently(&body).map_err(|e| format!("not a JWKS document: {e}"))
    }
}

#[async_trait]
impl JwksSource for HttpsJwksSource {
    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        match tokio::time::timeout(JWKS_FETCH_TIMEOUT, self.fetch_document()).await {
            Ok(Ok(keys)) => Ok(keys),
            Ok(Err(reason)) => {
                tracing::warn!(url = %self.url, reason, "JWKS fetch failed");
                Err(AuthError::JwksUnavailable)
            }
            Err(_) => {
                tracing::warn!(url = %self.url, timeout = ?JWKS_FETCH_TIMEOUT, "JWKS fetch timed out");
                Err(AuthError::JwksUnavailable)
            }
        }
    }
}

/// A JWKS document, skipping keys this crate cannot represent (a new key type must not make the
/// whole set, and with it every login, unusable).
pub fn parse_jwks_leniently(body: &[u8]) -> Result<JwkSet, serde_json::Error> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body)?;
    Ok(JwkSet { keys: document.keys.into_iter().filter_map(|k| serde_json::from_value(k).ok()).collect() })
}

/// The verification key for a JWK, if it is an RSA signature key usable with [`ALGORITHM`].
fn usable_key(jwk: &Jwk) -> Option<DecodingKey> {
    if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) {
        return None;
    }
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return None;
    }
    if jwk.common.key_algorithm.is_some_and(|a| a != KeyAlgorithm::RS256) {
        return None;
    }
    if jwk.common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok()
}

#[derive(Default)]
struct CacheState {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// When the keys were last fetched successfully (epoch ms).
    loaded_at: Option<i64>,
    /// When a fetch was last attempted, successful or not (epoch ms).
    last_attempt: Option<i64>,
    last_attempt_failed: bool,
}

/// The issuer's keys, cached: fetched on first use, refetched when a token names an unknown
/// `kid` (key rotation) at most once per [`JWKS_REFETCH_INTERVAL`], refreshed after
/// [`JWKS_MAX_AGE`]. When the keys cannot be had, verification fails: it never falls open.
pub struct JwksCache {
    source: Arc<dyn JwksSource>,
    clock: Arc<dyn Clock>,
    state: RwLock<CacheState>,
    /// One fetch at a time: concurrent handshakes with a new `kid` wait for the same fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("JwksCache")
            .field("kids", &state.keys.keys().collect::<Vec<_>>())
            .field("loaded_at", &state.loaded_at)
            .field("last_attempt", &state.last_attempt)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    pub fn new(source: Arc<dyn JwksSource>, clock: Arc<dyn Clock>) -> Self {
        Self { source, clock, state: RwLock::default(), fetching: tokio::sync::Mutex::new(()) }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The verification key for `kid`.
    pub async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        if let Some(key) = self.cached(kid, self.now_ms()) {
            return Ok(key);
        }
        let _fetching = self.fetching.lock().await;
        let now = self.now_ms();
        // Another handshake may have fetched while this one waited.
        if let Some(key) = self.cached(kid, now) {
            return Ok(key);
        }
        let (known, may_fetch, last_failed) = {
            let state = self.read();
            let interval = if state.keys.is_empty() && state.last_attempt_failed {
                JWKS_RETRY_INTERVAL
            } else {
                JWKS_REFETCH_INTERVAL
            };
            let may_fetch = state.last_attempt.is_none_or(|t| now.saturating_sub(t) >= interval.as_millis() as i64);
            (state.keys.get(kid).cloned(), may_fetch, state.last_attempt_failed)
        };
        if !may_fetch {
            // A known key is merely due for a refresh: keep using it until the next attempt.
            return known.ok_or(if last_failed { AuthError::JwksUnavailable } else { AuthError::UnknownKey });
        }
        let fetched = self.source.fetch().await;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.last_attempt = Some(now);
        match fetched {
            Ok(set) => {
                let mut keys = HashMap::new();
                for jwk in &set.keys {
                    if let (Some(kid), Some(key)) = (jwk.common.key_id.as_ref(), usable_key(jwk)) {
                        keys.entry(kid.clone()).or_insert_with(|| Arc::new(key));
                    }
                }
                tracing::info!(kids = ?keys.keys().collect::<Vec<_>>(), "JWKS loaded");
                state.keys = keys;
                state.loaded_at = Some(now);
                state.last_attempt_failed = false;
                state.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
            }
            Err(_) => {
                state.last_attempt_failed = true;
                // A key fetched earlier is still the issuer's key; only the refresh failed.
                known.ok_or(AuthError::JwksUnavailable)
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key for `kid` if it is cached and the cache is not due for a refresh.
    fn cached(&self, kid: &str, now: i64) -> Option<Arc<DecodingKey>> {
        let state = self.read();
        let fresh = state.loaded_at.is_some_and(|t| now.saturating_sub(t) < JWKS_MAX_AGE.as_millis() as i64);
        if fresh { state.keys.get(kid).cloned() } else { None }
    }
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/// The JOSE header fields the verifier looks at, read before any key is chosen.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    /// Critical extensions this verifier does not implement: RFC 7515 says refuse the token.
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains_any(&self, accepted: &[String]) -> bool {
        match self {
            Self::One(a) => accepted.contains(a),
            Self::Many(all) => all.iter().any(|a| accepted.contains(a)),
        }
    }
}

/// The claims of a Cognito ID or access token (and of the dev issuer's tokens).
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    /// ID tokens: the app client ID.
    aud: Option<Audience>,
    /// Access tokens: the app client ID (they carry no `aud`).
    client_id: Option<String>,
    token_use: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    #[serde(rename = "cognito:groups", default)]
    groups: Vec<String>,
    role: Option<String>,
}

/// Verifies tokens; one per process, shared by every handshake.
#[derive(Debug)]
pub struct Verifier {
    config: AuthorizerConfig,
    jwks: JwksCache,
    validation: Validation,
}

impl Verifier {
    pub fn new(config: AuthorizerConfig, jwks: JwksCache) -> Self {
        // Pin jsonwebtoken to the aws-lc backend even if another crate also enables its other
        // backend (with both, it would refuse to pick one at the first verification).
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        // jsonwebtoken checks the signature only; every claim is checked below against our clock.
        let mut validation = Validation::new(ALGORITHM);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Self { config, jwks, validation }
    }

    /// A verifier over the issuer's JWKS fetched over HTTPS from [`AuthorizerConfig::jwks_url`].
    pub fn with_https_jwks(config: AuthorizerConfig, clock: Arc<dyn Clock>) -> Result<Self, AuthConfigError> {
        let source = HttpsJwksSource::new(&config.jwks_url())?;
        Ok(Self::new(config, JwksCache::new(Arc::new(source), clock)))
    }

    pub fn config(&self) -> &AuthorizerConfig {
        &self.config
    }

    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let header = read_header(token)?;
        // Only RS256: `none`, HS256 keyed with the public key, and everything else are refused
        // before a key is even looked up.
        if header.alg != "RS256" {
            return Err(AuthError::BadSignature);
        }
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        let kid = header.kid.filter(|k| !k.is_empty()).ok_or(AuthError::Malformed)?;
        let key = self.jwks.key(&kid).await?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
                _ => AuthError::Malformed,
            })?
            .claims;
        self.check_claims(&claims)?;
        let player_id = claims.sub.filter(|s| valid_player_id(s)).ok_or(AuthError::Malformed)?;
        let observer =
            claims.groups.contains(&self.config.observer_group) || claims.role.as_deref() == Some("observer");
        Ok(Identity { player_id, role: if observer { Role::Observer } else { Role::Player } })
    }

    /// The claims of a token whose signature verified: who it is for first (403s), then when (401s).
    fn check_claims(&self, claims: &Claims) -> Result<(), AuthError> {
        let config = &self.config;
        if claims.iss.as_deref() != Some(config.issuer.as_str()) {
            return Err(AuthError::WrongIssuer);
        }
        let token_use = claims.token_use.as_deref();
        let use_ok = match config.token_use.as_deref() {
            Some(wanted) => token_use == Some(wanted),
            None => matches!(token_use, Some("id" | "access")),
        };
        if !use_ok {
            return Err(AuthError::WrongTokenUse);
        }
        // Cognito puts the app client ID in `aud` of ID tokens and in `client_id` of access tokens.
        let audience_ok = match token_use {
            Some("access") => claims.client_id.as_ref().is_some_and(|c| config.audience.contains(c)),
            _ => claims.aud.as_ref().is_some_and(|a| a.contains_any(&config.audience)),
        };
        if !audience_ok {
            return Err(AuthError::WrongAudience);
        }
        let now_ms = self.jwks.now_ms();
        let leeway_ms = i64::try_from(config.leeway_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let ms = |secs: f64| (secs * 1000.0) as i64;
        let exp = claims.exp.ok_or(AuthError::Malformed)?;
        if now_ms >= ms(exp).saturating_add(leeway_ms) {
            return Err(AuthError::Expired);
        }
        let not_before = [claims.nbf, claims.iat].into_iter().flatten().map(ms).max();
        if not_before.is_some_and(|nbf| now_ms.saturating_add(leeway_ms) < nbf) {
            return Err(AuthError::NotYetValid);
        }
        Ok(())
    }
}

fn read_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let json = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)
}

// ---------------------------------------------------------------------------------------------
// The handshake and the Lambda
// ---------------------------------------------------------------------------------------------

/// Whether a `Sec-WebSocket-Protocol` entry is a token rather than a subprotocol: a compact JWS,
/// i.e. base64url header and payload (the header a JSON object, so `eyJ`) and a base64url
/// signature, which may be empty so that an unsigned token is refused as such rather than missed.
pub fn looks_like_jwt(entry: &str) -> bool {
    let b64 = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let parts: Vec<&str> = entry.split('.').collect();
    matches!(parts.as_slice(), [h, p, s] if h.starts_with("eyJ") && !p.is_empty() && b64(h) && b64(p) && b64(s))
}

/// The token of a handshake and the subprotocol the server must select.
///
/// The token is `query_token` (the `token` query string parameter) if non-empty, else the first
/// `Sec-WebSocket-Protocol` entry that [looks like a JWT](looks_like_jwt). The subprotocol is
/// [`SUBPROTOCOL`] if offered, else the first offered entry that is not a token; `None` when the
/// client offered none (then the `101` must carry no `Sec-WebSocket-Protocol`). `protocols` is the
/// header's value, entries separated by commas (repeated headers joined with `", "`).
pub fn token_from_request(query_token: Option<&str>, protocols: Option<&str>) -> Option<(String, Option<String>)> {
    let token = query_token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .or_else(|| offered(protocols).find(|p| looks_like_jwt(p)))?;
    Some((token.to_owned(), select_subprotocol(protocols)))
}

/// The subprotocol a server selects from a `Sec-WebSocket-Protocol` offer: [`SUBPROTOCOL`] if
/// offered, else the first entry that is not a token, else none. The `$connect` integration
/// answers with it (API Gateway copies a `Sec-WebSocket-Protocol` header of the `$connect`
/// route's response into the `101`), so a token is never echoed.
pub fn select_subprotocol(protocols: Option<&str>) -> Option<String> {
    let mut subprotocols = offered(protocols).filter(|p| !looks_like_jwt(p));
    let first = subprotocols.next()?;
    let preferred = if first == SUBPROTOCOL { Some(first) } else { subprotocols.find(|p| *p == SUBPROTOCOL) };
    Some(preferred.unwrap_or(first).to_owned())
}

fn offered(protocols: Option<&str>) -> impl Iterator<Item = &str> {
    protocols.into_iter().flat_map(|p| p.split(',')).map(str::trim).filter(|p| !p.is_empty())
}

/// The `Sec-WebSocket-Protocol` offer of an API Gateway event (authorizer or `$connect`), every
/// line of a repeated header joined with `", "`: `multiValueHeaders` has them all, `headers` may
/// have only one.
pub fn offered_subprotocols(headers: &http::HeaderMap, multi_value_headers: &http::HeaderMap) -> Option<String> {
    let name = http::header::SEC_WEBSOCKET_PROTOCOL;
    let source = if multi_value_headers.contains_key(&name) { multi_value_headers } else { headers };
    let lines: Vec<&str> = source.get_all(&name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!lines.is_empty()).then(|| lines.join(", "))
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyStatement {
    pub action: String,
    pub effect: Effect,
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: String,
    pub statement: Vec<PolicyStatement>,
}

/// A Lambda authorizer's answer, in the shape API Gateway documents. `context` values are flat
/// strings: API Gateway refuses nested objects there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    pub principal_id: String,
    pub policy_document: PolicyDocument,
    #[serde(default)]
    pub context: BTreeMap<String, String>,
}

impl AuthorizerResponse {
    /// Allows the `$connect` of `method_arn` with the identity as context `{playerId, role}`.
    pub fn allow(identity: &Identity, method_arn: &str) -> Self {
        let context = BTreeMap::from([
            ("playerId".to_owned(), identity.player_id.clone()),
            ("role".to_owned(), identity.role.as_str().to_owned()),
        ]);
        Self::new(&identity.player_id, Effect::Allow, method_arn, context)
    }

    /// Denies the `$connect` of `method_arn` (API Gateway answers 403).
    pub fn deny(method_arn: &str) -> Self {
        Self::new("anonymous", Effect::Deny, method_arn, BTreeMap::new())
    }

    fn new(principal_id: &str, effect: Effect, method_arn: &str, context: BTreeMap<String, String>) -> Self {
        Self {
            principal_id: principal_id.to_owned(),
            policy_document: PolicyDocument {
                version: "2012-10-17".to_owned(),
                statement: vec![PolicyStatement {
                    action: "execute-api:Invoke".to_owned(),
                    effect,
                    resource: method_arn.to_owned(),
                }],
            },
            context,
        }
    }

    /// Whether the policy allows the connection.
    pub fn allows(&self) -> bool {
        self.policy_document.statement.iter().any(|s| s.effect == Effect::Allow)
            && self.policy_document.statement.iter().all(|s| s.effect != Effect::Deny)
    }

    /// What API Gateway then puts in `requestContext.authorizer` of every route of the
    /// connection: the context's entries and `principalId`.
    pub fn request_context_authorizer(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map: serde_json::Map<String, serde_json::Value> =
            self.context.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        map.insert("principalId".to_owned(), serde_json::Value::String(self.principal_id.clone()));
        map
    }
}

/// Authorizes a `$connect`: the token from `?token=` or `Sec-WebSocket-Protocol`, verified, as an
/// `Allow` policy for the event's `methodArn` with the context `{playerId, role}`. Every refusal
/// is an [`AuthError`]; [`handle`] turns it into what API Gateway expects from a Lambda, the
/// local stack into the HTTP status [`AuthError::status`].
pub async fn authorize(
    event: ApiGatewayCustomAuthorizerRequestTypeRequest,
    verifier: &Verifier,
) -> Result<AuthorizerResponse, AuthError> {
    let method_arn = event.method_arn.as_deref().filter(|a| !a.is_empty()).ok_or(AuthError::BadEvent)?;
    let protocols = offered_subprotocols(&event.headers, &event.multi_value_headers);
    let (token, _) =
        token_from_request(event.query_string_parameters.first(TOKEN_QUERY_PARAMETER), protocols.as_deref())
            .ok_or(AuthError::Missing)?;
    let identity = verifier.verify(&token).await?;
    Ok(AuthorizerResponse::allow(&identity, method_arn))
}

/// How an authorizer Lambda refuses so that API Gateway answers 401 or 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizerLambdaError {
    /// API Gateway answers 401 for exactly this error message.
    #[error("Unauthorized")]
    Unauthorized,
    /// Any other error: API Gateway answers 500.
    #[error("the authorizer could not verify the token")]
    Unavailable,
}

impl From<AuthorizerLambdaError> for lambda_runtime::Diagnostic {
    fn from(error: AuthorizerLambdaError) -> Self {
        let error_type = match error {
            AuthorizerLambdaError::Unauthorized => "Unauthorized",
            AuthorizerLambdaError::Unavailable => "AuthorizerUnavailable",
        };
        Self { error_type: error_type.to_owned(), error_message: error.to_string() }
    }
}

/// The authorizer Lambda's handler: [`authorize`], with refusals as API Gateway expects them —
/// 401s as the error `"Unauthorized"`, 403s as a `Deny` policy, 500s as another error.
pub async fn handle(
    event: ApiGatewayCustomAuthorizerRequestTypeRequest,
    verifier: &Verifier,
) -> Result<AuthorizerResponse, AuthorizerLambdaError> {
    let method_arn = event.method_arn.clone().unwrap_or_default();
    let connection_id = event.request_context.other.get("connectionId").and_then(|v| v.as_str()).map(str::to_owned);
    match authorize(event, verifier).await {
        Ok(response) => {
            tracing::info!(connection_id, player_id = response.principal_id, "connect authorized");
            Ok(response)
        }
        Err(e) => {
            tracing::info!(connection_id, reason = %e, status = e.status(), "connect refused");
            match e.status() {
                401 => Err(AuthorizerLambdaError::Unauthorized),
                403 => Ok(AuthorizerResponse::deny(&method_arn)),
                _ => Err(AuthorizerLambdaError::Unavailable),
            }
        }
    }
}
