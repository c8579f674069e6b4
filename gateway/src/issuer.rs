//! The local dev token issuer: what a Cognito user pool is to the deployed stack, for
//! `matchgate up` and `matchgate token`.
//!
//! It keeps one RSA signing key in the state directory (`.matchgate/dev-signing-key.pem`, mode
//! 0600, created on first use and shared by every `matchgate` process started there), publishes the
//! public half as a JWKS, and mints RS256 tokens shaped like Cognito ID tokens. The local stack
//! verifies them with the production [`Verifier`] over that JWKS (in-process when embedded; in the
//! `mg-authorizer` binary, pointed at the stack's JWKS, with `--lambdas`), so the local `$connect`
//! runs exactly the checks the authorizer Lambda runs in AWS.

use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, RSAKeyParameters, RSAKeyType,
    ThumbprintHash,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use matchgate_lambdas::authorizer::{
    AuthorizerConfig, DEFAULT_LEEWAY_SECS, DEFAULT_OBSERVER_GROUP, JwksCache, StaticJwksSource, Verifier,
    valid_player_id,
};
use matchgate_lambdas::ports::{Clock, Role};
use serde_json::{Value, json};

/// The dev issuer's `iss`. Not a URL anything serves: tokens name their issuer, they do not
/// point at it. The `.local` name cannot be confused with a real Cognito issuer.
pub const DEV_ISSUER: &str = "http://matchgate.local/dev";

/// The dev tokens' `aud`: the app client ID of the local "user pool".
pub const DEV_CLIENT_ID: &str = "matchgate-local";

/// Where `matchgate` keeps its state unless told otherwise, relative to the working directory.
pub const DEFAULT_STATE_DIR: &str = ".matchgate";

/// The signing key's file in the state directory: an unencrypted PKCS#8 PEM, mode 0600.
pub const SIGNING_KEY_FILE: &str = "dev-signing-key.pem";

/// Where the local stack serves [`DevIssuer::jwks`], as an OpenID provider would.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A token's lifetime unless `--ttl` says otherwise: Cognito's default for ID tokens.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The longest lifetime a dev token may have: Cognito's maximum for ID tokens.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not an RSA private key (PKCS#8 or PKCS#1 PEM, 2048 to 8192 bits)", path.display())]
    BadKey { path: PathBuf },
    #[error("could not generate a signing key")]
    KeyGeneration,
    #[error("invalid player ID {0:?}: 1 to 128 characters of A-Z a-z 0-9 - _ . @ +")]
    InvalidPlayerId(String),
    #[error("invalid role {0:?}: \"player\" or \"observer\"")]
    InvalidRole(String),
    #[error("invalid token lifetime {0:?}: more than zero and at most 24 hours")]
    InvalidTtl(Duration),
    #[error("could not sign the token: {0}")]
    Signing(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> IssuerError + '_ {
    move |source| IssuerError::Io { path: path.to_owned(), source }
}

