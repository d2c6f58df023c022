//! Controlling runs: cancel (interrupt, rollback), clients that leave (`on_disconnect`),
//! rejoining with `Last-Event-ID`, `multitask_strategy`, forks, the legacy `messages` mode,
//! timeouts and shutdown. A model that hangs (the scripted fake) keeps a run going.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::fake_llm::{FakeLlm, Reply, answer};
use crate::helpers::{Kind, TestApp, TestDb};
use crate::models::app_with_model;
use crate::runs::{ask, assert_thread_status, chat, last_text, user_thread, wait};
use crate::sse::{Reader, events};

both_backends!(
    cancel_interrupt_keeps_the_input_and_rollback_undoes_the_run,
    a_client_that_leaves_cancels_its_run_with_on_disconnect_cancel,
    a_resumable_stream_is_rejoined_with_last_event_id,
    join_flags_in_either_sdks_spelling,
    enqueue_waits_and_interrupt_or_rollback_replace_the_running_run,
    a_run_from_an_earlier_checkpoint_forks_the_thread,
    the_legacy_messages_mode,
    a_run_over_its_timeout_ends_as_timeout,
    shutdown_ends_open_streams_and_marks_their_runs,
    shutdown_ends_runs_whose_clients_have_left,
);

async fn run_status(app: &TestApp, thread: &str, run: &str) -> (u16, Value) {
    app.get(&format!("/threads/{thread}/runs/{run}")).await
}

/// Waits (up to 5 s) for a run's status to become `want`.
async fn until_status(app: &TestApp, thread: &str, run: &str, want: &str) {
    for _ in 0..500 {
        if run_status(app, thread, run).await.1["status"] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "run {run} did not become {want}: {:?}",
        run_status(app, thread, run).await
    );
}

/// `POST /threads/{thread}/runs/stream` with `body`.
async fn stream_on(app: &TestApp, thread: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/threads/{thread}/runs/stream")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn background(app: &TestApp, thread: &str, body: Value) -> (u16, Value) {
    app.post(&format!("/threads/{thread}/runs"), body).await
}

fn messages(values: &Value) -> Vec<String> {
    values["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn state(app: &TestApp, thread: &str) -> Value {
    app.get(&format!("/threads/{thread}/state")).await.1["values"].clone()
}

async fn cancel_interrupt_keeps_the_input_and_rollback_undoes_the_run(kind: Kind) {
    let fake = FakeLlm::start(vec![answer("hi"), Reply::Hang, Reply::Hang]).await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let thread = user_thread(&app, "c1", "buy milk").await;
    chat(&app, &thread, "hello").await;

    // interrupt: the run stops, what it wrote stays, the thread is free
    let (s, run) = background(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("first")}),
    )
    .await;
    assert_eq!(s, 200);
    let run_id = run["run_id"].as_str().unwrap();
    fake.received(2).await;
    assert_thread_status(&app, &thread, "busy").await;
    let (s, cancelled) = app
        .post(
            &format!("/threads/{thread}/runs/{run_id}/cancel?wait=1&action=interrupt"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(cancelled["status"], "interrupted");
    // the model's node had not finished: the thread is `interrupted`, as LangGraph's
    assert_thread_status(&app, &thread, "interrupted").await;
    assert_eq!(
        messages(&state(&app, &thread).await),
        ["hello", "hi", "first"]
    );
    // the question still waits for the model
    assert_eq!(
        app.get(&format!("/threads/{thread}/state")).await.1["next"],
        json!(["agent"])
    );

    // rollback: the run and its checkpoints are gone
    let (_, before) = app
        .post(&format!("/threads/{thread}/history"), json!({"limit": 100}))
        .await;
    let (_, run) = background(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("second")}),
    )
    .await;
    let run_id = run["run_id"].as_str().unwrap();
    fake.received(3).await;
    let (s, _) = app
        .post(
            &format!("/threads/{thread}/runs/{run_id}/cancel?wait=true&action=rollback"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(run_status(&app, &thread, run_id).await.0, 404);
    assert_eq!(
        messages(&state(&app, &thread).await),
        ["hello", "hi", "first"]
    );
    let (_, after) = app
        .post(&format!("/threads/{thread}/history"), json!({"limit": 100}))
        .await;
    assert_eq!(
        after.as_array().unwrap().len(),
        before.as_array().unwrap().len()
    );
    let (_, t) = app.get(&format!("/threads/{thread}")).await;
    assert_eq!(t["status"], "idle");
    assert_eq!(messages(&t["values"]), ["hello", "hi", "first"]);

    // cancelling a run that has ended answers it as it is; bad actions are 422
    let (_, runs) = app
        .get(&format!("/threads/{thread}/runs?status=success"))
        .await;
    let done = runs[0]["run_id"].as_str().unwrap();
    let (s, r) = app
        .post(&format!("/threads/{thread}/runs/{done}/cancel"), json!({}))
        .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("success")));
    let (s, e) = app
        .post(
            &format!("/threads/{thread}/runs/{done}/cancel?action=explode"),
            json!({}),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    // an ended run can be deleted
    assert_eq!(
        app.delete(&format!("/threads/{thread}/runs/{done}"))
            .await
            .0,
        204
    );
    assert_eq!(run_status(&app, &thread, done).await.0, 404);
    app.stop().await;
}

