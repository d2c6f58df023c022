//! Identity and isolation: every route needs credentials (but the probes), and a user's key
//! reaches nothing of another user's. The route list is read from the code, so a route added
//! without a case here fails `every_route_has_a_case`.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Kind, TestApp, TestDb};

both_backends!(
    every_route_refuses_strangers_and_hides_one_users_data_from_another,
    keys_expire_and_revoked_keys_are_refused,
    the_agent_acts_as_the_threads_owner,
    jwt_users_and_services,
    a_users_assistants_are_its_own_and_a_services_are_shared,
);

/// Routes as the code declares them: `(METHOD, path)` from every route attribute in `src/`.
fn declared_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let dirs = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/src"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes"),
    ];
    for dir in dirs {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            for line in src.lines() {
                let line = line.trim();
                for (attr, method) in [
                    ("#[get(\"", "GET"),
                    ("#[get_route(\"", "GET"),
                    ("#[post(\"", "POST"),
                    ("#[put(\"", "PUT"),
                    ("#[put_route(\"", "PUT"),
                    ("#[patch(\"", "PATCH"),
                    ("#[delete(\"", "DELETE"),
                    ("#[delete_route(\"", "DELETE"),
                ] {
                    if let Some(rest) = line.strip_prefix(attr) {
                        let route = rest.split('"').next().unwrap().to_string();
                        out.insert((method.to_string(), route));
                    }
                }
            }
        }
    }
    out
}

/// What user B's key gets on a route, given user A's resources.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ForB {
    /// Answers without credentials.
    Open,
    /// A's resource: 404, as if it did not exist.
    NotFound,
    /// B names A as the user it acts for: 403.
    Forbidden,
    /// B's own (empty) view or B's own new resource: a 2xx that must not show A's data.
    Own,
}

struct Case {
    method: &'static str,
    route: &'static str,
    path: String,
    body: Option<Value>,
    for_b: ForB,
}

/// Mnemo with `MNEMO_AUTH=api_key` (and JWT with a secret) on a fresh database.
async fn spawn_with_auth(
    kind: Kind,
    tweak: impl FnOnce(&mut mnemo::config::Config),
) -> Option<(TestApp, TestDb)> {
    let db = TestDb::new(kind).await?;
    let mut config = db.config();
    config.auth = Some("api_key,jwt".into());
    config.jwt_secret = Some("test-secret-of-enough-length-000".into());
    tweak(&mut config);
    let app = TestApp::start(config).await;
    Some((app, db))
}

/// A new key on the test's database, made the way `mnemo keys create` makes one.
pub async fn make_key(db: &TestDb, user: Option<&str>, expires_in_days: Option<i64>) -> String {
    let (persistence, arbiter) = mnemo::startup::open_persistence(&db.config())
        .await
        .unwrap();
    let (key, key_id) = mnemo::auth::generate_key().unwrap();
    persistence
        .create_api_key(mnemo::model::NewApiKey {
            key_id,
            name: "test".into(),
            user_id: user.map(str::to_string),
            key_hash: mnemo::auth::keys::hash_key(&key),
            expires_at: expires_in_days.map(|d| chrono::Utc::now() + chrono::Duration::days(d)),
        })
        .await
        .unwrap();
    persistence
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    arbiter.stop();
    key
}

/// One request with an optional key; the status and the body as JSON (`Null` when not JSON).
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app.client.request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        app.url(path),
    );
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn checkpoint_body(id: &str) -> Value {
    json!({"checkpoint": {"v": 4, "id": id, "ts": "2026-11-26T00:00:00+00:00",
        "channel_values": {}, "channel_versions": {}, "versions_seen": {}, "updated_channels": []}})
}

