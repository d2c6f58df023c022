//! `/threads/*`: threads, their state and history (the LangGraph API's view of checkpoints).

use std::collections::HashSet;

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ownership::OwnedThread;
use super::{IfExists, filter_or_none, json_array, page, raw_object};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::graphs;
use crate::model::{
    CheckpointQuery, CheckpointRecord, NewThread, RawJson, StateUpdate, ThreadFilter, ThreadSearch,
    ThreadSortBy, ThreadStatus, WrittenTask, format_ts,
};
use crate::persistence::{Persistence, Prune};

/// A thread to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ThreadCreate)]
pub struct CreateBody {
    /// A UUID (default: a new one).
    #[schema(format = Uuid)]
    thread_id: Option<String>,
    /// `user_id` in it names the user the thread belongs to (a service's choice).
    #[schema(value_type = Option<Object>)]
    metadata: Option<RawJson>,
    if_exists: Option<IfExists>,
    /// Not supported: must be absent or null.
    supersteps: Option<Value>,
}

#[utoipa::path(
    tag = "threads",
    request_body = CreateBody,
    responses(
        (status = 200, body = crate::model::Thread),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
        (status = 409, description = "A thread with that id exists", body = super::ErrorBody),
    ),
)]
#[post("/threads")]
pub async fn create(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body.supersteps.as_ref().is_some_and(|s| !s.is_null()) {
        return Err(ApiError::validation("supersteps are not supported"));
    }
    let thread_id = match body.thread_id {
        Some(id) => uuid::Uuid::parse_str(&id)
            .map_err(|_| ApiError::validation(format!("thread_id must be a UUID, got {id:?}")))?
            .to_string(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let metadata = raw_object(body.metadata, "metadata")?;
    // a user's thread is its own; a service's belongs to the user its metadata names, if any
    let owner = principal.acting_user(named_user(&metadata).as_deref())?;
    let do_nothing = matches!(body.if_exists, Some(IfExists::DoNothing));
    let new = NewThread {
        thread_id,
        metadata,
        owner,
        do_nothing_if_exists: do_nothing,
    };
    let thread = db.create_thread(new).await?;
    // `do_nothing` on another user's id must not hand that user's thread over
    if !principal.owns(thread.owner.as_deref()) {
        return Err(ApiError::Conflict(format!(
            "Thread with ID {} already exists",
            thread.thread_id
        )));
    }
    Ok(HttpResponse::Ok().json(thread))
}

#[utoipa::path(
    tag = "threads",
    params(("thread_id" = String, Path)),
    responses(
        (status = 200, body = crate::model::Thread),
        (status = 404, description = "No such thread", body = super::ErrorBody),
    ),
)]
#[get("/threads/{thread_id}")]
pub async fn get(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut thread = db.get_thread(path.into_inner()).await?;
    // an interrupted thread names what it waits on, by task, as LangGraph's `Thread.interrupts`
    if thread.status == "interrupted"
        && let Some(latest) = db
            .get_checkpoint(thread.thread_id.clone(), String::new(), None)
            .await?
    {
        thread.interrupts = Value::Object(waiting_tasks(&db, latest).await?);
    }
    Ok(HttpResponse::Ok().json(thread))
}

/// The interrupts a checkpoint waits on, by the task that asked: a subgraph's task waits on its
/// own subgraph's, whose tasks asked (down to the innermost subgraph).
async fn waiting_tasks(
    db: &Persistence,
    root: CheckpointRecord,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let subgraphs = graph_shape(db, Some(&root)).await?.subgraphs;
    let mut waiting = serde_json::Map::new();
    // (checkpoint, depth): subgraphs nest at most as deep as a namespace may
    let mut todo = vec![(root, 0)];
    while let Some((rec, depth)) = todo.pop() {
        let written = rec.written_tasks();
        for (task, list) in rec.interrupts() {
            let node = written
                .iter()
                .find(|t| t.id == task)
                .and_then(|t| t.node.clone());
            let inner = match node.filter(|n| subgraphs.contains(n) && depth < 8) {
                Some(node) => {
                    let ns = match rec.checkpoint_ns.as_str() {
                        "" => format!("{node}:{task}"),
                        parent => format!("{parent}|{node}:{task}"),
                    };
                    db.get_checkpoint(rec.thread_id.clone(), ns, None).await?
                }
                None => None,
            };
            match inner {
                Some(inner) if !inner.interrupts().is_empty() => todo.push((inner, depth + 1)),
                _ => {
                    waiting.insert(task, Value::Array(list));
                }
            }
        }
    }
    Ok(waiting)
}

