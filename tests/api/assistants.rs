use serde_json::json;

use crate::both_backends;
use crate::fake_llm::{FakeLlm, answer};
use crate::helpers::{Kind, TestApp, TestDb, spawn_app};

both_backends!(
    one_system_assistant_per_graph,
    assistant_ids_are_uuids,
    browsers_get_cors_headers,
    assistants_are_created_changed_in_versions_and_deleted,
    a_run_gets_its_assistants_config_under_its_own,
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
    let mut graphs: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["graph_id"].as_str().unwrap())
        .collect();
    graphs.sort();
    assert_eq!(graphs, vec!["agent", "legacy"]);
    let agent = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["graph_id"] == "agent")
        .unwrap();
    assert_eq!(agent["assistant_id"], AGENT_ID);
    assert_eq!(agent["metadata"], json!({"created_by": "system"}));

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

/// Created, read, changed (each change a version, metadata merged), an earlier version put back,
/// searched, counted and deleted; system assistants never change.
async fn assistants_are_created_changed_in_versions_and_deleted(kind: Kind) {
    let Some((app, _db)) = spawn_app(kind).await else {
        return;
    };
    let (s, made) = app
        .post(
            "/assistants",
            json!({"graph_id": "agent", "name": "terse helper", "description": "short answers",
                   "config": {"configurable": {"system_prompt": "Be terse."}},
                   "metadata": {"team": "a"}}),
        )
        .await;
    assert_eq!(s, 200, "{made}");
    let id = made["assistant_id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(made["version"], 1);
    assert_eq!(made["graph_id"], "agent");
    // configurable and context are kept one and the same (LangGraph reads either)
    assert_eq!(made["context"], json!({"system_prompt": "Be terse."}));
    let (s, both) = app
        .post(
            "/assistants",
            json!({"graph_id": "agent", "config": {"configurable": {"a": 1}}, "context": {"b": 2}}),
        )
        .await;
    assert_eq!(s, 400, "{both}");
    let (s, from_context) = app
        .post(
            "/assistants",
            json!({"graph_id": "agent", "context": {"b": 2}}),
        )
        .await;
    assert_eq!(s, 200, "{from_context}");
    assert_eq!(from_context["config"]["configurable"], json!({"b": 2}));
    let other = from_context["assistant_id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/assistants/{other}")).await.0, 204);
    let (s, got) = app.get(&format!("/assistants/{id}")).await;
    assert_eq!((s, &got), (200, &made));
    let (s, schemas) = app.get(&format!("/assistants/{id}/schemas")).await;
    assert_eq!((s, schemas["graph_id"].as_str()), (200, Some("agent")));
    // mnemo's own graphs have no subgraphs: the drawing with them expanded is the drawing
    let (s, subgraphs) = app
        .get(&format!("/assistants/{id}/subgraphs?recurse=true"))
        .await;
    assert_eq!((s, subgraphs), (200, json!({})));
    let (_, drawing) = app.get(&format!("/assistants/{id}/graph")).await;
    let (s, xray) = app.get(&format!("/assistants/{id}/graph?xray=2")).await;
    assert_eq!((s, xray), (200, drawing));
    let (s, bad) = app.get(&format!("/assistants/{id}/graph?xray=-1")).await;
    assert_eq!(s, 422, "{bad}");

    // a change is a new version, in use; metadata is merged, the rest replaced
    let (s, v2) = app
        .patch(
            &format!("/assistants/{id}"),
            json!({"config": {"configurable": {"system_prompt": "Be very terse."}}, "metadata": {"x": 1}}),
        )
        .await;
    assert_eq!(s, 200, "{v2}");
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["metadata"], json!({"team": "a", "x": 1}));
    assert_eq!(v2["name"], "terse helper");
    assert_eq!(
        v2["config"]["configurable"]["system_prompt"],
        "Be very terse."
    );
    let (s, versions) = app
        .post(&format!("/assistants/{id}/versions"), json!({}))
        .await;
    assert_eq!(s, 200);
    let numbers: Vec<i64> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 1]);
    let (s, back) = app
        .post(&format!("/assistants/{id}/latest"), json!({"version": 1}))
        .await;
    assert_eq!(s, 200, "{back}");
    assert_eq!(back["version"], 1);
    assert_eq!(back["config"]["configurable"]["system_prompt"], "Be terse.");
    let (s, _) = app
        .post(&format!("/assistants/{id}/latest"), json!({"version": 9}))
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post(&format!("/assistants/{id}/latest"), json!({}))
        .await;
    assert_eq!(s, 422);

    // search and count see system assistants and made ones
    let (_, agents) = app
        .post(
            "/assistants/search",
            json!({"graph_id": "agent", "sort_by": "name", "sort_order": "asc"}),
        )
        .await;
    let names: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agent", "terse helper"]);
    let (_, named) = app
        .post(
            "/assistants/search",
            json!({"name": "terse", "select": ["assistant_id", "name"]}),
        )
        .await;
    assert_eq!(named, json!([{"assistant_id": id, "name": "terse helper"}]));
    let (_, n) = app
        .post("/assistants/count", json!({"metadata": {"team": "a"}}))
        .await;
    assert_eq!(n, json!(1));

    // the same id again: 409, or the one there with do_nothing
    let again = json!({"assistant_id": id, "graph_id": "legacy"});
    assert_eq!(app.post("/assistants", again.clone()).await.0, 409);
    let mut quiet = again;
    quiet["if_exists"] = json!("do_nothing");
    let (s, same) = app.post("/assistants", quiet).await;
    assert_eq!((s, same["graph_id"].as_str()), (200, Some("agent")));
    // an unknown graph, a malformed id
    assert_eq!(
        app.post("/assistants", json!({"graph_id": "nope"})).await.0,
        422
    );
    assert_eq!(
        app.post(
            "/assistants",
            json!({"graph_id": "agent", "assistant_id": "x"})
        )
        .await
        .0,
        422
    );
    // system assistants never change
    assert_eq!(
        app.patch(&format!("/assistants/{AGENT_ID}"), json!({"name": "mine"}))
            .await
            .0,
        409
    );
    assert_eq!(app.delete(&format!("/assistants/{AGENT_ID}")).await.0, 409);

    let (s, _) = app.delete(&format!("/assistants/{id}")).await;
    assert_eq!(s, 204);
    assert_eq!(app.get(&format!("/assistants/{id}")).await.0, 404);
    assert_eq!(
        app.post(&format!("/assistants/{id}/versions"), json!({}))
            .await
            .0,
        404
    );
    app.stop().await;
}

