//! Input caps (`mnemo::limits`): wide and deep requests get 422 and the server stays up, and
//! whatever mnemo accepts it reads back. Property tests cover the parsers and the body scan.

use mnemo::limits::{
    JsonRefusal, JsonScan, MAX_FILTER_CONDITIONS, MAX_IDS, MAX_JSON_DEPTH, MAX_NAMESPACE_LABELS,
    filter_conditions,
};
use mnemo::model::{FieldFilter, Namespace};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use serde_json::{Map, Value, json};

use crate::both_backends;
use crate::helpers::{Kind, TestApp, read, spawn_app};

both_backends!(
    wide_filters_and_id_lists_are_422_and_the_server_stays_up,
    bodies_nested_past_the_cap_are_422_and_the_cap_itself_reads_back,
    whatever_is_accepted_reads_back,
);

/// Sends raw JSON text.
async fn send_raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: String,
) -> (u16, Value) {
    read(
        app.client
            .request(method, app.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request"),
    )
    .await
}

fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

async fn wide_filters_and_id_lists_are_422_and_the_server_stays_up(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let zeros = vec![0; 30_000];
    let many_keys: Map<String, Value> = (0..30_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let fields: Map<String, Value> = (0..15_000).map(|i| (format!("f{i}"), json!(i))).collect();
    let ids: Vec<String> = (0..40_000).map(|i| format!("{i:08}")).collect();
    let cases = [
        ("/threads/search", json!({"metadata": {"a": zeros}})),
        ("/threads/search", json!({"metadata": many_keys.clone()})),
        ("/threads/search", json!({"values": many_keys})),
        ("/threads/count", json!({"metadata": {"a": zeros}})),
        ("/store/items/search", json!({"filter": fields})),
        ("/threads/prune", json!({"thread_ids": ids})),
        ("/threads/search", json!({"ids": ids})),
        ("/checkpoints/delete_for_runs", json!({"run_ids": ids})),
        (
            "/runs/cancel",
            json!({"thread_id": "00000000-0000-0000-0000-000000000000", "run_ids": ids}),
        ),
        ("/assistants/search", json!({"metadata": {"a": zeros}})),
        ("/store/namespaces", json!({"prefix": vec!["a"; 40]})),
    ];
    for (path, body) in cases {
        let (s, b) = app.post(path, body).await;
        assert_eq!(s, 422, "{path}: {b}");
        assert!(
            b["detail"]
                .as_str()
                .is_some_and(|d| d.contains("at most") || d.contains("more than")),
            "{path}: {b}"
        );
    }
    let (s, b) = app
        .put(
            "/store/items",
            json!({"namespace": vec!["a"; 40], "key": "k", "value": {}}),
        )
        .await;
    assert_eq!(s, 422, "{b}");

    // the caps themselves are accepted
    let thread = app.post("/threads", json!({})).await.1;
    let tid = thread["thread_id"].as_str().expect("thread id").to_string();
    let at_cap: Map<String, Value> = (0..MAX_FILTER_CONDITIONS)
        .map(|i| (format!("k{i}"), json!(i)))
        .collect();
    let (s, b) = app
        .post("/threads/search", json!({"metadata": at_cap}))
        .await;
    assert_eq!(s, 200, "{b}");
    let mut ids: Vec<String> = (1..MAX_IDS).map(|i| format!("{i:08}")).collect();
    ids.push(tid.clone());
    let (s, b) = app.post("/threads/search", json!({"ids": ids})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b.as_array().map(Vec::len),
        Some(1),
        "the one real id is found"
    );
    let (s, b) = app.post("/threads/prune", json!({"thread_ids": ids})).await;
    assert_eq!((s, b["pruned_count"].clone()), (200, json!(1)), "{b}");
    let (s, _) = app.get("/ok").await;
    assert_eq!(s, 200, "the server is alive");
}

async fn bodies_nested_past_the_cap_are_422_and_the_cap_itself_reads_back(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    // 127 levels: what serde_json itself would accept, and what used to be stored unreadable
    let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
    let (s, b) = send_raw(
        &app,
        reqwest::Method::POST,
        "/threads",
        format!(r#"{{"metadata": {{"m": {deep}}}}}"#),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b["detail"].as_str().is_some_and(|d| d.contains("deeper")),
        "{b}"
    );
    let thread = app.post("/threads", json!({})).await.1;
    let tid = thread["thread_id"].as_str().expect("thread id").to_string();
    let (s, b) = send_raw(
        &app,
        reqwest::Method::POST,
        &format!("/threads/{tid}/runs/wait"),
        format!(r#"{{"assistant_id": "agent", "input": {{"messages": {deep}}}}}"#),
    )
    .await;
    assert_eq!(s, 422, "{b}");

    // a run input at the cap runs, and its thread's history reads back (stored deeper)
    let input = nested(MAX_JSON_DEPTH - 4);
    let (s, b) = app
        .post(
            &format!("/threads/{tid}/runs/wait"),
            json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi", "extra": input}]}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.get(&format!("/threads/{tid}/history?limit=10")).await;
    assert_eq!(s, 200, "history stays readable: {b}");
    assert_eq!(b[0]["values"]["messages"][0]["extra"], input);

    // metadata at exactly the cap is stored and read back
    let at_cap = nested(MAX_JSON_DEPTH - 2);
    let (s, b) = app
        .post("/threads", json!({"metadata": {"m": at_cap}}))
        .await;
    assert_eq!(s, 200, "{b}");
    let id = b["thread_id"].as_str().expect("thread id");
    let (s, b) = app.get(&format!("/threads/{id}")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["metadata"]["m"], at_cap);
    // one more level is refused
    let (s, b) = app
        .post(
            "/threads",
            json!({"metadata": {"m": nested(MAX_JSON_DEPTH - 1)}}),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    // NUL in a key or a value, in any body
    for body in [
        r#"{"metadata": {"a\u0000": 1}}"#,
        r#"{"metadata": {"a": "\u0000"}}"#,
    ] {
        let (s, b) = send_raw(&app, reqwest::Method::POST, "/threads", body.into()).await;
        assert_eq!(s, 422, "{b}");
    }
    // also where the body is read as raw bytes (a thread copy's optional body)
    let (s, b) = send_raw(
        &app,
        reqwest::Method::POST,
        &format!("/threads/{tid}/copy"),
        r#"{"thread_id": "a\u0000"}"#.into(),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b["detail"].as_str().is_some_and(|d| d.contains("NUL")),
        "{b}"
    );
    let (s, _) = app.get("/ok").await;
    assert_eq!(s, 200);
}

/// JSON values of any shape: scalars (strings with any characters, NUL included), arrays and
/// objects, optionally wrapped in enough levels to cross the depth cap.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[a-z\u{0}\"\\\\]{0,6}".prop_map(Value::from),
    ];
    let tree = leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\u{0}é]{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    (tree, 0usize..(MAX_JSON_DEPTH + 8)).prop_map(|(v, wrap)| {
        let mut v = v;
        for i in 0..wrap {
            v = if i % 2 == 0 {
                json!([v])
            } else {
                json!({"w": v})
            };
        }
        v
    })
}

/// Levels of arrays and objects (`1` is 0, `[]` and `[1]` are 1).
fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => {
                max = max.max(d + 1);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            Value::Object(o) => {
                max = max.max(d + 1);
                stack.extend(o.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    max
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The same numbers compare equal whatever their spelling (`1.0` and `1`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

async fn whatever_is_accepted_reads_back(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let mut runner = TestRunner::new(PropConfig {
        failure_persistence: None,
        ..PropConfig::default()
    });
    let strategy = json_value();
    let mut accepted = 0;
    for case in 0..96 {
        let v = strategy.new_tree(&mut runner).expect("a value").current();
        // the body is {"namespace": [..], "key": .., "value": {"v": v}}: two levels above v
        let fits = depth(&v) + 2 <= MAX_JSON_DEPTH && !has_nul(&v);
        let (s, b) = app
            .put(
                "/store/items",
                json!({"namespace": ["p"], "key": format!("k{case}"), "value": {"v": v}}),
            )
            .await;
        if !fits {
            assert_eq!(s, 422, "refused: {b} for {v}");
            continue;
        }
        assert_eq!(s, 204, "accepted: {b} for {v}");
        accepted += 1;
        let (s, b) = app
            .get(&format!("/store/items?namespace=p&key=k{case}"))
            .await;
        assert_eq!(s, 200, "{b}");
        assert!(
            same(&b["value"]["v"], &v),
            "read back {} for {v}",
            b["value"]["v"]
        );

        let (s, b) = app.post("/threads", json!({"metadata": {"v": v}})).await;
        assert_eq!(s, 200, "{b} for {v}");
        let id = b["thread_id"].as_str().expect("thread id").to_string();
        let (s, b) = app.get(&format!("/threads/{id}")).await;
        assert_eq!(s, 200, "{b}");
        assert!(
            same(&b["metadata"]["v"], &v),
            "read back {} for {v}",
            b["metadata"]["v"]
        );
    }
    assert!(
        accepted > 10,
        "the strategy makes acceptable values too ({accepted})"
    );
}

proptest! {
    #![proptest_config(PropConfig { failure_persistence: None, ..PropConfig::with_cases(256) })]

    /// The streaming scan refuses exactly the texts nested past the cap or holding NUL, however
    /// the text is cut into chunks.
    #[test]
    fn the_body_scan_agrees_with_the_parsed_value(v in json_value(), cuts in prop::collection::vec(any::<usize>(), 0..4)) {
        let text = v.to_string();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
        points.sort();
        let mut scan = JsonScan::new(MAX_JSON_DEPTH);
        let mut verdict = Ok(());
        let mut from = 0;
        for to in points.into_iter().chain([text.len()]) {
            verdict = verdict.and_then(|()| scan.feed(&text.as_bytes()[from..to]));
            from = to;
        }
        if depth(&v) > MAX_JSON_DEPTH {
            // refused, for its depth or for a NUL met on the way down
            prop_assert!(verdict.is_err());
        } else if has_nul(&v) {
            prop_assert_eq!(verdict, Err(JsonRefusal::NulInString));
        } else {
            prop_assert_eq!(verdict, Ok(()));
        }
    }

    /// A store filter parses into at most the cap of conditions, or is refused; never panics.
    #[test]
    fn store_filters_parse_within_the_cap(v in json_value()) {
        if let Ok(conditions) = FieldFilter::parse_all(&v) {
            prop_assert!(conditions.len() <= MAX_FILTER_CONDITIONS);
            prop_assert!(v.is_null() || v.is_object());
        }
    }

    /// Counting a containment filter's conditions does not recurse and counts every leaf.
    #[test]
    fn filter_conditions_count_leaves(v in json_value()) {
        fn leaves(v: &Value) -> usize {
            match v {
                Value::Object(o) if o.is_empty() => 1,
                Value::Object(o) => o.values().map(leaves).sum(),
                Value::Array(items) => 1 + items.len(),
                _ => 1,
            }
        }
        prop_assert_eq!(filter_conditions(&v), leaves(&v));
    }

    /// Namespaces: accepted iff every label is non-empty, holds no `.`, and there are at most
    /// the cap of them; an accepted one round-trips through its dotted form.
    #[test]
    fn namespaces_parse_and_round_trip(labels in prop::collection::vec("[a-z.é*]{0,3}", 0..40)) {
        let valid = !labels.is_empty()
            && labels.len() <= MAX_NAMESPACE_LABELS
            && labels.iter().all(|l| !l.is_empty() && !l.contains('.'));
        match Namespace::parse(labels.clone(), false) {
            Ok(ns) => {
                prop_assert!(valid);
                prop_assert_eq!(Namespace::parse_dotted(&ns.prefix()), Ok(ns.clone()));
                prop_assert_eq!(ns.labels(), &labels[..]);
            }
            Err(_) => prop_assert!(!valid),
        }
    }
}
