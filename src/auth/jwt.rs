//! JWT bearer tokens from a chat frontend whose users log in elsewhere: this module owns checking
//! them and naming the [`Principal`] they stand for.
//!
//! Keys come from one of two places, never both:
//! - `MNEMO_JWT_SECRET`: an HS256 shared secret;
//! - `MNEMO_JWT_JWKS`: the identity provider's JSON Web Key Set, as an `http(s)://` URL (fetched
//!   with reqwest, cached, refetched on an unknown `kid` at most once per
//!   [`DEFAULT_REFETCH_COOLDOWN`] and in the background once older than [`DEFAULT_MAX_AGE`]) or as
//!   a file (`/path/jwks.json` or `file:///path/jwks.json`, read once at start).
//!
//! A JWKS URL is fetched on the first token (3 s to connect, 5 s between reads, 10 s in all), one
//! fetch at a time however many tokens wait on it. When the provider cannot be reached the cached
//! keys stay in use (a warning is logged); with none cached yet tokens are `Unavailable`, and a
//! new attempt is made at most every 5 s.
//!
//! Every token must carry `exp`; `nbf` is checked when present; both with [`LEEWAY_SECS`] of clock
//! skew. `MNEMO_JWT_ISSUER` and `MNEMO_JWT_AUDIENCE`, when set, make `iss` and `aud` required.
//! With a JWKS the algorithm comes from the key (its `alg`, or its type and curve when it has none)
//! and the token's `alg` must be one of those: `none`, HS* and symmetric (`oct`) keys are refused
//! there, so a public key can never be used as an HMAC secret. Tokens and secrets are never logged.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{AuthFailure, Principal};

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The scope (in a token's `scope` claim) that makes its bearer a [`Principal::Service`].
pub const SERVICE_SCOPE: &str = "mnemo:service";

/// The least time between two JWKS fetches caused by tokens naming a `kid` the cached set lacks
/// (counted from the last such fetch: a rotation right after start-up is still picked up at once).
pub const DEFAULT_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);

/// Cached JWKS keys older than this are refetched in the background (the old ones stay in use
/// until the new set arrives, and after a failed fetch).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

/// While no JWKS was ever fetched, the least time between two attempts (requests in between are
/// answered `Unavailable` at once). Never more than the refetch cooldown.
const RETRY_WITHOUT_KEYS: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A JWKS larger than this is refused (real ones are a few KB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// A bearer token longer than this is refused before it is parsed.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Where JWT keys come from and what a token must say, as read from `MNEMO_JWT_*`.
///
/// Blank strings count as unset.
#[derive(Clone)]
pub struct JwtSettings {
    /// `MNEMO_JWT_SECRET`: the HS256 shared secret.
    pub secret: Option<String>,
    /// `MNEMO_JWT_JWKS`: an `http(s)://` URL, or a path (optionally `file://`) to a JWKS JSON file.
    pub jwks: Option<String>,
    /// `MNEMO_JWT_ISSUER`: when set, `iss` must be present and equal it.
    pub issuer: Option<String>,
    /// `MNEMO_JWT_AUDIENCE`: when set, `aud` (a string or an array) must be present and hold it;
    /// when unset, `aud` is not checked.
    pub audience: Option<String>,
    /// `MNEMO_JWT_USER_CLAIM` (default `sub`): the claim naming the user.
    pub user_claim: String,
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            secret: None,
            jwks: None,
            issuer: None,
            audience: None,
            user_claim: "sub".to_string(),
        }
    }
}

impl fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSettings")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("user_claim", &self.user_claim)
            .finish()
    }
}

/// Checks bearer JWTs and names their [`Principal`]. Cheap to share: keep one in an `Arc` for all
/// workers.
pub struct JwtVerifier {
    keys: KeySource,
    /// `exp` required, `nbf`, `iss`, `aud` and the leeway; the algorithm is set per token.
    validation: Validation,
    issuer: Option<String>,
    user_claim: String,
}

enum KeySource {
    Secret(DecodingKey),
    File(KeySet),
    Remote(Arc<RemoteJwks>),
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match &self.keys {
            KeySource::Secret(_) => "HS256 secret".to_string(),
            KeySource::File(set) => format!("JWKS file ({} keys)", set.keys.len()),
            KeySource::Remote(remote) => format!("JWKS at {}", remote.url_for_logs),
        };
        f.debug_struct("JwtVerifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("user_claim", &self.user_claim)
            .finish()
    }
}

