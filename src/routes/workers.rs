//! `/workers/*`: the protocol graph workers (`mnemo-langgraph worker`) speak to serve a LangGraph
//! project's graphs behind mnemo. A worker registers its graphs, claims their runs from mnemo's
//! run queue (long-polling), holds each claimed run by renewing its lease, sends the run's events
//! (mnemo numbers them, stores them and streams them to the run's clients) and says how the run
//! ended, or hands it back when it stops. Services only: a worker acts for every user whose runs
//! it executes.

use std::time::Duration;

use actix_web::{HttpResponse, post, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::graphs::{Graph, system_assistant_id};
use crate::model::{NewAssistant, RunStatus, WorkerGraph};
use crate::runs::Runner;

/// Runs one claim may take, at most.
const CLAIM_MAX: i64 = 32;
/// The longest a claim waits for runs.
const WAIT_MAX_S: u64 = 30;
/// Events one request may carry, at most.
const EVENTS_MAX: usize = 1024;

fn service_only(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_service() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "Only a service may act as a graph worker".into(),
        ))
    }
}

fn worker_id(id: &str) -> Result<String, ApiError> {
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::validation(
            "worker_id must be 1 to 128 characters",
        ));
    }
    Ok(format!("worker:{id}"))
}

/// A graph a worker serves, as it describes it.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct GraphBody {
    graph_id: String,
    description: Option<String>,
    /// Its `input_schema`, `output_schema`, `state_schema`, `config_schema` and `context_schema`.
    #[schema(value_type = Object)]
    schemas: Value,
    /// Its nodes and edges, as `/assistants/{id}/graph` answers them.
    #[schema(value_type = Object)]
    drawing: Value,
    /// The same with its subgraphs expanded (`?xray=true`).
    #[schema(value_type = Option<Object>)]
    drawing_xray: Option<Value>,
    /// Its subgraphs' schemas (as `schemas`) by namespace, nested ones as `parent|child`.
    #[schema(value_type = Option<Object>)]
    subgraphs: Option<Value>,
    /// What its state channels hold before any write (a list reducer's `[]`), by channel:
    /// shown in its threads' states under what they hold.
    #[schema(value_type = Option<Object>)]
    state_defaults: Option<Value>,
}

/// The graphs a worker serves.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = WorkerGraphs)]
pub struct RegisterBody {
    worker_id: String,
    graphs: Vec<GraphBody>,
    /// How long they are served without a claim or another registration (default 30 s).
    ttl_s: Option<u64>,
}

/// Registers the graphs a worker serves; each gets a system assistant.
#[utoipa::path(
    tag = "workers",
    request_body = RegisterBody,
    responses(
        (status = 200, description = "The graphs' system assistants: `{assistants: [{graph_id, assistant_id}]}`", body = Object),
        (status = 403, description = "Not a service", body = super::ErrorBody),
        (status = 409, description = "A graph mnemo serves itself", body = super::ErrorBody),
    ),
)]
#[post("/workers/graphs")]
pub async fn register(
    principal: Principal,
    runner: web::Data<Runner>,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    service_only(&principal)?;
    let body = body.into_inner();
    worker_id(&body.worker_id)?;
    let ttl = Duration::from_secs(body.ttl_s.unwrap_or(30).clamp(3, 600));
    let mut graphs = Vec::new();
    let mut assistants = Vec::new();
    let mut system = Vec::new();
    for g in body.graphs {
        if Graph::named(&g.graph_id).is_ok() {
            return Err(ApiError::Conflict(format!(
                "Graph {} is mnemo's own",
                g.graph_id
            )));
        }
        if g.graph_id.is_empty() || g.graph_id.len() > 128 {
            return Err(ApiError::validation("graph_id must be 1 to 128 characters"));
        }
        let assistant_id = system_assistant_id(&g.graph_id).to_string();
        assistants.push(json!({ "graph_id": g.graph_id, "assistant_id": assistant_id }));
        system.push(NewAssistant {
            assistant_id,
            graph_id: g.graph_id.clone(),
            owner: None,
            name: g.graph_id.clone(),
            description: g.description.clone(),
            config: json!({}),
            context: json!({}),
            metadata: json!({ "created_by": "system" }),
            do_nothing_if_exists: true,
        });
        graphs.push(WorkerGraph {
            graph_id: g.graph_id,
            description: g.description,
            schemas: super::object_or_none(Some(g.schemas), "schemas")?.unwrap_or_default(),
            drawing: super::object_or_none(Some(g.drawing), "drawing")?.unwrap_or_default(),
            served_until: runner.lease_until_for(ttl),
            drawing_xray: super::object_or_none(g.drawing_xray, "drawing_xray")?,
            subgraphs: super::object_or_none(g.subgraphs, "subgraphs")?,
            state_defaults: super::object_or_none(g.state_defaults, "state_defaults")?,
        });
    }
    let db = runner.db();
    db.register_worker_graphs(graphs, runner.lease_until_for(ttl))
        .await?;
    db.ensure_system_assistants(system).await?;
    Ok(HttpResponse::Ok().json(json!({ "assistants": assistants })))
}

