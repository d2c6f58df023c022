use serde_json::json;

use crate::both_backends;
use crate::helpers::{Kind, spawn_app};

both_backends!(
    one_system_assistant_per_graph,
    assistant_ids_are_uuids,
    browsers_get_cors_headers
);

/// The reference server's id for the `agent` graph's assistant: clients that stored it keep working.
const AGENT_ID: &str = "fe096781-5601-53d2-b2f6-0d3403f7e9ca";

async fn one_system_assistant_per_graph(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let resp = app
        .client
        .post(app.url("/assistants/search"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-pagination-total"], "2");
    let (s, all) = crate::helpers::read(resp).await;
    assert_eq!(s, 200);
    let graphs: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["graph_id"].as_str().unwrap())
        .collect();
    assert_eq!(graphs, vec!["agent", "legacy"]);
    assert_eq!(all[0]["assistant_id"], AGENT_ID);
    assert_eq!(all[0]["metadata"], json!({"created_by": "system"}));

    let (_, agent) = app
        .post("/assistants/search", json!({"graph_id": "agent"}))
        .await;
    assert_eq!(agent.as_array().unwrap().len(), 1);
    let (_, system) = app
        .post(
            "/assistants/search",
            json!({"metadata": {"created_by": "system"}, "limit": 1}),
        )
        .await;
    assert_eq!(system.as_array().unwrap().len(), 1);
    let (_, none) = app
        .post(
            "/assistants/search",
            json!({"metadata": {"created_by": "user"}}),
        )
        .await;
    assert_eq!(none, json!([]));
    assert_eq!(
        app.post("/assistants/count", json!({"graph_id": "legacy"}))
            .await
            .1,
        json!(1)
    );
    app.stop().await;
}

async fn assistant_ids_are_uuids(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let (s, a) = app.get(&format!("/assistants/{AGENT_ID}")).await;
    assert_eq!((s, &a["graph_id"]), (200, &json!("agent")));
    let (s, schemas) = app.get(&format!("/assistants/{AGENT_ID}/schemas")).await;
    assert_eq!(s, 200);
    assert_eq!(schemas["graph_id"], "agent");
    assert!(schemas["state_schema"]["properties"]["messages"].is_object());
    let (s, graph) = app.get(&format!("/assistants/{AGENT_ID}/graph")).await;
    assert_eq!(s, 200);
    assert!(
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == "tools")
    );
    let (s, b) = app.get("/assistants/agent").await;
    assert_eq!(
        s, 422,
        "a graph name is not an assistant id here, as on the reference server"
    );
    assert!(b["detail"].as_str().unwrap().contains("UUID"));
    assert_eq!(
        app.get(&format!("/assistants/{}", uuid::Uuid::new_v4()))
            .await
            .0,
        404
    );
    app.stop().await;
}

async fn browsers_get_cors_headers(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/threads/search"))
        .header("Origin", "http://localhost:3000")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type,x-api-key,last-event-id",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for h in ["content-type", "x-api-key", "last-event-id"] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }
    let resp = app
        .client
        .post(app.url("/threads/search"))
        .header("Origin", "http://localhost:3000")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for h in [
        "content-location",
        "location",
        "x-pagination-total",
        "x-pagination-next",
    ] {
        assert!(exposed.contains(h), "{h} in {exposed}");
    }
    app.stop().await;
}

#[test]
fn run_endpoints_will_accept_a_graph_name_or_its_assistant_id() {
    use mnemo::graphs::resolve;
    assert_eq!(resolve("agent").unwrap().id, "agent");
    assert_eq!(resolve(AGENT_ID).unwrap().id, "agent");
    assert!(!resolve("legacy").unwrap().memory);
    let err = resolve("does-not-exist").unwrap_err();
    assert!(err.contains("agent, legacy"), "{err}");
}
