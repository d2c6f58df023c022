//! The graphs mnemo serves, each exposed as one system assistant (as the LangGraph server does):
//! `agent`, the task assistant with long-term memory, and `legacy`, the same task tools without
//! memory. Every run endpoint names a graph by its name or by its assistant's UUID.

use serde_json::{Value, json};
use uuid::Uuid;

/// One graph mnemo can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Graph {
    pub id: &'static str,
    pub description: &'static str,
    /// Whether the graph has the long-term memory tools (`remember`, `recall`).
    pub memory: bool,
}

pub const GRAPHS: [Graph; 2] = [
    Graph {
        id: "agent",
        description: "Task assistant with long-term memory: lists, adds, completes and deletes tasks; remembers and recalls facts.",
        memory: true,
    },
    Graph {
        id: "legacy",
        description: "Task assistant without long-term memory.",
        memory: false,
    },
];

/// The namespace the LangGraph server derives system assistant ids from, so a graph's assistant
/// has the same id on mnemo as on the reference server (`agent` → `fe096781-…`).
const ASSISTANT_NAMESPACE: Uuid = Uuid::from_u128(0x6ba7b821_9dad_11d1_80b4_00c04fd430c8);

/// The system assistant's id of the graph `graph_id` (mnemo's or a graph worker's), derived as
/// the LangGraph server derives it.
pub fn system_assistant_id(graph_id: &str) -> Uuid {
    Uuid::new_v5(&ASSISTANT_NAMESPACE, graph_id.as_bytes())
}

impl Graph {
    pub fn assistant_id(&self) -> Uuid {
        system_assistant_id(self.id)
    }

    /// The graph's system assistant (written at start-up, everyone's to use, never changed).
    pub fn system_assistant(&self) -> crate::model::NewAssistant {
        crate::model::NewAssistant {
            assistant_id: self.assistant_id().to_string(),
            graph_id: self.id.to_string(),
            owner: None,
            name: self.id.to_string(),
            description: Some(self.description.to_string()),
            config: json!({}),
            context: json!({}),
            metadata: json!({ "created_by": "system" }),
            do_nothing_if_exists: true,
        }
    }

    /// The graph named `graph_id` (422 for another name).
    pub fn named(graph_id: &str) -> Result<&'static Graph, String> {
        GRAPHS.iter().find(|g| g.id == graph_id).ok_or_else(|| {
            let names: Vec<&str> = GRAPHS.iter().map(|g| g.id).collect();
            format!(
                "Unknown graph_id {graph_id:?}: this server serves {}",
                names.join(", ")
            )
        })
    }

    /// JSON schemas of the graph's input, output and state (a list of LangChain messages) and of
    /// its configuration.
    pub fn schemas(&self) -> Value {
        let state = json!({
            "title": "State",
            "type": "object",
            "properties": {
                "messages": {
                    "title": "Messages",
                    "type": "array",
                    "items": { "type": "object", "description": "A LangChain message: type, content, id, tool_calls…" }
                }
            },
            "required": ["messages"],
        });
        let config = json!({
            "title": "Configurable",
            "type": "object",
            "properties": { "user_id": { "title": "User Id", "type": "string", "default": "default" } },
        });
        json!({
            "graph_id": self.id,
            "input_schema": state,
            "output_schema": state,
            "state_schema": state,
            "config_schema": config,
            "context_schema": config,
        })
    }

    /// The ReAct loop as nodes and edges (for LangGraph Studio's drawing).
    pub fn drawing(&self) -> Value {
        let node = |id: &str| json!({ "id": id, "type": if id.starts_with("__") { "schema" } else { "runnable" }, "data": id });
        json!({
            "nodes": [node("__start__"), node("agent"), node("tools"), node("__end__")],
            "edges": [
                { "source": "__start__", "target": "agent" },
                { "source": "agent", "target": "tools", "conditional": true },
                { "source": "agent", "target": "__end__", "conditional": true },
                { "source": "tools", "target": "agent" },
            ],
        })
    }
}

/// The nodes of mnemo's graphs (both run the same ReAct loop): the model, then the tools it
/// called.
pub const NODES: [&str; 2] = ["agent", "tools"];

/// The nodes `interrupt_before` / `interrupt_after` name: `"*"` (every node) or a list of
/// node names; an unknown name is an error that says which names there are.
/// Whether `names` is what `interrupt_before`/`interrupt_after` may be for any graph: absent,
/// `"*"` or a list of names.
pub fn node_list(field: &str, names: Option<&Value>) -> Result<(), String> {
    match names {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "*" => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(format!("{field} must be \"*\" or a list of node names")),
    }
}

pub fn nodes_named(field: &str, names: &Value) -> Result<Vec<&'static str>, String> {
    let list = match names {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) if s == "*" => return Ok(NODES.to_vec()),
        Value::Array(items) => items,
        _ => {
            return Err(format!(
                "{field} must be \"*\" or a list of node names ({})",
                NODES.join(", ")
            ));
        }
    };
    list.iter()
        .map(|n| {
            let name = n.as_str().unwrap_or_default();
            NODES
                .iter()
                .find(|&&node| node == name)
                .copied()
                .ok_or_else(|| {
                    format!(
                        "{field}: unknown node {n}; the nodes are {}",
                        NODES.join(", ")
                    )
                })
        })
        .collect()
}