async fn a_client_that_leaves_cancels_its_run_with_on_disconnect_cancel(kind: Kind) {
    let fake = FakeLlm::start(vec![Reply::Hang]).await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let thread = user_thread(&app, "d1", "buy milk").await;
    let resp = stream_on(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("get tasks"), "on_disconnect": "cancel"}),
    )
    .await;
    let mut reader = Reader::new(resp);
    let metadata = reader.next().await.unwrap();
    assert_eq!(metadata.name, "metadata");
    let run_id = metadata.data["run_id"].as_str().unwrap().to_string();
    fake.received(1).await;
    drop(reader);
    until_status(&app, &thread, &run_id, "interrupted").await;
    assert_thread_status(&app, &thread, "interrupted").await;
    app.stop().await;
}

async fn a_resumable_stream_is_rejoined_with_last_event_id(kind: Kind) {
    let slow = (0..12)
        .map(|i| json!({"content": format!("w{i} ")}))
        .collect();
    let fake = FakeLlm::start(vec![Reply::Stream(slow, Duration::from_millis(40))]).await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let thread = user_thread(&app, "r1", "buy milk").await;
    let resp = stream_on(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("say something"),
                      "stream_mode": ["values", "messages-tuple"], "stream_resumable": true,
                      "on_disconnect": "continue"}),
    )
    .await;
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let mut reader = Reader::new(resp);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(reader.next().await.unwrap());
    }
    drop(reader);
    let last_id = seen.last().unwrap().id.unwrap();

    // the run goes on without its client; rejoining replays everything after the last id
    let resp = app.rejoin(&location, &last_id.to_string()).await;
    assert_eq!(resp.status().as_u16(), 200);
    let rest = Reader::new(resp).rest().await;
    let ids: Vec<i64> = seen.iter().chain(&rest).map(|e| e.id.unwrap()).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "every event once, in order"
    );
    let run_id = seen[0].data["run_id"].as_str().unwrap().to_string();
    until_status(&app, &thread, &run_id, "success").await;
    let words: String = seen
        .iter()
        .chain(&rest)
        .filter(|e| e.name == "messages")
        .map(|e| e.data[0]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(words, (0..12).map(|i| format!("w{i} ")).collect::<String>());

    // after the end, from the stored events: a replay from any id, nothing without one
    let replay = app.rejoin(&location, "0").await.text().await.unwrap();
    assert_eq!(events(&replay).len(), ids.len());
    // the mode filter as the SDKs send it: the Python SDK sends `stream_mode=` when it has no
    // filter (every event) and a list as the parameter repeated
    for (query, want) in [
        ("?stream_mode=&cancel_on_disconnect=false", ids.len()),
        ("?stream_mode=values&stream_mode=messages-tuple", ids.len()),
        // metadata always comes along
        (
            "?stream_mode=values",
            replay.matches("event: values").count() + 1,
        ),
    ] {
        let resp = app.rejoin(&format!("{location}{query}"), "0").await;
        assert_eq!(resp.status().as_u16(), 200, "{query}");
        let got = events(&resp.text().await.unwrap());
        assert_eq!(got.len(), want, "{query}");
    }
    let after_end = app.client.get(app.url(&location)).send().await.unwrap();
    assert_eq!(after_end.status().as_u16(), 200);
    assert!(events(&after_end.text().await.unwrap()).is_empty());
    let (s, _) = app
        .get(&format!(
            "/threads/{thread}/runs/00000000-0000-7000-8000-000000000000/stream"
        ))
        .await;
    assert_eq!(s, 404);
    app.stop().await;
}

