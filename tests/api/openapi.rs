//! The API describes itself: `/openapi.json` lists every route `src/routes/mod.rs` registers,
//! with mnemo's error shape and its security schemes, and `/docs` serves the reference page,
//! both without credentials on a server that requires them.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Kind, TestApp, TestDb};

both_backends!(
    the_spec_lists_every_registered_route,
    the_spec_describes_errors_and_credentials,
    docs_serve_the_reference_page_offline,
    nul_characters_are_refused_never_a_server_error,
);

/// `(METHOD, path)` of every service `src/routes/mod.rs` registers: each `.service(module::fn)`
/// is looked up in its module's source, where the route attribute above `fn` names both.
fn registered_routes() -> BTreeSet<(String, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let routes_mod = std::fs::read_to_string(format!("{root}/src/routes/mod.rs")).unwrap();
    let mut out = BTreeSet::new();
    for line in routes_mod.lines() {
        let Some((_, rest)) = line.split_once(".service(") else {
            continue;
        };
        let target = rest.split(')').next().unwrap();
        let (module, handler) = target.rsplit_once("::").unwrap();
        let file = match module.strip_prefix("crate::") {
            Some(m) => format!("{root}/src/{}.rs", m.replace("::", "/")),
            None => format!("{root}/src/routes/{module}.rs"),
        };
        let src = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let lines: Vec<&str> = src.lines().collect();
        let at = lines
            .iter()
            .position(|l| {
                l.trim_start()
                    .starts_with(&format!("pub async fn {handler}("))
            })
            .unwrap_or_else(|| panic!("no handler {handler} in {file}"));
        // the nearest actix route attribute above the handler
        let route = lines[..at]
            .iter()
            .rev()
            .take_while(|l| !l.trim().is_empty() && !l.trim_start().starts_with('}'))
            .find_map(|l| {
                let l = l.trim();
                let (attr, rest) = l.strip_prefix("#[")?.split_once("(\"")?;
                let method = attr.strip_suffix("_route").unwrap_or(attr);
                let method = match method {
                    "get" | "post" | "put" | "patch" | "delete" => method.to_uppercase(),
                    _ => return None,
                };
                Some((method, rest.split('"').next()?.to_string()))
            })
            .unwrap_or_else(|| panic!("no route attribute above {handler} in {file}"));
        // `{file:.*}` (a segment's pattern) is `{file}` in OpenAPI
        let path = route
            .1
            .split('/')
            .map(|seg| match seg.split_once(':') {
                Some((name, _)) if seg.starts_with('{') => format!("{name}}}"),
                _ => seg.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        out.insert((route.0, path));
    }
    assert!(out.len() > 50, "parsed too few routes: {out:?}");
    out
}

/// `(METHOD, path)` of every operation in the spec.
fn spec_routes(spec: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// A mnemo that requires API keys.
async fn spawn_with_keys(kind: Kind) -> Option<(TestApp, TestDb)> {
    let db = TestDb::new(kind).await?;
    let mut config = db.config();
    config.auth = Some("api_key".into());
    let app = TestApp::start(config).await;
    Some((app, db))
}

/// `/openapi.json`, fetched without credentials.
async fn spec(app: &TestApp) -> Value {
    let resp = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    resp.json().await.unwrap()
}

async fn the_spec_lists_every_registered_route(kind: Kind) {
    let Some((app, _db)) = spawn_with_keys(kind).await else {
        return;
    };
    let spec = spec(&app).await;
    assert_eq!(spec["openapi"], "3.1.0");
    let registered = registered_routes();
    let described = spec_routes(&spec);
    let undescribed: Vec<_> = registered.difference(&described).collect();
    let unserved: Vec<_> = described.difference(&registered).collect();
    assert!(
        undescribed.is_empty() && unserved.is_empty(),
        "routes missing from the spec: {undescribed:?}; operations no route serves: {unserved:?}"
    );
    // operation ids are unique (handler names repeat across modules)
    let mut ids = BTreeSet::new();
    for item in spec["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        }
    }
}

async fn the_spec_describes_errors_and_credentials(kind: Kind) {
    let Some((app, _db)) = spawn_with_keys(kind).await else {
        return;
    };
    let spec = spec(&app).await;
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["type"], "apiKey");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "x-api-key");
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
    assert_eq!(
        spec["components"]["schemas"]["ErrorBody"]["required"],
        serde_json::json!(["detail"])
    );
    let public = [
        "/ok",
        "/health",
        "/ready",
        "/info",
        "/openapi.json",
        "/docs",
    ];
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            let is_public = public.contains(&path.as_str()) || path.starts_with("/docs/");
            if is_public {
                // credentials are not needed: the empty requirement
                assert_eq!(op["security"], serde_json::json!([{}]), "{what}");
                // and indeed none is asked for
                let path = path.replace("{file}", "swagger-ui.css");
                let resp = app.client.get(app.url(&path)).send().await.unwrap();
                assert_eq!(resp.status(), 200, "{what} without credentials");
                continue;
            }
            assert!(
                op.get("security").is_none(),
                "{what} uses the global security"
            );
            for status in ["401", "403", "429", "503"] {
                assert!(responses.contains_key(status), "{what} documents {status}");
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(status), "{what} documents {status}");
                }
            }
            if path.contains('{') {
                assert!(responses.contains_key("404"), "{what} documents 404");
            }
            assert!(
                !responses.contains_key("500"),
                "{what}: a 500 is a bug, not an answer"
            );
            // every error answer is {"detail": string}
            for (status, resp) in responses {
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                let resp = match resp.get("$ref").and_then(Value::as_str) {
                    Some(r) => {
                        let name = r.rsplit('/').next().unwrap();
                        &spec["components"]["responses"][name]
                    }
                    None => resp,
                };
                assert_eq!(
                    resp["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{what} {status}"
                );
            }
        }
    }
    // without credentials, an API route answers 401 as documented
    let resp = app.client.get(app.url("/threads/x")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

async fn docs_serve_the_reference_page_offline(kind: Kind) {
    let Some((app, _db)) = spawn_with_keys(kind).await else {
        return;
    };
    for path in ["/docs", "/docs/"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        let page = resp.text().await.unwrap();
        assert!(page.contains("<div id=\"swagger-ui\">"), "{page}");
        // its files resolve under /docs/ wherever the page is served from
        assert!(page.contains("<base href=\"/docs/\""), "{page}");
        // nothing is loaded from another host
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "{page}"
        );
    }
    // the page's files are mnemo's own, and the page reads mnemo's spec
    for (file, kind) in [
        ("swagger-ui.css", "text/css"),
        ("swagger-ui-bundle.js", "javascript"),
    ] {
        let resp = app
            .client
            .get(app.url(&format!("/docs/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{file}");
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.contains(kind), "{file}: {content_type}");
        assert!(resp.bytes().await.unwrap().len() > 1000, "{file}");
    }
    let init = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("\"/openapi.json\""), "{init}");
    let (status, body) = app.get("/docs/no-such-file.js").await;
    assert_eq!(status, 404);
    assert!(body["detail"].is_string(), "{body}");
}

