use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Kind, TestApp, TestDb, spawn_app};

both_backends!(
    put_then_get_returns_the_item_and_a_missing_key_is_null,
    put_replaces_value_and_keeps_created_at,
    delete_removes_the_item_and_is_idempotent,
    namespace_labels_are_validated,
    get_without_key_is_400,
    search_compares_numbers_as_numbers,
    search_compares_strings_as_strings_and_skips_other_types,
    search_eq_ne_and_namespace_prefix,
    search_pages_newest_first,
    expired_items_are_never_returned,
    reading_an_item_refreshes_its_ttl,
    sweeper_deletes_expired_items,
    list_namespaces_prefix_suffix_wildcard_depth,
    malformed_and_oversized_bodies_get_json_errors,
    concurrent_puts_are_all_stored,
    null_filters_and_nul_characters,
    indexed_fields_are_indexed_on_postgres_and_filter_alike,
);

async fn put(app: &TestApp, ns: &[&str], key: &str, value: Value) {
    let (s, _) = app
        .put(
            "/store/items",
            json!({ "namespace": ns, "key": key, "value": value }),
        )
        .await;
    assert_eq!(s, 204);
}

async fn search(app: &TestApp, body: Value) -> Vec<String> {
    let (s, b) = app.post("/store/items/search", body).await;
    assert_eq!(s, 200, "{b}");
    b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect()
}

async fn put_then_get_returns_the_item_and_a_missing_key_is_null(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    put(
        &app,
        &["users", "u1"],
        "k1",
        json!({"x": 1, "nested": {"a": [1, 2.5, "s", null]}}),
    )
    .await;

    let (s, item) = app.get("/store/items?namespace=users.u1&key=k1").await;
    assert_eq!(s, 200);
    assert_eq!(item["namespace"], json!(["users", "u1"]));
    assert_eq!(item["key"], "k1");
    assert_eq!(
        item["value"],
        json!({"x": 1, "nested": {"a": [1, 2.5, "s", null]}})
    );
    assert!(item["created_at"].as_str().unwrap().ends_with("+00:00"));

    let (s, missing) = app.get("/store/items?namespace=users.u1&key=nope").await;
    assert_eq!((s, missing), (200, Value::Null));
    app.stop().await;
}

async fn put_replaces_value_and_keeps_created_at(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    put(&app, &["a"], "k", json!({"v": 1})).await;
    let (_, first) = app.get("/store/items?namespace=a&key=k").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    put(&app, &["a"], "k", json!({"v": 2})).await;
    let (_, second) = app.get("/store/items?namespace=a&key=k").await;
    assert_eq!(second["value"], json!({"v": 2}));
    assert_eq!(second["created_at"], first["created_at"]);
    assert_ne!(second["updated_at"], first["updated_at"]);
    app.stop().await;
}

async fn delete_removes_the_item_and_is_idempotent(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    put(&app, &["a", "b"], "k", json!({"v": 1})).await;
    let body = json!({"namespace": ["a", "b"], "key": "k"});
    assert_eq!(app.delete_json("/store/items", body.clone()).await.0, 204);
    assert_eq!(
        app.get("/store/items?namespace=a.b&key=k").await.1,
        Value::Null
    );
    assert_eq!(app.delete_json("/store/items", body).await.0, 204);
    app.stop().await;
}

async fn namespace_labels_are_validated(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    for ns in [json!([]), json!(["a", ""]), json!(["a.b"])] {
        let (s, b) = app
            .put(
                "/store/items",
                json!({"namespace": ns, "key": "k", "value": {}}),
            )
            .await;
        assert_eq!(s, 422, "{ns}: {b}");
        assert!(b["detail"].is_string());
    }
    let (s, _) = app
        .post(
            "/store/items/search",
            json!({"namespace_prefix": ["ok", ""]}),
        )
        .await;
    assert_eq!(s, 422);
    let (s, _) = app
        .put(
            "/store/items",
            json!({"namespace": ["a"], "key": "k", "value": 5}),
        )
        .await;
    assert_eq!(s, 422, "a non-object value is rejected");
    let (s, _) = app
        .put(
            "/store/items",
            json!({"namespace": ["a"], "key": "k", "value": {}, "ttl": -1}),
        )
        .await;
    assert_eq!(s, 422, "a negative ttl is rejected");
    app.stop().await;
}

