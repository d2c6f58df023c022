//! The `openai` model against a scripted OpenAI-compatible server: streamed tool-call deltas,
//! retries on 429 and 5xx, timeouts. A failing model ends the run in `error`, never `busy`.

use serde_json::{Value, json};

use crate::both_backends;
use crate::fake_llm::{FakeLlm, Reply, answer, call};
use crate::helpers::{Kind, TestApp, TestDb};
use crate::runs::{ask, assert_thread_status, chat, last_text, user_thread, wait};
use crate::sse::{Reader, sse_events};

both_backends!(
    get_tasks_through_an_openai_compatible_model,
    a_model_that_times_out_ends_the_run_in_error,
    a_model_that_keeps_failing_is_retried_then_given_up,
    each_token_is_streamed_as_soon_as_the_model_sends_it,
);

/// A mnemo whose model is `fake`.
pub async fn app_with_model(kind: Kind, fake: &FakeLlm) -> Option<(TestApp, TestDb)> {
    let db = TestDb::new(kind).await?;
    let mut config = db.config();
    config.llm = "openai".into();
    config.llm_base_url = fake.base_url.clone();
    config.llm_api_key = Some("sk-test".into());
    config.llm_model = "gpt-test".into();
    config.llm_read_timeout_ms = 1000;
    config.llm_max_retries = 2;
    let app = TestApp::start(config).await;
    Some((app, db))
}

