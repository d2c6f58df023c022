//! The authentication middleware and the state it keeps: verified keys (cached by their public
//! id, dropped when any key is revoked), the JWT verifier, the per-principal request rate, and
//! refusal counters for `/metrics`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::watch;

use super::jwt::{JwtVerifier, looks_like_jwt};
use super::keys::{PREFIX, key_id_of, matches};
use super::{AuthFailure, Principal};
use crate::error::{ApiError, pass_unless};
use crate::persistence::Persistence;

/// A verified key is read from the database again after this long (which also records its use).
const KEY_CACHE_TTL: Duration = Duration::from_secs(60);
/// How often each process asks the database whether a key was revoked.
pub const REVOCATION_POLL: Duration = Duration::from_millis(250);

/// Keys one client address may have looked up in the database (cache misses) per second, and
/// the burst above it: made-up keys must not take the pool from everybody else.
const LOOKUPS_PER_S: u32 = 20;
const LOOKUP_BURST: u32 = 100;

/// Paths that answer without credentials: probes and the server's description (with the API
/// reference page's files, under `/docs/`).
const OPEN_PATHS: [&str; 6] = [
    "/ok",
    "/health",
    "/ready",
    "/info",
    "/openapi.json",
    "/docs",
];

/// Whether `path` answers without credentials (a route template such as `/docs/{file}` too).
pub fn is_open(path: &str) -> bool {
    OPEN_PATHS.contains(&path) || path.starts_with("/docs/")
}

/// What `MNEMO_AUTH` turned on.
pub struct AuthSettings {
    pub api_keys: bool,
    pub jwt: Option<JwtVerifier>,
    pub metrics_public: bool,
    /// Requests per second per principal, and the burst above it; `None`: unlimited.
    pub rate: Option<(NonZeroU32, NonZeroU32)>,
}

struct CachedKey {
    hash: String,
    principal: Principal,
    expires_at: Option<DateTime<Utc>>,
    read_at: Instant,
}

/// Shared by every HTTP worker (one per process).
pub struct Authenticator {
    /// `None`: `MNEMO_AUTH=none`, every request is the implicit service principal.
    settings: Option<AuthSettings>,
    db: Persistence,
    keys: RwLock<HashMap<String, CachedKey>>,
    rate: Option<DefaultKeyedRateLimiter<String>>,
    lookups: DefaultKeyedRateLimiter<IpAddr>,
    failures: [AtomicU64; AuthFailure::ALL.len()],
}

impl Authenticator {
    pub fn new(settings: Option<AuthSettings>, db: Persistence) -> Arc<Authenticator> {
        let rate = settings
            .as_ref()
            .and_then(|s| s.rate)
            .map(|(per_s, burst)| RateLimiter::keyed(Quota::per_second(per_s).allow_burst(burst)));
        Arc::new(Authenticator {
            settings,
            db,
            keys: RwLock::new(HashMap::new()),
            rate,
            lookups: RateLimiter::keyed(
                Quota::per_second(NonZeroU32::new(LOOKUPS_PER_S).unwrap_or(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::new(LOOKUP_BURST).unwrap_or(NonZeroU32::MIN)),
            ),
            failures: Default::default(),
        })
    }

    /// Whether `/metrics` answers anyone (`MNEMO_METRICS_PUBLIC`, or no auth at all).
    pub fn metrics_public(&self) -> bool {
        self.settings.as_ref().is_none_or(|s| s.metrics_public)
    }

    /// Refusals so far, by reason (for `/metrics`).
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        AuthFailure::ALL
            .iter()
            .zip(&self.failures)
            .map(|(f, n)| (f.reason(), n.load(Ordering::Relaxed)))
    }

    fn refuse(&self, failure: AuthFailure) -> ApiError {
        self.failures[failure as usize].fetch_add(1, Ordering::Relaxed);
        match failure {
            AuthFailure::Unavailable => {
                ApiError::Unavailable("credentials cannot be checked now".into())
            }
            AuthFailure::Throttled => ApiError::TooManyRequests {
                detail: "Too many unknown credentials from this address".into(),
                retry_after_s: 1,
            },
            f => ApiError::Unauthorized(f),
        }
    }

    /// The principal a request acts as; `Ok(None)` on the open paths.
    async fn principal(&self, req: &ServiceRequest) -> Result<Option<Principal>, ApiError> {
        let path = req.path();
        let Some(settings) = &self.settings else {
            return Ok(Some(Principal::Service {
                name: "anonymous".into(),
            }));
        };
        let open = is_open(path) || (settings.metrics_public && path == "/metrics");
        let Some(credential) = credential(req) else {
            return if open {
                Ok(None)
            } else {
                Err(self.refuse(AuthFailure::Missing))
            };
        };
        let verified = if credential.starts_with(PREFIX) {
            if settings.api_keys {
                self.verify_key(&credential, req.peer_addr().map(|a| a.ip()))
                    .await
            } else {
                Err(AuthFailure::Disabled)
            }
        } else if looks_like_jwt(&credential) {
            match &settings.jwt {
                Some(jwt) => jwt.verify(&credential).await,
                None => Err(AuthFailure::Disabled),
            }
        } else {
            Err(AuthFailure::Invalid)
        };
        match verified {
            Ok(p) => Ok(Some(p)),
            // bad credentials on a probe are still a probe
            Err(_) if open => Ok(None),
            Err(f) => Err(self.refuse(f)),
        }
    }

