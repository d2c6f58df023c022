//! `--ops replicas` (Postgres): what a run costs to follow or to cancel through another replica
//! than the one executing it. Two mnemos on `DATABASE_URL`: `a` calls a model endpoint of the
//! bench's that streams `WORDS` words `PAUSE` apart, `b` the builtin model. Each sample is one
//! run started through `a` as a resumable stream:
//! - follow: its stream is rejoined through `b` from the start; for each event `a`'s stream
//!   receives after `b` joined, the delay until `b`'s stream receives it too;
//! - cancel: after a few words it is cancelled through `b`; the time from sending the cancel
//!   until `a`'s stream ends (`a` has stopped the run), and whether it ended `interrupted`;
//! - first event: the time from sending the rejoin through `b` until `b`'s stream has its first
//!   event (the stored ones are sent first, then the live ones).
//!
//! Then throughput: `runs/wait` "get tasks" from `--clients` chats (each on threads of its own,
//! as `chat_wait`) for `--seconds`, spread round-robin over 1 mnemo, then over 3 on the same
//! database, then over 3 whose workers are fewer than the chats (`MNEMO_RUN_WORKERS`), so that
//! runs wait in the queue and are claimed by whichever replica has a free worker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::pct;
use super::server::{self, Server};
use super::sse::Reader;
use crate::config::Config;
use crate::persistence::Backend;

/// The model's answer: this many words, `PAUSE` apart (a run takes 2 s).
const WORDS: usize = 40;
const PAUSE: Duration = Duration::from_millis(50);

/// A model endpoint that answers every request with `WORDS` words streamed `PAUSE` apart.
async fn words_model() -> Result<(u16, tokio::task::JoinHandle<()>), String> {
    let (listener, port) = server::model_listener().await?;
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // the request: its head, then as many bytes as its Content-Length says
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body_at = loop {
                    match socket.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..body_at]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < body_at + length {
                    match socket.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for i in 0..WORDS {
                    tokio::time::sleep(PAUSE).await;
                    let chunk = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": format!("w{i} ")}, "finish_reason": null}]});
                    let line = format!("data: {chunk}\n\n");
                    if socket.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
                let _ = socket.write_all(b"data: [DONE]\n\n").await;
            });
        }
    });
    Ok((port, task))
}

/// Reads a stream to its end; answers when each event id came (and when the body ended).
async fn timed(resp: reqwest::Response) -> (HashMap<i64, Instant>, Instant) {
    let mut reader = Reader::new(resp);
    let mut at = HashMap::new();
    while let Ok(Some(event)) = reader.next().await {
        if let Some(id) = event.id {
            at.insert(id, Instant::now());
        }
    }
    (at, Instant::now())
}

/// One run started through `a` as a resumable stream on a new thread: the stream, its thread
/// and run ids, once its first event (`metadata`) has come.
async fn start_run(
    c: &reqwest::Client,
    a: &str,
) -> Result<(reqwest::Response, String, String), String> {
    let thread = super::json_of(
        c.post(format!("{a}/threads")).json(&json!({})),
        "creating a thread",
    )
    .await?;
    let tid = thread["thread_id"].as_str().unwrap_or_default().to_string();
    let resp = c
        .post(format!("{a}/threads/{tid}/runs/stream"))
        .json(&json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]},
                      "stream_mode": ["messages-tuple"], "stream_resumable": true}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("starting a run: {e}"))?;
    // the run's id is in its stream's Content-Location: /threads/{tid}/runs/{run_id}
    let run_id = resp
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    Ok((resp, tid, run_id))
}

pub async fn replicas(
    config: &Config,
    samples: usize,
    clients: usize,
    seconds: u64,
) -> Result<(), String> {
    if Backend::of_url(&config.database_url)? != Backend::Postgres {
        return Err("replicas needs DATABASE_URL to name a Postgres database".into());
    }
    let (port, model) = words_model().await?;
    let a = Server::start(config, &server::fake_model_env(port)).await?;
    let b = Server::start(config, &[]).await?;
    println!(
        "# replicas: two mnemos on {}; a's model streams {WORDS} words {} ms apart; {samples} runs each",
        crate::config::redact_url(&config.database_url),
        PAUSE.as_millis()
    );
    let c = super::http_client(reqwest::Client::builder().timeout(Duration::from_secs(60)));
    let measured = measure(&c, &a.base, &b.base, samples).await;
    model.abort();
    let stopped = a.stop().await.and(b.stop().await);
    let Measured {
        mut follow,
        mut cancel,
        mut first,
        missing,
        not_stopped,
    } = measured?;
    follow.sort();
    cancel.sort();
    first.sort();
    println!("{:<48} {:>6} {:>8} {:>8}", "", "n", "p50 ms", "p99 ms");
    for (name, figures) in [
        ("event through b after a (following a's run)", &follow),
        ("first event of a stream rejoined through b", &first),
        ("cancel through b until a's stream ends", &cancel),
    ] {
        println!(
            "{name:<48} {:>6} {:>8.1} {:>8.1}",
            figures.len(),
            pct(figures, 0.5),
            pct(figures, 0.99)
        );
    }
    println!(
        "# events a's stream had and b's did not: {missing}; cancelled runs that did not end interrupted: {not_stopped}"
    );
    stopped?;
    println!("# runs/wait \"get tasks\", {clients} chats, {seconds} s each, builtin model");
    println!(
        "{:<18} {:>10} {:>9} {:>9} {:>8}",
        "", "runs/s", "p50 ms", "p99 ms", "errors"
    );
    let workers = (clients / 4).max(1).to_string();
    let few = format!("3 x {workers} workers");
    for (name, replicas, env) in [
        ("1 replica", 1, vec![]),
        ("3 replicas", 3, vec![]),
        (
            few.as_str(),
            3,
            vec![("MNEMO_RUN_WORKERS", workers.clone())],
        ),
    ] {
        throughput(config, name, replicas, &env, clients, seconds).await?;
    }
    println!("# {few}: MNEMO_RUN_WORKERS={workers} on each replica, runs beyond them queued");
    Ok(())
}

