//! The built-in model's decisions (the run loop that executes them comes with runs).

use mnemo::agent::builtin::respond;
use mnemo::agent::{Turn, tool_specs};
use mnemo::graphs::resolve;
use serde_json::{Value, json};

fn human(text: &str) -> Value {
    json!({"type": "human", "content": text, "id": "h"})
}

fn called(turn: Turn) -> (String, Value) {
    match turn {
        Turn::Call(calls) => {
            assert_eq!(calls.len(), 1);
            assert!(calls[0].id.starts_with("call_"));
            (calls[0].name.clone(), calls[0].args.clone())
        }
        Turn::Answer(a) => panic!("expected a tool call, got the answer {a:?}"),
    }
}

#[test]
fn task_commands_become_tool_calls() {
    let agent = resolve("agent").unwrap();
    for ask in [
        "get tasks",
        "Get tasks",
        "list my tasks",
        "what are my tasks?",
        "show my tasks",
    ] {
        assert_eq!(
            called(respond(agent, &[human(ask)])),
            ("list_tasks".into(), json!({})),
            "{ask}"
        );
    }
    assert_eq!(
        called(respond(agent, &[human("list my done tasks")])),
        ("list_tasks".into(), json!({"status": "done"}))
    );
    assert_eq!(
        called(respond(agent, &[human("add task Buy milk.")])),
        ("create_task".into(), json!({"title": "Buy milk"}))
    );
    assert_eq!(
        called(respond(agent, &[human("complete task buy milk")])),
        ("complete_task".into(), json!({"task": "buy milk"}))
    );
    assert_eq!(
        called(respond(agent, &[human("delete task buy milk")])),
        ("delete_task".into(), json!({"task": "buy milk"}))
    );
}

#[test]
fn memory_commands_only_on_the_agent_graph() {
    let agent = resolve("agent").unwrap();
    let legacy = resolve("legacy").unwrap();
    assert_eq!(
        called(respond(agent, &[human("remember that I like tea")])),
        ("remember".into(), json!({"fact": "I like tea"}))
    );
    assert_eq!(
        called(respond(agent, &[human("what do you remember?")])),
        ("recall".into(), json!({}))
    );
    assert_eq!(
        called(respond(agent, &[human("recall tea")])),
        ("recall".into(), json!({"query": "tea"}))
    );
    assert!(matches!(
        respond(legacy, &[human("remember that I like tea")]),
        Turn::Answer(_)
    ));
    let names = |g| {
        tool_specs(g)
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(names(agent).contains(&"recall".to_string()));
    assert!(!names(legacy).contains(&"remember".to_string()));
}

#[test]
fn after_tool_results_it_answers_with_them_and_otherwise_explains_itself() {
    let agent = resolve("agent").unwrap();
    let conversation = [
        human("get tasks"),
        json!({"type": "ai", "content": "", "tool_calls": [{"id": "c1", "name": "list_tasks", "args": {}}]}),
        json!({"type": "tool", "content": "1. buy milk (todo)", "tool_call_id": "c1"}),
    ];
    assert_eq!(
        respond(agent, &conversation),
        Turn::Answer("1. buy milk (todo)".into())
    );
    let Turn::Answer(help) = respond(agent, &[human("sing me a song")]) else {
        panic!("an answer")
    };
    assert!(
        help.contains("get tasks") && help.contains("remember"),
        "{help}"
    );
    let blocks = json!({"type": "human", "content": [{"type": "text", "text": "get tasks"}]});
    assert_eq!(
        called(respond(agent, &[blocks])).0,
        "list_tasks",
        "content blocks are read too"
    );
}
