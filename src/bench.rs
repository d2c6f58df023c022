//! `mnemo bench`: drives a mnemo over HTTP with N concurrent clients and prints ops/s, p50 and
//! p99 per operation. Without `--url` it starts a mnemo in-process on `DATABASE_URL` (port 0).
//! The workload follows `shared/bench` (the baseline): store values of ~500 bytes under
//! `("users", <id>, "memories")`, a search filter on one field over 10,000 items, and a chat
//! checkpoint whose `messages` channel holds 10 messages of ~200 characters.
//!
//! The agent operations run only when named in `--ops`; each client holds conversations of its
//! own (a thread runs one run at a time) of 10 turns each, and sends "get tasks" (a `list_tasks`
//! call, then the answer):
//! - `chat_wait`: `runs/wait`, timed to the final values.
//! - `agent_stream`: `POST /agent/stream`, timed to the first chunk of the SSE body
//!   (`agent_stream_first`) and to its end (`agent_stream_last`).
//! - `idle_streams`: the memory of a mnemo holding `--streams` open idle streams, twice: that
//!   many clients on the stream of one run, then that many runs each streamed to its client.
//!   The runs wait on a model that never answers (a fake endpoint here reads each request and
//!   leaves it unanswered), so each of the latter also holds a connection to the model. That
//!   mnemo is a child process (so its memory is its own), started on `DATABASE_URL` with
//!   `MNEMO_LLM=openai`; `--url` does not apply. First it also fills its pool, for the memory
//!   of a pooled connection.
//!
//! Six operations run alone, each against mnemo processes of their own (or, for `soak`, a
//! running one): `soak` (mixed load for a long time, with memory, Postgres connections, latency
//! and errors every tenth of it), `memory` (peak memory for large bodies and history pages),
//! `queued` (what runs waiting on a busy thread cost the rest, and their memory), `replicas`
//! (following and cancelling a run through another replica), `growth` (reads and writes as
//! threads and the store grow) and `actor_hop` (the persistence actor against the pool used
//! directly); see their modules.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::startup::Application;

mod growth;
mod hop;
mod memory;
mod pg;
mod queued;
mod replicas;
mod server;
mod soak;
mod sse;

use server::Server;

/// Reads first, on the data the setup wrote; writes last, as the baseline orders them.
const ALL_OPS: &str =
    "store_get,store_search_ns,store_search,state_get,history10,ckpt_put,ckpt_writes,store_put";
/// Operations on the agent, run only when named in `--ops`.
const AGENT_OPS: &str = "chat_wait,agent_stream,idle_streams";
/// Operations that run alone, against a mnemo process of their own.
const ALONE_OPS: &str = "soak,memory,queued,replicas,growth,actor_hop";
/// The user the agent operations chat as.
const USER: &str = "u1";

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A running mnemo to drive (default: start one in-process on DATABASE_URL).
    #[arg(long)]
    url: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds per operation (default 5); for soak, the whole run (default 600); for queued,
    /// each window (default 10).
    #[arg(long)]
    seconds: Option<u64>,
    /// Comma-separated operations to run (besides these: chat_wait, agent_stream, idle_streams;
    /// and, each alone: soak, memory, queued, replicas, growth, actor_hop).
    #[arg(long, default_value = ALL_OPS)]
    ops: String,
    /// Store items to search over.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Streams `idle_streams` holds open.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// The key every request carries (`x-api-key`), for a mnemo with authentication on.
    #[arg(long, env = "MNEMO_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Start the in-process mnemo with `MNEMO_AUTH=api_key` and send a service key of its own.
    #[arg(long)]
    auth: bool,
    /// The process id of the mnemo at `--url`, for soak's memory figures.
    #[arg(long)]
    pid: Option<u32>,
    /// Runs `queued` enqueues on the busy thread.
    #[arg(long, default_value_t = 300)]
    queued: usize,
    /// Runs `replicas` follows, and runs it cancels, through the second mnemo.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// The largest store `growth` measures (it also measures a tenth and a hundredth of it).
    #[arg(long, default_value_t = 1_000_000)]
    max_items: u64,
}

