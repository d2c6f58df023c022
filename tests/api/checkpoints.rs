use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Kind, TestApp, spawn_app};

both_backends!(
    put_and_get_round_trip_blobs_byte_for_byte,
    pending_writes_first_write_wins_and_special_channels_are_replaced,
    list_filters_by_metadata_and_pages_with_before,
    delete_removes_checkpoints_blobs_writes_and_thread,
    bad_checkpoint_input_is_422_and_missing_is_404,
    concurrent_puts_and_writes_all_land,
    prune_keeps_the_latest_per_namespace_and_only_the_blobs_it_names,
    prune_delete_removes_the_threads,
    delete_for_runs_removes_their_checkpoints_in_every_thread,
    copy_to_a_named_thread_copies_everything_once,
    blob_json_views_show_as_state_and_writes_come_in_task_path_order,
    a_foreign_graphs_next_comes_from_its_trigger_channels,
);

fn checkpoint(id: &str, versions: Value) -> Value {
    json!({"v": 4, "id": id, "ts": "2026-11-26T00:00:00+00:00", "channel_values": {"counter": 3},
           "channel_versions": versions, "versions_seen": {}, "updated_channels": []})
}

async fn put(app: &TestApp, thread: &str, body: Value) {
    let (s, b) = app
        .put(&format!("/threads/{thread}/checkpoints"), body)
        .await;
    assert_eq!(s, 200, "{b}");
}

async fn put_and_get_round_trip_blobs_byte_for_byte(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let bytes: Vec<u8> = (0..=255u8).chain([0xff, 0x00, 0xc3]).collect();
    put(&app, "t1", json!({
        "checkpoint": checkpoint("c1", json!({"messages": "00001.5", "empty": "00001.1"})),
        "metadata": {"source": "loop", "step": 1},
        "parent_checkpoint_id": "c0",
        "blobs": [
            {"channel": "messages", "version": "00001.5", "type": "msgpack", "data": B64.encode(&bytes)},
            {"channel": "empty", "version": "00001.1", "type": "empty", "data": null},
            {"channel": "stale", "version": "00000.9", "type": "msgpack", "data": B64.encode(b"old")}
        ]
    })).await;

    let (s, got) = app.get("/threads/t1/checkpoints/latest").await;
    assert_eq!(s, 200);
    assert_eq!(
        got["config"],
        json!({"thread_id": "t1", "checkpoint_ns": "", "checkpoint_id": "c1"})
    );
    assert_eq!(got["parent_config"]["checkpoint_id"], "c0");
    assert_eq!(got["metadata"], json!({"source": "loop", "step": 1}));
    assert_eq!(got["checkpoint"]["channel_values"], json!({"counter": 3}));
    let blobs = got["blobs"].as_array().unwrap();
    assert_eq!(
        blobs.len(),
        2,
        "only the versions the checkpoint names: {blobs:?}"
    );
    let messages = blobs.iter().find(|b| b["channel"] == "messages").unwrap();
    assert_eq!(messages["type"], "msgpack");
    assert_eq!(
        B64.decode(messages["data"].as_str().unwrap()).unwrap(),
        bytes
    );
    assert_eq!(
        blobs.iter().find(|b| b["channel"] == "empty").unwrap()["data"],
        Value::Null
    );

    let (s, by_id) = app.get("/threads/t1/checkpoints/c1").await;
    assert_eq!((s, &by_id["config"]["checkpoint_id"]), (200, &json!("c1")));
    // the thread row exists now, so the thread API sees it
    assert_eq!(app.get("/threads/t1").await.0, 200);
    app.stop().await;
}

