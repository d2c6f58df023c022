//! Who is calling: every request is resolved to a [`Principal`] before a handler runs.
//!
//! `MNEMO_AUTH` picks the credentials mnemo accepts: `none` (one implicit service principal,
//! allowed only on loopback unless asked for explicitly), `api_key` (keys made with
//! `mnemo keys create`, stored as SHA-256 hashes), `jwt` (tokens signed by the login service of
//! a chat frontend), or both. Credentials arrive as `x-api-key: <key>` or
//! `Authorization: Bearer <key or JWT>`. Handlers take a [`Principal`] argument; the ownership
//! rules (what each principal may reach) live in [`Principal`]'s methods.

pub mod admin;
pub mod jwt;
pub mod keys;
mod middleware;

pub use keys::{generate_key, key_id_of};
pub use middleware::{Authenticator, authenticate, is_open};

/// The caller a request acts as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Internal callers (REST services, Python apps using `MnemoSaver`): may act for any user
    /// by naming it. `MNEMO_AUTH=none` makes every request this, named `anonymous`.
    Service { name: String },
    /// One end user: acts as exactly this user and reaches only what it owns.
    User { user_id: String },
}

/// Why credentials were refused; the label of `mnemo_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `x-api-key` and no `Authorization: Bearer`.
    Missing,
    /// Not a key mnemo made, or a token that does not verify (signature, issuer, audience,
    /// algorithm, unknown key id, malformed).
    Invalid,
    /// A key or token past its expiry (or a token before its `nbf`).
    Expired,
    /// A key that was revoked.
    Revoked,
    /// A scheme this server does not accept (a JWT when only API keys are on, and the reverse).
    Disabled,
    /// The verifier could not run (JWKS unreachable, database down).
    Unavailable,
    /// Too many keys from one address that had to be looked up in the database.
    Throttled,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 7] = [
        AuthFailure::Missing,
        AuthFailure::Invalid,
        AuthFailure::Expired,
        AuthFailure::Revoked,
        AuthFailure::Disabled,
        AuthFailure::Unavailable,
        AuthFailure::Throttled,
    ];

    /// The metrics label and log word.
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Expired => "expired",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Disabled => "disabled",
            AuthFailure::Unavailable => "unavailable",
            AuthFailure::Throttled => "throttled",
        }
    }
}

impl Principal {
    /// The rate-limit and log name: `user:<id>` or `service:<name>`.
    pub fn label(&self) -> String {
        match self {
            Principal::Service { name } => format!("service:{name}"),
            Principal::User { user_id } => format!("user:{user_id}"),
        }
    }

    pub fn is_service(&self) -> bool {
        matches!(self, Principal::Service { .. })
    }

    /// The user this principal is bound to: `None` for a service, which may act for anyone.
    pub fn bound_user(&self) -> Option<&str> {
        match self {
            Principal::Service { .. } => None,
            Principal::User { user_id } => Some(user_id),
        }
    }

    /// The user a request acts for when it names `named` (a body's or query's `user_id`,
    /// `config.configurable.user_id`, `metadata.user_id`): a user principal may name only itself
    /// (anyone else is 403); a service acts for whoever it names, or for nobody.
    pub fn acting_user(
        &self,
        named: Option<&str>,
    ) -> Result<Option<String>, crate::error::ApiError> {
        match (self, named) {
            (Principal::Service { .. }, named) => Ok(named.map(str::to_string)),
            (Principal::User { user_id }, None) => Ok(Some(user_id.clone())),
            (Principal::User { user_id }, Some(n)) if n == user_id => Ok(Some(user_id.clone())),
            (Principal::User { .. }, Some(_)) => Err(crate::error::ApiError::Forbidden(
                "this credential may act only as its own user".into(),
            )),
        }
    }

    /// Whether a row owned by `owner` is visible: a service sees everything, a user only its own.
    pub fn owns(&self, owner: Option<&str>) -> bool {
        match self {
            Principal::Service { .. } => true,
            Principal::User { user_id } => owner == Some(user_id.as_str()),
        }
    }
}

impl actix_web::FromRequest for Principal {
    type Error = crate::error::ApiError;
    type Future = std::future::Ready<Result<Principal, crate::error::ApiError>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        use actix_web::HttpMessage;
        std::future::ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .ok_or(crate::error::ApiError::Unauthorized(AuthFailure::Missing)),
        )
    }
}

/// What `MNEMO_AUTH` and the JWT and quota settings ask for; `Ok(None)` is `none`. Refuses an
/// open API on an address other machines can reach unless `MNEMO_AUTH=none` says so.
pub fn settings_from(
    config: &crate::config::Config,
) -> Result<Option<middleware::AuthSettings>, String> {
    let mode = config.auth.as_deref().map(str::trim).unwrap_or("none");
    let (mut api_keys, mut jwt) = (false, false);
    for part in mode.split(',').map(str::trim) {
        match part {
            "none" if mode == "none" => {}
            "api_key" => api_keys = true,
            "jwt" => jwt = true,
            _ => {
                return Err(format!(
                    "MNEMO_AUTH must be none, api_key, jwt or api_key,jwt (got {mode:?})"
                ));
            }
        }
    }
    if !api_keys && !jwt {
        if !is_loopback(&config.host) {
            if config.auth.is_none() {
                return Err(format!(
                    "mnemo would serve an open API on {}, which other machines can reach. \
                     Turn authentication on: MNEMO_AUTH=api_key (make keys with `mnemo keys create \
                     --user <id>`) or MNEMO_AUTH=jwt with MNEMO_JWT_SECRET or MNEMO_JWT_JWKS; \
                     or listen on 127.0.0.1; or set MNEMO_AUTH=none to serve it open on purpose",
                    config.host
                ));
            }
            log::warn!(
                "MNEMO_AUTH=none on {}: anyone who can reach this address can read and change \
                 every user's data",
                config.host
            );
        }
        return Ok(None);
    }
    let jwt = if jwt {
        Some(jwt::JwtVerifier::new(jwt::JwtSettings {
            secret: config.jwt_secret.clone(),
            jwks: config.jwt_jwks.clone(),
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            user_claim: config.jwt_user_claim.clone(),
        })?)
    } else {
        None
    };
    let rate = std::num::NonZeroU32::new(config.rate_limit_per_s).map(|per_s| {
        let burst = std::num::NonZeroU32::new(config.rate_limit_burst).unwrap_or(per_s);
        (per_s, burst)
    });
    Ok(Some(middleware::AuthSettings {
        api_keys,
        jwt,
        metrics_public: config.metrics_public,
        rate,
    }))
}

/// Whether a listening address is reachable only from this machine.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
