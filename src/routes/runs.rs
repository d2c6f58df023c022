//! Runs: streamed (SSE), waited for, or in the background; joined, rejoined, cancelled, listed.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, Responder, delete, get, post, web};
use actix_web_lab::sse;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::ownership::OwnedThread;
use super::{object_or_none, page};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::model::{MultitaskStrategy, NewThread, RawJson, RunEvent, RunStatus, StreamMode, over};
use crate::runs::{
    CancelAction, Durability, Launched, Live, Of, OnCompletion, OnDisconnect, RunRequest, Runner,
    Stop, StreamSlot, Subscription,
};

/// A run to start.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[schema(as = RunCreate)]
pub struct RunBody {
    /// A graph id (`agent`, `legacy`), its system assistant's UUID, or an assistant's.
    assistant_id: String,
    /// The graph's input (any JSON).
    input: Option<Value>,
    /// The run's config (`configurable.user_id`: the user it acts for), over its assistant's.
    config: Option<Value>,
    /// The run's context, over its assistant's.
    #[schema(value_type = Option<Object>)]
    context: Option<Value>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// `create` makes the thread when it does not exist; anything else: 404 then.
    if_not_exists: Option<String>,
    /// `{"resume": value}` answers an interrupt (goto and update are not supported).
    #[schema(value_type = Option<Object>)]
    command: Option<Value>,
    /// A mode or a list of modes: `values`, `updates`, `messages`, `messages-tuple`, `custom`,
    /// `events`, `debug`, `tasks`, `checkpoints`, `tools`, `lifecycle`.
    #[schema(value_type = Option<super::openapi::StreamModes>)]
    stream_mode: Option<Value>,
    /// Keep the run's events so a client can rejoin the stream with `Last-Event-ID`.
    #[serde(default)]
    stream_resumable: bool,
    /// Stream the events of subgraphs too (a graph worker's graphs; mnemo's own have none).
    #[serde(default)]
    stream_subgraphs: bool,
    #[schema(value_type = Option<MultitaskStrategy>)]
    multitask_strategy: Option<String>,
    #[schema(value_type = Option<OnDisconnect>)]
    on_disconnect: Option<String>,
    /// `{"checkpoint_id": …}`: run from that checkpoint.
    #[schema(value_type = Option<Object>)]
    checkpoint: Option<Value>,
    checkpoint_id: Option<String>,
    #[schema(value_type = Option<OnCompletion>)]
    on_completion: Option<String>,
    /// When checkpoints are committed: `sync` (each step before its events are sent), `async`
    /// (default: in the background, before the run ends) or `exit` (only the last step).
    #[schema(value_type = Option<Durability>)]
    durability: Option<String>,
    /// `"*"` or a list of node names.
    #[schema(value_type = Option<super::openapi::NodeNames>)]
    interrupt_before: Option<Value>,
    /// `"*"` or a list of node names.
    #[schema(value_type = Option<super::openapi::NodeNames>)]
    interrupt_after: Option<Value>,
}

/// What a run takes from its assistant: its config, context and metadata.
struct Defaults {
    config: Value,
    context: Value,
    metadata: Value,
}

/// The assistant a run names, as `principal` may see it: a graph or its system assistant, or
/// an assistant made of one (its config, context and metadata go under the run's own).
async fn assistant_of(
    runner: &Runner,
    principal: &Principal,
    assistant_id: &str,
) -> Result<(Of, Defaults), ApiError> {
    let system = || Defaults {
        config: json!({}),
        context: json!({}),
        metadata: json!({ "created_by": "system" }),
    };
    // a graph's system assistant, by the graph's name or its UUID
    if let Ok(of) = Of::system(assistant_id) {
        return Ok((of, system()));
    }
    let db = runner.db();
    let (id, graph_id, defaults) = match uuid::Uuid::parse_str(assistant_id) {
        Ok(uuid) => {
            let viewer = principal.bound_user().map(str::to_string);
            let a = db.get_assistant(uuid.to_string(), viewer).await?;
            let defaults = Defaults {
                config: a.config,
                context: a.context,
                metadata: a.metadata,
            };
            (a.assistant_id, a.graph_id, defaults)
        }
        // a graph worker's graph, by its name
        Err(_) => {
            let id = crate::graphs::system_assistant_id(assistant_id).to_string();
            (id, assistant_id.to_string(), system())
        }
    };
    let graph = super::assistants::graph_ref(db, &graph_id, true).await?;
    let of = Of {
        assistant_id: id,
        graph,
    };
    Ok((of, defaults))
}

