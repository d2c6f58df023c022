//! The graph worker protocol, spoken by the test as a worker would: a graph registered, its runs
//! claimed from the queue, their events relayed to the runs' streams, their ends recorded; a
//! cancel reaches the worker at its next heartbeat; a graph no worker serves is refused.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Kind, TestApp, spawn_app};
use crate::sse::Reader;

both_backends!(
    a_workers_graph_runs_through_the_worker,
    a_cancel_reaches_the_worker_and_its_graph_lapses_without_it,
);

const WORKER: &str = "w-1";

async fn register(app: &TestApp, ttl_s: u64) -> Value {
    let (s, body) = app
        .post(
            "/workers/graphs",
            json!({"worker_id": WORKER, "ttl_s": ttl_s, "graphs": [{
                "graph_id": "echo", "description": "says it back",
                "schemas": {"input_schema": {"type": "object"}, "output_schema": {}, "state_schema": {},
                            "config_schema": {}, "context_schema": {}},
                "drawing": {"nodes": [{"id": "__start__"}, {"id": "say"}], "edges": [{"source": "__start__", "target": "say"}]}}]}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    body
}

/// One run of `echo`, claimed as the worker within `secs`.
async fn claimed(app: &TestApp, secs: u64) -> Value {
    let (s, got) = app
        .post(
            "/workers/claim",
            json!({"worker_id": WORKER, "graphs": ["echo"], "limit": 4, "wait_s": secs, "lease_s": 30}),
        )
        .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got.as_array().unwrap().len(), 1, "{got}");
    got[0].clone()
}

async fn a_workers_graph_runs_through_the_worker(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let registered = register(&app, 30).await;
    let assistant = registered["assistants"][0]["assistant_id"]
        .as_str()
        .unwrap()
        .to_string();
    // its system assistant, with the schemas and drawing the worker registered
    let (s, a) = app.get(&format!("/assistants/{assistant}")).await;
    assert_eq!((s, a["graph_id"].as_str()), (200, Some("echo")), "{a}");
    let (_, drawing) = app.get(&format!("/assistants/{assistant}/graph")).await;
    assert_eq!(drawing["nodes"][1]["id"], "say");
    let (_, schemas) = app.get(&format!("/assistants/{assistant}/schemas")).await;
    assert_eq!(schemas["graph_id"], "echo");

    let (_, thread) = app.post("/threads", json!({})).await;
    let tid = thread["thread_id"].as_str().unwrap().to_string();
    // a stream of a run of the graph: queued for the worker, followed from the database
    let stream = app
        .client
        .post(app.url(&format!("/threads/{tid}/runs/stream")))
        .json(&json!({"assistant_id": "echo", "input": {"text": "hi"}, "stream_mode": ["values", "custom"]}))
        .send();
    let claim = claimed(&app, 10);
    let (resp, work) = tokio::join!(stream, claim);
    let resp = resp.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let run = &work["run"];
    assert_eq!(run["status"], "running");
    assert_eq!(run["kwargs"]["input"], json!({"text": "hi"}));
    assert_eq!(work["attempt"], 1);
    assert_eq!(work["graph_id"], "echo");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let worker = |path: &str| format!("/workers/runs/{run_id}/{path}");
    // events numbered from the claim's first_seq (after mnemo's metadata event)
    assert_eq!(work["first_seq"], 2);
    let first = json!({"worker_id": WORKER, "first_seq": 2, "events": [
        {"event": "values", "data": {"text": "hi"}},
        {"event": "custom", "data": {"progress": 1}}]});
    assert_eq!(app.post(&worker("events"), first.clone()).await.0, 204);
    // the same batch again (its answer lost): stored once
    assert_eq!(app.post(&worker("events"), first).await.0, 204);
    // a batch past the stream's end is refused: events would be missing
    let (s, gap) = app
        .post(
            &worker("events"),
            json!({"worker_id": WORKER, "first_seq": 9, "events": [{"event": "values", "data": {}}]}),
        )
        .await;
    assert_eq!(s, 422, "{gap}");
    // overlapping the stored ones: only the new event is kept
    let (s, _) = app
        .post(
            &worker("events"),
            json!({"worker_id": WORKER, "first_seq": 3, "events": [
                {"event": "custom", "data": {"progress": 1}},
                {"event": "values", "data": {"text": "hi", "reply": "hi"}}]}),
        )
        .await;
    assert_eq!(s, 204);
    let (s, beat) = app
        .post(
            &worker("heartbeat"),
            json!({"worker_id": WORKER, "lease_s": 30}),
        )
        .await;
    assert_eq!((s, beat["held"].as_bool()), (200, Some(true)));
    // another worker holds nothing of it
    let (s, _) = app
        .post(
            &worker("events"),
            json!({"worker_id": "w-2", "events": [{"event": "values", "data": {}}]}),
        )
        .await;
    assert_eq!(s, 409);
    let (s, ended) = app
        .post(
            &worker("finish"),
            json!({"worker_id": WORKER, "status": "success", "thread_status": "idle",
                   "values": {"text": "hi", "reply": "hi"}}),
        )
        .await;
    assert_eq!(
        (s, ended["status"].as_str()),
        (200, Some("success")),
        "{ended}"
    );

    let seen = tokio::time::timeout(Duration::from_secs(10), Reader::new(resp).rest())
        .await
        .expect("the stream ends with the run");
    let names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["metadata", "values", "custom", "values"]);
    assert_eq!(seen[2].data, json!({"progress": 1}));
    let (_, t) = app.get(&format!("/threads/{tid}")).await;
    assert_eq!(t["status"], "idle");
    assert_eq!(t["values"], json!({"text": "hi", "reply": "hi"}));
    let (_, r) = app.get(&format!("/threads/{tid}/runs/{run_id}")).await;
    assert_eq!(r["status"], "success");
    // nothing is left to claim
    let (_, none) = app
        .post(
            "/workers/claim",
            json!({"worker_id": WORKER, "graphs": ["echo"], "limit": 1, "wait_s": 0, "lease_s": 30}),
        )
        .await;
    assert_eq!(none, json!([]));
    app.stop().await;
}

