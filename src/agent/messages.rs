//! LangChain's message shapes on a run's stream: a model turn as `AIMessageChunk`s, a tool's
//! message whole, with the metadata LangGraph attaches.

use serde_json::{Map, Value, json};

use super::Delta;
use crate::model::Run;
use crate::runs::Live;

/// The id of the AI message a run's `step` writes.
pub(crate) fn message_id(run: &Run, step: usize) -> String {
    format!("run-{}-{step}", run.run_id)
}

/// A model turn as it streams: `messages` events of `AIMessageChunk`s sharing the message id,
/// each sent as soon as the model gives it, then an empty one marked `chunk_position: "last"`
/// (as LangChain ends a streamed message), and the legacy `messages/metadata` and
/// `messages/partial` events when the run's stream asked for mode `messages`.
pub(crate) struct MessageStream<'a> {
    live: &'a Live,
    id: String,
    meta: Value,
    pushed: bool,
    text: String,
    started: bool,
}

impl<'a> MessageStream<'a> {
    pub fn new(live: &'a Live, id: String, meta: Value) -> MessageStream<'a> {
        MessageStream {
            live,
            id,
            meta,
            pushed: false,
            text: String::new(),
            started: false,
        }
    }

    pub fn push(&mut self, delta: Delta) {
        let (content, chunks) = match delta {
            Delta::Text(t) => (t, json!([])),
            Delta::ToolCall {
                index,
                id,
                name,
                args,
            } => {
                let field = |s: String| if s.is_empty() { Value::Null } else { json!(s) };
                let chunk = json!({ "id": field(id), "name": field(name), "args": args, "index": index, "type": "tool_call_chunk" });
                (String::new(), json!([chunk]))
            }
        };
        if self.live.wants("messages/partial") {
            if !self.started {
                self.started = true;
                self.live.emit(
                    "messages/metadata",
                    &json!({ &self.id: { "metadata": self.meta } }),
                );
            }
            self.text.push_str(&content);
            self.live.emit(
                "messages/partial",
                &json!([{ "type": "ai", "id": self.id, "content": self.text, "tool_calls": [] }]),
            );
        }
        let chunk = json!({ "type": "AIMessageChunk", "id": self.id, "content": content, "tool_call_chunks": chunks });
        self.live.emit("messages", &json!([chunk, self.meta]));
        self.pushed = true;
    }

    pub fn finish(self) {
        if self.pushed {
            let last = json!({ "type": "AIMessageChunk", "id": self.id, "content": "", "tool_call_chunks": [], "chunk_position": "last" });
            self.live.emit("messages", &json!([last, self.meta]));
        }
    }
}

/// A message that was not streamed (a tool's), as LangGraph sends a node's output messages:
/// whole, in `messages-tuple` (event `messages`), and in the legacy `messages` mode as its metadata
/// then `messages/complete`. Streamed messages get only chunks and `messages/partial`, as the
/// reference sends.
pub(crate) fn tool_message(live: &Live, message: &Value, meta: &Value) {
    live.emit("messages", &json!([message, meta]));
    if !live.wants("messages/complete") {
        return;
    }
    if let Some(id) = message["id"].as_str() {
        live.emit("messages/metadata", &json!({ id: { "metadata": meta } }));
    }
    live.emit("messages/complete", &json!([message]));
}

/// What LangGraph attaches to a streamed message: the node that wrote it and the step of the
/// checkpoint it is written in.
pub(crate) fn chunk_metadata(meta: &Map<String, Value>, node: &str, step: i64) -> Value {
    let mut m = meta.clone();
    m.insert("langgraph_node".into(), json!(node));
    m.insert("langgraph_step".into(), json!(step));
    m.insert("langgraph_checkpoint_ns".into(), json!(""));
    Value::Object(m)
}
