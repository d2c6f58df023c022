//! Runs a graph on a thread to the end: model → tools → model, one checkpoint per step, as a
//! LangGraph ReAct agent does. The thread is busy for the run's length and idle (or `error`)
//! after it, whatever happens. No connection is held across a model call or a tool.

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::agent::{ToolCall, Turn, builtin, tools};
use crate::error::ApiError;
use crate::graphs::Graph;
use crate::model::{NewRun, NewWrites, Run, StateUpdate};
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
    /// `command.resume`: the answer to the interrupt the thread is waiting on.
    pub resume: Option<Value>,
}

/// How a run's steps ended.
enum Outcome {
    /// The model answered: the final values.
    Done(Value),
    /// A tool needs the user's approval: the values with `__interrupt__`.
    Interrupted(Value),
}

/// Whether a `command.resume` value approves: `true`, "yes"/"approve"/"accept", `{"approved": true}`,
/// or agent-chat-ui's `{"decisions": [{"type": "approve"|"accept"}]}`.
fn approves(decision: &Value) -> bool {
    let word = |s: &str| {
        matches!(
            s.trim().to_lowercase().as_str(),
            "yes" | "y" | "approve" | "approved" | "accept" | "ok"
        )
    };
    match decision {
        Value::Bool(b) => *b,
        Value::String(s) => word(s),
        Value::Object(o) => {
            o.get("approved").is_some_and(approves)
                || o.get("type").and_then(Value::as_str).is_some_and(word)
                || o.get("decisions")
                    .and_then(Value::as_array)
                    .is_some_and(|d| !d.is_empty() && d.iter().all(approves))
        }
        Value::Array(items) => !items.is_empty() && items.iter().all(approves),
        _ => false,
    }
}

