//! `/assistants/*`: assistants as data. Each graph has a system assistant (everyone's to use,
//! never changed); principals create more, each a graph with a configuration, versioned. A user's
//! assistants are its own (another user's are "not found"); a service's are everyone's to use,
//! and only a service changes them.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{IfExists, filter_or_none, object_or_none, page};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::graphs::Graph;
use crate::model::{Assistant, AssistantPatch, AssistantQuery, AssistantSort, NewAssistant};
use crate::persistence::Persistence;
use crate::runs::GraphRef;

/// The graph `graph_id` names: one of mnemo's own, or one a graph worker registered (with
/// `served`, only while a worker serves it); 422 otherwise.
pub(super) async fn graph_ref(
    db: &Persistence,
    graph_id: &str,
    served: bool,
) -> Result<GraphRef, ApiError> {
    let unknown = match Graph::named(graph_id) {
        Ok(own) => return Ok(GraphRef::Builtin(own)),
        Err(unknown) => unknown,
    };
    match db.worker_graph(graph_id.to_string()).await? {
        Some(g) if served && g.served_until < chrono::Utc::now() => Err(ApiError::validation(
            format!("No graph worker serves graph {graph_id} now"),
        )),
        Some(g) => Ok(GraphRef::Worker(g.graph_id)),
        None => Err(ApiError::Validation(unknown)),
    }
}

/// What is shown of a graph: its JSON schemas, its drawing (plain, and with subgraphs
/// expanded) and its subgraphs' schemas by namespace. mnemo's own graphs have no subgraphs.
struct GraphViews {
    schemas: Value,
    drawing: Value,
    drawing_xray: Value,
    subgraphs: serde_json::Map<String, Value>,
}

/// A graph's views (a worker's, as it registered them).
async fn graph_views(db: &Persistence, graph_id: &str) -> Result<GraphViews, ApiError> {
    match graph_ref(db, graph_id, false).await? {
        GraphRef::Builtin(g) => Ok(GraphViews {
            schemas: g.schemas(),
            drawing: g.drawing(),
            drawing_xray: g.drawing(),
            subgraphs: serde_json::Map::new(),
        }),
        GraphRef::Worker(id) => {
            let g = db
                .worker_graph(id.clone())
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("Graph {id} not found")))?;
            let mut schemas = g.schemas;
            if let Value::Object(m) = &mut schemas {
                m.insert("graph_id".into(), json!(id));
            }
            Ok(GraphViews {
                schemas,
                drawing_xray: g.drawing_xray.unwrap_or_else(|| g.drawing.clone()),
                drawing: g.drawing,
                subgraphs: match g.subgraphs {
                    Some(Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                },
            })
        }
    }
}

/// An assistant id as a path or body names it: a UUID (422 otherwise, as the reference server
/// answers).
fn uuid_of(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::validation("Invalid assistant ID: must be a UUID"))
}

/// The assistant a path names, as `principal` may see it.
async fn visible(db: &Persistence, principal: &Principal, id: &str) -> Result<Assistant, ApiError> {
    let viewer = principal.bound_user().map(str::to_string);
    Ok(db.get_assistant(uuid_of(id)?, viewer).await?)
}

/// The assistant a path names, when `principal` may change it: a system assistant never
/// changes (409), a service's only through a service (403).
async fn changeable(
    db: &Persistence,
    principal: &Principal,
    id: &str,
) -> Result<(String, Option<String>), ApiError> {
    let found = visible(db, principal, id).await?;
    if crate::graphs::system_assistant_id(&found.graph_id).to_string() == found.assistant_id {
        return Err(ApiError::Conflict(
            "System assistants cannot be changed or deleted".into(),
        ));
    }
    let editor = principal.bound_user().map(str::to_string);
    if editor.is_some() && found.owner != editor {
        return Err(ApiError::Forbidden(
            "Only a service may change a shared assistant".into(),
        ));
    }
    Ok((found.assistant_id, editor))
}

/// An assistant to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AssistantCreate)]
pub struct CreateBody {
    /// Its id (a UUID); a new one by default.
    assistant_id: Option<String>,
    /// The graph it runs (`agent`, `legacy`).
    graph_id: String,
    /// What its runs get under their own config.
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    #[schema(value_type = Option<Object>)]
    context: Option<Value>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    if_exists: Option<IfExists>,
    name: Option<String>,
    description: Option<String>,
}