/// The local stack's token issuer.
pub struct DevIssuer {
    key: EncodingKey,
    /// The public key's modulus and exponent, base64url as in a JWK.
    n: String,
    e: String,
    kid: String,
    path: PathBuf,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("DevIssuer").field("kid", &self.kid).field("path", &self.path).finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// The issuer whose key is in `dir` (see [`SIGNING_KEY_FILE`]), creating the directory (0700)
    /// and a new 2048-bit key (0600) if there is none. Processes racing to create the key end up
    /// sharing whichever key was written first.
    pub fn load_or_create(dir: &Path) -> Result<Self, IssuerError> {
        if !dir.exists() {
            create_private_dir(dir)?;
        }
        let path = dir.join(SIGNING_KEY_FILE);
        match std::fs::read(&path) {
            Ok(pem) => {
                restrict_permissions(&path)?;
                Self::from_pem(&pem, path)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create(dir, path),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// The file the signing key is kept in.
    pub fn key_path(&self) -> &Path {
        &self.path
    }

    /// The key ID: the RFC 7638 thumbprint of the public key, so it is the same for as long as the
    /// key file is, and changes when the key does.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWKS document, to serve at [`JWKS_PATH`].
    pub fn jwks(&self) -> Value {
        json!({ "keys": [{ "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": self.n, "e": self.e }] })
    }

    /// A token for `player_id` with `role` (`"player"` or `"observer"`), valid from now for `ttl`.
    pub fn mint(&self, player_id: &str, role: &str, ttl: Duration) -> Result<String, IssuerError> {
        self.mint_at(player_id, role, ttl, chrono::Utc::now().timestamp())
    }

    /// [`mint`](Self::mint) as if issued at `issued_at` (epoch seconds): tests use it for expired
    /// and not-yet-valid tokens.
    ///
    /// The claims are those of a Cognito ID token (`sub`, `cognito:username`, `iss`, `aud`,
    /// `token_use: "id"`, `auth_time`, `iat`, `exp`, `jti`) plus `nbf`, and for observers both
    /// `cognito:groups: ["observer"]` and `role: "observer"`.
    pub fn mint_at(&self, player_id: &str, role: &str, ttl: Duration, issued_at: i64) -> Result<String, IssuerError> {
        if !valid_player_id(player_id) {
            return Err(IssuerError::InvalidPlayerId(player_id.to_owned()));
        }
        let role = Role::parse(role).ok_or_else(|| IssuerError::InvalidRole(role.to_owned()))?;
        if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
            return Err(IssuerError::InvalidTtl(ttl));
        }
        let mut claims = json!({
            "sub": player_id,
            "cognito:username": player_id,
            "iss": DEV_ISSUER,
            "aud": DEV_CLIENT_ID,
            "token_use": "id",
            "auth_time": issued_at,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + ttl.as_secs() as i64,
            "jti": uuid::Uuid::new_v4().to_string(),
            "role": role.as_str(),
        });
        if role == Role::Observer {
            claims["cognito:groups"] = json!([DEFAULT_OBSERVER_GROUP]);
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| IssuerError::Signing(e.to_string()))
    }

    /// What the local stack's verifier accepts: this issuer's ID tokens.
    pub fn verifier_config(&self) -> AuthorizerConfig {
        AuthorizerConfig {
            issuer: DEV_ISSUER.to_owned(),
            audience: vec![DEV_CLIENT_ID.to_owned()],
            token_use: Some("id".to_owned()),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            observer_group: DEFAULT_OBSERVER_GROUP.to_owned(),
            jwks_url: None,
        }
    }

    /// This issuer's JWKS, in memory.
    pub fn jwks_source(&self) -> StaticJwksSource {
        let mut jwk = public_jwk(&self.n, &self.e);
        jwk.common.key_id = Some(self.kid.clone());
        StaticJwksSource::new(JwkSet { keys: vec![jwk] })
    }

    /// The production verifier over this issuer's keys and [`verifier_config`](Self::verifier_config).
    pub fn verifier(&self, clock: Arc<dyn Clock>) -> Verifier {
        Verifier::new(self.verifier_config(), JwksCache::new(Arc::new(self.jwks_source()), clock))
    }

    fn create(dir: &Path, path: PathBuf) -> Result<Self, IssuerError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| IssuerError::KeyGeneration)?;
        let pkcs8 = pair.as_der().map_err(|_| IssuerError::KeyGeneration)?;
        let pem = pem_encode("PRIVATE KEY", pkcs8.as_ref());
        // Written in full under a temporary name, then linked into place only if no other process
        // got there first: a reader never sees half a key, and racing processes agree on one.
        let tmp = dir.join(format!(".{SIGNING_KEY_FILE}.{}.tmp", uuid::Uuid::new_v4().simple()));
        write_private_file(&tmp, pem.as_bytes())?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created a dev signing key");
                Self::from_pem(pem.as_bytes(), path)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let existing = std::fs::read(&path).map_err(io_error(&path))?;
                Self::from_pem(&existing, path)
            }
            Err(_) => {
                // A file system without hard links: create the file exclusively instead.
                match write_private_file(&path, pem.as_bytes()) {
                    Ok(()) => Self::from_pem(pem.as_bytes(), path),
                    Err(IssuerError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                        let existing = std::fs::read(&path).map_err(io_error(&path))?;
                        Self::from_pem(&existing, path)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn from_pem(pem: &[u8], path: PathBuf) -> Result<Self, IssuerError> {
        let bad_key = || IssuerError::BadKey { path: path.clone() };
        let text = std::str::from_utf8(pem).map_err(|_| bad_key())?;
        let pair = if let Some(der) = pem_decode(text, "PRIVATE KEY") {
            KeyPair::from_pkcs8(&der).map_err(|_| bad_key())?
        } else if let Some(der) = pem_decode(text, "RSA PRIVATE KEY") {
            KeyPair::from_der(&der).map_err(|_| bad_key())?
        } else {
            return Err(bad_key());
        };
        let key = EncodingKey::from_rsa_pem(pem).map_err(|_| bad_key())?;
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let kid = public_jwk(&n, &e).thumbprint(ThumbprintHash::SHA256).map_err(|_| bad_key())?;
        Ok(Self { key, n, e, kid, path })
    }
}

/// An RS256 signature key as a JWK, without its `kid`.
fn public_jwk(n: &str, e: &str) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::RS256),
            ..CommonParameters::default()
        },
        algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: n.to_owned(),
            e: e.to_owned(),
        }),
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