    async fn verify_key(&self, key: &str, peer: Option<IpAddr>) -> Result<Principal, AuthFailure> {
        let id = key_id_of(key).ok_or(AuthFailure::Invalid)?;
        let cached = self.keys.read().ok().and_then(|keys| {
            keys.get(id)
                .filter(|c| c.read_at.elapsed() < KEY_CACHE_TTL)
                .map(|c| (c.hash.clone(), c.principal.clone(), c.expires_at))
        });
        if let Some((hash, principal, expires_at)) = cached {
            if !matches(key, &hash) {
                return Err(AuthFailure::Invalid);
            }
            if expires_at.is_some_and(|t| t <= Utc::now()) {
                return Err(AuthFailure::Expired);
            }
            return Ok(principal);
        }
        if let Some(ip) = peer
            && self.lookups.check_key(&ip).is_err()
        {
            return Err(AuthFailure::Throttled);
        }
        let row = self
            .db
            .find_api_key(id.to_string())
            .await
            .map_err(|e| {
                log::warn!("reading API key {id}: {e:?}");
                AuthFailure::Unavailable
            })?
            .ok_or(AuthFailure::Invalid)?;
        if !matches(key, &row.key_hash) {
            return Err(AuthFailure::Invalid);
        }
        if row.revoked_at.is_some() {
            return Err(AuthFailure::Revoked);
        }
        if row.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(AuthFailure::Expired);
        }
        let principal = match row.user_id {
            Some(user_id) => Principal::User { user_id },
            None => Principal::Service { name: row.name },
        };
        if row
            .last_used_at
            .is_none_or(|t| Utc::now() - t > chrono::Duration::seconds(60))
        {
            let db = self.db.clone();
            let id = row.key_id.clone();
            actix_web::rt::spawn(async move {
                if let Err(e) = db.touch_api_key(id).await {
                    log::debug!("recording an API key's use: {e:?}");
                }
            });
        }
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(
                row.key_id,
                CachedKey {
                    hash: row.key_hash,
                    principal: principal.clone(),
                    expires_at: row.expires_at,
                    read_at: Instant::now(),
                },
            );
        }
        Ok(principal)
    }

    /// A user's request beyond its rate: 429 with the seconds until the next is allowed.
    fn check_rate(&self, principal: &Principal) -> Result<(), ApiError> {
        let (Some(rate), Principal::User { .. }) = (&self.rate, principal) else {
            return Ok(());
        };
        rate.check_key(&principal.label()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            ApiError::TooManyRequests {
                detail: "Too many requests".into(),
                retry_after_s: wait.as_secs().max(1),
            }
        })
    }

    /// Until `stop`: drops the cached keys whenever the database shows a newer revocation
    /// (so `mnemo keys revoke`, from any process, takes effect on every replica within
    /// [`REVOCATION_POLL`]), and forgets idle principals' rate state.
    pub fn spawn_watcher(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        if !self.settings.as_ref().is_some_and(|s| s.api_keys) && self.rate.is_none() {
            return;
        }
        let auth = Arc::clone(self);
        actix_web::rt::spawn(async move {
            let mut seen = auth.db.last_revocation().await.ok().flatten();
            let mut tick = tokio::time::interval(REVOCATION_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticks = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                ticks += 1;
                if ticks.is_multiple_of(240) {
                    auth.lookups.retain_recent();
                    if let Some(rate) = &auth.rate {
                        rate.retain_recent();
                    }
                }
                match auth.db.last_revocation().await {
                    Ok(latest) if latest != seen => {
                        seen = latest;
                        if let Ok(mut keys) = auth.keys.write() {
                            keys.clear();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("watching key revocations: {e:?}"),
                }
            }
        });
    }
}

/// The credential a request carries: `x-api-key`, else `Authorization: Bearer`.
fn credential(req: &ServiceRequest) -> Option<String> {
    let headers = req.headers();
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v.to_string());
        }
    }
    let auth = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = auth.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_string())
}

/// Middleware: resolves the request's [`Principal`] (a 401 without one, a 429 past the rate)
/// and puts it in the request's extensions for handlers to take.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(auth) = req.app_data::<web::Data<Arc<Authenticator>>>().cloned() else {
        return pass_unless(req, next, None).await;
    };
    let refused = match auth.principal(&req).await {
        Ok(Some(principal)) => match auth.check_rate(&principal) {
            Ok(()) => {
                req.extensions_mut().insert(principal);
                None
            }
            Err(e) => Some(e),
        },
        Ok(None) => None,
        Err(e) => Some(e),
    };
    pass_unless(req, next, refused).await
}
