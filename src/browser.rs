//! What browsers may do: which origins get CORS answers (requests from others are refused
//! outright), which `Host` names mnemo answers (a DNS rebinding page reaches a mnemo on 127.0.0.1
//! only through a foreign `Host`), and that JSON bodies say `application/json` (a `text/plain`
//! POST is a "simple" request that skips the preflight; the JSON extractor's config refuses it
//! with 415).

use actix_cors::Cors;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::auth::is_loopback;
use crate::config::Config;
use crate::error::{ApiError, pass_unless};

/// The origins and hosts this process accepts, from the configuration.
#[derive(Clone)]
pub struct BrowserPolicy {
    /// `None`: any origin (`*`, only with auth on); else exact origins, plus loopback ones
    /// when `loopback_origins`.
    origins: Option<Vec<String>>,
    loopback_origins: bool,
    /// `None`: any host (auth on and no list given).
    hosts: Option<Vec<String>>,
}

fn list(v: &Option<String>) -> Option<Vec<String>> {
    v.as_ref().map(|s| {
        s.split(',')
            .map(|x| x.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|x| !x.is_empty())
            .collect()
    })
}

impl BrowserPolicy {
    pub fn from_config(config: &Config, auth_on: bool) -> Result<BrowserPolicy, String> {
        let origins = list(&config.cors_origins);
        let any_origin = origins.as_ref().is_some_and(|o| o.iter().any(|x| x == "*"));
        if any_origin && !auth_on {
            return Err(
                "MNEMO_CORS_ORIGINS=* needs authentication on (MNEMO_AUTH): with \
                        MNEMO_AUTH=none any web page a visitor opens could use mnemo"
                    .into(),
            );
        }
        let hosts = list(&config.allowed_hosts);
        Ok(BrowserPolicy {
            origins: if any_origin {
                None
            } else {
                Some(origins.clone().unwrap_or_default())
            },
            loopback_origins: origins.is_none(),
            // without auth only loopback names (and the listed ones); with auth any, unless listed
            hosts: match hosts {
                Some(h) => Some(h),
                None if auth_on => None,
                None => Some(Vec::new()),
            },
        })
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        match &self.origins {
            None => true,
            Some(list) => {
                list.contains(&origin) || (self.loopback_origins && loopback_origin(&origin))
            }
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some(list) = &self.hosts else {
            return true;
        };
        let host = host.to_ascii_lowercase();
        let name = strip_port(&host);
        is_loopback(name) || list.iter().any(|h| h == &host || h == name)
    }

    /// CORS for browser clients (agent-chat-ui talks to mnemo directly): the allowed origins;
    /// the request headers the LangGraph SDKs send; and the response headers they read,
    /// `Content-Location` above all (the JS SDK takes a run's id from it).
    pub fn cors(&self) -> Cors {
        let policy = self.clone();
        Cors::default()
            .allowed_origin_fn(move |origin, _| {
                origin.to_str().is_ok_and(|o| policy.origin_allowed(o))
            })
            .allow_any_method()
            .allowed_headers([
                "content-type",
                "accept",
                "authorization",
                "cache-control",
                "x-api-key",
                "x-auth-scheme",
                "last-event-id",
            ])
            .expose_headers([
                "content-location",
                "location",
                "x-pagination-total",
                "x-pagination-next",
                "retry-after",
            ])
            .max_age(3600)
    }
}

/// `http://localhost:*`, `http://127.0.0.1:*`, `http://[::1]:*` (and https).
fn loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    is_loopback(strip_port(rest))
}

/// `name:port` → `name`; `[::1]:port` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Middleware: a request for a `Host` mnemo does not serve is 421; a request a browser sent from
/// an origin CORS does not allow is 403 (the browser would hide the answer, but a "simple"
/// request without a preflight would still have acted).
pub async fn check_browser(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = req
        .app_data::<web::Data<BrowserPolicy>>()
        .and_then(|policy| {
            // the Host header itself, never X-Forwarded-Host, which a page's script may set
            let host = req
                .headers()
                .get(actix_web::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .or_else(|| req.uri().authority().map(|a| a.to_string()))
                .unwrap_or_default();
            if !policy.host_allowed(&host) {
                return Some(ApiError::MisdirectedRequest(
                    "This server does not answer for that Host".into(),
                ));
            }
            let origin = req.headers().get(actix_web::http::header::ORIGIN)?;
            (!origin.to_str().is_ok_and(|o| policy.origin_allowed(o)))
                .then(|| ApiError::Forbidden("This origin may not call this server".into()))
        });
    pass_unless(req, next, refused).await
}