async fn a_cancel_reaches_the_worker_and_its_graph_lapses_without_it(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    register(&app, 30).await;
    let (_, thread) = app.post("/threads", json!({})).await;
    let tid = thread["thread_id"].as_str().unwrap().to_string();
    let (s, run) = app
        .post(
            &format!("/threads/{tid}/runs"),
            json!({"assistant_id": "echo", "input": {}}),
        )
        .await;
    assert_eq!((s, run["status"].as_str()), (200, Some("pending")), "{run}");
    let work = claimed(&app, 5).await;
    let run_id = work["run"]["run_id"].as_str().unwrap().to_string();
    // a stopping worker hands the run back: claimed again at once, its attempt counted
    let release = format!("/workers/runs/{run_id}/release");
    let (s, back) = app.post(&release, json!({"worker_id": WORKER})).await;
    assert_eq!((s, back["released"].as_bool()), (200, Some(true)));
    let (_, r) = app.get(&format!("/threads/{tid}/runs/{run_id}")).await;
    assert_eq!(r["status"], "pending");
    let (_, again) = app.post(&release, json!({"worker_id": WORKER})).await;
    assert_eq!(again["released"], false, "held by nobody now");
    let work = claimed(&app, 5).await;
    assert_eq!(
        (work["run"]["run_id"].as_str(), work["attempt"].as_i64()),
        (Some(run_id.as_str()), Some(2))
    );
    // a stopping worker's last call hands back what it still holds (a claim it never saw);
    // another worker's call hands back nothing of it
    let (_, none) = app
        .post("/workers/release", json!({"worker_id": "w-2"}))
        .await;
    assert_eq!(none["released"], 0);
    let (s, all) = app
        .post("/workers/release", json!({"worker_id": WORKER}))
        .await;
    assert_eq!((s, all["released"].as_i64()), (200, Some(1)), "{all}");
    let work = claimed(&app, 5).await;
    assert_eq!(
        (work["run"]["run_id"].as_str(), work["attempt"].as_i64()),
        (Some(run_id.as_str()), Some(3))
    );
    let (s, _) = app
        .post(&format!("/threads/{tid}/runs/{run_id}/cancel"), json!({}))
        .await;
    assert_eq!(s, 200, "a run executed elsewhere is answered as it is now");
    let (_, beat) = app
        .post(
            &format!("/workers/runs/{run_id}/heartbeat"),
            json!({"worker_id": WORKER, "lease_s": 30}),
        )
        .await;
    assert_eq!(beat["held"], false, "the worker stops the run");
    let (s, _) = app
        .post(
            &format!("/workers/runs/{run_id}/events"),
            json!({"worker_id": WORKER, "events": [{"event": "values", "data": {}}]}),
        )
        .await;
    assert_eq!(s, 409);
    let (_, r) = app.get(&format!("/threads/{tid}/runs/{run_id}")).await;
    assert_eq!(r["status"], "interrupted");
    // its stream: each attempt opened by mnemo's metadata event
    let stored = app
        .rejoin(&format!("/threads/{tid}/runs/{run_id}/stream"), "0")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        stored.contains("\"attempt\":1") && stored.contains("\"attempt\":2"),
        "{stored}"
    );
    let (_, t) = app.get(&format!("/threads/{tid}")).await;
    assert_eq!(t["status"], "idle");

    // mnemo's own graphs are not a worker's; a graph no worker serves any more is refused
    let (s, _) = app
        .post(
            "/workers/graphs",
            json!({"worker_id": WORKER, "graphs": [{"graph_id": "agent", "schemas": {}, "drawing": {}}]}),
        )
        .await;
    assert_eq!(s, 409);
    // a graph registered for 3 s, whose worker never claims: refused once that has passed
    let (s, _) = app
        .post(
            "/workers/graphs",
            json!({"worker_id": "w-idle", "ttl_s": 3, "graphs": [{"graph_id": "idle", "schemas": {}, "drawing": {}}]}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, other) = app.post("/threads", json!({})).await;
    let other = other["thread_id"].as_str().unwrap().to_string();
    let runs = format!("/threads/{other}/runs");
    let idle_run = json!({"assistant_id": "idle", "input": {}, "multitask_strategy": "enqueue"});
    let (s, queued) = app.post(&runs, idle_run.clone()).await;
    assert_eq!((s, queued["status"].as_str()), (200, Some("pending")));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (s, body) = app.post(&runs, idle_run).await;
    assert_eq!(s, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("No graph worker serves"),
        "{body}"
    );
    app.stop().await;
}