/// The JS SDK always sends `cancel_on_disconnect=0|1` on join and joinStream (the Python SDK
/// `true|false`), and useStream rejoins from the start with `Last-Event-ID: -1`.
async fn join_flags_in_either_sdks_spelling(kind: Kind) {
    let fake = FakeLlm::start(vec![answer("hi there"), Reply::Hang]).await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let thread = user_thread(&app, "f1", "buy milk").await;
    let resp = stream_on(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("hello"),
               "stream_mode": ["values", "messages-tuple"], "stream_resumable": true}),
    )
    .await;
    let streamed = Reader::new(resp).rest().await;
    let run_id = streamed[0].data["run_id"].as_str().unwrap().to_string();
    let run = format!("/threads/{thread}/runs/{run_id}");

    let (s, values) = app.get(&format!("{run}/join?cancel_on_disconnect=0")).await;
    assert_eq!(s, 200, "{values}");
    assert_eq!(last_text(&values), "hi there");
    let replay = app
        .rejoin(&format!("{run}/stream?cancel_on_disconnect=0"), "-1")
        .await;
    assert_eq!(replay.status().as_u16(), 200);
    let replayed = events(&replay.text().await.unwrap());
    let ids = |evs: &[crate::sse::Event]| evs.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&replayed), ids(&streamed), "the whole stream again");
    let (s, e) = app
        .get(&format!("{run}/join?cancel_on_disconnect=maybe"))
        .await;
    assert_eq!(s, 422, "{e}");

    // `cancel_on_disconnect=1` on a rejoined stream cancels the run when its client leaves
    let (_, run) = background(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("again")}),
    )
    .await;
    let run_id = run["run_id"].as_str().unwrap();
    fake.received(2).await;
    let resp = app
        .client
        .get(app.url(&format!(
            "/threads/{thread}/runs/{run_id}/stream?cancel_on_disconnect=1"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    drop(resp);
    until_status(&app, &thread, run_id, "interrupted").await;
    app.stop().await;
}

async fn enqueue_waits_and_interrupt_or_rollback_replace_the_running_run(kind: Kind) {
    let fake = FakeLlm::start(vec![Reply::Stream(
        vec![json!({"content": "one"})],
        Duration::from_millis(300),
    )])
    .await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let thread = user_thread(&app, "m1", "buy milk").await;
    let body = |text: &str, strategy: &str| json!({"assistant_id": "agent", "input": ask(text), "multitask_strategy": strategy});

    // enqueue: the second run waits for the first, then runs
    let (_, first) = background(&app, &thread, body("a", "reject")).await;
    let (s, second) = background(&app, &thread, body("b", "enqueue")).await;
    assert_eq!((s, second["status"].as_str()), (200, Some("pending")));
    let (s, _) = background(&app, &thread, body("c", "reject")).await;
    assert_eq!(s, 409);
    let second_id = second["run_id"].as_str().unwrap();
    let (s, values) = app
        .get(&format!("/threads/{thread}/runs/{second_id}/join"))
        .await;
    assert_eq!(s, 200, "{values}");
    assert!(values.get("messages").is_some(), "{values}");
    assert_eq!(messages(&values), ["a", "one", "b", "ok"]);
    let first_id = first["run_id"].as_str().unwrap();
    assert_eq!(
        run_status(&app, &thread, first_id).await.1["status"],
        "success"
    );

    // interrupt: the running run stops, the new one runs
    fake.then(vec![Reply::Hang]);
    let (_, third) = background(&app, &thread, body("c", "reject")).await;
    fake.received(3).await;
    let (s, fourth) = background(&app, &thread, body("d", "interrupt")).await;
    assert_eq!(s, 200);
    let (_, values) = app
        .get(&format!(
            "/threads/{thread}/runs/{}/join",
            fourth["run_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(messages(&values), ["a", "one", "b", "ok", "c", "d", "ok"]);
    assert_eq!(
        run_status(&app, &thread, third["run_id"].as_str().unwrap())
            .await
            .1["status"],
        "interrupted"
    );

    // rollback: the running run is undone and deleted
    fake.then(vec![Reply::Hang]);
    let (_, fifth) = background(&app, &thread, body("e", "reject")).await;
    fake.received(5).await;
    let (_, sixth) = background(&app, &thread, body("f", "rollback")).await;
    let (_, values) = app
        .get(&format!(
            "/threads/{thread}/runs/{}/join",
            sixth["run_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        messages(&values),
        ["a", "one", "b", "ok", "c", "d", "ok", "f", "ok"]
    );
    assert_eq!(
        run_status(&app, &thread, fifth["run_id"].as_str().unwrap())
            .await
            .0,
        404
    );
    assert_thread_status(&app, &thread, "idle").await;
    let (s, _) = background(&app, &thread, body("g", "sometimes")).await;
    assert_eq!(s, 422);
    app.stop().await;
}

async fn a_run_from_an_earlier_checkpoint_forks_the_thread(kind: Kind) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let app = TestApp::start(db.config()).await;
    let thread = user_thread(&app, "f1", "buy milk").await;
    chat(&app, &thread, "hello").await;
    chat(&app, &thread, "get tasks").await;
    // the checkpoint that holds the first exchange only
    let (_, history) = app
        .post(&format!("/threads/{thread}/history"), json!({"limit": 100}))
        .await;
    let fork = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["values"]["messages"].as_array().unwrap().len() == 2)
        .unwrap();
    let fork_id = fork["checkpoint"]["checkpoint_id"].as_str().unwrap();

    let (s, values, _) = wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("remember tea"), "checkpoint": {"checkpoint_id": fork_id}}),
    )
    .await;
    assert_eq!(s, 200);
    let texts = messages(&values);
    assert_eq!(texts.len(), 6, "{texts:?}");
    assert_eq!(texts[2], "remember tea");
    let (_, new_history) = app
        .post(&format!("/threads/{thread}/history"), json!({"limit": 100}))
        .await;
    let head = &new_history[0];
    // the new branch hangs off the fork point; the old branch is still in the history
    let branch_root = new_history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| {
            h["metadata"]["source"] == "input"
                && h["values"]["messages"].as_array().unwrap().len() == 3
        })
        .unwrap();
    assert_eq!(branch_root["parent_checkpoint"]["checkpoint_id"], fork_id);
    assert_eq!(messages(&head["values"]), texts);
    assert!(new_history.as_array().unwrap().len() > history.as_array().unwrap().len());

    // regenerate: no input, from the checkpoint that holds the question
    let (s, values, _) = wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "checkpoint_id": branch_root["checkpoint"]["checkpoint_id"]}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(messages(&values).len(), 6);
    assert_eq!(messages(&values)[2], "remember tea");
    // an unknown checkpoint ends the run in error
    let (_, values, _) = wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("x"), "checkpoint_id": "1f000000-0000-6000-8000-000000000000"}),
    )
    .await;
    assert!(
        values["__error__"]["message"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    app.stop().await;
}

async fn the_legacy_messages_mode(kind: Kind) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let app = TestApp::start(db.config()).await;
    let thread = user_thread(&app, "l1", "buy milk").await;
    let text = stream_on(&app, &thread, json!({"assistant_id": "agent", "input": ask("get tasks"), "stream_mode": ["messages", "custom"]}))
        .await
        .text()
        .await
        .unwrap();
    let all = events(&text);
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names[0], "metadata");
    assert!(
        !names.contains(&"values") && !names.contains(&"messages"),
        "{names:?}"
    );
    let partials: Vec<String> = all
        .iter()
        .filter(|e| e.name == "messages/partial")
        .map(|e| e.data[0]["content"].as_str().unwrap().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    assert!(partials.len() > 2);
    assert!(
        partials.windows(2).all(|w| w[1].starts_with(&w[0])),
        "partials grow: {partials:?}"
    );
    let completes: Vec<&Value> = all
        .iter()
        .filter(|e| e.name == "messages/complete")
        .map(|e| &e.data[0])
        .collect();
    let kinds: Vec<&str> = completes
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    // streamed messages come as partials only (as the reference sends); the tool's whole
    assert_eq!(kinds, ["tool"]);
    assert!(
        completes[0]["content"]
            .as_str()
            .unwrap()
            .contains("buy milk")
    );
    let (_, state) = app.get(&format!("/threads/{thread}/state")).await;
    let answer = state["values"]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(
        answer["content"].as_str().unwrap(),
        partials.last().unwrap()
    );
    // every message's metadata comes before it
    for m in &completes {
        let id = m["id"].as_str().unwrap();
        assert!(
            all.iter()
                .any(|e| e.name == "messages/metadata" && e.data.get(id).is_some())
        );
    }
    // and names the node that wrote the message and the step of the checkpoint it is in
    let (_, history) = app
        .post(&format!("/threads/{thread}/history"), json!({"limit": 100}))
        .await;
    let wrote = |id: &str| {
        history
            .as_array()
            .unwrap()
            .iter()
            .find_map(|h| {
                let (node, update) = h["metadata"]["writes"].as_object()?.iter().next()?;
                let ours = update["messages"].as_array()?.iter().any(|m| m["id"] == id);
                ours.then(|| (node.clone(), h["metadata"]["step"].clone()))
            })
            .unwrap_or_else(|| panic!("no checkpoint wrote {id}"))
    };
    let described: Vec<(String, String, Value)> = all
        .iter()
        .filter(|e| e.name == "messages/metadata")
        .flat_map(|e| e.data.as_object().unwrap().clone())
        .map(|(id, m)| {
            let node = m["metadata"]["langgraph_node"]
                .as_str()
                .unwrap()
                .to_string();
            (id, node, m["metadata"]["langgraph_step"].clone())
        })
        .collect();
    let nodes: Vec<&str> = described.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(nodes, ["agent", "tools", "agent"]);
    for (id, node, step) in &described {
        assert_eq!((node.clone(), step.clone()), wrote(id), "{id}");
    }
    app.stop().await;
}

