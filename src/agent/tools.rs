//! The task assistant's tools, run against mnemo's own persistence. A tool never fails the
//! run: what goes wrong becomes the tool message the model reads, as LangGraph's tool node does.

use serde_json::{Value, json};

use super::ToolCall;
use crate::model::{Namespace, NewTask, StoreSearch, Task, TaskPatch, TaskQuery, TaskStatus};
use crate::persistence::Persistence;

/// Where a user's long-term memories live in the store.
pub fn memory_namespace(user_id: &str) -> Result<Namespace, String> {
    Namespace::parse(
        vec!["users".into(), user_id.into(), "memories".into()],
        false,
    )
}

fn arg<'a>(call: &'a ToolCall, name: &str) -> Option<&'a str> {
    call.args
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn describe(t: &Task) -> String {
    match &t.due_date {
        Some(d) => format!("{} ({}, due {d})", t.title, t.status),
        None => format!("{} ({})", t.title, t.status),
    }
}

async fn all_tasks(
    db: &Persistence,
    user_id: &str,
    status: Option<TaskStatus>,
) -> Result<Vec<Task>, String> {
    let query = TaskQuery {
        user_id: user_id.to_string(),
        status,
        after: None,
        limit: 200,
    };
    db.list_tasks(query).await.map_err(|e| e.to_string())
}

/// The user's task a tool argument names: its id, its exact title, or a part of its title.
async fn find(db: &Persistence, user_id: &str, wanted: &str) -> Result<Task, String> {
    let tasks = all_tasks(db, user_id, None).await?;
    let lower = wanted.to_lowercase();
    tasks
        .iter()
        .find(|t| t.task_id == wanted || t.title.to_lowercase() == lower)
        .or_else(|| {
            tasks
                .iter()
                .find(|t| t.title.to_lowercase().contains(&lower))
        })
        .cloned()
        .ok_or_else(|| format!("No task matches \"{wanted}\"."))
}

/// Runs one tool call for `user_id`; the result is the tool message's content.
pub async fn execute(db: &Persistence, user_id: &str, call: &ToolCall) -> String {
    let result = match call.name.as_str() {
        "list_tasks" => list(db, user_id, call).await,
        "create_task" => create(db, user_id, call).await,
        "complete_task" => complete(db, user_id, call).await,
        "delete_task" => delete(db, user_id, call).await,
        "remember" => remember(db, user_id, call).await,
        "recall" => recall(db, user_id, call).await,
        other => Err(format!("Unknown tool {other}.")),
    };
    result.unwrap_or_else(|e| format!("Error: {e}"))
}

async fn list(db: &Persistence, user_id: &str, call: &ToolCall) -> Result<String, String> {
    let status = match arg(call, "status") {
        Some(s) => Some(
            serde_json::from_value::<TaskStatus>(json!(s))
                .map_err(|_| format!("unknown status {s}"))?,
        ),
        None => None,
    };
    let tasks = all_tasks(db, user_id, status).await?;
    let which = status.map_or(String::new(), |s| format!("{} ", s.as_str()));
    if tasks.is_empty() {
        return Ok(format!("You have no {which}tasks."));
    }
    let lines: Vec<String> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}. {}", i + 1, describe(t)))
        .collect();
    Ok(format!("Your {which}tasks:\n{}", lines.join("\n")))
}

async fn create(db: &Persistence, user_id: &str, call: &ToolCall) -> Result<String, String> {
    let title = arg(call, "title").ok_or("a task needs a title")?;
    let due_date = match arg(call, "due_date") {
        Some(d) => Some(
            d.parse()
                .map_err(|_| format!("due_date {d} is not YYYY-MM-DD"))?,
        ),
        None => None,
    };
    let new = NewTask {
        user_id: user_id.to_string(),
        title: title.to_string(),
        notes: arg(call, "notes").unwrap_or_default().to_string(),
        status: TaskStatus::Todo,
        due_date,
    };
    let task = db.create_task(new).await.map_err(|e| e.to_string())?;
    Ok(format!("Added task \"{}\".", task.title))
}

async fn complete(db: &Persistence, user_id: &str, call: &ToolCall) -> Result<String, String> {
    let task = find(db, user_id, arg(call, "task").ok_or("which task?")?).await?;
    let patch = TaskPatch {
        status: Some(TaskStatus::Done),
        ..TaskPatch::default()
    };
    db.update_task(user_id.to_string(), task.task_id, patch)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("Completed \"{}\".", task.title))
}

async fn delete(db: &Persistence, user_id: &str, call: &ToolCall) -> Result<String, String> {
    let task = find(db, user_id, arg(call, "task").ok_or("which task?")?).await?;
    db.delete_task(user_id.to_string(), task.task_id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("Deleted \"{}\".", task.title))
}

async fn remember(db: &Persistence, user_id: &str, call: &ToolCall) -> Result<String, String> {
    let fact = arg(call, "fact").ok_or("nothing to remember")?;
    let ns = memory_namespace(user_id)?;
    let key = uuid::Uuid::now_v7().to_string();
    db.put_item(ns.prefix(), key, json!({ "fact": fact }), None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("I'll remember that {fact}."))
}

async fn recall(db: &Persistence, user_id: &str, call: &ToolCall) -> Result<String, String> {
    let query = StoreSearch {
        namespace_prefix: memory_namespace(user_id)?,
        filter: Vec::new(),
        limit: 100,
        offset: 0,
        refresh_ttl: true,
    };
    let items = db.search_items(query).await.map_err(|e| e.to_string())?;
    let wanted = arg(call, "query").map(str::to_lowercase);
    let facts: Vec<String> = items
        .iter()
        .filter_map(|i| i.value.get("fact").and_then(Value::as_str))
        .filter(|f| wanted.as_ref().is_none_or(|w| f.to_lowercase().contains(w)))
        .map(|f| format!("- {f}"))
        .collect();
    if facts.is_empty() {
        return Ok("I don't remember anything about that yet.".into());
    }
    Ok(format!("Here is what I remember:\n{}", facts.join("\n")))
}