fn cases(thread: &str, run: &str, checkpoint: &str, task: &str, assistant: &str) -> Vec<Case> {
    use ForB::*;
    let t = |rest: &str| format!("/threads/{thread}{rest}");
    let run_body = json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "get tasks"}]}});
    let as_alice =
        json!({"assistant_id": "agent", "config": {"configurable": {"user_id": "alice"}}});
    let c = |method, route, path: String, body: Option<Value>, for_b| Case {
        method,
        route,
        path,
        body,
        for_b,
    };
    vec![
        c("GET", "/ok", "/ok".into(), None, Open),
        c("GET", "/info", "/info".into(), None, Open),
        c("GET", "/health", "/health".into(), None, Open),
        c("GET", "/ready", "/ready".into(), None, Open),
        c("GET", "/openapi.json", "/openapi.json".into(), None, Open),
        c("GET", "/docs", "/docs".into(), None, Open),
        c(
            "GET",
            "/docs/{file:.*}",
            "/docs/swagger-ui.css".into(),
            None,
            Open,
        ),
        // a user key is not enough for metrics
        c("GET", "/metrics", "/metrics".into(), None, Forbidden),
        c(
            "POST",
            "/assistants/search",
            "/assistants/search".into(),
            Some(json!({})),
            Own,
        ),
        c(
            "POST",
            "/assistants/count",
            "/assistants/count".into(),
            Some(json!({})),
            Own,
        ),
        // the graph worker protocol: services only
        c(
            "POST",
            "/workers/graphs",
            "/workers/graphs".into(),
            Some(
                json!({"worker_id": "w", "graphs": [{"graph_id": "mine", "schemas": {}, "drawing": {}}]}),
            ),
            Forbidden,
        ),
        c(
            "POST",
            "/workers/claim",
            "/workers/claim".into(),
            Some(json!({"worker_id": "w", "graphs": ["mine"], "limit": 1, "lease_s": 30})),
            Forbidden,
        ),
        c(
            "POST",
            "/workers/runs/{run_id}/events",
            format!("/workers/runs/{run}/events"),
            Some(
                json!({"worker_id": "w", "events": [{"event": "values", "data": {"x": "bob was here"}}]}),
            ),
            Forbidden,
        ),
        c(
            "POST",
            "/workers/runs/{run_id}/heartbeat",
            format!("/workers/runs/{run}/heartbeat"),
            Some(json!({"worker_id": "w", "lease_s": 30})),
            Forbidden,
        ),
        c(
            "POST",
            "/workers/runs/{run_id}/finish",
            format!("/workers/runs/{run}/finish"),
            Some(json!({"worker_id": "w", "status": "error", "thread_status": "error"})),
            Forbidden,
        ),
        c(
            "POST",
            "/workers/release",
            "/workers/release".into(),
            Some(json!({"worker_id": "w"})),
            Forbidden,
        ),
        c(
            "POST",
            "/workers/runs/{run_id}/release",
            format!("/workers/runs/{run}/release"),
            Some(json!({"worker_id": "w"})),
            Forbidden,
        ),
        // alice's assistant
        c(
            "POST",
            "/assistants",
            "/assistants".into(),
            Some(json!({"graph_id": "agent", "name": "bob's"})),
            Own,
        ),
        c(
            "GET",
            "/assistants/{assistant_id}",
            format!("/assistants/{assistant}"),
            None,
            NotFound,
        ),
        c(
            "PATCH",
            "/assistants/{assistant_id}",
            format!("/assistants/{assistant}"),
            Some(json!({"name": "bob was here"})),
            NotFound,
        ),
        c(
            "DELETE",
            "/assistants/{assistant_id}",
            format!("/assistants/{assistant}"),
            None,
            NotFound,
        ),
        c(
            "POST",
            "/assistants/{assistant_id}/versions",
            format!("/assistants/{assistant}/versions"),
            Some(json!({})),
            NotFound,
        ),
        c(
            "POST",
            "/assistants/{assistant_id}/latest",
            format!("/assistants/{assistant}/latest"),
            Some(json!({"version": 1})),
            NotFound,
        ),
        c(
            "GET",
            "/assistants/{assistant_id}/schemas",
            format!("/assistants/{assistant}/schemas"),
            None,
            NotFound,
        ),
        c(
            "GET",
            "/assistants/{assistant_id}/graph",
            format!("/assistants/{assistant}/graph?xray=true"),
            None,
            NotFound,
        ),
        c(
            "GET",
            "/assistants/{assistant_id}/subgraphs",
            format!("/assistants/{assistant}/subgraphs?recurse=true"),
            None,
            NotFound,
        ),
        c(
            "GET",
            "/assistants/{assistant_id}/subgraphs/{namespace}",
            format!("/assistants/{assistant}/subgraphs/review"),
            None,
            NotFound,
        ),
        // the store: alice's namespace
        c(
            "PUT",
            "/store/items",
            "/store/items".into(),
            Some(
                json!({"namespace": ["users", "alice", "memories"], "key": "pin", "value": {"text": "bob was here"}}),
            ),
            Forbidden,
        ),
        c(
            "GET",
            "/store/items",
            "/store/items?namespace=users.alice.memories&key=pin".into(),
            None,
            NotFound,
        ),
        c(
            "DELETE",
            "/store/items",
            "/store/items".into(),
            Some(json!({"namespace": ["users", "alice", "memories"], "key": "pin"})),
            NotFound,
        ),
        c(
            "POST",
            "/store/items/search",
            "/store/items/search".into(),
            Some(json!({"namespace_prefix": ["users"]})),
            Own,
        ),
        c(
            "POST",
            "/store/namespaces",
            "/store/namespaces".into(),
            Some(json!({})),
            Own,
        ),
        // tasks: naming alice is 403, alice's task id is 404
        c(
            "POST",
            "/tasks",
            "/tasks".into(),
            Some(json!({"user_id": "alice", "title": "x"})),
            Forbidden,
        ),
        c(
            "GET",
            "/tasks",
            "/tasks?user_id=alice".into(),
            None,
            Forbidden,
        ),
        c(
            "GET",
            "/tasks/{task_id}",
            format!("/tasks/{task}"),
            None,
            NotFound,
        ),
        c(
            "PATCH",
            "/tasks/{task_id}",
            format!("/tasks/{task}"),
            Some(json!({"title": "pwned"})),
            NotFound,
        ),
        c(
            "DELETE",
            "/tasks/{task_id}",
            format!("/tasks/{task}"),
            None,
            NotFound,
        ),
        // runs
        c(
            "POST",
            "/agent/stream",
            "/agent/stream".into(),
            Some(json!({"user_id": "bob", "message": "get tasks", "thread_id": thread})),
            NotFound,
        ),
        c(
            "POST",
            "/runs",
            "/runs".into(),
            Some(as_alice.clone()),
            Forbidden,
        ),
        c(
            "POST",
            "/runs/wait",
            "/runs/wait".into(),
            Some(as_alice.clone()),
            Forbidden,
        ),
        c(
            "POST",
            "/runs/stream",
            "/runs/stream".into(),
            Some(as_alice),
            Forbidden,
        ),
        c(
            "POST",
            "/runs/cancel",
            "/runs/cancel".into(),
            Some(json!({"thread_id": thread, "run_ids": [run]})),
            NotFound,
        ),
        c(
            "POST",
            "/threads/{thread_id}/runs",
            t("/runs"),
            Some(run_body.clone()),
            NotFound,
        ),
        c(
            "POST",
            "/threads/{thread_id}/runs/wait",
            t("/runs/wait"),
            Some(run_body.clone()),
            NotFound,
        ),
        c(
            "POST",
            "/threads/{thread_id}/runs/stream",
            t("/runs/stream"),
            Some(run_body),
            NotFound,
        ),
        c(
            "GET",
            "/threads/{thread_id}/runs",
            t("/runs"),
            None,
            NotFound,
        ),
        c(
            "GET",
            "/threads/{thread_id}/runs/{run_id}",
            t(&format!("/runs/{run}")),
            None,
            NotFound,
        ),
        c(
            "GET",
            "/threads/{thread_id}/runs/{run_id}/join",
            t(&format!("/runs/{run}/join")),
            None,
            NotFound,
        ),
        c(
            "GET",
            "/threads/{thread_id}/runs/{run_id}/stream",
            t(&format!("/runs/{run}/stream")),
            None,
            NotFound,
        ),
        c(
            "POST",
            "/threads/{thread_id}/runs/{run_id}/cancel",
            t(&format!("/runs/{run}/cancel")),
            None,
            NotFound,
        ),
        c(
            "DELETE",
            "/threads/{thread_id}/runs/{run_id}",
            t(&format!("/runs/{run}")),
            None,
            NotFound,
        ),
        // threads
        c(
            "POST",
            "/threads",
            "/threads".into(),
            Some(json!({"metadata": {"user_id": "alice"}})),
            Forbidden,
        ),
        c(
            "POST",
            "/threads/search",
            "/threads/search".into(),
            Some(json!({})),
            Own,
        ),
        c(
            "POST",
            "/threads/count",
            "/threads/count".into(),
            Some(json!({})),
            Own,
        ),
        c(
            "POST",
            "/threads/prune",
            "/threads/prune".into(),
            Some(json!({"thread_ids": [thread]})),
            Own,
        ),
        c("GET", "/threads/{thread_id}", t(""), None, NotFound),
        c(
            "PATCH",
            "/threads/{thread_id}",
            t(""),
            Some(json!({"metadata": {"x": 1}})),
            NotFound,
        ),
        c("DELETE", "/threads/{thread_id}", t(""), None, NotFound),
        c(
            "POST",
            "/threads/{thread_id}/copy",
            t("/copy"),
            None,
            NotFound,
        ),
        c(
            "GET",
            "/threads/{thread_id}/state",
            t("/state"),
            None,
            NotFound,
        ),
        c(
            "POST",
            "/threads/{thread_id}/state",
            t("/state"),
            Some(json!({"values": {"messages": []}})),
            NotFound,
        ),
        c(
            "GET",
            "/threads/{thread_id}/state/{checkpoint_id}",
            t(&format!("/state/{checkpoint}")),
            None,
            NotFound,
        ),
        c(
            "POST",
            "/threads/{thread_id}/state/checkpoint",
            t("/state/checkpoint"),
            Some(json!({"checkpoint": {"checkpoint_id": checkpoint}})),
            NotFound,
        ),
        c(
            "POST",
            "/threads/{thread_id}/history",
            t("/history"),
            Some(json!({})),
            NotFound,
        ),
        c(
            "GET",
            "/threads/{thread_id}/history",
            t("/history"),
            None,
            NotFound,
        ),
        // the raw checkpointer
        c(
            "POST",
            "/checkpoints/delete_for_runs",
            "/checkpoints/delete_for_runs".into(),
            Some(json!({"run_ids": [run]})),
            Own,
        ),
        c(
            "PUT",
            "/threads/{thread_id}/checkpoints",
            t("/checkpoints"),
            Some(checkpoint_body("zz")),
            NotFound,
        ),
        c(
            "PUT",
            "/threads/{thread_id}/checkpoints/{checkpoint_id}/writes",
            t(&format!("/checkpoints/{checkpoint}/writes")),
            Some(json!({"task_id": "t1", "writes": []})),
            NotFound,
        ),
        c(
            "GET",
            "/threads/{thread_id}/checkpoints/latest",
            t("/checkpoints/latest"),
            None,
            NotFound,
        ),
        c(
            "GET",
            "/threads/{thread_id}/checkpoints/{checkpoint_id}",
            t(&format!("/checkpoints/{checkpoint}")),
            None,
            NotFound,
        ),
        c(
            "POST",
            "/threads/{thread_id}/checkpoints/search",
            t("/checkpoints/search"),
            Some(json!({})),
            NotFound,
        ),
        c(
            "DELETE",
            "/threads/{thread_id}/checkpoints",
            t("/checkpoints"),
            None,
            NotFound,
        ),
    ]
}