/// The run a request body asks for (422 for an unknown graph, strategy or command; 404 for an
/// assistant the principal cannot see).
async fn request(
    principal: &Principal,
    runner: &Runner,
    thread_id: String,
    body: RunBody,
    stateless: bool,
) -> Result<RunRequest, ApiError> {
    // a user principal runs as itself: naming another user in the run's config or metadata is 403
    let named = [
        body.config
            .as_ref()
            .and_then(|c| c.pointer("/configurable/user_id")),
        body.metadata.as_ref().and_then(|m| m.get("user_id")),
    ];
    for named in named.into_iter().flatten() {
        principal.acting_user(Some(named.as_str().unwrap_or_default()))?;
    }
    let strategy = MultitaskStrategy::parse(body.multitask_strategy.as_deref())
        .map_err(ApiError::Validation)?;
    let checkpoint_id = body.checkpoint_id.or_else(|| {
        body.checkpoint
            .as_ref()
            .and_then(|c| c.get("checkpoint_id"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    // a stateless run's thread is deleted when the run ends, unless `on_completion: "keep"`;
    // stored resolved, so that any process executes the run as asked
    let on_completion = OnCompletion::parse(body.on_completion.as_deref(), stateless)?;
    // the whole request, kept with the run: whichever process claims it executes it from this
    let (of, defaults) = assistant_of(runner, principal, &body.assistant_id).await?;
    let config = over(
        &defaults.config,
        object_or_none(body.config, "config")?.as_ref(),
    );
    let context = over(
        &defaults.context,
        object_or_none(body.context, "context")?.as_ref(),
    );
    let kwargs = json!({
        "input": body.input, "config": config, "context": context, "command": body.command,
        "stream_mode": body.stream_mode, "stream_resumable": body.stream_resumable,
        "stream_subgraphs": body.stream_subgraphs,
        "checkpoint_id": checkpoint_id, "on_disconnect": body.on_disconnect,
        "on_completion": on_completion.as_str(), "durability": body.durability,
        "interrupt_before": body.interrupt_before, "interrupt_after": body.interrupt_after,
    });
    // the run's metadata: its assistant's, under the config's and the request's
    let mut metadata = over(&defaults.metadata, config.get("metadata"));
    metadata = over(
        &metadata,
        object_or_none(body.metadata, "metadata")?.as_ref(),
    );
    if let Value::Object(m) = &mut metadata {
        m.insert("assistant_id".into(), json!(of.assistant_id));
    }
    Ok(RunRequest::parse(
        thread_id,
        of,
        metadata,
        kwargs,
        strategy,
        principal.bound_user().map(str::to_string),
        stateless || body.if_not_exists.as_deref() == Some("create"),
    )?)
}

/// Cancels a run if the request waiting on it is dropped (its client went away) before the
/// run ended.
struct CancelOnDrop(Option<(Runner, String, String)>);

impl CancelOnDrop {
    fn new(armed: bool, runner: &Runner, run: &crate::model::Run) -> CancelOnDrop {
        CancelOnDrop(armed.then(|| (runner.clone(), run.thread_id.clone(), run.run_id.clone())))
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some((runner, thread_id, run_id)) = self.0.take() {
            log::info!("client left: cancelling run {run_id}");
            actix_web::rt::spawn(async move {
                if let Err(e) = runner.cancel(&thread_id, &run_id, Stop::Interrupt).await {
                    log::warn!("could not cancel run {run_id}: {e:?}");
                }
            });
        }
    }
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

async fn wait(
    principal: &Principal,
    runner: &Runner,
    thread_id: String,
    body: RunBody,
    stateless: bool,
) -> Result<HttpResponse, ApiError> {
    let req = request(principal, runner, thread_id, body, stateless).await?;
    let cancel_later = req.on_disconnect == OnDisconnect::Cancel;
    let launched = runner.launch(req, false).await?;
    let run = launched.run().clone();
    let guard = CancelOnDrop::new(cancel_later, runner, &run);
    let values = match launched {
        Launched::Here(live, _) => live.outcome().await.1,
        Launched::Queued(_) => runner.ended(&run.thread_id, &run.run_id).await?,
    };
    guard.disarm();
    Ok(final_values(&run.thread_id, &run.run_id, values))
}

#[utoipa::path(
    tag = "runs",
    params(("thread_id" = String, Path)),
    request_body = RunBody,
    responses(
        (status = 200, description = "The thread's values when the run ended (any JSON the graph keeps)", body = Object, headers(
            ("Location" = String, description = "The run's join URL"),
            ("Content-Location" = String, description = "The run's URL"),
        )),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
        (status = 404, description = "No such thread (without `if_not_exists: create`)", body = super::ErrorBody),
        (status = 409, description = "The thread is busy (`multitask_strategy: reject`)", body = super::ErrorBody),
    ),
)]
#[post("/threads/{thread_id}/runs/wait")]
pub async fn wait_on_thread(
    _owned: OwnedThread,
    principal: Principal,
    runner: web::Data<Runner>,
    path: web::Path<String>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    wait(
        &principal,
        &runner,
        path.into_inner(),
        body.into_inner(),
        false,
    )
    .await
}

/// A run on a new thread of its own.
#[utoipa::path(
    tag = "runs",
    request_body = RunBody,
    responses(
        (status = 200, description = "The thread's values when the run ended (any JSON the graph keeps)", body = Object, headers(
            ("Location" = String, description = "The run's join URL"),
            ("Content-Location" = String, description = "The run's URL"),
        )),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
    ),
)]
#[post("/runs/wait")]
pub async fn wait_stateless(
    principal: Principal,
    runner: web::Data<Runner>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    let thread_id = uuid::Uuid::now_v7().to_string();
    wait(&principal, &runner, thread_id, body.into_inner(), true).await
}

/// Time between `: heartbeat` comments (the JS SDK arms its reconnect timer from their interval).
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a stream's events come from.
enum Source {
    /// A run this process executes, and the subscription its stream was created with.
    Live(Arc<Live>, Option<Subscription>),
    /// A run read from the database: ended, or executed by another process.
    Stored { thread_id: String, run_id: String },
}

/// Streams a run's events after `after` as SSE: each event keeps its name, and its sequence
/// number as `id` when the run is resumable; `: heartbeat` comments while idle. The stream ends
/// with the run (or at shutdown). With `cancel_on_disconnect`, a client that leaves cancels the
/// run at once: the server notices the closed connection, not a failed write.
fn event_stream(
    runner: Runner,
    slot: Option<StreamSlot>,
    source: Source,
    after: i64,
    only: Option<Vec<String>>,
    cancel_on_disconnect: bool,
) -> impl Responder {
    let (thread_id, run_id) = match &source {
        Source::Live(live, _) => (live.run.thread_id.clone(), live.run.run_id.clone()),
        Source::Stored { thread_id, run_id } => (thread_id.clone(), run_id.clone()),
    };
    let base = format!("/threads/{thread_id}/runs/{run_id}");
    let (sse_tx, sse_rx) = mpsc::channel::<sse::Event>(64);
    actix_web::rt::spawn(async move {
        // the user's stream counts until its producer ends
        let _slot = slot;
        let (ids, past, mut rx) = match source {
            Source::Live(live, subscription) => {
                let (past, rx) = subscription.unwrap_or_else(|| live.subscribe(after));
                (live.resumable, past, rx)
            }
            Source::Stored { .. } => {
                // bounded: the reading waits for the client
                let (tx, rx) = mpsc::channel(64);
                actix_web::rt::spawn(runner.clone().follow_stored(
                    run_id.clone(),
                    thread_id.clone(),
                    after,
                    tx,
                ));
                (true, Vec::new(), Some(rx))
            }
        };
        let wanted = |e: &RunEvent| {
            only.as_ref()
                .is_none_or(|o| o.contains(&e.event) || e.event == "metadata" || e.event == "error")
        };
        let event = |e: &RunEvent| {
            let data = sse::Data::new(e.data.clone()).event(e.event.clone());
            sse::Event::from(if ids {
                data.id(e.seq.to_string())
            } else {
                data
            })
        };
        for e in past.iter().filter(|e| wanted(e)) {
            if sse_tx.send(event(e)).await.is_err() {
                return;
            }
        }
        let Some(rx) = rx.as_mut() else {
            return;
        };
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(e) if wanted(&e) => {
                        if sse_tx.send(event(&e)).await.is_err() {
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
                _ = sse_tx.closed() => {
                    if cancel_on_disconnect {
                        log::info!("client left: cancelling run {run_id}");
                        if let Err(e) = runner.cancel(&thread_id, &run_id, Stop::Interrupt).await {
                            log::warn!("could not cancel run {run_id}: {e:?}");
                        }
                    }
                    break;
                }
            }
        }
    });
    sse::Sse::from_infallible_receiver(sse_rx)
        .customize()
        .insert_header(("Location", format!("{base}/stream")))
        .insert_header(("Content-Location", base))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
}

async fn stream(
    principal: Principal,
    runner: Runner,
    thread_id: String,
    body: RunBody,
    stateless: bool,
) -> Result<impl Responder, ApiError> {
    let req = request(&principal, &runner, thread_id, body, stateless).await?;
    let cancel_later = req.on_disconnect == OnDisconnect::Cancel;
    let slot = runner.open_stream(principal.bound_user())?;
    // errors (404, 409, 422) are answered as JSON, before any byte of the stream
    let launched = runner.launch(req, true).await?;
    let source = match launched {
        Launched::Here(live, subscription) => Source::Live(live, subscription),
        // executed by whichever process claims it: followed from the database
        Launched::Queued(run) => Source::Stored {
            thread_id: run.thread_id,
            run_id: run.run_id,
        },
    };
    Ok(event_stream(runner, slot, source, 0, None, cancel_later))
}

#[utoipa::path(
    tag = "runs",
    params(("thread_id" = String, Path)),
    request_body = RunBody,
    responses(
        (status = 200, description = "The run's events (server-sent events: `metadata`, then the modes asked for, `error` on failure)", content_type = "text/event-stream", body = super::openapi::SseEvent),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
        (status = 404, description = "No such thread (without `if_not_exists: create`)", body = super::ErrorBody),
        (status = 409, description = "The thread is busy (`multitask_strategy: reject`)", body = super::ErrorBody),
    ),
)]
#[post("/threads/{thread_id}/runs/stream")]
pub async fn stream_on_thread(
    _owned: OwnedThread,
    principal: Principal,
    runner: web::Data<Runner>,
    path: web::Path<String>,
    body: web::Json<RunBody>,
) -> Result<impl Responder, ApiError> {
    stream(
        principal,
        runner.get_ref().clone(),
        path.into_inner(),
        body.into_inner(),
        false,
    )
    .await
}