/// Metadata to merge into the thread's.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ThreadPatch)]
pub struct PatchBody {
    #[schema(value_type = Option<Object>)]
    metadata: Option<RawJson>,
}

#[utoipa::path(
    tag = "threads",
    params(("thread_id" = String, Path)),
    request_body = PatchBody,
    responses(
        (status = 200, body = crate::model::Thread),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
        (status = 404, description = "No such thread", body = super::ErrorBody),
    ),
)]
#[patch("/threads/{thread_id}")]
pub async fn patch(
    _owned: OwnedThread,
    principal: Principal,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<PatchBody>,
) -> Result<HttpResponse, ApiError> {
    let metadata = raw_object(body.into_inner().metadata, "metadata")?;
    principal.acting_user(named_user(&metadata).as_deref())?;
    Ok(HttpResponse::Ok().json(db.patch_thread(path.into_inner(), metadata).await?))
}

#[utoipa::path(
    tag = "threads",
    params(("thread_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted, with its checkpoints and runs"),
        (status = 404, description = "No such thread", body = super::ErrorBody),
    ),
)]
#[delete("/threads/{thread_id}")]
pub async fn delete(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    db.delete_thread(path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Which threads a search or count matches.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ThreadFilter)]
pub struct FilterBody {
    /// Threads whose metadata contains this object.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// Threads whose current values contain this object.
    #[schema(value_type = Option<Object>)]
    values: Option<Value>,
    ids: Option<Vec<String>>,
    status: Option<ThreadStatus>,
}

impl FilterBody {
    /// The filter, narrowed to a user principal's own threads.
    fn into_filter(self, principal: &Principal) -> Result<ThreadFilter, ApiError> {
        crate::limits::check_ids("ids", self.ids.as_deref().unwrap_or_default())?;
        Ok(ThreadFilter {
            metadata: filter_or_none(self.metadata, "metadata")?,
            values: filter_or_none(self.values, "values")?,
            ids: self.ids,
            status: self.status,
            owner: principal.bound_user().map(str::to_string),
        })
    }
}

/// Whether a request says its body is JSON (`application/json` or `…+json`).
fn is_json(req: &actix_web::HttpRequest) -> bool {
    use actix_web::HttpMessage;
    req.mime_type().ok().flatten().is_some_and(|m| {
        use actix_web::mime;
        m.type_() == mime::APPLICATION
            && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
    })
}

/// The user a thread's metadata names (`metadata.user_id`), if it is a string.
fn named_user(metadata: &RawJson) -> Option<String> {
    #[derive(Deserialize)]
    struct Named {
        user_id: Option<Value>,
    }
    match metadata.fields::<Named>()?.user_id? {
        Value::String(user) => Some(user),
        _ => None,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum SortOrder {
    Asc,
    Desc,
}

fn default_limit() -> i64 {
    10
}

/// A page of the threads a filter matches.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ThreadSearch)]
pub struct SearchBody {
    #[serde(flatten)]
    filter: FilterBody,
    #[serde(default = "default_limit")]
    #[schema(default = 10, minimum = 1, maximum = 1000)]
    limit: i64,
    #[serde(default)]
    #[schema(default = 0, minimum = 0)]
    offset: i64,
    sort_by: Option<ThreadSortBy>,
    sort_order: Option<SortOrder>,
}

#[utoipa::path(
    tag = "threads",
    request_body = SearchBody,
    responses((status = 200, body = [crate::model::Thread], headers(
        ("X-Pagination-Total" = i64, description = "Threads matching, in all"),
        ("X-Pagination-Next" = Option<i64>, description = "The offset of the next page, if any"),
    ))),
)]
#[post("/threads/search")]
pub async fn search(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<SearchBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (limit, offset) = page(body.limit, body.offset, 1000)?;
    let query = ThreadSearch {
        filter: body.filter.into_filter(&principal)?,
        sort_by: body.sort_by.unwrap_or(ThreadSortBy::CreatedAt),
        descending: !matches!(body.sort_order, Some(SortOrder::Asc)),
        limit,
        offset,
        max_bytes: db.page_max_bytes(),
    };
    let (threads, total) = db.search_threads(query).await?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("X-Pagination-Total", total.to_string()));
    let next = offset + threads.len() as i64;
    if next < total {
        resp.insert_header(("X-Pagination-Next", next.to_string()));
    }
    Ok(resp.json(threads))
}