/// Alice's thread with a finished run (whose agent made her a task), a checkpoint, a task and a
/// memory; returns (thread, run, checkpoint, task).
async fn alices_world(app: &TestApp, alice: &str) -> (String, String, String, String) {
    let (s, thread) = call(app, "POST", "/threads", Some(alice), Some(&json!({}))).await;
    assert_eq!(s, 200, "{thread}");
    let thread = thread["thread_id"].as_str().unwrap().to_string();
    let (s, _) = call(
        app,
        "POST",
        &format!("/threads/{thread}/runs/wait"),
        Some(alice),
        Some(&json!({"assistant_id": "agent",
            "input": {"messages": [{"role": "user", "content": "add task buy milk"}]}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, runs) = call(
        app,
        "GET",
        &format!("/threads/{thread}/runs"),
        Some(alice),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    let (s, state) = call(
        app,
        "GET",
        &format!("/threads/{thread}/state"),
        Some(alice),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let checkpoint = state["checkpoint"]["checkpoint_id"]
        .as_str()
        .unwrap()
        .to_string();
    // the agent acted as alice: the task is on her list, found without naming her
    let (s, tasks) = call(app, "GET", "/tasks", Some(alice), None).await;
    assert_eq!(s, 200, "{tasks}");
    assert_eq!(tasks["tasks"][0]["title"], "buy milk", "{tasks}");
    let task = tasks["tasks"][0]["task_id"].as_str().unwrap().to_string();
    let (s, _) = call(
        app,
        "PUT",
        "/store/items",
        Some(alice),
        Some(&json!({"namespace": ["users", "alice", "memories"], "key": "pin", "value": {"text": "my PIN is 4321"}})),
    )
    .await;
    assert_eq!(s, 204);
    (thread, run, checkpoint, task)
}

async fn every_route_refuses_strangers_and_hides_one_users_data_from_another(kind: Kind) {
    let Some((app, db)) = spawn_with_auth(kind, |_| {}).await else {
        return;
    };
    let alice = make_key(&db, Some("alice"), None).await;
    let bob = make_key(&db, Some("bob"), None).await;
    let service = make_key(&db, None, None).await;
    let (thread, run, checkpoint, task) = alices_world(&app, &alice).await;
    let (s, made) = call(
        &app,
        "POST",
        "/assistants",
        Some(&alice),
        Some(&json!({"graph_id": "agent", "name": "alice's helper"})),
    )
    .await;
    assert_eq!(s, 200, "{made}");
    let assistant = made["assistant_id"].as_str().unwrap().to_string();
    let cases = cases(&thread, &run, &checkpoint, &task, &assistant);

    // every route the code declares has a case, and every case a route
    let covered: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.method.to_string(), c.route.to_string()))
        .collect();
    assert_eq!(
        declared_routes(),
        covered,
        "routes without a case (or cases without a route)"
    );

    for case in &cases {
        let what = format!("{} {}", case.method, case.path);
        // no credentials, and made-up ones
        let (status, body) = call(&app, case.method, &case.path, None, case.body.as_ref()).await;
        let bogus = "mnemo_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let (bogus_status, _) = call(
            &app,
            case.method,
            &case.path,
            Some(bogus),
            case.body.as_ref(),
        )
        .await;
        if case.for_b == ForB::Open {
            assert_eq!(status, 200, "{what} is open");
            continue;
        }
        assert_eq!(status, 401, "{what} without credentials: {body}");
        assert!(body["detail"].is_string(), "{what}: {body}");
        assert_eq!(bogus_status, 401, "{what} with a made-up key");

        // bob on alice's things
        let (status, body) = call(
            &app,
            case.method,
            &case.path,
            Some(&bob),
            case.body.as_ref(),
        )
        .await;
        let text = body.to_string();
        match case.for_b {
            ForB::NotFound => assert_eq!(status, 404, "{what} as bob: {body}"),
            ForB::Forbidden => assert_eq!(status, 403, "{what} as bob: {body}"),
            ForB::Own => assert!(
                (200..300).contains(&status),
                "{what} as bob: {status} {body}"
            ),
            ForB::Open => unreachable!(),
        }
        // a 404 may echo the id bob sent; nothing else of alice's may show
        let mut secrets = vec!["4321", "buy milk", checkpoint.as_str()];
        if case.for_b == ForB::Own {
            secrets.extend([thread.as_str(), "alice"]);
        }
        for secret in secrets {
            if case.path.contains(secret) {
                continue;
            }
            assert!(
                !text.contains(secret),
                "{what} as bob shows {secret}: {text}"
            );
        }
    }

    // nothing of alice's was touched
    let (s, state) = call(
        &app,
        "GET",
        &format!("/threads/{thread}/state"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(state["checkpoint"]["checkpoint_id"], checkpoint.as_str());
    let (s, t) = call(&app, "GET", &format!("/tasks/{task}"), Some(&alice), None).await;
    assert_eq!((s, t["title"].as_str()), (200, Some("buy milk")));
    let (s, item) = call(
        &app,
        "GET",
        "/store/items?namespace=users.alice.memories&key=pin",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        (s, item["value"]["text"].as_str()),
        (200, Some("my PIN is 4321"))
    );
    // alice cannot see bob's thread made in the loop (through /runs/… and /threads), nor count it
    let (_, count_a) = call(
        &app,
        "POST",
        "/threads/count",
        Some(&alice),
        Some(&json!({})),
    )
    .await;
    let (_, count_b) = call(&app, "POST", "/threads/count", Some(&bob), Some(&json!({}))).await;
    let (_, count_s) = call(
        &app,
        "POST",
        "/threads/count",
        Some(&service),
        Some(&json!({})),
    )
    .await;
    assert_eq!(count_a, 1, "alice sees only her thread");
    assert_eq!(
        count_s.as_i64().unwrap(),
        1 + count_b.as_i64().unwrap(),
        "a service sees both"
    );

    // a service key reaches alice's data and acts for whoever it names
    let (s, found) = call(
        &app,
        "POST",
        "/threads/search",
        Some(&service),
        Some(&json!({"limit": 100})),
    )
    .await;
    assert_eq!(s, 200);
    assert!(found.to_string().contains(&thread));
    let (s, _) = call(
        &app,
        "GET",
        &format!("/threads/{thread}/history"),
        Some(&service),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, tasks) = call(&app, "GET", "/tasks?user_id=alice", Some(&service), None).await;
    assert_eq!(
        (s, tasks["tasks"][0]["title"].as_str()),
        (200, Some("buy milk"))
    );
    let (s, items) = call(
        &app,
        "POST",
        "/store/items/search",
        Some(&service),
        Some(&json!({"namespace_prefix": ["users"]})),
    )
    .await;
    assert_eq!(s, 200);
    assert!(items.to_string().contains("4321"));
    let resp = app
        .client
        .get(app.url("/metrics"))
        .header("x-api-key", &service)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let metrics = resp.text().await.unwrap();
    assert!(
        metrics.contains("mnemo_auth_failures_total{reason=\"missing\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains(&service) && !metrics.contains(&alice));
    app.stop().await;
}

async fn keys_expire_and_revoked_keys_are_refused(kind: Kind) {
    let Some((app, db)) = spawn_with_auth(kind, |_| {}).await else {
        return;
    };
    let expired = make_key(&db, Some("carol"), Some(-1)).await;
    let (s, body) = call(
        &app,
        "POST",
        "/threads/search",
        Some(&expired),
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        (s, body["detail"].as_str()),
        (401, Some("Credentials expired"))
    );

    let key = make_key(&db, Some("carol"), Some(30)).await;
    // both ways of sending it
    let (s, _) = call(
        &app,
        "POST",
        "/threads/search",
        Some(&key),
        Some(&json!({})),
    )
    .await;
    assert_eq!(s, 200);
    let resp = app
        .client
        .post(app.url("/threads/search"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // a wrong secret with a real id
    let mut wrong = key.clone();
    wrong.pop();
    wrong.push(if key.ends_with('A') { 'B' } else { 'A' });
    let (s, _) = call(
        &app,
        "POST",
        "/threads/search",
        Some(&wrong),
        Some(&json!({})),
    )
    .await;
    assert_eq!(s, 401);
    let resp = app
        .client
        .post(app.url("/threads/search"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());

    // revoked from another process (the CLI's own pool): refused within the poll interval
    let key_id = mnemo::auth::key_id_of(&key).unwrap().to_string();
    let (persistence, arbiter) = mnemo::startup::open_persistence(&db.config())
        .await
        .unwrap();
    persistence.revoke_api_key(key_id).await.unwrap();
    persistence
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    arbiter.stop();
    let started = std::time::Instant::now();
    let mut status = 200;
    while started.elapsed() < std::time::Duration::from_secs(3) {
        status = call(
            &app,
            "POST",
            "/threads/search",
            Some(&key),
            Some(&json!({})),
        )
        .await
        .0;
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 401, "revoked key still accepted");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

async fn the_agent_acts_as_the_threads_owner(kind: Kind) {
    let Some((app, db)) = spawn_with_auth(kind, |_| {}).await else {
        return;
    };
    let service = make_key(&db, None, None).await;
    let mallory = make_key(&db, Some("mallory"), None).await;
    // a service makes alice's thread; a run on it naming another user still acts as alice
    let (s, thread) = call(
        &app,
        "POST",
        "/threads",
        Some(&service),
        Some(&json!({"metadata": {"user_id": "alice"}})),
    )
    .await;
    assert_eq!(s, 200);
    let thread = thread["thread_id"].as_str().unwrap();
    let (s, _) = call(
        &app,
        "POST",
        &format!("/threads/{thread}/runs/wait"),
        Some(&service),
        Some(
            &json!({"assistant_id": "agent", "config": {"configurable": {"user_id": "mallory"}},
            "input": {"messages": [{"role": "user", "content": "add task call mom"}]}}),
        ),
    )
    .await;
    assert_eq!(s, 200);
    let (_, alice_tasks) = call(&app, "GET", "/tasks?user_id=alice", Some(&service), None).await;
    assert_eq!(alice_tasks["tasks"][0]["title"], "call mom");
    let (_, mallory_tasks) = call(&app, "GET", "/tasks", Some(&mallory), None).await;
    assert_eq!(mallory_tasks["tasks"], json!([]));
    // mallory's own stateless run acts as mallory, and naming alice is refused
    let (s, _) = call(
        &app,
        "POST",
        "/runs/wait",
        Some(&mallory),
        Some(&json!({"assistant_id": "agent",
            "input": {"messages": [{"role": "user", "content": "add task steal"}]}})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, mallory_tasks) = call(&app, "GET", "/tasks", Some(&mallory), None).await;
    assert_eq!(mallory_tasks["tasks"][0]["title"], "steal");
    let (_, alice_tasks) = call(&app, "GET", "/tasks?user_id=alice", Some(&service), None).await;
    assert_eq!(alice_tasks["tasks"].as_array().unwrap().len(), 1);
    let (s, _) = call(
        &app,
        "POST",
        "/agent/stream",
        Some(&mallory),
        Some(&json!({"user_id": "alice", "message": "get tasks"})),
    )
    .await;
    assert_eq!(s, 403);
    app.stop().await;
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret-of-enough-length-000").unwrap(),
    )
    .unwrap()
}

async fn jwt_users_and_services(kind: Kind) {
    let Some((app, _db)) = spawn_with_auth(kind, |_| {}).await else {
        return;
    };
    let exp = chrono::Utc::now().timestamp() + 600;
    let alice = hs256(&json!({"sub": "alice", "exp": exp}));
    let bob = hs256(&json!({"sub": "bob", "exp": exp}));
    let service = hs256(&json!({"sub": "backend", "exp": exp, "scope": "read mnemo:service"}));
    let bearer = |token: &str| format!("Bearer {token}");
    let post = |token: String, path: &'static str, body: Value| {
        let req = app
            .client
            .post(app.url(path))
            .header("authorization", token)
            .json(&body);
        async move {
            let resp = req.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s, thread) = post(bearer(&alice), "/threads", json!({})).await;
    assert_eq!(s, 200);
    let (s, found) = post(bearer(&bob), "/threads/search", json!({})).await;
    assert_eq!((s, found), (200, json!([])));
    let (s, found) = post(bearer(&service), "/threads/search", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(found[0]["thread_id"], thread["thread_id"]);
    let expired = hs256(&json!({"sub": "alice", "exp": exp - 3600}));
    let (s, body) = post(bearer(&expired), "/threads/search", json!({})).await;
    assert_eq!(
        (s, body["detail"].as_str()),
        (401, Some("Credentials expired"))
    );
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "alice", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret").unwrap(),
    )
    .unwrap();
    let (s, _) = post(bearer(&forged), "/threads/search", json!({})).await;
    assert_eq!(s, 401);
    app.stop().await;
}

mod limits {
    //! Quotas, browsers and start-up refusals (one backend: none of this touches SQL).
    use std::time::Duration;

    use serde_json::json;

    use super::{call, make_key, spawn_with_auth};
    use crate::fake_llm::{FakeLlm, Reply};
    use crate::helpers::{Kind, TestApp, TestDb, spawn_app};

    /// The status of a request with the given headers and raw body.
    async fn status_of(
        app: &TestApp,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&'static str>,
    ) -> u16 {
        let mut req = app.client.request(method, app.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// A browser's CORS preflight for a POST with the SDKs' headers, from `origin`.
    async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/threads/search"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-api-key")
            .send()
            .await
            .unwrap()
    }

    fn ask() -> serde_json::Value {
        json!({"messages": [{"role": "user", "content": "get tasks"}]})
    }

    #[actix_web::test]
    async fn each_users_quotas_answer_429() {
        let fake = FakeLlm::start(vec![Reply::Hang, Reply::Hang, Reply::Hang, Reply::Hang]).await;
        let base_url = fake.base_url.clone();
        let Some((app, db)) = spawn_with_auth(Kind::Sqlite, |c| {
            c.llm = "openai".into();
            c.llm_base_url = base_url;
            c.llm_max_retries = 0;
            c.max_active_runs_per_user = 3;
            c.max_pending_runs_per_thread = 1;
            c.max_streams_per_user = 1;
        })
        .await
        else {
            return;
        };
        let alice = make_key(&db, Some("alice"), None).await;
        let service = make_key(&db, None, None).await;
        let mut threads = Vec::new();
        for _ in 0..3 {
            let (_, t) = call(&app, "POST", "/threads", Some(&alice), Some(&json!({}))).await;
            threads.push(t["thread_id"].as_str().unwrap().to_string());
        }
        let run = |t: &str| json!({"assistant_id": "agent", "input": ask(), "multitask_strategy": "enqueue", "_t": t});
        let start = |t: String| {
            let body = run(&t);
            let app = &app;
            let alice = alice.clone();
            async move {
                call(
                    app,
                    "POST",
                    &format!("/threads/{t}/runs"),
                    Some(&alice),
                    Some(&body),
                )
                .await
            }
        };
        let (s, first) = start(threads[0].clone()).await;
        assert_eq!(s, 200, "{first}");
        fake.received(1).await;
        // one run may wait behind the running one; a second may not
        assert_eq!(start(threads[0].clone()).await.0, 200);
        let (s, body) = start(threads[0].clone()).await;
        assert_eq!(
            (s, body["detail"].as_str()),
            (429, Some("Too many runs waiting on this thread"))
        );
        // three active runs in all, then 429
        assert_eq!(start(threads[1].clone()).await.0, 200);
        let (s, body) = start(threads[2].clone()).await;
        assert_eq!(
            (s, body["detail"].as_str()),
            (429, Some("Too many active runs for this user"))
        );
        // one open stream: a second is refused while the first is open, a service is not counted
        let run_id = first["run_id"].as_str().unwrap();
        let path = format!("/threads/{}/runs/{run_id}/stream", threads[0]);
        let open = app
            .client
            .get(app.url(&path))
            .header("x-api-key", &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(open.status().as_u16(), 200);
        let second = app
            .client
            .get(app.url(&path))
            .header("x-api-key", &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(second.status().as_u16(), 429);
        assert!(second.headers().get("retry-after").is_some());
        let by_service = app
            .client
            .get(app.url(&path))
            .header("x-api-key", &service)
            .send()
            .await
            .unwrap();
        assert_eq!(by_service.status().as_u16(), 200);
        drop((open, by_service));
        // the slot comes back when the stream is gone
        let mut status = 429;
        for _ in 0..50 {
            let again = app
                .client
                .get(app.url(&path))
                .header("x-api-key", &alice)
                .send()
                .await
                .unwrap();
            status = again.status().as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, 200);
        let (s, _) = call(
            &app,
            "POST",
            "/runs/cancel",
            Some(&alice),
            Some(&json!({"status": "all"})),
        )
        .await;
        assert_eq!(s, 204);
        app.stop().await;
    }

    #[actix_web::test]
    async fn a_user_past_its_request_rate_gets_429_with_retry_after() {
        let Some((app, db)) = spawn_with_auth(Kind::Sqlite, |c| {
            c.rate_limit_per_s = 1;
            c.rate_limit_burst = 3;
        })
        .await
        else {
            return;
        };
        let alice = make_key(&db, Some("alice"), None).await;
        let service = make_key(&db, None, None).await;
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(
                call(
                    &app,
                    "POST",
                    "/threads/count",
                    Some(&alice),
                    Some(&json!({})),
                )
                .await
                .0,
            );
        }
        assert_eq!(&statuses[..3], &[200, 200, 200]);
        assert_eq!(statuses[4], 429, "{statuses:?}");
        let resp = app
            .client
            .post(app.url("/threads/count"))
            .header("x-api-key", &alice)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        assert!(resp.headers().get("retry-after").is_some());
        // services are not rate limited
        for _ in 0..5 {
            assert_eq!(
                call(
                    &app,
                    "POST",
                    "/threads/count",
                    Some(&service),
                    Some(&json!({}))
                )
                .await
                .0,
                200
            );
        }
        app.stop().await;
    }

    #[actix_web::test]
    async fn browsers_reach_mnemo_only_from_allowed_origins_and_hosts() {
        let Some((app, _db)) = spawn_app(Kind::Sqlite).await else {
            return;
        };
        let allowed =
            |r: &reqwest::Response| r.headers().get("access-control-allow-origin").cloned();
        let ok = preflight(&app, "http://localhost:3000").await;
        assert_eq!(allowed(&ok).unwrap(), "http://localhost:3000");
        let evil = preflight(&app, "https://evil.example").await;
        assert!(
            allowed(&evil).is_none(),
            "{:?} {:?}",
            evil.status(),
            evil.headers()
        );
        // a simple request from a foreign page is refused before it acts; an allowed one passes
        let foreign = [("origin", "https://evil.example")];
        let cancel = "/threads/00000000-0000-0000-0000-000000000000/runs/x/cancel";
        assert_eq!(
            status_of(&app, reqwest::Method::POST, cancel, &foreign, None).await,
            403
        );
        let local = [("origin", "http://localhost:5173")];
        assert_eq!(
            status_of(&app, reqwest::Method::POST, cancel, &local, None).await,
            404
        );
        // a text/plain POST (no preflight in a browser) is not taken as JSON
        use reqwest::Method;
        let text = [("content-type", "text/plain")];
        let copy = "/threads/00000000-0000-0000-0000-000000000000/copy";
        assert_eq!(
            status_of(&app, Method::POST, "/threads", &text, Some("{}")).await,
            415
        );
        assert_eq!(
            status_of(&app, Method::POST, "/threads", &[], Some("{}")).await,
            415
        );
        let body = Some("{\"thread_id\": \"x\"}");
        assert_eq!(status_of(&app, Method::POST, copy, &text, body).await, 415);
        // DNS rebinding: a foreign Host is refused; loopback names are served
        let evil_host = [("host", "evil.example")];
        assert_eq!(
            status_of(&app, Method::GET, "/threads/search", &evil_host, None).await,
            421
        );
        let (s, _) = call(&app, "POST", "/threads/count", None, Some(&json!({}))).await;
        assert_eq!(s, 200);
        let local = [
            ("host", "localhost:2024"),
            ("content-type", "application/json"),
        ];
        let status = status_of(&app, Method::POST, "/threads/count", &local, Some("{}")).await;
        assert_eq!(status, 200);
        app.stop().await;
    }

    #[actix_web::test]
    async fn configured_origins_and_hosts_are_served() {
        let Some((app, _db)) = spawn_with_auth(Kind::Sqlite, |c| {
            c.cors_origins = Some("https://chat.example".into());
            c.allowed_hosts = Some("mnemo.internal".into());
        })
        .await
        else {
            return;
        };
        let ok = preflight(&app, "https://chat.example").await;
        assert_eq!(
            ok.headers().get("access-control-allow-origin").unwrap(),
            "https://chat.example"
        );
        let other = preflight(&app, "http://localhost:3000").await;
        assert!(other.headers().get("access-control-allow-origin").is_none());
        let get = reqwest::Method::GET;
        let listed = [("host", "mnemo.internal:443")];
        assert_eq!(
            status_of(&app, get.clone(), "/ok", &listed, None).await,
            200
        );
        let evil = [("host", "evil.example")];
        assert_eq!(status_of(&app, get, "/ok", &evil, None).await, 421);
        app.stop().await;
    }

    #[actix_web::test]
    async fn a_flood_of_made_up_keys_is_throttled_and_known_keys_still_work() {
        let Some((app, db)) = spawn_with_auth(Kind::Sqlite, |_| {}).await else {
            return;
        };
        let alice = make_key(&db, Some("alice"), None).await;
        let count = json!({});
        assert_eq!(
            call(&app, "POST", "/threads/count", Some(&alice), Some(&count))
                .await
                .0,
            200
        );
        // all at once, so the flood outruns the refill whatever the machine's load
        let started = std::time::Instant::now();
        let keys: Vec<String> = (0..130)
            .map(|_| mnemo::auth::generate_key().unwrap().0)
            .collect();
        let statuses: Vec<u16> = futures_util::future::join_all(
            keys.iter()
                .map(|k| call(&app, "POST", "/threads/count", Some(k), Some(&count))),
        )
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
        // the burst (100) and then the rate (20/s over the time the flood took) were looked up
        let looked_up = statuses.iter().filter(|s| **s == 401).count() as f64;
        let allowed = 100.0 + 20.0 * started.elapsed().as_secs_f64() + 1.0;
        assert!(statuses.contains(&429), "{statuses:?}");
        assert!(
            looked_up <= allowed,
            "{looked_up} lookups, at most {allowed}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 401 || *s == 429),
            "{statuses:?}"
        );
        // alice's key is verified from the cache: no lookup, no throttle
        assert_eq!(
            call(&app, "POST", "/threads/count", Some(&alice), Some(&count))
                .await
                .0,
            200
        );
        app.stop().await;
    }

    #[actix_web::test]
    async fn public_metrics_answer_anyone() {
        let Some((app, db)) = spawn_with_auth(Kind::Sqlite, |c| c.metrics_public = true).await
        else {
            return;
        };
        let alice = make_key(&db, Some("alice"), None).await;
        for key in [None, Some(alice.as_str())] {
            let mut req = app.client.get(app.url("/metrics"));
            if let Some(key) = key {
                req = req.header("x-api-key", key);
            }
            assert_eq!(req.send().await.unwrap().status().as_u16(), 200);
        }
        // the rest still needs credentials
        assert_eq!(
            call(&app, "POST", "/threads/count", None, Some(&json!({})))
                .await
                .0,
            401
        );
        app.stop().await;
    }

    #[actix_web::test]
    async fn an_open_api_off_loopback_is_refused_unless_asked_for() {
        let db = TestDb::new(Kind::Sqlite).await.unwrap();
        let mut config = db.config();
        config.host = "0.0.0.0".into();
        let err = TestApp::try_start(config.clone()).await.err().unwrap();
        assert!(err.contains("MNEMO_AUTH=api_key"), "{err}");
        config.auth = Some("none".into());
        TestApp::start(config.clone()).await.stop().await;
        config.host = "127.0.0.1".into();
        config.cors_origins = Some("*".into());
        let err = TestApp::try_start(config).await.err().unwrap();
        assert!(err.contains("MNEMO_CORS_ORIGINS=*"), "{err}");
    }

    #[actix_web::test]
    async fn the_keys_command_prints_the_key_once_and_never_again() {
        use std::process::Command;
        let db = TestDb::new(Kind::Sqlite).await.unwrap();
        let mnemo = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_mnemo"))
                .args(args)
                .env("DATABASE_URL", &db.url)
                .env("RUST_LOG", "warn")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let out = mnemo(&[
            "keys",
            "create",
            "--user",
            "alice",
            "--name",
            "laptop",
            "--expires-in-days",
            "7",
        ]);
        let key = out.trim_end();
        assert_eq!(out.lines().count(), 1, "{out:?}");
        let id = mnemo::auth::key_id_of(key)
            .expect("a mnemo key")
            .to_string();
        let service = mnemo(&["keys", "create", "--service", "--name", "backend"]);
        let list = mnemo(&["keys", "list"]);
        assert!(
            list.contains(&id) && list.contains("laptop") && list.contains("user:alice"),
            "{list}"
        );
        assert!(
            list.contains("backend") && list.contains("service"),
            "{list}"
        );
        assert!(
            !list.contains(key) && !list.contains(service.trim()),
            "the list shows a key"
        );
        let config = {
            let mut c = db.config();
            c.auth = Some("api_key".into());
            c
        };
        let app = TestApp::start(config).await;
        assert_eq!(
            call(&app, "POST", "/threads/count", Some(key), Some(&json!({})))
                .await
                .0,
            200
        );
        mnemo(&["keys", "revoke", &id]);
        // refused within the revocation poll (250 ms), waited for up to 3 s
        let mut status = 200;
        for _ in 0..60 {
            status = call(&app, "POST", "/threads/count", Some(key), Some(&json!({})))
                .await
                .0;
            if status == 401 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, 401);
        let list = mnemo(&["keys", "list"]);
        assert!(
            list.lines()
                .any(|l| l.starts_with(&id) && !l.ends_with("\t-")),
            "{list}"
        );
        app.stop().await;
        // secrets stay out of --help and Debug
        let help = Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .arg("--help")
            .env("DATABASE_URL", "postgres://u:hunter2@db.example/mnemo")
            .env("MNEMO_JWT_SECRET", "jwt-hunter2")
            .env("MNEMO_LLM_BASE_URL", "https://u:hunter2@llm.example/v1")
            .env("MNEMO_JWT_JWKS", "https://u:hunter2@idp.example/jwks")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.contains("DATABASE_URL") && !help.contains("hunter2"),
            "{help}"
        );
        let mut c = db.config();
        c.database_url = "postgres://u:hunter2@db.example/mnemo".into();
        c.jwt_secret = Some("jwt-hunter2".into());
        c.llm_api_key = Some("sk-hunter2".into());
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}

/// Alice's assistant is hers: bob neither sees it nor runs it. A service's assistant is
/// everyone's to see and run, and only a service changes it.
async fn a_users_assistants_are_its_own_and_a_services_are_shared(kind: Kind) {
    let Some((app, db)) = spawn_with_auth(kind, |_| {}).await else {
        return;
    };
    let alice = make_key(&db, Some("alice"), None).await;
    let bob = make_key(&db, Some("bob"), None).await;
    let service = make_key(&db, None, None).await;
    let create = |key: String, name: &'static str| {
        let app = &app;
        async move {
            let body = json!({"graph_id": "agent", "name": name});
            let (s, made) = call(app, "POST", "/assistants", Some(&key), Some(&body)).await;
            assert_eq!(s, 200, "{made}");
            made["assistant_id"].as_str().unwrap().to_string()
        }
    };
    let hers = create(alice.clone(), "hers").await;
    let shared = create(service.clone(), "shared").await;
    let names = |key: String| {
        let app = &app;
        async move {
            let (_, found) = call(
                app,
                "POST",
                "/assistants/search",
                Some(&key),
                Some(&json!({"limit": 100})),
            )
            .await;
            let mut names: Vec<String> = found
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(
        names(alice.clone()).await,
        ["agent", "hers", "legacy", "shared"]
    );
    assert_eq!(names(bob.clone()).await, ["agent", "legacy", "shared"]);
    assert_eq!(
        names(service.clone()).await,
        ["agent", "hers", "legacy", "shared"]
    );
    let (_, n) = call(
        &app,
        "POST",
        "/assistants/count",
        Some(&bob),
        Some(&json!({})),
    )
    .await;
    assert_eq!(n, json!(3));

    // running: alice's is "not found" to bob; the shared one runs for anyone
    let run = |key: String, assistant: String| {
        let app = &app;
        async move {
            let body = json!({"assistant_id": assistant, "input": {"messages": [{"role": "user", "content": "get tasks"}]}});
            call(app, "POST", "/runs/wait", Some(&key), Some(&body))
                .await
                .0
        }
    };
    assert_eq!(run(bob.clone(), hers.clone()).await, 404);
    assert_eq!(run(alice.clone(), hers.clone()).await, 200);
    assert_eq!(run(bob.clone(), shared.clone()).await, 200);

    // changing: one's own, and a service's only by a service
    let rename = |key: String, assistant: String| {
        let app = &app;
        async move {
            let path = format!("/assistants/{assistant}");
            call(
                app,
                "PATCH",
                &path,
                Some(&key),
                Some(&json!({"description": "renamed"})),
            )
            .await
            .0
        }
    };
    assert_eq!(rename(alice.clone(), hers.clone()).await, 200);
    assert_eq!(rename(bob.clone(), hers.clone()).await, 404);
    assert_eq!(rename(alice.clone(), shared.clone()).await, 403);
    assert_eq!(rename(service.clone(), shared.clone()).await, 200);
    let path = format!("/assistants/{shared}");
    assert_eq!(call(&app, "DELETE", &path, Some(&bob), None).await.0, 403);
    assert_eq!(
        call(&app, "DELETE", &path, Some(&service), None).await.0,
        204
    );
    app.stop().await;
}