#[utoipa::path(
    tag = "assistants",
    request_body = CreateBody,
    responses(
        (status = 200, body = Assistant),
        (status = 409, description = "The id exists (`if_exists: raise`)", body = super::ErrorBody),
        (status = 422, description = "An unknown graph, or an id that is not a UUID", body = super::ErrorBody),
    ),
)]
#[post("/assistants")]
pub async fn create(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let named = graph_ref(&db, &body.graph_id, false).await?;
    let assistant_id = match &body.assistant_id {
        Some(id) => uuid_of(id)?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let (config, context) = synced(
        object_or_none(body.config, "config")?,
        object_or_none(body.context, "context")?,
    )?;
    let new = NewAssistant {
        assistant_id,
        graph_id: named.id().to_string(),
        owner: principal.bound_user().map(str::to_string),
        name: body.name.unwrap_or_else(|| "Untitled".into()),
        description: body.description,
        config: config.unwrap_or_else(|| json!({})),
        context: context.unwrap_or_else(|| json!({})),
        metadata: object_or_none(body.metadata, "metadata")?.unwrap_or_else(|| json!({})),
        do_nothing_if_exists: body.if_exists == Some(IfExists::DoNothing),
    };
    Ok(HttpResponse::Ok().json(db.create_assistant(new).await?))
}

/// An assistant's `config.configurable` and `context` kept one and the same, as LangGraph
/// (0.6 on) reads either: the one given is copied into the other. Both given is 400.
fn synced(
    config: Option<Value>,
    context: Option<Value>,
) -> Result<(Option<Value>, Option<Value>), ApiError> {
    let non_empty = |v: Option<&Value>| v.and_then(Value::as_object).is_some_and(|m| !m.is_empty());
    let configurable = config.as_ref().and_then(|c| c.get("configurable")).cloned();
    match (
        non_empty(configurable.as_ref()),
        non_empty(context.as_ref()),
    ) {
        (true, true) => Err(ApiError::BadRequest(
            "Give config.configurable or context, not both: context replaces configurable".into(),
        )),
        (true, false) => Ok((config, configurable)),
        (false, true) => {
            let mut config = config.unwrap_or_else(|| json!({}));
            if let Value::Object(m) = &mut config {
                m.insert("configurable".into(), context.clone().unwrap_or_default());
            }
            Ok((Some(config), context))
        }
        (false, false) => Ok((config, context)),
    }
}

fn default_limit() -> i64 {
    10
}

/// Which assistants a search matches, in which order.
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
    /// `assistant_id`, `created_at` (default), `updated_at`, `name` or `graph_id`.
    sort_by: Option<String>,
    /// `asc` or `desc` (default).
    sort_order: Option<String>,
    /// Only these fields of each assistant (`assistant_id`, `graph_id`, `name`, …).
    select: Option<Vec<String>>,
}

/// An assistant's fields, as a search may `select` them.
const FIELDS: [&str; 10] = [
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "metadata",
    "version",
    "created_at",
    "updated_at",
];

fn query(principal: &Principal, body: &SearchBody) -> Result<AssistantQuery, ApiError> {
    let (limit, offset) = page(body.limit, body.offset, 1000)?;
    let sort_by = match body.sort_by.as_deref() {
        None | Some("created_at") => AssistantSort::CreatedAt,
        Some("assistant_id") => AssistantSort::AssistantId,
        Some("updated_at") => AssistantSort::UpdatedAt,
        Some("name") => AssistantSort::Name,
        Some("graph_id") => AssistantSort::GraphId,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "sort_by must be assistant_id, created_at, updated_at, name or graph_id, not {other:?}"
            )));
        }
    };
    let descending = match body.sort_order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "sort_order must be asc or desc, not {other:?}"
            )));
        }
    };
    Ok(AssistantQuery {
        viewer: principal.bound_user().map(str::to_string),
        graph_id: body.graph_id.clone(),
        name: body.name.clone(),
        metadata: filter_or_none(body.metadata.clone(), "metadata")?,
        sort_by,
        descending,
        limit,
        offset,
    })
}

#[utoipa::path(
    tag = "assistants",
    request_body = SearchBody,
    responses((status = 200, description = "Assistants (with `select`, only those fields of each)", body = [Object], headers(
        ("X-Pagination-Total" = i64, description = "Assistants matching, in all"),
        ("X-Pagination-Next" = Option<i64>, description = "The offset of the next page, if any"),
    ))),
)]
#[post("/assistants/search")]
pub async fn search(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<SearchBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let q = query(&principal, &body)?;
    let offset = q.offset;
    let (found, total) = db.search_assistants(q).await?;
    let next = offset + found.len() as i64;
    let mut rows: Vec<Value> = found.iter().map(|a| json!(a)).collect();
    if let Some(fields) = &body.select {
        if let Some(other) = fields.iter().find(|f| !FIELDS.contains(&f.as_str())) {
            return Err(ApiError::validation(format!(
                "select names an assistant's fields ({}), not {other:?}",
                FIELDS.join(", ")
            )));
        }
        for row in rows.iter_mut().filter_map(Value::as_object_mut) {
            row.retain(|k, _| fields.contains(k));
        }
    }
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("X-Pagination-Total", total.to_string()));
    if next < total {
        resp.insert_header(("X-Pagination-Next", next.to_string()));
    }
    Ok(resp.json(rows))
}

