//! Runs: `runs/wait` (stateful and stateless), and reading a thread's runs.

use actix_web::{HttpResponse, Responder, get, post, web};
use actix_web_lab::sse;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{object_or_none, page, without_nul};
use crate::error::ApiError;
use crate::graphs;
use crate::model::NewThread;
use crate::persistence::Persistence;
use crate::runner::{self, RunRequest, run_to_end};

#[derive(Deserialize)]
pub struct RunBody {
    assistant_id: String,
    input: Option<Value>,
    config: Option<Value>,
    metadata: Option<Value>,
    if_not_exists: Option<String>,
    command: Option<Value>,
    stream_mode: Option<Value>,
}

/// The run a request body asks for (422 for an unknown assistant or an unsupported command).
fn request(thread_id: String, body: RunBody, stateless: bool) -> Result<RunRequest, ApiError> {
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
    let command = resume.as_ref().map(|r| json!({ "resume": r }));
    let kwargs = json!({ "input": input, "config": body.config, "command": command, "stream_mode": body.stream_mode });
    Ok(RunRequest {
        thread_id,
        graph,
        input,
        config: body.config.unwrap_or_else(|| json!({})),
        metadata: object_or_none(body.metadata, "metadata")?.unwrap_or_else(|| json!({})),
        kwargs,
        create_thread: stateless || body.if_not_exists.as_deref() == Some("create"),
        resume,
    })
}

async fn wait(
    db: &Persistence,
    thread_id: String,
    body: RunBody,
    stateless: bool,
) -> Result<HttpResponse, ApiError> {
    let (run, values) = run_to_end(db, request(thread_id, body, stateless)?).await?;
    Ok(final_values(&run.thread_id, &run.run_id, values))
}

/// A run's final values, with the headers the SDKs read (`Location` to join it again,
/// `Content-Location` naming the run).
fn final_values(thread_id: &str, run_id: &str, values: Value) -> HttpResponse {
    let base = format!("/threads/{thread_id}/runs/{run_id}");
    HttpResponse::Ok()
        .insert_header(("Location", format!("{base}/join")))
        .insert_header(("Content-Location", base))
        .json(values)
}

/// The stream modes mnemo emits, by the SSE event name they produce.
fn modes(stream_mode: &Option<Value>) -> Result<Vec<&'static str>, ApiError> {
    let asked: Vec<String> = match stream_mode {
        None | Some(Value::Null) => vec!["values".into()],
        Some(Value::String(m)) => vec![m.clone()],
        Some(Value::Array(ms)) => ms
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect(),
        Some(_) => {
            return Err(ApiError::validation(
                "stream_mode must be a string or a list of strings",
            ));
        }
    };
    let mut events = Vec::new();
    for m in &asked {
        match m.as_str() {
            "values" => events.push("values"),
            "updates" => events.push("updates"),
            "messages-tuple" => events.push("messages"),
            // accepted; mnemo's graphs emit nothing in these modes yet
            "custom" | "messages" | "events" | "debug" | "tasks" | "checkpoints" | "tools"
            | "lifecycle" => {}
            other => {
                return Err(ApiError::validation(format!(
                    "unknown stream_mode {other:?}"
                )));
            }
        }
    }
    Ok(events)
}

/// Time between `: heartbeat` comments (the JS SDK arms its reconnect timer from their interval).
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

async fn stream(
    db: Persistence,
    thread_id: String,
    body: RunBody,
    stateless: bool,
) -> Result<impl Responder, ApiError> {
    let wanted = modes(&body.stream_mode)?;
    let req = request(thread_id, body, stateless)?;
    // errors (404, 409) are answered as JSON, before any byte of the stream
    let run = runner::start(&db, &req).await?;
    let base = format!("/threads/{}/runs/{}", run.thread_id, run.run_id);
    let (event_tx, mut event_rx) = mpsc::unbounded_channel();
    let (sse_tx, sse_rx) = mpsc::channel::<sse::Event>(64);
    // `thread_id` beyond LangGraph's fields: a stream that created its thread says which
    let metadata = json!({ "run_id": run.run_id, "attempt": 1, "thread_id": run.thread_id });
    // the run goes on to its end even when the client leaves
    actix_web::rt::spawn(async move {
        if let Err(e) = runner::execute(&db, run, &req, Some(event_tx)).await {
            log::warn!("run failed to finish: {e}");
        }
    });
    actix_web::rt::spawn(async move {
        let event = |name: &'static str, data: Value| {
            sse::Data::new_json(data)
                .ok()
                .map(|d| sse::Event::from(d.event(name)))
        };
        if let Some(e) = event("metadata", metadata)
            && sse_tx.send(e).await.is_err()
        {
            return;
        }
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                next = event_rx.recv() => match next {
                    Some((name, data)) if name == "error" || wanted.contains(&name) => {
                        if let Some(e) = event(name, data)
                            && sse_tx.send(e).await.is_err()
                        {
                            break;
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = heartbeat.tick() => {
                    if sse_tx.send(sse::Event::Comment("heartbeat".into())).await.is_err() {
                        break;
                    }
                }
                _ = sse_tx.closed() => break,
            }
        }
    });
    Ok(sse::Sse::from_infallible_receiver(sse_rx)
        .customize()
        .insert_header(("Location", format!("{base}/stream")))
        .insert_header(("Content-Location", base))
        .insert_header(("Cache-Control", "no-store")))
}