/// LangGraph's `tools_condition`: `tools` when the last message is an AI message that calls
/// tools, else the end.
pub fn tools_condition(values: &Value) -> Option<&'static str> {
    let last = values.get("messages")?.as_array()?.last()?;
    let calls = last.get("tool_calls").and_then(Value::as_array);
    calls.is_some_and(|c| !c.is_empty()).then_some("tools")
}

/// The node that runs after a checkpoint, as LangGraph's `next` shows it, from the node that
/// wrote it (its metadata's `writes`) and its values: after a run's input and after the tools
/// comes the model; after the model, the tools it called or the end. A state update not made
/// as one of the nodes goes by the last message.
pub fn next_node(metadata: &Value, values: &Value) -> Option<&'static str> {
    let writer = metadata
        .get("writes")
        .and_then(Value::as_object)
        .filter(|w| w.len() == 1)
        .and_then(|w| w.keys().next())
        .map(String::as_str)
        .filter(|&w| w != "__input__" || metadata.get("source") == Some(&json!("input")));
    match writer {
        Some("agent") => tools_condition(values),
        Some("tools" | "__start__" | "__input__") => Some("agent"),
        _ => {
            let last = values.get("messages")?.as_array()?.last()?;
            match last.get("type").and_then(Value::as_str) {
                Some("ai") => tools_condition(values),
                _ => Some("agent"),
            }
        }
    }
}

/// The graph an `assistant_id` names: a graph name or a system assistant's UUID.
pub fn resolve(assistant_id: &str) -> Result<&'static Graph, String> {
    GRAPHS
        .iter()
        .find(|g| g.id == assistant_id || Uuid::parse_str(assistant_id).is_ok_and(|u| u == g.assistant_id()))
        .ok_or_else(|| {
            let names: Vec<&str> = GRAPHS.iter().map(|g| g.id).collect();
            format!(
                "Invalid assistant: '{assistant_id}'. Must be either:\n- A valid assistant UUID, or\n- One of the registered graphs: {}",
                names.join(", ")
            )
        })
}

/// The graph a thread belongs to, by its `metadata.graph_id` (the LangGraph convention).
pub fn of_thread(metadata: &Value) -> Option<&'static Graph> {
    metadata
        .get("graph_id")
        .and_then(Value::as_str)
        .and_then(|id| GRAPHS.iter().find(|g| g.id == id))
}

/// The nodes to run after a checkpoint (whose `values` are given): from the graph on a
/// checkpoint of one of mnemo's graphs, from the checkpoint's trigger channels on any other
/// (LangGraph's rule).
pub fn next_of(rec: &crate::model::CheckpointRecord, values: &Value) -> Vec<String> {
    match of_thread(&rec.metadata) {
        Some(_) => next_node(&rec.metadata, values)
            .map(|n| vec![n.to_string()])
            .unwrap_or_default(),
        None => rec.triggered_nodes(),
    }
}

/// A thread's status once its run stopped at `latest` (a checkpoint and its values):
/// `interrupted` while a node is still to run (as LangGraph's), else `idle`.
pub fn status_at(latest: Option<(&crate::model::CheckpointRecord, &Value)>) -> &'static str {
    if latest.is_some_and(|(rec, values)| !next_of(rec, values).is_empty()) {
        "interrupted"
    } else {
        "idle"
    }
}

/// The id LangGraph's `RemoveMessage` uses to clear the whole list.
const REMOVE_ALL: &str = "__remove_all__";

/// A message as LangChain serialises it: OpenAI-style `role` becomes `type`, and a message
/// without an id gets one.
fn normalise(message: &Value) -> Value {
    let mut m = match message {
        Value::String(text) => json!({ "type": "human", "content": text }),
        Value::Object(_) => message.clone(),
        other => json!({ "type": "human", "content": other.to_string() }),
    };
    if let Some(obj) = m.as_object_mut() {
        if !obj.contains_key("type") {
            let kind = match obj.remove("role").as_ref().and_then(Value::as_str) {
                Some("assistant" | "ai") => "ai",
                Some("system") => "system",
                Some("tool") => "tool",
                _ => "human",
            };
            obj.insert("type".into(), json!(kind));
        }
        if obj.get("id").is_none_or(Value::is_null) {
            obj.insert("id".into(), json!(Uuid::new_v4().to_string()));
        }
    }
    m
}