/// `runs/wait` from `clients` chats, round-robin over `replicas` mnemos started with `env`.
async fn throughput(
    config: &Config,
    name: &str,
    replicas: usize,
    env: &[(&str, String)],
    clients: usize,
    seconds: u64,
) -> Result<(), String> {
    let mut servers = Vec::new();
    for _ in 0..replicas {
        servers.push(Server::start(config, env).await?);
    }
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let chats = super::Conversations::new(&tag, clients);
    let run = super::drive(clients, seconds, move |c, _, i| {
        let (thread, new) = chats.next(i);
        let create = if new { "create" } else { "reject" };
        let body = json!({"assistant_id": "agent", "input": super::get_tasks(), "if_not_exists": create,
                          "config": {"configurable": {"user_id": super::USER}}});
        let base = &bases[i % bases.len()];
        super::ok(c.post(format!("{base}/threads/{thread}/runs/wait")).json(&body))
    })
    .await;
    super::report(name, run.latencies, run.errors, run.elapsed);
    for server in servers {
        server.stop().await?;
    }
    Ok(())
}

/// What [`measure`] found: the delays of followed events, the cancel latencies, the first-event
/// latencies of rejoined streams, the events `b` missed and the cancelled runs that did not end
/// `interrupted`.
struct Measured {
    follow: Vec<Duration>,
    cancel: Vec<Duration>,
    first: Vec<Duration>,
    missing: usize,
    not_stopped: usize,
}

async fn measure(
    c: &reqwest::Client,
    a: &str,
    b: &str,
    samples: usize,
) -> Result<Measured, String> {
    let (mut follow, mut cancel, mut first) = (Vec::new(), Vec::new(), Vec::new());
    let (mut missing, mut not_stopped) = (0, 0);
    for _ in 0..samples {
        // follow: a's stream and b's rejoin, read side by side to the end
        let (resp, tid, run_id) = start_run(c, a).await?;
        let on_a = tokio::spawn(timed(resp));
        let asked = Instant::now();
        let rejoin = c
            .get(format!("{b}/threads/{tid}/runs/{run_id}/stream"))
            .header("Last-Event-ID", "0")
            .send()
            .await
            .map_err(|e| format!("rejoining through b: {e}"))?;
        let joined = Instant::now();
        let (on_b, _) = timed(rejoin).await;
        if let Some(at) = on_b.values().min() {
            first.push(at.saturating_duration_since(asked));
        }
        let (on_a, _) = on_a.await.map_err(|e| e.to_string())?;
        for (id, at_a) in on_a.iter().filter(|(_, at)| **at > joined) {
            match on_b.get(id) {
                Some(at_b) => follow.push(at_b.saturating_duration_since(*at_a)),
                None => missing += 1,
            }
        }
        // cancel: a few words in, through b
        let (resp, tid, run_id) = start_run(c, a).await?;
        let on_a = tokio::spawn(timed(resp));
        tokio::time::sleep(PAUSE * 3).await;
        let sent = Instant::now();
        c.post(format!("{b}/threads/{tid}/runs/{run_id}/cancel"))
            .json(&json!({}))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("cancelling through b: {e}"))?;
        let (_, ended) = on_a.await.map_err(|e| e.to_string())?;
        cancel.push(ended.saturating_duration_since(sent));
        let run: serde_json::Value = c
            .get(format!("{a}/threads/{tid}/runs/{run_id}"))
            .send()
            .await
            .map_err(|e| format!("reading a cancelled run: {e}"))?
            .json()
            .await
            .map_err(|e| format!("reading a cancelled run: {e}"))?;
        if run["status"] != "interrupted" {
            not_stopped += 1;
        }
    }
    Ok(Measured {
        follow,
        cancel,
        first,
        missing,
        not_stopped,
    })
}