#[utoipa::path(
    tag = "threads",
    request_body = FilterBody,
    responses((status = 200, description = "Threads matching", body = i64, content_type = "application/json")),
)]
#[post("/threads/count")]
pub async fn count(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<FilterBody>,
) -> Result<HttpResponse, ApiError> {
    let filter = body.into_inner().into_filter(&principal)?;
    Ok(HttpResponse::Ok().json(db.count_threads(filter).await?))
}

/// Optional: the LangGraph clients send no body.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ThreadCopy)]
#[serde(deny_unknown_fields)]
pub struct CopyBody {
    /// The copy's id (a checkpointer's `copy_thread` names its target); default: a new UUID.
    thread_id: Option<String>,
}

#[utoipa::path(
    tag = "threads",
    params(("thread_id" = String, Path)),
    request_body(content = Option<CopyBody>, description = "Optional", content_type = "application/json"),
    responses(
        (status = 200, description = "The copy", body = crate::model::Thread),
        (status = 404, description = "No such thread", body = super::ErrorBody),
        (status = 409, description = "A thread with the copy's id exists", body = super::ErrorBody),
    ),
)]
#[post("/threads/{thread_id}/copy")]
pub async fn copy(
    _owned: OwnedThread,
    req: actix_web::HttpRequest,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let body = body.map_err(|e| crate::limits::raw_body_error(&e))?;
    // the body is optional: the LangGraph clients send none
    let target = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else if !is_json(&req) {
        return Err(ApiError::UnsupportedMediaType(
            "Content-Type must be application/json".into(),
        ));
    } else {
        serde_json::from_slice::<CopyBody>(&body)
            .map_err(|e| ApiError::validation(format!("invalid copy body: {e}")))?
            .thread_id
    };
    let new_id = match target {
        Some(id) if id.is_empty() => {
            return Err(ApiError::validation("thread_id must not be empty"));
        }
        Some(id) => id,
        None => uuid::Uuid::now_v7().to_string(),
    };
    Ok(HttpResponse::Ok().json(db.copy_thread(path.into_inner(), new_id).await?))
}

/// Threads to prune.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ThreadPrune)]
pub struct PruneBody {
    thread_ids: Vec<String>,
    /// `delete` (default) or `keep_latest`.
    #[serde(default = "default_prune")]
    #[schema(value_type = Option<super::openapi::PruneStrategy>)]
    strategy: String,
}

fn default_prune() -> String {
    "delete".into()
}

/// `delete` removes the threads; `keep_latest` keeps each thread with only its latest
/// checkpoint per namespace (with that checkpoint's pending writes and blobs).
#[utoipa::path(
    tag = "threads",
    request_body = PruneBody,
    responses((status = 200, body = super::openapi::PruneResult)),
)]
#[post("/threads/prune")]
pub async fn prune(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<PruneBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let strategy = match body.strategy.as_str() {
        "delete" => Prune::Delete,
        "keep_latest" => Prune::KeepLatest,
        other => {
            return Err(ApiError::validation(format!(
                "strategy must be delete or keep_latest, not {other:?}"
            )));
        }
    };
    crate::limits::check_ids("thread_ids", &body.thread_ids)?;
    let owner = principal.bound_user().map(str::to_string);
    let pruned = db.prune_threads(body.thread_ids, strategy, owner).await?;
    Ok(HttpResponse::Ok().json(json!({ "pruned_count": pruned })))
}

// ---------------------------------------------------------------------------------------------
// State and history

