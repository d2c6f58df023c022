//! Run leases and wake-ups between processes on one database: a live process keeps its runs,
//! a run queued through one process starts when a run of another frees the thread, a run
//! cancelled through one process stops at once in the process that executes it, and a stream
//! rejoined through one process follows a run another executes, live; a run a process has no
//! worker for is claimed from the queue by another.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::fake_llm::{FakeLlm, Reply};
use crate::helpers::{Kind, TestApp, TestDb};
use crate::sse::{Reader, events};

both_backends!(
    a_live_process_keeps_its_runs_past_the_lease,
    a_run_queued_through_another_process_starts_when_the_thread_frees,
    a_run_cancelled_through_another_process_stops_at_once,
    a_stream_rejoined_through_another_process_follows_the_run_live,
    a_process_without_a_free_worker_leaves_the_run_to_another,
);

/// Two mnemos on one database: `a` calls the fake model, `b` the builtin one.
async fn two_processes(kind: Kind, fake: &FakeLlm) -> Option<(TestApp, TestApp, TestDb)> {
    two_processes_leasing(kind, fake, 3).await
}

/// [`two_processes`] with runs leased for `lease_s` (renewed every third of it).
async fn two_processes_leasing(
    kind: Kind,
    fake: &FakeLlm,
    lease_s: u64,
) -> Option<(TestApp, TestApp, TestDb)> {
    let db = TestDb::new(kind).await?;
    let mut config = db.config();
    config.run_lease_s = lease_s;
    let b = TestApp::start(config.clone()).await;
    config.llm = "openai".into();
    config.llm_base_url = fake.base_url.clone();
    config.llm_read_timeout_ms = 60_000;
    let a = TestApp::start(config).await;
    Some((a, b, db))
}

/// A model whose first answer starts ("hm ") and never ends.
async fn stalling_model() -> FakeLlm {
    FakeLlm::start(vec![Reply::Stall(vec![
        json!({"role": "assistant", "content": "hm "}),
    ])])
    .await
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

/// Joins a run through `app` within `secs`; asserts it ended `status` and answers its values.
async fn joined_within(app: &TestApp, tid: &str, run_id: &str, secs: u64, status: &str) -> Value {
    let (s, values) = tokio::time::timeout(
        Duration::from_secs(secs),
        app.get(&format!("/threads/{tid}/runs/{run_id}/join")),
    )
    .await
    .unwrap_or_else(|_| panic!("run {run_id} did not end within {secs} s"));
    assert_eq!(s, 200, "{values}");
    let (_, run) = app.get(&format!("/threads/{tid}/runs/{run_id}")).await;
    assert_eq!(run["status"], status, "{run}");
    values
}

async fn a_live_process_keeps_its_runs_past_the_lease(kind: Kind) {
    let fake = stalling_model().await;
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
    let fake = stalling_model().await;
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
    let values = joined_within(&b, &tid, &queued_id, 10, "success").await;
    let messages: Vec<Value> = values["messages"].as_array().cloned().unwrap_or_default();
    assert!(!messages.is_empty(), "{values}");
}

/// Postgres only (SQLite serves one process). Leases of 60 s are renewed every 20 s: the run
/// stops at once only because the cancel's notification reaches the process that executes it.
async fn a_run_cancelled_through_another_process_stops_at_once(kind: Kind) {
    if kind == Kind::Sqlite {
        return;
    }
    let fake = stalling_model().await;
    let Some((a, b, _db)) = two_processes_leasing(kind, &fake, 60).await else {
        return;
    };
    let (tid, run_id) = stalled_run(&a, &fake).await;
    // the keeper's first renewal (at start-up) is behind us: the next is 20 s away
    let (s, run) = b
        .post(&format!("/threads/{tid}/runs/{run_id}/cancel"), json!({}))
        .await;
    // b ends the run's row itself (200): the run is not b's to tell to stop
    assert_eq!(
        (s, run["status"].clone()),
        (200, json!("interrupted")),
        "{run}"
    );
    // a's join waits for a's own run to end: it returns only once a has stopped it
    // (long before its next lease renewal)
    joined_within(&a, &tid, &run_id, 5, "interrupted").await;
    // its node had not finished: the thread is `interrupted` (as LangGraph's), free to run again
    let (_, thread) = a.get(&format!("/threads/{tid}")).await;
    assert_eq!(thread["status"], "interrupted", "{thread}");
    // the thread takes a new run (b's model is the builtin one)
    let (s, next) = b
        .post(
            &format!("/threads/{tid}/runs/wait"),
            json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "get tasks"}]}}),
        )
        .await;
    assert_eq!(s, 200, "{next}");
}

