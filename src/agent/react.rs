//! The ReAct loop: model → tools → model, one checkpoint per step, as a LangGraph ReAct agent
//! does. It reads and writes through a [`Host`] (the database, or memory in tests), streams on
//! the run's [`Live`] log, and stops when asked or at the run's deadline.

use std::cell::Cell;

use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::messages::{MessageStream, chunk_metadata, message_id, tool_message};
use super::{Model, ToolCall, Tuning, Turn, tools};
use crate::graphs;
use crate::model::{CheckpointRecord, NewCheckpoint, NewWrites};
use crate::persistence::{DbError, Persistence, next_state};
use crate::runs::{Durability, GraphRef, Live, RunRequest, Stop};

/// Most model turns in one run (LangGraph's default recursion limit).
const RECURSION_LIMIT: usize = 25;

/// What the loop needs besides its model: where its checkpoints are read and written, and its
/// tools' effects.
pub(crate) trait Host: Clone + 'static {
    /// A checkpoint with its pending writes (the latest without an id).
    async fn get_checkpoint(
        &self,
        thread_id: String,
        checkpoint_ns: String,
        checkpoint_id: Option<String>,
    ) -> Result<Option<CheckpointRecord>, DbError>;
    /// A checkpoint without its pending writes (the latest without an id).
    async fn checkpoint_head(
        &self,
        thread_id: String,
        checkpoint_id: Option<String>,
    ) -> Result<Option<CheckpointRecord>, DbError>;
    async fn put_checkpoint(&self, new: NewCheckpoint) -> Result<(), DbError>;
    async fn put_writes(&self, new: NewWrites) -> Result<(), DbError>;
    /// Executes a tool call for `user_id`; answers the tool's message.
    async fn tool(&self, user_id: &str, call: &ToolCall) -> String;
}

impl Host for Persistence {
    async fn get_checkpoint(
        &self,
        thread_id: String,
        checkpoint_ns: String,
        checkpoint_id: Option<String>,
    ) -> Result<Option<CheckpointRecord>, DbError> {
        Persistence::get_checkpoint(self, thread_id, checkpoint_ns, checkpoint_id).await
    }

    async fn checkpoint_head(
        &self,
        thread_id: String,
        checkpoint_id: Option<String>,
    ) -> Result<Option<CheckpointRecord>, DbError> {
        Persistence::checkpoint_head(self, thread_id, checkpoint_id).await
    }

    async fn put_checkpoint(&self, new: NewCheckpoint) -> Result<(), DbError> {
        Persistence::put_checkpoint(self, new).await
    }

    async fn put_writes(&self, new: NewWrites) -> Result<(), DbError> {
        Persistence::put_writes(self, new).await
    }

    async fn tool(&self, user_id: &str, call: &ToolCall) -> String {
        tools::execute(self, user_id, call).await
    }
}

/// How a run's steps ended.
pub(crate) enum Outcome {
    /// The model answered: the final values.
    Done(Value),
    /// A tool needs the user's approval: the values with `__interrupt__`.
    Interrupted(Value),
    /// Stopped before or after a node (`interrupt_before`/`interrupt_after`): the values, and
    /// whether a node is still to run.
    Paused(Value, bool),
}

/// Why a run's steps did not reach an outcome.
pub(crate) enum Halt {
    Failed(String),
    Stopped(Stop),
}

/// A run's error event says what went wrong in mnemo's words; the driver's go to the log.
impl From<DbError> for Halt {
    fn from(e: DbError) -> Halt {
        match e {
            DbError::NotFound(m) | DbError::Conflict(m) | DbError::Invalid(m) => Halt::Failed(m),
            other => {
                log::warn!("a run's database call failed: {other:?}");
                Halt::Failed("the database could not be reached".into())
            }
        }
    }
}

/// One run's steps: what they read and write through, the model, the run's stream and request,
/// and its deadline.
pub(crate) struct Step<'a, H> {
    pub host: &'a H,
    pub model: &'a Model,
    pub live: &'a Live,
    pub req: &'a RunRequest,
    pub deadline: Instant,
}

