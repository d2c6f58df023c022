//! The `openai` model: any OpenAI-compatible `chat/completions` endpoint, called with reqwest and
//! streamed. Text and tool-call fragments are handed on as they arrive; failed connects, 429 and
//! 5xx are retried with exponential backoff (honouring `Retry-After`) until the first byte of an
//! answer, never after it. Connect and read timeouts bound every call.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Delta, ToolCall, Tuning, Turn, text_of, tool_specs};
use crate::config::Config;
use crate::graphs::Graph;

/// The longest backoff between two attempts, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct OpenAi {
    http: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    max_retries: u32,
}

impl OpenAi {
    pub fn new(config: &Config) -> Result<OpenAi, String> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.llm_connect_timeout_ms))
            .read_timeout(Duration::from_millis(config.llm_read_timeout_ms))
            .build()
            .map_err(|e| format!("while building the model's HTTP client: {e}"))?;
        Ok(OpenAi {
            http,
            url: format!(
                "{}/chat/completions",
                config.llm_base_url.trim_end_matches('/')
            ),
            api_key: config.llm_api_key.clone().filter(|k| !k.is_empty()),
            model: config.llm_model.clone(),
            max_retries: config.llm_max_retries,
        })
    }

    /// One model turn, streamed through `on_delta`.
    pub async fn turn(
        &self,
        graph: &Graph,
        user_id: &str,
        messages: &[Value],
        tuning: Tuning<'_>,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Turn, String> {
        // bytes, not a `Value`, are kept for the call's length (and its retries): a JSON tree of
        // the tools' schemas costs tens of KB per run waiting on the model
        let mut request = json!({
            "model": tuning.model.unwrap_or(&self.model),
            "messages": chat_messages(graph, user_id, tuning.system_prompt, messages),
            "tools": tool_specs(graph),
            "stream": true,
        });
        if let Some(t) = tuning.temperature {
            request["temperature"] = json!(t);
        }
        let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        let mut response = self.send(body).await?;
        let json_body = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        let mut answer = Answer::default();
        if json_body {
            // a server that does not stream answers one JSON document
            let doc: Value = response.json().await.map_err(|e| read_error(&e))?;
            let message = doc.pointer("/choices/0/message").unwrap_or(&Value::Null);
            answer.apply(message, on_delta);
            return answer.finish();
        }
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let Some(chunk) = response.chunk().await.map_err(|e| read_error(&e))? else {
                return answer.finish();
            };
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    return answer.finish();
                }
                // the endpoint's own words go to the log; the run's error says what happened
                let event: Value = serde_json::from_str(data).map_err(|e| {
                    log::warn!("the model sent an unreadable event ({e}): {data}");
                    "the model sent an unreadable answer".to_string()
                })?;
                if let Some(error) = event.get("error") {
                    log::warn!("the model answered an error: {error}");
                    return Err("the model answered an error".to_string());
                }
                if let Some(delta) = event.pointer("/choices/0/delta") {
                    answer.apply(delta, on_delta);
                }
            }
        }
    }

    /// Sends the request, retrying failed connects, 429 and 5xx with backoff.
    async fn send(&self, body: Vec<u8>) -> Result<reqwest::Response, String> {
        let body = actix_web::web::Bytes::from(body);
        let mut attempt = 0;
        loop {
            let mut request = self
                .http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key);
            }
            let (failure, retry_after) = match request.send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) => {
                    let status = r.status();
                    let retry_after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = r.text().await.unwrap_or_default();
                    log::warn!(
                        "the model's endpoint answered {status}: {}",
                        text.chars().take(300).collect::<String>()
                    );
                    let failure = format!("the model's endpoint answered {}", status.as_u16());
                    if status.as_u16() != 429 && !status.is_server_error() {
                        return Err(failure);
                    }
                    (failure, retry_after)
                }
                Err(e) if e.is_connect() => {
                    log::warn!("could not connect to the model's endpoint: {e}");
                    (
                        "could not connect to the model's endpoint".to_string(),
                        None,
                    )
                }
                Err(e) => return Err(read_error(&e)),
            };
            if attempt >= self.max_retries {
                return Err(format!("{failure} (after {} attempts)", attempt + 1));
            }
            let backoff = retry_after
                .unwrap_or_else(|| Duration::from_millis(200 << attempt.min(8)))
                .min(MAX_BACKOFF);
            log::warn!("{failure}; retrying in {} ms", backoff.as_millis());
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }
}

