use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Kind, TestApp, TestDb};

both_backends!(
    data_survives_a_restart,
    an_exhausted_pool_answers_503_with_retry_after
);

async fn data_survives_a_restart(kind: Kind) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let app = TestApp::start(db.config()).await;
    app.put(
        "/store/items",
        json!({"namespace": ["users", "u1"], "key": "fact", "value": {"likes": "tea"}}),
    )
    .await;
    let (_, t) = app
        .post("/threads", json!({"metadata": {"graph_id": "agent"}}))
        .await;
    let id = t["thread_id"].as_str().unwrap().to_string();
    app.post(
        &format!("/threads/{id}/state"),
        json!({"values": {"notes": ["hello"]}}),
    )
    .await;
    let blob = base64::engine::general_purpose::STANDARD.encode([1u8, 2, 3]);
    app.put(
        "/threads/raw/checkpoints",
        json!({"checkpoint": {"id": "c1", "channel_versions": {"m": "1"}},
        "blobs": [{"channel": "m", "version": "1", "type": "bytes", "data": blob}]}),
    )
    .await;
    app.stop().await;

    let app = TestApp::start(db.config()).await;
    assert_eq!(
        app.get("/store/items?namespace=users.u1&key=fact").await.1["value"],
        json!({"likes": "tea"})
    );
    assert_eq!(
        app.get(&format!("/threads/{id}/state")).await.1["values"],
        json!({"notes": ["hello"]})
    );
    assert_eq!(
        app.get("/threads/raw/checkpoints/latest").await.1["blobs"][0]["data"],
        json!(blob)
    );
    app.stop().await;
}

async fn an_exhausted_pool_answers_503_with_retry_after(kind: Kind) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let mut config = db.config();
    // one pooled connection (on Postgres a second one listens for wake-ups)
    config.pool_max = if kind == Kind::Postgres { 2 } else { 1 };
    config.pool_timeout_ms = 1;
    let app = TestApp::start(config).await;
    let requests = (0..100).map(|i| {
        let req = app
            .client
            .post(app.url("/store/items/search"))
            .json(&json!({"namespace_prefix": ["x", format!("{i}")]}));
        async move { req.send().await.unwrap() }
    });
    let responses = futures_util::future::join_all(requests).await;
    let mut unavailable = 0;
    for r in responses {
        match r.status().as_u16() {
            200 => {}
            503 => {
                unavailable += 1;
                assert_eq!(r.headers()["retry-after"], "1");
                let body: serde_json::Value = r.json().await.unwrap();
                assert!(body["detail"].as_str().unwrap().contains("unavailable"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        unavailable > 0,
        "100 concurrent requests on one connection with a 1 ms wait: some must be turned away"
    );
    app.stop().await;
}

#[actix_web::test]
async fn postgres_connections_never_exceed_the_pool_and_are_closed_on_stop() {
    let Some(db) = TestDb::new(Kind::Postgres).await else {
        return;
    };
    let mut config = db.config();
    config.pool_max = 4;
    config.pool_timeout_ms = 2000;
    let app = TestApp::start(config).await;
    let (_, t) = app.post("/threads", json!({})).await;
    let thread = t["thread_id"].as_str().unwrap().to_string();

    let peak = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, done) = (peak.clone(), done.clone());
        let name = db.name.clone();
        actix_web::rt::spawn(async move {
            let admin = crate::helpers::pg_admin("postgres").await.unwrap();
            while !done.load(Ordering::SeqCst) {
                let n: i64 = admin
                    .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'mnemo'", &[&name])
                    .await
                    .unwrap()
                    .get(0);
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let requests = (0..200).map(|i| {
        let c = &app.client;
        let req = match i % 5 {
            0 => c
                .put(app.url("/store/items"))
                .json(&json!({"namespace": ["load"], "key": format!("k{i}"), "value": {"i": i}})),
            1 => c.get(app.url(&format!("/store/items?namespace=load&key=k{}", i - 1))),
            2 => c
                .post(app.url(&format!("/threads/{thread}/state")))
                .json(&json!({"values": {"i": i}})),
            3 => c
                .post(app.url(&format!("/threads/{thread}/history")))
                .json(&json!({"limit": 10})),
            _ => c
                .post(app.url("/threads/search"))
                .json(&json!({"limit": 10})),
        };
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(requests).await;
    done.store(true, Ordering::SeqCst);
    watcher.await.unwrap();

    for s in &statuses {
        assert!((200..300).contains(s) || *s == 503, "status {s}");
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=4).contains(&peak), "peak connections {peak}");
    app.stop().await;
    assert_eq!(
        db.pg_connections_after_stop().await,
        0,
        "no connection left right after stop"
    );
}

#[actix_web::test]
async fn two_servers_starting_together_on_an_empty_postgres_both_come_up() {
    let Some(db) = TestDb::new(Kind::Postgres).await else {
        return;
    };
    let (a, b) = futures_util::future::join(
        TestApp::try_start(db.config()),
        TestApp::try_start(db.config()),
    )
    .await;
    let (a, b) = (a.expect("first server"), b.expect("second server"));
    assert_eq!(a.get("/ready").await.0, 200);
    assert_eq!(b.get("/ready").await.0, 200);
    a.put(
        "/store/items",
        json!({"namespace": ["x"], "key": "k", "value": {"v": 1}}),
    )
    .await;
    assert_eq!(
        b.get("/store/items?namespace=x&key=k").await.1["value"],
        json!({"v": 1})
    );
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn ready_is_503_when_postgres_goes_away_and_health_still_answers() {
    let Some(db) = TestDb::new(Kind::Postgres).await else {
        return;
    };
    let app = TestApp::start(db.config()).await;
    assert_eq!(app.get("/ready").await.0, 200);
    let admin = crate::helpers::pg_admin("postgres").await.unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db.name))
        .await
        .unwrap();
    let resp = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(app.get("/health").await.0, 200);
    app.stop().await;
}
