//! Bounded memory: the byte budget for request bodies in flight, pages bounded by bytes, and
//! opaque JSON that passes through as text and reads back as the same document.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both_backends;
use crate::helpers::{Kind, TestApp, TestDb};

const MAX_BODY: usize = 64 * 1024;
const BUDGET: usize = 100 * 1024;

async fn app_with(
    kind: Kind,
    tune: impl FnOnce(&mut mnemo::config::Config),
) -> Option<(TestApp, TestDb)> {
    let db = TestDb::new(kind).await?;
    let mut config = db.config();
    tune(&mut config);
    let app = TestApp::start(config).await;
    Some((app, db))
}

/// A store put whose JSON body is `len` bytes long.
fn put_body(len: usize) -> Vec<u8> {
    let head = br#"{"namespace":["m"],"key":"k","value":{"pad":""#;
    let tail = br#""}}"#;
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

fn port(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

/// Opens a connection and sends a store put's headers announcing `len` bytes, and only the
/// first bytes of its body: the server holds the request, its body in flight.
async fn hold_body(app: &TestApp, len: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port(app))).await.unwrap();
    let head = format!(
        "PUT /store/items HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&put_body(len)[..100]).await.unwrap();
    s.flush().await.unwrap();
    s
}

/// The status line's code of the answer read from `s`.
async fn status_of(s: &mut TcpStream) -> (u16, String) {
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    // bounded: the answer's head fits in the buffer; a closed connection ends the loop
    while got < buf.len() {
        let n = s.read(&mut buf[got..]).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf[..got]).to_string();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

async fn put_raw(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.client
        .put(app.url("/store/items"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn bodies_beyond_the_budget_get_503_and_the_budget_comes_back() {
    let (app, _db) = app_with(Kind::Sqlite, |c| {
        c.max_body_bytes = MAX_BODY;
        c.body_budget_bytes = BUDGET;
    })
    .await
    .unwrap();
    // one body of 60 KB in flight leaves 40 KB: a second 60 KB body is refused at once
    let mut held = hold_body(&app, 60_000).await;
    // the held request is charged once the server has its head: wait for that, bounded
    let mut refused = None;
    for _ in 0..50 {
        let resp = put_raw(&app, put_body(60_000)).await;
        if resp.status().as_u16() == 503 {
            refused = Some(resp);
            break;
        }
        // a probe charged before the held head arrived has the held request refused: hold again
        let mut answer = [0u8; 64];
        if matches!(held.try_read(&mut answer), Ok(n) if n > 0) {
            held = hold_body(&app, 60_000).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.expect("a body beyond the budget is refused");
    assert!(refused.headers().contains_key("retry-after"));
    let detail: Value = refused.json().await.unwrap();
    assert!(detail["detail"].as_str().unwrap().contains("retry later"));
    // a small body still fits
    let resp = put_raw(&app, put_body(20_000)).await;
    assert_eq!(resp.status().as_u16(), 204);
    // a chunked body is charged as it arrives: refused when a chunk does not fit
    let mut chunked = TcpStream::connect(("127.0.0.1", port(&app))).await.unwrap();
    chunked
        .write_all(b"PUT /store/items HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let body = put_body(50_000);
    let _ = chunked
        .write_all(format!("{:x}\r\n", body.len()).as_bytes())
        .await;
    let _ = chunked.write_all(&body).await;
    let _ = chunked.write_all(b"\r\n0\r\n\r\n").await;
    let (code, text) = status_of(&mut chunked).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after"), "{text}");
    drop(chunked);

    // the held body completes: its request is answered, and its charge given back
    let rest = &put_body(60_000)[100..];
    held.write_all(rest).await.unwrap();
    let (code, text) = status_of(&mut held).await;
    assert_eq!(code, 204, "{text}");
    let resp = put_raw(&app, put_body(60_000)).await;
    assert_eq!(resp.status().as_u16(), 204);
    // twice in a row: the second was charged and given back too
    let resp = put_raw(&app, put_body(60_000)).await;
    assert_eq!(resp.status().as_u16(), 204);

    // a client that leaves mid-body gives its charge back as well
    let held = hold_body(&app, 60_000).await;
    drop(held);
    let mut ok = false;
    for _ in 0..50 {
        if put_raw(&app, put_body(60_000)).await.status().as_u16() == 204 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the charge of an abandoned body comes back");
    // bodies over the largest accepted size are 413, not charged
    let resp = put_raw(&app, put_body(MAX_BODY + 1)).await;
    assert_eq!(resp.status().as_u16(), 413);
    app.stop().await;
}

#[actix_web::test]
async fn the_budget_is_at_least_the_largest_body() {
    let (app, _db) = app_with(Kind::Sqlite, |c| {
        c.max_body_bytes = MAX_BODY;
        c.body_budget_bytes = 1;
    })
    .await
    .unwrap();
    let resp = put_raw(&app, put_body(MAX_BODY)).await;
    assert_eq!(resp.status().as_u16(), 204);
    app.stop().await;
}

/// Six checkpoints of about 60 KB each (30 KB of values, repeated in the metadata's `writes`).
async fn big_history(app: &TestApp) -> String {
    let (s, t) = app.post("/threads", json!({})).await;
    assert_eq!(s, 200);
    let id = t["thread_id"].as_str().unwrap().to_string();
    for i in 0..6 {
        let pad = format!("{i}{}", "y".repeat(30_000));
        let (s, _) = app
            .post(
                &format!("/threads/{id}/state"),
                json!({ "values": { "pad": pad, "i": i } }),
            )
            .await;
        assert_eq!(s, 200);
    }
    id
}

async fn history_pages(kind: Kind) {
    let Some((app, _db)) = app_with(kind, |c| c.page_max_bytes = 150_000).await else {
        return;
    };
    let id = big_history(&app).await;
    // 150 KB hold two of them: a page of `limit` 10 stops at two
    let (s, page) = app.get(&format!("/threads/{id}/history?limit=10")).await;
    assert_eq!(s, 200);
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 2, "the page stops at its byte bound");
    assert_eq!(page[0]["values"]["i"], 5);
    assert_eq!(page[1]["values"]["i"], 4);
    // the rest follows with `before`, every checkpoint once, newest first
    let mut seen: Vec<i64> = page
        .iter()
        .map(|s| s["values"]["i"].as_i64().unwrap())
        .collect();
    let mut before = page[1]["checkpoint_id"].as_str().unwrap().to_string();
    for _ in 0..10 {
        let (s, next) = app
            .post(
                &format!("/threads/{id}/history"),
                json!({ "limit": 10, "before": before }),
            )
            .await;
        assert_eq!(s, 200);
        let next = next.as_array().unwrap();
        if next.is_empty() {
            break;
        }
        assert!(next.len() <= 2);
        seen.extend(next.iter().map(|s| s["values"]["i"].as_i64().unwrap()));
        before = next.last().unwrap()["checkpoint_id"]
            .as_str()
            .unwrap()
            .to_string();
    }
    assert_eq!(seen, vec![5, 4, 3, 2, 1, 0]);
    // the checkpointer's search is bounded the same way
    let (s, found) = app
        .post(
            &format!("/threads/{id}/checkpoints/search"),
            json!({ "limit": 100 }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(found.as_array().unwrap().len(), 2);
    // a small limit is still honoured
    let (_, one) = app.get(&format!("/threads/{id}/history?limit=1")).await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn a_page_holds_at_least_one_row(kind: Kind) {
    let Some((app, _db)) = app_with(kind, |c| c.page_max_bytes = 1).await else {
        return;
    };
    let id = big_history(&app).await;
    let (_, page) = app.get(&format!("/threads/{id}/history?limit=10")).await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["values"]["i"], 5);
    app.stop().await;
}

async fn thread_search_pages(kind: Kind) {
    let Some((app, _db)) = app_with(kind, |c| c.page_max_bytes = 100_000).await else {
        return;
    };
    for i in 0..5 {
        let (s, _) = app
            .post(
                "/threads",
                json!({ "metadata": { "pad": "z".repeat(40_000), "i": i } }),
            )
            .await;
        assert_eq!(s, 200);
    }
    let resp = app
        .client
        .post(app.url("/threads/search"))
        .json(&json!({ "limit": 10, "sort_by": "created_at", "sort_order": "asc" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-pagination-total"], "5");
    assert_eq!(resp.headers()["x-pagination-next"], "2");
    let page: Value = resp.json().await.unwrap();
    let got: Vec<i64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["metadata"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![0, 1]);
    let (_, rest) = app
        .post(
            "/threads/search",
            json!({ "limit": 10, "offset": 2, "sort_by": "created_at", "sort_order": "asc" }),
        )
        .await;
    let got: Vec<i64> = rest
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["metadata"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![2, 3]);
    app.stop().await;
}

/// Values sent as text, exactly as a client may write them.
const DOCUMENTS: &[&str] = &[
    r#"{ "a" : [1, -2, 3.5, 1e300, -0.0, 18446744073709551615, -9223372036854775808] ,
        "s": "quote \" backslash \\ slash \/ ctl \b\f\n\r\t é \u00e9 \ud83d\ude00 中文",
        "nested": {"x": {"y": {"z": [[], {}, null, true, false]}}}, "empty": "" }"#,
    r#"{"big": 12345678901234567890123, "small": 1.0e-300, "int_float": 2.0}"#,
    r#"{"kind":"dup","kind":"last","obj":{"k":1,"k":{"deep":2}}}"#,
];

async fn raw_json_reads_back(kind: Kind) {
    let Some((app, _db)) = app_with(kind, |_| {}).await else {
        return;
    };
    for (i, doc) in DOCUMENTS.iter().enumerate() {
        let body = format!(r#"{{"namespace":["raw"],"key":"k{i}","value":{doc}}}"#);
        let resp = put_raw(&app, body.into_bytes()).await;
        assert_eq!(resp.status().as_u16(), 204, "{doc}");
        let (s, item) = app
            .get(&format!("/store/items?namespace=raw&key=k{i}"))
            .await;
        assert_eq!(s, 200);
        let expected: Value = serde_json::from_str(doc).unwrap();
        assert_eq!(item["value"], expected, "{doc}");
    }
    // a key given twice is the last one everywhere: reads and filters agree
    let (s, found) = app
        .post(
            "/store/items/search",
            json!({ "namespace_prefix": ["raw"], "filter": { "kind": "last" } }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let (_, found) = app
        .post(
            "/store/items/search",
            json!({ "namespace_prefix": ["raw"], "filter": { "kind": "dup" } }),
        )
        .await;
    assert_eq!(found["items"].as_array().unwrap().len(), 0);
    // what a stored document may not be is refused, and nothing is stored
    for (key, value) in [
        ("nul", r#"{"s": "a\u0000b"}"#),
        ("nulkey", r#"{"a\u0000": 1}"#),
        ("array", r#"[1, 2]"#),
        ("string", r#""text""#),
        ("surrogate", r#"{"s": "\ud800"}"#),
        ("huge", r#"{"n": 1e400}"#),
    ] {
        let body = format!(r#"{{"namespace":["raw"],"key":"{key}","value":{value}}}"#);
        let status = put_raw(&app, body.into_bytes()).await.status().as_u16();
        assert!(status == 422 || status == 400, "{value}: {status}");
        let (_, item) = app
            .get(&format!("/store/items?namespace=raw&key={key}"))
            .await;
        assert_eq!(item, Value::Null, "{value}");
    }
    // an escaped backslash before u0000 is not a NUL
    let body = r#"{"namespace":["raw"],"key":"bs","value":{"s":"\\u0000"}}"#;
    assert_eq!(put_raw(&app, body.into()).await.status().as_u16(), 204);
    let (_, item) = app.get("/store/items?namespace=raw&key=bs").await;
    assert_eq!(item["value"]["s"], "\\u0000");
    app.stop().await;
}

both_backends!(
    history_pages,
    a_page_holds_at_least_one_row,
    thread_search_pages,
    raw_json_reads_back,
    a_stalled_stream_reader_is_let_go_and_the_run_goes_on,
);

/// A client that stops reading a stream while the model streams megabytes: mnemo lets the
/// stream go once the reader is 1024 events behind (it does not buffer the rest for it), the
/// run still ends `success`, and the stream ends instead of hanging.
async fn a_stalled_stream_reader_is_let_go_and_the_run_goes_on(kind: Kind) {
    const DELTAS: usize = 4000;
    let word = format!("{} ", "x".repeat(4096));
    let deltas = (0..DELTAS)
        .map(|_| json!({"role": "assistant", "content": word}))
        .collect();
    let fake = crate::fake_llm::FakeLlm::start(vec![crate::fake_llm::Reply::Stream(
        deltas,
        Duration::ZERO,
    )])
    .await;
    let Some((app, _db)) = crate::models::app_with_model(kind, &fake).await else {
        return;
    };
    let (_, thread) = app.post("/threads", json!({})).await;
    let tid = thread["thread_id"].as_str().unwrap().to_string();
    let resp = app
        .client
        .post(app.url(&format!("/threads/{tid}/runs/stream")))
        .json(&json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "talk"}]}, "stream_mode": ["messages-tuple"]}))
        .send()
        .await
        .unwrap();
    let mut body = resp;
    let mut text = String::new();
    if let Ok(Some(first)) = body.chunk().await {
        text.push_str(&String::from_utf8_lossy(&first));
    }
    // the reader stalls until the run has ended
    let mut ended = false;
    for _ in 0..600 {
        let (_, runs) = app.get(&format!("/threads/{tid}/runs")).await;
        if runs[0]["status"] != "running" && runs[0]["status"] != "pending" {
            assert_eq!(runs[0]["status"], "success", "{runs}");
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended, "the run ended while its reader stalled");
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(chunk)) = body.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(rest.is_ok(), "the stream ends");
    let received = text.matches("event: messages").count();
    assert!(
        received < DELTAS,
        "the stalled reader was let go: {received} of {DELTAS} chunks"
    );
}