/// A run of a made assistant runs its graph with the assistant's config under the run's own:
/// the system prompt, model and temperature reach the model, the run's `model` wins.
async fn a_run_gets_its_assistants_config_under_its_own(kind: Kind) {
    let fake = FakeLlm::start(vec![answer("fine")]).await;
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let mut config = db.config();
    config.llm = "openai".into();
    config.llm_base_url = fake.base_url.clone();
    let app = TestApp::start(config).await;
    let (_, made) = app
        .post(
            "/assistants",
            json!({"graph_id": "legacy", "config": {"configurable": {
                "system_prompt": "You are Terse.", "model": "fake-terse", "temperature": 0.2}}}),
        )
        .await;
    let id = made["assistant_id"].as_str().unwrap();
    let (s, values) = app
        .post(
            "/runs/wait",
            json!({"assistant_id": id, "input": {"messages": [{"role": "user", "content": "hi"}]},
                   "config": {"configurable": {"model": "fake-override"}}}),
        )
        .await;
    assert_eq!(s, 200, "{values}");
    let asked = &fake.requests()[0];
    assert_eq!(asked["model"], "fake-override", "the run's own config wins");
    assert_eq!(asked["temperature"], 0.2);
    let prompt = asked["messages"][0]["content"].as_str().unwrap();
    assert!(prompt.starts_with("You are Terse."), "{prompt}");
    // the legacy graph has no memory tools
    let tools: Vec<&str> = asked["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(!tools.contains(&"remember"), "{tools:?}");
    // a run of an assistant that does not exist
    let (s, body) = app
        .post(
            "/runs/wait",
            json!({"assistant_id": uuid::Uuid::new_v4().to_string(), "input": {}}),
        )
        .await;
    assert_eq!(s, 404, "{body}");
    app.stop().await;
}