/// What a worker asks of the queue.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = WorkerClaim)]
pub struct ClaimBody {
    worker_id: String,
    /// The graphs whose runs it executes.
    graphs: Vec<String>,
    /// Runs it may take now (1 to 32).
    limit: i64,
    /// How long to wait for runs when none is queued (0 to 30 s).
    #[serde(default)]
    wait_s: u64,
    /// How long each claimed run is held without a heartbeat (3 to 600 s).
    lease_s: u64,
}

/// Claims queued runs of the worker's graphs, waiting up to `wait_s` for some: each is now
/// `running`, held by the worker for `lease_s`. Keeps the graphs served.
#[utoipa::path(
    tag = "workers",
    request_body = ClaimBody,
    responses(
        (status = 200, description = "The claimed runs: `[{run, graph_id, attempt, thread_metadata}]`", body = [Object]),
        (status = 403, description = "Not a service", body = super::ErrorBody),
    ),
)]
#[post("/workers/claim")]
pub async fn claim(
    principal: Principal,
    runner: web::Data<Runner>,
    body: web::Json<ClaimBody>,
) -> Result<HttpResponse, ApiError> {
    service_only(&principal)?;
    let body = body.into_inner();
    let holder = worker_id(&body.worker_id)?;
    if !(1..=CLAIM_MAX).contains(&body.limit) {
        return Err(ApiError::validation(format!(
            "limit must be between 1 and {CLAIM_MAX}"
        )));
    }
    if !(3..=600).contains(&body.lease_s) {
        return Err(ApiError::validation("lease_s must be between 3 and 600"));
    }
    crate::limits::check_ids("graphs", &body.graphs)?;
    if body
        .graphs
        .iter()
        .any(|g| Graph::named(g).is_ok() || g.is_empty())
    {
        return Err(ApiError::validation(
            "graphs names graphs a worker serves, not mnemo's own",
        ));
    }
    let db = runner.db();
    let lease = Duration::from_secs(body.lease_s);
    let wait = Duration::from_secs(body.wait_s.min(WAIT_MAX_S));
    let deadline = tokio::time::Instant::now() + wait;
    // subscribed before the first look, so that a run queued between a look and the wait is kept
    let mut moved = runner.queue_notices();
    // served while the worker waits here, and 30 s after (once, not at every look)
    let served = runner.lease_until_for((wait + Duration::from_secs(30)).max(lease));
    db.refresh_worker_graphs(body.graphs.clone(), served)
        .await?;
    loop {
        let claimed = db
            .claim_runs(
                body.limit,
                body.graphs.clone(),
                holder.clone(),
                runner.lease_until_for(lease),
            )
            .await?;
        if !claimed.is_empty() {
            let mut answer = Vec::with_capacity(claimed.len());
            for c in claimed {
                let (run_id, thread_id) = (&c.run.run_id, &c.run.thread_id);
                log::info!("run {run_id} on thread {thread_id} claimed by {holder}");
                // each attempt's stream starts with mnemo's metadata event, as for its own runs
                let metadata =
                    json!({ "run_id": run_id, "attempt": c.attempt, "thread_id": thread_id });
                let seq = db
                    .append_run_events(
                        run_id.clone(),
                        holder.clone(),
                        vec![("metadata".into(), metadata.to_string())],
                        None,
                    )
                    .await?;
                runner.events_stored(run_id);
                answer.push(
                    json!({ "run": c.run, "graph_id": c.run.graph_id, "attempt": c.attempt,
                            "thread_metadata": c.thread_metadata, "first_seq": seq + 1 }),
                );
            }
            return Ok(HttpResponse::Ok().json(answer));
        }
        // nothing yet: wait for the queue to move (a notice), at most a second between looks
        let wait = tokio::time::sleep_until(
            deadline.min(tokio::time::Instant::now() + Duration::from_secs(1)),
        );
        tokio::select! {
            _ = moved.recv() => {}
            _ = wait => {}
            _ = runner.stopping() => return Ok(HttpResponse::Ok().json(json!([]))),
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(HttpResponse::Ok().json(json!([])));
        }
    }
}