/// A streamed run on a new thread of its own.
#[utoipa::path(
    tag = "runs",
    request_body = RunBody,
    responses(
        (status = 200, description = "The run's events (server-sent events)", content_type = "text/event-stream", body = super::openapi::SseEvent),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
    ),
)]
#[post("/runs/stream")]
pub async fn stream_stateless(
    principal: Principal,
    runner: web::Data<Runner>,
    body: web::Json<RunBody>,
) -> Result<impl Responder, ApiError> {
    stream(
        principal,
        runner.get_ref().clone(),
        uuid::Uuid::now_v7().to_string(),
        body.into_inner(),
        true,
    )
    .await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JoinQuery {
    /// Cancel the run when this client goes away (`true`/`1` or `false`/`0`).
    #[serde(default)]
    #[param(value_type = Option<bool>)]
    cancel_on_disconnect: Flag,
}

/// The modes a rejoin asks for: `stream_mode` repeated (`?stream_mode=values&stream_mode=updates`,
/// as the SDKs send a list) or comma-separated; an empty value (the Python SDK sends
/// `stream_mode=` when it has none) asks for nothing in particular. `None`: every event.
fn rejoin_modes(query: &str) -> Result<Option<Vec<String>>, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::validation(e.to_string()))?;
    let modes: Vec<Value> = pairs
        .iter()
        .filter(|(k, _)| k == "stream_mode")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| json!(m))
        .collect();
    if modes.is_empty() {
        return Ok(None);
    }
    let events = StreamMode::events_of(&Value::Array(modes)).map_err(ApiError::Validation)?;
    Ok(Some(events.into_iter().map(str::to_string).collect()))
}

