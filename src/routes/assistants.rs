//! `/assistants/*`: one read-only system assistant per graph.

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use serde_json::Value;

use super::{filter_or_none, page};
use crate::error::ApiError;
use crate::graphs::{GRAPHS, Graph};

/// The assistant a path names: a UUID (422 otherwise, as the reference server answers) of a
/// known assistant (404 otherwise).
fn by_uuid(id: &str) -> Result<&'static Graph, ApiError> {
    let uuid = uuid::Uuid::parse_str(id)
        .map_err(|_| ApiError::validation("Invalid assistant ID: must be a UUID"))?;
    GRAPHS
        .iter()
        .find(|g| g.assistant_id() == uuid)
        .ok_or_else(|| ApiError::NotFound(format!("Assistant {id} not found")))
}

/// Whether `value` contains `filter` (JSON containment, as Postgres `@>`).
fn contains(value: &Value, filter: &Value) -> bool {
    match (value, filter) {
        (Value::Object(v), Value::Object(f)) => f
            .iter()
            .all(|(k, fv)| v.get(k).is_some_and(|vv| contains(vv, fv))),
        (Value::Array(v), Value::Array(f)) => {
            f.iter().all(|fv| v.iter().any(|vv| contains(vv, fv)))
        }
        (v, f) => v == f,
    }
}

fn default_limit() -> i64 {
    10
}

/// Which assistants a search or count matches.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AssistantSearch)]
pub struct SearchBody {
    /// Assistants whose metadata contains this object.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    graph_id: Option<String>,
    /// Assistants whose name contains this text.
    name: Option<String>,
    #[serde(default = "default_limit")]
    #[schema(default = 10, minimum = 1, maximum = 1000)]
    limit: i64,
    #[serde(default)]
    #[schema(default = 0, minimum = 0)]
    offset: i64,
}

fn matching(body: SearchBody) -> Result<(Vec<Value>, i64, i64), ApiError> {
    let (limit, offset) = page(body.limit, body.offset, 1000)?;
    let metadata = filter_or_none(body.metadata, "metadata")?;
    let all: Vec<Value> = GRAPHS
        .iter()
        .filter(|g| body.graph_id.as_deref().is_none_or(|id| id == g.id))
        .filter(|g| body.name.as_deref().is_none_or(|n| g.id.contains(n)))
        .map(Graph::assistant)
        .filter(|a| {
            metadata
                .as_ref()
                .is_none_or(|m| contains(&a["metadata"], m))
        })
        .collect();
    Ok((all, limit, offset))
}

#[utoipa::path(
    tag = "assistants",
    request_body = SearchBody,
    responses((status = 200, body = [super::openapi::Assistant], headers(
        ("X-Pagination-Total" = i64, description = "Assistants matching, in all"),
        ("X-Pagination-Next" = Option<i64>, description = "The offset of the next page, if any"),
    ))),
)]
#[post("/assistants/search")]
pub async fn search(body: web::Json<SearchBody>) -> Result<HttpResponse, ApiError> {
    let (all, limit, offset) = matching(body.into_inner())?;
    let total = all.len() as i64;
    let page: Vec<Value> = all
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("X-Pagination-Total", total.to_string()));
    let next = offset + page.len() as i64;
    if next < total {
        resp.insert_header(("X-Pagination-Next", next.to_string()));
    }
    Ok(resp.json(page))
}

#[utoipa::path(
    tag = "assistants",
    request_body = SearchBody,
    responses((status = 200, description = "Assistants matching", body = i64, content_type = "application/json")),
)]
#[post("/assistants/count")]
pub async fn count(body: web::Json<SearchBody>) -> Result<HttpResponse, ApiError> {
    let (all, _, _) = matching(body.into_inner())?;
    Ok(HttpResponse::Ok().json(all.len()))
}

#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path)),
    responses(
        (status = 200, body = super::openapi::Assistant),
        (status = 404, description = "No such assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID", body = super::ErrorBody),
    ),
)]
#[get("/assistants/{assistant_id}")]
pub async fn get(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(by_uuid(&path)?.assistant()))
}

#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path)),
    responses(
        (status = 200, body = super::openapi::GraphSchemas),
        (status = 404, description = "No such assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID", body = super::ErrorBody),
    ),
)]
#[get("/assistants/{assistant_id}/schemas")]
pub async fn get_schemas(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(by_uuid(&path)?.schemas()))
}

#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path)),
    responses(
        (status = 200, body = super::openapi::GraphDrawing),
        (status = 404, description = "No such assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID", body = super::ErrorBody),
    ),
)]
#[get("/assistants/{assistant_id}/graph")]
pub async fn graph(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(by_uuid(&path)?.drawing()))
}