fn checkpoint_ref(thread_id: &str, ns: &str, id: &str) -> Value {
    json!({ "thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": id })
}

/// A checkpoint as a LangGraph `ThreadState`. `next` names the nodes to run next: from the graph
/// on a checkpoint of one of mnemo's graphs, from the checkpoint's trigger channels on any other.
/// `values` are what its channels hold, over the graph's defaults. `tasks` are the tasks whose
/// writes the checkpoint holds (with their results and the interrupts they wait on), then those
/// of `next` not yet written; a task of a subgraph's node names its checkpoint namespace.
fn thread_state(rec: &CheckpointRecord, shape: &GraphShape) -> Value {
    let subgraphs = &shape.subgraphs;
    let mut values = rec.values();
    if let Value::Object(held) = &mut values {
        for (channel, default) in &shape.defaults {
            held.entry(channel.as_str())
                .or_insert_with(|| default.clone());
        }
    }
    let pending = rec.interrupts();
    let interrupts: Vec<&Value> = pending.iter().flat_map(|(_, list)| list).collect();
    let next = graphs::next_of(rec, &values);
    let task = |id: &str, name: &str, result: Option<&Value>| {
        let waiting: Vec<&Value> = pending
            .iter()
            .filter(|(task_id, _)| task_id == id)
            .flat_map(|(_, list)| list)
            .collect();
        let checkpoint = subgraphs.contains(name).then(
            || json!({ "checkpoint_ns": format!("{name}:{id}"), "thread_id": rec.thread_id }),
        );
        json!({ "id": id, "name": name, "path": ["__pregel_pull", name], "error": null,
                "interrupts": waiting, "checkpoint": checkpoint, "state": null, "result": result })
    };
    let written = rec.written_tasks();
    // mnemo's agent names no node in its writes: its only writing task is `tools`
    fn node_of(t: &WrittenTask) -> &str {
        t.node.as_deref().unwrap_or("tools")
    }
    let mut tasks: Vec<Value> = written
        .iter()
        .map(|t| task(&t.id, node_of(t), t.result.as_ref()))
        .collect();
    // the nodes due next that wrote nothing yet: a stable id per checkpoint and node
    let base = uuid::Uuid::parse_str(&rec.checkpoint_id).unwrap_or(uuid::Uuid::NAMESPACE_OID);
    for name in &next {
        if !written.iter().any(|t| node_of(t) == name) {
            let id = uuid::Uuid::new_v5(&base, name.as_bytes()).to_string();
            tasks.push(task(&id, name, None));
        }
    }
    json!({
        "values": values,
        "next": next,
        "tasks": tasks,
        "checkpoint": checkpoint_ref(&rec.thread_id, &rec.checkpoint_ns, &rec.checkpoint_id),
        "parent_checkpoint": rec.parent_checkpoint_id.as_deref()
            .map(|p| checkpoint_ref(&rec.thread_id, &rec.checkpoint_ns, p)),
        "metadata": rec.metadata,
        "created_at": format_ts(&rec.created_at),
        "interrupts": interrupts,
        "checkpoint_id": rec.checkpoint_id,
        "parent_checkpoint_id": rec.parent_checkpoint_id,
    })
}

/// What mnemo knows of the graph a checkpoint is of beyond the checkpoint: the nodes that are
/// subgraphs (in it and in its subgraphs), and what its state channels hold before any write.
/// A graph worker's, as it registered them; mnemo's own graphs have neither.
#[derive(Default)]
struct GraphShape {
    subgraphs: HashSet<String>,
    defaults: serde_json::Map<String, Value>,
}

