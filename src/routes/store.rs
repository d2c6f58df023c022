//! `/store/*`: the LangGraph long-term store. A user principal reaches only the namespaces
//! under `["users", <its user_id>, …]`: items elsewhere are 404 (403 to write), and searches and
//! namespace listings are narrowed to that prefix. Services reach every namespace.

use actix_web::{HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::model::{FieldFilter, Namespace, RawJson, StoreSearch};
use crate::persistence::Persistence;

/// The labels every namespace a user principal reaches starts with.
fn user_root(principal: &Principal) -> Option<[&str; 2]> {
    principal.bound_user().map(|u| ["users", u])
}

/// Whether the principal may reach items in `labels`.
fn reaches(principal: &Principal, labels: &[String]) -> bool {
    user_root(principal).is_none_or(|root| labels.len() >= 2 && labels[..2] == root)
}

/// A search prefix narrowed to what the principal reaches: a prefix above the user's root
/// becomes the root; `None` when the prefix lies outside it (nothing to find).
fn narrowed(principal: &Principal, prefix: Vec<String>) -> Option<Vec<String>> {
    let Some(root) = user_root(principal) else {
        return Some(prefix);
    };
    if reaches(principal, &prefix) {
        Some(prefix)
    } else if prefix.iter().zip(root).all(|(p, r)| p == r || p == "*") {
        Some(root.iter().map(|r| r.to_string()).collect())
    } else {
        None
    }
}

/// Ten years: a longer TTL is a mistake, and would overflow timestamp arithmetic.
const MAX_TTL_MINUTES: f64 = 10.0 * 365.0 * 24.0 * 60.0;

/// An item to store (replaces one with the same namespace and key).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StorePutRequest)]
pub struct PutBody {
    /// Non-empty labels without `.`.
    #[schema(min_items = 1)]
    namespace: Vec<String>,
    key: String,
    /// Passed through as text: a large value is never built into a tree.
    #[schema(value_type = Object)]
    value: RawJson,
    /// Semantic indexing is not supported; the field is accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    index: Value,
    /// Minutes until the item expires (default: never).
    #[schema(exclusive_minimum = 0.0, maximum = 5256000.0)]
    ttl: Option<f64>,
}

#[utoipa::path(
    tag = "store",
    request_body = PutBody,
    responses(
        (status = 204, description = "Stored"),
        (status = 403, description = "A user writing outside `[\"users\", <its user_id>, …]`", body = super::ErrorBody),
    ),
)]
#[put("/store/items")]
pub async fn put_item(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<PutBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !reaches(&principal, &body.namespace) {
        return Err(ApiError::Forbidden(
            "a user may write only under the namespace [\"users\", <its user_id>]".into(),
        ));
    }
    let ns = Namespace::parse(body.namespace, false).map_err(ApiError::Validation)?;
    let value = body
        .value
        .checked_object("value")
        .map_err(ApiError::Validation)?;
    if body
        .ttl
        .is_some_and(|ttl| !ttl.is_finite() || ttl <= 0.0 || ttl > MAX_TTL_MINUTES)
    {
        return Err(ApiError::validation(format!(
            "ttl must be a positive number of minutes, at most {MAX_TTL_MINUTES}"
        )));
    }
    db.put_item_raw(ns.prefix(), body.key, value, body.ttl)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// The namespace's labels joined by `.` (`users.alice.memories`).
    namespace: Option<String>,
    /// The item's key (a missing key is 400).
    #[param(required = true)]
    key: Option<String>,
    /// Whether reading the item restarts its TTL (default true).
    refresh_ttl: Option<bool>,
}

#[utoipa::path(
    tag = "store",
    params(GetQuery),
    responses(
        (status = 200, body = crate::model::StoreItem),
        (status = 400, description = "No `key`", body = super::ErrorBody),
        (status = 404, description = "No such item (or another user's)", body = super::ErrorBody),
    ),
)]
#[get("/store/items")]
pub async fn get_item(
    principal: Principal,
    db: web::Data<Persistence>,
    q: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let key = q
        .key
        .ok_or_else(|| ApiError::BadRequest("Missing query parameter: key".into()))?;
    let ns = Namespace::parse_dotted(q.namespace.as_deref().unwrap_or_default())
        .map_err(ApiError::Validation)?;
    if !reaches(&principal, ns.labels()) {
        return Err(ApiError::NotFound("Item not found".into()));
    }
    let item = db
        .get_item(ns.prefix(), key, q.refresh_ttl.unwrap_or(true))
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StoreDeleteRequest)]
pub struct DeleteBody {
    namespace: Vec<String>,
    key: String,
}

