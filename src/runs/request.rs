//! What a run is asked to do: the request and its typed options, parsed once from the body kept
//! with the run (`kwargs`), whichever process executes it.

use serde_json::{Value, json};

use super::RunError;
use crate::graphs::{self, Graph};
use crate::model::MultitaskStrategy;

/// When a run's checkpoints are committed, as LangGraph's `durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Each step is committed before its events are sent.
    Sync,
    /// Each step is written in the background while the run goes on; the run waits for its
    /// writes before it ends.
    #[default]
    Async,
    /// Only the last step is written, when the run ends or stops to ask.
    Exit,
}

impl Durability {
    pub fn parse(s: Option<&str>) -> Result<Durability, RunError> {
        match s {
            None | Some("async") => Ok(Durability::Async),
            Some("sync") => Ok(Durability::Sync),
            Some("exit") => Ok(Durability::Exit),
            Some(other) => Err(RunError::Invalid(format!(
                "durability must be sync, async or exit, not {other:?}"
            ))),
        }
    }
}

/// The graph a run executes: one of mnemo's own (executed here, by the ReAct loop), or one a
/// graph worker serves (executed there; mnemo queues the run and relays its events).
#[derive(Clone, Debug)]
pub enum GraphRef {
    Builtin(&'static Graph),
    Worker(String),
}

impl GraphRef {
    pub fn id(&self) -> &str {
        match self {
            GraphRef::Builtin(g) => g.id,
            GraphRef::Worker(id) => id,
        }
    }
}

/// The assistant a run is of: its id, and the graph it runs.
pub struct Of {
    pub assistant_id: String,
    pub graph: GraphRef,
}

impl Of {
    /// A graph's system assistant, named by the graph or by its UUID (422 for anything else).
    pub fn system(assistant_id: &str) -> Result<Of, RunError> {
        let graph = graphs::resolve(assistant_id).map_err(RunError::Invalid)?;
        Ok(Of {
            assistant_id: graph.assistant_id().to_string(),
            graph: GraphRef::Builtin(graph),
        })
    }

    /// A stored run of one of mnemo's own graphs (runs from before assistants were data name a
    /// system assistant).
    pub fn stored(assistant_id: &str, graph_id: Option<&str>) -> Result<Of, RunError> {
        match graph_id {
            Some(graph_id) => Ok(Of {
                assistant_id: assistant_id.to_string(),
                graph: GraphRef::Builtin(Graph::named(graph_id).map_err(RunError::Invalid)?),
            }),
            None => Of::system(assistant_id),
        }
    }
}

/// A run to execute.
#[derive(Clone)]
pub struct RunRequest {
    pub thread_id: String,
    pub graph: GraphRef,
    /// The assistant the run is of (a graph's system assistant, or one made of it).
    pub assistant_id: String,
    pub input: Value,
    pub config: Value,
    pub metadata: Value,
    pub kwargs: Value,
    pub create_thread: bool,
    /// `command.resume`: the answer to the interrupt the thread is waiting on.
    pub resume: Option<Value>,
    /// Start from this checkpoint instead of the latest (fork, regenerate).
    pub checkpoint_id: Option<String>,
    pub multitask_strategy: MultitaskStrategy,
    /// The SSE event names the run's stream carries (from its `stream_mode`).
    pub events: Vec<&'static str>,
    /// Keep the stream's events in the database (`stream_resumable`).
    pub resumable: bool,
    /// What happens to the thread once the run has ended.
    pub on_completion: OnCompletion,
    /// What a client waiting on the run or streaming it does to it by going away.
    pub on_disconnect: OnDisconnect,
    /// The nodes the run stops before (`interrupt_before`) and after (`interrupt_after`).
    pub interrupt_before: Vec<&'static str>,
    pub interrupt_after: Vec<&'static str>,
    /// A user principal's id: the run may only use (or create) that user's thread.
    pub owner: Option<String>,
    /// When its checkpoints are committed.
    pub durability: Durability,
}

impl RunRequest {
    /// The run a request asks for: of `assistant`, and the rest from `kwargs`,
    /// the request's body as kept with the run (whichever process executes the run reads it
    /// from there). `create_thread`: the run may create its thread.
    pub fn parse(
        thread_id: String,
        assistant: Of,
        metadata: Value,
        kwargs: Value,
        multitask_strategy: MultitaskStrategy,
        owner: Option<String>,
        create_thread: bool,
    ) -> Result<RunRequest, RunError> {
        let Of {
            assistant_id,
            graph,
        } = assistant;
        let resume = match kwargs.get("command") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) if c.keys().all(|k| k == "resume") => c.get("resume").cloned(),
            Some(_) => {
                return Err(RunError::Invalid(
                    "command supports resume only (not goto or update)".into(),
                ));
            }
        };
        let text = |field: &str| kwargs.get(field).and_then(Value::as_str);

