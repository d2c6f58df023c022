//! `GET /metrics`: Prometheus text for ops. Requests are counted by status class with their
//! total latency; the pool's figures are read from the actor (no database round trip).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, get, web};

use std::sync::Arc;

use crate::auth::{Authenticator, Principal};
use crate::error::ApiError;
use crate::persistence::Persistence;

/// Status classes 1xx…5xx.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Process-wide request counters, shared by every worker.
#[derive(Default)]
pub struct Metrics {
    requests: [AtomicU64; 5],
    micros: [AtomicU64; 5],
}

impl Metrics {
    fn record(&self, status: u16, micros: u64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Ordering::Relaxed);
        self.micros[class].fetch_add(micros, Ordering::Relaxed);
    }
}

/// Middleware: counts every request once it has been answered.
pub async fn count(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let started = Instant::now();
    let resp = next.call(req).await?;
    if let Some(m) = metrics {
        m.record(resp.status().as_u16(), started.elapsed().as_micros() as u64);
    }
    Ok(resp)
}

/// Prometheus text: requests by status class, the pool, refused credentials. Needs a service
/// credential unless MNEMO_METRICS_PUBLIC.
#[utoipa::path(
    tag = "ops",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 403, description = "A user's credential (metrics need a service's)", body = crate::routes::ErrorBody),
    ),
)]
#[get("/metrics")]
pub async fn export(
    metrics: web::Data<Metrics>,
    db: web::Data<Persistence>,
    auth: web::Data<Arc<Authenticator>>,
    principal: Option<Principal>,
) -> Result<HttpResponse, ApiError> {
    // a service's, unless MNEMO_METRICS_PUBLIC (then the middleware lets it through without one)
    if !auth.metrics_public() && !principal.as_ref().is_some_and(Principal::is_service) {
        return Err(ApiError::Forbidden(
            "metrics need a service credential".into(),
        ));
    }
    let mut out = String::new();
    out.push_str("# HELP mnemo_http_requests_total HTTP requests answered, by status class.\n");
    out.push_str("# TYPE mnemo_http_requests_total counter\n");
    for (i, class) in CLASSES.iter().enumerate() {
        out.push_str(&format!(
            "mnemo_http_requests_total{{status=\"{class}\"}} {}\n",
            metrics.requests[i].load(Ordering::Relaxed)
        ));
    }
    out.push_str(
        "# HELP mnemo_http_request_seconds_total Time spent answering requests, by status class.\n",
    );
    out.push_str("# TYPE mnemo_http_request_seconds_total counter\n");
    for (i, class) in CLASSES.iter().enumerate() {
        let seconds = metrics.micros[i].load(Ordering::Relaxed) as f64 / 1e6;
        out.push_str(&format!(
            "mnemo_http_request_seconds_total{{status=\"{class}\"}} {seconds}\n"
        ));
    }
    if let Ok(pool) = db.pool_stats().await {
        for (name, help, value) in [
            (
                "max_size",
                "Most connections the pool may hold.",
                pool.max_size,
            ),
            ("size", "Connections open now.", pool.size),
            ("available", "Open connections idle now.", pool.available),
            (
                "waiting",
                "Requests waiting for a connection.",
                pool.waiting,
            ),
        ] {
            out.push_str(&format!(
                "# HELP mnemo_pool_{name} {help}\n# TYPE mnemo_pool_{name} gauge\n"
            ));
            out.push_str(&format!(
                "mnemo_pool_{name}{{backend=\"{}\"}} {value}\n",
                db.backend().name()
            ));
        }
    }
    out.push_str(
        "# HELP mnemo_auth_failures_total Requests refused for their credentials, by reason.\n",
    );
    out.push_str("# TYPE mnemo_auth_failures_total counter\n");
    for (reason, n) in auth.failures() {
        out.push_str(&format!(
            "mnemo_auth_failures_total{{reason=\"{reason}\"}} {n}\n"
        ));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}