impl<H: Host> Step<'_, H> {
    /// The graph the loop runs: one of mnemo's own (a worker's graph never reaches it).
    fn graph(&self) -> Result<&'static graphs::Graph, Halt> {
        match &self.req.graph {
            GraphRef::Builtin(g) => Ok(g),
            GraphRef::Worker(id) => Err(Halt::Failed(format!(
                "graph {id} is served by a graph worker, not by mnemo"
            ))),
        }
    }

    /// The run's steps. Each checkpoint is computed here, from the previous one held in memory,
    /// and written in the background (group-committed with other runs' writes, as LangGraph's
    /// `durability: "async"`); the run waits for its writes before it ends.
    pub async fn steps(
        &self,
        progress: &mut Progress,
        stop: &mut watch::Receiver<Option<Stop>>,
    ) -> Result<Outcome, Halt> {
        let (db, live, req, deadline) = (self.host, self.live, self.req, self.deadline);
        let graph = self.graph()?;
        let run = &live.run;
        let user_id = user_of(
            live.thread_owner.as_deref(),
            &req.config,
            &live.thread_metadata,
        );
        let mut meta = Map::new();
        meta.insert("run_id".into(), json!(run.run_id));
        meta.insert("thread_id".into(), json!(run.thread_id));
        meta.insert("graph_id".into(), json!(req.graph.id()));
        meta.insert("assistant_id".into(), json!(run.assistant_id));
        meta.insert("user_id".into(), json!(user_id));
        // the run goes on from the checkpoint asked for (a fork), else from the latest
        // pending writes matter only to a resume (the interrupt it answers)
        let (thread_id, from) = (run.thread_id.clone(), req.checkpoint_id.clone());
        let start = match req.resume {
            Some(_) => db.get_checkpoint(thread_id, String::new(), from).await?,
            None => db.checkpoint_head(thread_id, from).await?,
        };
        if let (None, Some(id)) = (&start, &req.checkpoint_id) {
            return Err(Halt::Failed(format!("Checkpoint {id} not found")));
        }
        progress.latest = start.clone();
        // the step of the checkpoint the next node writes (LangGraph's `langgraph_step`)
        let step_of = |r: &CheckpointRecord| r.metadata.get("step").and_then(Value::as_i64);
        let next_step = Cell::new(start.as_ref().and_then(step_of).unwrap_or(-1) + 1);
        let durability = req.durability;
        let mut write = async |values: Value, node: &str, source: &'static str| {
            let Value::Object(changes) = values else {
                return Err(Halt::Failed(
                    "a step wrote something other than an object".into(),
                ));
            };
            let record = next_state(
                &run.thread_id,
                Some(graph),
                progress.latest.take(),
                changes.clone(),
                Some(node.to_string()),
                source,
                meta.clone(),
            )?;
            let new = NewCheckpoint::from(&record);
            match durability {
                // committed before anything of the step is sent
                Durability::Sync => db.put_checkpoint(new).await.map_err(|e| {
                    log::warn!("a checkpoint could not be written: {e:?}");
                    Halt::Failed("a checkpoint could not be written".into())
                })?,
                // written in the background, group-committed; waited for before the run ends
                Durability::Async => {
                    let db = db.clone();
                    progress.writes.push(actix_web::rt::spawn(async move {
                        db.put_checkpoint(new).await
                    }));
                }
                // only the last one, when the run ends (or stops to ask)
                Durability::Exit => progress.unwritten = Some(new),
            }
            progress.wrote = true;
            let step = step_of(&record).unwrap_or_default();
            next_step.set(step + 1);
            let values = record.values();
            live.emit("values", &values);
            if node != "__input__" {
                live.emit("updates", &json!({ node: changes }));
            }
            if let Some(messages) = changes.get("messages").and_then(Value::as_array) {
                for m in messages.iter().filter(|m| m["type"] == "tool") {
                    tool_message(live, m, &chunk_metadata(&meta, node, step));
                }
            }
            progress.latest = Some(record);
            Ok::<_, Halt>(values)
        };
        // the node to run first: after a resume's tools, after the input, or (no input) the
        // one the checkpoint waits on
        let mut resuming = false;
        let (mut values, mut node) = if let Some(decision) = &req.resume {
            // resuming: answer the waiting tool calls, then go on
            let Some(start) = start.filter(|s| !s.interrupts().is_empty()) else {
                return Err(Halt::Failed("The thread has no interrupt to resume".into()));
            };
            let calls = pending_calls(&start.values());
            let results = run_tools(db, &user_id, &calls, approves(decision)).await;
            let values = write(json!({ "messages": results }), "tools", "loop").await?;
            if req.interrupt_after.contains(&"tools") {
                return Ok(self.pause(live, values, true));
            }
            (values, Some("agent"))
        } else {
            match &req.input {
                Value::Null => match start {
                    Some(s) => {
                        resuming = true;
                        let values = s.values();
                        live.emit("values", &values);
                        let node = graphs::next_node(&s.metadata, &values);
                        (values, node)
                    }
                    None => return Err(Halt::Failed("Received no input for __start__".into())),
                },
                Value::Object(_) => (
                    write(req.input.clone(), "__input__", "input").await?,
                    Some("agent"),
                ),
                other => {
                    return Err(Halt::Failed(format!(
                        "Expected an object as input, got {other}"
                    )));
                }
            }
        };
        let mut model_turn = 0;
        while let Some(this) = node {
            // a run that resumes does not stop again before the node it resumes
            let resumed = std::mem::take(&mut resuming);
            if req.interrupt_before.contains(&this) && !resumed {
                return Ok(self.pause(live, values, true));
            }
            if this == "agent" {
                if model_turn == RECURSION_LIMIT {
                    return Err(Halt::Failed(format!(
                        "Recursion limit of {RECURSION_LIMIT} reached without an answer"
                    )));
                }
                let turn = self
                    .turn(
                        live,
                        req,
                        &user_id,
                        &meta,
                        (model_turn, next_step.get()),
                        &values,
                        stop,
                        deadline,
                    )
                    .await?;
                let ai = match turn {
                    Turn::Answer(text) => {
                        json!({ "type": "ai", "id": message_id(run, model_turn), "content": text, "tool_calls": [] })
                    }
                    Turn::Call(calls) => {
                        let tool_calls: Vec<Value> = calls
                            .iter()
                            .map(|c| json!({ "id": c.id, "name": c.name, "args": c.args, "type": "tool_call" }))
                            .collect();
                        json!({ "type": "ai", "id": message_id(run, model_turn), "content": "", "tool_calls": tool_calls })
                    }
                };
                model_turn += 1;
                values = write(json!({ "messages": [ai] }), "agent", "loop").await?;
                node = graphs::tools_condition(&values);
            } else {
                let calls = pending_calls(&values);
                if let Some(delete) = calls.iter().find(|c| c.name == "delete_task") {
                    return Ok(Outcome::Interrupted(
                        self.ask_approval(live, delete, progress).await?,
                    ));
                }
                if let Some(why) = *stop.borrow() {
                    return Err(Halt::Stopped(why));
                }
                let results = run_tools(db, &user_id, &calls, false).await;
                values = write(json!({ "messages": results }), "tools", "loop").await?;
                node = Some("agent");
            }
            if req.interrupt_after.contains(&this) {
                return Ok(self.pause(live, values, node.is_some()));
            }
        }
        Ok(Outcome::Done(values))
    }

    /// Stops at a static interrupt (`interrupt_before`/`interrupt_after`): as LangGraph, an
    /// `updates` event with no interrupt in it, `{"__interrupt__": []}`.
    fn pause(&self, live: &Live, values: Value, waiting: bool) -> Outcome {
        live.emit("updates", &json!({ "__interrupt__": [] }));
        Outcome::Paused(values, waiting)
    }

    /// One model turn, its fragments streamed as they come; a stop or the deadline cuts it short.
    /// `(model_turn, step)`: the run's model turn (it names the message) and the step of the
    /// checkpoint the turn writes.
    #[allow(clippy::too_many_arguments)]
    async fn turn(
        &self,
        live: &Live,
        req: &RunRequest,
        user_id: &str,
        meta: &Map<String, Value>,
        (model_turn, step): (usize, i64),
        values: &Value,
        stop: &mut watch::Receiver<Option<Stop>>,
        deadline: Instant,
    ) -> Result<Turn, Halt> {
        if let Some(why) = *stop.borrow() {
            return Err(Halt::Stopped(why));
        }
        let messages = values
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let mut stream = MessageStream::new(
            live,
            message_id(&live.run, model_turn),
            chunk_metadata(meta, "agent", step),
        );
        let mut on_delta = |d| stream.push(d);
        let turn = tokio::select! {
            turn = self.model.turn(self.graph()?, user_id, messages, Tuning::of(&req.config), &mut on_delta) => turn,
            why = stopped(stop, deadline) => return Err(Halt::Stopped(why)),
        };
        let turn = turn.map_err(Halt::Failed)?;
        stream.finish();
        Ok(turn)
    }

    /// Stops on a `delete_task` call: an interrupt waits for the user's approval, as a pending
    /// `__interrupt__` write on the checkpoint that asked. Answers the values with it.
    async fn ask_approval(
        &self,
        live: &Live,
        delete: &ToolCall,
        progress: &mut Progress,
    ) -> Result<Value, Halt> {
        progress.settle(self.host).await.map_err(Halt::Failed)?;
        let Some(asked) = &progress.latest else {
            return Err(Halt::Failed("no checkpoint to interrupt on".into()));
        };
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
            thread_id: asked.thread_id.clone(),
            checkpoint_ns: String::new(),
            checkpoint_id: asked.checkpoint_id.clone(),
            task_id: delete.id.clone(),
            task_path: "tools".into(),
            writes: vec![(
                "__interrupt__".into(),
                "json".into(),
                json!([interrupt]).to_string().into_bytes(),
                None,
            )],
        };
        self.host.put_writes(writes).await?;
        let mut values = asked.values();
        values["__interrupt__"] = json!([interrupt]);
        live.emit("values", &values);
        live.emit("updates", &json!({ "__interrupt__": [interrupt] }));
        Ok(values)
    }
}