async fn pending_writes_first_write_wins_and_special_channels_are_replaced(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    put(
        &app,
        "t",
        json!({"checkpoint": checkpoint("c1", json!({}))}),
    )
    .await;
    let write = |task: &str, channel: &str, data: &[u8]| json!({"task_id": task, "task_path": "~agent", "writes": [{"channel": channel, "type": "msgpack", "data": B64.encode(data)}]});
    assert_eq!(
        app.put(
            "/threads/t/checkpoints/c1/writes",
            write("task1", "messages", b"first")
        )
        .await
        .0,
        204
    );
    assert_eq!(
        app.put(
            "/threads/t/checkpoints/c1/writes",
            write("task1", "messages", b"retry")
        )
        .await
        .0,
        204
    );
    assert_eq!(
        app.put(
            "/threads/t/checkpoints/c1/writes",
            write("task1", "__interrupt__", b"one")
        )
        .await
        .0,
        204
    );
    assert_eq!(
        app.put(
            "/threads/t/checkpoints/c1/writes",
            write("task1", "__interrupt__", b"two")
        )
        .await
        .0,
        204
    );

    let (_, got) = app.get("/threads/t/checkpoints/c1").await;
    let writes = got["pending_writes"].as_array().unwrap();
    assert_eq!(writes.len(), 2, "{writes:?}");
    let by_channel = |c: &str| writes.iter().find(|w| w["channel"] == c).unwrap().clone();
    assert_eq!(
        B64.decode(by_channel("messages")["data"].as_str().unwrap())
            .unwrap(),
        b"first"
    );
    assert_eq!(by_channel("messages")["idx"], 0);
    assert_eq!(
        B64.decode(by_channel("__interrupt__")["data"].as_str().unwrap())
            .unwrap(),
        b"two"
    );
    assert_eq!(by_channel("__interrupt__")["idx"], -3);
    assert_eq!(by_channel("messages")["task_path"], "~agent");

    // the same special channel twice in one call: the last write stands
    let twice = json!({"task_id": "task2", "writes": [
        {"channel": "__resume__", "type": "json", "data": B64.encode(b"a")},
        {"channel": "__resume__", "type": "json", "data": B64.encode(b"b")}]});
    assert_eq!(
        app.put("/threads/t/checkpoints/c1/writes", twice).await.0,
        204
    );
    let (_, got) = app.get("/threads/t/checkpoints/c1").await;
    let resumes: Vec<_> = got["pending_writes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["task_id"] == "task2")
        .collect();
    assert_eq!(resumes.len(), 1);
    assert_eq!(
        B64.decode(resumes[0]["data"].as_str().unwrap()).unwrap(),
        b"b"
    );
    assert_eq!(resumes[0]["idx"], -4);
    app.stop().await;
}

async fn list_filters_by_metadata_and_pages_with_before(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    for i in 0..5 {
        let id = format!("c{i}");
        put(&app, "t", json!({"checkpoint": checkpoint(&id, json!({})), "metadata": {"step": i, "source": if i % 2 == 0 {"loop"} else {"input"}}})).await;
    }
    put(
        &app,
        "t",
        json!({"checkpoint_ns": "child:1", "checkpoint": checkpoint("c9", json!({}))}),
    )
    .await;
    let ids = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["config"]["checkpoint_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };

    let (_, all) = app.post("/threads/t/checkpoints/search", json!({})).await;
    assert_eq!(
        ids(&all),
        vec!["c9", "c4", "c3", "c2", "c1", "c0"],
        "every namespace when none is named"
    );
    let (_, root) = app
        .post(
            "/threads/t/checkpoints/search",
            json!({"checkpoint_ns": ""}),
        )
        .await;
    assert_eq!(ids(&root).len(), 5);
    let (_, loops) = app
        .post(
            "/threads/t/checkpoints/search",
            json!({"checkpoint_ns": "", "filter": {"source": "loop"}}),
        )
        .await;
    assert_eq!(ids(&loops), vec!["c4", "c2", "c0"]);
    let (_, page) = app
        .post(
            "/threads/t/checkpoints/search",
            json!({"checkpoint_ns": "", "before": "c3", "limit": 1}),
        )
        .await;
    assert_eq!(ids(&page), vec!["c2"]);
    app.stop().await;
}

async fn delete_removes_checkpoints_blobs_writes_and_thread(kind: Kind) {
    let Some((app, db)) = spawn_app(kind).await else {
        return;
    };
    put(
        &app,
        "gone",
        json!({
            "checkpoint": checkpoint("c1", json!({"m": "1"})),
            "blobs": [{"channel": "m", "version": "1", "type": "json", "data": B64.encode(b"[1]")}]
        }),
    )
    .await;
    app.put("/threads/gone/checkpoints/c1/writes", json!({"task_id": "t", "writes": [{"channel": "m", "type": "json", "data": B64.encode(b"2")}]})).await;
    put(
        &app,
        "kept",
        json!({"checkpoint": checkpoint("c1", json!({}))}),
    )
    .await;

    assert_eq!(app.delete("/threads/gone/checkpoints").await.0, 204);
    assert_eq!(
        app.delete("/threads/gone/checkpoints").await.0,
        204,
        "idempotent"
    );
    assert_eq!(app.get("/threads/gone/checkpoints/latest").await.0, 404);
    assert_eq!(app.get("/threads/gone").await.0, 404);
    for table in ["checkpoints", "checkpoint_blobs", "checkpoint_writes"] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM {table} WHERE thread_id = 'gone'"
            ))
            .await,
            0,
            "{table}"
        );
    }
    assert_eq!(app.get("/threads/kept/checkpoints/latest").await.0, 200);
    app.stop().await;
}

