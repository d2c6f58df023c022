use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Kind, TestApp, spawn_app};

both_backends!(
    create_get_patch_delete,
    create_conflicts_unless_if_exists_do_nothing,
    create_rejects_non_uuid_ids_and_non_object_metadata,
    unknown_thread_is_404_everywhere,
    search_filters_by_metadata_status_and_ids_with_pagination_headers,
    count_matches_search,
    update_state_writes_a_checkpoint_with_as_node,
    state_at_a_checkpoint_and_unknown_checkpoint,
    history_is_newest_first_with_limit_before_and_metadata,
    history_pages_by_before_cover_everything_once,
    copy_takes_the_history_along,
    concurrent_updates_chain_instead_of_forking,
    an_update_replaces_a_json_blob_value,
    an_update_on_a_checkpoint_id_that_sorts_last_is_409,
    messages_of_an_agent_thread_merge_by_id,
);

async fn new_thread(app: &TestApp, metadata: Value) -> String {
    let (s, t) = app.post("/threads", json!({ "metadata": metadata })).await;
    assert_eq!(s, 200, "{t}");
    t["thread_id"].as_str().unwrap().to_string()
}

async fn update(app: &TestApp, id: &str, values: Value) -> String {
    let (s, b) = app
        .post(
            &format!("/threads/{id}/state"),
            json!({ "values": values, "as_node": "agent" }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["checkpoint"]["checkpoint_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn create_get_patch_delete(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let (s, t) = app
        .post(
            "/threads",
            json!({"metadata": {"graph_id": "agent", "u": 1}}),
        )
        .await;
    assert_eq!(s, 200);
    let id = t["thread_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(t["status"], "idle");
    assert_eq!(t["values"], Value::Null);

    let (s, got) = app.get(&format!("/threads/{id}")).await;
    assert_eq!(
        (s, &got["metadata"]),
        (200, &json!({"graph_id": "agent", "u": 1}))
    );

    let (s, patched) = app
        .patch(
            &format!("/threads/{id}"),
            json!({"metadata": {"u": 2, "v": true}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        patched["metadata"],
        json!({"graph_id": "agent", "u": 2, "v": true}),
        "merged, not replaced"
    );

    assert_eq!(app.delete(&format!("/threads/{id}")).await.0, 204);
    let (s, b) = app.get(&format!("/threads/{id}")).await;
    assert_eq!(s, 404);
    assert!(b["detail"].as_str().unwrap().contains(id));
    assert_eq!(app.delete(&format!("/threads/{id}")).await.0, 404);
    app.stop().await;
}

async fn create_conflicts_unless_if_exists_do_nothing(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let id = "11111111-1111-1111-1111-111111111111";
    assert_eq!(
        app.post(
            "/threads",
            json!({"thread_id": id, "metadata": {"first": 1}})
        )
        .await
        .0,
        200
    );
    let (s, b) = app.post("/threads", json!({"thread_id": id})).await;
    assert_eq!(s, 409);
    assert!(b["detail"].as_str().unwrap().contains("already exists"));
    let (s, t) = app
        .post(
            "/threads",
            json!({"thread_id": id, "if_exists": "do_nothing", "metadata": {"x": 1}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        t["metadata"],
        json!({"first": 1}),
        "the existing thread, unchanged"
    );
    app.stop().await;
}

async fn create_rejects_non_uuid_ids_and_non_object_metadata(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    assert_eq!(
        app.post("/threads", json!({"thread_id": "nope"})).await.0,
        422
    );
    assert_eq!(app.post("/threads", json!({"metadata": [1]})).await.0, 422);
    assert_eq!(
        app.post("/threads", json!({"if_exists": "maybe"})).await.0,
        422
    );
    app.stop().await;
}

async fn unknown_thread_is_404_everywhere(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let id = uuid::Uuid::new_v4();
    assert_eq!(app.get(&format!("/threads/{id}")).await.0, 404);
    assert_eq!(
        app.patch(&format!("/threads/{id}"), json!({"metadata": {}}))
            .await
            .0,
        404
    );
    assert_eq!(app.get(&format!("/threads/{id}/state")).await.0, 404);
    assert_eq!(
        app.post(&format!("/threads/{id}/state"), json!({"values": {"a": 1}}))
            .await
            .0,
        404
    );
    assert_eq!(
        app.post(&format!("/threads/{id}/history"), json!({}))
            .await
            .0,
        404
    );
    assert_eq!(
        app.post(&format!("/threads/{id}/copy"), json!({})).await.0,
        404
    );
    app.stop().await;
}

async fn search_filters_by_metadata_status_and_ids_with_pagination_headers(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let a = new_thread(
        &app,
        json!({"graph_id": "agent", "user": {"id": "u1", "tags": ["x", "y"]}}),
    )
    .await;
    let b = new_thread(&app, json!({"graph_id": "agent", "user": {"id": "u2"}})).await;
    let _c = new_thread(&app, json!({"graph_id": "legacy"})).await;

    let resp = app
        .client
        .post(app.url("/threads/search"))
        .json(&json!({"metadata": {"graph_id": "agent"}, "limit": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-pagination-total"], "2");
    assert_eq!(resp.headers()["x-pagination-next"], "1");
    let (_, page1) = crate::helpers::read(resp).await;
    assert_eq!(page1.as_array().unwrap().len(), 1);
    assert_eq!(page1[0]["thread_id"], b.as_str(), "newest first by default");

    let (_, nested) = app
        .post(
            "/threads/search",
            json!({"metadata": {"user": {"id": "u1"}}}),
        )
        .await;
    assert_eq!(nested.as_array().unwrap().len(), 1);
    assert_eq!(nested[0]["thread_id"], a.as_str());
    let (_, tags) = app
        .post(
            "/threads/search",
            json!({"metadata": {"user": {"tags": ["y"]}}}),
        )
        .await;
    assert_eq!(tags.as_array().unwrap().len(), 1, "array containment");
    let (_, by_ids) = app
        .post(
            "/threads/search",
            json!({"ids": [a, b], "sort_by": "created_at", "sort_order": "asc"}),
        )
        .await;
    assert_eq!(
        by_ids
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["thread_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![a.as_str(), b.as_str()]
    );
    let (_, busy) = app.post("/threads/search", json!({"status": "busy"})).await;
    assert_eq!(busy, json!([]));
    assert_eq!(
        app.post("/threads/search", json!({"status": "sleepy"}))
            .await
            .0,
        422
    );
    assert_eq!(
        app.post("/threads/search", json!({"limit": "abc"})).await.0,
        422
    );
    app.stop().await;
}

async fn count_matches_search(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    for i in 0..3 {
        new_thread(&app, json!({"n": i % 2})).await;
    }
    assert_eq!(app.post("/threads/count", json!({})).await.1, json!(3));
    assert_eq!(
        app.post("/threads/count", json!({"metadata": {"n": 0}}))
            .await
            .1,
        json!(2)
    );
    assert_eq!(
        app.post(
            "/threads/count",
            json!({"status": "idle", "metadata": {"n": 1}})
        )
        .await
        .1,
        json!(1)
    );
    let id = new_thread(&app, json!({})).await;
    update(&app, &id, json!({"topic": "tasks", "n": 3})).await;
    let count = |filter: serde_json::Value| {
        let app = &app;
        async move { app.post("/threads/count", filter).await.1 }
    };
    assert_eq!(
        count(json!({"values": {"topic": "tasks"}})).await,
        json!(1),
        "values containment"
    );
    assert_eq!(count(json!({"values": {"topic": "other"}})).await, json!(0));
    app.stop().await;
}

async fn update_state_writes_a_checkpoint_with_as_node(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let id = new_thread(&app, json!({})).await;
    let (_, empty) = app.get(&format!("/threads/{id}/state")).await;
    assert_eq!(empty["values"], json!({}));
    assert_eq!(empty["checkpoint"], Value::Null);

    let first = update(
        &app,
        &id,
        json!({"messages": [{"type": "human", "content": "hi", "id": "m1"}]}),
    )
    .await;
    let second = update(&app, &id, json!({"count": 2})).await;
    assert!(second > first, "checkpoint ids are time-ordered");

    let (s, state) = app.get(&format!("/threads/{id}/state")).await;
    assert_eq!(s, 200);
    assert_eq!(
        state["values"],
        json!({"messages": [{"type": "human", "content": "hi", "id": "m1"}], "count": 2})
    );
    assert_eq!(state["checkpoint"]["checkpoint_id"], second.as_str());
    assert_eq!(state["parent_checkpoint"]["checkpoint_id"], first.as_str());
    assert_eq!(state["metadata"]["source"], "update");
    assert_eq!(state["metadata"]["writes"]["agent"], json!({"count": 2}));
    assert_eq!(state["metadata"]["step"], 1);

    let (_, thread) = app.get(&format!("/threads/{id}")).await;
    assert_eq!(
        thread["values"], state["values"],
        "the thread shows its latest values"
    );
    assert_eq!(
        app.post(&format!("/threads/{id}/state"), json!({"values": [1]}))
            .await
            .0,
        422
    );
    app.stop().await;
}

async fn state_at_a_checkpoint_and_unknown_checkpoint(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let id = new_thread(&app, json!({})).await;
    let first = update(&app, &id, json!({"v": 1})).await;
    update(&app, &id, json!({"v": 2})).await;
    let (s, at) = app.get(&format!("/threads/{id}/state/{first}")).await;
    assert_eq!(s, 200);
    assert_eq!(at["values"], json!({"v": 1}));
    let (s, post) = app
        .post(
            &format!("/threads/{id}/state/checkpoint"),
            json!({"checkpoint": {"checkpoint_id": first}}),
        )
        .await;
    assert_eq!((s, &post["values"]), (200, &json!({"v": 1})));
    assert_eq!(app.get(&format!("/threads/{id}/state/nope")).await.0, 404);
    // an update on top of an older checkpoint forks from it
    let (s, fork) = app
        .post(
            &format!("/threads/{id}/state"),
            json!({"values": {"w": 1}, "checkpoint_id": first}),
        )
        .await;
    assert_eq!(s, 200);
    let fork_id = fork["checkpoint"]["checkpoint_id"].as_str().unwrap();
    let (_, forked) = app.get(&format!("/threads/{id}/state/{fork_id}")).await;
    assert_eq!(forked["values"], json!({"v": 1, "w": 1}));
    assert_eq!(forked["parent_checkpoint"]["checkpoint_id"], first.as_str());
    app.stop().await;
}

async fn history_is_newest_first_with_limit_before_and_metadata(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let id = new_thread(&app, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(update(&app, &id, json!({"i": i})).await);
    }
    let (s, all) = app.post(&format!("/threads/{id}/history"), json!({})).await;
    assert_eq!(s, 200);
    let got: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["checkpoint"]["checkpoint_id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.reverse();
    assert_eq!(got, expected);

    let (_, two) = app
        .post(&format!("/threads/{id}/history"), json!({"limit": 2}))
        .await;
    assert_eq!(two.as_array().unwrap().len(), 2);
    // `before` in all three shapes clients send
    for before in [
        json!(ids[3]),
        json!({"checkpoint_id": ids[3]}),
        json!({"configurable": {"checkpoint_id": ids[3]}}),
    ] {
        let (s, older) = app
            .post(
                &format!("/threads/{id}/history"),
                json!({"before": before, "limit": 10}),
            )
            .await;
        assert_eq!(s, 200, "{before}");
        let older: Vec<&str> = older
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["checkpoint"]["checkpoint_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            older,
            vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()],
            "{before}"
        );
    }
    let (_, step3) = app
        .post(
            &format!("/threads/{id}/history"),
            json!({"metadata": {"step": 3}}),
        )
        .await;
    assert_eq!(step3.as_array().unwrap().len(), 1);
    assert_eq!(step3[0]["values"]["i"], 3);
    let (s, via_get) = app
        .get(&format!("/threads/{id}/history?limit=1&before={}", ids[1]))
        .await;
    assert_eq!(s, 200);
    assert_eq!(via_get[0]["checkpoint"]["checkpoint_id"], ids[0].as_str());
    app.stop().await;
}

async fn history_pages_by_before_cover_everything_once(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let id = new_thread(&app, json!({})).await;
    for i in 0..7 {
        update(&app, &id, json!({"i": i})).await;
    }
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut body = json!({"limit": 3});
        if let Some(b) = &before {
            body["before"] = json!(b);
        }
        let (_, page) = app.post(&format!("/threads/{id}/history"), body).await;
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        for h in &page {
            seen.push(h["values"]["i"].as_i64().unwrap());
        }
        before = page.last().map(|h| {
            h["checkpoint"]["checkpoint_id"]
                .as_str()
                .unwrap()
                .to_string()
        });
    }
    assert_eq!(seen, vec![6, 5, 4, 3, 2, 1, 0]);
    app.stop().await;
}

async fn copy_takes_the_history_along(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let id = new_thread(&app, json!({"graph_id": "agent"})).await;
    update(&app, &id, json!({"v": 1})).await;
    update(&app, &id, json!({"v": 2})).await;
    let (s, copy) = app.post(&format!("/threads/{id}/copy"), json!({})).await;
    assert_eq!(s, 200);
    let copy_id = copy["thread_id"].as_str().unwrap();
    assert_ne!(copy_id, id);
    assert_eq!(copy["metadata"], json!({"graph_id": "agent"}));
    let (_, hist) = app
        .post(&format!("/threads/{copy_id}/history"), json!({}))
        .await;
    assert_eq!(hist.as_array().unwrap().len(), 2);
    assert_eq!(hist[0]["values"], json!({"v": 2}));
    assert_eq!(hist[0]["checkpoint"]["thread_id"], copy_id);
    // the copy is independent
    update(&app, copy_id, json!({"v": 3})).await;
    assert_eq!(
        app.get(&format!("/threads/{id}/state")).await.1["values"],
        json!({"v": 2})
    );
    app.stop().await;
}

async fn concurrent_updates_chain_instead_of_forking(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let id = new_thread(&app, json!({})).await;
    let updates = (0..20).map(|i| {
        let req = app
            .client
            .post(app.url(&format!("/threads/{id}/state")))
            .json(&json!({"values": {format!("k{i}"): i}}));
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(updates).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let (_, state) = app.get(&format!("/threads/{id}/state")).await;
    assert_eq!(
        state["values"].as_object().unwrap().len(),
        20,
        "no update lost: {}",
        state["values"]
    );
    let (_, history) = app
        .post(&format!("/threads/{id}/history"), json!({"limit": 100}))
        .await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 20);
    for pair in history.windows(2) {
        assert_eq!(
            pair[0]["parent_checkpoint"]["checkpoint_id"], pair[1]["checkpoint"]["checkpoint_id"],
            "one chain"
        );
    }
    app.stop().await;
}

async fn an_update_replaces_a_json_blob_value(kind: Kind) {
    use base64::Engine;
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let blob = base64::engine::general_purpose::STANDARD.encode("[1]");
    let (s, _) = app.put("/threads/raw/checkpoints", json!({"checkpoint": {"id": "1f000000-0000-6000-8000-000000000001",
        "channel_versions": {"m": "1"}}, "blobs": [{"channel": "m", "version": "1", "type": "json", "data": blob}]})).await;
    assert_eq!(s, 200);
    assert_eq!(
        app.get("/threads/raw/state").await.1["values"],
        json!({"m": [1]})
    );
    update(&app, "raw", json!({"m": [2]})).await;
    assert_eq!(
        app.get("/threads/raw/state").await.1["values"],
        json!({"m": [2]})
    );
    assert_eq!(app.get("/threads/raw").await.1["values"], json!({"m": [2]}));
    app.stop().await;
}

async fn an_update_on_a_checkpoint_id_that_sorts_last_is_409(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let huge = "18446744073709551615";
    let (s, _) = app
        .put(
            "/threads/named/checkpoints",
            json!({"checkpoint": {"id": "zz-mine", "channel_versions": {"m": huge}}}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = app
        .post("/threads/named/state", json!({"values": {"a": 1}}))
        .await;
    assert_eq!(s, 409, "{b}");
    let (s, _) = app
        .post(
            "/threads/named/state",
            json!({"values": {"a": 1}, "checkpoint_id": "nope"}),
        )
        .await;
    assert_eq!(s, 404);
    app.stop().await;
}

async fn messages_of_an_agent_thread_merge_by_id(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let id = new_thread(&app, json!({"graph_id": "agent"})).await;
    update(
        &app,
        &id,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    update(
        &app,
        &id,
        json!({"messages": [{"type": "ai", "content": "hello", "id": "a1"}], "topic": "x"}),
    )
    .await;
    update(
        &app,
        &id,
        json!({"messages": {"type": "ai", "content": "hello!", "id": "a1"}}),
    )
    .await;
    let (_, state) = app.get(&format!("/threads/{id}/state")).await;
    let messages = state["values"]["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        2,
        "appended, then replaced in place: {messages:?}"
    );
    assert_eq!(messages[0]["type"], "human", "role user becomes type human");
    assert!(
        messages[0]["id"].is_string(),
        "a message without an id gets one"
    );
    assert_eq!(messages[1]["content"], "hello!");
    assert_eq!(
        state["values"]["topic"], "x",
        "other keys are replaced as given"
    );

    let first = messages[0]["id"].clone();
    update(
        &app,
        &id,
        json!({"messages": [{"type": "remove", "id": first}]}),
    )
    .await;
    let (_, state) = app.get(&format!("/threads/{id}/state")).await;
    assert_eq!(state["values"]["messages"].as_array().unwrap().len(), 1);
    update(
        &app,
        &id,
        json!({"messages": [{"type": "remove", "id": "__remove_all__"}]}),
    )
    .await;
    assert_eq!(
        app.get(&format!("/threads/{id}/state")).await.1["values"]["messages"],
        json!([])
    );

    // a thread of no known graph keeps values as given
    let plain = new_thread(&app, json!({})).await;
    update(&app, &plain, json!({"messages": [1]})).await;
    update(&app, &plain, json!({"messages": [2]})).await;
    assert_eq!(
        app.get(&format!("/threads/{plain}/state")).await.1["values"]["messages"],
        json!([2])
    );
    app.stop().await;
}