/// Rejoins a run's stream. With `Last-Event-ID`, every event after it is sent again first
/// (events of resumable runs are kept in the database, so this works on any replica and after
/// the run has ended); without it, only the events still to come.
#[utoipa::path(
    tag = "runs",
    params(
        ("thread_id" = String, Path),
        ("run_id" = String, Path),
        JoinQuery,
        ("stream_mode" = Option<Vec<StreamMode>>, Query, explode = true, description = "Only these modes' events (repeated, or comma-separated)"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Send again every event after this one"),
    ),
    responses(
        (status = 200, description = "The run's events (server-sent events)", content_type = "text/event-stream", body = super::openapi::SseEvent),
        (status = 404, description = "No such thread or run", body = super::ErrorBody),
        (status = 422, description = "An unknown stream mode, or a Last-Event-ID that is not an event id", body = super::ErrorBody),
    ),
)]
#[get("/threads/{thread_id}/runs/{run_id}/stream")]
pub async fn join_stream(
    _owned: OwnedThread,
    principal: Principal,
    runner: web::Data<Runner>,
    path: web::Path<(String, String)>,
    q: web::Query<JoinQuery>,
    http: HttpRequest,
) -> Result<impl Responder, ApiError> {
    let (thread_id, run_id) = path.into_inner();
    let last_event_id = match http.headers().get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::validation("Last-Event-ID must be an event id this server sent")
                })?,
        ),
    };
    let only = rejoin_modes(http.query_string())?;
    let runner = runner.get_ref().clone();
    let slot = runner.open_stream(principal.bound_user())?;
    let (source, after) = match runner.live(&thread_id, &run_id) {
        Some(live) => {
            let after = last_event_id.unwrap_or_else(|| live.last_seq());
            (Source::Live(live, None), after)
        }
        None => {
            runner
                .db()
                .get_run(thread_id.clone(), run_id.clone())
                .await?;
            let after = match last_event_id {
                Some(id) => id,
                None => runner.db().last_run_event(run_id.clone()).await?,
            };
            (Source::Stored { thread_id, run_id }, after)
        }
    };
    Ok(event_stream(
        runner,
        slot,
        source,
        after,
        only,
        q.cancel_on_disconnect.0,
    ))
}