async fn bad_checkpoint_input_is_422_and_missing_is_404(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    assert_eq!(
        app.put(
            "/threads/t/checkpoints",
            json!({"checkpoint": {"no": "id"}})
        )
        .await
        .0,
        422
    );
    assert_eq!(
        app.put("/threads/t/checkpoints", json!({"checkpoint": [1]}))
            .await
            .0,
        422
    );
    let bad_blob = json!({"checkpoint": checkpoint("c1", json!({})), "blobs": [{"channel": "m", "version": "1", "type": "x", "data": "%%%"}]});
    assert_eq!(app.put("/threads/t/checkpoints", bad_blob).await.0, 422);
    assert_eq!(
        app.get("/threads/t/checkpoints/latest").await.0,
        404,
        "nothing was written"
    );
    assert_eq!(app.get("/threads/t/checkpoints/missing").await.0, 404);
    app.stop().await;
}

async fn concurrent_puts_and_writes_all_land(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    // concurrent checkpoint puts and writes share commits: each must land intact, with its blob
    let puts = (0..40).map(|i| {
        let body = json!({
            "checkpoint": checkpoint(&format!("c{i:02}"), json!({"m": format!("v{i}")})),
            "metadata": {"i": i},
            "blobs": [{"channel": "m", "version": format!("v{i}"), "type": "bytes", "data": B64.encode(format!("blob {i}"))}]
        });
        let req = app.client.put(app.url(&format!("/threads/t{}/checkpoints", i % 4))).json(&body);
        let writes = json!({"task_id": format!("task{i}"), "writes": [{"channel": "m", "type": "bytes", "data": B64.encode(format!("w{i}"))}]});
        let wreq = app.client.put(app.url(&format!("/threads/t{}/checkpoints/c{i:02}/writes", i % 4))).json(&writes);
        async move { (req.send().await.unwrap().status().as_u16(), wreq.send().await.unwrap().status().as_u16()) }
    });
    let statuses = futures_util::future::join_all(puts).await;
    assert!(statuses.iter().all(|s| *s == (200, 204)), "{statuses:?}");
    // read back all at once: concurrent reads share statements, and each gets its own row
    let a = &app;
    let reads = (0..40).map(|i| async move {
        a.get(&format!("/threads/t{}/checkpoints/c{i:02}", i % 4))
            .await
    });
    let latest =
        (0..4).map(|t| async move { a.get(&format!("/threads/t{t}/checkpoints/latest")).await });
    let (reads, latest) = futures_util::future::join(
        futures_util::future::join_all(reads),
        futures_util::future::join_all(latest),
    )
    .await;
    for (t, (s, got)) in latest.into_iter().enumerate() {
        assert_eq!(s, 200);
        assert_eq!(
            got["config"]["checkpoint_id"],
            format!("c{}", 36 + t),
            "{got}"
        );
        assert_eq!(got["metadata"], json!({"i": 36 + t}));
    }
    for (i, (s, got)) in reads.into_iter().enumerate() {
        assert_eq!(s, 200);
        assert_eq!(got["metadata"], json!({"i": i}));
        assert_eq!(
            B64.decode(got["blobs"][0]["data"].as_str().unwrap())
                .unwrap(),
            format!("blob {i}").into_bytes()
        );
        assert_eq!(
            B64.decode(got["pending_writes"][0]["data"].as_str().unwrap())
                .unwrap(),
            format!("w{i}").into_bytes()
        );
    }
    app.stop().await;
}