/// What a run has written: its latest checkpoint (held in memory, the base of the next step)
/// and the writes still in flight.
#[derive(Default)]
pub(crate) struct Progress {
    pub latest: Option<CheckpointRecord>,
    pub wrote: bool,
    writes: Vec<actix_web::rt::task::JoinHandle<Result<(), DbError>>>,
    /// With `durability: "exit"`, the last checkpoint, written when the run ends.
    unwritten: Option<NewCheckpoint>,
}

impl Progress {
    /// Waits for the writes in flight (and writes the one kept back); the first failure is
    /// the run's.
    pub async fn settle<H: Host>(&mut self, db: &H) -> Result<(), String> {
        if let Some(last) = self.unwritten.take() {
            let db = db.clone();
            self.writes.push(actix_web::rt::spawn(async move {
                db.put_checkpoint(last).await
            }));
        }
        let mut result = Ok(());
        for write in self.writes.drain(..) {
            let done = write
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let (Ok(()), Err(e)) = (&result, done) {
                log::warn!("a checkpoint could not be written: {e:?}");
                result = Err("a checkpoint could not be written".to_string());
            }
        }
        result
    }
}

/// Resolves with the reason once the run is asked to stop or its deadline passes.
pub(crate) async fn stopped(stop: &mut watch::Receiver<Option<Stop>>, deadline: Instant) -> Stop {
    tokio::select! {
        why = stop.wait_for(Option::is_some) => why.ok().and_then(|w| *w).unwrap_or(Stop::Shutdown),
        _ = tokio::time::sleep_until(deadline) => Stop::Timeout,
    }
}

