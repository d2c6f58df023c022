use serde_json::json;

use crate::both_backends;
use crate::helpers::{Kind, spawn_app};

both_backends!(
    ok_info_and_health_answer,
    ready_reports_the_pool,
    unknown_routes_are_json_404,
    metrics_count_requests_and_show_the_pool,
);

async fn ok_info_and_health_answer(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    assert_eq!(app.get("/ok").await, (200, json!({"ok": true})));
    let (s, info) = app.get("/info").await;
    assert_eq!(s, 200);
    assert!(info["version"].is_string());
    assert_eq!(app.get("/health").await, (200, json!({"status": "ok"})));
    app.stop().await;
}

async fn ready_reports_the_pool(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let (s, ready) = app.get("/ready").await;
    assert_eq!(s, 200);
    assert_eq!(
        ready["backend"],
        if kind == Kind::Postgres {
            "postgres"
        } else {
            "sqlite"
        }
    );
    // on Postgres one of the 8 connections listens for wake-ups, outside the pool
    let pool_max = if kind == Kind::Postgres { 7 } else { 8 };
    assert_eq!(ready["pool"]["max_size"], pool_max);
    assert!(ready["pool"]["size"].as_u64().unwrap() >= 1);
    assert!(ready["pool"]["waiting"].is_u64());
    app.stop().await;
}

async fn unknown_routes_are_json_404(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let (s, b) = app.get("/no/such/route").await;
    assert_eq!(s, 404);
    assert!(b["detail"].is_string());
    app.stop().await;
}

#[test]
fn database_urls_are_redacted_for_logs() {
    use mnemo::config::redact_url;
    assert_eq!(
        redact_url("postgres://u:secret@h:5432/db"),
        "postgres://u:***@h:5432/db"
    );
    assert_eq!(
        redact_url("postgres://u@h/db?password=x"),
        "postgres://u@h/db?***"
    );
    assert_eq!(redact_url("sqlite://mnemo.db"), "sqlite://mnemo.db");
    assert_eq!(
        redact_url("postgres://u:pa/ss@w@h/db"),
        "postgres://u:***@h/db"
    );
}

async fn metrics_count_requests_and_show_the_pool(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    for _ in 0..3 {
        app.get("/ok").await;
    }
    app.get("/no/such/route").await;
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} in\n{text}"))
    };
    assert!(value("mnemo_http_requests_total{status=\"2xx\"}") >= 3.0);
    assert!(value("mnemo_http_requests_total{status=\"4xx\"}") >= 1.0);
    let pool_max = if kind == Kind::Postgres { 7.0 } else { 8.0 };
    assert_eq!(value("mnemo_pool_max_size{"), pool_max);
    app.stop().await;
}
