//! Run leases and wake-ups between processes on one database: a live process keeps its runs,
//! and a run queued through one process starts when a run of another frees the thread.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::fake_llm::{FakeLlm, Reply};
use crate::helpers::{Kind, TestApp, TestDb};

both_backends!(
    a_live_process_keeps_its_runs_past_the_lease,
    a_run_queued_through_another_process_starts_when_the_thread_frees,
);

/// Two mnemos on one database: `a` calls the fake model, `b` the builtin one.
async fn two_processes(kind: Kind, fake: &FakeLlm) -> Option<(TestApp, TestApp, TestDb)> {
    let db = TestDb::new(kind).await?;
    let mut config = db.config();
    config.run_lease_s = 3;
    let b = TestApp::start(config.clone()).await;
    config.llm = "openai".into();
    config.llm_base_url = fake.base_url.clone();
    config.llm_read_timeout_ms = 60_000;
    let a = TestApp::start(config).await;
    Some((a, b, db))
}

async fn stalled_run(app: &TestApp, fake: &FakeLlm) -> (String, String) {
    let (s, thread) = app.post("/threads", json!({})).await;
    assert_eq!(s, 200);
    let tid = thread["thread_id"].as_str().unwrap().to_string();
    let (s, run) = app
        .post(
            &format!("/threads/{tid}/runs"),
            json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]}}),
        )
        .await;
    assert_eq!(s, 200, "{run}");
    fake.received(1).await;
    (tid, run["run_id"].as_str().unwrap().to_string())
}

async fn a_live_process_keeps_its_runs_past_the_lease(kind: Kind) {
    let fake = FakeLlm::start(vec![Reply::Stall(vec![
        json!({"role": "assistant", "content": "hm "}),
    ])])
    .await;
    let Some((a, b, _db)) = two_processes(kind, &fake).await else {
        return;
    };
    let (tid, run_id) = stalled_run(&a, &fake).await;
    // two leases go by while b's keeper looks for expired ones
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (s, run) = b.get(&format!("/threads/{tid}/runs/{run_id}")).await;
    assert_eq!(s, 200);
    assert_eq!(run["status"], "running", "renewed, never reaped: {run}");
    let (s, thread) = b.get(&format!("/threads/{tid}")).await;
    assert_eq!((s, thread["status"].clone()), (200, json!("busy")));
}

/// Postgres only: SQLite serves one process, whose runs are woken in process.
async fn a_run_queued_through_another_process_starts_when_the_thread_frees(kind: Kind) {
    if kind == Kind::Sqlite {
        return;
    }
    let fake = FakeLlm::start(vec![Reply::Stall(vec![
        json!({"role": "assistant", "content": "hm "}),
    ])])
    .await;
    let Some((a, b, _db)) = two_processes(kind, &fake).await else {
        return;
    };
    let (tid, first) = stalled_run(&a, &fake).await;
    let (s, queued) = b
        .post(
            &format!("/threads/{tid}/runs"),
            json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "get tasks"}]}, "multitask_strategy": "enqueue"}),
        )
        .await;
    assert_eq!(s, 200, "{queued}");
    assert_eq!(queued["status"], "pending");
    let queued_id = queued["run_id"].as_str().unwrap().to_string();
    let (s, _) = a
        .post(&format!("/threads/{tid}/runs/{first}/cancel"), json!({}))
        .await;
    assert_eq!(s, 202);
    // nothing polls: only the thread's wake-up (NOTIFY on Postgres) lets b's run go
    let joined = tokio::time::timeout(
        Duration::from_secs(10),
        b.get(&format!("/threads/{tid}/runs/{queued_id}/join")),
    )
    .await
    .expect("the queued run starts and ends");
    assert_eq!(joined.0, 200, "{}", joined.1);
    let (_, run) = b.get(&format!("/threads/{tid}/runs/{queued_id}")).await;
    assert_eq!(run["status"], "success", "{run}");
    let messages: Vec<Value> = joined.1["messages"].as_array().cloned().unwrap_or_default();
    assert!(!messages.is_empty(), "{}", joined.1);
}