impl JwtVerifier {
    /// A verifier for `settings`. Errs when neither or both of `secret` and `jwks` are set, when
    /// the JWKS URL is malformed, or when a JWKS file cannot be read, parsed, or holds no key that
    /// can verify JWTs. A JWKS URL is not fetched here but on the first token.
    pub fn new(settings: JwtSettings) -> Result<JwtVerifier, String> {
        install_jwt_crypto()?;
        let secret = non_blank(settings.secret);
        let jwks = non_blank(settings.jwks);
        let issuer = non_blank(settings.issuer);
        let audience = non_blank(settings.audience);
        let user_claim = match settings.user_claim.trim() {
            "" => "sub".to_string(),
            claim => claim.to_string(),
        };
        let keys = match (secret, jwks) {
            (None, None) => {
                return Err(
                    "JWT verification needs MNEMO_JWT_SECRET (HS256) or MNEMO_JWT_JWKS".to_string(),
                );
            }
            (Some(_), Some(_)) => {
                return Err(
                    "MNEMO_JWT_SECRET and MNEMO_JWT_JWKS are both set: set only one".to_string(),
                );
            }
            (Some(secret), None) => {
                if secret.len() < 32 {
                    log::warn!(
                        "MNEMO_JWT_SECRET is shorter than 32 bytes: an HS256 secret that short can be guessed"
                    );
                }
                KeySource::Secret(
                    DecodingKey::from_secret(secret.as_bytes())
                        .map_err(|e| format!("MNEMO_JWT_SECRET cannot be used: {e}"))?,
                )
            }
            (None, Some(jwks)) => {
                let lower = jwks.to_ascii_lowercase();
                if lower.starts_with("http://") || lower.starts_with("https://") {
                    KeySource::Remote(Arc::new(RemoteJwks::new(&jwks)?))
                } else {
                    let path = jwks.strip_prefix("file://").unwrap_or(&jwks);
                    let bytes = std::fs::read(path)
                        .map_err(|e| format!("MNEMO_JWT_JWKS: cannot read {path}: {e}"))?;
                    let set = KeySet::parse(&bytes)
                        .map_err(|e| format!("MNEMO_JWT_JWKS: {path}: {e}"))?;
                    log::info!("JWT keys: {} from {path}", set.keys.len());
                    KeySource::File(set)
                }
            }
        };

        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required: HashSet<String> = HashSet::from(["exp".to_string()]);
        if let Some(issuer) = &issuer {
            validation.set_issuer(&[issuer]);
            required.insert("iss".to_string());
        }
        match &audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.validate_aud = true;
                required.insert("aud".to_string());
            }
            None => validation.validate_aud = false,
        }
        validation.required_spec_claims = required;

        Ok(JwtVerifier {
            keys,
            validation,
            issuer,
            user_claim,
        })
    }

    /// Changes, for a JWKS URL, the least time between refetches caused by unknown `kid`s
    /// (default [`DEFAULT_REFETCH_COOLDOWN`]) and the age past which the cached set is refreshed
    /// in the background (default [`DEFAULT_MAX_AGE`]). No effect on a secret or a JWKS file.
    pub fn with_jwks_timing(mut self, refetch_cooldown: Duration, max_age: Duration) -> Self {
        if let KeySource::Remote(remote) = &mut self.keys
            && let Some(remote) = Arc::get_mut(remote)
        {
            remote.cooldown = refetch_cooldown;
            remote.max_age = max_age;
        }
        self
    }

    /// Checks `token` (signature, algorithm, `exp`, `nbf`, `iss`, `aud`) and names its principal:
    /// [`Principal::Service`] (named by `sub`, or `jwt`) when its `scope` (a space-separated string
    /// or an array of strings) holds [`SERVICE_SCOPE`], else [`Principal::User`] named by the user
    /// claim (a non-empty string, or an integer as its decimal text).
    ///
    /// [`AuthFailure::Expired`] when `exp` is past or `nbf` ahead (beyond [`LEEWAY_SECS`]),
    /// [`AuthFailure::Unavailable`] when the JWKS URL cannot be fetched and no keys are cached,
    /// [`AuthFailure::Invalid`] for anything else wrong with the token.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthFailure> {
        if token.len() > MAX_TOKEN_BYTES || !looks_like_jwt(token) {
            return Err(AuthFailure::Invalid);
        }
        // `none` and unknown algorithms fail here: they are no `Algorithm`
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Invalid)?;
        let kid = header.kid.as_deref();
        let claims = match &self.keys {
            KeySource::Secret(key) => {
                if header.alg != Algorithm::HS256 {
                    return Err(AuthFailure::Invalid);
                }
                self.decode(token, key, Algorithm::HS256)?
            }
            KeySource::File(set) => {
                let key = set
                    .select(kid, header.alg)
                    .map_err(|_| AuthFailure::Invalid)?;
                self.decode(token, &key.key, header.alg)?
            }
            KeySource::Remote(remote) => {
                if header.alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
                    return Err(AuthFailure::Invalid);
                }
                let set = remote.keys_for(kid, header.alg).await?;
                let key = set
                    .select(kid, header.alg)
                    .map_err(|_| AuthFailure::Invalid)?;
                self.decode(token, &key.key, header.alg)?
            }
        };
        self.principal(&claims)
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<Map<String, Value>, AuthFailure> {
        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => match e.kind() {
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => {
                    Err(AuthFailure::Expired)
                }
                _ => Err(AuthFailure::Invalid),
            },
        }
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthFailure> {
        // jsonwebtoken also takes an `iss` array holding the issuer; a single equal string is asked
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(AuthFailure::Invalid);
        }
        if has_scope(claims.get("scope"), SERVICE_SCOPE) {
            let name = match claims.get("sub") {
                Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
                _ => "jwt".to_string(),
            };
            return Ok(Principal::Service { name });
        }
        let user_id = match claims.get(&self.user_claim) {
            Some(Value::String(user)) if !user.is_empty() => user.clone(),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            _ => return Err(AuthFailure::Invalid),
        };
        Ok(Principal::User { user_id })
    }
}

