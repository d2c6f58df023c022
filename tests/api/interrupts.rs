//! Static interrupts (`interrupt_before` / `interrupt_after`) and the `next` of every
//! checkpoint, as LangGraph shows them.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Kind, TestApp, spawn_app};
use crate::runs::{ask, assert_thread_status, last_text, wait};
use crate::sse::sse_events;

both_backends!(
    interrupt_before_tools_stops_before_the_tool_and_null_input_resumes,
    interrupt_after_agent_and_every_node,
    a_new_input_after_a_static_interrupt_drops_the_waiting_tool_call,
    unknown_interrupt_nodes_are_422,
    next_follows_a_chat_through_its_history,
);

async fn user(app: &TestApp, user_id: &str) -> String {
    let (_, t) = app
        .post("/threads", json!({"metadata": {"user_id": user_id}}))
        .await;
    t["thread_id"].as_str().unwrap().to_string()
}

async fn titles(app: &TestApp, user_id: &str) -> Vec<String> {
    let (_, tasks) = app.get(&format!("/tasks?user_id={user_id}")).await;
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_string())
        .collect()
}

async fn state(app: &TestApp, thread: &str) -> Value {
    app.get(&format!("/threads/{thread}/state")).await.1
}

/// The names of a state's tasks.
fn task_names(state: &Value) -> Vec<&str> {
    state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

/// A streamed run's events.
async fn stream(app: &TestApp, thread: &str, body: Value) -> Vec<(String, Value)> {
    let resp = app
        .client
        .post(app.url(&format!("/threads/{thread}/runs/stream")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    sse_events(&resp.text().await.unwrap())
}

async fn interrupt_before_tools_stops_before_the_tool_and_null_input_resumes(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let thread = user(&app, "s1").await;
    let (s, values, location) = wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("add task water the plants"), "interrupt_before": ["tools"]}),
    )
    .await;
    assert_eq!(s, 200, "{values}");
    // stopped with the model's tool call, the tool not run
    let last = values["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["tool_calls"][0]["name"], "create_task", "{values}");
    assert!(values.get("__interrupt__").is_none(), "{values}");
    assert!(
        titles(&app, "s1").await.is_empty(),
        "the task is not added yet"
    );
    // as LangGraph's: the run succeeded, the thread waits on the tools
    assert_eq!(app.get(&location.unwrap()).await.1["status"], "success");
    assert_thread_status(&app, &thread, "interrupted").await;
    assert_eq!(
        app.get(&format!("/threads/{thread}")).await.1["interrupts"],
        json!({})
    );
    let st = state(&app, &thread).await;
    assert_eq!(st["next"], json!(["tools"]));
    assert_eq!(task_names(&st), ["tools"]);
    assert_eq!(st["tasks"][0]["interrupts"], json!([]));
    assert_eq!(st["interrupts"], json!([]));

    // no input: the run goes on with the waiting node
    let events = stream(
        &app,
        &thread,
        json!({"assistant_id": "agent", "stream_mode": ["values", "updates"]}),
    )
    .await;
    let updates: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "updates")
        .map(|(_, d)| d)
        .collect();
    assert!(updates[0].get("tools").is_some(), "{events:?}");
    assert!(updates[1].get("agent").is_some(), "{events:?}");
    // first the state it resumes from, as LangGraph sends it
    assert_eq!(events[1].0, "values");
    assert_eq!(events[1].1, st["values"]);
    let (_, end) = events.iter().rfind(|(n, _)| n == "values").unwrap();
    assert!(last_text(end).contains("water the plants"), "{end}");
    assert_eq!(titles(&app, "s1").await, ["water the plants"]);
    assert_thread_status(&app, &thread, "idle").await;
    assert_eq!(state(&app, &thread).await["next"], json!([]));

    // nothing waits now: a run without input writes nothing
    let before = state(&app, &thread).await;
    let (s, values, _) = wait(&app, &thread, json!({"assistant_id": "agent"})).await;
    assert_eq!(s, 200);
    assert_eq!(values, before["values"]);
    assert_eq!(
        state(&app, &thread).await["checkpoint"],
        before["checkpoint"]
    );
    app.stop().await;
}