/// Where a run's stream events go (LangGraph stream modes: `values`, `updates`, `messages`);
/// `None` when nobody streams.
pub type Events = Option<mpsc::UnboundedSender<(&'static str, Value)>>;

fn emit(events: &Events, name: &'static str, data: Value) {
    if let Some(tx) = events {
        // a stream that went away does not stop the run
        let _ = tx.send((name, data));
    }
}

/// Starts a run: the thread is checked (404, or 409 when busy) and marked busy.
pub async fn start(db: &Persistence, req: &RunRequest) -> Result<Run, ApiError> {
    let run = db
        .start_run(NewRun {
            thread_id: req.thread_id.clone(),
            assistant_id: req.graph.assistant_id().to_string(),
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
    Ok(run)
}

/// Executes a started run to its end; returns the run as it ended and the thread's final values
/// (or, when the graph failed, `{"__error__": {error, message}}` as the LangGraph server
/// answers `wait`). The thread is left idle, interrupted or in error, never busy.
pub async fn execute(
    db: &Persistence,
    run: Run,
    req: &RunRequest,
    events: Events,
) -> Result<(Run, Value), ApiError> {
    let started = std::time::Instant::now();
    let outcome = steps(db, &run, req, &events).await;
    let (status, thread_status) = match &outcome {
        Ok(Outcome::Done(_)) => ("success", "idle"),
        Ok(Outcome::Interrupted(_)) => ("interrupted", "interrupted"),
        Err(_) => ("error", "error"),
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
        Ok(Outcome::Done(values) | Outcome::Interrupted(values)) => Ok((run, values)),
        Err(message) => {
            emit(
                &events,
                "error",
                json!({ "error": "RunError", "message": message }),
            );
            Ok((
                run,
                json!({ "__error__": { "error": "RunError", "message": message } }),
            ))
        }
    }
}

/// Starts and executes a run, for `runs/wait`.
pub async fn run_to_end(db: &Persistence, req: RunRequest) -> Result<(Run, Value), ApiError> {
    let run = start(db, &req).await?;
    execute(db, run, &req, None).await
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

/// What LangGraph attaches to a streamed message chunk.
fn chunk_metadata(meta: &Map<String, Value>, step: usize) -> Value {
    let mut m = meta.clone();
    m.insert("langgraph_node".into(), json!("agent"));
    m.insert("langgraph_step".into(), json!(step + 1));
    m.insert("langgraph_checkpoint_ns".into(), json!(""));
    Value::Object(m)
}

/// The answer word by word, as `messages` events of `AIMessageChunk`s sharing the message id.
fn stream_tokens(events: &Events, id: &str, text: &str, meta: &Map<String, Value>, step: usize) {
    if events.is_none() {
        return;
    }
    let words: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
    for (i, word) in words.iter().enumerate() {
        let mut chunk =
            json!({ "type": "AIMessageChunk", "id": id, "content": word, "tool_call_chunks": [] });
        if i + 1 == words.len() {
            chunk["chunk_position"] = json!("last");
        }
        emit(
            events,
            "messages",
            json!([chunk, chunk_metadata(meta, step)]),
        );
    }
}

/// Runs the tool calls; `delete_task` only with an approval in hand.
async fn run_tools(
    db: &Persistence,
    user_id: &str,
    calls: &[ToolCall],
    approved: bool,
) -> Vec<Value> {
    let mut results = Vec::new();
    for call in calls {
        let content = if call.name == "delete_task" && !approved {
            "Kept the task: deleting it was not approved.".to_string()
        } else {
            tools::execute(db, user_id, call).await
        };
        results.push(json!({
            "type": "tool", "id": uuid::Uuid::new_v4().to_string(), "content": content,
            "tool_call_id": call.id, "name": call.name, "status": "success",
        }));
    }
    results
}

/// The tool calls of the conversation's last AI message.
fn pending_calls(values: &Value) -> Vec<ToolCall> {
    values
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("type").and_then(Value::as_str) == Some("ai"))
        })
        .and_then(|ai| ai.get("tool_calls"))
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: c
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    name: c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    args: c.get("args").cloned().unwrap_or_else(|| json!({})),
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn steps(
    db: &Persistence,
    run: &Run,
    req: &RunRequest,
    events: &Events,
) -> Result<Outcome, String> {
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
        let node = node.to_string();
        let update_values = update.values.clone();
        async move {
            let record = db.update_state(update).await.map_err(|e| e.to_string())?;
            emit(events, "values", record.values());
            if node != "__input__" {
                emit(events, "updates", json!({ node: update_values }));
            }
            Ok::<_, String>(record)
        }
    };
    let mut values = if let Some(decision) = &req.resume {
        // resuming: answer the waiting tool calls, then go on
        let latest = db
            .get_checkpoint(run.thread_id.clone(), String::new(), None)
            .await
            .map_err(|e| e.to_string())?;
        let Some(latest) = latest.filter(|c| !c.interrupts().is_empty()) else {
            return Err("The thread has no interrupt to resume".into());
        };
        let calls = pending_calls(&latest.values());
        let results = run_tools(db, &user_id, &calls, approves(decision)).await;
        write(json!({ "messages": results }), "tools", "loop")
            .await?
            .values()
    } else {
        match &req.input {
            Value::Null => thread.values.unwrap_or_else(|| json!({})),
            Value::Object(_) => write(req.input.clone(), "__input__", "input")
                .await?
                .values(),
            other => return Err(format!("Expected an object as input, got {other}")),
        }
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
                stream_tokens(events, &id, &text, &meta, step);
                let ai = json!({ "type": "ai", "id": id, "content": text, "tool_calls": [] });
                return Ok(Outcome::Done(
                    write(json!({ "messages": [ai] }), "agent", "loop")
                        .await?
                        .values(),
                ));
            }
            Turn::Call(calls) => {
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .map(|c| json!({ "id": c.id, "name": c.name, "args": c.args, "type": "tool_call" }))
                    .collect();
                let chunks: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| json!({ "id": c.id, "name": c.name, "args": c.args.to_string(), "index": i, "type": "tool_call_chunk" }))
                    .collect();
                emit(
                    events,
                    "messages",
                    json!([
                        { "type": "AIMessageChunk", "id": id, "content": "", "tool_call_chunks": chunks, "chunk_position": "last" },
                        chunk_metadata(&meta, step),
                    ]),
                );
                let ai = json!({ "type": "ai", "id": id, "content": "", "tool_calls": tool_calls });
                let asked = write(json!({ "messages": [ai] }), "agent", "loop").await?;
                if let Some(delete) = calls.iter().find(|c| c.name == "delete_task") {
                    // deleting needs the user's approval: stop here, waiting on an interrupt
                    let task = delete
                        .args
                        .get("task")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let interrupt = json!({
                        "id": uuid::Uuid::new_v4().simple().to_string(),
                        "value": {
                            "action": "delete_task",
                            "args": delete.args,
                            "description": format!("Delete the task \"{task}\"? Resume with true to delete it, false to keep it."),
                        },
                    });
                    let writes = NewWrites {
                        thread_id: run.thread_id.clone(),
                        checkpoint_ns: String::new(),
                        checkpoint_id: asked.checkpoint_id.clone(),
                        task_id: delete.id.clone(),
                        task_path: "tools".into(),
                        writes: vec![(
                            "__interrupt__".into(),
                            "json".into(),
                            json!([interrupt]).to_string().into_bytes(),
                        )],
                    };
                    db.put_writes(writes).await.map_err(|e| e.to_string())?;
                    let mut values = asked.values();
                    values["__interrupt__"] = json!([interrupt]);
                    emit(events, "values", values.clone());
                    emit(events, "updates", json!({ "__interrupt__": [interrupt] }));
                    return Ok(Outcome::Interrupted(values));
                }
                let results = run_tools(db, &user_id, &calls, false).await;
                values = write(json!({ "messages": results }), "tools", "loop")
                    .await?
                    .values();
            }
        }
    }
    Err(format!(
        "Recursion limit of {RECURSION_LIMIT} reached without an answer"
    ))
}
