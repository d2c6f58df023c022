//! `durability` on runs: `sync` commits each step before the run goes on, `exit` writes only
//! the last step, `async` (the default) writes in the background.

use serde_json::{Value, json};

use crate::both_backends;
use crate::fake_llm::{FakeLlm, Reply};
use crate::helpers::{Kind, TestApp};
use crate::models::app_with_model;

both_backends!(
    sync_commits_the_input_step_before_the_model_is_called,
    exit_writes_only_the_last_step,
    an_unknown_durability_is_422,
);

async fn thread(app: &TestApp) -> String {
    let (s, t) = app.post("/threads", json!({})).await;
    assert_eq!(s, 200);
    t["thread_id"].as_str().unwrap().to_string()
}

async fn history_len(app: &TestApp, tid: &str) -> usize {
    let (s, h) = app.get(&format!("/threads/{tid}/history?limit=100")).await;
    assert_eq!(s, 200, "{h}");
    h.as_array().map_or(0, Vec::len)
}

async fn stalled(app: &TestApp, fake: &FakeLlm, tid: &str, durability: &str) -> String {
    let (s, run) = app
        .post(
            &format!("/threads/{tid}/runs"),
            json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]}, "durability": durability}),
        )
        .await;
    assert_eq!(s, 200, "{run}");
    fake.received(1).await;
    run["run_id"].as_str().unwrap().to_string()
}

/// Cancels the run and waits for its end.
async fn cancel(app: &TestApp, tid: &str, run_id: &str) {
    let path = format!("/threads/{tid}/runs/{run_id}/cancel?wait=1");
    let (s, _) = app.post(&path, json!({})).await;
    assert_eq!(s, 200);
}

fn stall() -> Reply {
    Reply::Stall(vec![json!({"role": "assistant", "content": "hm "})])
}

async fn sync_commits_the_input_step_before_the_model_is_called(kind: Kind) {
    let fake = FakeLlm::start(vec![stall()]).await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let tid = thread(&app).await;
    let run_id = stalled(&app, &fake, &tid, "sync").await;
    assert_eq!(
        history_len(&app, &tid).await,
        1,
        "the input step is committed"
    );
    cancel(&app, &tid, &run_id).await;
}

async fn exit_writes_only_the_last_step(kind: Kind) {
    let fake = FakeLlm::start(vec![stall()]).await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let tid = thread(&app).await;
    let run_id = stalled(&app, &fake, &tid, "exit").await;
    assert_eq!(history_len(&app, &tid).await, 0, "nothing written mid-run");
    cancel(&app, &tid, &run_id).await;
    assert_eq!(
        history_len(&app, &tid).await,
        1,
        "the last step, when the run ended"
    );

    // a whole run (the fake answers once its script is spent): one checkpoint, not one per step
    let (s, out) = app
        .post(
            &format!("/threads/{tid}/runs/wait"),
            json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "again"}]}, "durability": "exit"}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(history_len(&app, &tid).await, 2);
    let (_, state) = app.get(&format!("/threads/{tid}/state")).await;
    let messages = state["values"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        messages.iter().any(|m: &Value| m["content"] == "again"),
        "{state}"
    );
    assert_eq!(
        messages.last().map(|m| m["type"].clone()),
        Some(json!("ai")),
        "{state}"
    );
}

async fn an_unknown_durability_is_422(kind: Kind) {
    let fake = FakeLlm::start(vec![]).await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let tid = thread(&app).await;
    let (s, b) = app
        .post(
            &format!("/threads/{tid}/runs/wait"),
            json!({"assistant_id": "agent", "input": {"messages": []}, "durability": "never"}),
        )
        .await;
    assert_eq!(s, 422, "{b}");
}
