//! `/threads/{id}/checkpoints…`: the raw checkpointer API for callers that run their own graphs,
//! mirroring LangGraph's `BaseCheckpointSaver`. Channel blobs and writes are typed opaque bytes
//! (base64 in JSON): mnemo stores and returns them byte for byte.

use actix_web::{
    HttpResponse, delete as delete_route, get as get_route, post, put as put_route, web,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ownership::OwnedThread;
use super::{filter_or_none, json_array, page, raw_object};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::model::{
    Blob, CheckpointQuery, CheckpointRecord, NewCheckpoint, NewWrites, RawJson, format_ts,
};
use crate::persistence::Persistence;

fn decode(field: &str, data: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(data)
        .map_err(|e| ApiError::validation(format!("{field}: invalid base64: {e}")))
}

/// A checkpoint tuple on the wire.
fn tuple(rec: &CheckpointRecord) -> Value {
    let config = |id: &str| json!({ "thread_id": rec.thread_id, "checkpoint_ns": rec.checkpoint_ns, "checkpoint_id": id });
    json!({
        "config": config(&rec.checkpoint_id),
        "parent_config": rec.parent_checkpoint_id.as_deref().map(config),
        "checkpoint": rec.checkpoint,
        "metadata": rec.metadata,
        "created_at": format_ts(&rec.created_at),
        "blobs": rec.blobs.iter().map(|b| json!({
            "channel": b.channel, "version": b.version, "type": b.type_,
            "data": b.data.as_deref().map(|d| B64.encode(d)),
        })).collect::<Vec<_>>(),
        "pending_writes": rec.pending_writes.iter().map(|w| json!({
            "task_id": w.task_id, "task_path": w.task_path, "idx": w.idx, "channel": w.channel,
            "type": w.type_, "data": B64.encode(&w.data),
        })).collect::<Vec<_>>(),
    })
}

/// A channel value: a type tag and opaque bytes.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = BlobWrite)]
pub struct BlobBody {
    channel: String,
    version: String,
    #[serde(rename = "type")]
    type_: String,
    /// Base64 (null: no value).
    data: Option<String>,
    /// A JSON rendering of `data`, shown as the channel's value in the thread's state.
    value: Option<Value>,
}

/// A checkpoint to store, with the channel blobs it names.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = CheckpointPut)]
pub struct PutBody {
    #[serde(default)]
    checkpoint_ns: String,
    /// Default: `checkpoint.id`.
    checkpoint_id: Option<String>,
    parent_checkpoint_id: Option<String>,
    /// The checkpoint as the checkpointer writes it (an object mnemo keeps as sent).
    #[schema(value_type = Object)]
    checkpoint: RawJson,
    #[schema(value_type = Option<Object>)]
    metadata: Option<RawJson>,
    #[serde(default)]
    blobs: Vec<BlobBody>,
}

#[utoipa::path(
    put,
    path = "/threads/{thread_id}/checkpoints",
    tag = "checkpoints",
    params(("thread_id" = String, Path)),
    request_body = PutBody,
    responses(
        (status = 200, description = "Stored (the thread is made if needed)", body = super::openapi::CheckpointStored),
        (status = 404, description = "Another user's thread", body = super::ErrorBody),
    ),
)]
#[put_route("/threads/{thread_id}/checkpoints")]
pub async fn put(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<PutBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let checkpoint = body
        .checkpoint
        .checked_object("checkpoint")
        .map_err(ApiError::Validation)?;
    #[derive(Deserialize)]
    struct Id {
        id: Option<Value>,
    }
    let checkpoint_id = body
        .checkpoint_id
        .or_else(|| match checkpoint.fields::<Id>()?.id? {
            Value::String(id) => Some(id),
            _ => None,
        })
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::validation("checkpoint_id (or checkpoint.id) is required"))?;
    let blobs = body
        .blobs
        .into_iter()
        .map(|b| {
            let data = b
                .data
                .as_deref()
                .map(|d| decode("blobs.data", d))
                .transpose()?;
            Ok(Blob {
                channel: b.channel,
                version: b.version,
                type_: b.type_,
                data,
                value: b.value,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let metadata = raw_object(body.metadata, "metadata")?;
    let new = NewCheckpoint {
        thread_id: path.into_inner(),
        checkpoint_ns: body.checkpoint_ns,
        checkpoint_id,
        parent_checkpoint_id: body.parent_checkpoint_id,
        checkpoint,
        metadata,
        blobs,
    };
    let reply = json!({ "thread_id": new.thread_id, "checkpoint_ns": new.checkpoint_ns, "checkpoint_id": new.checkpoint_id });
    db.put_checkpoint(new).await?;
    Ok(HttpResponse::Ok().json(reply))
}

/// One pending write: a channel, a type tag and opaque bytes.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = PendingWrite)]
pub struct WriteBody {
    channel: String,
    #[serde(rename = "type")]
    type_: String,
    /// Base64.
    data: String,
    /// A JSON rendering of `data`, shown as the task's result in the thread's state and history.
    #[schema(value_type = Option<Object>)]
    value: Option<Value>,
}

/// A task's pending writes against a checkpoint.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = PendingWrites)]
pub struct WritesBody {
    #[serde(default)]
    checkpoint_ns: String,
    task_id: String,
    #[serde(default)]
    task_path: String,
    writes: Vec<WriteBody>,
}

#[utoipa::path(
    put,
    path = "/threads/{thread_id}/checkpoints/{checkpoint_id}/writes",
    tag = "checkpoints",
    params(("thread_id" = String, Path), ("checkpoint_id" = String, Path)),
    request_body = WritesBody,
    responses(
        (status = 204, description = "Stored"),
        (status = 404, description = "No such thread or checkpoint", body = super::ErrorBody),
    ),
)]
#[put_route("/threads/{thread_id}/checkpoints/{checkpoint_id}/writes")]
pub async fn put_writes(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<(String, String)>,
    body: web::Json<WritesBody>,
) -> Result<HttpResponse, ApiError> {
    let (thread_id, checkpoint_id) = path.into_inner();
    let body = body.into_inner();
    let writes = body
        .writes
        .into_iter()
        .map(|w| Ok((w.channel, w.type_, decode("writes.data", &w.data)?, w.value)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let new = NewWrites {
        thread_id,
        checkpoint_ns: body.checkpoint_ns,
        checkpoint_id,
        task_id: body.task_id,
        task_path: body.task_path,
        writes,
    };
    db.put_writes(new).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NsQuery {
    /// The checkpoint namespace (default: the root, ``).
    #[serde(default)]
    checkpoint_ns: String,
}

async fn one(
    db: &Persistence,
    thread_id: String,
    ns: String,
    id: Option<String>,
) -> Result<HttpResponse, ApiError> {
    match db.get_checkpoint(thread_id, ns, id).await? {
        Some(rec) => Ok(HttpResponse::Ok().json(tuple(&rec))),
        None => Err(ApiError::NotFound("Checkpoint not found".into())),
    }
}

#[utoipa::path(
    get,
    path = "/threads/{thread_id}/checkpoints/latest",
    tag = "checkpoints",
    params(("thread_id" = String, Path), NsQuery),
    responses(
        (status = 200, body = super::openapi::CheckpointTuple),
        (status = 404, description = "No checkpoint", body = super::ErrorBody),
    ),
)]
#[get_route("/threads/{thread_id}/checkpoints/latest")]
pub async fn latest(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    q: web::Query<NsQuery>,
) -> Result<HttpResponse, ApiError> {
    one(&db, path.into_inner(), q.into_inner().checkpoint_ns, None).await
}

#[utoipa::path(
    get,
    path = "/threads/{thread_id}/checkpoints/{checkpoint_id}",
    tag = "checkpoints",
    params(("thread_id" = String, Path), ("checkpoint_id" = String, Path), NsQuery),
    responses(
        (status = 200, body = super::openapi::CheckpointTuple),
        (status = 404, description = "No such checkpoint", body = super::ErrorBody),
    ),
)]
#[get_route("/threads/{thread_id}/checkpoints/{checkpoint_id}")]
pub async fn get(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<(String, String)>,
    q: web::Query<NsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (thread_id, checkpoint_id) = path.into_inner();
    one(
        &db,
        thread_id,
        q.into_inner().checkpoint_ns,
        Some(checkpoint_id),
    )
    .await
}