fn default_true() -> bool {
    true
}

/// The original app's request: one user message to one agent, on a thread or a new one.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AgentStreamRequest)]
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
#[utoipa::path(
    tag = "runs",
    request_body = AgentStreamBody,
    responses(
        (status = 200, description = "The run's events (server-sent events: `values` and `messages`)", content_type = "text/event-stream", body = super::openapi::SseEvent),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
        (status = 404, description = "No such thread", body = super::ErrorBody),
        (status = 409, description = "The thread is busy", body = super::ErrorBody),
    ),
)]
#[post("/agent/stream")]
pub async fn agent_stream(
    principal: Principal,
    runner: web::Data<Runner>,
    body: web::Json<AgentStreamBody>,
) -> Result<impl Responder, ApiError> {
    let body = body.into_inner();
    if body.user_id.trim().is_empty() || body.message.trim().is_empty() {
        return Err(ApiError::validation(
            "user_id and message must not be empty",
        ));
    }
    principal.acting_user(Some(&body.user_id))?;
    let thread_id = match body.thread_id {
        Some(id) => {
            // not under /threads/{id}: the ownership check the thread routes get is made here
            super::ownership::check_thread(runner.db(), &principal, &id).await?;
            id
        }
        None => {
            let new = NewThread {
                thread_id: uuid::Uuid::now_v7().to_string(),
                metadata: RawJson::from_value(&json!({ "user_id": body.user_id })),
                owner: Some(body.user_id.clone()),
                do_nothing_if_exists: false,
            };
            runner.db().create_thread(new).await?.thread_id
        }
    };
    let run = RunBody {
        assistant_id: if body.use_v2_agent { "agent" } else { "legacy" }.into(),
        input: Some(json!({ "messages": [{ "role": "user", "content": body.message }] })),
        config: Some(json!({ "configurable": { "user_id": body.user_id } })),
        stream_mode: Some(json!(["values", "messages-tuple"])),
        ..RunBody::default()
    };
    stream(principal, runner.get_ref().clone(), thread_id, run, false).await
}