/// One event of a run, as a worker sends it.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct EventBody {
    /// Its SSE name (`values`, `updates`, `messages`, `custom`, …).
    event: String,
    /// Any JSON.
    #[schema(value_type = Object)]
    data: Value,
}

/// Events of a run the worker holds.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = WorkerEvents)]
pub struct EventsBody {
    worker_id: String,
    events: Vec<EventBody>,
    /// The number of the first event (the claim's `first_seq`, then one more per event sent):
    /// a batch sent again is stored once.
    first_seq: Option<i64>,
}

/// Appends events to a run's stream: numbered, stored, and streamed to its clients.
#[utoipa::path(
    tag = "workers",
    params(("run_id" = String, Path)),
    request_body = EventsBody,
    responses(
        (status = 204, description = "Stored"),
        (status = 403, description = "Not a service", body = super::ErrorBody),
        (status = 409, description = "The worker does not hold the run (cancelled, or taken back): stop it", body = super::ErrorBody),
    ),
)]
#[post("/workers/runs/{run_id}/events")]
pub async fn events(
    principal: Principal,
    runner: web::Data<Runner>,
    path: web::Path<String>,
    body: web::Json<EventsBody>,
) -> Result<HttpResponse, ApiError> {
    service_only(&principal)?;
    let body = body.into_inner();
    let holder = worker_id(&body.worker_id)?;
    if body.events.len() > EVENTS_MAX {
        return Err(ApiError::validation(format!(
            "at most {EVENTS_MAX} events at once"
        )));
    }
    let mut events = Vec::with_capacity(body.events.len());
    for e in body.events {
        if e.event.is_empty() || e.event.len() > 256 || e.event.contains(['\n', '\r']) {
            return Err(ApiError::validation(
                "an event's name is 1 to 256 characters, on one line",
            ));
        }
        events.push((e.event, e.data.to_string()));
    }
    let run_id = path.into_inner();
    runner
        .db()
        .append_run_events(run_id.clone(), holder, events, body.first_seq)
        .await?;
    runner.events_stored(&run_id);
    Ok(HttpResponse::NoContent().finish())
}

/// A worker still executing a run.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = WorkerHeartbeat)]
pub struct HeartbeatBody {
    worker_id: String,
    /// The lease from now (3 to 600 s).
    lease_s: u64,
}

/// Renews the worker's lease on a run; `{"held": false}`: the run was cancelled or taken back,
/// and the worker stops it.
#[utoipa::path(
    tag = "workers",
    params(("run_id" = String, Path)),
    request_body = HeartbeatBody,
    responses(
        (status = 200, description = "`{held}`", body = Object),
        (status = 403, description = "Not a service", body = super::ErrorBody),
    ),
)]
#[post("/workers/runs/{run_id}/heartbeat")]
pub async fn heartbeat(
    principal: Principal,
    runner: web::Data<Runner>,
    path: web::Path<String>,
    body: web::Json<HeartbeatBody>,
) -> Result<HttpResponse, ApiError> {
    service_only(&principal)?;
    let holder = worker_id(&body.worker_id)?;
    if !(3..=600).contains(&body.lease_s) {
        return Err(ApiError::validation("lease_s must be between 3 and 600"));
    }
    let until = runner.lease_until_for(Duration::from_secs(body.lease_s));
    let run_id = path.into_inner();
    let held = runner
        .db()
        .renew_runs(vec![run_id.clone()], holder, until)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "held": held.contains(&run_id) })))
}

/// A worker giving a run back.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = WorkerRelease)]
pub struct ReleaseBody {
    worker_id: String,
}