/// Postgres only. A resumable run streams on `a`; its stream rejoined through `b` from the start
/// gets what is stored, then follows the run as its events are stored (notified: nothing polls on
/// Postgres, so without the notices the words would come only when the run ends), and has every
/// event once, in order, as stored. A `join` through `b` ends with the run (notified too).
async fn a_stream_rejoined_through_another_process_follows_the_run_live(kind: Kind) {
    if kind == Kind::Sqlite {
        return;
    }
    let words = (0..12)
        .map(|i| json!({"content": format!("w{i} ")}))
        .collect();
    let fake = FakeLlm::start(vec![Reply::Stream(words, Duration::from_millis(150))]).await;
    let Some((a, b, _db)) = two_processes_leasing(kind, &fake, 60).await else {
        return;
    };
    let (_, thread) = a.post("/threads", json!({})).await;
    let tid = thread["thread_id"].as_str().unwrap().to_string();
    let (s, run) = a
        .post(
            &format!("/threads/{tid}/runs"),
            json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]},
                   "stream_mode": ["values", "messages-tuple"], "stream_resumable": true}),
        )
        .await;
    assert_eq!(s, 200, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let stream = format!("/threads/{tid}/runs/{run_id}/stream");
    fake.received(1).await;
    let join = tokio::spawn(
        b.client
            .get(b.url(&format!("/threads/{tid}/runs/{run_id}/join")))
            .send(),
    );
    let resp = b.rejoin(&stream, "0").await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = Reader::new(resp);
    let mut seen = Vec::new();
    let mut status_at_w6 = None;
    while let Some(e) = reader.next().await {
        // "w6 " comes 0.9 s into the answer, long after b rejoined and 0.75 s before its end
        if e.name == "messages" && e.data[0]["content"] == "w6 " {
            let (_, run) = a.get(&format!("/threads/{tid}/runs/{run_id}")).await;
            status_at_w6 = Some(run["status"].clone());
        }
        seen.push(e);
    }
    assert_eq!(
        status_at_w6,
        Some(json!("running")),
        "b follows the run as it goes"
    );
    let ids: Vec<i64> = seen.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "once, in order"
    );
    // the same as the stored stream, read back once the run has ended
    let stored = a.rejoin(&stream, "0").await.text().await.unwrap();
    let stored: Vec<(i64, String)> = events(&stored)
        .into_iter()
        .map(|e| (e.id.unwrap(), e.name))
        .collect();
    let followed: Vec<(i64, String)> = seen.into_iter().map(|e| (e.id.unwrap(), e.name)).collect();
    assert_eq!(followed, stored);
    let (_, run) = b.get(&format!("/threads/{tid}/runs/{run_id}")).await;
    assert_eq!(run["status"], "success", "{run}");
    let joined = tokio::time::timeout(Duration::from_secs(5), join)
        .await
        .expect("b's join ends with the run")
        .unwrap()
        .unwrap();
    let (s, values) = crate::helpers::read(joined).await;
    assert_eq!(s, 200, "{values}");
    let last = values["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned();
    assert!(
        last.is_some_and(|m| m["content"].as_str().is_some_and(|c| c.ends_with("w11 "))),
        "{values}"
    );
}

/// Postgres only (SQLite serves one process). `a` executes one run at a time
/// (`MNEMO_RUN_WORKERS=1`) and is busy: a run streamed through `a` on another thread is queued,
/// `b` claims it (notified) and executes it, and `a`'s stream follows it to its end.
async fn a_process_without_a_free_worker_leaves_the_run_to_another(kind: Kind) {
    if kind == Kind::Sqlite {
        return;
    }
    let fake = stalling_model().await;
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let mut config = db.config();
    // b: the builtin model, all its workers free
    let _b = TestApp::start(config.clone()).await;
    config.llm = "openai".into();
    config.llm_base_url = fake.base_url.clone();
    config.llm_read_timeout_ms = 60_000;
    config.run_workers = 1;
    let a = TestApp::start(config).await;
    let (busy_thread, _) = stalled_run(&a, &fake).await;
    let (_, thread) = a.post("/threads", json!({})).await;
    let tid = thread["thread_id"].as_str().unwrap().to_string();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        a.client
            .post(a.url(&format!("/threads/{tid}/runs/stream")))
            .json(&json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "get tasks"}]}}))
            .send(),
    )
    .await
    .expect("the stream opens")
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let seen = tokio::time::timeout(Duration::from_secs(10), Reader::new(resp).rest())
        .await
        .expect("the stream ends with the run");
    let names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"metadata"), "{names:?}");
    assert!(!names.contains(&"error"), "{seen:?}");
    let last = seen
        .iter()
        .rev()
        .find(|e| e.name == "values")
        .expect("values");
    let messages = last.data["messages"].as_array().unwrap();
    assert_eq!(messages.last().unwrap()["type"], "ai", "{last:?}");
    let (_, runs) = a.get(&format!("/threads/{tid}/runs")).await;
    assert_eq!(runs[0]["status"], "success", "{runs}");
    // executed by b (the builtin model): a's model was only ever called by its stalled run
    assert_eq!(fake.requests().len(), 1);
    let (_, busy) = a.get(&format!("/threads/{busy_thread}")).await;
    assert_eq!(busy["status"], "busy", "a's own run goes on: {busy}");
}
