//! Runs a graph on a thread to the end: model → tools → model, one checkpoint per step, as a
//! LangGraph ReAct agent does. The thread is busy for the run's length and idle (or `error`)
//! after it, whatever happens. No connection is held across a model call or a tool.

use serde_json::{Map, Value, json};

use crate::agent::{Turn, builtin, tools};
use crate::error::ApiError;
use crate::graphs::Graph;
use crate::model::{NewRun, Run, StateUpdate};
use crate::persistence::Persistence;

/// Most model turns in one run (LangGraph's default recursion limit).
const RECURSION_LIMIT: usize = 25;

/// A run to execute.
pub struct RunRequest {
    pub thread_id: String,
    pub graph: &'static Graph,
    pub input: Value,
    pub config: Value,
    pub metadata: Value,
    pub kwargs: Value,
    pub create_thread: bool,
}

/// Runs to the end; returns the run as it ended and the thread's final values (or, when the
/// graph failed, `{"__error__": {error, message}}` as the LangGraph server answers `wait`).
pub async fn run_to_end(db: &Persistence, req: RunRequest) -> Result<(Run, Value), ApiError> {
    let assistant_id = req.graph.assistant_id().to_string();
    let run = db
        .start_run(NewRun {
            thread_id: req.thread_id.clone(),
            assistant_id: assistant_id.clone(),
            graph_id: req.graph.id.into(),
            metadata: req.metadata.clone(),
            kwargs: req.kwargs.clone(),
            create_thread: req.create_thread,
        })
        .await?;
    log::info!(
        "run {} started on thread {} ({})",
        run.run_id,
        run.thread_id,
        req.graph.id
    );
    let started = std::time::Instant::now();
    let outcome = steps(db, &run, &req).await;
    let (status, thread_status) = if outcome.is_ok() {
        ("success", "idle")
    } else {
        ("error", "error")
    };
    let run = db
        .finish_run(run.run_id.clone(), status.into(), thread_status.into())
        .await?;
    log::info!(
        "run {} ended {status} in {} ms",
        run.run_id,
        started.elapsed().as_millis()
    );
    match outcome {
        Ok(values) => Ok((run, values)),
        Err(message) => Ok((
            run,
            json!({ "__error__": { "error": "RunError", "message": message } }),
        )),
    }
}

/// The user a run acts for: `config.configurable.user_id`, else the thread's
/// `metadata.user_id`, else `default`.
fn user_of(config: &Value, thread_metadata: &Value) -> String {
    config
        .pointer("/configurable/user_id")
        .or_else(|| thread_metadata.get("user_id"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .unwrap_or("default")
        .to_string()
}

async fn steps(db: &Persistence, run: &Run, req: &RunRequest) -> Result<Value, String> {
    let thread = db
        .get_thread(run.thread_id.clone())
        .await
        .map_err(|e| e.to_string())?;
    let user_id = user_of(&req.config, &thread.metadata);
    let mut meta = Map::new();
    meta.insert("run_id".into(), json!(run.run_id));
    meta.insert("graph_id".into(), json!(req.graph.id));
    meta.insert("assistant_id".into(), json!(run.assistant_id));
    meta.insert("user_id".into(), json!(user_id));
    let write = |values: Value, node: &str, source: &'static str| {
        let update = StateUpdate {
            thread_id: run.thread_id.clone(),
            values,
            as_node: Some(node.to_string()),
            checkpoint_id: None,
            source,
            metadata: meta.clone(),
        };
        async move {
            db.update_state(update)
                .await
                .map(|r| r.values())
                .map_err(|e| e.to_string())
        }
    };
    let mut values = match &req.input {
        Value::Null => db
            .get_thread(run.thread_id.clone())
            .await
            .map_err(|e| e.to_string())?
            .values
            .unwrap_or(json!({})),
        Value::Object(_) => write(req.input.clone(), "__input__", "input").await?,
        other => return Err(format!("Expected an object as input, got {other}")),
    };
    for step in 0..RECURSION_LIMIT {
        let messages = values
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let id = format!("run-{}-{step}", run.run_id);
        match builtin::respond(req.graph, &messages) {
            Turn::Answer(text) => {
                let ai = json!({ "type": "ai", "id": id, "content": text, "tool_calls": [] });
                return write(json!({ "messages": [ai] }), "agent", "loop").await;
            }
            Turn::Call(calls) => {
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .map(|c| json!({ "id": c.id, "name": c.name, "args": c.args, "type": "tool_call" }))
                    .collect();
                let ai = json!({ "type": "ai", "id": id, "content": "", "tool_calls": tool_calls });
                write(json!({ "messages": [ai] }), "agent", "loop").await?;
                let mut results = Vec::new();
                for call in &calls {
                    let content = tools::execute(db, &user_id, call).await;
                    results.push(json!({
                        "type": "tool", "id": uuid::Uuid::new_v4().to_string(), "content": content,
                        "tool_call_id": call.id, "name": call.name, "status": "success",
                    }));
                }
                values = write(json!({ "messages": results }), "tools", "loop").await?;
            }
        }
    }
    Err(format!(
        "Recursion limit of {RECURSION_LIMIT} reached without an answer"
    ))
}