async fn interrupt_after_agent_and_every_node(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let thread = user(&app, "s2").await;
    let events = stream(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("add task call mum"),
               "interrupt_after": ["agent"], "stream_mode": ["updates"]}),
    )
    .await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["metadata", "updates", "updates"], "{events:?}");
    assert_eq!(
        events[1].1["agent"]["messages"][0]["tool_calls"][0]["name"],
        "create_task"
    );
    assert_eq!(events[2].1, json!({"__interrupt__": []}));
    assert_eq!(state(&app, &thread).await["next"], json!(["tools"]));
    assert!(titles(&app, "s2").await.is_empty());

    // "*": the resumed node runs, then the run stops before the next one
    let (s, values, _) = wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "interrupt_before": "*"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(titles(&app, "s2").await, ["call mum"]);
    let last = values["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["type"], "tool", "{values}");
    assert_thread_status(&app, &thread, "interrupted").await;
    let st = state(&app, &thread).await;
    assert_eq!(st["next"], json!(["agent"]));
    assert_eq!(task_names(&st), ["agent"]);
    // after every node: the model answers, and after its answer nothing waits
    let (_, values, _) = wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "interrupt_after": "*"}),
    )
    .await;
    assert!(last_text(&values).contains("call mum"), "{values}");
    assert_thread_status(&app, &thread, "idle").await;
    assert_eq!(state(&app, &thread).await["next"], json!([]));

    // before every node, from new input: it stops before the model
    let (_, values, _) = wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("get tasks"), "interrupt_before": "*"}),
    )
    .await;
    assert_eq!(last_text(&values), "get tasks");
    assert_thread_status(&app, &thread, "interrupted").await;
    assert_eq!(state(&app, &thread).await["next"], json!(["agent"]));
    let (_, values, _) = wait(&app, &thread, json!({"assistant_id": "agent"})).await;
    assert!(last_text(&values).contains("call mum"), "{values}");
    app.stop().await;
}

async fn a_new_input_after_a_static_interrupt_drops_the_waiting_tool_call(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let thread = user(&app, "s3").await;
    wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("add task paint the fence"), "interrupt_before": ["tools"]}),
    )
    .await;
    assert_eq!(state(&app, &thread).await["next"], json!(["tools"]));
    let (s, values, _) = wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("add task buy bread")}),
    )
    .await;
    assert_eq!(s, 200);
    assert!(last_text(&values).contains("buy bread"), "{values}");
    assert_eq!(titles(&app, "s3").await, ["buy bread"]);
    assert_thread_status(&app, &thread, "idle").await;
    app.stop().await;
}

async fn unknown_interrupt_nodes_are_422(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let thread = user(&app, "s4").await;
    for (path, body) in [
        (
            format!("/threads/{thread}/runs/wait"),
            json!({"assistant_id": "agent", "input": ask("hi"), "interrupt_before": ["tool"]}),
        ),
        (
            format!("/threads/{thread}/runs/stream"),
            json!({"assistant_id": "agent", "input": ask("hi"), "interrupt_after": ["agent", "model"]}),
        ),
        (
            "/runs".to_string(),
            json!({"assistant_id": "agent", "input": ask("hi"), "interrupt_before": "all"}),
        ),
    ] {
        let (s, err) = app.post(&path, body).await;
        assert_eq!(s, 422, "{path}: {err}");
        let detail = err["detail"].as_str().unwrap();
        assert!(detail.contains("interrupt_"), "{detail}");
        assert!(detail.contains("agent, tools"), "{detail}");
    }
    // nothing ran
    assert_eq!(
        app.get(&format!("/threads/{thread}/runs")).await.1,
        json!([])
    );
    app.stop().await;
}

async fn next_follows_a_chat_through_its_history(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let thread = user(&app, "s5").await;
    wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("add task buy milk")}),
    )
    .await;
    let (_, history) = app
        .post(&format!("/threads/{thread}/history"), json!({"limit": 10}))
        .await;
    let steps: Vec<(&str, &Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|h| {
            let writes = h["metadata"]["writes"].as_object().unwrap();
            (writes.keys().next().unwrap().as_str(), &h["next"])
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("__input__", &json!(["agent"])),
            ("agent", &json!(["tools"])),
            ("tools", &json!(["agent"])),
            ("agent", &json!([])),
        ]
    );
    for h in history.as_array().unwrap() {
        assert_eq!(
            task_names(h),
            h["next"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap())
                .collect::<Vec<_>>()
        );
    }

    // a state update goes by its last message: a question waits for the model
    let (s, _) = app
        .post(
            &format!("/threads/{thread}/state"),
            json!({"values": {"messages": [{"role": "user", "content": "get tasks"}]}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(state(&app, &thread).await["next"], json!(["agent"]));
    let (_, values, _) = wait(&app, &thread, json!({"assistant_id": "agent"})).await;
    assert!(last_text(&values).contains("buy milk"), "{values}");
    assert_eq!(state(&app, &thread).await["next"], json!([]));
    app.stop().await;
}