/// LangGraph's `add_messages` reducer: new messages are appended, a message with an id already
/// in the list replaces it in place, `{"type": "remove", "id": …}` removes one (or all, with
/// the id `__remove_all__`).
pub fn add_messages(current: Option<Value>, update: &Value) -> Value {
    let mut list: Vec<Value> = match current {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    let updates: Vec<Value> = match update {
        Value::Array(items) => items.iter().map(normalise).collect(),
        Value::Null => Vec::new(),
        one => vec![normalise(one)],
    };
    for m in updates {
        let id = m.get("id").cloned().unwrap_or(Value::Null);
        if m.get("type").and_then(Value::as_str) == Some("remove") {
            if id.as_str() == Some(REMOVE_ALL) {
                list.clear();
            } else {
                list.retain(|x| x.get("id") != Some(&id));
            }
        } else if let Some(slot) = list.iter_mut().find(|x| x.get("id") == Some(&id)) {
            *slot = m;
        } else {
            list.push(m);
        }
    }
    Value::Array(list)
}

impl Graph {
    /// The state after `changes`: `messages` through `add_messages`, every other key replaced.
    pub fn reduce(&self, key: &str, current: Option<Value>, change: &Value) -> Value {
        match key {
            "messages" => add_messages(current, change),
            _ => change.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &Value) -> Vec<&str> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str())
            .collect()
    }

    #[test]
    fn add_messages_appends_replaces_and_removes() {
        let list = add_messages(
            None,
            &json!([{"role": "user", "content": "hi", "id": "1"}, "plain text"]),
        );
        assert_eq!(list[0]["type"], "human");
        assert!(list[0].get("role").is_none(), "role becomes type");
        assert_eq!(list[1]["content"], "plain text");
        assert!(list[1]["id"].as_str().is_some_and(|id| !id.is_empty()));
        let second = list[1]["id"].as_str().unwrap().to_string();

        let list = add_messages(
            Some(list),
            &json!([{"role": "assistant", "content": "again", "id": "1"}, {"role": "tool", "content": "r", "id": "3"}]),
        );
        assert_eq!(ids(&list), ["1", second.as_str(), "3"], "replaced in place");
        assert_eq!(
            (list[0]["type"].clone(), list[0]["content"].clone()),
            (json!("ai"), json!("again"))
        );
        assert_eq!(list[2]["type"], "tool");

        let list = add_messages(Some(list), &json!({"type": "remove", "id": second}));
        assert_eq!(ids(&list), ["1", "3"]);
        let list = add_messages(
            Some(list),
            &json!([{"type": "remove", "id": REMOVE_ALL}, {"type": "system", "content": "s", "id": "4"}]),
        );
        assert_eq!(ids(&list), ["4"], "cleared, then appended");
        assert_eq!(add_messages(Some(list.clone()), &Value::Null), list);
    }

    #[test]
    fn the_model_comes_after_input_and_tools_and_the_tools_after_a_call() {
        let call = json!({"messages": [{"type": "ai", "content": "", "tool_calls": [{"id": "c", "name": "list_tasks", "args": {}}]}]});
        let answer = json!({"messages": [{"type": "ai", "content": "done", "tool_calls": []}]});
        let asked = json!({"messages": [{"type": "human", "content": "get tasks"}]});
        let by = |writer: &str| json!({"source": "loop", "writes": {writer: {}}});
        assert_eq!(next_node(&by("agent"), &call), Some("tools"));
        assert_eq!(next_node(&by("agent"), &answer), None);
        assert_eq!(next_node(&by("tools"), &answer), Some("agent"));
        assert_eq!(next_node(&by("__start__"), &asked), Some("agent"));
        assert_eq!(
            next_node(
                &json!({"source": "input", "writes": {"__input__": {}}}),
                &asked
            ),
            Some("agent")
        );
        // not written by a node (a state update): by the last message
        assert_eq!(
            next_node(&json!({"source": "update"}), &call),
            Some("tools")
        );
        assert_eq!(next_node(&json!({"source": "update"}), &answer), None);
        assert_eq!(next_node(&json!({}), &asked), Some("agent"));
        assert_eq!(next_node(&json!({}), &json!({})), None);
    }

    #[test]
    fn interrupt_nodes_are_star_a_list_of_known_nodes_or_nothing() {
        assert_eq!(
            nodes_named("interrupt_before", &json!("*")),
            Ok(NODES.to_vec())
        );
        assert_eq!(
            nodes_named("interrupt_before", &json!(["tools"])),
            Ok(vec!["tools"])
        );
        assert_eq!(nodes_named("interrupt_before", &Value::Null), Ok(vec![]));
        let unknown = nodes_named("interrupt_after", &json!(["agent", "nope"])).unwrap_err();
        assert!(
            unknown.contains("unknown node \"nope\"") && unknown.contains("agent, tools"),
            "{unknown}"
        );
        assert!(nodes_named("interrupt_after", &json!(3)).is_err());
    }

    #[test]
    fn assistants_resolve_by_graph_name_or_system_uuid() {
        for g in &GRAPHS {
            assert_eq!(resolve(g.id).map(|r| r.id), Ok(g.id));
            assert_eq!(
                resolve(&g.assistant_id().to_string()).map(|r| r.id),
                Ok(g.id)
            );
            assert_eq!(
                of_thread(&json!({"graph_id": g.id})).map(|r| r.id),
                Some(g.id)
            );
        }
        let err = resolve("nope").map(|g| g.id).unwrap_err();
        assert!(err.contains("agent") && err.contains("legacy"), "{err}");
        assert!(of_thread(&json!({})).is_none());
    }
}
