//! Runs: `runs/wait` (stateful and stateless), and reading a thread's runs.

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{object_or_none, page, without_nul};
use crate::error::ApiError;
use crate::graphs;
use crate::persistence::Persistence;
use crate::runner::{RunRequest, run_to_end};

#[derive(Deserialize)]
pub struct RunBody {
    assistant_id: String,
    input: Option<Value>,
    config: Option<Value>,
    metadata: Option<Value>,
    if_not_exists: Option<String>,
    command: Option<Value>,
}

async fn wait(
    db: &Persistence,
    thread_id: String,
    body: RunBody,
    stateless: bool,
) -> Result<HttpResponse, ApiError> {
    let graph = graphs::resolve(&body.assistant_id).map_err(ApiError::Validation)?;
    let resume = match body.command {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) if c.keys().all(|k| k == "resume") => c.get("resume").cloned(),
        Some(_) => {
            return Err(ApiError::validation(
                "command supports resume only (not goto or update)",
            ));
        }
    };
    let input = body.input.unwrap_or(Value::Null);
    without_nul(&input, "input")?;
    let create_thread = stateless || body.if_not_exists.as_deref() == Some("create");
    let command = resume.as_ref().map(|r| json!({ "resume": r }));
    let kwargs = json!({ "input": input, "config": body.config, "command": command });
    let req = RunRequest {
        thread_id,
        graph,
        input,
        config: body.config.unwrap_or_else(|| json!({})),
        metadata: object_or_none(body.metadata, "metadata")?.unwrap_or_else(|| json!({})),
        kwargs,
        create_thread,
        resume,
    };
    let (run, values) = run_to_end(db, req).await?;
    let base = format!("/threads/{}/runs/{}", run.thread_id, run.run_id);
    Ok(HttpResponse::Ok()
        .insert_header(("Location", format!("{base}/join")))
        .insert_header(("Content-Location", base))
        .json(values))
}

#[post("/threads/{thread_id}/runs/wait")]
pub async fn wait_on_thread(
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    wait(&db, path.into_inner(), body.into_inner(), false).await
}

/// A run on a new thread of its own.
#[post("/runs/wait")]
pub async fn wait_stateless(
    db: web::Data<Persistence>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    wait(
        &db,
        uuid::Uuid::now_v7().to_string(),
        body.into_inner(),
        true,
    )
    .await
}

#[get("/threads/{thread_id}/runs/{run_id}")]
pub async fn get(
    db: web::Data<Persistence>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (thread_id, run_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(db.get_run(thread_id, run_id).await?))
}

fn default_limit() -> i64 {
    10
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default = "default_limit")]
    limit: i64,
    #[serde(default)]
    offset: i64,
}

#[get("/threads/{thread_id}/runs")]
pub async fn list(
    db: web::Data<Persistence>,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = page(q.limit, q.offset, 1000)?;
    let thread_id = path.into_inner();
    let runs = db.list_runs(thread_id.clone(), limit, offset).await?;
    if runs.is_empty() {
        db.get_thread(thread_id).await?;
    }
    Ok(HttpResponse::Ok().json(runs))
}