/// Whether a bearer credential looks like a JWT (three base64url segments separated by dots, the
/// first two non-empty) rather than an API key.
pub fn looks_like_jwt(token: &str) -> bool {
    let is_b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => {
            !header.is_empty()
                && !payload.is_empty()
                && is_b64url(header)
                && is_b64url(payload)
                && is_b64url(signature)
        }
        _ => false,
    }
}

/// The process-wide jsonwebtoken backend: RustCrypto. Picked from the crate feature when it is
/// the only one; installed here otherwise, so decoding never meets a missing provider.
fn install_jwt_crypto() -> Result<(), String> {
    use jsonwebtoken::crypto::{CryptoProvider, rust_crypto};
    if CryptoProvider::try_get_default().is_none() {
        let _ = rust_crypto::DEFAULT_PROVIDER.install_default();
    }
    match CryptoProvider::try_get_default() {
        Some(_) => Ok(()),
        None => Err("no crypto provider for JWT verification".to_string()),
    }
}

fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn has_scope(scope: Option<&Value>, wanted: &str) -> bool {
    match scope {
        Some(Value::String(scopes)) => scopes.split_whitespace().any(|s| s == wanted),
        Some(Value::Array(scopes)) => scopes.iter().any(|s| s.as_str() == Some(wanted)),
        _ => false,
    }
}

/// One JWKS key that can verify signatures, with the algorithms it allows.
struct VerifyKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// Why no key fits a token.
enum Miss {
    /// The set has no key by the token's `kid` (or none at all): a newer set may.
    UnknownKid,
    /// A key by that `kid` exists but not for the token's algorithm, or the token has no `kid`
    /// and the set has several keys.
    Mismatch,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<VerifyKey>,
}

