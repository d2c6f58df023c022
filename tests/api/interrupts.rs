//! Static interrupts (`interrupt_before` / `interrupt_after`) and the `next` of every
//! checkpoint, as LangGraph shows them.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Kind, TestApp, spawn_app};
use crate::runs::{ask, last_text, wait};

both_backends!(next_follows_a_chat_through_its_history,);

async fn user(app: &TestApp, user_id: &str) -> String {
    let (_, t) = app
        .post("/threads", json!({"metadata": {"user_id": user_id}}))
        .await;
    t["thread_id"].as_str().unwrap().to_string()
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
