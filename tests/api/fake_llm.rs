//! A scripted OpenAI-compatible chat-completions server on port 0: the one outside piece of a
//! run. Each request takes the next reply of its script (a plain answer once the script is
//! spent) and is recorded with its `Authorization` header.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub enum Reply {
    /// An error status (with `Retry-After: 0`).
    Status(u16),
    /// `chat.completion.chunk` deltas, streamed as SSE, `pause` apart.
    Stream(Vec<Value>, Duration),
    /// Read the request, never answer.
    Hang,
    /// `chat.completion.chunk` deltas streamed at once, then silence (the answer never ends).
    Stall(Vec<Value>),
}

/// An answer streamed word by word.
pub fn answer(text: &str) -> Reply {
    let deltas = text
        .split_inclusive(' ')
        .map(|w| json!({"role": "assistant", "content": w}))
        .collect();
    Reply::Stream(deltas, Duration::ZERO)
}

/// One tool call, its arguments split over several deltas as real endpoints send them.
pub fn call(id: &str, name: &str, args: &str) -> Reply {
    let (a, b) = args.split_at(args.len() / 2);
    Reply::Stream(
        vec![
            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
        ],
        Duration::ZERO,
    )
}

/// What each request carried: its `Authorization` header and its JSON body.
type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

#[derive(Clone)]
pub struct FakeLlm {
    pub base_url: String,
    script: Arc<Mutex<VecDeque<Reply>>>,
    requests: Received,
}

impl FakeLlm {
    pub async fn start(script: Vec<Reply>) -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeLlm {
            base_url: format!("http://{}/v1", listener.local_addr().unwrap()),
            script: Arc::new(Mutex::new(script.into())),
            requests: Arc::default(),
        };
        let serving = fake.clone();
        actix_web::rt::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let fake = serving.clone();
                actix_web::rt::spawn(async move { fake.serve(socket).await });
            }
        });
        fake
    }

    /// Adds replies at the end of the script.
    pub fn then(&self, replies: Vec<Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// The JSON bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Waits (up to 10 s) until `n` requests have arrived.
    pub async fn received(&self, n: usize) {
        for _ in 0..1000 {
            if self.requests.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the fake model did not receive {n} request(s)");
    }

    async fn serve(&self, mut socket: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            let Ok(n) = socket.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let length: usize = header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Value =
            serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
        self.requests
            .lock()
            .unwrap()
            .push((header("authorization"), body));
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| answer("ok"));
        match reply {
            Reply::Status(code) => {
                let body = r#"{"error": {"message": "scripted failure"}}"#;
                let resp = format!(
                    "HTTP/1.1 {code} Scripted\r\nContent-Type: application/json\r\nRetry-After: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(resp.as_bytes()).await;
            }
            Reply::Stream(deltas, pause) => {
                if !write_deltas(&mut socket, deltas, pause).await {
                    return;
                }
                let _ = socket.write_all(b"data: [DONE]\n\n").await;
            }
            Reply::Stall(deltas) => {
                if write_deltas(&mut socket, deltas, Duration::ZERO).await {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
        let _ = socket.shutdown().await;
    }
}

/// The head of a streamed answer and its deltas, `pause` apart; false when the client has gone.
async fn write_deltas(socket: &mut TcpStream, deltas: Vec<Value>, pause: Duration) -> bool {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for delta in deltas {
        tokio::time::sleep(pause).await;
        let event = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
        if socket
            .write_all(format!("data: {event}\n\n").as_bytes())
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}
