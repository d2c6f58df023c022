//! The built-in model: deterministic and offline, so mnemo answers with no network and no key.
//! It understands the task and memory commands below and otherwise says what it can do. It goes
//! through the same loop as a real model: it asks for tools, reads their results, answers.
//!
//! - "get tasks", "list my tasks", "what are my tasks" (also "show …", "my todo tasks")
//! - "add task …", "complete task …", "delete task …"
//! - "remember …", "what do you remember", "recall …" (the `agent` graph only)

use serde_json::{Value, json};
use uuid::Uuid;

use super::{ToolCall, Turn, text_of};
use crate::graphs::Graph;

fn call(name: &str, args: Value) -> Turn {
    Turn::Call(vec![ToolCall {
        id: format!("call_{}", Uuid::new_v4().simple()),
        name: name.into(),
        args,
    }])
}

/// `text` after the first of `prefixes` it starts with (case-insensitive), trimmed.
fn after_prefix<'a>(text: &'a str, prefixes: &[&str]) -> Option<&'a str> {
    let lower = text.to_lowercase();
    prefixes
        .iter()
        .find(|p| lower.starts_with(*p))
        .and_then(|p| text.get(p.len()..))
        .map(|rest| rest.trim().trim_end_matches(['.', '!', '?']).trim())
        .filter(|rest| !rest.is_empty())
}

fn help(graph: &Graph) -> String {
    let mut s = String::from(
        "I can manage your tasks: \"get tasks\", \"add task <title>\", \"complete task <title>\", \"delete task <title>\".",
    );
    if graph.memory {
        s.push_str(" I can also remember things: \"remember <fact>\", \"what do you remember\", \"recall <word>\".");
    }
    s
}

/// The model's next turn for this conversation.
pub fn respond(graph: &Graph, messages: &[Value]) -> Turn {
    let Some(last) = messages.last() else {
        return Turn::Answer(help(graph));
    };
    // after tool results, the answer is what the tools said
    if last.get("type").and_then(Value::as_str) == Some("tool") {
        let results: Vec<String> = messages
            .iter()
            .rev()
            .take_while(|m| m.get("type").and_then(Value::as_str) == Some("tool"))
            .map(text_of)
            .collect();
        return Turn::Answer(results.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    let text = text_of(last);
    let lower = text.trim().to_lowercase();
    if let Some(title) = after_prefix(
        text.trim(),
        &["add task ", "add a task ", "create task ", "new task "],
    ) {
        return call("create_task", json!({ "title": title }));
    }
    if let Some(task) = after_prefix(
        text.trim(),
        &[
            "complete task ",
            "finish task ",
            "done with task ",
            "mark done ",
        ],
    ) {
        return call("complete_task", json!({ "task": task }));
    }
    if let Some(task) = after_prefix(text.trim(), &["delete task ", "remove task "]) {
        return call("delete_task", json!({ "task": task }));
    }
    if graph.memory {
        if lower.starts_with("what do you remember") || lower == "recall" {
            return call("recall", json!({}));
        }
        if let Some(query) = after_prefix(text.trim(), &["recall "]) {
            return call("recall", json!({ "query": query }));
        }
        if let Some(fact) = after_prefix(text.trim(), &["remember that ", "remember "]) {
            return call("remember", json!({ "fact": fact }));
        }
    }
    let asks_for_tasks = lower.contains("task")
        && ["get", "list", "show", "what are", "what's on", "my "]
            .iter()
            .any(|w| lower.contains(w));
    if asks_for_tasks {
        let status = ["todo", "doing", "done"]
            .into_iter()
            .find(|s| lower.contains(&format!("{s} task")));
        return call(
            "list_tasks",
            status.map_or_else(|| json!({}), |s| json!({ "status": s })),
        );
    }
    Turn::Answer(help(graph))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphs::{GRAPHS, resolve};

    fn human(text: &str) -> Value {
        json!({"type": "human", "content": text})
    }

    /// The tool and arguments of a one-call turn.
    fn called(turn: Turn) -> (String, Value) {
        match turn {
            Turn::Call(calls) if calls.len() == 1 => (calls[0].name.clone(), calls[0].args.clone()),
            Turn::Call(calls) => panic!("{} calls", calls.len()),
            Turn::Answer(text) => panic!("answered {text:?}"),
        }
    }

    #[test]
    fn task_commands_become_tool_calls() {
        let agent = resolve("agent").unwrap();
        let ask = |text: &str| called(respond(agent, &[human(text)]));
        assert_eq!(
            ask("Add task buy milk."),
            ("create_task".into(), json!({"title": "buy milk"}))
        );
        assert_eq!(
            ask("complete task buy milk"),
            ("complete_task".into(), json!({"task": "buy milk"}))
        );
        assert_eq!(
            ask("remove task buy milk!"),
            ("delete_task".into(), json!({"task": "buy milk"}))
        );
        assert_eq!(ask("get tasks"), ("list_tasks".into(), json!({})));
        assert_eq!(
            ask("show my done tasks"),
            ("list_tasks".into(), json!({"status": "done"}))
        );
    }

    #[test]
    fn memory_commands_exist_on_the_agent_graph_only() {
        let (agent, legacy) = (resolve("agent").unwrap(), resolve("legacy").unwrap());
        assert_eq!(
            called(respond(agent, &[human("remember that I like tea")])),
            ("remember".into(), json!({"fact": "I like tea"}))
        );
        assert_eq!(
            called(respond(agent, &[human("recall tea")])),
            ("recall".into(), json!({"query": "tea"}))
        );
        assert_eq!(
            called(respond(agent, &[human("What do you remember?")])),
            ("recall".into(), json!({}))
        );
        match respond(legacy, &[human("remember that I like tea")]) {
            Turn::Answer(help) => assert!(
                help.contains("get tasks") && !help.contains("remember"),
                "{help}"
            ),
            Turn::Call(_) => panic!("legacy has no memory tools"),
        }
    }

    #[test]
    fn after_tool_results_the_answer_is_what_the_tools_said() {
        let agent = resolve("agent").unwrap();
        let messages = [
            human("get tasks"),
            json!({"type": "ai", "content": "", "tool_calls": [{"id": "a"}, {"id": "b"}]}),
            json!({"type": "tool", "content": "one", "tool_call_id": "a"}),
            json!({"type": "tool", "content": "two", "tool_call_id": "b"}),
        ];
        match respond(agent, &messages) {
            Turn::Answer(text) => assert_eq!(text, "one\ntwo"),
            Turn::Call(_) => panic!("a second call"),
        }
        for g in &GRAPHS {
            assert!(
                matches!(respond(g, &[]), Turn::Answer(_)),
                "nothing asked: the help"
            );
            assert!(matches!(respond(g, &[human("hello")]), Turn::Answer(_)));
        }
    }
}