#[post("/threads/{thread_id}/runs/stream")]
pub async fn stream_on_thread(
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<RunBody>,
) -> Result<impl Responder, ApiError> {
    stream(
        db.get_ref().clone(),
        path.into_inner(),
        body.into_inner(),
        false,
    )
    .await
}

/// A streamed run on a new thread of its own.
#[post("/runs/stream")]
pub async fn stream_stateless(
    db: web::Data<Persistence>,
    body: web::Json<RunBody>,
) -> Result<impl Responder, ApiError> {
    stream(
        db.get_ref().clone(),
        uuid::Uuid::now_v7().to_string(),
        body.into_inner(),
        true,
    )
    .await
}

fn default_true() -> bool {
    true
}

/// The original app's request: one user message to one agent, on a thread or a new one.
#[derive(Deserialize)]
pub struct AgentStreamBody {
    user_id: String,
    message: String,
    thread_id: Option<String>,
    #[serde(default = "default_true")]
    use_v2_agent: bool,
}

/// The original app's `POST /agent/stream`: the same run as `runs/stream` (`values` and
/// `messages-tuple`); `use_v2_agent` picks `agent`, else `legacy`. Without `thread_id` a thread
/// is created for the user, and the first event (`metadata`) names it.
#[post("/agent/stream")]
pub async fn agent_stream(
    db: web::Data<Persistence>,
    body: web::Json<AgentStreamBody>,
) -> Result<impl Responder, ApiError> {
    let body = body.into_inner();
    if body.user_id.trim().is_empty() || body.message.trim().is_empty() {
        return Err(ApiError::validation(
            "user_id and message must not be empty",
        ));
    }
    let thread_id = match body.thread_id {
        Some(id) => id,
        None => {
            let new = NewThread {
                thread_id: uuid::Uuid::now_v7().to_string(),
                metadata: json!({ "user_id": body.user_id }),
                do_nothing_if_exists: false,
            };
            db.create_thread(new).await?.thread_id
        }
    };
    let run = RunBody {
        assistant_id: if body.use_v2_agent { "agent" } else { "legacy" }.into(),
        input: Some(json!({ "messages": [{ "role": "user", "content": body.message }] })),
        config: Some(json!({ "configurable": { "user_id": body.user_id } })),
        metadata: None,
        if_not_exists: None,
        command: None,
        stream_mode: Some(json!(["values", "messages-tuple"])),
    };
    stream(db.get_ref().clone(), thread_id, run, false).await
}

/// Starts a run in the background: answers with the run at once, its status then follows it.
async fn background(
    db: Persistence,
    thread_id: String,
    body: RunBody,
    stateless: bool,
) -> Result<HttpResponse, ApiError> {
    let req = request(thread_id, body, stateless)?;
    let run = runner::start(&db, &req).await?;
    let location = format!("/threads/{}/runs/{}", run.thread_id, run.run_id);
    let started = run.clone();
    actix_web::rt::spawn(async move {
        if let Err(e) = runner::execute(&db, started, &req, None).await {
            log::warn!("background run failed to finish: {e}");
        }
    });
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Location", location))
        .json(run))
}

#[post("/threads/{thread_id}/runs")]
pub async fn create_on_thread(
    db: web::Data<Persistence>,
    path: web::Path<String>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    background(
        db.get_ref().clone(),
        path.into_inner(),
        body.into_inner(),
        false,
    )
    .await
}

/// A background run on a new thread of its own.
#[post("/runs")]
pub async fn create_stateless(
    db: web::Data<Persistence>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    background(
        db.get_ref().clone(),
        uuid::Uuid::now_v7().to_string(),
        body.into_inner(),
        true,
    )
    .await
}

/// How often `join` looks at a running run (it holds no connection in between).
const JOIN_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Waits for a run to end, then answers the thread's values (with `__interrupt__` when the run
/// stopped on one).
#[get("/threads/{thread_id}/runs/{run_id}/join")]
pub async fn join(
    db: web::Data<Persistence>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (thread_id, run_id) = path.into_inner();
    loop {
        let run = db.get_run(thread_id.clone(), run_id.clone()).await?;
        if run.status != "running" && run.status != "pending" {
            break;
        }
        tokio::time::sleep(JOIN_POLL).await;
    }
    let state = db
        .get_checkpoint(thread_id.clone(), String::new(), None)
        .await?;
    let mut values = state
        .as_ref()
        .map(|s| s.values())
        .unwrap_or_else(|| json!({}));
    let interrupts: Vec<Value> = state
        .iter()
        .flat_map(|s| s.interrupts())
        .flat_map(|(_, waiting)| waiting)
        .collect();
    if !interrupts.is_empty() {
        values["__interrupt__"] = json!(interrupts);
    }
    Ok(final_values(&thread_id, &run_id, values))
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
