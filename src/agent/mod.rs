//! mnemo's task assistant: its tools and its models. A model turn is either tool calls or an
//! answer; the run loop (model → tools → model) executes the calls and checkpoints each step.

pub mod builtin;
mod messages;
pub mod openai;
pub mod react;
pub mod tools;

use serde_json::{Value, json};

use crate::config::Config;
use crate::graphs::Graph;

/// A tool the model asks to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub args: Value,
}

/// What a model says next.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// Run these tools, then ask again.
    Call(Vec<ToolCall>),
    /// The final answer of this run.
    Answer(String),
}

/// A fragment of a model's turn as it streams: some text, or part of a tool call (the call's
/// `index` ties its fragments together; `id` and `name` come with the first one).
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Text(String),
    ToolCall {
        index: u64,
        id: String,
        name: String,
        args: String,
    },
}

/// What a run's configuration (its assistant's, under its own) asks of the model:
/// `configurable.system_prompt`, `configurable.model`, `configurable.temperature`. The builtin
/// model is deterministic and reads none of them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tuning<'a> {
    pub system_prompt: Option<&'a str>,
    pub model: Option<&'a str>,
    pub temperature: Option<f64>,
}

impl<'a> Tuning<'a> {
    pub fn of(config: &'a Value) -> Tuning<'a> {
        let field = |k: &str| config.get("configurable").and_then(|c| c.get(k));
        Tuning {
            system_prompt: field("system_prompt").and_then(Value::as_str),
            model: field("model").and_then(Value::as_str),
            temperature: field("temperature").and_then(Value::as_f64),
        }
    }
}

/// The agent's model (`MNEMO_LLM`).
pub enum Model {
    /// Deterministic and offline.
    Builtin,
    /// An OpenAI-compatible chat-completions endpoint.
    OpenAi(openai::OpenAi),
}

impl Model {
    pub fn from_config(config: &Config) -> Result<Model, String> {
        match config.llm.as_str() {
            "builtin" => Ok(Model::Builtin),
            "openai" => openai::OpenAi::new(config).map(Model::OpenAi),
            other => Err(format!(
                "unknown model {other:?} (MNEMO_LLM is builtin or openai)"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Model::Builtin => "builtin",
            Model::OpenAi(_) => "openai",
        }
    }

    /// The model's next turn for this conversation; its fragments go to `on_delta` as they come.
    pub async fn turn(
        &self,
        graph: &Graph,
        user_id: &str,
        messages: &[Value],
        tuning: Tuning<'_>,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Turn, String> {
        match self {
            Model::OpenAi(m) => m.turn(graph, user_id, messages, tuning, on_delta).await,
            Model::Builtin => {
                let turn = builtin::respond(graph, messages);
                // the built-in model streams like a real one: word by word, whole calls
                match &turn {
                    Turn::Answer(text) => text
                        .split_inclusive(char::is_whitespace)
                        .for_each(|w| on_delta(Delta::Text(w.to_string()))),
                    Turn::Call(calls) => {
                        for (index, c) in calls.iter().enumerate() {
                            on_delta(Delta::ToolCall {
                                index: index as u64,
                                id: c.id.clone(),
                                name: c.name.clone(),
                                args: c.args.to_string(),
                            });
                        }
                    }
                }
                Ok(turn)
            }
        }
    }
}

/// The tools a graph offers, as OpenAI-style function definitions.
pub fn tool_specs(graph: &Graph) -> Vec<Value> {
    let function = |name: &str, description: &str, properties: Value, required: &[&str]| {
        json!({
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": { "type": "object", "properties": properties, "required": required },
            }
        })
    };
    let task = json!({ "task": { "type": "string", "description": "The task's id or (part of) its title" } });
    let mut tools = vec![
        function(
            "list_tasks",
            "List the user's tasks, optionally only those with one status.",
            json!({ "status": { "type": "string", "enum": ["todo", "doing", "done"] } }),
            &[],
        ),
        function(
            "create_task",
            "Add a task to the user's list.",
            json!({
                "title": { "type": "string" },
                "notes": { "type": "string" },
                "due_date": { "type": "string", "description": "YYYY-MM-DD" }
            }),
            &["title"],
        ),
        function(
            "complete_task",
            "Mark one of the user's tasks as done.",
            task.clone(),
            &["task"],
        ),
        function(
            "delete_task",
            "Delete one of the user's tasks (asks the user to approve first).",
            task,
            &["task"],
        ),
    ];
    if graph.memory {
        tools.push(function(
            "remember",
            "Store a fact about the user in long-term memory.",
            json!({ "fact": { "type": "string" } }),
            &["fact"],
        ));
        tools.push(function(
            "recall",
            "Read what long-term memory holds about the user, optionally only facts mentioning a word.",
            json!({ "query": { "type": "string" } }),
            &[],
        ));
    }
    tools
}

/// The text of a LangChain message's `content` (a string or a list of content blocks).
pub fn text_of(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str).or_else(|| b.as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}