async fn graph_shape(
    db: &Persistence,
    rec: Option<&CheckpointRecord>,
) -> Result<GraphShape, ApiError> {
    let Some(graph_id) = rec
        .and_then(|r| r.metadata.get("graph_id"))
        .and_then(Value::as_str)
    else {
        return Ok(GraphShape::default());
    };
    if graphs::Graph::named(graph_id).is_ok() {
        return Ok(GraphShape::default());
    }
    let Some(found) = db.worker_graph(graph_id.to_string()).await? else {
        return Ok(GraphShape::default());
    };
    let subgraphs = match found.subgraphs {
        Some(Value::Object(m)) => m
            .keys()
            .flat_map(|ns| ns.split('|'))
            .map(str::to_string)
            .collect(),
        _ => HashSet::new(),
    };
    let defaults = match found.state_defaults {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    Ok(GraphShape {
        subgraphs,
        defaults,
    })
}

/// The state of a thread that has no checkpoint yet.
fn empty_state() -> Value {
    json!({
        "values": {}, "next": [], "tasks": [], "metadata": null, "created_at": null,
        "checkpoint": null, "parent_checkpoint": null, "interrupts": [],
        "checkpoint_id": null, "parent_checkpoint_id": null,
    })
}

/// The state at `checkpoint_id` (default: the latest); 404 for an unknown thread or checkpoint.
async fn state(
    db: &Persistence,
    thread_id: String,
    ns: String,
    checkpoint_id: Option<String>,
) -> Result<Value, ApiError> {
    let explicit = checkpoint_id.is_some();
    match db
        .get_checkpoint(thread_id.clone(), ns, checkpoint_id)
        .await?
    {
        Some(rec) => Ok(thread_state(&rec, &graph_shape(db, Some(&rec)).await?)),
        None => {
            db.get_thread(thread_id).await?;
            if explicit {
                Err(ApiError::NotFound("Checkpoint not found".into()))
            } else {
                Ok(empty_state())
            }
        }
    }
}

#[utoipa::path(
    tag = "threads",
    params(("thread_id" = String, Path)),
    responses(
        (status = 200, description = "The latest state", body = super::openapi::ThreadState),
        (status = 404, description = "No such thread", body = super::ErrorBody),
    ),
)]
#[get("/threads/{thread_id}/state")]
pub async fn get_state(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state(&db, path.into_inner(), String::new(), None).await?))
}

#[utoipa::path(
    tag = "threads",
    params(("thread_id" = String, Path), ("checkpoint_id" = String, Path)),
    responses(
        (status = 200, body = super::openapi::ThreadState),
        (status = 404, description = "No such thread or checkpoint", body = super::ErrorBody),
    ),
)]
#[get("/threads/{thread_id}/state/{checkpoint_id}")]
pub async fn state_at_checkpoint(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (thread_id, checkpoint_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(state(&db, thread_id, String::new(), Some(checkpoint_id)).await?))
}

/// A checkpoint of the thread.
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct CheckpointConfig {
    checkpoint_id: Option<String>,
    checkpoint_ns: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StateAtCheckpoint)]
pub struct StateCheckpointBody {
    checkpoint: CheckpointConfig,
}

#[utoipa::path(
    tag = "threads",
    params(("thread_id" = String, Path)),
    request_body = StateCheckpointBody,
    responses(
        (status = 200, body = super::openapi::ThreadState),
        (status = 404, description = "No such thread or checkpoint", body = super::ErrorBody),
    ),
)]
#[post("/threads/{thread_id}/state/checkpoint")]
pub async fn state_at_checkpoint_post(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<StateCheckpointBody>,
) -> Result<HttpResponse, ApiError> {
    let cp = body.into_inner().checkpoint;
    let id = cp
        .checkpoint_id
        .ok_or_else(|| ApiError::validation("checkpoint.checkpoint_id is required"))?;
    Ok(HttpResponse::Ok().json(
        state(
            &db,
            path.into_inner(),
            cp.checkpoint_ns.unwrap_or_default(),
            Some(id),
        )
        .await?,
    ))
}

/// A state update: a new checkpoint on top of `checkpoint_id` (default: the latest).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StateUpdate)]
pub struct UpdateBody {
    /// Values to write (an object).
    #[schema(value_type = Option<Object>)]
    values: Option<Value>,
    as_node: Option<String>,
    checkpoint: Option<CheckpointConfig>,
    checkpoint_id: Option<String>,
}