// ---------------------------------------------------------------------------------------------
// What schemathesis found (tests/schema/run), kept as regressions.

/// Postgres cannot store NUL (text, or `\u0000` in JSON) where SQLite can: thread filters and id
/// lists (a 500 on Postgres, found by schemathesis) and NUL in a path or query are refused on both
/// backends, and any other NUL Postgres refuses is a 422, never a 500.
async fn nul_characters_are_refused_never_a_server_error(kind: Kind) {
    let Some((app, _db)) = crate::helpers::spawn_app(kind).await else {
        return;
    };
    let (s, thread) = app.post("/threads", serde_json::json!({})).await;
    assert_eq!(s, 200);
    let thread = thread["thread_id"].as_str().unwrap().to_string();
    for (path, body) in [
        (
            "/threads/count",
            serde_json::json!({"metadata": {"a": "x\u{0}"}}),
        ),
        (
            "/threads/count",
            serde_json::json!({"values": {"k\u{0}": 1}}),
        ),
        (
            "/threads/search",
            serde_json::json!({"metadata": {"a": ["\u{0}"]}}),
        ),
        ("/threads/search", serde_json::json!({"ids": ["a\u{0}"]})),
        (
            "/threads/prune",
            serde_json::json!({"thread_ids": ["a\u{0}"]}),
        ),
    ] {
        let (status, reply) = app.post(path, body.clone()).await;
        assert_eq!(status, 422, "{path} {body}: {reply}");
        assert!(reply["detail"].as_str().unwrap().contains("NUL"), "{reply}");
    }
    // in a path: nothing has that name; in a query: invalid
    for path in ["/threads/a%00b", "/threads/a%00b/state", "/tasks/t%00"] {
        let (status, reply) = app.get(path).await;
        assert_eq!(status, 404, "{path}: {reply}");
    }
    let (status, reply) = app
        .get(&format!("/threads/{thread}/history?before=a%00"))
        .await;
    assert_eq!(status, 422, "{reply}");
    let (status, reply) = app.get("/store/items?namespace=a&key=b%00").await;
    assert_eq!(status, 422, "{reply}");
    // in any JSON body, on both backends alike
    let (status, reply) = app
        .put(
            "/store/items",
            serde_json::json!({"namespace": ["a"], "key": "k\u{0}", "value": {}}),
        )
        .await;
    assert_eq!(status, 422, "{reply}");
    let (status, reply) = app
        .post(
            &format!("/threads/{thread}/checkpoints/search"),
            serde_json::json!({"checkpoint_ns": "\u{0}"}),
        )
        .await;
    assert_eq!(status, 422, "{reply}");
}
