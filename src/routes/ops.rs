//! Ops endpoints: liveness without the database, readiness (writes work) through the actor.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::error::ApiError;
use crate::persistence::Persistence;

/// LangGraph clients' health check.
#[utoipa::path(tag = "ops", responses((status = 200, body = super::openapi::OkStatus)))]
#[get("/ok")]
pub async fn ok() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "ok": true }))
}

/// Server information (agent-chat-ui only checks that it answers).
#[utoipa::path(tag = "ops", responses((status = 200, body = super::openapi::ServerInfo)))]
#[get("/info")]
pub async fn info(db: web::Data<Persistence>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "name": "mnemo",
        "flags": { "assistants": true, "crons": false, "langsmith": false },
        "host": { "kind": "mnemo", "backend": db.backend().name() },
    }))
}

/// Liveness: the process answers. Never touches the database.
#[utoipa::path(tag = "ops", responses((status = 200, body = super::openapi::Health)))]
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: whether the database takes writes now; 503 with `Retry-After` while it does not
/// (down, locked, hung, or a write met an outage in the last second), answered within the pool
/// timeout. Once the database is back, the next call after that second probes it and answers
/// 200: no restart needed.
#[utoipa::path(tag = "ops", responses((status = 200, body = super::openapi::Readiness)))]
#[get("/ready")]
pub async fn ready(db: web::Data<Persistence>) -> Result<HttpResponse, ApiError> {
    let pool = db.probe().await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "backend": db.backend().name(),
        "pool": pool,
    })))
}