#[utoipa::path(
    tag = "assistants",
    request_body = SearchBody,
    responses((status = 200, description = "Assistants matching", body = i64, content_type = "application/json")),
)]
#[post("/assistants/count")]
pub async fn count(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<SearchBody>,
) -> Result<HttpResponse, ApiError> {
    let q = query(&principal, &body)?;
    let (_, total) = db
        .search_assistants(AssistantQuery { limit: 1, ..q })
        .await?;
    Ok(HttpResponse::Ok().json(total))
}

#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path)),
    responses(
        (status = 200, body = Assistant),
        (status = 404, description = "No such assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID", body = super::ErrorBody),
    ),
)]
#[get("/assistants/{assistant_id}")]
pub async fn get(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(visible(&db, &principal, &path).await?))
}

/// What an assistant's change sets; the rest stays, `metadata` is merged.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AssistantPatch)]
pub struct PatchBody {
    graph_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    #[schema(value_type = Option<Object>)]
    context: Option<Value>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    name: Option<String>,
    description: Option<String>,
}

/// Changes an assistant: a new version, put in use.
#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path)),
    request_body = PatchBody,
    responses(
        (status = 200, body = Assistant),
        (status = 403, description = "A user changing a service's assistant", body = super::ErrorBody),
        (status = 404, description = "No such assistant", body = super::ErrorBody),
        (status = 409, description = "A system assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID, or an unknown graph", body = super::ErrorBody),
    ),
)]
#[patch("/assistants/{assistant_id}")]
pub async fn update(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<PatchBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if let Some(graph_id) = &body.graph_id {
        graph_ref(&db, graph_id, false).await?;
    }
    let (config, context) = synced(
        object_or_none(body.config, "config")?,
        object_or_none(body.context, "context")?,
    )?;
    let patch = AssistantPatch {
        graph_id: body.graph_id,
        config,
        context,
        metadata: object_or_none(body.metadata, "metadata")?,
        name: body.name,
        description: body.description,
    };
    let (id, editor) = changeable(&db, &principal, &path).await?;
    Ok(HttpResponse::Ok().json(db.patch_assistant(id, editor, patch).await?))
}

#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path)),
    responses(
        (status = 204, description = "Deleted, with its versions"),
        (status = 403, description = "A user deleting a service's assistant", body = super::ErrorBody),
        (status = 404, description = "No such assistant", body = super::ErrorBody),
        (status = 409, description = "A system assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID", body = super::ErrorBody),
    ),
)]
#[delete("/assistants/{assistant_id}")]
pub async fn remove(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, editor) = changeable(&db, &principal, &path).await?;
    db.delete_assistant(id, editor).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Which versions of an assistant to list.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AssistantVersionsSearch)]
pub struct VersionsBody {
    /// Versions whose metadata contains this object.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    #[serde(default = "default_limit")]
    #[schema(default = 10, minimum = 1, maximum = 1000)]
    limit: i64,
    #[serde(default)]
    #[schema(default = 0, minimum = 0)]
    offset: i64,
}