fn read_error(e: &reqwest::Error) -> String {
    log::warn!("the model's endpoint: {e}");
    if e.is_timeout() {
        "the model's endpoint timed out".to_string()
    } else {
        "reading the model's answer failed".to_string()
    }
}

/// A streamed answer being put together: its text and its tool calls by index.
#[derive(Default)]
struct Answer {
    text: String,
    calls: BTreeMap<u64, (String, String, String)>,
}

impl Answer {
    /// Takes in one `delta` (or a whole `message`) and hands its fragments on.
    fn apply(&mut self, delta: &Value, on_delta: &mut (dyn FnMut(Delta) + Send)) {
        if let Some(text) = delta.get("content").and_then(Value::as_str)
            && !text.is_empty()
        {
            self.text.push_str(text);
            on_delta(Delta::Text(text.to_string()));
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for (position, call) in calls.into_iter().flatten().enumerate() {
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            let field = |path: &str| call.pointer(path).and_then(Value::as_str).unwrap_or("");
            let (id, name, args) = (
                field("/id"),
                field("/function/name"),
                field("/function/arguments"),
            );
            let slot = self.calls.entry(index).or_default();
            slot.0.push_str(id);
            slot.1.push_str(name);
            slot.2.push_str(args);
            on_delta(Delta::ToolCall {
                index,
                id: id.to_string(),
                name: name.to_string(),
                args: args.to_string(),
            });
        }
    }

    fn finish(self) -> Result<Turn, String> {
        if self.calls.is_empty() {
            return Ok(Turn::Answer(self.text));
        }
        self.calls
            .into_values()
            .map(|(id, name, args)| {
                let args = if args.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&args).map_err(|e| {
                        format!(
                            "the model called {name} with arguments that are not JSON ({e}): {args}"
                        )
                    })?
                };
                let id = if id.is_empty() {
                    format!("call_{}", uuid::Uuid::new_v4().simple())
                } else {
                    id
                };
                Ok(ToolCall { id, name, args })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(Turn::Call)
    }
}

/// The conversation in chat-completions form, after a system prompt naming the user (the
/// assistant's own `system_prompt` first, when it has one).
fn chat_messages(
    graph: &Graph,
    user_id: &str,
    system_prompt: Option<&str>,
    messages: &[Value],
) -> Vec<Value> {
    let mut prompt = system_prompt.map_or_else(String::new, |p| format!("{p}\n\n"));
    prompt.push_str(&format!(
        "You are a task assistant for the user \"{user_id}\". Use the tools to list, add, complete \
         and delete the user's tasks; answer briefly."
    ));
    if graph.memory {
        prompt.push_str(
            " Use remember to keep facts the user wants remembered and recall to look them up.",
        );
    }
    let mut out = vec![json!({ "role": "system", "content": prompt })];
    for m in messages {
        let kind = m
            .get("type")
            .or_else(|| m.get("role"))
            .and_then(Value::as_str)
            .unwrap_or("human");
        let content = text_of(m);
        out.push(match kind {
            "ai" | "assistant" | "AIMessageChunk" => {
                let calls: Vec<Value> = m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        json!({
                            "id": c.get("id"),
                            "type": "function",
                            "function": {
                                "name": c.get("name"),
                                "arguments": c.get("args").map_or_else(|| "{}".to_string(), Value::to_string),
                            },
                        })
                    })
                    .collect();
                if calls.is_empty() {
                    json!({ "role": "assistant", "content": content })
                } else {
                    json!({ "role": "assistant", "content": content, "tool_calls": calls })
                }
            }
            "tool" => {
                json!({ "role": "tool", "tool_call_id": m.get("tool_call_id"), "content": content })
            }
            "system" => json!({ "role": "system", "content": content }),
            _ => json!({ "role": "user", "content": content }),
        });
    }
    out
}