/// Starts a run in the background: answers with the run at once (`pending` while it waits for
/// its thread), its status then follows it.
async fn background(
    principal: &Principal,
    runner: &Runner,
    thread_id: String,
    body: RunBody,
    stateless: bool,
) -> Result<HttpResponse, ApiError> {
    let launched = runner
        .launch(
            request(principal, runner, thread_id, body, stateless).await?,
            false,
        )
        .await?;
    let run = launched.run();
    let location = format!("/threads/{}/runs/{}", run.thread_id, run.run_id);
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Location", location))
        .json(run))
}

#[utoipa::path(
    tag = "runs",
    params(("thread_id" = String, Path)),
    request_body = RunBody,
    responses(
        (status = 200, description = "The run, `pending` or `running`", body = crate::model::Run, headers(
            ("Content-Location" = String, description = "The run's URL"),
        )),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
        (status = 404, description = "No such thread (without `if_not_exists: create`)", body = super::ErrorBody),
        (status = 409, description = "The thread is busy (`multitask_strategy: reject`)", body = super::ErrorBody),
    ),
)]
#[post("/threads/{thread_id}/runs")]
pub async fn create_on_thread(
    _owned: OwnedThread,
    principal: Principal,
    runner: web::Data<Runner>,
    path: web::Path<String>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    background(
        &principal,
        &runner,
        path.into_inner(),
        body.into_inner(),
        false,
    )
    .await
}

/// A background run on a new thread of its own.
#[utoipa::path(
    tag = "runs",
    request_body = RunBody,
    responses(
        (status = 200, description = "The run, `pending` or `running`", body = crate::model::Run, headers(
            ("Content-Location" = String, description = "The run's URL"),
        )),
        (status = 403, description = "A user naming another user", body = super::ErrorBody),
    ),
)]
#[post("/runs")]
pub async fn create_stateless(
    principal: Principal,
    runner: web::Data<Runner>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    let thread_id = uuid::Uuid::now_v7().to_string();
    background(&principal, &runner, thread_id, body.into_inner(), true).await
}

