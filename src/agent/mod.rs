//! mnemo's task assistant: its tools and its models. A model turn is either tool calls or an
//! answer; the run loop (model → tools → model) executes the calls and checkpoints each step.

pub mod builtin;
pub mod tools;

use serde_json::{Value, json};

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