/// The key the load generator's clients send, set once before they start.
static API_KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// An HTTP client that sends the bench's key, if any.
fn http_client(builder: reqwest::ClientBuilder) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = API_KEY.get()
        && let Ok(value) = reqwest::header::HeaderValue::from_str(key)
    {
        headers.insert("x-api-key", value);
    }
    builder.default_headers(headers).build().unwrap_or_default()
}

/// Threads the checkpoint operations use.
const THREADS: usize = 100;

fn store_value(n: usize) -> Value {
    json!({
        "category": format!("cat{}", n % 10),
        "text": format!("memory {n}: {}", "the user prefers short answers and tea over coffee; ".repeat(8)),
        "n": n,
    })
}

fn messages() -> Value {
    let msgs: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "type": if i % 2 == 0 { "human" } else { "ai" },
                "id": format!("msg-{i}"),
                "content": format!("message {i}: {}", "lorem ipsum dolor sit amet ".repeat(7)),
            })
        })
        .collect();
    json!(msgs)
}

fn checkpoint_body(id: &str, parent: &str, blob: &str, version: u64) -> Value {
    json!({
        "checkpoint_id": id,
        "parent_checkpoint_id": parent,
        "checkpoint": {
            "v": 4, "id": id, "ts": "2026-11-26T15:04:51.758120+00:00", "channel_values": {},
            "channel_versions": {"__start__": "00000000000000000000000000000001.0.2529102076298183",
                                  "messages": format!("{version:032}.0.6138080010457686")},
            "versions_seen": {"__input__": {}}, "updated_channels": ["messages"],
        },
        "metadata": {"source": "loop", "step": version, "parents": {}},
        "blobs": [{"channel": "messages", "version": format!("{version:032}.0.6138080010457686"), "type": "json", "data": blob}],
    })
}

/// One request's outcome: whether it succeeded and, for a stream, when its first chunk came.
struct Sample {
    ok: bool,
    first: Option<Duration>,
}

struct Run {
    latencies: Vec<Duration>,
    /// Times to the first chunk, of the requests that report one.
    firsts: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
}

/// Runs `op(client, n, i)` from `clients` tasks for `seconds`; `n` is a global request counter,
/// `i` the index of the task sending it.
async fn drive<F, Fut>(clients: usize, seconds: u64, op: F) -> Run
where
    F: Fn(reqwest::Client, u64, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Sample, reqwest::Error>> + Send,
{
    let client = http_client(reqwest::Client::builder().pool_max_idle_per_host(clients));
    let op = Arc::new(op);
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (client, op, counter) = (client.clone(), op.clone(), counter.clone());
            tokio::spawn(async move {
                let (mut lat, mut firsts) = (Vec::new(), Vec::new());
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    match op(client.clone(), n, i).await {
                        Ok(s) if s.ok => {
                            lat.push(t.elapsed());
                            firsts.extend(s.first);
                        }
                        _ => errors += 1,
                    }
                }
                (lat, firsts, errors)
            })
        })
        .collect();
    let mut run = Run {
        latencies: Vec::new(),
        firsts: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        if let Ok((lat, firsts, errors)) = t.await {
            run.latencies.extend(lat);
            run.firsts.extend(firsts);
            run.errors += errors;
        }
    }
    run.elapsed = started.elapsed();
    run
}

/// The `p` quantile (0..1) of sorted latencies, in milliseconds (0 for none).
fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// One line of figures: successes per second, their p50 and p99, and the errors.
fn report(name: &str, mut latencies: Vec<Duration>, errors: u64, elapsed: Duration) {
    latencies.sort();
    let ops = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<18} {ops:>10.0} {:>9.2} {:>9.2} {:>8}",
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        errors
    );
}