/// Waits for a run to end, then answers the thread's values (with `__interrupt__` when the run
/// stopped on one).
#[utoipa::path(
    tag = "runs",
    params(("thread_id" = String, Path), ("run_id" = String, Path), JoinQuery),
    responses(
        (status = 200, description = "The thread's values when the run ended (any JSON the graph keeps)", body = Object, headers(
            ("Location" = String, description = "The run's join URL"),
            ("Content-Location" = String, description = "The run's URL"),
        )),
        (status = 404, description = "No such thread or run", body = super::ErrorBody),
    ),
)]
#[get("/threads/{thread_id}/runs/{run_id}/join")]
pub async fn join(
    _owned: OwnedThread,
    runner: web::Data<Runner>,
    path: web::Path<(String, String)>,
    q: web::Query<JoinQuery>,
) -> Result<HttpResponse, ApiError> {
    let (thread_id, run_id) = path.into_inner();
    if let Some(live) = runner.live(&thread_id, &run_id) {
        let guard = CancelOnDrop::new(q.cancel_on_disconnect.0, &runner, &live.run);
        let (_, values) = live.outcome().await;
        guard.disarm();
        return Ok(final_values(&thread_id, &run_id, values));
    }
    let values = runner.ended(&thread_id, &run_id).await?;
    Ok(final_values(&thread_id, &run_id, values))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CancelQuery {
    /// Answer once the run has stopped (`true`/`1` or `false`/`0`).
    #[serde(default)]
    #[param(value_type = Option<bool>)]
    wait: Flag,
    /// `interrupt` (default: keep what the run wrote) or `rollback` (delete the run and its
    /// checkpoints).
    #[param(value_type = Option<CancelAction>)]
    action: Option<String>,
}

/// A boolean query parameter (`wait`, `cancel_on_disconnect`): `1|true|0|false`, as the JS SDK
/// sends `1`/`0` and the Python SDK `true`/`false`.
#[derive(Deserialize, Default)]
#[serde(try_from = "String")]
struct Flag(bool);

impl TryFrom<String> for Flag {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "1" | "true" | "True" => Ok(Flag(true)),
            "0" | "false" | "False" => Ok(Flag(false)),
            other => Err(format!("expected true or false, not {other:?}")),
        }
    }
}

/// Cancels a run: `action=interrupt` (the default) keeps what it wrote, `rollback` deletes the
/// run and its checkpoints. With `wait=1`, answers once the run has stopped (200), else at once
/// (202). A run that has already ended is answered as it is.
#[utoipa::path(
    tag = "runs",
    params(("thread_id" = String, Path), ("run_id" = String, Path), CancelQuery),
    responses(
        (status = 200, description = "The run, stopped (or as it ended)", body = crate::model::Run),
        (status = 202, description = "The run, told to stop", body = crate::model::Run),
        (status = 404, description = "No such thread or run", body = super::ErrorBody),
    ),
)]
#[post("/threads/{thread_id}/runs/{run_id}/cancel")]
pub async fn cancel(
    _owned: OwnedThread,
    runner: web::Data<Runner>,
    path: web::Path<(String, String)>,
    q: web::Query<CancelQuery>,
) -> Result<HttpResponse, ApiError> {
    let (thread_id, run_id) = path.into_inner();
    let how = Stop::from(CancelAction::parse(q.action.as_deref())?);
    let live = runner.live(&thread_id, &run_id);
    let run = runner.cancel(&thread_id, &run_id, how).await?;
    match live {
        Some(live) if q.wait.0 => Ok(HttpResponse::Ok().json(live.outcome().await.0)),
        Some(_) => Ok(HttpResponse::Accepted().json(run)),
        None => Ok(HttpResponse::Ok().json(run)),
    }
}

/// The runs to cancel: `thread_id` and `run_ids`, or `status`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = RunsCancelRequest)]
pub struct CancelManyBody {
    thread_id: Option<String>,
    run_ids: Option<Vec<String>>,
    /// `pending`, `running` or `all`: every such run of this process (a user's own).
    status: Option<String>,
}