fn blob(channel: &str, version: &str, data: &[u8]) -> Value {
    json!({"channel": channel, "version": version, "type": "msgpack", "data": B64.encode(data)})
}

async fn write(
    app: &TestApp,
    thread: &str,
    ns: &str,
    id: &str,
    task: &str,
    path: &str,
    channel: &str,
) {
    let (s, b) = app
        .put(
            &format!("/threads/{thread}/checkpoints/{id}/writes"),
            json!({"checkpoint_ns": ns, "task_id": task, "task_path": path,
                   "writes": [{"channel": channel, "type": "msgpack", "data": B64.encode(task)}]}),
        )
        .await;
    assert_eq!(s, 204, "{b}");
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["config"]["checkpoint_id"].as_str().unwrap())
        .collect()
}

async fn prune_keeps_the_latest_per_namespace_and_only_the_blobs_it_names(kind: Kind) {
    let Some((app, db)) = spawn_app(kind).await else {
        return;
    };
    // c2 changes `a` and keeps c1's `b`; the child namespace has its own history
    put(
        &app,
        "p",
        json!({"checkpoint": checkpoint("c1", json!({"a": "1", "b": "1"})),
        "blobs": [blob("a", "1", b"a1"), blob("b", "1", b"b1")]}),
    )
    .await;
    put(
        &app,
        "p",
        json!({"checkpoint": checkpoint("c2", json!({"a": "2", "b": "1"})),
        "parent_checkpoint_id": "c1", "blobs": [blob("a", "2", b"a2")]}),
    )
    .await;
    put(
        &app,
        "p",
        json!({"checkpoint_ns": "child", "checkpoint": checkpoint("k1", json!({"a": "1"})),
        "blobs": [blob("a", "1", b"child")]}),
    )
    .await;
    put(
        &app,
        "p",
        json!({"checkpoint_ns": "child", "checkpoint": checkpoint("k2", json!({"a": "1"}))}),
    )
    .await;
    write(&app, "p", "", "c1", "t1", "", "x").await;
    write(&app, "p", "", "c2", "t2", "", "x").await;
    put(
        &app,
        "other",
        json!({"checkpoint": checkpoint("o1", json!({}))}),
    )
    .await;
    put(
        &app,
        "other",
        json!({"checkpoint": checkpoint("o2", json!({}))}),
    )
    .await;

    let (s, b) = app
        .post(
            "/threads/prune",
            json!({"thread_ids": ["p", "missing"], "strategy": "keep_latest"}),
        )
        .await;
    assert_eq!((s, b), (200, json!({"pruned_count": 1})));

    let (_, all) = app.post("/threads/p/checkpoints/search", json!({})).await;
    assert_eq!(ids(&all), ["k2", "c2"]);
    let (_, c2) = app.get("/threads/p/checkpoints/latest").await;
    let data: Vec<&str> = c2["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["data"].as_str().unwrap())
        .collect();
    assert_eq!(data.len(), 2, "c2 still reads a@2 and c1's b@1: {c2}");
    assert!(data.contains(&B64.encode(b"b1").as_str()));
    assert_eq!(c2["pending_writes"][0]["task_id"], "t2");
    let count = |sql: &'static str| db.count(sql);
    assert_eq!(
        count("SELECT count(*) FROM checkpoint_blobs WHERE thread_id = 'p'").await,
        3,
        "a@1 is gone"
    );
    assert_eq!(
        count("SELECT count(*) FROM checkpoint_writes WHERE thread_id = 'p'").await,
        1
    );
    let (_, other) = app
        .post("/threads/other/checkpoints/search", json!({}))
        .await;
    assert_eq!(ids(&other), ["o2", "o1"], "other threads are untouched");

    assert_eq!(
        app.post(
            "/threads/prune",
            json!({"thread_ids": ["p"], "strategy": "oldest"})
        )
        .await
        .0,
        422
    );
    assert_eq!(
        app.post("/threads/prune", json!({"strategy": "delete"}))
            .await
            .0,
        422
    );
    app.stop().await;
}

async fn prune_delete_removes_the_threads(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    for t in ["d1", "d2", "d3"] {
        put(&app, t, json!({"checkpoint": checkpoint("c1", json!({}))})).await;
    }
    // the default strategy is delete
    let (s, b) = app
        .post(
            "/threads/prune",
            json!({"thread_ids": ["d1", "d2", "nope"]}),
        )
        .await;
    assert_eq!((s, b), (200, json!({"pruned_count": 2})));
    assert_eq!(app.get("/threads/d1").await.0, 404);
    assert_eq!(app.get("/threads/d2/checkpoints/latest").await.0, 404);
    assert_eq!(app.get("/threads/d3/checkpoints/latest").await.0, 200);
    app.stop().await;
}

async fn delete_for_runs_removes_their_checkpoints_in_every_thread(kind: Kind) {
    let Some((app, db)) = spawn_app(kind).await else {
        return;
    };
    let with_run = |id: &str, ns: &str, run: &str, versions: Value| json!({"checkpoint_ns": ns, "checkpoint": checkpoint(id, versions), "metadata": {"run_id": run, "step": 1}});
    let mut first = with_run("c1", "", "r1", json!({"m": "1"}));
    first["blobs"] = json!([blob("m", "1", b"m1")]);
    put(&app, "x", first).await;
    let mut second = with_run("c2", "", "r2", json!({"m": "2"}));
    second["blobs"] = json!([blob("m", "2", b"m2")]);
    put(&app, "x", second).await;
    put(&app, "x", with_run("k1", "child", "r1", json!({}))).await;
    put(&app, "y", with_run("c1", "", "r1", json!({}))).await;
    put(&app, "y", with_run("c2", "", "r3", json!({}))).await;
    write(&app, "x", "", "c1", "t", "", "ch").await;

    let (s, b) = app
        .post(
            "/checkpoints/delete_for_runs",
            json!({"run_ids": ["r1", "nobody"]}),
        )
        .await;
    assert_eq!((s, b), (200, json!({"deleted_count": 3})));
    let (_, x) = app.post("/threads/x/checkpoints/search", json!({})).await;
    assert_eq!(ids(&x), ["c2"]);
    let (_, y) = app.post("/threads/y/checkpoints/search", json!({})).await;
    assert_eq!(ids(&y), ["c2"]);
    assert_eq!(
        db.count("SELECT count(*) FROM checkpoint_writes WHERE thread_id = 'x'")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM checkpoint_blobs WHERE thread_id = 'x'")
            .await,
        1,
        "m@1 went with c1"
    );
    let (s, b) = app
        .post("/checkpoints/delete_for_runs", json!({"run_ids": []}))
        .await;
    assert_eq!((s, b), (200, json!({"deleted_count": 0})));
    assert_eq!(
        app.post("/checkpoints/delete_for_runs", json!({"run_ids": "r1"}))
            .await
            .0,
        422
    );
    app.stop().await;
}

async fn copy_to_a_named_thread_copies_everything_once(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    put(&app, "src", json!({"checkpoint": checkpoint("c1", json!({"m": "1"})), "blobs": [blob("m", "1", b"m1")]})).await;
    write(&app, "src", "", "c1", "t", "", "ch").await;
    let (s, b) = app
        .post("/threads/src/copy", json!({"thread_id": "dst"}))
        .await;
    assert_eq!((s, &b["thread_id"]), (200, &json!("dst")), "{b}");
    let (_, got) = app.get("/threads/dst/checkpoints/latest").await;
    assert_eq!(got["blobs"][0]["data"], B64.encode(b"m1"));
    assert_eq!(got["pending_writes"][0]["task_id"], "t");
    assert_eq!(
        app.post("/threads/src/copy", json!({"thread_id": "dst"}))
            .await
            .0,
        409
    );
    assert_eq!(
        app.post("/threads/nothing/copy", json!({"thread_id": "dst2"}))
            .await
            .0,
        404
    );
    assert_eq!(
        app.post("/threads/src/copy", json!({"thread_id": ""}))
            .await
            .0,
        422
    );
    assert_eq!(
        app.post("/threads/src/copy", json!({"id": "x"})).await.0,
        422
    );
    app.stop().await;
}

async fn blob_json_views_show_as_state_and_writes_come_in_task_path_order(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let view = json!([{"type": "human", "content": "hi"}]);
    put(&app, "v", json!({
        "checkpoint": {"v": 4, "id": "c1", "ts": "2026-11-26T00:00:00+00:00", "channel_values": {},
                       "channel_versions": {"messages": "1", "opaque": "1"}, "versions_seen": {}},
        "blobs": [
            {"channel": "messages", "version": "1", "type": "msgpack", "data": B64.encode(b"\x91"), "value": view},
            blob("opaque", "1", b"no view")
        ]
    })).await;
    let (s, state) = app.get("/threads/v/state").await;
    assert_eq!(s, 200);
    assert_eq!(
        state["values"],
        json!({"messages": view}),
        "only the blob with a view shows"
    );
    let (s, b) = app.put("/threads/v/checkpoints", json!({"checkpoint": checkpoint("c2", json!({"m": "1"})),
        "blobs": [{"channel": "m", "version": "1", "type": "msgpack", "data": "", "value": "a\u{0}b"}]})).await;
    assert_eq!(s, 422, "{b}");

    // LangGraph replays a step's writes in (task_path, task_id, idx) order
    write(&app, "v", "", "c1", "a-task", "~2", "ch").await;
    write(&app, "v", "", "c1", "b-task", "~1", "ch").await;
    let (_, got) = app.get("/threads/v/checkpoints/c1").await;
    let tasks: Vec<&str> = got["pending_writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["b-task", "a-task"]);
    app.stop().await;
}

async fn a_foreign_graphs_next_comes_from_its_trigger_channels(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let at = |id: &str, versions: Value, seen: Value, blobs: Value| {
        json!({"checkpoint": {"v": 4, "id": id, "ts": "2026-11-26T00:00:00+00:00", "channel_values": {},
                              "channel_versions": versions, "versions_seen": seen}, "blobs": blobs})
    };
    let v = |n: u32| format!("{n:032}.0.5");
    let trigger = |ch: &str, ver: &str, type_: &str| json!({"channel": ch, "version": ver, "type": type_, "data": null});
    // approve's trigger holds a value newer than approve has seen; agent's is as seen; tools
    // never ran; review's trigger is newer but consumed (stored empty)
    put(&app, "g", at("c1",
        json!({"branch:to:approve": v(3), "branch:to:agent": v(2), "branch:to:tools": v(1), "branch:to:review": v(3)}),
        json!({"approve": {"branch:to:approve": v(2)}, "agent": {"branch:to:agent": v(2)}, "review": {"branch:to:review": v(2)}}),
        json!([trigger("branch:to:approve", &v(3), "null"), trigger("branch:to:agent", &v(2), "null"),
               trigger("branch:to:tools", &v(1), "null"), trigger("branch:to:review", &v(3), "empty")]),
    )).await;
    let (s, state) = app.get("/threads/g/state").await;
    assert_eq!(s, 200);
    assert_eq!(state["next"], json!(["approve", "tools"]));
    assert_eq!(state["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(state["tasks"][0]["name"], "approve");
    // integer versions, and a finished graph: nothing is due
    put(
        &app,
        "g",
        at(
            "c2",
            json!({"branch:to:agent": 4}),
            json!({"agent": {"branch:to:agent": 4}}),
            json!([trigger("branch:to:agent", "4", "null")]),
        ),
    )
    .await;
    let (_, state) = app.get("/threads/g/state").await;
    assert_eq!(state["next"], json!([]));
    assert_eq!(state["tasks"], json!([]));
    // an input checkpoint: the input's own channel triggers __start__
    put(
        &app,
        "g",
        at(
            "c3",
            json!({"__start__": 1}),
            json!({}),
            json!([trigger("__start__", "1", "msgpack")]),
        ),
    )
    .await;
    assert_eq!(
        app.get("/threads/g/state").await.1["next"],
        json!(["__start__"])
    );
    app.stop().await;
}