/// A request's JSON answer; a failed request, an error status or a body that is not JSON is
/// an error naming `what`.
async fn json_of(r: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
    r.send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("{what}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{what}: {e}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends a request and reads its body: the status.
async fn status(r: reqwest::RequestBuilder) -> Result<reqwest::StatusCode, reqwest::Error> {
    let resp = r.send().await?;
    let status = resp.status();
    resp.bytes().await?;
    Ok(status)
}

async fn ok(r: reqwest::RequestBuilder) -> Result<Sample, reqwest::Error> {
    let ok = status(r).await?.is_success();
    Ok(Sample { ok, first: None })
}

/// Reads an SSE body to its end, noting when its first chunk came; a run that failed (an
/// `error` event) counts as an error.
async fn streamed(r: reqwest::RequestBuilder) -> Result<Sample, reqwest::Error> {
    let t = Instant::now();
    let mut resp = r.send().await?;
    let (mut body, mut first) = (Vec::new(), None);
    while let Some(chunk) = resp.chunk().await? {
        first.get_or_insert_with(|| t.elapsed());
        body.extend_from_slice(&chunk);
    }
    let ok = resp.status().is_success() && find(&body, b"\nevent: error\n").is_none();
    Ok(Sample { ok, first })
}

/// "get tasks", as a run's input.
fn get_tasks() -> Value {
    json!({"messages": [{"role": "user", "content": "get tasks"}]})
}

/// Sends every request of `reqs` with `clients` in flight; fails on the first non-2xx.
async fn setup(clients: usize, reqs: Vec<reqwest::RequestBuilder>) -> Result<(), String> {
    let results: Vec<_> = futures_util::stream::iter(reqs.into_iter().map(status))
        .buffer_unordered(clients)
        .collect()
        .await;
    for r in results {
        match r {
            Ok(s) if s.is_success() => {}
            Ok(s) => return Err(format!("setup request answered {s}")),
            Err(e) => return Err(format!("setup request failed: {e}")),
        }
    }
    Ok(())
}

/// Writes the data the read operations read: `items` store items under
/// `("users", "u<n % 100>", "memories")` and `THREADS` threads (`bench-<tag>-<n>`) of 12
/// checkpoints each.
async fn seed(
    c: &reqwest::Client,
    base: &str,
    tag: &str,
    blob: &str,
    items: usize,
    clients: usize,
) -> Result<(), String> {
    let t = Instant::now();
    let mut reqs = Vec::new();
    for n in 0..items {
        let body = json!({"namespace": ["users", format!("u{}", n % 100), "memories"], "key": format!("mem-{n}"), "value": store_value(n)});
        reqs.push(c.put(format!("{base}/store/items")).json(&body));
    }
    for thread in 0..THREADS {
        for step in 0..12u64 {
            let id = format!("1f1e9aab-0000-6000-8000-{step:012}");
            let parent = if step == 0 {
                String::new()
            } else {
                format!("1f1e9aab-0000-6000-8000-{:012}", step - 1)
            };
            let url = format!("{base}/threads/bench-{tag}-{thread}/checkpoints");
            reqs.push(
                c.put(url)
                    .json(&checkpoint_body(&id, &parent, blob, step + 1)),
            );
        }
    }
    setup(clients, reqs).await?;
    println!(
        "# setup: {items} store items, {THREADS} threads x 12 checkpoints in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Turns per conversation: after this many runs a client starts a new thread, so runs do not
/// slow down as one thread's history grows without end.
const TURNS: u64 = 10;

/// Each client's conversations: client `i`'s turn `t` is on thread `(i, t / TURNS)`.
struct Conversations {
    tag: String,
    turns: Vec<AtomicU64>,
}

impl Conversations {
    fn new(tag: &str, clients: usize) -> Arc<Conversations> {
        Arc::new(Conversations {
            tag: tag.to_string(),
            turns: (0..clients).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Client `i`'s thread for its next turn, and whether that turn starts the conversation.
    fn next(&self, i: usize) -> (String, bool) {
        let t = self.turns[i].fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{i}-{}", self.tag, t / TURNS);
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes());
        (id.to_string(), t.is_multiple_of(TURNS))
    }
}

async fn load(base: String, args: BenchArgs, config: Config) -> Result<(), String> {
    let ops: Vec<String> = args
        .ops
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let known = format!("{ALL_OPS},{AGENT_OPS}");
    if let Some(other) = ops.iter().find(|o| !known.split(',').any(|k| k == *o)) {
        return Err(format!("unknown operation {other:?}; known: {known}"));
    }
    if args.url.is_some() && ops.iter().any(|o| o == "idle_streams") {
        return Err(
            "idle_streams starts a mnemo of its own on DATABASE_URL: run it without --url".into(),
        );
    }
    let seconds = args.seconds.unwrap_or(5);
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let blob = base64::engine::general_purpose::STANDARD.encode(messages().to_string());
    let c = http_client(reqwest::Client::builder());

    // the store and checkpoint data, when an operation reads it
    if ops.iter().any(|o| ALL_OPS.split(',').any(|k| k == o)) {
        seed(&c, &base, &tag, &blob, args.items, args.clients).await?;
    }
    println!(
        "# {} clients, {} s per operation, against {base}",
        args.clients, seconds
    );
    println!(
        "{:<18} {:>10} {:>9} {:>9} {:>8}",
        "operation", "ops/s", "p50 ms", "p99 ms", "errors"
    );

    let base = Arc::new(base);
    let tag = Arc::new(tag);
    let blob = Arc::new(blob);
    for op in ops {
        let (b, tag, blob) = (base.clone(), tag.clone(), blob.clone());
        let items = args.items as u64;
        let run = match op.as_str() {
            "store_put" => drive(args.clients, seconds, move |c, n, _| {
                let body = json!({"namespace": ["bench", format!("u{}", n % 100), "memories"], "key": format!("{tag}-{n}"), "value": store_value(n as usize)});
                let r = c.put(format!("{b}/store/items")).json(&body);
                ok(r)
            }).await,
            "store_get" => drive(args.clients, seconds, move |c, n, _| {
                let k = (n * 7919) % items;
                ok(c.get(format!("{b}/store/items?namespace=users.u{}.memories&key=mem-{k}", k % 100)))
            }).await,
            "store_search" => drive(args.clients, seconds, move |c, n, _| {
                let body = json!({"namespace_prefix": ["users"], "filter": {"category": format!("cat{}", n % 10)}, "limit": 10, "offset": (n * 31) % 100});
                ok(c.post(format!("{b}/store/items/search")).json(&body))
            }).await,
            "store_search_ns" => drive(args.clients, seconds, move |c, n, _| {
                let body = json!({"namespace_prefix": ["users", format!("u{}", n % 100), "memories"], "filter": {"category": format!("cat{}", (n / 100) % 10)}, "limit": 10});
                ok(c.post(format!("{b}/store/items/search")).json(&body))
            }).await,
            "ckpt_put" => drive(args.clients, seconds, move |c, n, _| {
                let id = format!("1f1e9aab-{:04x}-6000-9000-{n:012}", (n / 1_000_000) % 0xffff);
                let body = checkpoint_body(&id, "1f1e9aab-0000-6000-8000-000000000011", &blob, 100 + n);
                ok(c.put(format!("{b}/threads/bench-{tag}-{}/checkpoints", n % THREADS as u64)).json(&body))
            }).await,
            "ckpt_writes" => drive(args.clients, seconds, move |c, n, _| {
                let body = json!({"task_id": format!("task-{n}"), "task_path": "~__pregel_pull, agent", "writes": [
                    {"channel": "messages", "type": "json", "data": blob.as_str()},
                    {"channel": "branch:to:agent", "type": "null", "data": ""}]});
                let url = format!("{b}/threads/bench-{tag}-{}/checkpoints/1f1e9aab-0000-6000-8000-000000000011/writes", n % THREADS as u64);
                ok(c.put(url).json(&body))
            }).await,
            "state_get" => drive(args.clients, seconds, move |c, n, _| {
                ok(c.get(format!("{b}/threads/bench-{tag}-{}/state", n % THREADS as u64)))
            }).await,
            "history10" => drive(args.clients, seconds, move |c, n, _| {
                ok(c.post(format!("{b}/threads/bench-{tag}-{}/history", n % THREADS as u64)).json(&json!({"limit": 10})))
            }).await,
            "chat_wait" => {
                let chats = Conversations::new(&tag, args.clients);
                drive(args.clients, seconds, move |c, _, i| {
                    // the first turn of a conversation creates its thread
                    let (thread, new) = chats.next(i);
                    let create = if new { "create" } else { "reject" };
                    let body = json!({"assistant_id": "agent", "input": get_tasks(), "if_not_exists": create,
                                      "config": {"configurable": {"user_id": USER}}});
                    ok(c.post(format!("{b}/threads/{thread}/runs/wait")).json(&body))
                }).await
            }
            "agent_stream" => {
                let chats = Conversations::new(&tag, args.clients);
                drive(args.clients, seconds, move |c, _, i| {
                    let (thread, new) = chats.next(i);
                    let b = b.clone();
                    async move {
                        if new {
                            // a conversation starts by creating its thread, as a client does
                            let body = json!({"thread_id": thread, "metadata": {"user_id": USER}});
                            status(c.post(format!("{b}/threads")).json(&body)).await?;
                        }
                        let body = json!({"user_id": USER, "message": "get tasks", "thread_id": thread});
                        streamed(c.post(format!("{b}/agent/stream")).json(&body)).await
                    }
                }).await
            }
            // idle_streams, the one left (the names were checked above)
            _ => {
                idle_streams(&config, args.streams).await?;
                continue;
            }
        };
        let Run {
            latencies,
            firsts,
            errors,
            elapsed,
        } = run;
        if op == "agent_stream" {
            report("agent_stream_first", firsts, errors, elapsed);
            report("agent_stream_last", latencies, errors, elapsed);
        } else {
            report(&op, latencies, errors, elapsed);
        }
    }
    Ok(())
}

/// Sends `request` on a socket of its own and reads the response headers and the first event;
/// the socket is then left unread, its stream idle.
async fn open_stream(port: u16, request: &str) -> Result<TcpStream, String> {
    let io = |e: std::io::Error| format!("a stream: {e}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.map_err(io)?;
    s.write_all(request.as_bytes()).await.map_err(io)?;
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        let n = s.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Err(format!("a stream closed after {} bytes", got.len()));
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&got, b"\r\n\r\n") {
            if !got.starts_with(b"HTTP/1.1 200") {
                let answer = String::from_utf8_lossy(&got);
                return Err(format!(
                    "a stream was answered {}",
                    answer.lines().next().unwrap_or("")
                ));
            }
            if find(&got[end..], b"\n\n").is_some() {
                return Ok(s);
            }
        }
    }
}

/// Starts a mnemo child on `config`'s database, its model a silent endpoint, and prints its
/// memory before and while it holds `n` open streams.
async fn idle_streams(config: &Config, n: usize) -> Result<(), String> {
    let (model_port, model) = server::silent_model().await?;
    // its clients all come from one address: no rate limit, or most streams would be refused
    let mut env = server::fake_model_env(model_port);
    env.extend([
        ("MNEMO_RATE_LIMIT_PER_S", "1000000".to_string()),
        ("MNEMO_RATE_LIMIT_BURST", "1000000".to_string()),
    ]);
    let child = Server::start(config, &env).await?;
    let port = child.port();
    let c = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let pool_size = async || -> Result<u64, String> {
        let ready = json_of(c.get(format!("{base}/ready")), "/ready").await?;
        Ok(ready
            .pointer("/pool/size")
            .and_then(Value::as_u64)
            .unwrap_or(0))
    };

    // the pool filled: whole-store searches at once hold every connection it may open
    let (rss0, size0) = (child.vm_mb("VmRSS")?, pool_size().await?);
    let searches = (0..64).map(|_| {
        c.post(format!("{base}/store/items/search"))
            .json(&json!({"namespace_prefix": [], "limit": 10}))
            .send()
    });
    futures_util::future::join_all(searches).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss1, size1) = (child.vm_mb("VmRSS")?, pool_size().await?);
    let opened = size1.saturating_sub(size0);
    println!(
        "# idle_streams: {opened} more pooled connections: server RSS {rss0:.1} MB, then {rss1:.1} MB: {:.0} KB per connection",
        (rss1 - rss0) * 1024.0 / opened.max(1) as f64
    );

    let before = child.vm_mb("VmRSS")?;
    let open_all = |request: String| async move {
        let opened: Vec<_> = futures_util::stream::iter(0..n)
            .map(|_| async {
                tokio::time::timeout(Duration::from_secs(30), open_stream(port, &request))
                    .await
                    .map_err(|_| "a stream did not start within 30 s".to_string())?
            })
            .buffer_unordered(64)
            .collect()
            .await;
        opened.into_iter().collect::<Result<Vec<_>, String>>()
    };

    // n clients on the stream of one run that waits on the model: the cost of a stream alone
    let body = json!({"assistant_id": "agent", "input": get_tasks(), "stream_resumable": true});
    let run = json_of(c.post(format!("{base}/runs")).json(&body), "starting a run").await?;
    let (thread_id, run_id) = (run["thread_id"].as_str(), run["run_id"].as_str());
    let (Some(thread_id), Some(run_id)) = (thread_id, run_id) else {
        return Err(format!("unexpected run: {run}"));
    };
    let rejoin = format!(
        "GET /threads/{thread_id}/runs/{run_id}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nLast-Event-ID: 0\r\n\r\n"
    );
    let streams = open_all(rejoin).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (with, peak) = (child.vm_mb("VmRSS")?, child.vm_mb("VmHWM")?);
    println!(
        "# idle_streams: {} clients on one run's stream: server RSS before {before:.1} MB, with them {with:.1} MB, peak (VmHWM) {peak:.1} MB: {:.1} KB per stream",
        streams.len(),
        (with - before) * 1024.0 / streams.len().max(1) as f64
    );
    drop(streams);

    // n streams of n runs, each waiting on the model (with a connection to it of its own)
    let body = json!({"assistant_id": "agent", "input": get_tasks(), "stream_mode": ["values", "messages-tuple"]}).to_string();
    let request = format!(
        "POST /runs/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let streams = open_all(request).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (with, peak) = (child.vm_mb("VmRSS")?, child.vm_mb("VmHWM")?);
    println!(
        "# idle_streams: {} streams of as many runs waiting on the model: server RSS {with:.1} MB, peak (VmHWM) {peak:.1} MB: {:.1} KB per run and its stream",
        streams.len(),
        (with - before) * 1024.0 / streams.len().max(1) as f64
    );

    drop(streams);
    model.abort();
    child.stop().await
}

/// Runs `work` on a runtime of its own (the load generator's, off the server's threads).
async fn on_own_runtime<F, Fut>(work: F) -> Result<(), String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let generator = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(work()))
    });
    loop {
        if generator.is_finished() {
            return generator
                .join()
                .map_err(|_| "load generator panicked".to_string())
                .and_then(|r| r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `soak`, `memory` or `queued`, each against a mnemo process of its own (soak also against
/// `--url`).
async fn alone(op: String, config: Config, args: BenchArgs) -> Result<(), String> {
    if op != "soak" && args.url.is_some() {
        return Err(format!(
            "{op} starts mnemo processes of its own on DATABASE_URL: run it without --url"
        ));
    }
    match op.as_str() {
        "memory" => memory::memory(&config).await,
        "queued" => queued::queued(&config, args.queued, args.seconds.unwrap_or(10)).await,
        "actor_hop" => hop::actor_hop(&config, args.clients, args.seconds.unwrap_or(5)).await,
        "growth" => {
            let seconds = args.seconds.unwrap_or(5);
            growth::growth(&config, args.clients, seconds, args.max_items).await
        }
        "replicas" => {
            let seconds = args.seconds.unwrap_or(10);
            replicas::replicas(&config, args.samples, args.clients, seconds).await
        }
        _ => {
            let seconds = args.seconds.unwrap_or(600);
            let pg = pg::Watcher::connect(&config.database_url).await?;
            match &args.url {
                Some(url) => {
                    let base = url.trim_end_matches('/').to_string();
                    let ready: Option<serde_json::Value> =
                        match http_client(reqwest::Client::builder())
                            .get(format!("{base}/ready"))
                            .send()
                            .await
                        {
                            Ok(r) => r.json().await.ok(),
                            Err(e) => return Err(format!("{base}/ready: {e}")),
                        };
                    let pool_max = ready
                        .as_ref()
                        .and_then(|r| r.pointer("/pool/max_size"))
                        .and_then(serde_json::Value::as_u64)
                        .map(|n| n as usize);
                    let watch = soak::Watch {
                        pid: args.pid,
                        pg,
                        pool_max,
                    };
                    soak::soak(base, seconds, args.clients, args.items, &watch).await
                }
                None => {
                    let srv = Server::start(&config, &[]).await?;
                    let watch = soak::Watch {
                        pid: Some(srv.pid()),
                        pg,
                        pool_max: Some(config.pool_max),
                    };
                    let soaked =
                        soak::soak(srv.base.clone(), seconds, args.clients, args.items, &watch)
                            .await;
                    let stopped = srv.stop().await;
                    if let Some(w) = &watch.pg {
                        // a backend leaves pg_stat_activity a moment after its client closed
                        let deadline = Instant::now() + Duration::from_secs(5);
                        let mut left = w.mnemo_connections().await?;
                        while left > 0 && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            left = w.mnemo_connections().await?;
                        }
                        println!(
                            "# after mnemo stopped: {left} Postgres connection(s) of mnemo's left"
                        );
                    }
                    soaked.and(stopped)
                }
            }
        }
    }
}

pub async fn run(config: Config, mut args: BenchArgs) -> Result<(), String> {
    let names: Vec<String> = args
        .ops
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(op) = names.iter().find(|o| ALONE_OPS.split(',').any(|a| a == *o)) {
        if names.len() > 1 {
            return Err(format!("{op} runs alone: name it as the only operation"));
        }
        if let Some(key) = &args.api_key {
            let _ = API_KEY.set(key.clone());
        }
        let op = op.clone();
        return on_own_runtime(move || alone(op, config, args)).await;
    }
    let settings = config.clone();
    let (base, app) = match &args.url {
        Some(url) => (url.trim_end_matches('/').to_string(), None),
        None => {
            let mut config = config;
            config.port = 0;
            if args.auth {
                config.auth = Some("api_key".into());
                args.api_key = Some(service_key(&config).await?);
            }
            let app = Application::build(config).await?;
            let base = format!("http://127.0.0.1:{}", app.port());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let server = actix_web::rt::spawn(app.run_until(async move {
                let _ = rx.await;
            }));
            (base, Some((tx, server)))
        }
    };
    if let Some(key) = &args.api_key {
        let _ = API_KEY.set(key.clone());
    }
    let result = on_own_runtime(move || load(base, args, settings)).await;
    if let Some((tx, server)) = app {
        let _ = tx.send(());
        let _ = server.await;
    }
    result
}

/// A new service key on `config`'s database, for `--auth`.
async fn service_key(config: &Config) -> Result<String, String> {
    let (db, arbiter) = crate::startup::open_persistence(config).await?;
    let (key, key_id) = crate::auth::generate_key()?;
    let made = db
        .create_api_key(crate::model::NewApiKey {
            key_id,
            name: "bench".into(),
            user_id: None,
            key_hash: crate::auth::keys::hash_key(&key),
            expires_at: None,
        })
        .await
        .map_err(|e| format!("while making the bench's key: {e}"));
    let _ = db.shutdown(config.shutdown_timeout()).await;
    arbiter.stop();
    made.map(|_| key)
}