#[utoipa::path(
    tag = "threads",
    params(("thread_id" = String, Path)),
    request_body = UpdateBody,
    responses(
        (status = 200, body = super::openapi::StateUpdated),
        (status = 404, description = "No such thread or checkpoint", body = super::ErrorBody),
    ),
)]
#[post("/threads/{thread_id}/state")]
pub async fn update_state(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<UpdateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let values = match body.values {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(ApiError::validation("values must be an object")),
    };
    let update = StateUpdate {
        thread_id: path.into_inner(),
        values,
        as_node: body.as_node,
        checkpoint_id: body
            .checkpoint_id
            .or(body.checkpoint.and_then(|c| c.checkpoint_id)),
        source: "update",
        metadata: Default::default(),
    };
    let rec = db.update_state(update).await?;
    let cp = checkpoint_ref(&rec.thread_id, &rec.checkpoint_ns, &rec.checkpoint_id);
    Ok(HttpResponse::Ok()
        .json(json!({ "checkpoint": cp, "configurable": cp, "checkpoint_id": rec.checkpoint_id })))
}

/// `before` in the three shapes clients send: `"id"`, `{"checkpoint_id"}`,
/// `{"configurable": {"checkpoint_id"}}`.
fn before_id(before: Option<Value>) -> Result<Option<String>, ApiError> {
    let id = match &before {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => Some(s.as_str()),
        Some(v) => v
            .get("checkpoint_id")
            .or_else(|| v.get("configurable").and_then(|c| c.get("checkpoint_id")))
            .and_then(Value::as_str),
    };
    id.map(|s| Some(s.to_string()))
        .ok_or_else(|| ApiError::validation("before must name a checkpoint_id"))
}

async fn history(
    db: &Persistence,
    thread_id: String,
    limit: i64,
    before: Option<String>,
    metadata: Option<Value>,
    ns: String,
) -> Result<HttpResponse, ApiError> {
    let (limit, _) = page(limit, 0, 1000)?;
    let query = CheckpointQuery {
        thread_id: thread_id.clone(),
        checkpoint_ns: Some(ns),
        metadata,
        before,
        limit,
        max_bytes: db.page_max_bytes(),
    };
    let records = db.list_checkpoints(query).await?;
    if records.is_empty() {
        db.get_thread(thread_id).await?;
    }
    let shape = graph_shape(db, records.first()).await?;
    Ok(json_array(records, |r| thread_state(r, &shape)))
}

/// A page of the thread's states, newest first.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = HistoryRequest)]
pub struct HistoryBody {
    #[serde(default = "default_limit")]
    #[schema(default = 10, minimum = 1, maximum = 1000)]
    limit: i64,
    /// Only states older than this checkpoint: its id, `{"checkpoint_id"}` or
    /// `{"configurable": {"checkpoint_id"}}`.
    #[schema(value_type = Option<super::openapi::BeforeCheckpoint>)]
    before: Option<Value>,
    /// Only checkpoints whose metadata contains this object.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    checkpoint: Option<CheckpointConfig>,
}

#[utoipa::path(
    tag = "threads",
    params(("thread_id" = String, Path)),
    request_body = HistoryBody,
    responses(
        (status = 200, body = [super::openapi::ThreadState]),
        (status = 404, description = "No such thread", body = super::ErrorBody),
    ),
)]
#[post("/threads/{thread_id}/history")]
pub async fn history_post(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<HistoryBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let ns = body
        .checkpoint
        .and_then(|c| c.checkpoint_ns)
        .unwrap_or_default();
    let metadata = filter_or_none(body.metadata, "metadata")?;
    history(
        &db,
        path.into_inner(),
        body.limit,
        before_id(body.before)?,
        metadata,
        ns,
    )
    .await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[serde(default = "default_limit")]
    #[param(default = 10, minimum = 1, maximum = 1000)]
    limit: i64,
    /// Only states older than this checkpoint id.
    before: Option<String>,
}

#[utoipa::path(
    tag = "threads",
    params(("thread_id" = String, Path), HistoryQuery),
    responses(
        (status = 200, body = [super::openapi::ThreadState]),
        (status = 404, description = "No such thread", body = super::ErrorBody),
    ),
)]
#[get("/threads/{thread_id}/history")]
pub async fn history_get(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    q: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    history(
        &db,
        path.into_inner(),
        q.limit,
        q.before,
        None,
        String::new(),
    )
    .await
}