impl KeySet {
    /// A JWKS document's keys that can verify JWTs; the others (encryption keys, symmetric keys,
    /// unsupported types and curves) are skipped. Errs when none is left.
    fn parse(bytes: &[u8]) -> Result<KeySet, String> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS (JSON): {e}"))?;
        let Some(raw_keys) = doc.get("keys").and_then(Value::as_array) else {
            return Err("not a JWKS: no \"keys\" array".to_string());
        };
        let mut keys = Vec::with_capacity(raw_keys.len());
        for raw in raw_keys {
            match VerifyKey::from_jwk(raw) {
                Ok(key) => keys.push(key),
                Err(why) => {
                    let kid = raw.get("kid").and_then(Value::as_str).unwrap_or("(none)");
                    log::debug!("JWKS key kid={kid} skipped: {why}");
                }
            }
        }
        if keys.is_empty() {
            return Err(format!(
                "none of its {} keys can verify JWTs (RS*, PS*, ES256, ES384 or EdDSA signing keys)",
                raw_keys.len()
            ));
        }
        Ok(KeySet { keys })
    }

    /// The key for a token with this `kid` and `alg`: by `kid`, or the only key when the token
    /// names none; its algorithms must include `alg`.
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerifyKey, Miss> {
        let mut candidates: Vec<&VerifyKey> = match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => match self.keys.as_slice() {
                [] => Vec::new(),
                [only] => vec![only],
                _ => return Err(Miss::Mismatch),
            },
        };
        if candidates.is_empty() {
            return Err(Miss::UnknownKid);
        }
        candidates.retain(|k| k.algorithms.contains(&alg));
        candidates.first().copied().ok_or(Miss::Mismatch)
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl VerifyKey {
    fn from_jwk(raw: &Value) -> Result<VerifyKey, String> {
        let jwk: Jwk =
            serde_json::from_value(raw.clone()).map_err(|e| format!("not a JWK: {e}"))?;
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return Err("not a signature key (use)".to_string());
        }
        if let Some(ops) = &jwk.common.key_operations
            && !ops.contains(&KeyOperations::Verify)
        {
            return Err("not a verification key (key_ops)".to_string());
        }
        let family: &[Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let n = b64_len(&rsa.n, "n")?;
                let e = b64_len(&rsa.e, "e")?;
                // 1024 to 8192 bits; the exponent a few bytes
                if !(128..=1024).contains(&n) || !(1..=8).contains(&e) {
                    return Err("RSA key of an unsupported size".to_string());
                }
                &RSA_ALGORITHMS
            }
            AlgorithmParameters::EllipticCurve(ec) => {
                let (algorithms, size): (&[Algorithm], usize) = match ec.curve {
                    EllipticCurve::P256 => (&[Algorithm::ES256], 32),
                    EllipticCurve::P384 => (&[Algorithm::ES384], 48),
                    _ => return Err("unsupported EC curve".to_string()),
                };
                if b64_len(&ec.x, "x")? != size || b64_len(&ec.y, "y")? != size {
                    return Err("EC coordinates of the wrong size".to_string());
                }
                algorithms
            }
            AlgorithmParameters::OctetKeyPair(okp) => {
                if okp.curve != EllipticCurve::Ed25519 {
                    return Err("unsupported OKP curve".to_string());
                }
                if b64_len(&okp.x, "x")? != 32 {
                    return Err("Ed25519 key of the wrong size".to_string());
                }
                &[Algorithm::EdDSA]
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err("symmetric (oct) keys are refused in a JWKS".to_string());
            }
            _ => return Err("unsupported key type".to_string()),
        };
        let algorithms = match jwk.common.key_algorithm {
            None => family.to_vec(),
            Some(declared) => {
                let alg =
                    Algorithm::try_from(declared).map_err(|_| "unsupported alg".to_string())?;
                if !family.contains(&alg) {
                    return Err("its alg does not fit its key type".to_string());
                }
                vec![alg]
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
        Ok(VerifyKey {
            kid: jwk.common.key_id,
            algorithms,
            key,
        })
    }
}

/// The decoded length of a base64url JWK member.
fn b64_len(value: &str, member: &str) -> Result<usize, String> {
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map(|bytes| bytes.len())
        .map_err(|_| format!("{member} is not base64url"))
}

/// A JWKS behind a URL: the cached set, and when and why it was fetched.
struct RemoteJwks {
    url: reqwest::Url,
    /// The URL without credentials or query, for logs.
    url_for_logs: String,
    http: reqwest::Client,
    cooldown: Duration,
    max_age: Duration,
    cache: RwLock<Cache>,
    /// Held for the whole of a fetch: one fetch at a time, and callers waiting on it see its
    /// result instead of fetching again.
    in_flight: tokio::sync::Mutex<()>,
    /// A background refresh is spawned or running.
    refreshing: AtomicBool,
}

#[derive(Default)]
struct Cache {
    keys: Arc<KeySet>,
    /// The last successful fetch.
    fetched_at: Option<Instant>,
    /// The end of the last fetch, successful or not.
    attempted_at: Option<Instant>,
    /// The last fetch caused by an unknown `kid`: the cooldown counts from it.
    kid_refetch_at: Option<Instant>,
}