/// An assistant's versions, newest first.
#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path)),
    request_body = VersionsBody,
    responses(
        (status = 200, body = [Assistant]),
        (status = 404, description = "No such assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID", body = super::ErrorBody),
    ),
)]
#[post("/assistants/{assistant_id}/versions")]
pub async fn versions(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<VersionsBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (limit, offset) = page(body.limit, body.offset, 1000)?;
    let metadata = filter_or_none(body.metadata, "metadata")?;
    let viewer = principal.bound_user().map(str::to_string);
    let id = uuid_of(&path)?;
    let found = db
        .assistant_versions(id, viewer, metadata, limit, offset)
        .await?;
    // a version is never updated: it has no `updated_at`
    let shown: Vec<Value> = found
        .into_iter()
        .map(|a| {
            let mut v = json!(a);
            if let Value::Object(m) = &mut v {
                m.remove("updated_at");
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(shown))
}

/// The version to put in use: in the body (as the SDKs send it) or the query.
#[derive(Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[schema(as = AssistantLatest)]
#[into_params(parameter_in = Query)]
pub struct LatestBody {
    version: Option<i32>,
}

/// Puts one of an assistant's versions back in use.
#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path), LatestBody),
    request_body(content = Option<LatestBody>, description = "Optional", content_type = "application/json"),
    responses(
        (status = 200, body = Assistant),
        (status = 403, description = "A user changing a service's assistant", body = super::ErrorBody),
        (status = 404, description = "No such assistant or version", body = super::ErrorBody),
        (status = 409, description = "A system assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID, or no version given", body = super::ErrorBody),
    ),
)]
#[post("/assistants/{assistant_id}/latest")]
pub async fn set_latest(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    http: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let body = body.map_err(|e| crate::limits::raw_body_error(&e))?;
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<LatestBody>(&body)
            .map_err(|e| ApiError::validation(format!("a body of {{\"version\": n}}: {e}")))?
            .version
    };
    let from_query = web::Query::<LatestBody>::from_query(http.query_string())
        .map_err(|e| ApiError::validation(e.to_string()))?
        .version;
    let version = from_body
        .or(from_query)
        .ok_or_else(|| ApiError::validation("give the version to put in use"))?;
    let (id, editor) = changeable(&db, &principal, &path).await?;
    Ok(HttpResponse::Ok().json(db.set_latest_assistant(id, editor, version).await?))
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
pub async fn get_schemas(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = visible(&db, &principal, &path).await?;
    Ok(HttpResponse::Ok().json(graph_views(&db, &found.graph_id).await?.schemas))
}

/// `?xray=`: whether the drawing expands subgraphs (`true`, or a depth of 1 or more).
#[derive(Deserialize, utoipa::IntoParams)]
pub struct XrayQuery {
    #[param(value_type = Option<String>)]
    xray: Option<String>,
}

#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path), XrayQuery),
    responses(
        (status = 200, body = super::openapi::GraphDrawing),
        (status = 404, description = "No such assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID, or an xray that is not a boolean or a depth", body = super::ErrorBody),
    ),
)]
#[get("/assistants/{assistant_id}/graph")]
pub async fn drawing(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    query: web::Query<XrayQuery>,
) -> Result<HttpResponse, ApiError> {
    let xray = match query.xray.as_deref() {
        None | Some("false" | "False") => false,
        Some("true" | "True") => true,
        Some(depth) => match depth.parse::<u32>() {
            Ok(n) if n > 0 => true,
            _ => return Err(ApiError::validation("Invalid xray value")),
        },
    };
    let found = visible(&db, &principal, &path).await?;
    let views = graph_views(&db, &found.graph_id).await?;
    Ok(HttpResponse::Ok().json(if xray {
        views.drawing_xray
    } else {
        views.drawing
    }))
}

/// `?recurse=`: also the subgraphs of subgraphs.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct RecurseQuery {
    #[serde(default)]
    recurse: bool,
}

#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path), RecurseQuery),
    responses(
        (status = 200, description = "Each subgraph's schemas, by namespace", body = Object),
        (status = 404, description = "No such assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID", body = super::ErrorBody),
    ),
)]
#[get("/assistants/{assistant_id}/subgraphs")]
pub async fn subgraphs(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    query: web::Query<RecurseQuery>,
) -> Result<HttpResponse, ApiError> {
    subgraphs_under(&db, &principal, &path, None, query.recurse).await
}

#[utoipa::path(
    tag = "assistants",
    params(("assistant_id" = uuid::Uuid, Path), ("namespace" = String, Path), RecurseQuery),
    responses(
        (status = 200, description = "The subgraph's schemas (and with `recurse` its own subgraphs'), by namespace", body = Object),
        (status = 404, description = "No such assistant", body = super::ErrorBody),
        (status = 422, description = "Not a UUID", body = super::ErrorBody),
    ),
)]
#[get("/assistants/{assistant_id}/subgraphs/{namespace}")]
pub async fn subgraphs_in(
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<(String, String)>,
    query: web::Query<RecurseQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, namespace) = path.into_inner();
    subgraphs_under(&db, &principal, &id, Some(&namespace), query.recurse).await
}

/// The subgraphs of an assistant's graph: the top ones, or the one at `namespace`; with
/// `recurse`, the ones nested under them too.
async fn subgraphs_under(
    db: &Persistence,
    principal: &Principal,
    id: &str,
    namespace: Option<&str>,
    recurse: bool,
) -> Result<HttpResponse, ApiError> {
    let found = visible(db, principal, id).await?;
    let all = graph_views(db, &found.graph_id).await?.subgraphs;
    let shown: serde_json::Map<String, Value> = all
        .into_iter()
        .filter(|(ns, _)| match namespace {
            Some(top) => ns == top || (recurse && ns.starts_with(&format!("{top}|"))),
            None => recurse || !ns.contains('|'),
        })
        .collect();
    Ok(HttpResponse::Ok().json(shown))
}
