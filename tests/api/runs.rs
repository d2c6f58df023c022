use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Kind, TestApp, TestDb, spawn_app};
use crate::sse::sse_events;

both_backends!(
    get_tasks_runs_end_to_end_with_the_builtin_model,
    a_chat_adds_a_task_for_the_configured_user,
    memory_survives_a_restart_and_reaches_a_new_thread,
    run_errors_are_json,
    deleting_a_task_waits_for_approval,
    runs_stream_over_sse,
    the_original_apps_agent_stream,
    fifty_chats_at_once_on_four_connections,
    background_runs_and_join,
);

pub fn ask(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

pub async fn wait(app: &TestApp, thread: &str, body: Value) -> (u16, Value, Option<String>) {
    let resp = app
        .client
        .post(app.url(&format!("/threads/{thread}/runs/wait")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let location = resp
        .headers()
        .get("content-location")
        .map(|v| v.to_str().unwrap().to_string());
    let (s, v) = crate::helpers::read(resp).await;
    (s, v, location)
}

/// One turn of chat on `thread` with the `agent` graph; answers the final values.
pub async fn chat(app: &TestApp, thread: &str, text: &str) -> Value {
    let (s, values, _) = wait(
        app,
        thread,
        json!({"assistant_id": "agent", "input": ask(text)}),
    )
    .await;
    assert_eq!(s, 200, "{values}");
    values
}

/// Asserts a thread's status.
pub async fn assert_thread_status(app: &TestApp, thread: &str, status: &str) {
    let (_, t) = app.get(&format!("/threads/{thread}")).await;
    assert_eq!(t["status"], status, "{t}");
}

/// A thread of `user` (in its metadata), who has one task titled `task`.
pub async fn user_thread(app: &TestApp, user: &str, task: &str) -> String {
    assert_eq!(
        app.post("/tasks", json!({"user_id": user, "title": task}))
            .await
            .0,
        201
    );
    let (_, t) = app
        .post("/threads", json!({"metadata": {"user_id": user}}))
        .await;
    t["thread_id"].as_str().unwrap().to_string()
}

pub fn last_text(values: &Value) -> String {
    assert!(values["messages"].is_array(), "no messages in {values}");
    values["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn get_tasks_runs_end_to_end_with_the_builtin_model(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    for title in ["buy milk", "call mum"] {
        assert_eq!(
            app.post("/tasks", json!({"user_id": "u1", "title": title}))
                .await
                .0,
            201
        );
    }
    let (_, t) = app
        .post("/threads", json!({"metadata": {"user_id": "u1"}}))
        .await;
    let id = t["thread_id"].as_str().unwrap();

    let (s, values, location) = wait(
        &app,
        id,
        json!({"assistant_id": "agent", "input": ask("get tasks")}),
    )
    .await;
    assert_eq!(s, 200, "{values}");
    let messages = values["messages"].as_array().unwrap();
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["human", "ai", "tool", "ai"],
        "model → tool → model"
    );
    assert_eq!(messages[1]["tool_calls"][0]["name"], "list_tasks");
    assert_eq!(
        messages[2]["tool_call_id"],
        messages[1]["tool_calls"][0]["id"]
    );
    let answer = last_text(&values);
    assert!(
        answer.contains("buy milk") && answer.contains("call mum"),
        "{answer}"
    );

    let location = location.expect("Content-Location");
    assert!(
        location.starts_with(&format!("/threads/{id}/runs/")),
        "{location}"
    );
    let (s, run) = app.get(&location).await;
    assert_eq!((s, &run["status"]), (200, &json!("success")));
    let (_, thread) = app.get(&format!("/threads/{id}")).await;
    assert_eq!(thread["status"], "idle");
    assert_eq!(
        thread["metadata"]["graph_id"], "agent",
        "stamped for agent-chat-ui's thread list"
    );
    assert_eq!(
        thread["metadata"]["assistant_id"],
        "fe096781-5601-53d2-b2f6-0d3403f7e9ca"
    );
    let (_, history) = app
        .post(&format!("/threads/{id}/history"), json!({"limit": 10}))
        .await;
    let sources: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["metadata"]["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        vec!["loop", "loop", "loop", "input"],
        "one checkpoint per step"
    );
    let (_, runs) = app.get(&format!("/threads/{id}/runs")).await;
    assert_eq!(runs.as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn a_chat_adds_a_task_for_the_configured_user(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let (_, t) = app.post("/threads", json!({})).await;
    let id = t["thread_id"].as_str().unwrap();
    let body = json!({"assistant_id": "legacy", "input": ask("add task water the plants"),
                      "config": {"configurable": {"user_id": "u2"}}});
    let (s, values, _) = wait(&app, id, body).await;
    assert_eq!(s, 200);
    assert!(last_text(&values).contains("water the plants"));
    let (_, tasks) = app.get("/tasks?user_id=u2").await;
    assert_eq!(tasks["tasks"][0]["title"], "water the plants");
    let (_, other) = app.get("/tasks?user_id=default").await;
    assert_eq!(
        other["tasks"],
        json!([]),
        "the configured user, not the default one"
    );
    // the conversation goes on in the same thread
    let (_, values, _) = wait(
        &app,
        id,
        json!({"assistant_id": "legacy", "input": ask("complete task water"),
        "config": {"configurable": {"user_id": "u2"}}}),
    )
    .await;
    assert_eq!(values["messages"].as_array().unwrap().len(), 8);
    assert_eq!(
        app.get("/tasks?user_id=u2").await.1["tasks"][0]["status"],
        "done"
    );
    app.stop().await;
}

async fn memory_survives_a_restart_and_reaches_a_new_thread(kind: Kind) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let app = TestApp::start(db.config()).await;
    let (_, t) = app
        .post("/threads", json!({"metadata": {"user_id": "ann"}}))
        .await;
    let (s, values, _) = wait(
        &app,
        t["thread_id"].as_str().unwrap(),
        json!({"assistant_id": "agent", "input": ask("remember that I take my tea without sugar")}),
    )
    .await;
    assert_eq!(s, 200);
    assert!(last_text(&values).contains("tea without sugar"));
    app.stop().await;

    let app = TestApp::start(db.config()).await;
    let (_, t) = app
        .post("/threads", json!({"metadata": {"user_id": "ann"}}))
        .await;
    let (_, values, _) = wait(
        &app,
        t["thread_id"].as_str().unwrap(),
        json!({"assistant_id": "agent", "input": ask("what do you remember?")}),
    )
    .await;
    assert!(
        last_text(&values).contains("I take my tea without sugar"),
        "{values}"
    );
    let (_, other) = app
        .post("/threads", json!({"metadata": {"user_id": "bob"}}))
        .await;
    let (_, values, _) = wait(
        &app,
        other["thread_id"].as_str().unwrap(),
        json!({"assistant_id": "agent", "input": ask("what do you remember?")}),
    )
    .await;
    assert!(
        !last_text(&values).contains("tea"),
        "another user's memories stay theirs"
    );
    app.stop().await;
}

async fn run_errors_are_json(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let (_, t) = app.post("/threads", json!({})).await;
    let id = t["thread_id"].as_str().unwrap();
    let (s, b, _) = wait(
        &app,
        id,
        json!({"assistant_id": "nope", "input": ask("hi")}),
    )
    .await;
    assert_eq!(s, 422);
    assert!(b["detail"].as_str().unwrap().contains("agent, legacy"));
    let missing = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        wait(
            &app,
            &missing,
            json!({"assistant_id": "agent", "input": ask("hi")})
        )
        .await
        .0,
        404
    );
    let (s, _, _) = wait(
        &app,
        &missing,
        json!({"assistant_id": "agent", "input": ask("hi"), "if_not_exists": "create"}),
    )
    .await;
    assert_eq!(s, 200, "if_not_exists: create");
    let (s, values, _) = wait(
        &app,
        id,
        json!({"assistant_id": "agent", "input": "not-an-object"}),
    )
    .await;
    assert_eq!(
        s, 200,
        "a graph error is still 200, as on the reference server"
    );
    assert!(values["__error__"]["message"].is_string());
    assert_eq!(
        app.get(&format!("/threads/{id}")).await.1["status"],
        "error",
        "never left busy"
    );

    let resp = app
        .client
        .post(app.url("/runs/wait"))
        .json(&json!({"assistant_id": "agent", "input": ask("hello"), "on_completion": "keep"}))
        .send()
        .await
        .unwrap();
    let location = resp.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let (s, values) = crate::helpers::read(resp).await;
    assert_eq!(s, 200);
    assert!(
        last_text(&values).contains("get tasks"),
        "the built-in model explains itself"
    );
    assert_eq!(
        app.get(&location).await.1["status"],
        "success",
        "a stateless run gets a thread of its own"
    );
    // which is deleted when the run ends, unless it is kept
    let resp = app
        .client
        .post(app.url("/runs/wait"))
        .json(&json!({"assistant_id": "agent", "input": ask("hello")}))
        .send()
        .await
        .unwrap();
    let location = resp.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(resp.status().as_u16(), 200);
    let thread = location.split('/').nth(2).unwrap().to_string();
    let mut gone = false;
    for _ in 0..100 {
        if app.get(&format!("/threads/{thread}")).await.0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(gone, "the stateless run's thread is deleted");
    let (s, _) = app
        .post(
            "/runs/wait",
            json!({"assistant_id": "agent", "on_completion": "sometimes"}),
        )
        .await;
    assert_eq!(s, 422);
    app.stop().await;
}

async fn deleting_a_task_waits_for_approval(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let thread = user_thread(&app, "u3", "old plan").await;
    let id = thread.as_str();

    let (s, values, location) = wait(
        &app,
        id,
        json!({"assistant_id": "agent", "input": ask("delete task old plan")}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        values["__interrupt__"][0]["value"]["action"], "delete_task",
        "{values}"
    );
    // as LangGraph's: the run succeeded; its thread waits on the interrupt
    assert_eq!(app.get(&location.unwrap()).await.1["status"], "success");
    let (_, thread) = app.get(&format!("/threads/{id}")).await;
    assert_eq!(thread["status"], "interrupted");
    let waiting: Vec<&Value> = thread["interrupts"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|list| list.as_array().unwrap())
        .collect();
    assert_eq!(waiting.len(), 1, "{thread}");
    assert_eq!(waiting[0]["value"]["action"], "delete_task");
    let (_, state) = app.get(&format!("/threads/{id}/state")).await;
    assert_eq!(state["next"], json!(["tools"]));
    assert_eq!(state["interrupts"][0]["value"]["action"], "delete_task");
    assert_eq!(
        state["tasks"][0]["interrupts"][0]["id"],
        state["interrupts"][0]["id"]
    );
    assert_eq!(
        app.get("/tasks?user_id=u3").await.1["tasks"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing deleted yet"
    );

    // declined: the task stays
    let (_, values, _) = wait(
        &app,
        id,
        json!({"assistant_id": "agent", "command": {"resume": false}}),
    )
    .await;
    assert!(last_text(&values).contains("Kept"), "{values}");
    assert_eq!(app.get(&format!("/threads/{id}")).await.1["status"], "idle");
    assert_eq!(
        app.get("/tasks?user_id=u3").await.1["tasks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get(&format!("/threads/{id}/state")).await.1["next"],
        json!([])
    );

    // approved the way agent-chat-ui answers: the task goes
    wait(
        &app,
        id,
        json!({"assistant_id": "agent", "input": ask("delete task old plan")}),
    )
    .await;
    let approve = json!({"assistant_id": "agent", "command": {"resume": {"decisions": [{"type": "accept"}]}}});
    let (_, values, _) = wait(&app, id, approve).await;
    assert!(last_text(&values).contains("Deleted"), "{values}");
    assert_eq!(app.get("/tasks?user_id=u3").await.1["tasks"], json!([]));

    // nothing left to resume
    let (_, values, _) = wait(
        &app,
        id,
        json!({"assistant_id": "agent", "command": {"resume": true}}),
    )
    .await;
    assert!(
        values["__error__"]["message"]
            .as_str()
            .unwrap()
            .contains("no interrupt")
    );
    let (s, _, _) = wait(
        &app,
        id,
        json!({"assistant_id": "agent", "command": {"goto": "tools"}}),
    )
    .await;
    assert_eq!(s, 422);
    app.stop().await;
}

async fn runs_stream_over_sse(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let thread = user_thread(&app, "s1", "write the report").await;
    let id = thread.as_str();
    let body = json!({"assistant_id": "agent", "input": ask("get tasks"),
                      "stream_mode": ["values", "updates", "messages-tuple"]});
    let resp = app
        .client
        .post(app.url(&format!("/threads/{id}/runs/stream")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let location = resp.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(location.starts_with(&format!("/threads/{id}/runs/")));
    let text = tokio::time::timeout(std::time::Duration::from_secs(20), resp.text())
        .await
        .unwrap()
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events[0].0, "metadata", "{text}");
    assert_eq!(
        format!(
            "/threads/{id}/runs/{}",
            events[0].1["run_id"].as_str().unwrap()
        ),
        location
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"updates") && names.contains(&"messages"),
        "{names:?}"
    );
    let last_values = events.iter().rev().find(|(n, _)| n == "values").unwrap();
    assert!(last_text(&last_values.1).contains("write the report"));
    // messages-tuple: [chunk, metadata], chunks of one message share its id, the last is marked
    let chunks: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "messages")
        .map(|(_, d)| d)
        .collect();
    let answer_id = last_values.1["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["id"]
        .clone();
    let answer: String = chunks
        .iter()
        .filter(|c| c[0]["id"] == answer_id)
        .map(|c| c[0]["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        answer,
        last_text(&last_values.1),
        "the tokens add up to the answer"
    );
    assert_eq!(chunks.last().unwrap()[0]["chunk_position"], "last");
    assert_eq!(chunks[0][1]["langgraph_node"], "agent");
    // a tool's message is not streamed: it comes whole, as LangGraph sends a node's output
    let tool = last_values.1["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "tool")
        .unwrap();
    let sent: Vec<&&Value> = chunks.iter().filter(|c| c[0]["type"] == "tool").collect();
    assert_eq!(sent.len(), 1, "{chunks:?}");
    assert_eq!(&sent[0][0], tool);
    assert_eq!(sent[0][1]["langgraph_node"], "tools");
    assert_eq!(app.get(&location).await.1["status"], "success");

    // only the asked modes; errors before the stream are JSON
    let resp = app
        .client
        .post(app.url(&format!("/threads/{id}/runs/stream")))
        .json(&json!({"assistant_id": "agent", "input": ask("hi"), "stream_mode": "updates"}))
        .send()
        .await
        .unwrap();
    let names: Vec<String> = sse_events(&resp.text().await.unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.iter().all(|n| n == "metadata" || n == "updates"),
        "{names:?}"
    );
    let missing = uuid::Uuid::new_v4();
    let resp = app
        .client
        .post(app.url(&format!("/threads/{missing}/runs/stream")))
        .json(&json!({"assistant_id": "agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(
        app.post(
            &format!("/threads/{id}/runs/stream"),
            json!({"assistant_id": "agent", "stream_mode": "bogus"})
        )
        .await
        .0,
        422
    );
    let resp = app
        .client
        .post(app.url("/runs/stream"))
        .json(&json!({"assistant_id": "legacy", "input": ask("get tasks")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "stateless stream");
    assert_eq!(sse_events(&resp.text().await.unwrap())[0].0, "metadata");
    app.stop().await;
}

async fn the_original_apps_agent_stream(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    app.post(
        "/tasks",
        json!({"user_id": "orig", "title": "renew passport"}),
    )
    .await;
    let post = |body: Value| {
        let req = app.client.post(app.url("/agent/stream")).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, sse_events(&resp.text().await.unwrap()))
        }
    };
    let (s, events) =
        post(json!({"user_id": "orig", "message": "get tasks", "use_v2_agent": true})).await;
    assert_eq!(s, 200);
    let thread_id = events[0].1["thread_id"]
        .as_str()
        .expect("the first event names the new thread")
        .to_string();
    let answer = events.iter().rev().find(|(n, _)| n == "values").unwrap();
    assert!(last_text(&answer.1).contains("renew passport"));
    assert!(events.iter().any(|(n, _)| n == "messages"), "tokens stream");
    let (_, thread) = app.get(&format!("/threads/{thread_id}")).await;
    assert_eq!(thread["metadata"]["user_id"], "orig");
    assert_eq!(thread["metadata"]["graph_id"], "agent");

    // the same thread goes on; the legacy agent has no memory tools
    let (_, events) = post(json!({"user_id": "orig", "message": "remember I like trains", "thread_id": thread_id, "use_v2_agent": false})).await;
    assert_eq!(events[0].1["thread_id"], thread_id.as_str());
    let values = &events.iter().rev().find(|(n, _)| n == "values").unwrap().1;
    assert!(
        last_text(values).contains("I can manage your tasks"),
        "{values}"
    );
    assert_eq!(values["messages"].as_array().unwrap().len(), 6);
    assert_eq!(post(json!({"user_id": "", "message": "hi"})).await.0, 422);
    app.stop().await;
}

async fn fifty_chats_at_once_on_four_connections(kind: Kind) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let mut config = db.config();
    config.pool_max = 4;
    config.pool_timeout_ms = 20_000;
    let app = TestApp::start(config).await;
    let chats = (0..50).map(|i| {
        let app = &app;
        async move {
            let user = format!("user{i}");
            app.post(
                "/tasks",
                json!({"user_id": user, "title": format!("task of {user}")}),
            )
            .await;
            let (_, t) = app
                .post("/threads", json!({"metadata": {"user_id": user}}))
                .await;
            let (s, values, _) = wait(
                app,
                t["thread_id"].as_str().unwrap(),
                json!({"assistant_id": "agent", "input": ask("get tasks")}),
            )
            .await;
            (s, last_text(&values).contains(&format!("task of {user}")))
        }
    });
    let results = futures_util::future::join_all(chats).await;
    assert!(
        results.iter().all(|(s, ok)| *s == 200 && *ok),
        "{results:?}"
    );
    if kind == Kind::Postgres {
        assert!(db.pg_connections().await <= 4);
    }
    app.stop().await;
}

async fn background_runs_and_join(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let thread = user_thread(&app, "bg", "pay rent").await;
    let id = thread.as_str();
    let resp = app
        .client
        .post(app.url(&format!("/threads/{id}/runs")))
        .json(&json!({"assistant_id": "agent", "input": ask("get tasks")}))
        .send()
        .await
        .unwrap();
    let location = resp.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let (s, run) = crate::helpers::read(resp).await;
    assert_eq!(s, 200);
    assert_eq!(run["thread_id"], id);
    assert_eq!(
        location,
        format!("/threads/{id}/runs/{}", run["run_id"].as_str().unwrap())
    );
    let (s, values) = app.get(&format!("{location}/join")).await;
    assert_eq!(s, 200);
    assert!(last_text(&values).contains("pay rent"), "{values}");
    assert_eq!(app.get(&location).await.1["status"], "success");

    // a run that stops on an interrupt joins with it
    app.post(
        &format!("/threads/{id}/runs"),
        json!({"assistant_id": "agent", "input": ask("delete task pay rent")}),
    )
    .await;
    let (_, runs) = app.get(&format!("/threads/{id}/runs")).await;
    let newest = runs[0]["run_id"].as_str().unwrap();
    let (_, values) = app.get(&format!("/threads/{id}/runs/{newest}/join")).await;
    assert_eq!(values["__interrupt__"][0]["value"]["action"], "delete_task");
    assert_eq!(
        app.get(&format!("/threads/{id}/runs/{}/join", uuid::Uuid::new_v4()))
            .await
            .0,
        404
    );
    let (s, stateless) = app
        .post(
            "/runs",
            json!({"assistant_id": "legacy", "input": ask("hello")}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(stateless["thread_id"].is_string());
    app.stop().await;
}
