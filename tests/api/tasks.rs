use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Kind, TestApp, spawn_app};

both_backends!(
    create_get_patch_delete_a_task,
    another_users_task_is_not_found,
    list_filters_by_status_and_pages_by_cursor,
    bad_task_input_is_422,
);

async fn new_task(app: &TestApp, user: &str, body: Value) -> Value {
    let mut body = body;
    body["user_id"] = json!(user);
    let (s, t) = app.post("/tasks", body).await;
    assert_eq!(s, 201, "{t}");
    t
}

async fn create_get_patch_delete_a_task(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let t = new_task(
        &app,
        "u1",
        json!({"title": "  buy milk ", "due_date": "2026-12-01"}),
    )
    .await;
    let id = t["task_id"].as_str().unwrap();
    assert_eq!(t["title"], "buy milk");
    assert_eq!(t["status"], "todo");
    assert_eq!(t["notes"], "");
    assert_eq!(t["due_date"], "2026-12-01");

    let (s, got) = app.get(&format!("/tasks/{id}?user_id=u1")).await;
    assert_eq!((s, &got["title"]), (200, &json!("buy milk")));

    let (s, done) = app
        .patch(
            &format!("/tasks/{id}?user_id=u1"),
            json!({"status": "done", "notes": "2 l"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        (&done["status"], &done["notes"], &done["title"]),
        (&json!("done"), &json!("2 l"), &json!("buy milk"))
    );
    assert_eq!(done["due_date"], "2026-12-01", "untouched fields stay");
    let (_, cleared) = app
        .patch(
            &format!("/tasks/{id}?user_id=u1"),
            json!({"due_date": null}),
        )
        .await;
    assert_eq!(
        cleared["due_date"],
        Value::Null,
        "an explicit null clears the date"
    );

    assert_eq!(app.delete(&format!("/tasks/{id}?user_id=u1")).await.0, 204);
    assert_eq!(app.get(&format!("/tasks/{id}?user_id=u1")).await.0, 404);
    assert_eq!(app.delete(&format!("/tasks/{id}?user_id=u1")).await.0, 404);
    app.stop().await;
}

async fn another_users_task_is_not_found(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let t = new_task(&app, "alice", json!({"title": "secret"})).await;
    let id = t["task_id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/tasks/{id}?user_id=bob")).await.0, 404);
    assert_eq!(
        app.patch(
            &format!("/tasks/{id}?user_id=bob"),
            json!({"title": "mine"})
        )
        .await
        .0,
        404
    );
    assert_eq!(app.delete(&format!("/tasks/{id}?user_id=bob")).await.0, 404);
    assert_eq!(app.get("/tasks?user_id=bob").await.1["tasks"], json!([]));
    assert_eq!(
        app.get(&format!("/tasks/{id}?user_id=alice")).await.1["title"],
        "secret",
        "unchanged"
    );
    app.stop().await;
}

async fn list_filters_by_status_and_pages_by_cursor(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    for i in 0..5 {
        let status = if i % 2 == 0 { "todo" } else { "doing" };
        new_task(
            &app,
            "u",
            json!({"title": format!("t{i}"), "status": status}),
        )
        .await;
    }
    new_task(&app, "other", json!({"title": "not mine"})).await;
    let titles = |v: &Value| {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };

    let (_, all) = app.get("/tasks?user_id=u").await;
    assert_eq!(
        titles(&all),
        vec!["t0", "t1", "t2", "t3", "t4"],
        "oldest first, only this user's"
    );
    assert_eq!(all["next_after"], Value::Null);
    let (_, todo) = app.get("/tasks?user_id=u&status=todo").await;
    assert_eq!(titles(&todo), vec!["t0", "t2", "t4"]);

    let (_, first) = app.get("/tasks?user_id=u&limit=2").await;
    assert_eq!(titles(&first), vec!["t0", "t1"]);
    let cursor = first["next_after"].as_str().unwrap();
    let (_, second) = app
        .get(&format!("/tasks?user_id=u&limit=2&after={cursor}"))
        .await;
    assert_eq!(titles(&second), vec!["t2", "t3"]);
    app.stop().await;
}

async fn bad_task_input_is_422(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    assert_eq!(app.post("/tasks", json!({"title": "no user"})).await.0, 422);
    assert_eq!(
        app.post("/tasks", json!({"user_id": "u", "title": "   "}))
            .await
            .0,
        422
    );
    assert_eq!(
        app.post(
            "/tasks",
            json!({"user_id": "u", "title": "x", "status": "someday"})
        )
        .await
        .0,
        422
    );
    assert_eq!(
        app.post(
            "/tasks",
            json!({"user_id": "u", "title": "x", "due_date": "tomorrow"})
        )
        .await
        .0,
        422
    );
    assert_eq!(
        app.post("/tasks", json!({"user_id": "u", "title": "x".repeat(501)}))
            .await
            .0,
        422
    );
    assert_eq!(app.get("/tasks").await.0, 422, "user_id is required");
    assert_eq!(app.get("/tasks?user_id=u&limit=0").await.0, 422);
    let t = new_task(&app, "u", json!({"title": "ok"})).await;
    let id = t["task_id"].as_str().unwrap();
    assert_eq!(
        app.patch(&format!("/tasks/{id}?user_id=u"), json!({"status": "nope"}))
            .await
            .0,
        422
    );
    assert_eq!(
        app.patch(&format!("/tasks/{id}?user_id=u"), json!({"title": ""}))
            .await
            .0,
        422
    );
    app.stop().await;
}