async fn a_run_over_its_timeout_ends_as_timeout(kind: Kind) {
    let fake = FakeLlm::start(vec![Reply::Hang]).await;
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let mut config = db.config();
    config.llm = "openai".into();
    config.llm_base_url = fake.base_url.clone();
    config.run_timeout_s = 1;
    let app = TestApp::start(config).await;
    let thread = user_thread(&app, "t1", "buy milk").await;
    let (s, values, location) = wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("get tasks")}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(values["__error__"], Value::Null, "{values}");
    let run = app.get(&location.unwrap()).await.1;
    assert_eq!(run["status"], "timeout");
    assert_thread_status(&app, &thread, "idle").await;
    app.stop().await;
}

async fn shutdown_ends_open_streams_and_marks_their_runs(kind: Kind) {
    let fake = FakeLlm::start(vec![Reply::Hang]).await;
    let Some((app, db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let thread = user_thread(&app, "s1", "buy milk").await;
    let resp = stream_on(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("get tasks"), "stream_resumable": true}),
    )
    .await;
    let mut reader = Reader::new(resp);
    let run_id = reader.next().await.unwrap().data["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    fake.received(1).await;
    let stopped = std::time::Instant::now();
    let (rest, ()) = tokio::join!(reader.rest(), app.stop());
    // the stream ended, with the reason, well before the shutdown timeout
    assert!(stopped.elapsed() < Duration::from_secs(4));
    let last = rest.last().unwrap();
    assert_eq!(last.name, "error");
    assert_eq!(last.data["error"], "ServerShutdown");
    if kind == Kind::Postgres {
        assert_eq!(db.pg_connections_after_stop().await, 0);
    }

    // after a restart the run reads as interrupted and the thread takes new runs
    let app = TestApp::start(db.config()).await;
    let (_, run) = run_status(&app, &thread, &run_id).await;
    assert_eq!(run["status"], "interrupted");
    assert_thread_status(&app, &thread, "idle").await;
    let values = chat(&app, &thread, "get tasks").await;
    assert!(last_text(&values).contains("buy milk"));
    app.stop().await;
}

/// A run nobody is listening to (a background run, or a stream whose client left with
/// `on_disconnect: continue`) still ends `interrupted` at shutdown, promptly, its thread free.
async fn shutdown_ends_runs_whose_clients_have_left(kind: Kind) {
    let fake = FakeLlm::start(vec![Reply::Hang, Reply::Hang]).await;
    let Some((app, db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let first = user_thread(&app, "s2", "buy milk").await;
    let (_, run) = background(
        &app,
        &first,
        json!({"assistant_id": "agent", "input": ask("get tasks")}),
    )
    .await;
    let background_run = run["run_id"].as_str().unwrap().to_string();
    let second = user_thread(&app, "s3", "buy milk").await;
    let resp = stream_on(
        &app,
        &second,
        json!({"assistant_id": "agent", "input": ask("get tasks"), "on_disconnect": "continue"}),
    )
    .await;
    let mut reader = Reader::new(resp);
    let left_run = reader.next().await.unwrap().data["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    drop(reader);
    fake.received(2).await;
    let stopped = std::time::Instant::now();
    app.stop().await;
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "the shutdown waited {:?} for runs that had stopped",
        stopped.elapsed()
    );

    let app = TestApp::start(db.config()).await;
    for (thread, run) in [(&first, &background_run), (&second, &left_run)] {
        let (_, r) = run_status(&app, thread, run).await;
        assert_eq!(r["status"], "interrupted", "{r}");
        assert_thread_status(&app, thread, "idle").await;
    }
    app.stop().await;
}