        // a worker's graph checks its own node names
        let nodes = |field: &str| match &graph {
            GraphRef::Builtin(_) => {
                graphs::nodes_named(field, kwargs.get(field).unwrap_or(&Value::Null))
                    .map_err(RunError::Invalid)
            }
            GraphRef::Worker(_) => graphs::node_list(field, kwargs.get(field))
                .map(|_| Vec::new())
                .map_err(RunError::Invalid),
        };
        let (interrupt_before, interrupt_after) =
            (nodes("interrupt_before")?, nodes("interrupt_after")?);
        let events =
            crate::model::StreamMode::events_of(kwargs.get("stream_mode").unwrap_or(&Value::Null))
                .map_err(RunError::Invalid)?;
        Ok(RunRequest {
            thread_id,
            graph,
            assistant_id,
            input: kwargs.get("input").cloned().unwrap_or(Value::Null),
            config: match kwargs.get("config") {
                Some(c) if !c.is_null() => c.clone(),
                _ => json!({}),
            },
            metadata,
            create_thread,
            resume,
            checkpoint_id: text("checkpoint_id").map(str::to_string),
            multitask_strategy,
            events,
            resumable: kwargs.get("stream_resumable") == Some(&Value::Bool(true)),
            on_completion: OnCompletion::parse(text("on_completion"), false)?,
            on_disconnect: OnDisconnect::parse(text("on_disconnect"))?,
            interrupt_before,
            interrupt_after,
            owner,
            durability: Durability::parse(text("durability"))?,
            kwargs,
        })
    }
}

/// Why a run was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Cancelled: keep what it wrote.
    Interrupt,
    /// Cancelled: undo what it wrote and delete it.
    Rollback,
    /// The server is shutting down.
    Shutdown,
    /// It outlived `MNEMO_RUN_TIMEOUT_S`.
    Timeout,
    /// It was ended elsewhere while this process held it (its lease expired during an outage,
    /// or its thread was deleted).
    Lost,
}

/// How a cancelled run ends (a cancel's `action`, default `interrupt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CancelAction {
    /// Keep what it wrote.
    Interrupt,
    /// Delete the run and what it wrote.
    Rollback,
}

impl CancelAction {
    pub fn parse(action: Option<&str>) -> Result<CancelAction, RunError> {
        match action {
            None | Some("interrupt") => Ok(CancelAction::Interrupt),
            Some("rollback") => Ok(CancelAction::Rollback),
            Some(other) => Err(RunError::Invalid(format!(
                "action must be interrupt or rollback, not {other:?}"
            ))),
        }
    }
}

impl From<CancelAction> for Stop {
    fn from(action: CancelAction) -> Stop {
        match action {
            CancelAction::Interrupt => Stop::Interrupt,
            CancelAction::Rollback => Stop::Rollback,
        }
    }
}

/// What happens to a run's thread when the run ends (`on_completion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnCompletion {
    /// The thread is deleted (a stateless run's default).
    Delete,
    /// The thread stays (the default on a thread).
    Keep,
}

impl OnCompletion {
    /// `on_completion` as asked; unset, `delete` for a `stateless` run and `keep` otherwise.
    pub fn parse(s: Option<&str>, stateless: bool) -> Result<OnCompletion, RunError> {
        match s {
            None if stateless => Ok(OnCompletion::Delete),
            None | Some("keep") => Ok(OnCompletion::Keep),
            Some("delete") => Ok(OnCompletion::Delete),
            Some(other) => Err(RunError::Invalid(format!(
                "on_completion must be delete or keep, not {other:?}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnCompletion::Delete => "delete",
            OnCompletion::Keep => "keep",
        }
    }
}

/// What a client that goes away does to the run it waits on or streams (`on_disconnect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnDisconnect {
    /// The run is cancelled.
    Cancel,
    /// The run goes on (the default).
    Continue,
}

impl OnDisconnect {
    pub fn parse(s: Option<&str>) -> Result<OnDisconnect, RunError> {
        match s {
            None | Some("continue") => Ok(OnDisconnect::Continue),
            Some("cancel") => Ok(OnDisconnect::Cancel),
            Some(other) => Err(RunError::Invalid(format!(
                "on_disconnect must be cancel or continue, not {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_and_cancel_actions_are_named_as_langgraph_names_them() {
        assert_eq!(Durability::parse(None).ok(), Some(Durability::Async));
        assert_eq!(Durability::parse(Some("sync")).ok(), Some(Durability::Sync));
        assert_eq!(Durability::parse(Some("exit")).ok(), Some(Durability::Exit));
        assert!(Durability::parse(Some("never")).is_err());
        let stop = |a| CancelAction::parse(a).ok().map(Stop::from);
        assert_eq!(stop(None), Some(Stop::Interrupt));
        assert_eq!(stop(Some("interrupt")), Some(Stop::Interrupt));
        assert_eq!(stop(Some("rollback")), Some(Stop::Rollback));
        assert!(stop(Some("pause")).is_none());
    }

    #[test]
    fn on_completion_and_on_disconnect_default_as_langgraph_does() {
        use OnCompletion::{Delete, Keep};
        assert_eq!(OnCompletion::parse(None, true).ok(), Some(Delete));
        assert_eq!(OnCompletion::parse(None, false).ok(), Some(Keep));
        assert_eq!(OnCompletion::parse(Some("keep"), true).ok(), Some(Keep));
        assert_eq!(
            OnCompletion::parse(Some("delete"), false).ok(),
            Some(Delete)
        );
        assert!(OnCompletion::parse(Some("archive"), false).is_err());
        assert_eq!(OnDisconnect::parse(None).ok(), Some(OnDisconnect::Continue));
        assert_eq!(
            OnDisconnect::parse(Some("continue")).ok(),
            Some(OnDisconnect::Continue)
        );
        assert_eq!(
            OnDisconnect::parse(Some("cancel")).ok(),
            Some(OnDisconnect::Cancel)
        );
        assert!(OnDisconnect::parse(Some("stop")).is_err());
    }
}