#[utoipa::path(
    tag = "store",
    request_body = DeleteBody,
    responses(
        (status = 204, description = "Deleted (or there was no such item)"),
        (status = 404, description = "Another user's namespace", body = super::ErrorBody),
    ),
)]
#[delete("/store/items")]
pub async fn delete_item(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<DeleteBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !reaches(&principal, &body.namespace) {
        return Err(ApiError::NotFound("Item not found".into()));
    }
    let ns = Namespace::parse(body.namespace, false).map_err(ApiError::Validation)?;
    db.delete_item(ns.prefix(), body.key).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn default_limit() -> i64 {
    10
}

/// Items under a namespace prefix whose values match a filter.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StoreSearchRequest)]
pub struct SearchBody {
    #[serde(default)]
    namespace_prefix: Vec<String>,
    /// `{field: value}` or `{field: {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}` on the
    /// top-level fields of items' values.
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
    #[serde(default = "default_limit")]
    #[schema(default = 10, minimum = 1, maximum = 1000)]
    limit: i64,
    #[serde(default)]
    #[schema(default = 0, minimum = 0)]
    offset: i64,
    /// Semantic search is not supported: a query is accepted, results are unscored.
    #[allow(dead_code)]
    query: Option<String>,
    refresh_ttl: Option<bool>,
}

#[utoipa::path(
    tag = "store",
    request_body = SearchBody,
    responses((status = 200, body = super::openapi::StoreSearchResult)),
)]
#[post("/store/items/search")]
pub async fn search_items(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<SearchBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (limit, offset) = page(body.limit, body.offset, 1000)?;
    let prefix = Namespace::parse(body.namespace_prefix, true).map_err(ApiError::Validation)?;
    let Some(prefix) = narrowed(&principal, prefix.labels().to_vec()) else {
        return Ok(HttpResponse::Ok().json(json!({ "items": [] })));
    };
    let query = StoreSearch {
        namespace_prefix: Namespace::parse(prefix, true).map_err(ApiError::Validation)?,
        filter: FieldFilter::parse_all(&body.filter.unwrap_or(Value::Null))
            .map_err(ApiError::Validation)?,
        limit,
        offset,
        refresh_ttl: body.refresh_ttl.unwrap_or(true),
    };
    let items = db.search_items(query).await?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|i| {
            let mut v = json!(i);
            v["score"] = Value::Null;
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

fn default_ns_limit() -> i64 {
    100
}

/// Namespaces that start with `prefix` and end with `suffix` (`*` matches any one label).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StoreNamespacesRequest)]
pub struct NamespacesBody {
    prefix: Option<Vec<String>>,
    suffix: Option<Vec<String>>,
    /// Namespaces cut to this many labels.
    #[schema(minimum = 1)]
    max_depth: Option<usize>,
    #[serde(default = "default_ns_limit")]
    #[schema(default = 100, minimum = 1, maximum = 1000)]
    limit: i64,
    #[serde(default)]
    #[schema(default = 0, minimum = 0)]
    offset: i64,
}

/// Whether `labels` starts with `pattern`, where `*` matches any one label.
fn matches_start(labels: &[&str], pattern: &[String]) -> bool {
    labels.len() >= pattern.len() && pattern.iter().zip(labels).all(|(p, l)| p == "*" || p == l)
}

#[utoipa::path(
    tag = "store",
    request_body = NamespacesBody,
    responses((status = 200, body = super::openapi::NamespaceList)),
)]
#[post("/store/namespaces")]
pub async fn list_namespaces(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<NamespacesBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (limit, offset) = page(body.limit, body.offset, 1000)?;
    if body.max_depth == Some(0) {
        return Err(ApiError::validation("max_depth must be at least 1"));
    }
    let prefix = body.prefix.unwrap_or_default();
    let suffix = body.suffix.unwrap_or_default();
    for (what, pattern) in [("prefix", &prefix), ("suffix", &suffix)] {
        if pattern.len() > crate::limits::MAX_NAMESPACE_LABELS {
            return Err(ApiError::validation(format!(
                "{what} has more than {} labels",
                crate::limits::MAX_NAMESPACE_LABELS
            )));
        }
    }
    // the labels before the first wildcard narrow the scan in SQL; the rest is matched here
    let literal: Vec<String> = prefix.iter().take_while(|l| *l != "*").cloned().collect();
    let Some(literal) = narrowed(&principal, literal) else {
        return Ok(HttpResponse::Ok().json(json!({ "namespaces": [] })));
    };
    let literal = Namespace::parse(literal, true).map_err(ApiError::Validation)?;
    let rows = db.list_prefixes(Some(literal.prefix())).await?;
    let mut out: Vec<Vec<String>> = Vec::new();
    for row in &rows {
        let labels: Vec<&str> = row.split('.').collect();
        if let Some(root) = user_root(&principal)
            && labels.get(..2) != Some(&root[..])
        {
            continue;
        }
        let reversed: Vec<&str> = labels.iter().rev().copied().collect();
        let rev_suffix: Vec<String> = suffix.iter().rev().cloned().collect();
        if !matches_start(&labels, &prefix) || !matches_start(&reversed, &rev_suffix) {
            continue;
        }
        let depth = body.max_depth.unwrap_or(labels.len()).min(labels.len());
        let ns: Vec<String> = labels[..depth].iter().map(|s| s.to_string()).collect();
        if out.last() != Some(&ns) && !out.contains(&ns) {
            out.push(ns);
        }
    }
    let page: Vec<Vec<String>> = out
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "namespaces": page })))
}