async fn get_without_key_is_400(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let (s, b) = app.get("/store/items?namespace=a").await;
    assert_eq!(s, 400);
    assert!(b["detail"].as_str().unwrap().contains("key"));
    app.stop().await;
}

async fn search_compares_numbers_as_numbers(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    put(&app, &["n"], "nine", json!({"score": 9})).await;
    put(&app, &["n"], "ten", json!({"score": 10})).await;
    put(&app, &["n"], "hundred", json!({"score": 100.5})).await;
    // as text, "9" >= "10" and "9" > "100.5": the reference's bug
    let mut gte10 = search(
        &app,
        json!({"namespace_prefix": ["n"], "filter": {"score": {"$gte": 10}}}),
    )
    .await;
    gte10.sort();
    assert_eq!(gte10, vec!["hundred", "ten"]);
    let lt10 = search(
        &app,
        json!({"namespace_prefix": ["n"], "filter": {"score": {"$lt": 10}}}),
    )
    .await;
    assert_eq!(lt10, vec!["nine"]);
    let between = search(
        &app,
        json!({"namespace_prefix": ["n"], "filter": {"score": {"$gt": 9, "$lte": 100}}}),
    )
    .await;
    assert_eq!(between, vec!["ten"]);
    app.stop().await;
}

async fn search_compares_strings_as_strings_and_skips_other_types(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    put(&app, &["s"], "apple", json!({"name": "apple"})).await;
    put(&app, &["s"], "banana", json!({"name": "banana"})).await;
    put(&app, &["s"], "number", json!({"name": 5})).await;
    put(&app, &["s"], "missing", json!({"other": "zzz"})).await;
    let gt = search(
        &app,
        json!({"namespace_prefix": ["s"], "filter": {"name": {"$gt": "b"}}}),
    )
    .await;
    assert_eq!(gt, vec!["banana"]);
    let lt = search(
        &app,
        json!({"namespace_prefix": ["s"], "filter": {"name": {"$lt": "b"}}}),
    )
    .await;
    assert_eq!(lt, vec!["apple"]);
    let (s, _) = app
        .post(
            "/store/items/search",
            json!({"filter": {"name": {"$gt": true}}}),
        )
        .await;
    assert_eq!(s, 422, "ordering a boolean is rejected");
    let (s, _) = app
        .post(
            "/store/items/search",
            json!({"filter": {"name": {"$regex": "a"}}}),
        )
        .await;
    assert_eq!(s, 422, "unknown operators are rejected");
    app.stop().await;
}