impl RemoteJwks {
    fn new(url: &str) -> Result<RemoteJwks, String> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| format!("MNEMO_JWT_JWKS is not a valid URL: {e}"))?;
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        shown.set_fragment(None);
        let url_for_logs = shown.to_string();
        if url.scheme() == "http"
            && !matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
        {
            log::warn!(
                "MNEMO_JWT_JWKS {url_for_logs} is plain http: its keys can be tampered with in transit"
            );
        }
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("while building the JWKS HTTP client: {e}"))?;
        Ok(RemoteJwks {
            url,
            url_for_logs,
            http,
            cooldown: DEFAULT_REFETCH_COOLDOWN,
            max_age: DEFAULT_MAX_AGE,
            cache: RwLock::new(Cache::default()),
            in_flight: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
        })
    }

    fn retry_without_keys(&self) -> Duration {
        self.cooldown.min(RETRY_WITHOUT_KEYS)
    }

    /// The cached set, and whether it is due for a background refresh.
    fn snapshot(&self) -> (Arc<KeySet>, bool) {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let stale = cache
            .fetched_at
            .is_some_and(|t| now.duration_since(t) >= self.max_age);
        let retry_due = cache
            .attempted_at
            .is_none_or(|t| now.duration_since(t) >= self.retry_without_keys().min(self.max_age));
        (Arc::clone(&cache.keys), stale && retry_due)
    }

    /// A key set holding a key for `kid` and `alg`, fetching a newer one when the cache lacks
    /// that `kid` (at most once per cooldown) or holds nothing yet.
    async fn keys_for(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<KeySet>, AuthFailure> {
        let (keys, refresh_due) = self.snapshot();
        match keys.select(kid, alg) {
            Ok(_) => {
                if refresh_due {
                    self.refresh_in_background();
                }
                return Ok(keys);
            }
            Err(Miss::Mismatch) => return Err(AuthFailure::Invalid),
            Err(Miss::UnknownKid) => {}
        }

        let _flight = self.in_flight.lock().await;
        // a fetch that ended while this one waited may have brought the key
        let (keys, _) = self.snapshot();
        match keys.select(kid, alg) {
            Ok(_) => return Ok(keys),
            Err(Miss::Mismatch) => return Err(AuthFailure::Invalid),
            Err(Miss::UnknownKid) => {}
        }
        let now = Instant::now();
        {
            let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            if cache.keys.is_empty() {
                let due = cache
                    .attempted_at
                    .is_none_or(|t| now.duration_since(t) >= self.retry_without_keys());
                if !due {
                    return Err(AuthFailure::Unavailable);
                }
            } else {
                let due = cache
                    .kid_refetch_at
                    .is_none_or(|t| now.duration_since(t) >= self.cooldown);
                if !due {
                    log::debug!("JWT names an unknown kid; the JWKS refetch is cooling down");
                    return Err(AuthFailure::Invalid);
                }
                cache.kid_refetch_at = Some(now);
            }
        }
        match self.fetch_locked().await {
            Ok(fresh) => match fresh.select(kid, alg) {
                Ok(_) => Ok(fresh),
                Err(_) => Err(AuthFailure::Invalid),
            },
            // the provider is away, but keys are cached: this kid is simply not among them
            Err(true) => Err(AuthFailure::Invalid),
            Err(false) => Err(AuthFailure::Unavailable),
        }
    }

    /// Refreshes the cached set on a task of its own, one at a time; verification goes on with
    /// the cached keys meanwhile.
    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            let _done = ClearOnDrop(&this.refreshing);
            let _flight = this.in_flight.lock().await;
            if this.snapshot().1 {
                let _ = this.fetch_locked().await;
            }
        });
    }

    /// Fetches the set and caches it; the caller holds `in_flight`. On failure the cached keys
    /// stay, and the error tells whether there were any.
    async fn fetch_locked(&self) -> Result<Arc<KeySet>, bool> {
        let result = self.fetch().await;
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        cache.attempted_at = Some(now);
        match result {
            Ok(set) => {
                log::info!("JWT keys: {} from {}", set.keys.len(), self.url_for_logs);
                cache.keys = Arc::new(set);
                cache.fetched_at = Some(now);
                Ok(Arc::clone(&cache.keys))
            }
            Err(e) => {
                let cached = cache.keys.keys.len();
                if cached > 0 {
                    log::warn!(
                        "JWKS {} could not be fetched ({e}); its {cached} cached key(s) stay in use",
                        self.url_for_logs
                    );
                } else {
                    log::warn!(
                        "JWKS {} could not be fetched ({e}); no keys yet: JWTs are refused as unavailable",
                        self.url_for_logs
                    );
                }
                Err(cached > 0)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        KeySet::parse(&body)
    }
}

/// Clears the background-refresh flag when its task ends, however it ends.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