/// Hands a run the worker holds back to the queue (the worker is stopping): any worker of its
/// graph starts it again at once, from its last checkpoint, instead of after its lease.
#[utoipa::path(
    tag = "workers",
    params(("run_id" = String, Path)),
    request_body = ReleaseBody,
    responses(
        (status = 200, description = "`{released}`: whether the worker held the run", body = Object),
        (status = 403, description = "Not a service", body = super::ErrorBody),
    ),
)]
#[post("/workers/runs/{run_id}/release")]
pub async fn release(
    principal: Principal,
    runner: web::Data<Runner>,
    path: web::Path<String>,
    body: web::Json<ReleaseBody>,
) -> Result<HttpResponse, ApiError> {
    service_only(&principal)?;
    let holder = worker_id(&body.worker_id)?;
    let released = runner
        .db()
        .release_runs(Some(path.into_inner()), holder)
        .await?;
    if released > 0 {
        runner.queue_moved();
    }
    Ok(HttpResponse::Ok().json(json!({ "released": released > 0 })))
}

/// Hands every run the worker still holds back to the queue: a stopping worker's last call,
/// for the runs a claim gave it that it never saw (its long poll was cut short as it stopped).
#[utoipa::path(
    tag = "workers",
    request_body = ReleaseBody,
    responses(
        (status = 200, description = "`{released}`: how many runs went back to the queue", body = Object),
        (status = 403, description = "Not a service", body = super::ErrorBody),
    ),
)]
#[post("/workers/release")]
pub async fn release_all(
    principal: Principal,
    runner: web::Data<Runner>,
    body: web::Json<ReleaseBody>,
) -> Result<HttpResponse, ApiError> {
    service_only(&principal)?;
    let holder = worker_id(&body.worker_id)?;
    let released = runner.db().release_runs(None, holder).await?;
    if released > 0 {
        runner.queue_moved();
    }
    Ok(HttpResponse::Ok().json(json!({ "released": released })))
}

/// A run's error, as the worker says it.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct RunErrorBody {
    error: String,
    message: String,
}

/// How a run the worker held ended.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = WorkerFinish)]
pub struct FinishBody {
    worker_id: String,
    /// `success`, `error` or `interrupted`.
    status: String,
    /// The thread's status now: `idle`, `interrupted` (it waits at an interrupt) or `error`.
    thread_status: String,
    /// The thread's values at the end.
    #[schema(value_type = Option<Object>)]
    values: Option<Value>,
    /// With `error`: the `error` event the run's stream ends with.
    error: Option<RunErrorBody>,
}

/// Ends a run the worker held.
#[utoipa::path(
    tag = "workers",
    params(("run_id" = String, Path)),
    request_body = FinishBody,
    responses(
        (status = 200, description = "The run as it ended", body = crate::model::Run),
        (status = 403, description = "Not a service", body = super::ErrorBody),
        (status = 409, description = "The worker does not hold the run", body = super::ErrorBody),
    ),
)]
#[post("/workers/runs/{run_id}/finish")]
pub async fn finish(
    principal: Principal,
    runner: web::Data<Runner>,
    path: web::Path<String>,
    body: web::Json<FinishBody>,
) -> Result<HttpResponse, ApiError> {
    service_only(&principal)?;
    let body = body.into_inner();
    let holder = worker_id(&body.worker_id)?;
    let status = match body.status.as_str() {
        "success" => RunStatus::Success,
        "error" => RunStatus::Error,
        "interrupted" => RunStatus::Interrupted,
        other => {
            return Err(ApiError::validation(format!(
                "status must be success, error or interrupted, not {other:?}"
            )));
        }
    };
    if !["idle", "interrupted", "error"].contains(&body.thread_status.as_str()) {
        return Err(ApiError::validation(
            "thread_status must be idle, interrupted or error",
        ));
    }
    let values = super::object_or_none(body.values, "values")?;
    let run_id = path.into_inner();
    let db = runner.db();
    if let Some(e) = body.error {
        let data = json!({ "error": e.error, "message": e.message }).to_string();
        db.append_run_events(
            run_id.clone(),
            holder.clone(),
            vec![("error".into(), data)],
            None,
        )
        .await?;
        runner.events_stored(&run_id);
    }
    let ended = db
        .finish_run(
            run_id.clone(),
            Some(holder),
            status,
            Some(body.thread_status),
            values,
        )
        .await?;
    if ended.status != status {
        return Err(ApiError::Conflict(format!(
            "Run {run_id} had already ended ({})",
            ended.status
        )));
    }
    runner.wake(&ended.thread_id);
    Ok(HttpResponse::Ok().json(ended))
}