async fn search_eq_ne_and_namespace_prefix(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    put(
        &app,
        &["users", "u1", "memories"],
        "m1",
        json!({"category": "food", "n": 1}),
    )
    .await;
    put(
        &app,
        &["users", "u1", "memories"],
        "m2",
        json!({"category": "work", "n": 1.0}),
    )
    .await;
    put(
        &app,
        &["users", "u10", "memories"],
        "m3",
        json!({"category": "food"}),
    )
    .await;
    let u1 = search(&app, json!({"namespace_prefix": ["users", "u1"]})).await;
    assert_eq!(u1.len(), 2, "u10 is not under u1: {u1:?}");
    let food = search(
        &app,
        json!({"namespace_prefix": ["users"], "filter": {"category": "food"}}),
    )
    .await;
    assert_eq!(food.len(), 2);
    let not_food = search(
        &app,
        json!({"namespace_prefix": ["users"], "filter": {"category": {"$ne": "food"}}}),
    )
    .await;
    assert_eq!(not_food, vec!["m2"]);
    let n1 = search(
        &app,
        json!({"namespace_prefix": ["users"], "filter": {"n": 1}}),
    )
    .await;
    assert_eq!(n1.len(), 2, "1 equals 1.0");

    // a value matches only a value of its own JSON type, whatever its text
    let kinds = [
        ("number", json!({"v": 1})),
        ("text", json!({"v": "1"})),
        ("object", json!({"v": {"a": 1}})),
        ("object-text", json!({"v": "{\"a\":1}"})),
        ("none", json!({})),
    ];
    for (key, value) in kinds {
        put(&app, &["types"], key, value).await;
    }
    for (filter, expected) in [
        (json!({"v": 1}), vec!["number"]),
        (json!({"v": 1.0}), vec!["number"]),
        (json!({"v": "1"}), vec!["text"]),
        (json!({"v": "{\"a\":1}"}), vec!["object-text"]),
        (
            json!({"v": {"$ne": "1"}}),
            vec!["none", "number", "object", "object-text"],
        ),
        (
            json!({"v": {"$ne": 1}}),
            vec!["none", "object", "object-text", "text"],
        ),
    ] {
        let mut found = search(
            &app,
            json!({"namespace_prefix": ["types"], "filter": filter.clone()}),
        )
        .await;
        found.sort();
        assert_eq!(found, expected, "filter {filter}");
    }
    // a prefix is matched as the text it is, quotes and all (SQLite splices it as a literal)
    put(&app, &["o'b\"r", "ü"], "q1", json!({})).await;
    put(&app, &["o'b\"r"], "q2", json!({})).await;
    put(&app, &["o'b\"rr"], "q3", json!({})).await;
    put(&app, &["o'b"], "q4", json!({})).await;
    let mut quoted = search(&app, json!({"namespace_prefix": ["o'b\"r"]})).await;
    quoted.sort();
    assert_eq!(quoted, ["q1", "q2"]);
    app.stop().await;
}