/// The user a run acts for: its thread's owner; on a service's thread (no owner), the
/// `config.configurable.user_id` the service named, else the thread's `metadata.user_id`, else
/// `default`.
pub(crate) fn user_of(owner: Option<&str>, config: &Value, thread_metadata: &Value) -> String {
    if let Some(owner) = owner {
        return owner.to_string();
    }
    config
        .pointer("/configurable/user_id")
        .or_else(|| thread_metadata.get("user_id"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .unwrap_or("default")
        .to_string()
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

/// Runs the tool calls; `delete_task` only with an approval in hand.
async fn run_tools<H: Host>(
    db: &H,
    user_id: &str,
    calls: &[ToolCall],
    approved: bool,
) -> Vec<Value> {
    let mut results = Vec::new();
    for call in calls {
        let content = if call.name == "delete_task" && !approved {
            "Kept the task: deleting it was not approved.".to_string()
        } else {
            db.tool(user_id, call).await
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
    let text = |c: &Value, k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    values
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["type"] == "ai"))
        .and_then(|ai| ai.get("tool_calls"))
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: text(c, "id"),
                    name: text(c, "name"),
                    args: c.get("args").cloned().unwrap_or_else(|| json!({})),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::model::{MultitaskStrategy, Run, RunStatus};

    /// The loop's host in memory: what it wrote, and the tools it ran (each answers `done`).
    #[derive(Clone, Default)]
    struct Memory(Rc<RefCell<Written>>);

    #[derive(Default)]
    struct Written {
        checkpoints: Vec<NewCheckpoint>,
        writes: Vec<NewWrites>,
        tools: Vec<String>,
    }

    impl Host for Memory {
        async fn get_checkpoint(
            &self,
            _: String,
            _: String,
            _: Option<String>,
        ) -> Result<Option<CheckpointRecord>, DbError> {
            Ok(None)
        }

        async fn checkpoint_head(
            &self,
            _: String,
            _: Option<String>,
        ) -> Result<Option<CheckpointRecord>, DbError> {
            Ok(None)
        }

        async fn put_checkpoint(&self, new: NewCheckpoint) -> Result<(), DbError> {
            self.0.borrow_mut().checkpoints.push(new);
            Ok(())
        }

        async fn put_writes(&self, new: NewWrites) -> Result<(), DbError> {
            self.0.borrow_mut().writes.push(new);
            Ok(())
        }

        async fn tool(&self, _: &str, call: &ToolCall) -> String {
            self.0.borrow_mut().tools.push(call.name.clone());
            format!("done: {}", call.name)
        }
    }

    /// What a run on a new thread ended with, asked `text` of the builtin model with `kwargs`
    /// besides its input (no database: the loop's host is [`Memory`]); `stop_first` asks it to
    /// stop before it starts.
    async fn run(
        text: &str,
        kwargs: Value,
        stop_first: bool,
    ) -> (Result<Outcome, Halt>, Memory, Vec<String>) {
        let mut kwargs = kwargs;
        kwargs["input"] = json!({ "messages": [{ "role": "user", "content": text }] });
        let req = RunRequest::parse(
            "t-1".into(),
            crate::runs::Of::system("agent").unwrap(),
            json!({}),
            kwargs,
            MultitaskStrategy::Reject,
            None,
            false,
        )
        .unwrap();
        let now = chrono::Utc::now();
        let run = Run {
            run_id: "r-1".into(),
            thread_id: "t-1".into(),
            assistant_id: req.assistant_id.clone(),
            status: RunStatus::Running,
            metadata: json!({}),
            kwargs: req.kwargs.clone(),
            multitask_strategy: MultitaskStrategy::Reject,
            created_at: now,
            updated_at: now,
            graph_id: Some("agent".into()),
        };
        let live = Live::for_test(run, &req);
        let (_, events) = live.subscribe(0);
        let mut events = events.unwrap();
        let (stop_tx, mut stop) = watch::channel(None);
        if stop_first {
            stop_tx.send_replace(Some(Stop::Interrupt));
        }
        let host = Memory::default();
        let step = Step {
            host: &host,
            model: &Model::Builtin,
            live: &live,
            req: &req,
            deadline: Instant::now() + std::time::Duration::from_secs(10),
        };
        let mut progress = Progress::default();
        let outcome = step.steps(&mut progress, &mut stop).await;
        progress.settle(&host).await.unwrap();
        let mut names = Vec::new();
        while let Ok(e) = events.try_recv() {
            names.push(e.event.clone());
        }
        (outcome, host, names)
    }

    fn messages(values: &Value) -> Vec<(String, String)> {
        values["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["type"].as_str().unwrap().to_string(),
                    m["content"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    #[actix_web::test]
    async fn an_answer_without_tools_is_two_steps() {
        let (outcome, host, events) = run("hello", json!({"durability": "sync"}), false).await;
        let Ok(Outcome::Done(values)) = outcome else {
            panic!("the run did not answer");
        };
        let said = messages(&values);
        assert_eq!(said.len(), 2, "{said:?}");
        assert_eq!(said[0], ("human".into(), "hello".into()));
        assert!(
            said[1].1.contains("get tasks"),
            "the builtin's help: {said:?}"
        );
        let written = host.0.borrow();
        assert_eq!(
            written.checkpoints.len(),
            2,
            "the input step, the model's step"
        );
        assert!(written.tools.is_empty());
        assert_eq!(events, ["values", "values"]);
    }

    #[actix_web::test]
    async fn a_tool_call_runs_the_tool_and_asks_the_model_again() {
        let (outcome, host, events) = run(
            "add task buy milk",
            json!({"stream_mode": ["updates"], "durability": "async"}),
            false,
        )
        .await;
        let Ok(Outcome::Done(values)) = outcome else {
            panic!("the run did not answer");
        };
        let kinds: Vec<String> = messages(&values).into_iter().map(|(t, _)| t).collect();
        assert_eq!(kinds, ["human", "ai", "tool", "ai"]);
        assert_eq!(values["messages"][2]["content"], "done: create_task");
        let written = host.0.borrow();
        assert_eq!(written.tools, ["create_task"]);
        assert_eq!(written.checkpoints.len(), 4, "input, call, tool, answer");
        assert_eq!(
            events,
            ["updates", "updates", "updates"],
            "a node's updates each"
        );
    }

    #[actix_web::test]
    async fn deleting_a_task_waits_for_approval() {
        let (outcome, host, _) =
            run("delete task buy milk", json!({"durability": "exit"}), false).await;
        let Ok(Outcome::Interrupted(values)) = outcome else {
            panic!("the run did not stop to ask");
        };
        assert_eq!(
            values["__interrupt__"][0]["value"]["action"], "delete_task",
            "{values}"
        );
        let written = host.0.borrow();
        assert!(
            written.tools.is_empty(),
            "nothing deleted before the approval"
        );
        assert_eq!(written.writes.len(), 1);
        assert_eq!(written.writes[0].writes[0].0, "__interrupt__");
        assert_eq!(
            written.checkpoints.len(),
            1,
            "exit: only the last step is written"
        );
    }

    #[actix_web::test]
    async fn a_static_interrupt_stops_before_the_node() {
        let (outcome, host, _) = run(
            "add task buy milk",
            json!({"interrupt_before": ["tools"]}),
            false,
        )
        .await;
        let Ok(Outcome::Paused(values, waiting)) = outcome else {
            panic!("the run did not pause");
        };
        assert!(waiting, "the tools node is still to run");
        assert_eq!(messages(&values).len(), 2);
        assert!(host.0.borrow().tools.is_empty());
    }

    #[actix_web::test]
    async fn a_run_told_to_stop_stops_before_the_model() {
        let (outcome, host, _) = run("hello", json!({"durability": "sync"}), true).await;
        assert!(matches!(outcome, Err(Halt::Stopped(Stop::Interrupt))));
        assert_eq!(host.0.borrow().checkpoints.len(), 1, "the input step only");
    }

    #[test]
    fn approvals_as_clients_send_them() {
        for yes in [
            json!(true),
            json!(" Yes "),
            json!("approve"),
            json!({"approved": true}),
            json!({"type": "accept"}),
            json!({"decisions": [{"type": "approve"}, {"type": "accept"}]}),
            json!([{"type": "approve"}]),
        ] {
            assert!(approves(&yes), "{yes}");
        }
        for no in [
            json!(false),
            json!("no"),
            json!(null),
            json!(1),
            json!({"approved": false}),
            json!({"decisions": []}),
            json!({"decisions": [{"type": "approve"}, {"type": "reject"}]}),
            json!([]),
        ] {
            assert!(!approves(&no), "{no}");
        }
    }
}