/// Cancels several runs: `{thread_id, run_ids}`, or every run of this process with `status`
/// `pending`, `running` or `all` (a user's own runs only).
#[utoipa::path(
    tag = "runs",
    params(CancelQuery),
    request_body = CancelManyBody,
    responses(
        (status = 204, description = "Told to stop"),
        (status = 404, description = "No such thread or run", body = super::ErrorBody),
    ),
)]
#[post("/runs/cancel")]
pub async fn cancel_many(
    principal: Principal,
    runner: web::Data<Runner>,
    q: web::Query<CancelQuery>,
    body: web::Json<CancelManyBody>,
) -> Result<HttpResponse, ApiError> {
    let how = Stop::from(CancelAction::parse(q.action.as_deref())?);
    let body = body.into_inner();
    crate::limits::check_ids("run_ids", body.run_ids.as_deref().unwrap_or_default())?;
    let targets: Vec<(String, String)> = match (body.thread_id, body.run_ids, body.status) {
        (Some(thread_id), Some(run_ids), None) => {
            super::ownership::check_thread(runner.db(), &principal, &thread_id).await?;
            run_ids
                .into_iter()
                .map(|r| (thread_id.clone(), r))
                .collect()
        }
        (None, None, Some(status)) => {
            let wanted: &[RunStatus] = match status.as_str() {
                "pending" => &[RunStatus::Pending],
                "running" => &[RunStatus::Running],
                "all" => &[RunStatus::Pending, RunStatus::Running],
                other => {
                    return Err(ApiError::validation(format!(
                        "status must be pending, running or all, not {other:?}"
                    )));
                }
            };
            let owner = principal.bound_user().map(str::to_string);
            runner.db().active_runs(wanted.to_vec(), owner).await?
        }
        _ => {
            return Err(ApiError::validation(
                "give either thread_id and run_ids, or status",
            ));
        }
    };
    for (thread_id, run_id) in targets {
        runner.cancel(&thread_id, &run_id, how).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a run that has ended (409 while it is pending or running).
#[utoipa::path(
    tag = "runs",
    params(("thread_id" = String, Path), ("run_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such thread or run", body = super::ErrorBody),
        (status = 409, description = "The run is pending or running", body = super::ErrorBody),
    ),
)]
#[delete("/threads/{thread_id}/runs/{run_id}")]
pub async fn delete_run(
    _owned: OwnedThread,
    runner: web::Data<Runner>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (thread_id, run_id) = path.into_inner();
    runner.db().delete_run(thread_id, run_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    tag = "runs",
    params(("thread_id" = String, Path), ("run_id" = String, Path)),
    responses(
        (status = 200, body = crate::model::Run),
        (status = 404, description = "No such thread or run", body = super::ErrorBody),
    ),
)]
#[get("/threads/{thread_id}/runs/{run_id}")]
pub async fn get(
    _owned: OwnedThread,
    runner: web::Data<Runner>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (thread_id, run_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(runner.db().get_run(thread_id, run_id).await?))
}

fn default_limit() -> i64 {
    10
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(default = "default_limit")]
    #[param(default = 10, minimum = 1, maximum = 1000)]
    limit: i64,
    #[serde(default)]
    #[param(default = 0, minimum = 0)]
    offset: i64,
    /// Only runs with this status.
    status: Option<String>,
}

#[utoipa::path(
    tag = "runs",
    params(("thread_id" = String, Path), ListQuery),
    responses(
        (status = 200, description = "The thread's runs, newest first", body = [crate::model::Run]),
        (status = 404, description = "No such thread", body = super::ErrorBody),
    ),
)]
#[get("/threads/{thread_id}/runs")]
pub async fn list(
    _owned: OwnedThread,
    runner: web::Data<Runner>,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = page(q.limit, q.offset, 1000)?;
    let thread_id = path.into_inner();
    let db = runner.db();
    let runs = db
        .list_runs(thread_id.clone(), q.status.clone(), limit, offset)
        .await?;
    if runs.is_empty() {
        db.get_thread(thread_id).await?;
    }
    Ok(HttpResponse::Ok().json(runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejoin_asks_for_modes_repeated_or_comma_separated_or_for_everything() {
        let modes = |q: &str| rejoin_modes(q).map_err(|_| ());
        assert_eq!(modes(""), Ok(None));
        assert_eq!(
            modes("stream_mode="),
            Ok(None),
            "the Python SDK's empty filter"
        );
        assert_eq!(
            modes("stream_mode=values&stream_mode=updates"),
            Ok(Some(vec!["values".into(), "updates".into()]))
        );
        assert_eq!(
            modes("stream_mode=values,%20messages-tuple&other=1"),
            Ok(Some(vec!["values".into(), "messages".into()]))
        );
        assert!(modes("stream_mode=nope").is_err());
    }
}