fn pem_decode(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).ok()
}

/// Creates `dir` (and its parents) readable by the owner only.
fn create_private_dir(dir: &Path) -> Result<(), IssuerError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_error(dir))
}

/// Creates `path` exclusively with mode 0600 and writes `contents` durably.
fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), IssuerError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error(path))?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(io_error(path))
}

/// A key file others can read is made private again (and said so), as ssh insists on.
fn restrict_permissions(path: &Path) -> Result<(), IssuerError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).map_err(io_error(path))?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the dev signing key was readable by others; restricting it to 0600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_error(path))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use matchgate_lambdas::adapters::memory::ManualClock;
    use matchgate_lambdas::authorizer::{AuthError, Identity};

    use super::*;

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            Self(std::env::temp_dir().join(format!("matchgate-issuer-{}", uuid::Uuid::new_v4().simple())))
        }

        fn state(&self) -> PathBuf {
            self.0.join(DEFAULT_STATE_DIR)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn clock_at(secs: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock::new(secs * 1000))
    }

    #[tokio::test]
    async fn minted_tokens_pass_the_production_verifier() {
        let dir = TempDir::new();
        let issuer = DevIssuer::load_or_create(&dir.state()).unwrap();
        let verifier = issuer.verifier(clock_at(now()));
        let token = issuer.mint("alice", "player", DEFAULT_TOKEN_TTL).unwrap();
        assert_eq!(verifier.verify(&token).await, Ok(Identity { player_id: "alice".into(), role: Role::Player }));
        let token = issuer.mint("dana.designer", "observer", DEFAULT_TOKEN_TTL).unwrap();
        assert_eq!(
            verifier.verify(&token).await,
            Ok(Identity { player_id: "dana.designer".into(), role: Role::Observer })
        );
    }

    #[tokio::test]
    async fn tokens_carry_cognito_shaped_claims() {
        let dir = TempDir::new();
        let issuer = DevIssuer::load_or_create(&dir.state()).unwrap();
        let token = issuer.mint_at("alice", "observer", Duration::from_secs(600), 1_700_000_000).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], issuer.kid());
        for (claim, value) in [
            ("sub", json!("alice")),
            ("cognito:username", json!("alice")),
            ("iss", json!(DEV_ISSUER)),
            ("aud", json!(DEV_CLIENT_ID)),
            ("token_use", json!("id")),
            ("iat", json!(1_700_000_000)),
            ("nbf", json!(1_700_000_000)),
            ("auth_time", json!(1_700_000_000)),
            ("exp", json!(1_700_000_600)),
            ("role", json!("observer")),
            ("cognito:groups", json!(["observer"])),
        ] {
            assert_eq!(claims[claim], value, "{claim}");
        }
        assert!(claims["jti"].is_string());
    }

    #[tokio::test]
    async fn expired_and_future_tokens_are_refused() {
        let dir = TempDir::new();
        let issuer = DevIssuer::load_or_create(&dir.state()).unwrap();
        let now = now();
        let verifier = issuer.verifier(clock_at(now));
        let expired = issuer.mint_at("alice", "player", Duration::from_secs(60), now - 3600).unwrap();
        assert_eq!(verifier.verify(&expired).await, Err(AuthError::Expired));
        let future = issuer.mint_at("alice", "player", Duration::from_secs(60), now + 3600).unwrap();
        assert_eq!(verifier.verify(&future).await, Err(AuthError::NotYetValid));
    }

    #[tokio::test]
    async fn another_state_directory_is_another_issuer() {
        let (a, b) = (TempDir::new(), TempDir::new());
        let issuer_a = DevIssuer::load_or_create(&a.state()).unwrap();
        let issuer_b = DevIssuer::load_or_create(&b.state()).unwrap();
        assert_ne!(issuer_a.kid(), issuer_b.kid());
        let token = issuer_b.mint("alice", "player", DEFAULT_TOKEN_TTL).unwrap();
        assert_eq!(issuer_a.verifier(clock_at(now())).verify(&token).await, Err(AuthError::UnknownKey));
    }

    #[test]
    fn the_key_is_created_private_and_reused() {
        let dir = TempDir::new();
        let first = DevIssuer::load_or_create(&dir.state()).unwrap();
        let path = dir.state().join(SIGNING_KEY_FILE);
        assert_eq!(first.key_path(), path);
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(dir.state()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        let again = DevIssuer::load_or_create(&dir.state()).unwrap();
        assert_eq!(first.kid(), again.kid());
        assert_eq!(first.jwks(), again.jwks());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pem, "the key file is left alone");
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.state()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_readable_by_others_is_made_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = TempDir::new();
        DevIssuer::load_or_create(&dir.state()).unwrap();
        let path = dir.state().join(SIGNING_KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        DevIssuer::load_or_create(&dir.state()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn processes_racing_to_create_the_key_share_one() {
        let dir = TempDir::new();
        let state = dir.state();
        let kids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..4).map(|_| s.spawn(|| DevIssuer::load_or_create(&state).unwrap().kid().to_owned())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(kids.windows(2).all(|w| w[0] == w[1]), "{kids:?}");
        assert_eq!(DevIssuer::load_or_create(&state).unwrap().kid(), kids[0]);
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let dir = TempDir::new();
        std::fs::create_dir_all(dir.state()).unwrap();
        let path = dir.state().join(SIGNING_KEY_FILE);
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        assert!(matches!(DevIssuer::load_or_create(&dir.state()), Err(IssuerError::BadKey { .. })));
        std::fs::write(&path, "hello").unwrap();
        assert!(matches!(DevIssuer::load_or_create(&dir.state()), Err(IssuerError::BadKey { .. })));
    }

    #[test]
    fn the_jwks_publishes_only_the_public_key() {
        let dir = TempDir::new();
        let issuer = DevIssuer::load_or_create(&dir.state()).unwrap();
        let jwks = issuer.jwks();
        let key = jwks["keys"][0].as_object().unwrap();
        let mut fields: Vec<&str> = key.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["alg", "e", "kid", "kty", "n", "use"]);
        assert_eq!(key["kid"], issuer.kid());
        assert_eq!(key["e"], "AQAB");
        assert!(!format!("{issuer:?}").contains("PRIVATE"));
    }

    #[test]
    fn bad_mint_requests_are_refused() {
        let dir = TempDir::new();
        let issuer = DevIssuer::load_or_create(&dir.state()).unwrap();
        for player in ["", "a b", "alice/bob", "ünicode", &"x".repeat(129)] {
            assert!(matches!(issuer.mint(player, "player", DEFAULT_TOKEN_TTL), Err(IssuerError::InvalidPlayerId(_))));
        }
        for role in ["admin", "Observer", ""] {
            assert!(matches!(issuer.mint("alice", role, DEFAULT_TOKEN_TTL), Err(IssuerError::InvalidRole(_))));
        }
        for ttl in [Duration::ZERO, MAX_TOKEN_TTL + Duration::from_secs(1)] {
            assert!(matches!(issuer.mint("alice", "player", ttl), Err(IssuerError::InvalidTtl(_))));
        }
        assert!(issuer.mint("alice", "player", MAX_TOKEN_TTL).is_ok());
    }
}