async fn get_tasks_through_an_openai_compatible_model(kind: Kind) {
    let fake = FakeLlm::start(vec![
        Reply::Status(429),
        call("call_1", "list_tasks", r#"{"status": "todo"}"#),
        answer("You have one task: buy milk."),
    ])
    .await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let thread = user_thread(&app, "o1", "buy milk").await;
    let resp = app
        .client
        .post(app.url("/agent/stream"))
        .json(&json!({"user_id": "o1", "message": "get tasks", "thread_id": thread}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let events = sse_events(&resp.text().await.unwrap());

    // the tool call streamed as fragments of one call, then the answer word by word
    let chunks: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "messages")
        .map(|(_, d)| &d[0])
        .filter(|m| m["type"] == "AIMessageChunk")
        .collect();
    let args: String = chunks
        .iter()
        .flat_map(|c| c["tool_call_chunks"].as_array().unwrap())
        .map(|c| c["args"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"status": "todo"}"#);
    let words: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["content"].as_str())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(words.concat(), "You have one task: buy milk.");
    assert!(words.len() > 3, "the answer streamed in pieces: {words:?}");
    assert_eq!(
        chunks
            .iter()
            .filter(|c| c["chunk_position"] == "last")
            .count(),
        2,
        "one last chunk per message"
    );

    let values = &events.iter().rev().find(|(n, _)| n == "values").unwrap().1;
    let messages = values["messages"].as_array().unwrap();
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["human", "ai", "tool", "ai"]);
    assert_eq!(messages[1]["tool_calls"][0]["name"], "list_tasks");
    assert_eq!(
        messages[1]["tool_calls"][0]["args"],
        json!({"status": "todo"})
    );
    assert!(
        messages[2]["content"]
            .as_str()
            .unwrap()
            .contains("buy milk")
    );
    assert_eq!(last_text(values), "You have one task: buy milk.");

    // the 429 was retried; every call carried the key, the tools and the conversation so far
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        fake.authorizations()
            .iter()
            .all(|a| a.as_deref() == Some("Bearer sk-test"))
    );
    let last = &requests[2];
    assert_eq!(last["model"], "gpt-test");
    assert_eq!(last["stream"], true);
    let tools: Vec<&str> = last["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"list_tasks") && tools.contains(&"remember"));
    let sent = last["messages"].as_array().unwrap();
    let roles: Vec<&str> = sent.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool"]);
    assert_eq!(sent[2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(sent[3]["tool_call_id"], "call_1");
    assert!(sent[0]["content"].as_str().unwrap().contains("o1"));

    assert_thread_status(&app, &thread, "idle").await;
    app.stop().await;
}

async fn a_model_that_times_out_ends_the_run_in_error(kind: Kind) {
    let fake = FakeLlm::start(vec![Reply::Hang]).await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let thread = user_thread(&app, "o2", "buy milk").await;
    let started = std::time::Instant::now();
    let values = chat(&app, &thread, "get tasks").await;
    let message = values["__error__"]["message"].as_str().unwrap();
    assert!(message.contains("timed out"), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // a read timeout is not retried: the model's answer may already have been acted upon
    assert_eq!(fake.requests().len(), 1);
    assert_thread_status(&app, &thread, "error").await;

    // the thread takes the next run
    let values = chat(&app, &thread, "hello").await;
    assert_eq!(last_text(&values), "ok");
    assert_thread_status(&app, &thread, "idle").await;
    app.stop().await;
}

async fn a_model_that_keeps_failing_is_retried_then_given_up(kind: Kind) {
    let fake = FakeLlm::start(vec![
        Reply::Status(503),
        Reply::Status(500),
        Reply::Status(502),
    ])
    .await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let thread = user_thread(&app, "o3", "buy milk").await;
    let resp = app
        .client
        .post(app.url(&format!("/threads/{thread}/runs/stream")))
        .json(&json!({"assistant_id": "agent", "input": ask("get tasks")}))
        .send()
        .await
        .unwrap();
    let events = sse_events(&resp.text().await.unwrap());
    let (name, error) = events.last().unwrap();
    assert_eq!(name, "error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("502") && message.contains("after 3 attempts"),
        "{message}"
    );
    assert_eq!(fake.requests().len(), 3);
    let (_, runs) = app.get(&format!("/threads/{thread}/runs")).await;
    assert_eq!(runs[0]["status"], "error");
    assert_thread_status(&app, &thread, "error").await;

    // a client error is not retried
    fake.then(vec![Reply::Status(400)]);
    let (_, values, _) = wait(
        &app,
        &thread,
        json!({"assistant_id": "agent", "input": ask("get tasks")}),
    )
    .await;
    assert!(
        values["__error__"]["message"]
            .as_str()
            .unwrap()
            .contains("400")
    );
    assert_eq!(fake.requests().len(), 4);
    app.stop().await;
}

/// A token reaches the client when the model sends it, not when the next one arrives: a model
/// that pauses (here: stalls until its read timeout) leaves the user looking at what it said.
async fn each_token_is_streamed_as_soon_as_the_model_sends_it(kind: Kind) {
    let fake = FakeLlm::start(vec![Reply::Stall(vec![
        json!({"role": "assistant", "content": "Thinking"}),
    ])])
    .await;
    let Some((app, _db)) = app_with_model(kind, &fake).await else {
        return;
    };
    let thread = user_thread(&app, "o4", "buy milk").await;
    let resp = app
        .client
        .post(app.url(&format!("/threads/{thread}/runs/stream")))
        .json(&json!({"assistant_id": "agent", "input": ask("think"), "stream_mode": ["messages-tuple"]}))
        .send()
        .await
        .unwrap();
    let mut reader = Reader::new(resp);
    let mut first = None;
    while let Some(e) = reader.next().await {
        if e.name != "metadata" {
            first = Some(e);
            break;
        }
    }
    let first = first.expect("an event after metadata");
    assert_eq!(first.name, "messages", "{:?}", first.data);
    assert_eq!(first.data[0]["content"], "Thinking");
    assert!(first.data[0].get("chunk_position").is_none());
    // the model stalls until its read timeout: the run ends in error, no last chunk
    let rest = reader.rest().await;
    let names: Vec<&str> = rest.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["error"],
        "{:?}",
        rest.iter().map(|e| &e.data).collect::<Vec<_>>()
    );
    app.stop().await;
}