fn default_list_limit() -> i64 {
    100
}

/// The thread's checkpoints, newest first.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = CheckpointSearch)]
pub struct SearchBody {
    /// `None` lists every namespace.
    checkpoint_ns: Option<String>,
    /// Only checkpoints whose metadata contains this object.
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
    /// Only checkpoints older than this id.
    before: Option<String>,
    #[serde(default = "default_list_limit")]
    #[schema(default = 100, minimum = 1, maximum = 1000)]
    limit: i64,
}

#[utoipa::path(
    tag = "checkpoints",
    params(("thread_id" = String, Path)),
    request_body = SearchBody,
    responses(
        (status = 200, body = [super::openapi::CheckpointTuple]),
        (status = 404, description = "Another user's thread", body = super::ErrorBody),
    ),
)]
#[post("/threads/{thread_id}/checkpoints/search")]
pub async fn search(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<SearchBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (limit, _) = page(body.limit, 0, 1000)?;
    let query = CheckpointQuery {
        thread_id: path.into_inner(),
        checkpoint_ns: body.checkpoint_ns,
        metadata: filter_or_none(body.filter, "filter")?,
        before: body.before,
        limit,
        max_bytes: db.page_max_bytes(),
    };
    let records = db.list_checkpoints(query).await?;
    Ok(json_array(records, tuple))
}

#[utoipa::path(
    delete,
    path = "/threads/{thread_id}/checkpoints",
    tag = "checkpoints",
    params(("thread_id" = String, Path)),
    responses(
        (status = 204, description = "Every checkpoint of the thread deleted"),
        (status = 404, description = "Another user's thread", body = super::ErrorBody),
    ),
)]
#[delete_route("/threads/{thread_id}/checkpoints")]
pub async fn delete(
    _owned: OwnedThread,
    db: web::Data<Persistence>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    db.delete_checkpoints(path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = DeleteForRuns)]
pub struct DeleteForRunsBody {
    run_ids: Vec<String>,
}

/// The checkpointer's `delete_for_runs`: deletes the checkpoints the runs wrote (metadata
/// `run_id`), in every thread and namespace.
#[utoipa::path(
    tag = "checkpoints",
    request_body = DeleteForRunsBody,
    responses((status = 200, body = super::openapi::DeleteResult)),
)]
#[post("/checkpoints/delete_for_runs")]
pub async fn delete_for_runs(
    principal: Principal,
    db: web::Data<Persistence>,
    body: web::Json<DeleteForRunsBody>,
) -> Result<HttpResponse, ApiError> {
    let run_ids = body.into_inner().run_ids;
    crate::limits::check_ids("run_ids", &run_ids)?;
    let owner = principal.bound_user().map(str::to_string);
    let deleted = db.delete_for_runs(run_ids, owner).await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted_count": deleted })))
}