async fn search_pages_newest_first(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    // the namespace's own items and those below it take turns; a sibling never matches
    for i in 0..6 {
        let ns: &[&str] = if i % 2 == 0 { &["p"] } else { &["p", "q"] };
        put(&app, ns, &format!("k{i}"), json!({"i": i})).await;
        put(&app, &["pp"], &format!("s{i}"), json!({"i": i})).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let page = |offset: i64| {
        search(
            &app,
            json!({"namespace_prefix": ["p"], "limit": 2, "offset": offset}),
        )
    };
    assert_eq!(page(0).await, vec!["k5", "k4"]);
    assert_eq!(page(2).await, vec!["k3", "k2"]);
    assert_eq!(page(4).await, vec!["k1", "k0"]);
    assert_eq!(page(6).await, Vec::<String>::new());
    let filtered = search(
        &app,
        json!({"namespace_prefix": ["p"], "filter": {"i": {"$gte": 2}}, "limit": 3, "offset": 1}),
    )
    .await;
    assert_eq!(filtered, vec!["k4", "k3", "k2"]);
    let (s, _) = app.post("/store/items/search", json!({"limit": 0})).await;
    assert_eq!(s, 422);
    app.stop().await;
}

async fn expired_items_are_never_returned(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    // 0.001 minutes = 60 ms; the sweeper (60 s) has not run when we read
    let (s, _) = app
        .put(
            "/store/items",
            json!({"namespace": ["t"], "key": "gone", "value": {"a": 1}, "ttl": 0.001}),
        )
        .await;
    assert_eq!(s, 204);
    put(&app, &["t"], "kept", json!({"a": 1})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.get("/store/items?namespace=t&key=gone").await.1,
        Value::Null
    );
    assert_eq!(
        search(&app, json!({"namespace_prefix": ["t"]})).await,
        vec!["kept"]
    );
    app.put(
        "/store/items",
        json!({"namespace": ["only"], "key": "x", "value": {}, "ttl": 0.001}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, ns) = app.post("/store/namespaces", json!({})).await;
    assert_eq!(ns["namespaces"], json!([["t"]]));
    app.stop().await;
}

async fn reading_an_item_refreshes_its_ttl(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    // ttl 0.02 minutes = 1.2 s
    app.put(
        "/store/items",
        json!({"namespace": ["r"], "key": "k", "value": {}, "ttl": 0.02}),
    )
    .await;
    app.put(
        "/store/items",
        json!({"namespace": ["r"], "key": "norefresh", "value": {}, "ttl": 0.02}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        app.get("/store/items?namespace=r&key=k")
            .await
            .1
            .is_object()
    );
    assert!(
        app.get("/store/items?namespace=r&key=norefresh&refresh_ttl=false")
            .await
            .1
            .is_object()
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    // 1.6 s after the put: only the refreshed item is alive
    assert!(
        app.get("/store/items?namespace=r&key=k")
            .await
            .1
            .is_object()
    );
    assert_eq!(
        app.get("/store/items?namespace=r&key=norefresh").await.1,
        Value::Null
    );
    app.stop().await;
}

async fn sweeper_deletes_expired_items(kind: Kind) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let mut config = db.config();
    config.store_sweep_interval_s = 1;
    let app = TestApp::start(config).await;
    app.put(
        "/store/items",
        json!({"namespace": ["s"], "key": "k", "value": {}, "ttl": 0.001}),
    )
    .await;
    put(&app, &["s"], "kept", json!({})).await;
    assert_eq!(db.count("SELECT count(*) FROM store").await, 2);
    let mut left = 2;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = db.count("SELECT count(*) FROM store").await;
        if left == 1 {
            break;
        }
    }
    assert_eq!(
        left, 1,
        "the sweeper deleted the expired row and kept the other"
    );
    app.stop().await;
}

async fn list_namespaces_prefix_suffix_wildcard_depth(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    for ns in [
        vec!["users", "u1", "memories"],
        vec!["users", "u2", "memories"],
        vec!["users", "u2", "prefs"],
        vec!["docs", "x"],
    ] {
        put(&app, &ns, "k", json!({})).await;
    }
    let list = |body: Value| {
        let app = &app;
        async move {
            let (s, b) = app.post("/store/namespaces", body).await;
            assert_eq!(s, 200);
            b["namespaces"].clone()
        }
    };
    assert_eq!(list(json!({})).await.as_array().unwrap().len(), 4);
    assert_eq!(
        list(json!({"prefix": ["users"], "max_depth": 2})).await,
        json!([["users", "u1"], ["users", "u2"]])
    );
    assert_eq!(
        list(json!({"prefix": ["users", "*", "memories"]})).await,
        json!([["users", "u1", "memories"], ["users", "u2", "memories"]])
    );
    assert_eq!(
        list(json!({"suffix": ["prefs"]})).await,
        json!([["users", "u2", "prefs"]])
    );
    assert_eq!(
        list(json!({"max_depth": 1})).await,
        json!([["docs"], ["users"]])
    );
    assert_eq!(
        list(json!({"limit": 1, "offset": 1}))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

async fn malformed_and_oversized_bodies_get_json_errors(kind: Kind) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let mut config = db.config();
    config.max_body_bytes = 1024;
    let app = TestApp::start(config).await;
    let resp = app
        .client
        .put(app.url("/store/items"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    let (s, b) = crate::helpers::read(resp).await;
    assert_eq!(s, 400);
    assert!(b["detail"].is_string());
    let (s, _) = app
        .put(
            "/store/items",
            json!({"namespace": "not-a-list", "key": "k", "value": {}}),
        )
        .await;
    assert_eq!(s, 422);
    let big = "x".repeat(4096);
    let (s, b) = app
        .put(
            "/store/items",
            json!({"namespace": ["a"], "key": "k", "value": {"big": big}}),
        )
        .await;
    assert_eq!(s, 413, "{b}");
    assert!(b["detail"].is_string());
    app.stop().await;
}

async fn concurrent_puts_are_all_stored(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    // concurrent puts share commits: every one must still land, and one key written many times
    // at once must end with one of the written values
    let puts = (0..60).map(|i| {
        let key = if i % 3 == 0 {
            "shared".to_string()
        } else {
            format!("k{i}")
        };
        let req = app
            .client
            .put(app.url("/store/items"))
            .json(&json!({"namespace": ["c"], "key": key, "value": {"i": i}}));
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(puts).await;
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
    for i in (0..60).filter(|i| i % 3 != 0) {
        let (_, item) = app.get(&format!("/store/items?namespace=c&key=k{i}")).await;
        assert_eq!(item["value"], json!({"i": i}));
    }
    let (_, shared) = app.get("/store/items?namespace=c&key=shared").await;
    assert_eq!(shared["value"]["i"].as_i64().unwrap() % 3, 0);
    assert_eq!(
        search(&app, json!({"namespace_prefix": ["c"], "limit": 100}))
            .await
            .len(),
        41
    );
    app.stop().await;
}

async fn null_filters_and_nul_characters(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    put(&app, &["z"], "null", json!({"k": null})).await;
    put(&app, &["z"], "one", json!({"k": 1})).await;
    put(&app, &["z"], "none", json!({})).await;
    assert_eq!(
        search(
            &app,
            json!({"namespace_prefix": ["z"], "filter": {"k": null}})
        )
        .await,
        vec!["null"]
    );
    let mut ne = search(
        &app,
        json!({"namespace_prefix": ["z"], "filter": {"k": {"$ne": null}}}),
    )
    .await;
    ne.sort();
    assert_eq!(ne, vec!["none", "one"]);
    assert!(
        search(
            &app,
            json!({"namespace_prefix": ["z"], "filter": {"a\"b": 1}})
        )
        .await
        .is_empty()
    );
    let (s, _) = app
        .put(
            "/store/items",
            json!({"namespace": ["z"], "key": "nul", "value": {"t": "a\u{0}b"}}),
        )
        .await;
    assert_eq!(s, 422, "NUL is refused on both backends alike");
    let (s, _) = app
        .put(
            "/store/items",
            json!({"namespace": ["z"], "key": "k", "value": {}, "ttl": 1e12}),
        )
        .await;
    assert_eq!(s, 422, "an absurd ttl is refused");
    app.stop().await;
}

async fn indexed_fields_are_indexed_on_postgres_and_filter_alike(kind: Kind) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let mut config = db.config();
    config.store_indexed_fields = vec!["category".into()];
    let app = TestApp::start(config.clone()).await;
    for i in 0..12 {
        let ns = ["u", if i % 2 == 0 { "a" } else { "b" }];
        put(
            &app,
            &ns,
            &format!("k{i}"),
            json!({"category": format!("c{}", i % 3), "i": i}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let whole = search(&app, json!({"filter": {"category": "c1"}, "limit": 10})).await;
    assert_eq!(whole, vec!["k10", "k7", "k4", "k1"]);
    let ns = search(
        &app,
        json!({"namespace_prefix": ["u", "b"], "filter": {"category": "c1"}, "limit": 10}),
    )
    .await;
    assert_eq!(ns, vec!["k7", "k1"]);
    // a number is not the string of its digits, indexed or not
    assert!(
        search(&app, json!({"filter": {"category": 1}}))
            .await
            .is_empty()
    );
    app.stop().await;
    if kind == Kind::Postgres {
        let indexed =
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'store_value_category_idx'";
        assert_eq!(db.count(indexed).await, 1);
        // a second start finds the index there
        TestApp::start(config).await.stop().await;
        assert_eq!(db.count(indexed).await, 1);
    }
}
